//! hearth events: what happened in a chat, published by services (workflows, chores, members)
//! and consumed by event-triggered routines. In-process broadcast; a lagging subscriber loses
//! old events rather than blocking publishers. Uses: serde, tokio.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Something that happened in a chat. `kind` names are stable (routine filters use them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HearthEvent {
    WorkflowCreated {
        chat_id: i64,
        workflow_id: i64,
        workflow_type: String,
        title: String,
        requester_id: i64,
    },
    /// `status`: "approved" | "rejected" | "cancelled".
    WorkflowResolved {
        chat_id: i64,
        workflow_id: i64,
        workflow_type: String,
        title: String,
        status: String,
        resolver_id: Option<i64>,
    },
    WorkflowExpired {
        chat_id: i64,
        workflow_id: i64,
        workflow_type: String,
        title: String,
    },
    ChoreOverdue {
        chat_id: i64,
        chore_id: i64,
        title: String,
        assignee_id: Option<i64>,
    },
    MemberJoined {
        chat_id: i64,
        user_id: i64,
        name: String,
    },
    /// A routine run ended with every step on its path done (`routine`: the routine's name).
    RunCompleted {
        chat_id: i64,
        routine: String,
        run_id: i64,
    },
    /// A routine run failed (`reason`: "cost limit", "rejected", the step's error, …).
    RunFailed {
        chat_id: i64,
        routine: String,
        run_id: i64,
        reason: String,
    },
}

impl HearthEvent {
    /// The chat the event belongs to.
    pub fn chat_id(&self) -> i64 {
        match self {
            HearthEvent::WorkflowCreated { chat_id, .. }
            | HearthEvent::WorkflowResolved { chat_id, .. }
            | HearthEvent::WorkflowExpired { chat_id, .. }
            | HearthEvent::ChoreOverdue { chat_id, .. }
            | HearthEvent::MemberJoined { chat_id, .. }
            | HearthEvent::RunCompleted { chat_id, .. }
            | HearthEvent::RunFailed { chat_id, .. } => *chat_id,
        }
    }

    /// The stable kind name, e.g. "workflow_created".
    pub fn kind(&self) -> &'static str {
        match self {
            HearthEvent::WorkflowCreated { .. } => "workflow_created",
            HearthEvent::WorkflowResolved { .. } => "workflow_resolved",
            HearthEvent::WorkflowExpired { .. } => "workflow_expired",
            HearthEvent::ChoreOverdue { .. } => "chore_overdue",
            HearthEvent::MemberJoined { .. } => "member_joined",
            HearthEvent::RunCompleted { .. } => "run_completed",
            HearthEvent::RunFailed { .. } => "run_failed",
        }
    }
}

/// Publish / subscribe handle; cheap to clone.
#[derive(Clone)]
pub struct EventBus(broadcast::Sender<HearthEvent>);

impl Default for EventBus {
    fn default() -> Self {
        Self(broadcast::channel(1024).0)
    }
}

impl EventBus {
    /// Publish (no-op when nobody listens).
    pub fn publish(&self, ev: HearthEvent) {
        let _ = self.0.send(ev);
    }
    /// A new subscription receiving events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<HearthEvent> {
        self.0.subscribe()
    }
}
