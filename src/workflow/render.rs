//! Text for workflows: request messages, outcome edits, notifications, the `/approvals` list
//! (Telegram HTML; user text always escaped) and the agent's context section (plain, compact:
//! every prompt token is paid by the user). The numbering is the actionable list's, so "1"
//! means the same to the member, the bot and the model. What a request is about is worded by
//! its kind's hook ([`super::WorkflowTarget`]). Uses: store, services, agent (the section
//! trait), format.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{actionable, my_pending, Outcome, Status, Viewer};
use crate::{
    agent::{prompt::Section, ContextSection, Scope},
    format::escape_html as e,
    services::Services,
    store::{StoreResult, WorkflowRow},
    types::ChatKind,
};

/// First names of the users `ids` (unknown users are left out; callers fall back to
/// "someone").
pub async fn names(svc: &Services, ids: &[i64]) -> StoreResult<HashMap<i64, String>> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    Ok(svc
        .store
        .users(&ids)
        .await?
        .into_iter()
        .map(|u| {
            let n = if u.first_name.trim().is_empty() {
                u.username.unwrap_or_else(|| "someone".into())
            } else {
                u.first_name
            };
            (u.id, n)
        })
        .collect())
}

fn name(names: &HashMap<i64, String>, id: i64) -> &str {
    names.get(&id).map(String::as_str).unwrap_or("someone")
}

/// What is asked, plain: `delete “Water plants”`, `verify “Dishes”` (the kind's hook).
pub fn what(svc: &Services, wf: &WorkflowRow) -> String {
    svc.workflow_targets.what(wf)
}

/// The request in one HTML sentence: "<b>Jack</b> wants to delete “Water plants”".
pub fn describe(svc: &Services, wf: &WorkflowRow, names: &HashMap<i64, String>) -> String {
    let who = e(name(names, wf.requester_id));
    svc.workflow_targets.describe(wf, &who)
}

/// "2 days", "5 h", "12 min" from `now` until `at` ("now" when past).
pub fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let m = (at - now).num_minutes();
    if m <= 0 {
        "now".into()
    } else if m >= 48 * 60 {
        format!("{} days", m / (24 * 60))
    } else if m >= 120 {
        format!("{} h", m / 60)
    } else {
        format!("{m} min")
    }
}

/// The request message (sent with its hook's buttons).
pub fn request_notice(
    svc: &Services,
    wf: &WorkflowRow,
    names: &HashMap<i64, String>,
    now: DateTime<Utc>,
) -> String {
    let who = e(name(names, wf.requester_id));
    let expires_in = until(now, wf.expires_at);
    match svc.workflow_targets.get(wf.kind) {
        Some(t) => t.request_notice(wf, &who, &expires_in),
        None => format!(
            "🙋 {} — Approve?\n<i>Expires in {expires_in}.</i>",
            svc.workflow_targets.describe(wf, &who)
        ),
    }
}

/// The outcome as a short line: "✅ Approved by Lottie", "❌ Rejected by Lottie: too dusty".
pub fn status_line(wf: &WorkflowRow, names: &HashMap<i64, String>) -> String {
    let by = wf
        .resolver_id
        .map(|id| format!(" by {}", e(name(names, id))))
        .unwrap_or_default();
    let reason = wf
        .reason
        .as_deref()
        .map(|r| format!(": {}", e(r)))
        .unwrap_or_default();
    match wf.status {
        Status::Approved => format!("✅ Approved{by}{reason}"),
        Status::Rejected => format!("❌ Rejected{by}{reason}"),
        Status::Expired => "⌛ Expired: nobody decided in time".into(),
        Status::Cancelled => format!("🚫 Cancelled{by}{reason}"),
        Status::Pending => "⏳ Pending".into(),
    }
}

/// The request message after resolution (sent as an edit, without buttons): the hook's
/// [`super::WorkflowTarget::notice_body`] (its describe, or for a gate the whole question) and
/// the outcome.
pub fn resolved_notice(svc: &Services, wf: &WorkflowRow, names: &HashMap<i64, String>) -> String {
    let who = e(name(names, wf.requester_id));
    format!(
        "{}\n{}",
        svc.workflow_targets.notice_body(wf, &who),
        status_line(wf, names)
    )
}

