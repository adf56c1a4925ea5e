//! Confirmations: the model proposes, a member decides. A destructive tool call the model makes
//! in an ordinary turn is not run; it becomes a workflow of kind `confirmation` (issue 8: a
//! small model approved a pending request on "what's the weather like today?"):
//!
//! - [`Gate`] (the agent's `ConfirmGate`) opens it: the call stored as metadata (tool name and
//!   JSON arguments) with the turn's chat and actor, its plain description as the title, a
//!   message to that chat saying exactly what would happen, with Confirm / Cancel buttons.
//! - [`ConfirmTarget`] (its `WorkflowTarget` hook) makes only the member it acts for eligible
//!   (others get a toast), expires it after `agent.confirm_expiry`, and on Confirm (approved)
//!   runs the stored call through its tool — the same service path and authorization as any
//!   call, checked again now — then the request message is edited with the outcome. Cancel and
//!   expiry edit it and change nothing.
//!
//! The status moves and audit rows are a workflow's like any other (pending → approved /
//! cancelled / expired; the sweep finds it), so recorded-routine replays can reuse it.
//! Uses: agent (tool registry, scope), the workflow service, store, services.

use async_trait::async_trait;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{open, render, Kind, NewRequest, WorkflowTarget};
use crate::{
    agent::{ConfirmGate, Described, Scope, ToolError, ToolRegistry},
    context::clip,
    format::escape_html as e,
    services::Services,
    store::{CreateGuard, Eligibility, StoreResult, TargetChange, WorkflowRow, WorkflowStatus},
    types::{Button, ChatKind},
};

/// Longest description kept as a confirmation's title, in characters.
const MAX_TITLE_CHARS: usize = 300;

/// The call a confirmation holds (its metadata, JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HeldCall {
    tool: String,
    args: Value,
}

/// The agent's confirmation gate: opens a confirmation workflow for a destructive call.
pub struct Gate;

#[async_trait]
impl ConfirmGate for Gate {
    async fn hold(
        &self,
        svc: &Services,
        scope: &Scope,
        tool: &'static str,
        call: Described,
    ) -> Result<Value, ToolError> {
        let actor = scope
            .actor_id
            .ok_or_else(|| ToolError::Denied("no member is acting in this turn".into()))?;
        let mut title = clip(&call.text, MAX_TITLE_CHARS);
        // a replay's call of another shape than recorded says so (issue 10, item 5)
        if let Some(d) = scope
            .restriction
            .as_ref()
            .and_then(|r| r.difference(tool, &call.args))
        {
            title = format!(
                "{title} — ⚠️ This differs from when you recorded it: {}.",
                clip(&d, 200)
            );
        }
        let meta = serde_json::to_string(&HeldCall {
            tool: tool.to_string(),
            args: call.args,
        })
        .map_err(|e| ToolError::Failed(e.to_string()))?;
        let opened = open(
            svc,
            NewRequest {
                chat_id: scope.chat.id,
                kind: Kind::Confirmation,
                requester_id: actor,
                target_id: None,
                target_title: &title,
                partner_id: None,
                metadata: Some(meta),
            },
            CreateGuard::None,
        )
        .await?
        .map_err(|_| ToolError::Failed("the confirmation could not be opened".into()))?;
        tracing::info!(
            workflow_id = opened.workflow.id,
            chat_id = scope.chat.id,
            tool,
            "destructive call held for confirmation"
        );
        Ok(json!({
            "status": "awaiting confirmation",
            "done": false,
            "would": title,
            "confirmation_id": opened.workflow.id,
            "note": format!(
                "Nothing was done yet: {} must tap Confirm on the message I sent{}. Tell them so.",
                scope.actor_name,
                if opened.delivered { "" } else { " (it could not be delivered)" }
            ),
        }))
    }
}

/// The `confirmation` kind's hook: runs the held call when its member confirms.
pub struct ConfirmTarget {
    tools: ToolRegistry,
}

impl ConfirmTarget {
    /// The hook over the agent's `tools` (the calls it may run on confirmation).
    pub fn new(tools: ToolRegistry) -> Self {
        Self { tools }
    }

