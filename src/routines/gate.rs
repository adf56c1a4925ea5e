//! Approval gates of runs: an `approval` step (or a step with `require_approval`) opens a
//! workflow of kind `routine_gate`, resolved like every other approval (numbers, "approve both",
//! buttons, expiry, no self-approval, optional quorum). Its `WorkflowTarget` hook writes the
//! outcome into the waiting step run and wakes the run in the transition's transaction
//! (`TargetChange::RunGate`).
//!
//! The gate's workflow row:
//! - `chat_id` = the run's chat; `requester_id` = the run owner (so never a resolver);
//! - `target_id` = the waiting **step run** id (like a chore kind's `target_id` = its chore id:
//!   the row the transition changes); the run id is read back from the step run;
//! - `target_title` = what is asked, plain and clipped for lists:
//!   `meal_plan step 3 'gate': Pasta, rice, …` ([`MAX_TITLE_CHARS`]);
//! - `metadata` = JSON [`GateMeta`]: routine name, step label, the whole question, and the
//!   named resolvers' names (for the request message);
//! - `eligibility` = `others`, or `named` with the resolvers in `workflow_resolvers` (lists
//!   filter them in queries); `required` = the quorum.
//!
//! Uses: services, workflow, store.

use async_trait::async_trait;
use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::{steps::Resolvers, RoutineError};
use crate::{
    context::clip,
    format::escape_html as e,
    services::Services,
    store::{
        CreateGuard, Eligibility, GateOutcome, MemberRow, StoreResult, TargetChange, WorkflowKind,
        WorkflowRow, WorkflowStatus,
    },
    workflow::{self, NewRequest, Resolution, WorkflowTarget},
};

/// Longest title (what lists and the parser see), in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest question shown in a list line (`/approvals`, the agent's section), in characters.
const LIST_CHARS: usize = 120;
/// Longest question kept in an edit of the request message (Telegram refuses edits over 4096
/// characters; the first message of a split request keeps the start), in characters.
const EDIT_CHARS: usize = 3000;

/// A gate to open for a waiting step run.
#[derive(Debug, Clone)]
pub struct GateRequest {
    pub chat_id: i64,
    pub run_id: i64,
    /// The waiting step run the outcome is written to.
    pub step_run_id: i64,
    /// The run owner (the requester: never an eligible resolver).
    pub owner_id: i64,
    pub routine_name: String,
    /// "step 3 'gate'".
    pub step_label: String,
    /// What is asked (rendered, plain text).
    pub text: String,
    pub resolvers: Resolvers,
    /// Distinct approvals needed; one rejection decides.
    pub required: u32,
    /// `None`: `workflows.expiry`.
    pub expires: Option<Duration>,
}

/// What a gate's workflow keeps in `metadata` (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateMeta {
    pub run_id: i64,
    pub routine: String,
    /// "step 3 'gate'".
    pub step: String,
    /// The whole question (plain text).
    pub text: String,
    /// First names of the named resolvers (empty: any other member).
    #[serde(default)]
    pub resolvers: Vec<String>,
}

