//! Waking a run's waiting or taken-over step: a wait that is over or resolved, a confirmation
//! resolved, an awaited event, a dead holder's step taken over.
//!
//! Uses: the run executor's types and helpers (`super`), `super::steps` (running a step again),
//! services, store, events, routines::{steps, progress}, format.

use std::time::Instant;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde_json::{json, Value};

use super::{
    done, failed, latest_at, next_of, notice,
    steps::{branch_to, run_step},
    Ctx, Flow,
};
use crate::routines::{progress, steps::StepKind};
use crate::{
    events::HearthEvent,
    format,
    services::Services,
    store::{
        RunChange, RunStatus, StepChange, StepRunRow, StepStatus, StepType, StoreResult,
        WorkflowStatus,
    },
    types::Button,
};

/// Was the wait just written already resolved (a gate decided, a child ended, confirmations
/// answered, an event arrived) before the run was marked waiting?
pub(super) async fn wait_resolved(
    ctx: &Ctx<'_>,
    waiting_for: &str,
    step_id: Option<i64>,
) -> StoreResult<bool> {
    let svc = ctx.svc;
    if let Some(child) = waiting_for.strip_prefix("child:") {
        let Ok(id) = child.parse::<i64>() else {
            return Ok(false);
        };
        return Ok(svc
            .store
            .run(id)
            .await?
            .is_some_and(|r| !r.status.is_active()));
    }
    if let Some(ids) = waiting_for.strip_prefix("confirm:") {
        let ids = parse_ids(ids);
        return Ok(svc.store.count_pending_workflows(&ids).await? == 0);
    }
    if waiting_for.starts_with("approval:") || waiting_for.starts_with("event:") {
        if let Some(id) = step_id {
            return Ok(svc
                .store
                .step_run(id)
                .await?
                .is_some_and(|s| s.status != StepStatus::Waiting));
        }
    }
    Ok(false)
}

