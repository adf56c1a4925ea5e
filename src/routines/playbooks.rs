//! Playbooks: the library of multi-step routines (`/playbook_install <name>`), drafting by the
//! agent (`playbook_draft` tool → a draft routine and a preview with Save / Cancel buttons
//! `pb:s:<routine id>` / `pb:c:<routine id>`), and `.toml` documents sent to the bot
//! ([`on_document`]).
//!
//! Authorization lives here: a draft's buttons answer only the member who asked for it or a chat
//! admin; an uploaded document is saved only for an admin (owner or admin may update a routine,
//! [`super::can_manage`]). Uses: doc, validate, steps, outbox.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    doc::{parse_doc, save_doc, SaveError, Saved},
    steps::{RoutineDoc, StepKind},
    validate::DefinitionError,
    Actor, RoutineError,
};
use crate::{
    agent::{
        llm::ToolSpec,
        tools::{args, Scope, Tool, ToolError, ToolRegistry},
    },
    format::escape_html as e,
    router::{Command, CommandCtx, CommandSet},
    services::Services,
    store::{Publication, RoutineRow, StoreResult},
    types::{Button, CallbackQuery, ChatKind, Outbound},
};

/// One playbook of the library.
#[derive(Debug, Clone, Copy)]
pub struct Playbook {
    /// The name it installs as (unless taken: then `<name>_2`, …).
    pub name: &'static str,
    /// The TOML document.
    pub toml: &'static str,
}

/// The library (issue 9, item 4).
pub const LIBRARY: &[Playbook] = &[
    Playbook {
        name: "meal_plan",
        toml: include_str!("library/meal_plan.toml"),
    },
    Playbook {
        name: "bills_split",
        toml: include_str!("library/bills_split.toml"),
    },
    Playbook {
        name: "onboarding",
        toml: include_str!("library/onboarding.toml"),
    },
    Playbook {
        name: "move_out",
        toml: include_str!("library/move_out.toml"),
    },
];

/// The library playbook called `name`.
pub fn find(name: &str) -> Option<&'static Playbook> {
    LIBRARY.iter().find(|p| p.name == name.trim())
}

impl Playbook {
    /// The parsed document (the library is checked by a unit test, so this never fails).
    pub fn doc(&self) -> RoutineDoc {
        parse_doc(self.toml).unwrap_or_else(|e| panic!("library playbook {}: {e:?}", self.name))
    }
}

/// Callback data prefix of the draft buttons.
pub const PREFIX: &str = "pb:";

/// The playbook commands for the menu.
pub const COMMANDS: &[(&str, &str)] = &[(
    "playbook_install",
    "Install a multi-step playbook, e.g. /playbook_install meal_plan",
)];

/// `/playbook_install` as a registered [`CommandSet`].
pub struct PlaybookCommands;

#[async_trait]
impl CommandSet for PlaybookCommands {
    fn menu(&self) -> &'static [(&'static str, &'static str)] {
        COMMANDS
    }
    async fn handle(
        &self,
        svc: &Services,
        ctx: &CommandCtx<'_>,
        cmd: &Command,
    ) -> Option<anyhow::Result<()>> {
        if cmd.name != "playbook_install" {
            return None;
        }
        let html = match install(svc, ctx, cmd.args.trim()).await {
            Ok(h) => h,
            Err(SaveError::Routine(RoutineError::Store(err))) => return Some(Err(err.into())),
            Err(SaveError::Invalid(v)) => errors_html("The playbook is not valid:", &v),
            Err(other) => e(&other.to_string()),
        };
        Some(
            svc.outbox
                .send(ctx.reply(html))
                .await
                .map(|_| ())
                .map_err(Into::into),
        )
    }
}

fn actor_of(ctx: &CommandCtx<'_>) -> Actor {
    Actor {
        user_id: ctx.from.id,
        admin: ctx.chat_kind == ChatKind::Private || ctx.member.is_some_and(|m| m.is_admin()),
    }
}