/// Open the gate: mark the step run waiting, create the workflow (requester = the run owner,
/// target = the step run, the given expiry, named resolvers and quorum) and post its request
/// message with Approve / Reject buttons in the run's chat; the step run then records the
/// workflow id. The run's own `waiting` state (`approval:<id>`, `wake_at`) is the engine's.
///
/// Named resolvers are matched against the chat's current members by Telegram id, `@username`
/// or first name (case-insensitive); the run owner is dropped from them (never eligible).
///
/// Errors: [`RoutineError::Invalid`] naming the unknown or ambiguous names, or when no member
/// (or fewer than `required`) could resolve it; storage.
pub async fn open(svc: &Services, req: GateRequest) -> Result<WorkflowRow, RoutineError> {
    let members = svc.store.members(req.chat_id).await?;
    let (named, names) = match &req.resolvers {
        Resolvers::Others => (None, vec![]),
        Resolvers::Named(list) => {
            let picked = resolve_named(&members, list)?;
            let picked: Vec<&MemberRow> = picked
                .into_iter()
                .filter(|m| m.user_id != req.owner_id)
                .collect();
            (
                Some(picked.iter().map(|m| m.user_id).collect::<Vec<_>>()),
                picked.iter().map(|m| m.first_name.clone()).collect(),
            )
        }
    };
    let eligible = match &named {
        Some(ids) => ids.len(),
        None => members.iter().filter(|m| m.user_id != req.owner_id).count(),
    };
    let required = req.required.max(1);
    if eligible == 0 {
        return Err(RoutineError::invalid(
            "resolvers",
            "no member other than the run owner can approve this gate",
        ));
    }
    if required as usize > eligible {
        return Err(RoutineError::invalid(
            "required",
            format!("{required} approvals needed but only {eligible} members can approve"),
        ));
    }
    let meta = GateMeta {
        run_id: req.run_id,
        routine: req.routine_name.clone(),
        step: req.step_label.clone(),
        text: req.text.clone(),
        resolvers: names,
    };
    let metadata = serde_json::to_string(&meta)
        .map_err(|err| RoutineError::invalid("approval", err.to_string()))?;
    let title = clip(
        &format!("{} {}: {}", req.routine_name, req.step_label, req.text),
        MAX_TITLE_CHARS,
    );
    // waiting before the workflow exists: a decision can only ever find it waiting
    svc.store
        .set_step_run_waiting(req.step_run_id, None)
        .await?;
    let opened = workflow::open_with(
        svc,
        NewRequest {
            chat_id: req.chat_id,
            kind: WorkflowKind::RoutineGate,
            requester_id: req.owner_id,
            target_id: Some(req.step_run_id),
            target_title: &title,
            partner_id: None,
            metadata: Some(metadata),
        },
        CreateGuard::None,
        Resolution {
            named,
            required,
            expires: req.expires,
        },
    )
    .await?
    .map_err(|_| RoutineError::invalid("approval", "the approval could not be opened"))?;
    svc.store
        .set_step_run_waiting(req.step_run_id, Some(opened.workflow.id))
        .await?;
    tracing::info!(
        workflow_id = opened.workflow.id,
        run_id = req.run_id,
        step_run_id = req.step_run_id,
        required,
        delivered = opened.delivered,
        "approval gate opened"
    );
    Ok(opened.workflow)
}

/// The members `names` designate (Telegram id, `@username` or first name, case-insensitive),
/// in order, without repeats.
///
/// Errors: [`RoutineError::Invalid`] naming every unknown or ambiguous name.
fn resolve_named<'a>(
    members: &'a [MemberRow],
    names: &[String],
) -> Result<Vec<&'a MemberRow>, RoutineError> {
    let mut out: Vec<&MemberRow> = Vec::new();
    let mut unknown = Vec::new();
    let mut ambiguous = Vec::new();
    for raw in names {
        let n = raw.trim().trim_start_matches('@').to_lowercase();
        let by_id = n.parse::<i64>().ok();
        let mut hits: Vec<&MemberRow> = members
            .iter()
            .filter(|m| {
                by_id == Some(m.user_id)
                    || m.username.as_deref().map(str::to_lowercase).as_deref() == Some(&n)
            })
            .collect();
        if hits.is_empty() {
            hits = members
                .iter()
                .filter(|m| m.first_name.trim().to_lowercase() == n)
                .collect();
        }
        match hits.as_slice() {
            [m] => {
                if !out.iter().any(|o| o.user_id == m.user_id) {
                    out.push(m);
                }
            }
            [] => unknown.push(raw.trim().to_string()),
            _ => ambiguous.push(raw.trim().to_string()),
        }
    }
    if unknown.is_empty() && ambiguous.is_empty() {
        return Ok(out);
    }
    let mut rule = Vec::new();
    if !unknown.is_empty() {
        rule.push(format!("not members of this chat: {}", unknown.join(", ")));
    }
    if !ambiguous.is_empty() {
        rule.push(format!(
            "more than one member is called {} (use @username)",
            ambiguous.join(", ")
        ));
    }
    Err(RoutineError::invalid("resolvers", rule.join("; ")))
}

