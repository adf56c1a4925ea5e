//! The `WorkflowTarget` hook: how the workflow service reaches what a workflow is about without
//! knowing it. Each kind (chore verification, chore deletion, personal verification, a
//! destructive-call confirmation; next, routine steps) has one hook, registered in the wiring
//! (`app::core`) the way tools are. The service asks the hook for the target's change on each
//! transition and hands it to the store, which writes it in the transition's transaction
//! (choresir flipped a workflow without completing its chore); the hook renders the request's
//! words and does what must follow a committed transition.
//!
//! Uses: store (rows, typed kinds and statuses, the target change enum), services, types.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use chrono::Duration;

use crate::{
    services::Services,
    store::{Eligibility, StoreResult, TargetChange, WorkflowKind, WorkflowRow, WorkflowStatus},
    types::Button,
};

/// The hook of one or more workflow kinds. Methods that render return plain text unless they say
/// HTML; user text in HTML is escaped by the hook.
#[async_trait]
pub trait WorkflowTarget: Send + Sync + 'static {
    /// The kinds this hook serves (a later registration of a kind replaces an earlier one).
    fn kinds(&self) -> &'static [WorkflowKind];

    /// Who may resolve a request of `kind` (stored on the row when it is opened).
    fn eligibility(&self, kind: WorkflowKind) -> Eligibility;

    /// How long a request of `kind` stays pending; `None`: `workflows.expiry`.
    fn expiry(&self, svc: &Services, kind: WorkflowKind) -> Option<Duration> {
        let _ = (svc, kind);
        None
    }

    /// What is asked, plain and short, e.g. `delete “Water plants”` (lists, outcome lines, the
    /// agent's prompt).
    fn what(&self, wf: &WorkflowRow) -> String;

    /// The request in one HTML sentence; `who` is the requester's name, already escaped:
    /// `<b>Jack</b> wants to delete “Water plants”`.
    fn describe(&self, wf: &WorkflowRow, who: &str) -> String;

    /// The request's body in the message edited after resolution (HTML; default
    /// [`WorkflowTarget::describe`]). A gate keeps its whole question there, not the list's
    /// clipped one.
    fn notice_body(&self, wf: &WorkflowRow, who: &str) -> String {
        self.describe(wf, who)
    }

    /// The whole request message (HTML), sent with [`WorkflowTarget::buttons`]; `expires_in`
    /// is e.g. "2 days".
    fn request_notice(&self, wf: &WorkflowRow, who: &str, expires_in: &str) -> String {
        format!(
            "🙋 {} — Approve?\n<i>Tap a button or reply “approve” / “reject, reason”. Expires in {expires_in}.</i>",
            self.describe(wf, who)
        )
    }

    /// The request message's buttons (default: Approve / Reject).
    fn buttons(&self, wf: &WorkflowRow) -> Vec<Vec<Button>> {
        super::buttons::for_request(wf.id)
    }

    /// What an expiry means for the target, appended to the one expiry notice sent to the
    /// workflow's chat (e.g. " The chore stays."); `None`: no notice, the request message's edit
    /// says it.
    fn expired_note(&self, wf: &WorkflowRow) -> Option<&'static str> {
        let _ = wf;
        Some("")
    }

    /// The change the move of `wf` to `to` makes to the target, written by the store inside the
    /// transition's transaction (`None`: nothing changes). Reads only.
    ///
    /// Errors: storage.
    async fn change(
        &self,
        svc: &Services,
        wf: &WorkflowRow,
        to: WorkflowStatus,
    ) -> StoreResult<Option<TargetChange>>;

    /// Kinds of the other pending requests on the same target that the move of `wf` to `to`
    /// cancels (its target is gone), with the reason; `None` for most.
    fn cancels(
        &self,
        wf: &WorkflowRow,
        to: WorkflowStatus,
    ) -> Option<(&'static [WorkflowKind], &'static str)> {
        let _ = (wf, to);
        None
    }

    /// After the transition of `wf` (its new status in the row) committed: work that can't be
    /// part of the transaction. Returns an HTML line appended to the request message's edit
    /// (e.g. a confirmed call's outcome).
    ///
    /// Errors: storage.
    async fn after(&self, svc: &Services, wf: &WorkflowRow) -> StoreResult<Option<String>> {
        let _ = (svc, wf);
        Ok(None)
    }
}

/// The registered hooks, by kind. Cheap to clone.
#[derive(Clone, Default)]
pub struct WorkflowTargets {
    by_kind: HashMap<WorkflowKind, Arc<dyn WorkflowTarget>>,
}

impl WorkflowTargets {
    /// Register `t` for each of its kinds.
    pub fn add(&mut self, t: impl WorkflowTarget) {
        let t: Arc<dyn WorkflowTarget> = Arc::new(t);
        for k in t.kinds() {
            self.by_kind.insert(*k, t.clone());
        }
    }

    /// The hook of `kind` (`None` when nothing registered it: such requests can still be
    /// listed and resolved, they just change nothing).
    pub fn get(&self, kind: WorkflowKind) -> Option<&Arc<dyn WorkflowTarget>> {
        self.by_kind.get(&kind)
    }

    /// [`WorkflowTarget::what`], or the bare title for a kind without a hook.
    pub fn what(&self, wf: &WorkflowRow) -> String {
        match self.get(wf.kind) {
            Some(t) => t.what(wf),
            None => format!("“{}”", crate::context::clip(&wf.target_title, 80)),
        }
    }

    /// [`WorkflowTarget::notice_body`], or [`WorkflowTargets::describe`] for a kind without a
    /// hook.
    pub fn notice_body(&self, wf: &WorkflowRow, who: &str) -> String {
        match self.get(wf.kind) {
            Some(t) => t.notice_body(wf, who),
            None => self.describe(wf, who),
        }
    }

    /// [`WorkflowTarget::describe`], or a neutral sentence for a kind without a hook.
    pub fn describe(&self, wf: &WorkflowRow, who: &str) -> String {
        match self.get(wf.kind) {
            Some(t) => t.describe(wf, who),
            None => format!(
                "<b>{who}</b> asks about “{}”",
                crate::format::escape_html(&crate::context::clip(&wf.target_title, 80))
            ),
        }
    }
}
