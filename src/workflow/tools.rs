//! Agent tools for approvals: `respond_to_workflow` and `batch_respond_to_workflows`, by
//! workflow id or by the viewer's numbers (the numbers of `REQUESTS YOU CAN ACTION`). Both go
//! through the same service path as replies, buttons and commands; authorization happens there,
//! never in the prompt. Schemas are minimal: every token is paid on every turn.
//! Uses: agent (Tool trait), the workflow service.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{actionable, cancel, decide, render, Decide, Decision, Outcome, Via, Viewer};
use crate::{
    agent::{
        llm::ToolSpec,
        tools::{args, Scope, Tool, ToolError},
    },
    services::Services,
    store::WorkflowRow,
    types::ChatKind,
};

/// What the model may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Choice {
    Approve,
    Reject,
    Cancel,
}

fn viewer(scope: &Scope) -> Result<Viewer, ToolError> {
    let user_id = scope
        .actor_id
        .ok_or_else(|| ToolError::Denied("no member is acting in this turn".into()))?;
    Ok(Viewer {
        user_id,
        chat_id: scope.chat.id,
        private: scope.chat_kind == ChatKind::Private,
    })
}

/// Resolve numbers and ids to workflow ids (numbers against the viewer's actionable list).
fn targets(
    list: &[WorkflowRow],
    numbers: &[i64],
    ids: &[i64],
) -> Result<Vec<(Option<usize>, i64)>, ToolError> {
    let mut out = Vec::new();
    for &n in numbers {
        let wf = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| list.get(i))
            .ok_or_else(|| {
                ToolError::InvalidArgs(format!(
                    "no request number {n}: the viewer has {} (1..{})",
                    list.len(),
                    list.len()
                ))
            })?;
        out.push((Some(n as usize), wf.id));
    }
    for &id in ids {
        let n = list.iter().position(|w| w.id == id).map(|i| i + 1);
        out.push((n, id));
    }
    if out.is_empty() {
        return Err(ToolError::InvalidArgs("give a number or an id".into()));
    }
    out.dedup();
    Ok(out)
}

async fn run(
    svc: &Services,
    scope: &Scope,
    choice: Choice,
    numbers: &[i64],
    ids: &[i64],
    reason: Option<&str>,
) -> Result<Value, ToolError> {
    let v = viewer(scope)?;
    let list = actionable(svc, v).await?;
    let mut results = Vec::new();
    for (number, id) in targets(&list, numbers, ids)? {
        let o = match choice {
            Choice::Cancel => cancel(svc, id, v.user_id, Via::Agent, v.chat_id).await?,
            Choice::Approve | Choice::Reject => {
                decide(
                    svc,
                    Decide {
                        workflow_id: id,
                        actor_id: v.user_id,
                        decision: if choice == Choice::Approve {
                            Decision::Approve
                        } else {
                            Decision::Reject
                        },
                        reason,
                        via: Via::Agent,
                        origin_chat: v.chat_id,
                    },
                )
                .await?
            }
        };
        let title = match &o {
            Outcome::Done(w) | Outcome::Already { workflow: w, .. } | Outcome::Denied(w, _) => {
                Some(w.target_title.clone())
            }
            Outcome::NotFound(_) => None,
        };
        results.push(json!({
            "id": id,
            "number": number,
            "title": title,
            "ok": matches!(o, Outcome::Done(_)),
            "result": render::outcome_plain(&o),
        }));
    }
    Ok(json!({ "results": results }))
}

/// `respond_to_workflow`: approve, reject or cancel one request.
pub struct RespondToWorkflow;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RespondArgs {
    decision: Choice,
    #[serde(default)]
    number: Option<i64>,
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
}

#[async_trait]
impl Tool for RespondToWorkflow {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "respond_to_workflow",
            description:
                "Approve/reject a request (by list number or id), or cancel your own (id).",
            parameters: json!({
                "type": "object",
                "properties": {
                    "decision": {"enum": ["approve", "reject", "cancel"]},
                    "number": {"type": "integer"},
                    "id": {"type": "integer"},
                    "reason": {"type": "string"}
                },
                "required": ["decision"]
            }),
        }
    }

    fn destructive(&self) -> bool {
        true
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: RespondArgs = args(a)?;
        let numbers: Vec<i64> = a.number.into_iter().collect();
        let ids: Vec<i64> = a.id.into_iter().collect();
        if numbers.len() + ids.len() != 1 {
            return Err(ToolError::InvalidArgs(
                "give exactly one of number or id".into(),
            ));
        }
        run(svc, scope, a.decision, &numbers, &ids, a.reason.as_deref()).await
    }
}

/// `batch_respond_to_workflows`: the same decision on several requests, one by one.
pub struct BatchRespondToWorkflows;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchArgs {
    decision: Choice,
    #[serde(default)]
    numbers: Vec<i64>,
    #[serde(default)]
    ids: Vec<i64>,
    #[serde(default)]
    reason: Option<String>,
}

/// Most requests one batch call may touch.
const MAX_BATCH: usize = 50;

#[async_trait]
impl Tool for BatchRespondToWorkflows {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "batch_respond_to_workflows",
            description: "Approve or reject several requests by list numbers and/or ids.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "decision": {"enum": ["approve", "reject"]},
                    "numbers": {"type": "array", "items": {"type": "integer"}},
                    "ids": {"type": "array", "items": {"type": "integer"}},
                    "reason": {"type": "string"}
                },
                "required": ["decision"]
            }),
        }
    }

    fn destructive(&self) -> bool {
        true
    }

    async fn call(&self, svc: &Services, scope: &Scope, a: Value) -> Result<Value, ToolError> {
        let a: BatchArgs = args(a)?;
        if a.decision == Choice::Cancel {
            return Err(ToolError::InvalidArgs(
                "cancel one request at a time with respond_to_workflow".into(),
            ));
        }
        if a.numbers.len() + a.ids.len() > MAX_BATCH {
            return Err(ToolError::InvalidArgs(format!(
                "at most {MAX_BATCH} requests"
            )));
        }
        run(
            svc,
            scope,
            a.decision,
            &a.numbers,
            &a.ids,
            a.reason.as_deref(),
        )
        .await
    }
}