fn parse_ids(s: &str) -> Vec<i64> {
    s.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

/// A woken run: finish the waiting step of position `idx` and decide where to go.
pub(super) async fn resume_step(ctx: &Ctx<'_>, idx: usize) -> StoreResult<Flow> {
    let svc = ctx.svc;
    let now = svc.clock.now();
    let t0 = Instant::now();
    let step = ctx.snap.def.steps[idx].clone();
    let waiting_for = ctx.run.waiting_for.clone().unwrap_or_default();
    let Some(sr) = latest_at(ctx, idx).await? else {
        return run_step(ctx, idx, false).await;
    };
    let duration = |sr: &StepRunRow| {
        sr.started_at
            .map(|s| (now - s).num_milliseconds().max(0))
            .unwrap_or(0)
    };
    let finish = |sr: &StepRunRow, output: String| StepChange {
        duration_ms: duration(sr),
        prompt_tokens: sr.prompt_tokens,
        completion_tokens: sr.completion_tokens,
        cost_usd: sr.cost_usd,
        workflow_id: sr.workflow_id,
        reason: sr.reason.clone(),
        counted: true, // added to the run's totals when the step began waiting
        ..done(sr.id, output, t0, now)
    };
    if waiting_for.starts_with("approval:") || sr.kind == StepType::Approval {
        if sr.status == StepStatus::Waiting {
            // the gate has not decided yet (the safety net fired early): look again in a minute
            return Ok(Flow::Wait {
                step: None,
                waiting_for,
                wake_at: Some(now + Duration::minutes(1)),
            });
        }
        let outcome = sr.output.clone().unwrap_or_default();
        if outcome == "approved" {
            if matches!(step.kind, StepKind::Approval { .. }) {
                return Ok(Flow::Next {
                    step: finish(&sr, outcome),
                    next: next_of(idx),
                    loops: None,
                });
            }
            return run_step(ctx, idx, true).await;
        }
        if let StepKind::Approval {
            on_reject: Some(target),
            max_loops,
            ..
        } = &step.kind
        {
            if outcome == "rejected" {
                return branch_to(ctx, idx, Some(target), *max_loops, finish(&sr, outcome), t0);
            }
        }
        return Ok(Flow::Fail {
            step: None,
            reason: if outcome.is_empty() {
                "rejected".into()
            } else {
                outcome
            },
        });
    }
    if let Some(child) = waiting_for.strip_prefix("child:") {
        let cid: i64 = child.parse().unwrap_or_default();
        let Some(c) = svc.store.run(cid).await? else {
            return Ok(failed(sr.id, "the child run is gone", t0, now));
        };
        if c.status.is_active() {
            return Ok(Flow::Wait {
                step: None,
                waiting_for,
                wake_at: None,
            });
        }
        return Ok(match c.status {
            RunStatus::Completed | RunStatus::Silent => {
                let out = svc
                    .store
                    .step_runs_of(cid)
                    .await?
                    .into_iter()
                    .filter(|s| s.status == StepStatus::Completed && s.output.is_some())
                    .max_by_key(|s| s.id)
                    .and_then(|s| s.output)
                    .or(c.output)
                    .unwrap_or_default();
                let mut ch = finish(&sr, out);
                ch.prompt_tokens = c.prompt_tokens;
                ch.completion_tokens = c.completion_tokens;
                ch.cost_usd = c.cost_usd;
                ch.counted = false; // the child's spending counts for its parent
                Flow::Next {
                    step: ch,
                    next: next_of(idx),
                    loops: None,
                }
            }
            other => failed(
                sr.id,
                format!(
                    "child run {cid} {}: {}",
                    other.as_str(),
                    c.reason.unwrap_or_default()
                ),
                t0,
                now,
            ),
        });
    }
    if let Some(ids) = waiting_for.strip_prefix("confirm:") {
        let ids = parse_ids(ids);
        if svc.store.count_pending_workflows(&ids).await? > 0 {
            let expiry = Duration::from_std(svc.config.agent.confirm_expiry)
                .unwrap_or(Duration::minutes(10));
            return Ok(Flow::Wait {
                step: None,
                waiting_for,
                wake_at: Some(now + expiry + Duration::minutes(1)),
            });
        }
        // a replay whose call was not confirmed ends cancelled, saying what was done (issue 10)
        if ctx.snap.def.recorded.is_some() {
            if let Some(flow) = super::replay::unconfirmed_end(ctx, &sr, &ids).await? {
                return Ok(flow);
            }
        }
        let out = sr.output.clone().unwrap_or_default();
        return Ok(Flow::Next {
            step: finish(&sr, out),
            next: next_of(idx),
            loops: None,
        });
    }
    // timers and events
    match sr.status {
        StepStatus::Waiting => {
            let out = if waiting_for.starts_with("event:") {
                "timeout"
            } else {
                "done"
            };
            Ok(Flow::Next {
                step: finish(&sr, out.into()),
                next: next_of(idx),
                loops: None,
            })
        }
        StepStatus::Completed => {
            // an event completed it: the run row only moves on
            Ok(Flow::Next {
                step: finish(&sr, sr.output.clone().unwrap_or_default()),
                next: next_of(idx),
                loops: None,
            })
        }
        _ => run_step(ctx, idx, false).await,
    }
}

/// A run whose holder died mid-step: re-run the step, unless it may have called a destructive
/// tool (a prompt, a destructive tool, a child routine): then it is `interrupted` and the run
/// waits for a member to choose Retry or Skip.
pub(super) async fn take_over(ctx: &Ctx<'_>, idx: usize) -> StoreResult<Flow> {
    let svc = ctx.svc;
    let now = svc.clock.now();
    let t0 = Instant::now();
    let step = &ctx.snap.def.steps[idx];
    let latest = latest_at(ctx, idx).await?;
    if ctx.run.waiting_for.is_some()
        && latest.as_ref().map(|s| s.status) == Some(StepStatus::Waiting)
    {
        // its holder died after claiming a lapsed wait, before resuming it: resume it now
        return resume_step(ctx, idx).await;
    }
    let Some(sr) = latest.filter(|s| s.status == StepStatus::Running) else {
        return run_step(ctx, idx, false).await;
    };
    let risky = match &step.kind {
        StepKind::Prompt { .. } | StepKind::Routine { .. } => sr.kind != StepType::Approval,
        StepKind::Tool { tool, .. } => ctx
            .eng
            .agent()
            .tools()
            .get(tool)
            .is_none_or(|t| t.destructive()),
        _ => false,
    };
    if !risky {
        let ch = StepChange {
            status: StepStatus::Failed,
            output: None,
            error: Some("its process stopped; run again".into()),
            ..done(sr.id, "", t0, now)
        };
        if !svc
            .store
            .advance_run(
                ctx.run.id,
                ctx.owner(),
                &RunChange::running(idx as i32, ctx.lease()),
                Some(&ch),
            )
            .await?
        {
            return Ok(Flow::Stop);
        }
        ctx.noted(&ch);
        return run_step(ctx, idx, false).await;
    }
    let ch = StepChange {
        status: StepStatus::Interrupted,
        output: None,
        error: Some("interrupted: its process stopped mid-step".into()),
        ..done(sr.id, "", t0, now)
    };
    let c = RunChange {
        status: RunStatus::Waiting,
        waiting_for: Some("interrupted".into()),
        wake_at: None,
        ..RunChange::running(idx as i32, ctx.lease())
    };
    if svc
        .store
        .advance_run(ctx.run.id, ctx.owner(), &c, Some(&ch))
        .await?
    {
        tracing::warn!(
            run = ctx.run.id,
            step = idx,
            "run step interrupted; asking Retry/Skip"
        );
        let html = format!(
            "Run {} of <b>{}</b>: {} was cut off while it ran (hearth stopped) and may already have changed something. Retry it, or skip it?",
            ctx.run.id,
            format::escape_html(&ctx.routine.name),
            format::escape_html(&ctx.label(idx)),
        );
        let buttons = vec![vec![
            Button {
                label: "Retry".into(),
                data: format!("run:retry:{}", ctx.run.id),
            },
            Button {
                label: "Skip".into(),
                data: format!("run:skip:{}", ctx.run.id),
            },
        ]];
        notice(svc, ctx.chat_id(), html, buttons).await;
        if !ctx.snap.single {
            progress::refresh(svc, ctx.run.id).await;
        }
    }
    Ok(Flow::Stop)
}

/// The next local `HH:MM` in `zone` strictly after `now` (UTC).
pub(super) fn next_local(
    hhmm: &str,
    now: DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> Option<DateTime<Utc>> {
    let t = NaiveTime::parse_from_str(hhmm.trim(), "%H:%M").ok()?;
    let local = now.with_timezone(&zone).date_naive();
    for d in 0..3 {
        let day = local + Duration::days(d);
        let at = crate::schedule::resolve_local(day.and_time(t), zone);
        if at > now {
            return Some(at);
        }
    }
    None
}

/// A confirmation was resolved (confirmed, cancelled or expired): wake the runs of its chat
/// whose `prompt` step waits for it once none of their confirmations is pending any more.
pub async fn on_confirmation_resolved(svc: &Services, chat_id: i64, workflow_id: i64) {
    let res: StoreResult<()> = async {
        for run in svc.store.runs_waiting_for(chat_id, "confirm:").await? {
            let Some(w) = run.waiting_for.as_deref() else {
                continue;
            };
            let ids = parse_ids(w.trim_start_matches("confirm:"));
            if !ids.contains(&workflow_id) {
                continue;
            }
            // a replay stops at its first unconfirmed call: its other confirmations are
            // cancelled now, so no later Confirm runs a call of a run that ended (issue 10)
            let recorded = super::snapshot_of(&run).is_some_and(|s| s.def.recorded.is_some());
            let declined = svc.store.workflow(workflow_id).await?.is_some_and(|w| {
                !matches!(w.status, WorkflowStatus::Approved | WorkflowStatus::Pending)
            });
            if recorded && declined {
                cancel_pending(
                    svc,
                    &ids,
                    "an earlier action of this routine was not confirmed",
                )
                .await?;
            }
            if svc.store.count_pending_workflows(&ids).await? == 0 {
                svc.store.wake_run(run.id, Some(w), svc.clock.now()).await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(workflow_id, error = %e, "run waiting on a confirmation not woken");
    }
}

/// Cancel the still-pending workflows among `ids` (a replay's confirmations) with `reason`.
pub(super) async fn cancel_pending(svc: &Services, ids: &[i64], reason: &str) -> StoreResult<()> {
    for id in ids {
        if let Some(w) = svc.store.workflow(*id).await? {
            if w.status == WorkflowStatus::Pending {
                // boxed: the cancellation's hook comes back to `on_confirmation_resolved`
                Box::pin(crate::workflow::cancel_by_system(svc, &w, reason)).await?;
            }
        }
    }
    Ok(())
}

/// An event arrived: complete the event waits of its chat whose kind and filters match (the
/// event's fields become the step's output) and wake their runs. Returns how many.
pub async fn on_event_wait(svc: &Services, ev: &HearthEvent) -> StoreResult<usize> {
    let kind = ev.kind();
    let runs = svc
        .store
        .runs_waiting_for(ev.chat_id(), &format!("event:{kind}"))
        .await?;
    if runs.is_empty() {
        return Ok(0);
    }
    let fields = serde_json::to_value(ev).unwrap_or(Value::Null);
    let mut n = 0;
    for run in runs {
        if run.waiting_for.as_deref() != Some(&format!("event:{kind}")) {
            continue;
        }
        let Some(sr) = svc
            .store
            .step_runs_of(run.id)
            .await?
            .into_iter()
            .filter(|s| s.position == run.current_step && s.status == StepStatus::Waiting)
            .max_by_key(|s| s.id)
        else {
            continue;
        };
        let filters = sr
            .input
            .as_deref()
            .and_then(|i| serde_json::from_str::<Value>(i).ok())
            .and_then(|v| v.get("filters").cloned())
            .unwrap_or_else(|| json!({}));
        let matches = filters.as_object().is_none_or(|f| {
            f.iter().all(|(k, want)| {
                let want = want.as_str().unwrap_or_default();
                let got = match fields.get(k) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => "none".into(),
                    Some(other) => other.to_string(),
                };
                got.eq_ignore_ascii_case(want)
            })
        });
        if matches
            && svc
                .store
                .complete_waiting_step(sr.id, run.id, &fields.to_string(), svc.clock.now())
                .await?
        {
            n += 1;
        }
    }
    Ok(n)
}
