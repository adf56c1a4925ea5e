//! Agent tools for approvals: `respond_to_workflow` and `batch_respond_to_workflows`, by
//! workflow id or by the viewer's numbers (the numbers of `REQUESTS YOU CAN ACTION`). Both go
//! through the same service path as replies, buttons and commands; authorization happens there,
//! never in the prompt. Schemas are minimal: every token is paid on every turn.
//!
//! Both are destructive: in an ordinary turn the call is only described (numbers resolved to
//! ids, refusals said at once) and waits for the member's confirmation (see `confirm`).
//! Uses: agent (Tool trait), the workflow service.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    actionable, cancel, decide, may_resolve, membership, my_pending, render, Decide, Decision,
    Outcome, Status, Via, Viewer,
};
use crate::{
    agent::{
        llm::ToolSpec,
        tools::{args, Described, Scope, Tool, ToolError},
    },
    services::Services,
    store::WorkflowRow,
    types::ChatKind,
};

/// What the model may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
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
            Outcome::Done(w)
            | Outcome::Already { workflow: w, .. }
            | Outcome::Denied(w, _)
            | Outcome::Counted { workflow: w, .. } => Some(w.target_title.clone()),
            Outcome::NotFound(_) => None,
        };
        results.push(json!({
            "id": id,
            "number": number,
            "title": title,
            "ok": matches!(o, Outcome::Done(_) | Outcome::Counted { new: true, .. }),
            "result": render::outcome_plain(&o),
        }));
    }
    Ok(json!({ "results": results }))
}

/// A call in plain words, e.g. "Approve request 1 — Bob: verify “Dishes”", and the ids it
/// acts on (numbers resolved against the viewer's list now: the list may change before the
/// member confirms). A target the viewer could not act on is refused now, with the service's
/// reason, so no confirmation is asked for a call that would fail.
async fn describe_targets(
    svc: &Services,
    scope: &Scope,
    choice: Choice,
    numbers: &[i64],
    ids: &[i64],
) -> Result<(String, Vec<i64>), ToolError> {
    let v = viewer(scope)?;
    let (list, verb) = match choice {
        Choice::Cancel => (my_pending(svc, v).await?, "Cancel your request"),
        Choice::Approve => (actionable(svc, v).await?, "Approve request"),
        Choice::Reject => (actionable(svc, v).await?, "Reject request"),
    };
    let names = render::names(
        svc,
        &list.iter().map(|w| w.requester_id).collect::<Vec<_>>(),
    )
    .await?;
    let mut lines = Vec::new();
    let mut out = Vec::new();
    for (_, id) in targets(&list, numbers, ids)? {
        let Some(pos) = list.iter().position(|w| w.id == id) else {
            return Err(ToolError::Denied(why_not(svc, v, id, choice).await?));
        };
        let wf = &list[pos];
        let what = render::what(svc, wf);
        lines.push(match choice {
            Choice::Cancel => format!("{verb} {} — {what}", wf.id),
            _ => format!(
                "{verb} {} — {}: {what}",
                pos + 1,
                names
                    .get(&wf.requester_id)
                    .map(String::as_str)
                    .unwrap_or("someone")
            ),
        });
        out.push(id);
    }
    Ok((lines.join("; "), out))
}

/// Why the viewer can't act on workflow `id` (not in their list), as the service would say.
async fn why_not(svc: &Services, v: Viewer, id: i64, choice: Choice) -> Result<String, ToolError> {
    let Some(wf) = svc.store.workflow(id).await? else {
        return Ok(format!("request {id} doesn't exist"));
    };
    if choice == Choice::Cancel && wf.requester_id != v.user_id {
        return Ok(super::Denial::NotRequester.to_string());
    }
    let m = membership(svc, &wf, v.user_id).await?;
    if choice != Choice::Cancel {
        if let Err(d) = may_resolve(&wf, v.user_id, m.as_ref()) {
            return Ok(d.to_string());
        }
    }
    Ok(if wf.status == Status::Pending {
        format!("request {id} has expired")
    } else {
        format!("request {id} is already {}", wf.status)
    })
}

/// The results of a run in a few words: "“Dishes”: Approved."
fn summarize_results(result: &Value) -> String {
    let lines: Vec<String> = result["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| match r["title"].as_str() {
                    Some(t) => format!(
                        "“{}”: {}",
                        crate::context::clip(t, 60),
                        r["result"].as_str().unwrap_or("")
                    ),
                    None => r["result"].as_str().unwrap_or("").to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if lines.is_empty() {
        "Done.".into()
    } else {
        lines.join(" ")
    }
}

/// " (reason: …)" when a reason was given.
fn reason_note(reason: Option<&str>) -> String {
    match reason.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => format!(" (reason: {})", crate::context::clip(r, 100)),
        None => String::new(),
    }
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

    async fn describe(
        &self,
        svc: &Services,
        scope: &Scope,
        a: Value,
    ) -> Result<Described, ToolError> {
        let a: RespondArgs = args(a)?;
        let numbers: Vec<i64> = a.number.into_iter().collect();
        let ids: Vec<i64> = a.id.into_iter().collect();
        if numbers.len() + ids.len() != 1 {
            return Err(ToolError::InvalidArgs(
                "give exactly one of number or id".into(),
            ));
        }
        let (text, ids) = describe_targets(svc, scope, a.decision, &numbers, &ids).await?;
        Ok(Described {
            text: format!("{text}{}", reason_note(a.reason.as_deref())),
            args: json!({"decision": a.decision, "id": ids[0], "reason": a.reason}),
        })
    }

    fn summarize(&self, result: &Value) -> String {
        summarize_results(result)
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

impl BatchArgs {
    /// Parse and check a batch call's arguments (the same rules when it runs and when it is
    /// described for a confirmation). Errors: cancel (one at a time), more than [`MAX_BATCH`].
    fn parse(a: Value) -> Result<BatchArgs, ToolError> {
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
        Ok(a)
    }
}

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
        let a = BatchArgs::parse(a)?;
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

    async fn describe(
        &self,
        svc: &Services,
        scope: &Scope,
        a: Value,
    ) -> Result<Described, ToolError> {
        let a = BatchArgs::parse(a)?;
        let (text, ids) = describe_targets(svc, scope, a.decision, &a.numbers, &a.ids).await?;
        Ok(Described {
            text: format!("{text}{}", reason_note(a.reason.as_deref())),
            args: json!({"decision": a.decision, "ids": ids, "reason": a.reason}),
        })
    }

    fn summarize(&self, result: &Value) -> String {
        summarize_results(result)
    }
}