/// "<title>\n• error\n• error" (HTML).
pub fn errors_html(title: &str, v: &[DefinitionError]) -> String {
    let mut s = e(title);
    for x in v {
        s.push_str(&format!("\n• {}", e(&x.to_string())));
    }
    s
}

/// A free name for `base` in the chat: `base`, else `base_2` … `base_20`.
async fn free_name(svc: &Services, chat_id: i64, base: &str) -> Result<String, RoutineError> {
    for n in 1..=20 {
        let name = if n == 1 {
            base.to_string()
        } else {
            format!("{base}_{n}")
        };
        if svc.store.routine_by_name(chat_id, &name).await?.is_none() {
            return Ok(name);
        }
    }
    Err(RoutineError::invalid(
        "name",
        format!("'{base}' and its numbered variants are taken"),
    ))
}

/// Install library playbook `name` into the chat as `published` (under a free name); without a
/// name, the library listing.
async fn install(svc: &Services, ctx: &CommandCtx<'_>, name: &str) -> Result<String, SaveError> {
    let Some(p) = find(name) else {
        let mut s = if name.is_empty() {
            "Install a playbook with /playbook_install &lt;name&gt;:".to_string()
        } else {
            format!(
                "'{}' is not in the playbook library; choose one of:",
                e(&crate::context::clip(name, 40))
            )
        };
        for p in LIBRARY {
            s.push_str(&format!(
                "\n• <b>{}</b> — {}",
                p.name,
                e(&p.doc().description)
            ));
        }
        return Ok(s);
    };
    let mut doc = p.doc();
    doc.name = free_name(svc, ctx.chat.id, p.name).await?;
    doc.status = Publication::Published.as_str().into();
    let saved = save_doc(svc, ctx.chat.id, actor_of(ctx), &doc).await?;
    Ok(format!(
        "Playbook <b>{}</b> installed as <b>{}</b> ({} steps). Run it with /{}; see it with /routines {}.",
        p.name,
        e(&saved.routine.name),
        doc.definition.steps.len(),
        e(&saved.routine.name),
        e(&saved.routine.name),
    ))
}

/// One line per step for previews: "2. list (prompt): Turn this dinner plan into…".
pub fn step_lines(doc: &RoutineDoc) -> Vec<String> {
    doc.definition
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let what = match &s.kind {
                StepKind::Prompt { prompt, .. } => prompt.clone(),
                StepKind::Routine { routine, .. } => format!("runs {routine}"),
                StepKind::Message { text, to } => match to {
                    Some(t) => format!("to {t}: {text}"),
                    None => text.clone(),
                },
                StepKind::Tool { tool, args } => format!("{tool} {}", Value::Object(args.clone())),
                StepKind::Wait {
                    duration,
                    until,
                    event,
                    ..
                } => duration
                    .as_ref()
                    .map(|d| format!("for {d}"))
                    .or(until.as_ref().map(|u| format!("until {u}")))
                    .or(event.as_ref().map(|v| format!("for event {v}")))
                    .unwrap_or_default(),
                StepKind::Condition {
                    check,
                    then,
                    otherwise,
                    ..
                } => format!(
                    "if {} then {} else {}",
                    check.value,
                    then.as_deref().unwrap_or("next"),
                    otherwise.as_deref().unwrap_or("next")
                ),
                StepKind::Approval { text, .. } => text.clone(),
            };
            let label = match &s.name {
                Some(n) => format!("{n} ({})", s.kind.step_type()),
                None => s.kind.step_type().to_string(),
            };
            format!(
                "{}. {label}: {}",
                i + 1,
                crate::context::clip(&what.replace('\n', " "), 70)
            )
        })
        .collect()
}

