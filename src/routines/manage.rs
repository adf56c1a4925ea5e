//! Managing routines of every kind together (issue 10, item 7): the kind and usage line of
//! `/routines` ([`Usage`], one grouped query for the whole list), `/routine_show <name>`
//! ([`show`]: template, parameters, tools) and `/routine_edit <name> prompt <template>` or
//! `/routine_edit <name> param <pname> description <text>` ([`edit`]).
//!
//! Templates are shown and edited with `{{param}}` placeholders; they are stored as
//! `{{initial.param}}` (what a run's variables use). An edit goes through
//! [`super::doc::save_doc`] — the validator, the rights (the creator or a group admin, item 6)
//! and the chat's command menu sync of every save. Uses: doc, steps, store (run tallies), format.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{
    doc::{doc_of, hearth_tools, save_doc, SaveError},
    find, find_managed,
    steps::{Definition, RoutineDoc, StepKind},
    Actor, RoutineError,
};
use crate::{
    format::escape_html as e,
    services::Services,
    store::{RoutineRow, RunStatus},
};

/// What kind of routine a row is, as `/routines` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Saved from a task a member did in chat (its definition has `recorded`).
    Recorded,
    /// A single prompt fired by its triggers (`/every`, `/cron`, `/at`, templates).
    Scheduled,
    /// A definition with steps (playbooks, imported documents).
    MultiStep,
}

impl Kind {
    /// "recorded" | "scheduled" | "multi-step".
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Recorded => "recorded",
            Kind::Scheduled => "scheduled",
            Kind::MultiStep => "multi-step",
        }
    }
}

/// The routine's stored definition, if it has one that reads.
pub fn stored_definition(r: &RoutineRow) -> Option<Definition> {
    r.definition
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
}

/// The kind of `r` (see [`Kind`]).
pub fn kind_of(r: &RoutineRow) -> Kind {
    match stored_definition(r) {
        Some(d) if d.recorded.is_some() => Kind::Recorded,
        Some(_) => Kind::MultiStep,
        None => Kind::Scheduled,
    }
}

/// A routine's runs over its kept history (skipped and silent fires not counted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub runs: i64,
    /// Completed, failed or cancelled.
    pub finished: i64,
    pub completed: i64,
    /// When the newest run started (UTC).
    pub last_used: Option<DateTime<Utc>>,
}

/// [`Usage`] of each of `routine_ids` (absent: never run), from one grouped query.
///
/// Errors: storage.
pub async fn usage(
    svc: &Services,
    routine_ids: &[i64],
) -> Result<HashMap<i64, Usage>, RoutineError> {
    let mut out: HashMap<i64, Usage> = HashMap::new();
    for t in svc.store.run_tallies(routine_ids).await? {
        if matches!(t.status, RunStatus::Skipped | RunStatus::Silent) {
            continue;
        }
        let u = out.entry(t.routine_id).or_default();
        u.runs += t.runs;
        if !t.status.is_active() {
            u.finished += t.runs;
        }
        if t.status == RunStatus::Completed {
            u.completed += t.runs;
        }
        u.last_used = u.last_used.max(t.last_started);
    }
    Ok(out)
}

/// A routine's figures for the web admin's routines page (issue 11): [`Usage`] plus the cost
/// and the average duration, over its kept history ([`super::KEEP_RUNS`] runs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Runs, finished runs, completed runs and last use, as [`Usage`] counts them (skipped and
    /// silent fires not counted).
    pub usage: Usage,
    /// US dollars of every kept run (silent and skipped runs included: a silent run still
    /// called the model).
    pub cost_usd: f64,
    /// Mean recorded wall time of the completed and failed runs (a cancelled run records none).
    pub average: Option<chrono::Duration>,
}

impl Figures {
    /// completed / finished, `None` when no run finished.
    pub fn success_rate(&self) -> Option<f64> {
        (self.usage.finished > 0).then(|| self.usage.completed as f64 / self.usage.finished as f64)
    }
}