/// A quorum's progress under its request message: "⏳ 1 of 2 approvals: Alice".
pub fn quorum_line(wf: &WorkflowRow, approvers: &[i64], names: &HashMap<i64, String>) -> String {
    let who: Vec<String> = approvers.iter().map(|id| e(name(names, *id))).collect();
    format!(
        "⏳ {} of {} approvals: {}",
        approvers.len(),
        wf.required,
        who.join(", ")
    )
}

/// Everyone who approved a quorum request: "Approvals: Alice, Bob".
pub fn approvers_line(approvers: &[i64], names: &HashMap<i64, String>) -> String {
    let who: Vec<String> = approvers.iter().map(|id| e(name(names, *id))).collect();
    format!("Approvals: {}", who.join(", "))
}

/// What the requester is told when someone else resolved their request elsewhere (a button,
/// a private chat).
pub fn requester_notice(svc: &Services, wf: &WorkflowRow, names: &HashMap<i64, String>) -> String {
    let verb = match wf.status {
        Status::Approved => "approved",
        Status::Rejected => "rejected",
        Status::Cancelled => "cancelled",
        _ => "closed",
    };
    let by = wf
        .resolver_id
        .map(|id| e(name(names, id)).to_string())
        .unwrap_or_else(|| "Someone".into());
    let reason = wf
        .reason
        .as_deref()
        .map(|r| format!(" ({})", e(r)))
        .unwrap_or_default();
    format!(
        "{}: {by} {verb} your request to {}{reason}.",
        e(name(names, wf.requester_id)),
        e(&what(svc, wf))
    )
}

/// The one message sent when a request expires; `note` is what that means for the target (its
/// hook's [`super::WorkflowTarget::expired_note`], e.g. " The chore stays.").
pub fn expired_notice(
    svc: &Services,
    wf: &WorkflowRow,
    names: &HashMap<i64, String>,
    note: &str,
) -> String {
    format!(
        "⌛ Nobody decided on {}'s request to {} in time, so it expired.{note}",
        e(name(names, wf.requester_id)),
        e(&what(svc, wf))
    )
}

