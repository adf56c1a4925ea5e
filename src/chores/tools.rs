//! Agent tools for chores: `chore_create`, `chore_list`, `chore_claim`,
//! `chore_request_deletion`. In a group they act on the group's chores; in a private chat on
//! the member's personal chores. Same service functions as the commands.
//! Uses: agent (Tool trait), the chores service.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    add, add_personal, claim, list, recurrence_of, request_deletion, ChoreError, Claimed, Deletion,
};
use crate::{
    agent::{
        llm::ToolSpec,
        tools::{args, Scope, Tool, ToolError},
    },
    services::Services,
    types::ChatKind,
};

fn actor(scope: &Scope) -> Result<i64, ToolError> {
    scope
        .actor_id
        .ok_or_else(|| ToolError::Denied("no member is acting in this turn".into()))
}

fn err(e: ChoreError) -> ToolError {
    match e {
        ChoreError::Store(s) => s.into(),
        ChoreError::NotFound(_) => ToolError::NotFound(e.to_string()),
        other => ToolError::Denied(other.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TitleArgs {
    title: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoreArg {
    chore: String,
}

/// `chore_create`: add a chore (personal in a private chat).
pub struct ChoreCreate;

#[async_trait]
impl Tool for ChoreCreate {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "chore_create",
            description: "Add a chore; title may end 'every 3 days'.",
            parameters: json!({"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}),
        }
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: TitleArgs = args(a)?;
        let uid = actor(scope)?;
        let chore = if scope.chat_kind == ChatKind::Private {
            add_personal(svc, scope.chat.id, uid, &a.title)
                .await
                .map_err(err)?
                .0
        } else {
            add(svc, scope.chat.id, uid, &a.title).await.map_err(err)?
        };
        Ok(json!({"id": chore.id, "title": chore.title}))
    }
}

/// `chore_list`: the chat's chores.
pub struct ChoreList;

#[async_trait]
impl Tool for ChoreList {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "chore_list",
            description: "List chores with id and status.",
            parameters: json!({"type": "object", "properties": {}}),
        }
    }

    async fn call(&self, svc: &Services, scope: &Scope, _a: Value) -> Result<Value, ToolError> {
        let cs = list(svc, scope.chat.id).await?;
        let out: Vec<Value> = cs
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "title": c.title,
                    "status": c.status,
                    "repeats": recurrence_of(c).map(|r| r.describe()),
                })
            })
            .collect();
        Ok(json!({ "chores": out }))
    }
}

/// `chore_claim`: the acting member did a chore (opens a verification request).
pub struct ChoreClaim;

#[async_trait]
impl Tool for ChoreClaim {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "chore_claim",
            description: "Mark a chore done by the user (title or #id); asks for verification.",
            parameters: json!({"type": "object", "properties": {"chore": {"type": "string"}}, "required": ["chore"]}),
        }
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: ChoreArg = args(a)?;
        let uid = actor(scope)?;
        match claim(svc, scope.chat.id, uid, &a.chore)
            .await
            .map_err(err)?
        {
            Claimed::Requested {
                workflow,
                delivered,
            } => Ok(json!({
                "request_id": workflow.id,
                "status": "waiting for verification",
                "request_message_sent": delivered,
            })),
            Claimed::Completed(c) => Ok(json!({"id": c.id, "status": c.status})),
        }
    }
}

/// `chore_request_deletion`: ask to delete a chore (another member approves).
pub struct ChoreRequestDeletion;

#[async_trait]
impl Tool for ChoreRequestDeletion {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "chore_request_deletion",
            description: "Ask to delete a chore (title or #id); another member approves.",
            parameters: json!({"type": "object", "properties": {"chore": {"type": "string"}}, "required": ["chore"]}),
        }
    }

    fn destructive(&self) -> bool {
        true
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: ChoreArg = args(a)?;
        let uid = actor(scope)?;
        match request_deletion(svc, scope.chat.id, uid, &a.chore)
            .await
            .map_err(err)?
        {
            Deletion::Requested { workflow, .. } => Ok(json!({
                "request_id": workflow.id,
                "status": "waiting for approval",
            })),
            Deletion::Archived(c) => Ok(json!({"id": c.id, "status": c.status})),
        }
    }
}