/// [`Figures`] of each of `routine_ids` (absent: no run kept), from one grouped query
/// ([`crate::store::Store::routine_figures`]).
///
/// Errors: storage.
pub async fn figures(
    svc: &Services,
    routine_ids: &[i64],
) -> Result<HashMap<i64, Figures>, RoutineError> {
    let mut out: HashMap<i64, Figures> = HashMap::new();
    let mut timed: HashMap<i64, (i64, i64)> = HashMap::new();
    for t in svc.store.routine_figures(routine_ids).await? {
        let f = out.entry(t.routine_id).or_default();
        f.cost_usd += t.cost_usd;
        if matches!(t.status, RunStatus::Skipped | RunStatus::Silent) {
            continue;
        }
        let u = &mut f.usage;
        u.runs += t.runs;
        if !t.status.is_active() {
            u.finished += t.runs;
        }
        if t.status == RunStatus::Completed {
            u.completed += t.runs;
        }
        u.last_used = u.last_used.max(t.last_started);
        if matches!(t.status, RunStatus::Completed | RunStatus::Failed) {
            let e = timed.entry(t.routine_id).or_default();
            e.0 += t.duration_ms;
            e.1 += t.runs;
        }
    }
    for (id, (ms, n)) in timed {
        if let Some(f) = out.get_mut(&id).filter(|_| n > 0) {
            f.average = Some(chrono::Duration::milliseconds(ms / n));
        }
    }
    Ok(out)
}

/// The second line of a routine in `/routines` (HTML): "recorded · asks for from (member),
/// until (date) · 3 runs, 67% succeeded · last used Sat 21 Nov 10:30 UTC", or "· never run".
pub fn usage_line(r: &RoutineRow, u: Option<&Usage>, zone: Tz) -> String {
    let mut parts = vec![kind_of(r).as_str().to_string()];
    if let Some(d) = stored_definition(r) {
        if !d.inputs.is_empty() {
            let names: Vec<String> = d
                .inputs
                .iter()
                .map(|i| format!("{} ({})", i.name, i.kind.as_str()))
                .collect();
            parts.push(format!("asks for {}", names.join(", ")));
        }
    }
    match u.filter(|u| u.runs > 0) {
        None => parts.push("never run".into()),
        Some(u) => {
            let mut s = format!("{} run{}", u.runs, if u.runs == 1 { "" } else { "s" });
            if u.finished > 0 {
                s.push_str(&format!(
                    ", {:.0}% succeeded",
                    u.completed as f64 * 100.0 / u.finished as f64
                ));
            }
            parts.push(s);
            if let Some(t) = u.last_used {
                parts.push(format!(
                    "last used {}",
                    t.with_timezone(&zone).format("%a %d %b %H:%M")
                ));
            }
        }
    }
    format!("   {}", e(&parts.join(" · ")))
}

