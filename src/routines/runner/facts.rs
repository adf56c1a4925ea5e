//! Variables and conditions: the template variables of a step, rendering templates, a `check`
//! step's value and test, and wait spans.
//!
//! Uses: the run executor's `Ctx` (`super`), `super::steps::find_member`, store,
//! routines::{vars, validate, steps}.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use super::{steps::find_member, Ctx};
use crate::routines::{
    steps::{Check, Test},
    vars::Vars,
    zone_of,
};
use crate::services::Services;
use crate::store::{ChoreStatus, StepStatus, StoreResult};

/// The template variables for step `idx` (issue 9 contract, rendered by [`crate::routines::vars`]):
/// `initial`, `steps` by name and by 1-based number (`output`, `reason`; the latest completed
/// step run of each position), `chat.name`, `date` (local `YYYY-MM-DD`), `run.id`, `retry`
/// (`reason`, `count`).
pub(super) async fn context(ctx: &Ctx<'_>, idx: usize) -> StoreResult<Vars> {
    let svc = ctx.svc;
    let all = ctx.step_runs().await?;
    let chat = ctx.chat().await?;
    let date = svc
        .clock
        .now()
        .with_timezone(&zone_of(&ctx.routine))
        .format("%Y-%m-%d")
        .to_string();
    let mut vars = Vars::new(chat.map(|c| c.title).unwrap_or_default(), date, ctx.run.id);
    let initial: Map<String, Value> = ctx
        .run
        .input
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    for (k, v) in initial {
        let text = match v {
            Value::String(s) => s,
            other => other.to_string(),
        };
        vars = vars.initial(k, text);
    }
    for (i, s) in ctx.snap.def.steps.iter().enumerate() {
        let latest = all
            .iter()
            .filter(|r| r.position == i as i32 && r.status == StepStatus::Completed)
            .filter(|r| r.kind == s.kind.step_type())
            .max_by_key(|r| r.id);
        if let Some(l) = latest {
            vars = vars.step(
                i + 1,
                s.name.as_deref(),
                l.output.clone().unwrap_or_default(),
                l.reason.clone().unwrap_or_default(),
            );
        }
    }
    let passes = all
        .iter()
        .filter(|r| r.position == idx as i32 && r.status == StepStatus::Completed)
        .count();
    if passes > 0 {
        let reason = all
            .iter()
            .filter(|r| r.position > idx as i32 && r.status == StepStatus::Completed)
            .max_by_key(|r| r.id)
            .and_then(|r| r.reason.clone())
            .unwrap_or_default();
        vars = vars.retry(reason, passes as u32);
    }
    Ok(vars)
}

/// Render a step template (strict: an unknown variable is an error naming it).
pub(super) fn render(template: &str, vars: &Vars) -> Result<String, String> {
    crate::routines::vars::render(template, vars).map_err(|e| format!("template: {e}"))
}

/// Render the strings inside a JSON value (tool arguments).
pub(crate) fn render_value(v: &Value, ctx: &Vars) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(render(s, ctx)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_value(x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut o = Map::new();
            for (k, x) in m {
                o.insert(k.clone(), render_value(x, ctx)?);
            }
            Value::Object(o)
        }
        other => other.clone(),
    })
}

/// A condition's value: a hearth fact or a rendered template.
pub(super) async fn check_value(
    ctx: &Ctx<'_>,
    check: &Check,
    vars: &Vars,
) -> StoreResult<Result<String, String>> {
    let svc = ctx.svc;
    let v = check.value.trim();
    let Some(fact) = v.strip_prefix("fact:") else {
        return Ok(render(v, vars));
    };
    let (name, arg) = fact.split_once(':').unwrap_or((fact, ""));
    let arg = arg.trim();
    if name != "workflow_status" {
        return chat_fact(svc, ctx.chat_id(), name, arg, vars, ctx.run.started_at).await;
    }
    let pos = ctx
        .snap
        .def
        .steps
        .iter()
        .position(|s| s.name.as_deref() == Some(arg));
    let wf = match pos {
        Some(p) => ctx
            .step_runs()
            .await?
            .into_iter()
            .filter(|s| s.position == p as i32 && s.workflow_id.is_some())
            .max_by_key(|s| s.id)
            .and_then(|s| s.workflow_id),
        None => return Ok(Err(format!("fact: no step named '{arg}'"))),
    };
    Ok(Ok(match wf {
        Some(id) => svc
            .store
            .workflow(id)
            .await?
            .map(|w| w.status.as_str().to_string())
            .unwrap_or_else(|| "none".into()),
        None => "none".into(),
    }))
}

