//! The tool registry and the foundation tools (`list_members`, `recall_conversation`).
//!
//! Each tool declares its name, a one-line description, a JSON Schema and whether it is
//! destructive. Tools run with the turn's [`Scope`] (chat and acting member); permission checks
//! live in the services they call, never in the prompt. Descriptions are kept short: every token
//! of a schema is paid on every turn.

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::llm::ToolSpec;
use crate::{services::Services, store::ChatRow, store::MemberRow, types::ChatKind};

/// Who is acting, where: the chat of the turn and the member (or DM user) it acts for.
#[derive(Debug, Clone)]
pub struct Scope {
    pub chat: ChatRow,
    pub chat_kind: ChatKind,
    /// The Telegram user the turn acts for (`None` for a routine turn with no owner).
    pub actor_id: Option<i64>,
    pub actor_name: String,
    /// The member row in a group (`None` in a DM).
    pub member: Option<MemberRow>,
    /// Oldest log id in the prompt's window; `recall_conversation` reads before it.
    pub window_start_id: Option<i64>,
    /// True when the turn was started by a member addressing the bot (or a DM / routine owner).
    /// Destructive tools are withheld otherwise (`reply_mode = always` chatter).
    pub addressed: bool,
    /// True for an ordinary turn answering a member's message: a destructive call the model
    /// makes then waits for that member's confirmation (`agent.confirm_destructive`). False for
    /// a routine's own turn (its owner set it up) and for a call being run on confirmation.
    pub member_turn: bool,
    /// A replay's limits (issue 10), enforced here in the runtime, not in the prompt: only
    /// these tools are offered and run, and every destructive call waits for the member's
    /// confirmation whatever `agent.confirm_destructive` says. `None`: an ordinary turn.
    pub restriction: Option<Arc<Restriction>>,
}

/// The limits of a recorded routine's replay (issue 10, item 5).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restriction {
    /// The only tools offered and run; a call to any other is refused and recorded.
    pub tools: std::collections::BTreeSet<String>,
    /// Tools the recording marked destructive, confirmed like the tools that say they are
    /// ([`Tool::destructive`]): a call is confirmed when either says so.
    pub confirm: std::collections::BTreeSet<String>,
    /// The recorded calls' shapes, `(tool, sorted argument keys)`, in order: a destructive call
    /// of another shape is confirmed with "This differs from when you recorded it: …".
    pub recorded: Vec<(String, Vec<String>)>,
}

impl Restriction {
    /// How a call of `tool` with `args` differs from every recorded call, in plain words, or
    /// `None` when some recorded call has the same tool and argument keys (or nothing was
    /// recorded).
    pub fn difference(&self, tool: &str, args: &Value) -> Option<String> {
        if self.recorded.is_empty() {
            return None;
        }
        let mut keys: Vec<String> = args
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        let same_tool: Vec<&Vec<String>> = self
            .recorded
            .iter()
            .filter(|(t, _)| t == tool)
            .map(|(_, k)| k)
            .collect();
        if same_tool.contains(&&keys) {
            return None;
        }
        if same_tool.is_empty() {
            // each tool once, in the order the recording first called it
            let mut recorded: Vec<String> = Vec::new();
            for (t, _) in &self.recorded {
                if !recorded.contains(t) {
                    recorded.push(t.clone());
                }
            }
            return Some(format!(
                "it calls {tool}, which the recording never called (it called {})",
                join_and(&recorded)
            ));
        }
        let was = same_tool[0];
        let fmt = |k: &[String]| {
            if k.is_empty() {
                "no arguments".to_string()
            } else {
                k.join(", ")
            }
        };
        Some(format!(
            "{tool} is called with {} instead of {}",
            fmt(&keys),
            fmt(was)
        ))
    }

    /// True when a call of `tool` (destructive by its own flag or not) must be confirmed.
    pub fn must_confirm(&self, tool: &dyn Tool) -> bool {
        tool.destructive() || self.confirm.contains(tool.spec().name)
    }
}

/// What a tool call can fail with; the text is given back to the model.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    #[error("not allowed: {0}")]
    Denied(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("failed: {0}")]
    Failed(String),
}

impl From<crate::store::StoreError> for ToolError {
    fn from(e: crate::store::StoreError) -> Self {
        ToolError::Failed(e.to_string())
    }
}