/// The preview of a draft (HTML): name, description, inputs, steps one line each, triggers.
pub fn preview_html(doc: &RoutineDoc) -> String {
    let mut s = format!("<b>Draft playbook: {}</b>", e(&doc.name));
    if !doc.description.is_empty() {
        s.push_str(&format!("\n{}", e(&doc.description)));
    }
    if !doc.definition.inputs.is_empty() {
        let inputs: Vec<String> = doc
            .definition
            .inputs
            .iter()
            .map(|i| i.name.clone())
            .collect();
        s.push_str(&format!("\nInputs: {}", e(&inputs.join(", "))));
    }
    s.push_str("\nSteps:");
    for l in step_lines(doc) {
        s.push_str(&format!("\n{}", e(&l)));
    }
    s.push_str(&format!(
        "\nTriggers: {}",
        if doc.triggers.is_empty() {
            "manual only".to_string()
        } else {
            e(&doc.triggers.join(", "))
        }
    ));
    s
}

/// Save / Cancel buttons for draft `id`.
pub fn draft_buttons(id: i64) -> Vec<Vec<Button>> {
    vec![vec![
        Button {
            label: "Save".into(),
            data: format!("{PREFIX}s:{id}"),
        },
        Button {
            label: "Cancel".into(),
            data: format!("{PREFIX}c:{id}"),
        },
    ]]
}

/// Add the playbook tools to `r`.
pub fn register(r: &mut ToolRegistry) {
    r.add(Draft);
}

/// `playbook_draft { toml }`: validate a TOML playbook and save it as a draft; a preview with
/// Save / Cancel is posted to the chat. On errors, the tool result lists them for the model.
pub struct Draft;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DraftArgs {
    toml: String,
}

/// The document's shape, given back with validation errors only (the tool's description stays
/// short: its schema is paid on every turn, this only when a draft needs fixing).
const FORMAT_HINT: &str = r#"Format: name = "snake_name"; description = "…"; triggers = ["cron 0 17 * * 0"] (optional); [[inputs]] name, description; [[steps]] name, kind = prompt (prompt) | message (text, to) | tool (tool, args) | wait (duration "1d" | until "08:00" | event) | condition (if = {value = "{{steps.x.output}}", contains|equals|compare = "…"}, then, else, max_loops) | approval (text, resolvers, required, on_reject, max_loops) | routine (routine, inputs). Variables: {{initial.x}}, {{steps.<name>.output}}, {{steps.<name>.reason}}, {{retry.reason}}, {{chat.name}}, {{date}}."#;

