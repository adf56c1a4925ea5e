//! The chore kinds' `WorkflowTarget` hook (registered in `app::core`): what a transition of a
//! chore verification, a personal verification or a chore deletion does to its chore, written
//! by the store in the transition's transaction, and how such requests read.
//!
//! The changes, in one place:
//! - verification approved → the chore completes and the completion is recorded (a recurring
//!   one is rescheduled in its group's zone and handed to the next assignee by rotation);
//! - verification rejected / expired / cancelled → the chore goes back to to-do (choresir's
//!   expired verification left the chore stuck forever);
//! - deletion approved → the chore is archived and the chore's other pending requests are
//!   cancelled; other deletion outcomes leave it alone.
//!
//! Uses: store, services, the chore rules of this module's parent, workflow (the hook trait).

use async_trait::async_trait;

use super::{archive_change, completion_change, reopen_change};
use crate::{
    context::clip,
    format::escape_html as e,
    services::Services,
    store::{
        ChoreStatus, Eligibility, StoreResult, TargetChange, WorkflowKind, WorkflowRow,
        WorkflowStatus,
    },
    workflow::WorkflowTarget,
};

/// The chore kinds cancelled along with an approved deletion (their target is gone).
const CHORE_KINDS: &[WorkflowKind] = &[
    WorkflowKind::ChoreVerification,
    WorkflowKind::ChoreDeletion,
    WorkflowKind::PersonalVerification,
];

/// The hook of the three chore kinds.
pub struct ChoreTargets;

#[async_trait]
impl WorkflowTarget for ChoreTargets {
    fn kinds(&self) -> &'static [WorkflowKind] {
        CHORE_KINDS
    }

    fn eligibility(&self, kind: WorkflowKind) -> Eligibility {
        match kind {
            WorkflowKind::PersonalVerification => Eligibility::Partner,
            _ => Eligibility::Others,
        }
    }

    fn what(&self, wf: &WorkflowRow) -> String {
        let t = clip(&wf.target_title, 80);
        match wf.kind {
            WorkflowKind::ChoreDeletion => format!("delete “{t}”"),
            WorkflowKind::PersonalVerification => format!("verify personal chore “{t}”"),
            _ => format!("verify “{t}”"),
        }
    }

    fn describe(&self, wf: &WorkflowRow, who: &str) -> String {
        let t = e(&clip(&wf.target_title, 80));
        match wf.kind {
            WorkflowKind::ChoreDeletion => format!("<b>{who}</b> wants to delete “{t}”"),
            WorkflowKind::PersonalVerification => {
                format!("<b>{who}</b> says their personal chore “{t}” is done")
            }
            _ => format!("<b>{who}</b> says “{t}” is done"),
        }
    }

    fn request_notice(&self, wf: &WorkflowRow, who: &str, expires_in: &str) -> String {
        let ask = match wf.kind {
            WorkflowKind::ChoreDeletion => "Approve?",
            _ => "Verify?",
        };
        format!(
            "🙋 {} — {ask}\n<i>Tap a button or reply “approve” / “reject, reason”. Expires in {expires_in}.</i>",
            self.describe(wf, who)
        )
    }

    fn expired_note(&self, wf: &WorkflowRow) -> Option<&'static str> {
        Some(match wf.kind {
            WorkflowKind::ChoreDeletion => " The chore stays.",
            _ => " The chore is back on the to-do list.",
        })
    }

    async fn change(
        &self,
        svc: &Services,
        wf: &WorkflowRow,
        to: WorkflowStatus,
    ) -> StoreResult<Option<TargetChange>> {
        let Some(target) = wf.target_id else {
            return Ok(None);
        };
        let change = match (wf.kind, to) {
            (WorkflowKind::ChoreDeletion, WorkflowStatus::Approved) => Some(archive_change(target)),
            (WorkflowKind::ChoreDeletion, _) => None,
            (_, WorkflowStatus::Approved) => {
                // done when claimed: on time and the next due date count from the claim
                match svc.store.chore(target).await? {
                    Some(c) => Some(
                        completion_change(
                            svc,
                            &c,
                            wf.requester_id,
                            wf.created_at,
                            &[ChoreStatus::Pending],
                        )
                        .await?,
                    ),
                    None => None,
                }
            }
            (_, _) => Some(reopen_change(target)),
        };
        Ok(change.map(TargetChange::Chore))
    }

    fn cancels(
        &self,
        wf: &WorkflowRow,
        to: WorkflowStatus,
    ) -> Option<(&'static [WorkflowKind], &'static str)> {
        (wf.kind == WorkflowKind::ChoreDeletion && to == WorkflowStatus::Approved)
            .then_some((CHORE_KINDS, "the chore was deleted"))
    }
}