/// A function the agent may call.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// Name, description and JSON Schema.
    fn spec(&self) -> ToolSpec;
    /// True when the tool changes or removes something a member would miss.
    fn destructive(&self) -> bool {
        false
    }
    /// True when a call only reads and changes nothing anywhere (no row, no message, no
    /// workflow): a dry run (the web admin's test runner, issue 11) runs it; any other call is
    /// only shown, never made. Default `false`, so a tool that does not say so never runs there.
    fn read_only(&self) -> bool {
        false
    }
    /// Run with JSON `args` (already parsed; validated by the tool) → JSON result.
    async fn call(&self, svc: &Services, scope: &Scope, args: Value) -> Result<Value, ToolError>;
    /// What a successful call did, as a short past-tense clause ("approved request 1",
    /// "created the chore “bathroom”"), or `None` when it changed nothing (a read). Used when a
    /// turn fails after tools ran, so the member hears what was done (issue 8). Default:
    /// [`summarize_call`] from the tool name and arguments.
    fn done_summary(&self, args: &Value, result: &Value) -> Option<String> {
        let _ = result;
        summarize_call(self.spec().name, args)
    }

    /// A destructive call in plain words, before it runs, for the member who must confirm it
    /// (e.g. "Approve request 1 — Bob: verify “Dishes”"), and the arguments to run it with at
    /// confirmation time (references that may shift, like list numbers, resolved to ids).
    /// Errors: arguments the call would refuse anyway (no confirmation is asked then).
    /// Default: the tool's name and its arguments as given.
    async fn describe(
        &self,
        svc: &Services,
        scope: &Scope,
        args: Value,
    ) -> Result<Described, ToolError> {
        let _ = (svc, scope);
        let name = self.spec().name;
        Ok(Described {
            text: format!("{name} {}", crate::context::clip(&args.to_string(), 200)),
            args,
        })
    }

    /// A call's result in a few plain words for the member who confirmed it ("Approved.").
    fn summarize(&self, result: &Value) -> String {
        let _ = result;
        "Done.".into()
    }
}

/// A generic past-tense clause for a successful call of `name` with `args`; `None` for reads
/// (`list_*`, `*_list`, `recall_*`, `get_*`, `search_*`). Knows the `decision` + `number(s)` /
/// `id(s)` shape of the workflow tools and the `<noun>_<verb>` names of the others
/// (`chore_create` + `{"title": "bathroom"}` → "created the chore “bathroom”").
pub fn summarize_call(name: &str, args: &Value) -> Option<String> {
    let read = ["list_", "recall_", "get_", "search_"]
        .iter()
        .any(|p| name.starts_with(p))
        || name.ends_with("_list");
    if read {
        return None;
    }
    let text = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(decision) = text("decision") {
        let past = match decision.as_str() {
            "approve" => "approved",
            "reject" => "rejected",
            "cancel" => "cancelled",
            _ => "answered",
        };
        let ints = |k: &str| -> Vec<i64> {
            match args.get(k) {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
                Some(v) => v.as_i64().into_iter().collect(),
                None => vec![],
            }
        };
        let mut what: Vec<String> = ints("number")
            .into_iter()
            .chain(ints("numbers"))
            .map(|n| n.to_string())
            .collect();
        what.extend(
            ints("id")
                .into_iter()
                .chain(ints("ids"))
                .map(|n| format!("#{n}")),
        );
        return Some(match what.len() {
            0 => format!("{past} a request"),
            1 => format!("{past} request {}", what[0]),
            _ => format!("{past} requests {}", join_and(&what)),
        });
    }
    let (noun, verb) = name.split_once('_').unwrap_or(("", name));
    let label = text("title")
        .or_else(|| text("name"))
        .or_else(|| text("chore"))
        .map(|t| format!("the {noun} “{}”", crate::context::clip(&t, 60)))
        .unwrap_or_else(|| format!("a {noun}"));
    Some(match verb {
        "create" => format!("created {label}"),
        "claim" => format!("marked {label} done"),
        "update" => format!("updated {label}"),
        "delete" => format!("deleted {label}"),
        "pause" => format!("paused {label}"),
        "resume" => format!("resumed {label}"),
        "request_deletion" => format!("asked the group to approve deleting {label}"),
        "run_now" => format!("started {label}"),
        "set_state" => format!("updated the saved state of {label}"),
        _ => format!("used {}", name.replace('_', " ")),
    })
}

/// "a", "a and b", "a, b and c".
pub fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// A destructive call described for its confirmation ([`Tool::describe`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    /// What would happen, plain, one line.
    pub text: String,
    /// The arguments to run the call with once confirmed.
    pub args: Value,
}

/// Where a destructive call the model makes in an ordinary turn goes instead of running: the
/// workflow service implements it (a confirmation workflow), registered in the wiring. The
/// model proposes; the member decides.
#[async_trait]
pub trait ConfirmGate: Send + Sync + 'static {
    /// Hold `tool`'s call described as `call` for `scope`'s actor to confirm. Returns the tool
    /// result the model sees (that the action awaits the member's confirmation).
    async fn hold(
        &self,
        svc: &Services,
        scope: &Scope,
        tool: &'static str,
        call: Described,
    ) -> Result<Value, ToolError>;
}

/// Parse tool arguments into `T`, with a message the model can act on.
pub fn args<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, ToolError> {
    serde_json::from_value(v).map_err(|e| ToolError::InvalidArgs(e.to_string()))
}