/// `text` cut to `max` characters (lines kept, "…" when cut).
fn clip_lines(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

fn meta(wf: &WorkflowRow) -> Option<GateMeta> {
    wf.metadata
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
}

/// "Run <b>meal_plan</b> (step 3 'gate') asks: " + the question cut to `max` (HTML).
fn asks(wf: &WorkflowRow, max: usize, lines: bool) -> String {
    match meta(wf) {
        Some(m) => format!(
            "Run <b>{}</b> ({}) asks: {}",
            e(&m.routine),
            e(&m.step),
            e(&if lines {
                clip_lines(m.text.trim(), max)
            } else {
                clip(&m.text, max)
            })
        ),
        None => format!("A run asks: {}", e(&clip(&wf.target_title, max))),
    }
}

/// The `routine_gate` kind's hook (registered in `app::core`).
pub struct GateTarget;

#[async_trait]
impl WorkflowTarget for GateTarget {
    fn kinds(&self) -> &'static [WorkflowKind] {
        &[WorkflowKind::RoutineGate]
    }

    fn eligibility(&self, _kind: WorkflowKind) -> Eligibility {
        // named resolvers are given per gate (`Resolution::named`)
        Eligibility::Others
    }

    fn what(&self, wf: &WorkflowRow) -> String {
        match meta(wf) {
            Some(m) => format!(
                "approve run {} ({}): {}",
                m.routine,
                m.step,
                clip(&m.text, 80)
            ),
            None => format!("approve “{}”", clip(&wf.target_title, 80)),
        }
    }

    fn describe(&self, wf: &WorkflowRow, _who: &str) -> String {
        asks(wf, LIST_CHARS, false)
    }

    fn notice_body(&self, wf: &WorkflowRow, _who: &str) -> String {
        asks(wf, EDIT_CHARS, true)
    }

    fn request_notice(&self, wf: &WorkflowRow, who: &str, expires_in: &str) -> String {
        let body = match meta(wf) {
            // the whole question: the outbox splits a message over Telegram's 4096 characters
            Some(m) => format!(
                "Run <b>{}</b> ({}) asks: {}",
                e(&m.routine),
                e(&m.step),
                e(m.text.trim())
            ),
            None => asks(wf, MAX_TITLE_CHARS, true),
        };
        let mut how = format!("Started by {who}.");
        if let Some(m) = meta(wf).filter(|m| !m.resolvers.is_empty()) {
            how.push_str(&format!(" Only {} can decide.", e(&or_list(&m.resolvers))));
        }
        if wf.required > 1 {
            how.push_str(&format!(
                " Needs {} approvals; one rejection decides.",
                wf.required
            ));
        }
        format!(
            "🙋 {body} — Approve?\n<i>{how} Tap a button or reply “approve” / “reject, reason”. Expires in {expires_in}.</i>"
        )
    }

    fn expired_note(&self, _wf: &WorkflowRow) -> Option<&'static str> {
        Some(" The run goes on as its routine says for an expired approval.")
    }

    async fn change(
        &self,
        svc: &Services,
        wf: &WorkflowRow,
        to: WorkflowStatus,
    ) -> StoreResult<Option<TargetChange>> {
        let Some(step_run_id) = wf.target_id else {
            return Ok(None);
        };
        let outcome = match to {
            WorkflowStatus::Approved => GateOutcome::Approved,
            WorkflowStatus::Rejected => GateOutcome::Rejected,
            WorkflowStatus::Expired => GateOutcome::Expired,
            WorkflowStatus::Cancelled => GateOutcome::Cancelled,
            WorkflowStatus::Pending => return Ok(None),
        };
        let Some(step) = svc.store.step_run(step_run_id).await? else {
            return Ok(None);
        };
        Ok(Some(TargetChange::RunGate {
            step_run_id,
            run_id: step.run_id,
            outcome,
            // the store takes the transition's reason (the member's "reject 1, no fish please")
            reason: None,
        }))
    }
}

/// "Alice", "Alice or Bob", "Alice, Bob or Carol".
fn or_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: i64, first: &str, user: Option<&str>) -> MemberRow {
        MemberRow {
            chat_id: -1,
            user_id: id,
            first_name: first.into(),
            username: user.map(str::to_string),
            role: "member".into(),
            active: true,
        }
    }

    #[test]
    fn named_resolvers_match_ids_usernames_and_first_names() {
        let ms = [
            m(1, "Alice", Some("al")),
            m(2, "Bob", None),
            m(3, "Bob", Some("bobby")),
        ];
        let got = resolve_named(&ms, &["@AL".into(), "3".into(), "alice".into()]).unwrap();
        assert_eq!(
            got.iter().map(|m| m.user_id).collect::<Vec<_>>(),
            vec![1, 3]
        );
        let err = resolve_named(&ms, &["Bob".into(), "Zed".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not members of this chat: Zed"), "{err}");
        assert!(err.contains("more than one member is called Bob"), "{err}");
    }

    #[test]
    fn lists_read_naturally() {
        assert_eq!(or_list(&["A".into()]), "A");
        assert_eq!(or_list(&["A".into(), "B".into(), "C".into()]), "A, B or C");
        assert_eq!(clip_lines("ab\ncd", 10), "ab\ncd");
        assert_eq!(clip_lines("abcdef", 4), "abc…");
    }
}
