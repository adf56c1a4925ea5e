//! Routine documents: TOML import ([`parse_doc`]) and export ([`export_doc`], [`doc_of`]), and
//! saving a document as a routine of a chat ([`save_doc`]: validate, then create, or update the
//! routine of that name when the actor may manage it).
//!
//! Unknown keys: the shapes flatten the step kind into the step (`#[serde(flatten)]`), and
//! serde cannot deny or report unknown fields through a flatten (serde_ignored sees nothing
//! either: flattened content is buffered, never "ignored"), so the parsed TOML tree is checked
//! against the known keys of each table first: `steps[2]: unknown key 'promt' — did you mean
//! 'prompt'?` (indexes are 1-based, like "step 2" in validation errors).
//!
//! Export is canonical: [`export_doc`] of a parsed export is byte-identical to it.
//! A single-prompt routine exports as a one-step document; a one-step document with no inputs
//! whose prompt uses only the single-prompt placeholders (`{{ date }}`, `{{ state }}`, …) is
//! saved back as a single-prompt routine, so existing routines round-trip unchanged.
//!
//! Uses: steps, validate, model (names, triggers, placeholders), store (definitions).

use super::{
    can_manage,
    model::{self, TriggerSpec},
    steps::{Definition, RoutineDoc, Step, StepKind, DEFAULT_TIMEOUT_S},
    validate::{closest, validate, DefinitionError, ValidateCtx},
    zone_of, Actor, RoutineError,
};
use crate::{
    agent::ToolRegistry,
    services::{zone_of as chat_zone, Services},
    store::{
        DefinitionFields, NewRoutine, NewTrigger, Publication, RoutineEdit, RoutineRow,
        TriggerKind, TriggerRow,
    },
};

/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Largest document accepted, in bytes (an uploaded file, a tool argument).
pub const MAX_DOC_BYTES: usize = 64 * 1024;

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "status",
    "triggers",
    "quiet",
    "concurrent",
    "inputs",
    "steps",
    "recorded",
];
const INPUT_KEYS: &[&str] = &[
    "name",
    "description",
    "required",
    "default",
    "type",
    "example",
];
const STEP_KEYS: &[&str] = &[
    "name",
    "timeout",
    "require_approval",
    "auto_approve",
    "kind",
];
const IF_KEYS: &[&str] = &["value", "contains", "equals", "compare"];

/// The keys a step of `kind` may have besides [`STEP_KEYS`]; `None` for an unknown kind.
fn kind_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "prompt" => &["prompt", "tools"],
        "routine" => &["routine", "inputs"],
        "message" => &["text", "to"],
        "tool" => &["tool", "args"],
        "wait" => &["duration", "until", "event", "filters", "event_timeout"],
        "condition" => &["if", "then", "else", "max_loops"],
        "approval" => &[
            "text",
            "resolvers",
            "required",
            "on_reject",
            "max_loops",
            "expires",
        ],
        _ => return None,
    })
}

const KINDS: &[&str] = &[
    "prompt",
    "routine",
    "message",
    "tool",
    "wait",
    "condition",
    "approval",
];

fn unknown_keys(at: &str, table: &toml::Table, known: &[&str], errors: &mut Vec<DefinitionError>) {
    for k in table.keys() {
        if !known.contains(&k.as_str()) {
            let hint = closest(k, known.iter().copied())
                .map(|c| format!(" — did you mean '{c}'?"))
                .unwrap_or_else(|| format!(" (known: {})", known.join(", ")));
            errors.push(DefinitionError {
                at: at.to_string(),
                message: format!("unknown key '{k}'{hint}"),
            });
        }
    }
}

fn doc_error(message: impl Into<String>) -> Vec<DefinitionError> {
    vec![DefinitionError {
        at: "document".into(),
        message: message.into(),
    }]
}