/// `{{initial.x}}` → `{{x}}` (how members read and write templates).
pub fn shown_template(prompt: &str) -> String {
    let mut out = String::with_capacity(prompt.len());
    let mut rest = prompt;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find("}}") {
            Some(j) => {
                let inner = after[..j].trim();
                match inner.strip_prefix("initial.") {
                    Some(name) => out.push_str(&format!("{{{{{}}}}}", name.trim())),
                    None => out.push_str(&rest[i..i + 2 + j + 2]),
                }
                rest = &after[j + 2..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// `{{x}}` → `{{initial.x}}` for each parameter `x` of `inputs`; other placeholders stay.
///
/// Errors: the first `{{y}}` naming no parameter and no run variable (`date`, or a dotted
/// variable like `chat.name`), named in the message with the parameters there are.
fn stored_template(template: &str, inputs: &[String]) -> Result<String, RoutineError> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let inner = after[..j].trim();
        if inputs.iter().any(|n| n == inner) {
            out.push_str(&format!("{{{{initial.{inner}}}}}"));
        } else if inner.contains('.') || inner == "date" {
            out.push_str(&rest[i..i + 2 + j + 2]);
        } else {
            return Err(RoutineError::invalid(
                "template",
                format!(
                    "{{{{{}}}}} is not a parameter of this routine; {}",
                    crate::context::clip(inner, 40),
                    if inputs.is_empty() {
                        "it has none".to_string()
                    } else {
                        format!("its parameters are {}", inputs.join(", "))
                    }
                ),
            ));
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The routine's single `prompt` step (a recorded routine has exactly one; a single-prompt
/// routine is one), as a mutable reference into `doc`.
fn the_prompt(doc: &mut RoutineDoc) -> Option<&mut String> {
    let mut prompts = doc
        .definition
        .steps
        .iter_mut()
        .filter_map(|s| match &mut s.kind {
            StepKind::Prompt { prompt, .. } => Some(prompt),
            _ => None,
        });
    let first = prompts.next()?;
    prompts.next().is_none().then_some(first)
}

/// The template of a routine whose only step is a `prompt` (a single-prompt or recorded
/// routine), as members read it (`{{param}}`); `None` for a routine of several steps.
pub fn template_of(doc: &RoutineDoc) -> Option<String> {
    match doc.definition.steps.as_slice() {
        [s] => match &s.kind {
            StepKind::Prompt { prompt, .. } => Some(shown_template(prompt)),
            _ => None,
        },
        _ => None,
    }
}

/// Replace the template of `r`'s single `prompt` step in `doc` (its document, [`doc_of`]) by
/// `template` written with `{{param}}` placeholders: the rules of `/routine_edit … prompt` (the
/// web admin uses them too). A single-prompt routine keeps its own placeholders
/// (`{{ date }}`, `{{ state }}`, …), checked by the save's single-prompt rules.
///
/// Errors: [`RoutineError::Invalid`] — `template`: a `{{y}}` naming no parameter, or a
/// parameter no longer used; `prompt`: the routine has several steps.
pub fn set_template(
    r: &RoutineRow,
    doc: &mut RoutineDoc,
    template: &str,
) -> Result<(), RoutineError> {
    let inputs: Vec<String> = doc
        .definition
        .inputs
        .iter()
        .map(|i| i.name.clone())
        .collect();
    let stored = if r.definition.is_none() {
        template.to_string()
    } else {
        stored_template(template, &inputs)?
    };
    if let Some(unused) = inputs
        .iter()
        .find(|n| !stored.contains(&format!("{{{{initial.{n}}}}}")))
    {
        return Err(RoutineError::invalid(
            "template",
            format!("the parameter {unused} is no longer used; keep {{{{{unused}}}}} in it"),
        ));
    }
    let Some(p) = the_prompt(doc) else {
        return Err(RoutineError::invalid(
            "prompt",
            format!(
                "{} has several steps; change it as a document (hearth routines export {})",
                r.name, r.name
            ),
        ));
    };
    *p = stored;
    Ok(())
}

/// `/routine_show <name>` (HTML): kind and where it is visible, description, the template with
/// `{{param}}` placeholders (each step's line for a multi-step routine), the parameters (name,
/// type, description, example) and the tools, marking those confirmed before each call.
///
/// Errors: [`RoutineError::NotFound`] (also for another chat's routine: visibility is the chat).
pub async fn show(svc: &Services, chat_id: i64, args: &str) -> Result<String, RoutineError> {
    let name = args.split_whitespace().next().unwrap_or("");
    if name.is_empty() {
        return Err(RoutineError::invalid(
            "name",
            "is missing: /routine_show <name> (see /routines)",
        ));
    }
    let r = find(svc, chat_id, name).await?;
    let mut doc = doc_of(svc, &r).await?;
    let personal = chat_id > 0;
    let mut lines = vec![format!(
        "<b>{}</b> — {} routine, {}{}",
        e(&r.name),
        kind_of(&r).as_str(),
        if personal {
            "personal (only here)"
        } else {
            "shared with this group"
        },
        if r.publication == crate::store::Publication::Draft {
            " · draft"
        } else {
            ""
        }
    )];
    if !r.description.is_empty() {
        lines.push(e(&r.description));
    }
    let def = doc.definition.clone();
    let one_step = def.steps.len() == 1;
    match the_prompt(&mut doc).filter(|_| one_step) {
        Some(p) => lines.push(format!("Template: {}", e(&shown_template(p)))),
        None => {
            lines.push("Steps:".into());
            for l in super::playbooks::step_lines(&doc) {
                lines.push(e(&shown_template(&l)));
            }
        }
    }
    if def.inputs.is_empty() {
        lines.push("Parameters: none".into());
    } else {
        lines.push("Parameters:".into());
        for i in &def.inputs {
            let mut s = format!("• {} ({})", e(&i.name), i.kind.as_str());
            if !i.description.is_empty() {
                s.push_str(&format!(" — {}", e(&i.description)));
            }
            if let Some(x) = i.example.as_deref().filter(|x| !x.is_empty()) {
                s.push_str(&format!(", e.g. {}", e(x)));
            }
            if !i.required {
                s.push_str(" (optional)");
            }
            lines.push(s);
        }
    }
    let tools: Vec<String> = def
        .steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Prompt { tools, .. } => tools.clone(),
            _ => None,
        })
        .flatten()
        .collect();
    if !tools.is_empty() {
        let registry = hearth_tools();
        let confirm = def
            .recorded
            .as_ref()
            .map(|r| r.confirm.clone())
            .unwrap_or_default();
        let shown: Vec<String> = tools
            .iter()
            .map(|t| {
                let confirmed =
                    confirm.contains(t) || registry.get(t).is_some_and(|tool| tool.destructive());
                if confirmed {
                    format!("{} (confirmed before each call)", e(t))
                } else {
                    e(t)
                }
            })
            .collect();
        lines.push(format!("Tools: {}", shown.join(", ")));
    }
    let triggers = if doc.triggers.is_empty() {
        format!("manual (/{})", r.name)
    } else {
        doc.triggers.join(", ")
    };
    lines.push(format!("Triggers: {}", e(&triggers)));
    lines.push(format!(
        "Change it with /routine_edit {} prompt … or /routine_edit {} param &lt;name&gt; description …",
        e(&r.name),
        e(&r.name)
    ));
    Ok(lines.join("\n"))
}

const EDIT_USAGE: &str = "use /routine_edit <name> prompt <new template> or /routine_edit <name> param <parameter> description <text>";

/// `/routine_edit <name> prompt <template>` or `/routine_edit <name> param <pname> description
/// <text>` by `actor`: refused unless the actor is the routine's creator or a group admin
/// (nothing changes); the template's `{{param}}` must name parameters, and every parameter
/// must stay used. Saved through [`save_doc`] (the same validator and menu sync as any save).
/// Returns the reply (HTML).
///
/// Errors: [`RoutineError::NotFound`], [`RoutineError::Denied`], [`RoutineError::Invalid`]
/// naming the rule (an unknown placeholder is named).
pub async fn edit(
    svc: &Services,
    chat_id: i64,
    actor: Actor,
    args: &str,
) -> Result<String, RoutineError> {
    let mut words = args.splitn(3, char::is_whitespace);
    let (name, what, rest) = (
        words.next().unwrap_or("").trim(),
        words.next().unwrap_or("").trim(),
        words.next().unwrap_or("").trim(),
    );
    if name.is_empty() {
        return Err(RoutineError::invalid(
            "name",
            format!("is missing: {EDIT_USAGE}"),
        ));
    }
    // rights first: nobody learns more than "not allowed", and nothing changes
    let r = find_managed(svc, chat_id, name, actor).await?;
    let mut doc = doc_of(svc, &r).await?;
    let inputs: Vec<String> = doc
        .definition
        .inputs
        .iter()
        .map(|i| i.name.clone())
        .collect();
    let what_changed = match what {
        "prompt" | "template" => {
            if rest.is_empty() {
                return Err(RoutineError::invalid(
                    "prompt",
                    format!("is missing: /routine_edit {} prompt <new template>", r.name),
                ));
            }
            set_template(&r, &mut doc, rest)?;
            "template".to_string()
        }
        "param" => {
            let mut w = rest.splitn(3, char::is_whitespace);
            let (pname, field, text) = (
                w.next().unwrap_or("").trim(),
                w.next().unwrap_or("").trim(),
                w.next().unwrap_or("").trim(),
            );
            if field != "description" || text.is_empty() {
                return Err(RoutineError::invalid("param", EDIT_USAGE));
            }
            let Some(input) = doc.definition.inputs.iter_mut().find(|i| i.name == pname) else {
                return Err(RoutineError::invalid(
                    "param",
                    format!(
                        "'{}' is not a parameter of {}; {}",
                        crate::context::clip(pname, 40),
                        r.name,
                        if inputs.is_empty() {
                            "it has none".to_string()
                        } else {
                            format!("its parameters are {}", inputs.join(", "))
                        }
                    ),
                ));
            };
            input.description = text.to_string();
            format!("the description of {pname}")
        }
        _ => return Err(RoutineError::invalid("edit", EDIT_USAGE)),
    };
    match save_doc(svc, chat_id, actor, &doc).await {
        Ok(saved) => Ok(format!(
            "Routine <b>{}</b>: {} changed. See it with /routine_show {}.",
            e(&saved.routine.name),
            e(&what_changed),
            e(&saved.routine.name)
        )),
        Err(SaveError::Invalid(v)) => Ok(super::playbooks::errors_html("Nothing was changed:", &v)),
        Err(SaveError::Routine(err)) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_read_with_bare_parameters_and_store_them_under_initial() {
        let stored =
            "Move {{initial.from}}'s chores to {{ initial.to }} on {{date}} ({{steps.1.output}})";
        assert_eq!(
            shown_template(stored),
            "Move {{from}}'s chores to {{to}} on {{date}} ({{steps.1.output}})"
        );
        let names = vec!["from".to_string(), "to".to_string()];
        assert_eq!(
            stored_template(&shown_template(stored), &names).unwrap(),
            "Move {{initial.from}}'s chores to {{initial.to}} on {{date}} ({{steps.1.output}})"
        );
        let err = stored_template("give {{form}} a hand", &names)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "template: {{form}} is not a parameter of this routine; its parameters are from, to"
        );
    }
}