fn invalid_result(v: &[DefinitionError]) -> ToolError {
    ToolError::InvalidArgs(format!(
        "the playbook was not saved; fix these and call playbook_draft again:\n{}\n{FORMAT_HINT}",
        v.iter()
            .map(|x| format!("- {x}"))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

#[async_trait]
impl Tool for Draft {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "playbook_draft",
            description: "Draft a multi-step routine as a TOML playbook; hearth validates it and shows a preview the member saves.",
            parameters: json!({"type": "object", "properties": {"toml": {"type": "string"}}, "required": ["toml"]}),
        }
    }

    fn done_summary(&self, _args: &Value, result: &Value) -> Option<String> {
        result["draft"]
            .as_str()
            .map(|n| format!("drafted the playbook “{n}”"))
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: DraftArgs = args(a)?;
        let user_id = scope
            .actor_id
            .ok_or_else(|| ToolError::Denied("no acting member".into()))?;
        let actor = Actor {
            user_id,
            admin: scope.chat_kind == ChatKind::Private
                || scope.member.as_ref().is_some_and(|m| m.is_admin()),
        };
        let mut doc = parse_doc(&a.toml).map_err(|v| invalid_result(&v))?;
        doc.status = Publication::Draft.as_str().into();
        // a draft never replaces a routine: only an earlier draft of the same member
        if let Some(r) = svc.store.routine_by_name(scope.chat.id, &doc.name).await? {
            if r.publication != Publication::Draft || r.owner_id != user_id {
                return Err(ToolError::InvalidArgs(format!(
                    "name '{}' is already used in this chat; choose another name",
                    doc.name
                )));
            }
        }
        let saved = match save_doc(svc, scope.chat.id, actor, &doc).await {
            Ok(s) => s,
            Err(SaveError::Invalid(v)) => return Err(invalid_result(&v)),
            Err(SaveError::Routine(r)) => return Err(r.into()),
        };
        let out = Outbound {
            chat_id: scope.chat.id,
            html: preview_html(&doc),
            buttons: draft_buttons(saved.routine.id),
            reply_to: None,
        };
        svc.outbox
            .send(out)
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        Ok(json!({
            "draft": saved.routine.name,
            "status": "saved as a draft; a preview with Save / Cancel buttons was posted. Tell the member to tap Save to publish it.",
        }))
    }
}

/// Handle a `pb:` button; false when `c` is not one. Only the draft's requester (its owner) or
/// a chat admin may tap; Save publishes (`draft → published`), Cancel deletes the draft.
/// Conditional in the store: a second tap, or Save and Cancel at once, finds it no longer a draft.
///
/// Errors: storage failures.
pub async fn on_callback(svc: &Services, c: &CallbackQuery) -> StoreResult<bool> {
    let Some(rest) = c.data.strip_prefix(PREFIX) else {
        return Ok(false);
    };
    let parsed = rest
        .split_once(':')
        .and_then(|(t, id)| Some((t, id.parse::<i64>().ok()?)));
    let Some((tap, id)) = parsed.filter(|(t, _)| *t == "s" || *t == "c") else {
        answer(svc, c, "This button is no longer active.").await;
        return Ok(true);
    };
    let r = svc.store.routine(id).await?;
    let Some(r) = r.filter(|r| r.chat_id == c.chat.id && r.publication == Publication::Draft)
    else {
        answer(svc, c, "This draft is no longer pending.").await;
        return Ok(true);
    };
    let admin = c.chat.kind == ChatKind::Private
        || svc
            .store
            .member(c.chat.id, c.from.id)
            .await?
            .is_some_and(|m| m.is_admin());
    if r.owner_id != c.from.id && !admin {
        answer(
            svc,
            c,
            "Only the member who asked for this draft or an admin can decide.",
        )
        .await;
        return Ok(true);
    }
    let (done, text) = if tap == "s" {
        let ok = svc.store.publish_draft(r.id).await?;
        (
            ok,
            format!(
                "Saved: <b>{}</b> is published. Run it with /{}.",
                e(&r.name),
                e(&r.name)
            ),
        )
    } else {
        let ok = svc.store.delete_draft(r.id).await?;
        (ok, format!("Draft <b>{}</b> cancelled.", e(&r.name)))
    };
    if !done {
        answer(svc, c, "This draft is no longer pending.").await;
        return Ok(true);
    }
    tracing::info!(
        chat_id = c.chat.id,
        routine_id = r.id,
        saved = tap == "s",
        "draft decided"
    );
    super::menu::sync(svc, c.chat.id).await;
    answer(svc, c, if tap == "s" { "Saved." } else { "Cancelled." }).await;
    if let Err(err) = svc.outbox.edit(c.chat.id, c.message_id, &text, &[]).await {
        tracing::warn!(error = %err, "draft preview not edited");
    }
    Ok(true)
}

async fn answer(svc: &Services, c: &CallbackQuery, text: &str) {
    if let Err(err) = svc
        .outbox
        .messenger()
        .answer_callback(&c.id, Some(text), false)
        .await
    {
        tracing::warn!(error = %err, "callback not answered");
    }
}

/// Save a `.toml` document a member sent: only an admin of the chat (or anyone in a private
/// chat, for their own routines), at most [`super::doc::MAX_DOC_BYTES`]. Returns the reply (HTML):
/// what was saved, or every error (nothing saved).
///
/// Errors: storage failures.
pub async fn save_upload(
    svc: &Services,
    chat_id: i64,
    actor: Actor,
    text: &str,
) -> Result<String, RoutineError> {
    if !actor.admin {
        return Ok("Only a group admin can import a playbook document.".into());
    }
    let doc = match parse_doc(text) {
        Ok(d) => d,
        Err(v) => return Ok(errors_html("Nothing was saved:", &v)),
    };
    match save_doc(svc, chat_id, actor, &doc).await {
        Ok(Saved { routine, updated }) => Ok(saved_html(&routine, &doc, updated)),
        Err(SaveError::Invalid(v)) => Ok(errors_html("Nothing was saved:", &v)),
        Err(SaveError::Routine(RoutineError::Store(s))) => Err(RoutineError::Store(s)),
        Err(SaveError::Routine(r)) => Ok(e(&r.to_string())),
    }
}

/// A document a member sent, as the adapter reported it.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    pub file_id: &'a str,
    pub file_name: &'a str,
    /// Bytes, as the adapter reports them (checked again on download).
    pub size: u64,
}