/// Parse a TOML document into a [`RoutineDoc`] (shape only; [`save_doc`] validates).
///
/// Errors: the TOML syntax error (with its line), every unknown key (`steps[2]: unknown key
/// 'promt' — did you mean 'prompt'?`, `document: unknown key 'trigers' …`), an unknown step
/// kind, or a value of the wrong type.
pub fn parse_doc(text: &str) -> Result<RoutineDoc, Vec<DefinitionError>> {
    if text.len() > MAX_DOC_BYTES {
        return Err(doc_error(format!(
            "is {} bytes; the limit is {MAX_DOC_BYTES}",
            text.len()
        )));
    }
    let tree: toml::Table = toml::from_str(text).map_err(|e| doc_error(clean_toml_error(&e)))?;
    let mut errors = Vec::new();
    unknown_keys("document", &tree, TOP_KEYS, &mut errors);
    if let Some(inputs) = tree.get("inputs").and_then(|v| v.as_array()) {
        for (i, t) in inputs.iter().enumerate() {
            if let Some(t) = t.as_table() {
                unknown_keys(&format!("inputs[{}]", i + 1), t, INPUT_KEYS, &mut errors);
            }
        }
    }
    if let Some(steps) = tree.get("steps").and_then(|v| v.as_array()) {
        for (i, t) in steps.iter().enumerate() {
            let Some(t) = t.as_table() else { continue };
            let at = format!("steps[{}]", i + 1);
            let Some(kind) = t.get("kind").and_then(|k| k.as_str()) else {
                errors.push(DefinitionError {
                    at,
                    message: format!("kind is missing; one of {}", KINDS.join(", ")),
                });
                continue;
            };
            let Some(extra) = kind_keys(kind) else {
                let hint = closest(kind, KINDS.iter().copied())
                    .map(|c| format!("; did you mean '{c}'?"))
                    .unwrap_or_default();
                errors.push(DefinitionError {
                    at,
                    message: format!(
                        "kind '{kind}' is not a step kind{hint} (one of {})",
                        KINDS.join(", ")
                    ),
                });
                continue;
            };
            let known: Vec<&str> = STEP_KEYS.iter().chain(extra).copied().collect();
            unknown_keys(&at, t, &known, &mut errors);
            if let Some(c) = t.get("if").and_then(|v| v.as_table()) {
                unknown_keys(&format!("{at}.if"), c, IF_KEYS, &mut errors);
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    toml::from_str::<RoutineDoc>(text).map_err(|e| doc_error(clean_toml_error(&e)))
}

/// A toml error on one line: "TOML parse error at line 3, column 8: …".
fn clean_toml_error(e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(_) => {
            let s = e.to_string();
            let first = s.lines().next().unwrap_or("").trim_end_matches(':');
            format!("{first}: {msg}")
        }
        None => msg,
    }
}

/// The canonical TOML of `doc` (toml's pretty form: keys in the shape's order, defaults left
/// out). Exporting a parsed export gives the same bytes.
pub fn export_doc(doc: &RoutineDoc) -> String {
    toml::to_string_pretty(doc).unwrap_or_else(|e| format!("# export failed: {e}\n"))
}

/// The routine's definition: its stored JSON, or one `prompt` step over `prompt` for a
/// single-prompt routine ([`super::runner::definition_of`]).
///
/// Errors: [`RoutineError::Invalid`] for unreadable stored JSON.
pub fn definition_of(r: &RoutineRow) -> Result<Definition, RoutineError> {
    super::runner::definition_of(r).map(|(d, _)| d)
}

/// A trigger row as the trigger string that re-creates it (`every 2h`, `cron 0 8 * * 1-5`
/// with its zone when not the routine's, `at 2026-12-01 09:00`, `event …`, `api [args]`).
pub fn trigger_string(t: &TriggerRow, routine_zone: chrono_tz::Tz) -> String {
    match TriggerSpec::from_stored(t.kind, &t.spec, &t.zone) {
        Ok(TriggerSpec::Every(d)) => format!("every {}", crate::schedule::format_duration(d)),
        Ok(TriggerSpec::Cron { spec, zone }) if zone != routine_zone => {
            format!("cron {} {}", spec.as_str(), zone.name())
        }
        Ok(TriggerSpec::Cron { spec, .. }) => format!("cron {}", spec.as_str()),
        Ok(TriggerSpec::At(at)) => format!(
            "at {}",
            at.with_timezone(&routine_zone).format("%Y-%m-%d %H:%M")
        ),
        Ok(s @ TriggerSpec::Event { .. }) => format!("event {}", s.stored_spec()),
        Ok(TriggerSpec::Api { args }) => if args { "api args" } else { "api" }.into(),
        Ok(TriggerSpec::Condition(c)) => c.describe(),
        Err(_) if t.kind == TriggerKind::Api => "api".into(),
        Err(_) => format!("{} {}", t.kind, t.spec),
    }
}

/// The routine as a document (for export).
pub async fn doc_of(svc: &Services, r: &RoutineRow) -> Result<RoutineDoc, RoutineError> {
    let zone = zone_of(r);
    let triggers = svc
        .store
        .routine_triggers(r.id)
        .await?
        .iter()
        .map(|t| trigger_string(t, zone))
        .collect();
    Ok(RoutineDoc {
        name: r.name.clone(),
        description: r.description.clone(),
        status: r.publication.as_str().to_string(),
        triggers,
        quiet: r.quiet,
        definition: definition_of(r)?,
    })
}

/// Every tool of hearth's agent, as `app::agent` registers them (validation checks `tool`
/// steps against these; a unit test keeps the two lists equal).
pub fn hearth_tools() -> ToolRegistry {
    let mut tools = ToolRegistry::foundation();
    tools.add(crate::workflow::tools::RespondToWorkflow);
    tools.add(crate::workflow::tools::BatchRespondToWorkflows);
    tools.add(crate::chores::tools::ChoreCreate);
    tools.add(crate::chores::tools::ChoreList);
    tools.add(crate::chores::tools::ChoreClaim);
    tools.add(crate::chores::tools::ChoreRequestDeletion);
    tools.add(crate::chores::tools::ChoreUpdate);
    super::tools::register(&mut tools);
    super::playbooks::register(&mut tools);
    tools
}

/// Why a document was not saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The document breaks rules; every error, in order.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<DefinitionError>),
    /// Not allowed, not found, storage.
    #[error(transparent)]
    Routine(#[from] RoutineError),
}

impl From<crate::store::StoreError> for SaveError {
    fn from(e: crate::store::StoreError) -> Self {
        SaveError::Routine(e.into())
    }
}

fn invalid(at: &str, message: impl Into<String>) -> DefinitionError {
    DefinitionError {
        at: at.into(),
        message: message.into(),
    }
}

/// What [`save_doc`] did.
#[derive(Debug, Clone)]
pub struct Saved {
    pub routine: RoutineRow,
    /// False: a new routine; true: the existing routine of that name was updated.
    pub updated: bool,
}

/// Validate `doc` and save it as a routine of `chat_id` owned by `actor`: a new routine, or,
/// when `doc.name` exists, an update of that routine (definition, description, publication,
/// triggers, quiet) if `actor` may manage it (owner or admin, [`can_manage`]). Nothing is written
/// unless everything is valid. An api trigger's token is sent to the owner's DM (a new routine
/// is removed again when that fails, as with `/routine_new`).
///
/// Errors: [`SaveError::Invalid`] with every rule broken (name, description, status, triggers,
/// steps); [`RoutineError::Denied`] when the routine exists and the actor may not change it;
/// `routines: … max_per_chat` when the chat is full.
pub async fn save_doc(
    svc: &Services,
    chat_id: i64,
    actor: Actor,
    doc: &RoutineDoc,
) -> Result<Saved, SaveError> {
    save_doc_from(svc, chat_id, actor, doc, None).await
}

/// [`save_doc`] for a routine saved from a recorded turn (issue 10): a new routine keeps
/// `source_turn_id` (`routines.source_turn_id`); an update leaves the stored one.
///
/// Errors: as [`save_doc`].
pub async fn save_doc_from(
    svc: &Services,
    chat_id: i64,
    actor: Actor,
    doc: &RoutineDoc,
    source_turn_id: Option<i64>,
) -> Result<Saved, SaveError> {
    let now = svc.clock.now();
    let chat =
        svc.store.chat(chat_id).await?.ok_or_else(|| {
            RoutineError::invalid("chat", format!("{chat_id} is not a known chat"))
        })?;
    let existing = svc.store.routine_by_name(chat_id, &doc.name).await?;
    if let Some(r) = &existing {
        if !can_manage(r, actor) {
            return Err(RoutineError::Denied(format!(
                "'{}' exists and only its owner or a group admin can change it",
                r.name
            ))
            .into());
        }
    }
    let zone = existing.as_ref().map(zone_of).unwrap_or(chat_zone(&chat));
    let mut errors = Vec::new();
    if let Err(e) = model::validate_name(&doc.name) {
        errors.push(invalid("name", e.to_string().trim_start_matches("name: ")));
    }
    let desc_len = doc.description.chars().count();
    if desc_len > MAX_DESCRIPTION_CHARS {
        errors.push(invalid(
            "description",
            format!("is {desc_len} characters; the limit is {MAX_DESCRIPTION_CHARS}"),
        ));
    }
    let publication = match Publication::parse(&doc.status) {
        Some(p) => p,
        None => {
            errors.push(invalid(
                "status",
                format!("'{}' — use \"draft\" or \"published\"", doc.status),
            ));
            Publication::Published
        }
    };
    if doc.triggers.len() > model::MAX_TRIGGERS {
        errors.push(invalid(
            "triggers",
            format!(
                "{} given; at most {}",
                doc.triggers.len(),
                model::MAX_TRIGGERS
            ),
        ));
    }
    let mut specs = Vec::new();
    for t in &doc.triggers {
        match TriggerSpec::parse(t, now, zone) {
            Ok(s) => specs.push(s),
            Err(e) => errors.push(invalid(
                "triggers",
                format!("'{t}': {}", e.to_string().trim_start_matches("trigger: ")),
            )),
        }
    }
    // a one-step prompt without inputs over the single-prompt placeholders stays single-prompt
    let single = match doc.definition.steps.as_slice() {
        [Step {
            kind:
                StepKind::Prompt {
                    prompt,
                    tools: None,
                },
            name: None,
            require_approval: false,
            auto_approve: false,
            timeout: DEFAULT_TIMEOUT_S,
        }] if doc.definition.inputs.is_empty()
            && model::validate_prompt(prompt).is_ok()
            && model::validate_template(&model::normalize_prompt(prompt.trim())).is_ok() =>
        {
            Some(model::normalize_prompt(prompt.trim()))
        }
        _ => None,
    };
    if single.is_none() {
        let ctx = ValidateCtx::load(svc, chat_id, &doc.name).await?;
        if let Err(mut e) = validate(&doc.definition, &ctx) {
            errors.append(&mut e);
        }
    }
    if !errors.is_empty() {
        return Err(SaveError::Invalid(errors));
    }
    let api = specs.iter().find_map(|s| match s {
        TriggerSpec::Api { args } => Some(*args),
        _ => None,
    });
    let triggers: Vec<NewTrigger> = specs
        .iter()
        .map(|s| NewTrigger {
            kind: s.kind(),
            spec: s.stored_spec(),
            zone: s.zone_or(zone).name().into(),
            next_fire_at: s.first_fire(now),
        })
        .collect();
    let fields = DefinitionFields {
        description: doc.description.trim().to_string(),
        publication,
        definition: match single {
            Some(_) => None,
            None => Some(serde_json::to_string(&doc.definition).map_err(|e| {
                RoutineError::invalid("definition", format!("cannot be stored: {e}"))
            })?),
        },
        concurrent: doc.definition.concurrent,
        source_turn_id,
    };
    // the prompt column: the single prompt, or what listings show for a multi-step routine
    let prompt = single.clone().unwrap_or_else(|| summary_prompt(doc));
    match existing {
        Some(r) => {
            let token = match api {
                Some(_) if r.api_token_hash.is_none() => Some(super::new_token()),
                _ => None,
            };
            if let Some(t) = &token {
                // sent before anything is written: no routine with a lost token
                if send_token(svc, &r, t).await.is_err() {
                    return Err(RoutineError::invalid(
                        "triggers",
                        "an api trigger's token is sent by direct message and I cannot message the owner; open a private chat with me first (nothing was changed)",
                    )
                    .into());
                }
            }
            let edit = RoutineEdit {
                prompt,
                quiet: doc.quiet,
                api_args: api.unwrap_or(false),
                api_token_hash: token.as_deref().map(super::token_hash),
            };
            svc.store
                .update_routine_doc(r.id, edit, fields, triggers)
                .await?;
            let routine = svc
                .store
                .routine(r.id)
                .await?
                .ok_or_else(|| RoutineError::NotFound(doc.name.clone()))?;
            tracing::info!(chat_id, routine = %routine.name, id = routine.id, "routine definition updated");
            super::menu::sync(svc, chat_id).await;
            Ok(Saved {
                routine,
                updated: true,
            })
        }
        None => {
            let limit = svc.config.routines.max_per_chat as u64;
            if svc.store.count_active_routines(chat_id).await? >= limit {
                return Err(RoutineError::invalid(
                    "routines",
                    format!("this chat already has {limit} active routines (routines.max_per_chat); delete one first"),
                )
                .into());
            }
            let token = api.map(|_| super::new_token());
            let new = NewRoutine {
                chat_id,
                name: doc.name.clone(),
                owner_id: actor.user_id,
                prompt,
                zone: zone.name().into(),
                quiet: doc.quiet,
                api_args: api.unwrap_or(false),
                api_token_hash: token.as_deref().map(super::token_hash),
                max_ticks: None,
                max_runs_per_day: None,
                created_at: now,
            };
            let Some(id) = svc.store.insert_routine_doc(new, fields, triggers).await? else {
                return Err(RoutineError::invalid(
                    "name",
                    format!("'{}' is already used in this chat", doc.name),
                )
                .into());
            };
            let routine = svc
                .store
                .routine(id)
                .await?
                .ok_or_else(|| RoutineError::NotFound(doc.name.clone()))?;
            if let Some(t) = &token {
                super::deliver_token(svc, &routine, t).await?;
            }
            tracing::info!(chat_id, routine = %routine.name, id, "routine saved from a document");
            super::menu::sync(svc, chat_id).await;
            Ok(Saved {
                routine,
                updated: false,
            })
        }
    }
}

/// Send an api token to the owner's DM (never through the model or the group).
async fn send_token(svc: &Services, r: &RoutineRow, token: &str) -> Result<(), ()> {
    let html = format!(
        "Api token for routine <b>{}</b> (shown once):\n<code>{token}</code>\nPOST /routines/{}/trigger with the header <code>Authorization: Bearer &lt;token&gt;</code>.",
        crate::format::escape_html(&r.name),
        r.id
    );
    let dm = crate::types::Outbound {
        chat_id: r.owner_id,
        html,
        buttons: vec![],
        reply_to: None,
    };
    svc.outbox.send_secret(dm).await.map(|_| ()).map_err(|_| ())
}

/// What the `prompt` column holds for a multi-step routine: the description, else the first
/// prompt step's text, else the step kinds ("message, wait, message").
fn summary_prompt(doc: &RoutineDoc) -> String {
    if !doc.description.trim().is_empty() {
        return doc.description.trim().to_string();
    }
    doc.definition
        .steps
        .iter()
        .find_map(|s| match &s.kind {
            StepKind::Prompt { prompt, .. } => Some(prompt.clone()),
            _ => None,
        })
        .unwrap_or_else(|| {
            doc.definition
                .steps
                .iter()
                .map(|s| s.kind.step_type().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
}

/// `hearth routines import FILE --chat ID [--as USER_ID]` and `hearth routines export NAME
/// --chat ID`.
#[derive(Debug, Clone)]
pub enum CliCommand {
    Import {
        file: std::path::PathBuf,
        chat: i64,
        /// The owner; default: the chat's first admin.
        as_user: Option<i64>,
    },
    Export {
        name: String,
        chat: i64,
    },
}

/// Run a [`CliCommand`]; returns what to print on stdout (the document, or one line saying
/// what was saved). The operator acts as an admin of the chat.
///
/// Errors: an unreadable file, an unknown chat or routine, every validation error (one a line).
pub async fn run_cli(svc: &Services, cmd: CliCommand) -> anyhow::Result<String> {
    match cmd {
        CliCommand::Export { name, chat } => {
            let r = super::find(svc, chat, &name).await?;
            Ok(export_doc(&doc_of(svc, &r).await?))
        }
        CliCommand::Import {
            file,
            chat,
            as_user,
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let doc = parse_doc(&text).map_err(|v| anyhow::anyhow!(SaveError::Invalid(v)))?;
            let user_id = match as_user {
                Some(u) => u,
                None => svc
                    .store
                    .members(chat)
                    .await?
                    .into_iter()
                    .find(|m| m.active && m.is_admin())
                    .map(|m| m.user_id)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "chat {chat} has no admin known to hearth; give --as USER_ID"
                        )
                    })?,
            };
            let actor = Actor {
                user_id,
                admin: true,
            };
            let saved = save_doc(svc, chat, actor, &doc)
                .await
                .map_err(|e| anyhow::anyhow!("{} was not saved:\n{e}", file.display()))?;
            Ok(format!(
                "routine {} {} in chat {chat} (id {}, {} steps, {})\n",
                saved.routine.name,
                if saved.updated { "updated" } else { "created" },
                saved.routine.id,
                doc.definition.steps.len(),
                saved.routine.publication
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_with_a_hint() {
        let e = parse_doc(
            "name='x'\ntrigers=[]\n[[steps]]\nkind='prompt'\nprompt='a'\n[[steps]]\nkind='prompt'\npromt='b'\n[[steps]]\nkind='condition'\nif={value='x', contians='y'}\n[[steps]]\nkind='promt'\n",
        )
        .unwrap_err();
        let e: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            e,
            [
                "document: unknown key 'trigers' — did you mean 'triggers'?",
                "steps[2]: unknown key 'promt' — did you mean 'prompt'?",
                "steps[3].if: unknown key 'contians' — did you mean 'contains'?",
                "steps[4]: kind 'promt' is not a step kind; did you mean 'prompt'? (one of prompt, routine, message, tool, wait, condition, approval)",
            ]
        );
        let e = parse_doc("name='x'\n[[steps]]\nkind='prompt'\n").unwrap_err();
        assert!(e[0].to_string().contains("prompt"), "{e:?}");
        let e = parse_doc("name='x\n").unwrap_err();
        assert!(
            e[0].to_string()
                .starts_with("document: TOML parse error at line 1"),
            "{e:?}"
        );
    }

    #[test]
    fn tool_registry_matches_the_agent() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let cfg = crate::config::Config::load(None, Vec::<(String, String)>::new()).unwrap();
        let agent = crate::app::agent(&cfg, None, &dir).unwrap();
        let names = |r: &ToolRegistry| {
            let mut v: Vec<&str> = r.specs(true, None).iter().map(|s| s.name).collect();
            v.sort();
            v
        };
        assert_eq!(names(&hearth_tools()), names(agent.tools()));
    }
}
