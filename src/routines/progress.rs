//! A run's progress message: one message per run, sent at its first step and edited in place as
//! steps finish (coalesced to at most one edit a second per run).
//!
//! Uses: services (store, outbox, clock), format.

use crate::services::Services;

/// Send or edit the run's progress message to match its rows now. Errors are logged, not
/// returned: progress never stops a run.
pub async fn refresh(svc: &Services, run_id: i64) {
    let _ = (svc, run_id);
}