/// A `.toml` document sent in a chat: refused for non-admins and over
/// [`super::doc::MAX_DOC_BYTES`] (before any download); otherwise fetched through the
/// messenger and saved with [`save_upload`]. Returns the reply (HTML).
///
/// Errors: storage failures.
pub async fn on_document(
    svc: &Services,
    chat_id: i64,
    actor: Actor,
    up: Upload<'_>,
) -> StoreResult<String> {
    let max = super::doc::MAX_DOC_BYTES;
    if !actor.admin {
        return Ok("Only a group admin can import a playbook document.".into());
    }
    if up.size > max as u64 {
        return Ok(format!(
            "{} is {} KB; a playbook document is at most {} KB. Nothing was saved.",
            e(&crate::context::clip(up.file_name, 60)),
            up.size.div_ceil(1024),
            max / 1024
        ));
    }
    let bytes = match svc.outbox.messenger().download(up.file_id, max).await {
        Ok(b) => b,
        Err(err) => {
            tracing::warn!(chat_id, error = %err, "playbook document not downloaded");
            return Ok("I could not fetch that document; please send it again.".into());
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(format!(
            "{} is not UTF-8 text. Nothing was saved.",
            e(&crate::context::clip(up.file_name, 60))
        ));
    };
    match save_upload(svc, chat_id, actor, &text).await {
        Ok(html) => Ok(html),
        Err(RoutineError::Store(s)) => Err(s),
        Err(other) => Ok(e(&other.to_string())),
    }
}

fn saved_html(r: &RoutineRow, doc: &RoutineDoc, updated: bool) -> String {
    format!(
        "Routine <b>{}</b> {} ({} steps, {}). Run it with /{}.",
        e(&r.name),
        if updated { "updated" } else { "saved" },
        doc.definition.steps.len(),
        r.publication,
        e(&r.name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routines::{
        doc::{export_doc, hearth_tools},
        validate::{validate, ValidateCtx},
    };

    #[test]
    fn the_library_validates_and_round_trips() {
        let ctx = ValidateCtx {
            name: String::new(),
            tools: ValidateCtx::tools_of(&hearth_tools()),
            routines: Default::default(),
        };
        for p in LIBRARY {
            let doc = p.doc();
            assert_eq!(doc.name, p.name);
            let ctx = ValidateCtx {
                name: p.name.into(),
                ..ctx.clone()
            };
            validate(&doc.definition, &ctx).unwrap_or_else(|e| panic!("{}: {e:?}", p.name));
            let once = export_doc(&doc);
            let twice = export_doc(&parse_doc(&once).unwrap());
            assert_eq!(once, twice, "{}", p.name);
            assert_eq!(parse_doc(&once).unwrap(), doc, "{}", p.name);
        }
        let meal = find("meal_plan").unwrap().doc();
        assert_eq!(meal.definition.inputs.len(), 1);
        assert_eq!(meal.definition.inputs[0].name, "preferences");
        assert!(
            preview_html(&meal).contains("5. shopping (tool): chore_create"),
            "{}",
            preview_html(&meal)
        );
    }

    #[test]
    fn buttons_fit() {
        for b in &draft_buttons(i64::MAX)[0] {
            assert!(b.data.len() <= 64);
        }
    }
}
