//! Agent tools for routines: `routine_create`, `routine_list`, `routine_pause`, `routine_resume`,
//! `routine_delete`, `routine_set_state`, `routine_run_now`. A routine's own turn acts as its
//! owner, so it can pause or delete itself ("when the deploy is done, delete yourself").
//!
//! Descriptions are one short line and schemas minimal (every token is paid on every turn);
//! triggers are compact strings. Authorization is the routine service's (owner or admin).
//! An api trigger's token never passes through the model: it is sent to the owner's DM.
//! Uses: agent::tools (Tool, Scope), routines (service), outbox.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{describe_trigger, next_fire, zone_of, Actor, CreateRequest, RoutineError};
use crate::{
    agent::{
        llm::ToolSpec,
        tools::{args, Scope, Tool, ToolError, ToolRegistry},
    },
    services::{zone_of as chat_zone, Services},
    store::RoutineStatus,
    types::ChatKind,
};

/// Add the routine tools to `r`.
pub fn register(r: &mut ToolRegistry) {
    r.add(Create);
    r.add(List);
    r.add(Pause(true));
    r.add(Pause(false));
    r.add(Delete);
    r.add(SetState);
    r.add(RunNow);
}

impl From<RoutineError> for ToolError {
    fn from(e: RoutineError) -> Self {
        match e {
            RoutineError::Invalid { .. } => ToolError::InvalidArgs(e.to_string()),
            RoutineError::NotFound(_) => ToolError::NotFound(e.to_string()),
            RoutineError::Denied(d) => ToolError::Denied(d),
            RoutineError::Store(s) => ToolError::Failed(s.to_string()),
        }
    }
}

fn actor(scope: &Scope) -> Result<Actor, ToolError> {
    let user_id = scope
        .actor_id
        .ok_or_else(|| ToolError::Denied("no acting member".into()))?;
    Ok(Actor {
        user_id,
        admin: scope.chat_kind == ChatKind::Private
            || scope.member.as_ref().is_some_and(|m| m.is_admin()),
    })
}

fn name_schema() -> Value {
    json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameArgs {
    name: String,
}

struct Create;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    #[serde(default)]
    name: Option<String>,
    prompt: String,
    triggers: Vec<String>,
    #[serde(default)]
    quiet: Option<bool>,
    #[serde(default)]
    max_runs_per_day: Option<i64>,
    #[serde(default)]
    max_ticks: Option<i64>,
}

#[async_trait]
impl Tool for Create {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "routine_create",
            description: "Schedule a prompt. triggers e.g. 'every 30m','cron 0 8 * * 1-5','at tomorrow 9:00','event chore_overdue','api'.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "prompt": {"type": "string"},
                    "triggers": {"type": "array", "items": {"type": "string"}},
                    "quiet": {"type": "boolean"},
                    "max_runs_per_day": {"type": "integer"},
                    "max_ticks": {"type": "integer"}
                },
                "required": ["prompt", "triggers"]
            }),
        }
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: CreateArgs = args(a)?;
        let who = actor(scope)?;
        let c = super::create(
            svc,
            CreateRequest {
                chat_id: scope.chat.id,
                chat_zone: chat_zone(&scope.chat),
                owner_id: who.user_id,
                name: a.name,
                prompt: a.prompt,
                triggers: a.triggers,
                quiet: a.quiet.unwrap_or(false),
                max_ticks: a.max_ticks,
                max_runs_per_day: a.max_runs_per_day,
            },
        )
        .await?;
        let zone = zone_of(&c.routine);
        let mut out = json!({
            "name": c.routine.name,
            "triggers": c.triggers.iter().map(|t| describe_trigger(t, zone)).collect::<Vec<_>>(),
            "next": next_fire(&c.triggers).map(|t| t.with_timezone(&zone).format("%a %d %b %H:%M").to_string()),
        });
        if c.api_token.is_some() {
            out["api"] = json!(format!(
                "POST /routines/{}/trigger; token sent to the owner's DM",
                c.routine.id
            ));
        }
        Ok(out)
    }
}

struct List;

#[async_trait]
impl Tool for List {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "routine_list",
            description: "List this chat's routines.",
            parameters: json!({"type": "object", "properties": {}}),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, svc: &Services, scope: &Scope, _a: Value) -> Result<Value, ToolError> {
        let all = super::list(svc, scope.chat.id).await?;
        let rows: Vec<Value> = all
            .iter()
            .map(|l| {
                let r = &l.routine;
                let zone = zone_of(r);
                json!({
                    "name": r.name,
                    "prompt": crate::context::clip(&r.prompt, 200),
                    "triggers": l.triggers.iter().map(|t| describe_trigger(t, zone)).collect::<Vec<_>>(),
                    "status": if r.status == RoutineStatus::Active && r.paused { "paused" } else { r.status.as_str() },
                    "runs": r.tick_count,
                    "state": serde_json::from_str::<Value>(&r.state).unwrap_or(Value::Null),
                })
            })
            .collect();
        Ok(json!({ "routines": rows }))
    }
}

struct Pause(bool);

#[async_trait]
impl Tool for Pause {
    fn spec(&self) -> ToolSpec {
        if self.0 {
            ToolSpec {
                name: "routine_pause",
                description: "Pause a routine.",
                parameters: name_schema(),
            }
        } else {
            ToolSpec {
                name: "routine_resume",
                description: "Resume a paused routine.",
                parameters: name_schema(),
            }
        }
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: NameArgs = args(a)?;
        let r = super::set_paused(svc, scope.chat.id, &a.name, actor(scope)?, self.0).await?;
        Ok(json!({ "name": r.name, "paused": r.paused }))
    }
}

struct Delete;

#[async_trait]
impl Tool for Delete {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "routine_delete",
            description: "Delete a routine (may be itself).",
            parameters: name_schema(),
        }
    }

    fn destructive(&self) -> bool {
        true
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: NameArgs = args(a)?;
        let r = super::delete(svc, scope.chat.id, &a.name, actor(scope)?).await?;
        Ok(json!({ "deleted": r.name }))
    }

    async fn describe(
        &self,
        _svc: &Services,
        _scope: &Scope,
        a: Value,
    ) -> Result<crate::agent::Described, ToolError> {
        let n: NameArgs = args(a.clone())?;
        Ok(crate::agent::Described {
            text: format!(
                "Delete the routine “{}”",
                crate::context::clip(n.name.trim(), 40)
            ),
            args: a,
        })
    }
}

struct SetState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateArgs {
    name: String,
    state: Value,
}

#[async_trait]
impl Tool for SetState {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "routine_set_state",
            description: "Merge an object into a routine's state (null deletes a key).",
            parameters: json!({
                "type": "object",
                "properties": {"name": {"type": "string"}, "state": {"type": "object"}},
                "required": ["name", "state"]
            }),
        }
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: StateArgs = args(a)?;
        let s = super::set_state(svc, scope.chat.id, &a.name, actor(scope)?, &a.state).await?;
        Ok(json!({ "state": serde_json::from_str::<Value>(&s).unwrap_or(Value::Null) }))
    }
}

struct RunNow;

#[async_trait]
impl Tool for RunNow {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "routine_run_now",
            description: "Run a routine now.",
            parameters: name_schema(),
        }
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: NameArgs = args(a)?;
        let (r, id) = super::queue_manual_run(svc, scope.chat.id, &a.name, actor(scope)?).await?;
        Ok(
            json!({ "name": r.name, "run_id": id, "status": "queued; its reply follows in this chat" }),
        )
    }
}
