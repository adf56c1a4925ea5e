//! Agent tools for chores: `chore_create`, `chore_list`, `chore_claim`,
//! `chore_request_deletion`, `chore_update` (assign / edit / skip). In a group they act on the
//! group's chores; in a private chat on the member's personal chores. Same service functions
//! as the commands; authorization lives there. Schemas are kept short (token budget).
//! Uses: agent (Tool trait), the chores service.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    add, add_personal, assign, claim, edit, list_open, recurrence_of, repeats, request_deletion,
    resolve_member, rotation::Rotation, rotation_members, skip, verifier, zone_of, ChoreError,
    Claimed, Deletion, ListFilter,
};
use crate::{
    agent::{
        llm::ToolSpec,
        tools::{args, Scope, Tool, ToolError},
    },
    services::Services,
    store::{ChoreRow, StoreResult},
    types::ChatKind,
};

/// What the model needs to confirm a chore to the member, in words it can repeat:
///
/// ```json
/// {"id": 3, "title": "Bins", "status": "todo",
///  "due": "Mon 23 Nov 19:00 (Europe/London)", "repeats": "Mon at 19:00",
///  "assignee": "Bob", "rotation": "rotating: Bob, Carol", "points": 1}
/// ```
///
/// `due` is local time in the chat's zone with the zone named (null: no due date); `repeats`
/// is the recurrence in words ("no (one-off)" when it does not repeat); `assignee` a first name
/// or null (unassigned); `rotation` "fixed" or the rotation in order. A personal chore has
/// `partner` (first name, or null: self-verified) instead of assignee and rotation.
pub async fn chore_facts(svc: &Services, c: &ChoreRow) -> StoreResult<Value> {
    let zone = zone_of(svc, c.chat_id).await?;
    let due = c.next_due.map(|d| {
        format!(
            "{} ({})",
            d.with_timezone(&zone).format("%a %-d %b %H:%M"),
            zone.name()
        )
    });
    let repeats = recurrence_of(c)
        .filter(repeats)
        .map(|r| r.describe())
        .unwrap_or_else(|| "no (one-off)".into());
    let mut ids: Vec<i64> = rotation_members(c);
    ids.extend(c.assignee_id);
    ids.extend(c.partner_id);
    let names = crate::workflow::render::names(svc, &ids).await?;
    let name = |id: i64| names.get(&id).cloned().unwrap_or_else(|| "someone".into());
    let mut out = json!({
        "id": c.id,
        "title": c.title,
        "status": c.status.as_str(),
        "due": due,
        "repeats": repeats,
        "points": c.points,
    });
    if c.personal {
        out["partner"] = json!(c.partner_id.map(name));
    } else {
        out["assignee"] = json!(c.assignee_id.map(name));
        out["rotation"] = json!(match c.rotation {
            Rotation::Fixed => Rotation::Fixed.as_str().to_string(),
            m => format!(
                "{}: {}",
                m.describe(),
                rotation_members(c)
                    .into_iter()
                    .map(name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(out)
}

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
        Ok(chore_facts(svc, &chore).await?)
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

    fn read_only(&self) -> bool {
        true
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
        let mut out = Vec::with_capacity(cs.len());
        for c in &cs {
            out.push(chore_facts(svc, c).await?);
        }
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
                "who_may_verify": verifier(svc, &workflow).await?,
            })),
            Claimed::Completed(c) => Ok(chore_facts(svc, &c).await?),
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
            Deletion::Archived(c) => Ok(json!({"id": c.id, "status": c.status.as_str()})),
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
        Ok(chore_facts(svc, &c).await?)
    }
}
