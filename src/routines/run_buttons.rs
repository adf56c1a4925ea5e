//! Buttons on run messages (issue 9 contract): callback data `run:go:<id>` (cost warning:
//! Continue), `run:stop:<id>` (Stop), `run:retry:<id>` (interrupted step: Retry it) and
//! `run:skip:<id>` (Skip it), at most 64 bytes. A tap is authorized BEFORE anything changes:
//! only the run owner (`started_by`) or an admin of the run's chat; anyone else gets a refusal
//! toast. Each effect is one conditional update on `status = waiting AND waiting_for =
//! 'cost' | 'interrupted'`, so a stale or repeated tap changes nothing ("no longer active").
//! The engine's sweep picks the run up within a tick.
//!
//! Uses: services, store, routines::{runs, progress}.

use super::runs;
use crate::{
    routines::Actor,
    services::Services,
    store::{RunRow, RunStatus, StoreResult},
    types::{Button, CallbackQuery},
};

/// Callback data prefix of run buttons.
pub const PREFIX: &str = "run:";

/// What a run button does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTap {
    /// Cost warning: continue the run.
    Go,
    /// Cost warning: stop the run (`failed`, "stopped at the cost question").
    Stop,
    /// Interrupted step: run it again as a new attempt.
    Retry,
    /// Interrupted step: skip it and go on.
    Skip,
}

impl RunTap {
    fn word(self) -> &'static str {
        match self {
            RunTap::Go => "go",
            RunTap::Stop => "stop",
            RunTap::Retry => "retry",
            RunTap::Skip => "skip",
        }
    }

    /// The button's callback data for run `run_id`.
    pub fn data(self, run_id: i64) -> String {
        format!("{PREFIX}{}:{run_id}", self.word())
    }
}

/// Parse `run:go:12` → (Go, 12).
pub fn parse_data(data: &str) -> Option<(RunTap, i64)> {
    let rest = data.strip_prefix(PREFIX)?;
    let (w, id) = rest.split_once(':')?;
    let tap = match w {
        "go" => RunTap::Go,
        "stop" => RunTap::Stop,
        "retry" => RunTap::Retry,
        "skip" => RunTap::Skip,
        _ => return None,
    };
    let id: i64 = id.parse().ok().filter(|n| *n > 0)?;
    Some((tap, id))
}

/// Continue / Stop, for the cost question.
pub fn for_cost(run_id: i64) -> Vec<Vec<Button>> {
    vec![vec![
        Button {
            label: "▶️ Continue".into(),
            data: RunTap::Go.data(run_id),
        },
        Button {
            label: "⏹ Stop".into(),
            data: RunTap::Stop.data(run_id),
        },
    ]]
}

/// Retry / Skip, for an interrupted step.
pub fn for_interrupted(run_id: i64) -> Vec<Vec<Button>> {
    vec![vec![
        Button {
            label: "🔁 Retry the step".into(),
            data: RunTap::Retry.data(run_id),
        },
        Button {
            label: "⏭ Skip it".into(),
            data: RunTap::Skip.data(run_id),
        },
    ]]
}

/// The buttons a run's messages carry now: cost or interrupted choices while it waits on one,
/// else none.
pub fn for_run(run: &RunRow) -> Vec<Vec<Button>> {
    if run.status != RunStatus::Waiting {
        return vec![];
    }
    match run.waiting_for.as_deref() {
        Some("cost") => for_cost(run.id),
        Some("interrupted") => for_interrupted(run.id),
        _ => vec![],
    }
}

/// Handle a tap when its data is a run button; false when it is not one (the caller answers).
/// The tap is answered at once with a toast; on success the run's progress message is
/// refreshed (its buttons go away).
///
/// Errors: storage (the callback is still answered).
pub async fn on_callback(svc: &Services, c: &CallbackQuery) -> StoreResult<bool> {
    if !c.data.starts_with(PREFIX) {
        return Ok(false);
    }
    let Some((tap, run_id)) = parse_data(&c.data) else {
        answer(svc, c, "This button is no longer active.").await;
        return Ok(true);
    };
    match act(svc, c, tap, run_id).await {
        Ok(text) => {
            answer(svc, c, &text).await;
            Ok(true)
        }
        Err(e) => {
            answer(svc, c, "Sorry, that didn't work. Please try again.").await;
            Err(e)
        }
    }
}

async fn act(svc: &Services, c: &CallbackQuery, tap: RunTap, run_id: i64) -> StoreResult<String> {
    let stale = "This button is no longer active.".to_string();
    let v = match runs::load(svc, run_id).await {
        Ok(Some(v)) if v.chat_id() == c.chat.id => v,
        Ok(_) => return Ok(stale),
        Err(crate::routines::RoutineError::Store(e)) => return Err(e),
        Err(_) => return Ok(stale),
    };
    // authorize against current membership before any change (a tap registers nobody)
    let admin = match svc.store.member(c.chat.id, c.from.id).await? {
        Some(m) => m.active && m.is_admin(),
        None => false,
    };
    let actor = Actor {
        user_id: c.from.id,
        admin,
    };
    if !runs::may_control(&v, actor) {
        return Ok("Only the member who started this run or an admin can decide.".into());
    }
    let now = svc.clock.now();
    let done = match tap {
        RunTap::Go => svc.store.run_cost_continue(run_id).await?,
        RunTap::Stop => svc.store.run_cost_stop(run_id, now).await?,
        RunTap::Retry => svc.store.run_interrupted_retry(run_id).await?,
        RunTap::Skip => {
            let last = v.step_count().saturating_sub(1) as i32;
            svc.store
                .run_interrupted_skip(run_id, v.run.current_step >= last, now)
                .await?
        }
    };
    if !done {
        return Ok(stale);
    }
    tracing::info!(run_id, tap = tap.word(), "run button");
    super::progress::refresh(svc, run_id).await;
    Ok(match tap {
        RunTap::Go => "Continuing the run.",
        RunTap::Stop => "Run stopped.",
        RunTap::Retry => "Retrying the step.",
        RunTap::Skip => "Step skipped.",
    }
    .into())
}

async fn answer(svc: &Services, c: &CallbackQuery, text: &str) {
    if let Err(e) = svc
        .outbox
        .messenger()
        .answer_callback(&c.id, Some(text), false)
        .await
    {
        tracing::warn!(error = %e, "callback not answered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_and_fits() {
        for tap in [RunTap::Go, RunTap::Stop, RunTap::Retry, RunTap::Skip] {
            let d = tap.data(i64::MAX);
            assert!(d.len() <= 64, "{d}");
            assert_eq!(parse_data(&d), Some((tap, i64::MAX)));
        }
        for bad in [
            "run:x:1",
            "run:go:",
            "run:go:-1",
            "run:go:0",
            "wf:a:1",
            "run:go:1:2",
        ] {
            assert_eq!(parse_data(bad), None, "{bad}");
        }
    }
}
