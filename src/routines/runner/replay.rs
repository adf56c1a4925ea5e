//! The end of a recorded routine's replay (issue 10, item 5): what the member is told when a
//! confirmation is not given and when the step fails part-way.
//!
//! - A replay's `prompt` step waits for its confirmations (`confirm:<ids>`). Once none is pending,
//!   if any was not confirmed (cancelled, expired, rejected) the run ends `cancelled` — not
//!   `completed` — with a notice saying what was done before it (the calls that ran, the
//!   confirmations given) and what was not (the unconfirmed calls). Nothing else runs.
//! - A replay step that fails says in its error what had been done and what had not.
//!
//! Uses: the run executor's types (`super`), store (turns, tool calls, workflows), progress.

use std::time::Instant;

use serde_json::Value;

use super::{done, end_change, notice, Ctx, Flow};
use crate::{
    context::clip,
    format::escape_html as e,
    routines::progress,
    store::{
        NewToolCall, RunStatus, StepChange, StepRunRow, StepStatus, StoreResult, ToolCallStatus,
        WorkflowStatus,
    },
};

/// The run reason of a replay ended by an unconfirmed call.
pub(super) const NOT_CONFIRMED: &str = "not confirmed";

/// One call in a few words: `chore_list(of=Carol)`, values clipped to 40 characters.
pub(super) fn call_text(name: &str, args_json: &str) -> String {
    let args = serde_json::from_str::<Value>(args_json)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let parts: Vec<String> = args
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{k}={}", clip(&v, 40))
        })
        .collect();
    format!("{name}({})", parts.join(", "))
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join("; ")
    }
}

/// A failed replay step's error with what was done and what was not (from the turn's calls).
pub(super) fn failure_text(error: &str, calls: &[NewToolCall]) -> String {
    let ran: Vec<String> = calls
        .iter()
        .filter(|c| c.status == ToolCallStatus::Ran)
        .map(|c| call_text(&c.name, &c.arguments))
        .collect();
    let held: Vec<String> = calls
        .iter()
        .filter(|c| c.status == ToolCallStatus::Held)
        .map(|c| call_text(&c.name, &c.arguments))
        .collect();
    let mut out = format!("{error}. Done: {}.", list(&ran));
    if !held.is_empty() {
        out.push_str(&format!(" Cancelled before it ran: {}.", held.join("; ")));
    }
    out.push_str(" Not done: the rest of the task.");
    out
}

/// A replay step whose confirmations are all answered: when one was not confirmed, end the run
/// `cancelled` with the notice (see the module) and return `Some(Flow::Stop)`; `None` when every
/// one was confirmed (the run goes on as usual).
pub(super) async fn unconfirmed_end(
    ctx: &Ctx<'_>,
    sr: &StepRunRow,
    ids: &[i64],
) -> StoreResult<Option<Flow>> {
    let svc = ctx.svc;
    let mut confirmed = Vec::new();
    let mut refused = Vec::new();
    for id in ids {
        let Some(wf) = svc.store.workflow(*id).await? else {
            refused.push(format!("#{id} (gone)"));
            continue;
        };
        let title = clip(&wf.target_title, 200);
        match wf.status {
            WorkflowStatus::Approved => confirmed.push(format!("{title} (confirmed)")),
            WorkflowStatus::Expired => refused.push(format!("{title} (not confirmed in time)")),
            other => refused.push(format!("{title} ({other})")),
        }
    }
    if refused.is_empty() {
        return Ok(None);
    }
    // what ran before the confirmation: the step's turn's calls that ran
    let mut done_calls = Vec::new();
    if let Some(started) = sr.started_at {
        if let Some(turn) = svc
            .store
            .first_turn_since(ctx.chat_id(), ctx.run_owner(), started)
            .await?
        {
            for c in svc.store.tool_calls(turn.id).await? {
                if c.status == ToolCallStatus::Ran {
                    done_calls.push(call_text(&c.name, &c.arguments));
                }
            }
        }
    }
    done_calls.extend(confirmed);
    let now = svc.clock.now();
    let summary = format!(
        "Done before it: {}. Not done: {}.",
        list(&done_calls),
        refused.join("; ")
    );
    let step = StepChange {
        status: StepStatus::Skipped,
        output: Some(summary.clone()),
        reason: Some(NOT_CONFIRMED.into()),
        workflow_id: sr.workflow_id,
        prompt_tokens: sr.prompt_tokens,
        completion_tokens: sr.completion_tokens,
        cost_usd: sr.cost_usd,
        counted: true, // added to the run's totals when the step began waiting
        ..done(sr.id, "", Instant::now(), now)
    };
    let mut c = end_change(
        &ctx.run,
        RunStatus::Cancelled,
        Some(NOT_CONFIRMED.into()),
        svc,
    );
    c.output = Some(clip(&summary, 200));
    if !svc
        .store
        .advance_run(ctx.run.id, ctx.owner(), &c, Some(&step))
        .await?
    {
        return Ok(Some(Flow::Stop));
    }
    tracing::info!(
        run = ctx.run.id,
        "replay cancelled: a call was not confirmed"
    );
    let html = format!(
        "Run {} of <b>{}</b> stopped: not confirmed, so nothing more was changed.\n\
         Done before it: {}.\nNot done: {}.",
        ctx.run.id,
        e(&ctx.routine.name),
        e(&list(&done_calls)),
        e(&refused.join("; "))
    );
    notice(svc, ctx.chat_id(), html, vec![]).await;
    progress::refresh(svc, ctx.run.id).await;
    Ok(Some(Flow::Stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_in_a_few_words() {
        assert_eq!(
            call_text("chore_update", r#"{"chore":"Dishes","action":"assign"}"#),
            "chore_update(action=assign, chore=Dishes)"
        );
        assert_eq!(call_text("chore_list", "{}"), "chore_list()");
        let calls = vec![NewToolCall {
            name: "chore_list".into(),
            arguments: r#"{"of":"Carol"}"#.into(),
            result: "{}".into(),
            status: ToolCallStatus::Ran,
            destructive: false,
        }];
        assert_eq!(
            failure_text("timeout", &calls),
            "timeout. Done: chore_list(of=Carol). Not done: the rest of the task."
        );
    }
}