    /// Run the call `wf` holds, as its requester, in its chat; the outcome in a few words.
    async fn run(&self, svc: &Services, wf: &WorkflowRow) -> StoreResult<String> {
        let Some(call) = wf
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str::<HeldCall>(m).ok())
        else {
            tracing::warn!(workflow_id = wf.id, "confirmation without a readable call");
            return Ok("Not done: the stored action could not be read.".into());
        };
        let Some(tool) = self.tools.get(&call.tool) else {
            return Ok("Not done: that action no longer exists.".into());
        };
        let Some(chat) = svc.store.chat(wf.chat_id).await? else {
            return Ok("Not done: the chat is unknown.".into());
        };
        let chat_kind = if chat.kind == ChatKind::Group.as_str() {
            ChatKind::Group
        } else {
            ChatKind::Private
        };
        // the member as they are now: the service behind the tool authorizes again
        let member = match chat_kind {
            ChatKind::Group => svc
                .store
                .member(chat.id, wf.requester_id)
                .await?
                .filter(|m| m.active),
            ChatKind::Private => None,
        };
        let actor_name = render::names(svc, &[wf.requester_id])
            .await?
            .remove(&wf.requester_id)
            .unwrap_or_else(|| "someone".into());
        let scope = Scope {
            chat,
            chat_kind,
            actor_id: Some(wf.requester_id),
            actor_name,
            member,
            window_start_id: None,
            addressed: true,
            member_turn: false,
            restriction: None,
        };
        let outcome = match tool.call(svc, &scope, call.args).await {
            Ok(v) => tool.summarize(&v),
            Err(err) => format!("Not done: {err}"),
        };
        tracing::info!(workflow_id = wf.id, tool = %call.tool, "confirmed call ran");
        Ok(outcome)
    }
}

#[async_trait]
impl WorkflowTarget for ConfirmTarget {
    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Confirmation]
    }

    fn eligibility(&self, _kind: Kind) -> Eligibility {
        Eligibility::Requester
    }

    fn expiry(&self, svc: &Services, _kind: Kind) -> Option<Duration> {
        Duration::from_std(svc.config.agent.confirm_expiry).ok()
    }

    fn what(&self, wf: &WorkflowRow) -> String {
        format!("confirm: {}", clip(&wf.target_title, 120))
    }

    fn describe(&self, wf: &WorkflowRow, who: &str) -> String {
        format!(
            "🔐 <b>{who}</b>, I was asked to: {}",
            e(&clip(&wf.target_title, MAX_TITLE_CHARS + 300))
        )
    }

    fn request_notice(&self, wf: &WorkflowRow, who: &str, expires_in: &str) -> String {
        format!(
            "{}\n<i>Nothing happens unless you tap Confirm (only you can). Expires in {expires_in}.</i>",
            self.describe(wf, who)
        )
    }

    fn buttons(&self, wf: &WorkflowRow) -> Vec<Vec<Button>> {
        super::buttons::for_confirmation(wf.id)
    }

    fn expired_note(&self, _wf: &WorkflowRow) -> Option<&'static str> {
        None // the edited message says it; nothing else changed
    }

    async fn change(
        &self,
        _svc: &Services,
        _wf: &WorkflowRow,
        _to: WorkflowStatus,
    ) -> StoreResult<Option<TargetChange>> {
        // the call runs its own transactions after the confirmation committed (`after`): the
        // conditional transition makes sure it runs at most once
        Ok(None)
    }

    async fn after(&self, svc: &Services, wf: &WorkflowRow) -> StoreResult<Option<String>> {
        if wf.status != WorkflowStatus::Approved {
            crate::routines::runner::on_confirmation_resolved(svc, wf.chat_id, wf.id).await;
            return Ok(Some("Nothing was done.".into()));
        }
        let outcome = self.run(svc, wf).await?;
        // a run's prompt step waiting for this confirmation goes on once the call ran
        crate::routines::runner::on_confirmation_resolved(svc, wf.chat_id, wf.id).await;
        Ok(Some(format!("→ {}", e(&outcome))))
    }
}
