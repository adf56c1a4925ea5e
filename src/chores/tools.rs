//! Agent tools for chores: `chore_create`, `chore_list`, `chore_claim`,
//! `chore_request_deletion`, `chore_update` (assign / edit / skip). In a group they act on the
//! group's chores; in a private chat on the member's personal chores. Same service functions
//! as the commands; authorization lives there. Schemas are kept short (token budget).
//! Uses: agent (Tool trait), the chores service.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    add, add_personal, assign, claim, edit, list_open, recurrence_of, request_deletion,
    resolve_member, skip, ChoreError, Claimed, Deletion, ListFilter,
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
            description: "Add a chore; title may end with a schedule and @assignees, e.g. 'Bins every monday at 7pm @alice'.",
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

/// `chore_list`: the chat's open chores, optionally only the actor's, overdue ones, or one
/// member's.
pub struct ChoreList;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    #[serde(default)]
    of: Option<String>,
}

#[async_trait]
impl Tool for ChoreList {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "chore_list",
            description: "List open chores.",
            parameters: json!({"type": "object", "properties": {"of": {"type": "string", "description": "mine, overdue or a name"}}}),
        }
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: ListArgs = if a.is_null() {
            ListArgs::default()
        } else {
            args(a)?
        };
        let filter = match a.of.as_deref().map(str::trim).unwrap_or("") {
            "" | "all" => ListFilter::Open,
            "mine" | "me" => ListFilter::AssignedTo(actor(scope)?),
            "overdue" => ListFilter::Overdue,
            name if scope.chat_kind != ChatKind::Private => ListFilter::AssignedTo(
                resolve_member(svc, scope.chat.id, name)
                    .await
                    .map_err(err)?
                    .user_id,
            ),
            _ => ListFilter::Open,
        };
        let cs = list_open(svc, scope.chat.id, filter).await?;
        let out: Vec<Value> = cs
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "title": c.title,
                    "status": c.status,
                    "repeats": recurrence_of(c).map(|r| r.describe()),
                    "due": c.next_due,
                    "assignee_id": c.assignee_id,
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
            description:
                "User did a chore (title or #id; someone else's = swap); asks for verification.",
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

    async fn describe(
        &self,
        _svc: &Services,
        _scope: &Scope,
        a: Value,
    ) -> Result<crate::agent::Described, ToolError> {
        let c: ChoreArg = args(a.clone())?;
        Ok(crate::agent::Described {
            text: format!(
                "Ask to delete the chore “{}”",
                crate::context::clip(c.chore.trim(), 80)
            ),
            args: a,
        })
    }
}

/// `chore_update`: assign (value "@a @b [least]" or "nobody"), edit (value "<field> <value>",
/// e.g. "points 2", "repeat every 2 days") or skip the current occurrence.
pub struct ChoreUpdate;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateArgs {
    chore: String,
    action: String,
    #[serde(default)]
    value: String,
}

#[async_trait]
impl Tool for ChoreUpdate {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "chore_update",
            description: "Change a chore. assign: value '@a @b' (2+ rotate); edit: value 'points 2' / 'title X' / 'repeat daily' / 'due friday 18:00'; skip: next occurrence.",
            parameters: json!({"type": "object", "properties": {"chore": {"type": "string"}, "action": {"enum": ["assign", "edit", "skip"]}, "value": {"type": "string"}}, "required": ["chore", "action"]}),
        }
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: UpdateArgs = args(a)?;
        let uid = actor(scope)?;
        let chat = scope.chat.id;
        let input = format!("{} {}", a.chore.trim(), a.value.trim());
        let c = match a.action.as_str() {
            "assign" if scope.chat_kind == ChatKind::Private => {
                return Err(err(ChoreError::GroupOnly))
            }
            "assign" => assign(svc, chat, &input).await,
            "edit" => edit(svc, chat, uid, &input).await,
            "skip" => skip(svc, chat, uid, &a.chore).await,
            other => {
                return Err(ToolError::Denied(format!(
                    "unknown action '{}': use assign, edit or skip",
                    crate::context::clip(other, 20)
                )))
            }
        }
        .map_err(err)?;
        Ok(json!({"id": c.id, "title": c.title, "assignee_id": c.assignee_id, "due": c.next_due}))
    }
}