/// Tools by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<&'static str, Arc<dyn Tool>>,
}

impl ToolRegistry {
    /// The foundation tools.
    pub fn foundation() -> Self {
        let mut r = Self::default();
        r.add(ListMembers);
        r.add(RecallConversation);
        r
    }

    /// Add a tool (a later one with the same name replaces the earlier).
    pub fn add(&mut self, t: impl Tool) {
        let name = t.spec().name;
        self.tools.insert(name, Arc::new(t));
    }

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    /// Specs offered in a turn: all tools, or only non-destructive ones; under a
    /// [`Restriction`], only its tools.
    pub fn specs(
        &self,
        include_destructive: bool,
        restriction: Option<&Restriction>,
    ) -> Vec<ToolSpec> {
        self.tools
            .iter()
            .filter(|(name, _)| restriction.is_none_or(|r| r.tools.contains(**name)))
            .map(|(_, t)| t)
            .filter(|t| include_destructive || !t.destructive())
            .map(|t| t.spec())
            .collect()
    }

    /// Number of tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

struct ListMembers;

#[async_trait]
impl Tool for ListMembers {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "list_members",
            description: "List the group's members with username and role.",
            parameters: json!({"type": "object", "properties": {}}),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, svc: &Services, scope: &Scope, _args: Value) -> Result<Value, ToolError> {
        let chat_ids: Vec<i64> = if scope.chat_kind == ChatKind::Group {
            vec![scope.chat.id]
        } else if let Some(uid) = scope.actor_id {
            svc.store
                .groups_of_user(uid)
                .await?
                .into_iter()
                .map(|g| g.id)
                .collect()
        } else {
            vec![]
        };
        let mut out = Vec::new();
        for id in chat_ids {
            for m in svc.store.members(id).await? {
                out.push(json!({
                    "name": m.first_name,
                    "username": m.username,
                    "role": m.role,
                    "group": id,
                }));
            }
        }
        Ok(json!({ "members": out }))
    }
}

struct RecallConversation;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecallArgs {
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
}

#[async_trait]
impl Tool for RecallConversation {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "recall_conversation",
            description: "Older messages of this chat, optionally containing a word.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50}
                }
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: RecallArgs = args(a)?;
        let limit = a.limit.unwrap_or(20);
        if !(1..=50).contains(&limit) {
            return Err(ToolError::InvalidArgs("limit must be 1..50".into()));
        }
        // Only this chat's log: a DM's recall never reaches a group, nor the reverse.
        let rows = svc
            .store
            .recall(
                scope.chat.id,
                scope.window_start_id,
                a.query.as_deref(),
                limit,
            )
            .await?;
        let zone = crate::services::zone_of(&scope.chat);
        let lines: Vec<String> = rows
            .iter()
            .map(|m| {
                format!(
                    "{} {}: {}",
                    m.created_at.with_timezone(&zone).format("%a %d %b %H:%M"),
                    m.sender_name,
                    crate::context::clip(&m.text, 400)
                )
            })
            .collect();
        Ok(json!({ "messages": lines }))
    }
}

#[cfg(test)]
mod summary_tests {
    use super::*;

    #[test]
    fn summaries_of_common_calls() {
        assert_eq!(summarize_call("chore_list", &json!({})), None);
        assert_eq!(summarize_call("list_members", &json!({})), None);
        assert_eq!(summarize_call("recall_conversation", &json!({})), None);
        assert_eq!(
            summarize_call(
                "respond_to_workflow",
                &json!({"decision": "approve", "number": 1})
            )
            .as_deref(),
            Some("approved request 1")
        );
        assert_eq!(
            summarize_call(
                "batch_respond_to_workflows",
                &json!({"decision": "reject", "numbers": [1, 2], "ids": [7]})
            )
            .as_deref(),
            Some("rejected requests 1, 2 and #7")
        );
        assert_eq!(
            summarize_call("chore_claim", &json!({"chore": "dishes"})).as_deref(),
            Some("marked the chore “dishes” done")
        );
        assert_eq!(
            summarize_call("routine_frobnicate", &json!({})).as_deref(),
            Some("used routine frobnicate")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_names_each_recorded_tool_once() {
        let r = Restriction {
            recorded: vec![
                ("chore_list".into(), vec![]),
                ("chore_update".into(), vec!["id".into()]),
                ("chore_update".into(), vec!["id".into()]),
            ],
            ..Default::default()
        };
        assert_eq!(r.difference("chore_update", &json!({"id": 1})), None);
        assert_eq!(
            r.difference("chore_delete", &json!({})).as_deref(),
            Some("it calls chore_delete, which the recording never called (it called chore_list and chore_update)")
        );
        assert_eq!(
            r.difference("chore_update", &json!({"id": 1, "note": "x"}))
                .as_deref(),
            Some("chore_update is called with id, note instead of id")
        );
    }
}