/// The hearth facts a condition may test (`fact:<name>:<arg>`) that depend on the chat, not on
/// the run's own steps (`workflow_status` is the caller's): `overdue_count`, `chore_status`,
/// `member_claimed` (since `started_at`), `elapsed_minutes` (since `started_at`, UTC). Shared by
/// the run executor and the dry run (`routines::dryrun`), so both read the same facts. `Err`:
/// an unknown fact or a template that does not render, as a message for the run's error.
pub(crate) async fn chat_fact(
    svc: &Services,
    chat_id: i64,
    name: &str,
    arg: &str,
    vars: &Vars,
    started_at: DateTime<Utc>,
) -> StoreResult<Result<String, String>> {
    let now = svc.clock.now();
    Ok(Ok(match name {
        "overdue_count" => svc
            .store
            .open_chores(chat_id)
            .await?
            .iter()
            .filter(|c| matches!(c.status, ChoreStatus::Todo | ChoreStatus::Pending))
            .filter(|c| c.next_due.is_some_and(|d| d < now))
            .count()
            .to_string(),
        "chore_status" => {
            let chores = svc.store.open_chores(chat_id).await?;
            let id: Option<i64> = arg.parse().ok();
            chores
                .iter()
                .find(|c| Some(c.id) == id || c.title.eq_ignore_ascii_case(arg))
                .map(|c| c.status.as_str().to_string())
                .unwrap_or_else(|| "none".into())
        }
        "member_claimed" => {
            let who = match render(arg, vars) {
                Ok(w) => w,
                Err(e) => return Ok(Err(e)),
            };
            let Some(uid) = find_member(svc, chat_id, &who).await? else {
                return Ok(Ok("no".into()));
            };
            let claimed = svc.store.open_chores(chat_id).await?.iter().any(|c| {
                c.assignee_id == Some(uid)
                    && (c.status == ChoreStatus::Pending
                        || (c.completed_by == Some(uid)
                            && c.completed_at.is_some_and(|t| t >= started_at)))
            });
            if claimed { "yes" } else { "no" }.to_string()
        }
        "elapsed_minutes" => (now - started_at).num_minutes().to_string(),
        other => return Ok(Err(format!("fact: unknown fact '{other}'"))),
    }))
}

/// Apply a condition's test to `value`.
pub(crate) fn test(t: &Test, value: &str) -> Result<bool, String> {
    Ok(match t {
        Test::Contains(s) => value.to_lowercase().contains(&s.to_lowercase()),
        Test::Equals(s) => value.trim().eq_ignore_ascii_case(s.trim()),
        Test::Compare(expr) => {
            let Some((op, want)) = crate::routines::validate::parse_compare(expr) else {
                return Err(format!(
                    "compare: '{}' needs >, >=, <, <=, == or != and a number",
                    expr.trim()
                ));
            };
            let Some(got) = first_number(value) else {
                return Ok(false);
            };
            match op {
                ">=" => got >= want,
                "<=" => got <= want,
                "==" => got == want,
                "!=" => got != want,
                ">" => got > want,
                _ => got < want,
            }
        }
    })
}

/// The first number in a text ("3 chores" → 3).
fn first_number(s: &str) -> Option<f64> {
    let start = s.find(|c: char| c.is_ascii_digit() || c == '-')?;
    let tail: String = s[start..]
        .chars()
        .enumerate()
        .take_while(|(i, c)| c.is_ascii_digit() || *c == '.' || (*i == 0 && *c == '-'))
        .map(|(_, c)| c)
        .collect();
    tail.parse().ok()
}

/// A wait's or an expiry's span ("1d", "2h30m", "90s";
/// [`crate::routines::validate::parse_duration`]).
pub fn parse_span(s: &str) -> Option<Duration> {
    crate::routines::validate::parse_duration(s).and_then(|d| Duration::from_std(d).ok())
}