/// One line per decided item of a batch: "1. ✅ Approved: Jack — delete “Bins”".
pub fn outcome_lines(
    svc: &Services,
    results: &[(usize, Outcome)],
    names: &HashMap<i64, String>,
) -> String {
    if results.is_empty() {
        return "Nothing changed.".into();
    }
    results
        .iter()
        .map(|(n, o)| format!("{n}. {}", outcome_text(svc, o, names)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One outcome as HTML (without a number).
pub fn outcome_text(svc: &Services, o: &Outcome, names: &HashMap<i64, String>) -> String {
    match o {
        Outcome::Done(wf) => {
            let head = match wf.status {
                Status::Approved => "✅ Approved",
                Status::Rejected => "❌ Rejected",
                Status::Cancelled => "🚫 Cancelled",
                _ => "Done",
            };
            let reason = wf
                .reason
                .as_deref()
                .map(|r| format!(" ({})", e(r)))
                .unwrap_or_default();
            format!(
                "{head}: {} — {}{reason}",
                e(name(names, wf.requester_id)),
                e(&what(svc, wf))
            )
        }
        Outcome::Already { workflow, by } => {
            let by = by
                .as_deref()
                .map(|b| format!(" by {}", e(b)))
                .unwrap_or_default();
            format!(
                "“{}” was already {}{by}.",
                e(&crate::context::clip(&workflow.target_title, 80)),
                workflow.status
            )
        }
        Outcome::Denied(wf, d) => format!(
            "“{}”: {}",
            e(&crate::context::clip(&wf.target_title, 80)),
            e(&d.to_string())
        ),
        Outcome::Counted {
            workflow,
            approvals,
            required,
            new,
        } => format!(
            "{} {approvals} of {required} approvals: {} — {}",
            if *new {
                "☑️ Approval recorded,"
            } else {
                "☑️ You already approved;"
            },
            e(name(names, workflow.requester_id)),
            e(&what(svc, workflow))
        ),
        Outcome::NotFound(id) => format!("Request {id} doesn't exist."),
    }
}

/// A short plain result for a toast or a tool: "Approved.", "Already approved by Lottie.".
pub fn outcome_plain(o: &Outcome) -> String {
    match o {
        Outcome::Done(wf) => match wf.status {
            Status::Approved => "Approved.".into(),
            Status::Rejected => "Rejected.".into(),
            Status::Cancelled => "Cancelled.".into(),
            _ => "Done.".into(),
        },
        Outcome::Already { workflow, by } => match by {
            Some(b) => format!("Already {} by {b}.", workflow.status),
            None => format!("Already {}.", workflow.status),
        },
        Outcome::Denied(_, d) => d.to_string(),
        Outcome::Counted {
            approvals,
            required,
            new: true,
            ..
        } => format!("Approval recorded: {approvals} of {required}."),
        Outcome::Counted {
            approvals,
            required,
            new: false,
            ..
        } => format!("You already approved: {approvals} of {required}."),
        Outcome::NotFound(_) => "This request no longer exists.".into(),
    }
}

/// The `/approvals` message: the numbered actionable list and the viewer's own requests.
pub fn approvals(
    svc: &Services,
    list: &[WorkflowRow],
    mine: &[WorkflowRow],
    names: &HashMap<i64, String>,
    now: DateTime<Utc>,
) -> String {
    let mut s = String::from("<b>Requests you can action</b>\n");
    if list.is_empty() {
        s.push_str("Nothing for you right now.\n");
    } else {
        for (i, wf) in list.iter().enumerate() {
            s.push_str(&format!(
                "{}. {} · expires in {}\n",
                i + 1,
                describe(svc, wf, names),
                until(now, wf.expires_at)
            ));
        }
        s.push_str("<i>Reply e.g. “approve 1”, “reject 2, not yet clean”, “approve all”.</i>\n");
    }
    s.push_str("\n<b>Your pending requests</b>\n");
    if mine.is_empty() {
        s.push_str("None.");
    } else {
        for wf in mine {
            s.push_str(&format!(
                "• {} · expires in {} · /cancel {}\n",
                e(&what(svc, wf)),
                until(now, wf.expires_at),
                wf.id
            ));
        }
    }
    s.trim_end().to_string()
}

/// The agent's sections for `v`: `REQUESTS YOU CAN ACTION` (numbered like the member sees
/// them, with ids) and `YOUR PENDING REQUESTS`. One short line per request. Empty lists are
/// left out.
pub async fn sections(svc: &Services, v: Viewer) -> StoreResult<Vec<Section>> {
    // independent reads: on two connections at once (the section is on every turn's path)
    let (list, mine) = tokio::try_join!(actionable(svc, v), my_pending(svc, v))?;
    let mut ids: Vec<i64> = list.iter().map(|w| w.requester_id).collect();
    ids.extend(mine.iter().map(|w| w.requester_id));
    let names = names(svc, &ids).await?;
    let mut out = Vec::new();
    if !list.is_empty() {
        let body = list
            .iter()
            .enumerate()
            .map(|(i, w)| {
                format!(
                    "{}. {}: {} [id {}]",
                    i + 1,
                    name(&names, w.requester_id),
                    what(svc, w),
                    w.id
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        out.push(Section {
            title: "REQUESTS YOU CAN ACTION".into(),
            body,
        });
    }
    if !mine.is_empty() {
        let body = mine
            .iter()
            .map(|w| format!("- {} [id {}]", what(svc, w), w.id))
            .collect::<Vec<_>>()
            .join("\n");
        out.push(Section {
            title: "YOUR PENDING REQUESTS".into(),
            body,
        });
    }
    Ok(out)
}

/// The approvals context section (registered in `app::agent`).
pub struct ApprovalsSection;

#[async_trait]
impl ContextSection for ApprovalsSection {
    async fn render(&self, svc: &Services, scope: &Scope) -> Option<Section> {
        let user_id = scope.actor_id?;
        let v = Viewer {
            user_id,
            chat_id: scope.chat.id,
            private: scope.chat_kind == ChatKind::Private,
        };
        let secs = match sections(svc, v).await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(chat_id = v.chat_id, error = %err, "approvals section unavailable");
                return None;
            }
        };
        // one Section per provider: join the two titled blocks
        let mut it = secs.into_iter();
        let first = it.next()?;
        let mut body = first.body;
        for s in it {
            body.push_str(&format!("\n{}:\n{}", s.title, s.body));
        }
        Some(Section {
            title: first.title,
            body,
        })
    }
}
