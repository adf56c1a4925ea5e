//! The run executor: starts runs (snapshot of the definition, inputs), claims claimable runs with
//! a conditional update and a lease, executes their steps in order, waits without holding a task
//! or a lock, and ends them (events `run_completed` / `run_failed`).
//!
//! Uses: services, agent, store, routines::{steps, vars, gate, progress}.

use chrono::{DateTime, Utc};

use super::RoutineError;
use crate::{services::Services, store::RunSource};

/// A run to start.
#[derive(Debug, Clone)]
pub struct StartRun {
    pub routine_id: i64,
    pub source: RunSource,
    pub trigger_id: Option<i64>,
    /// The run owner (the member who started it by hand, else the routine's owner).
    pub started_by: i64,
    /// Initial inputs (`{{initial.<name>}}`); missing optional inputs take their default.
    pub inputs: serde_json::Map<String, serde_json::Value>,
    /// The slot a scheduled fire was for (UTC).
    pub scheduled_for: Option<DateTime<Utc>>,
    pub catch_up: bool,
    /// Set for the child run of a `routine` step.
    pub parent_run_id: Option<i64>,
    pub depth: i32,
}

/// What [`start_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A pending run with this id (a sweep starts it within a tick).
    Run(i64),
    /// A run recorded `skipped` with this id and reason ("already running", "paused", …).
    Skipped(i64, String),
}

/// Start a run of the routine: check it may run, take the snapshot, insert the run `pending`.
///
/// Errors: [`RoutineError::NotFound`], [`RoutineError::Invalid`] (a required input missing, a
/// draft), storage.
pub async fn start_run(svc: &Services, req: StartRun) -> Result<Started, RoutineError> {
    let _ = (svc, req);
    Err(RoutineError::invalid(
        "run",
        "multi-step runs are not available in this build",
    ))
}
