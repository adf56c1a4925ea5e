//! Approval workflows: one state machine for every approval.
//!
//! Owns: the eligibility rule (kinds, statuses and eligibility are typed in `store`); opening
//! requests (with their notification and buttons); the one validated path every decision goes
//! through ([`decide`], [`cancel`]) whether it comes from a text reply, a button, a command or
//! an agent tool; handing each transition's target change to the store (applied in the
//! transition's transaction); the actionable list (numbered 1..n in creation order, the same
//! numbers for the member, the bot and the model); the expiry sweep; and confirmations of
//! destructive agent calls ([`confirm`]).
//!
//! Peers' failures this answers: choresir flipped a workflow through the agent's tools without
//! completing the chore (side effects here run in the transition's transaction); its expired
//! verifications left chores stuck (expiry restores the target); it listed partners' private
//! verifications to everyone (eligibility is filtered in queries and checked again here);
//! OpenClaw and zeroclaw honoured button taps from anyone (every tap is authorized here).
//!
//! The service knows no target: each kind's [`WorkflowTarget`] hook (registered in the wiring)
//! builds the target's change, renders the request and acts after a transition.
//!
//! One request may also name its only resolvers and need a quorum ([`Resolution`], used by a
//! run's approval gate): named resolvers are stored per request and filtered in the list
//! queries; a partial quorum approval is an audit row and leaves the request pending, the
//! `required`-th distinct approver approves it, one rejection decides.
//!
//! Uses: store, services, events, format, parse (pure), target (the hooks), agent (tools and
//! the confirmation gate, in `tools` and `confirm`).

pub mod buttons;
pub mod commands;
pub mod confirm;
pub mod parse;
pub mod render;
pub mod target;
pub mod tools;

use std::collections::HashMap;

use chrono::Duration;

pub use crate::store::{Eligibility, Via, WorkflowKind as Kind, WorkflowStatus as Status};
use crate::{
    events::HearthEvent,
    services::Services,
    store::{
        CreateGuard, CreateRefused, MemberRow, NewWorkflow, QuorumVote, StoreResult, TargetChange,
        Transition, Transitioned, WorkflowRow,
    },
    types::Outbound,
};
pub use parse::{ActionableItem, Decision, ParseOutcome, ParsedAction, Refusal};
pub use target::{WorkflowTarget, WorkflowTargets};

/// The status a decision moves a workflow to.
fn status_of(d: Decision) -> Status {
    match d {
        Decision::Approve => Status::Approved,
        Decision::Reject => Status::Rejected,
    }
}

/// Why a member may not act on a workflow. Display: a short user-facing sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("You can't decide your own request (you can /cancel it).")]
    OwnRequest,
    #[error("This request isn't yours to decide.")]
    NotEligible,
    #[error("Only admins can decide this request.")]
    NotAdmin,
    #[error("Only the person who asked can cancel a request.")]
    NotRequester,
    #[error("Only the member this was asked for can confirm it.")]
    NotYours,
}

/// The eligibility rule, in one place: may `user_id` resolve `wf`? `member` is the user's
/// member row in the workflow's group (`None` when not a member or not looked up); only a
/// current (active) member of the group counts (issue 8: a tap from a non-member or a leaver
/// approved requests). A requester never resolves their own request, except a confirmation,
/// which only they resolve; a personal verification only its partner; a `named` request (a
/// run's gate with named resolvers) only a named resolver who is a current member — for it
/// `member` is given only when the user is named (see [`membership`]).
pub fn may_resolve(
    wf: &WorkflowRow,
    user_id: i64,
    member: Option<&MemberRow>,
) -> Result<(), Denial> {
    if wf.eligibility == Eligibility::Requester {
        return if wf.requester_id == user_id {
            Ok(())
        } else {
            Err(Denial::NotYours)
        };
    }
    if wf.requester_id == user_id {
        return Err(Denial::OwnRequest);
    }
    let active = member.filter(|m| m.active && m.chat_id == wf.chat_id);
    match wf.eligibility {
        Eligibility::Partner if wf.partner_id == Some(user_id) => Ok(()),
        Eligibility::Partner => Err(Denial::NotEligible),
        Eligibility::Others if active.is_some() => Ok(()),
        Eligibility::Others => Err(Denial::NotEligible),
        Eligibility::Admins if active.is_some_and(|m| m.is_admin()) => Ok(()),
        Eligibility::Admins if active.is_some() => Err(Denial::NotAdmin),
        Eligibility::Named if active.is_some() => Ok(()),
        Eligibility::Admins | Eligibility::Requester | Eligibility::Named => {
            Err(Denial::NotEligible)
        }
    }
}

/// The member row that [`may_resolve`] needs for `wf` (none for partner-only workflows and
/// confirmations; for a `named` workflow only when the user is one of its named resolvers).
async fn membership(
    svc: &Services,
    wf: &WorkflowRow,
    user_id: i64,
) -> StoreResult<Option<MemberRow>> {
    if matches!(
        wf.eligibility,
        Eligibility::Partner | Eligibility::Requester
    ) {
        return Ok(None);
    }
    if wf.eligibility == Eligibility::Named && !svc.store.is_named_resolver(wf.id, user_id).await? {
        return Ok(None);
    }
    svc.store.member(wf.chat_id, user_id).await
}

/// How long a request of `kind` stays pending: its hook's expiry, else `workflows.expiry`.
/// At least one minute.
pub fn expiry_for(svc: &Services, kind: Kind) -> Duration {
    svc.workflow_targets
        .get(kind)
        .and_then(|t| t.expiry(svc, kind))
        .unwrap_or_else(|| {
            Duration::from_std(svc.config.workflows.expiry).unwrap_or(Duration::hours(48))
        })
        .max(Duration::minutes(1))
}

/// Who is looking: a user in a chat. In a group they see that group's requests; in a private
/// chat, every request of their groups plus personal verifications naming them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: i64,
    pub chat_id: i64,
    pub private: bool,
}

/// The viewer's actionable list: pending, unexpired workflows they may resolve, in creation
/// order (item `i` is number `i + 1`). Eligibility and expiry are filtered in the query (chat
/// scope, partner, `expires_at > now` even before the sweep ran) and then checked with
/// [`may_resolve`] for each row.
pub async fn actionable(svc: &Services, v: Viewer) -> StoreResult<Vec<WorkflowRow>> {
    let chats: Vec<i64> = if v.private {
        svc.store
            .groups_of_user(v.user_id)
            .await?
            .into_iter()
            .map(|g| g.id)
            .collect()
    } else {
        vec![v.chat_id]
    };
    let rows = svc
        .store
        .pending_for_viewer(&chats, v.user_id, svc.clock.now())
        .await?;
    let mut members: HashMap<i64, Option<MemberRow>> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for wf in rows {
        if !v.private && wf.chat_id != v.chat_id {
            continue; // a personal verification never shows in a group
        }
        let m = if wf.eligibility == Eligibility::Partner {
            None
        } else if wf.eligibility == Eligibility::Named {
            membership(svc, &wf, v.user_id).await?
        } else {
            match members.get(&wf.chat_id) {
                Some(m) => m.clone(),
                None => {
                    let m = svc.store.member(wf.chat_id, v.user_id).await?;
                    members.insert(wf.chat_id, m.clone());
                    m
                }
            }
        };
        if may_resolve(&wf, v.user_id, m.as_ref()).is_ok() {
            out.push(wf);
        }
    }
    Ok(out)
}

/// The viewer's own pending, unexpired requests, in creation order (in a group: that group's
/// only; in a private chat: all of them, personal ones and confirmations included).
pub async fn my_pending(svc: &Services, v: Viewer) -> StoreResult<Vec<WorkflowRow>> {
    svc.store
        .pending_by_requester(
            v.user_id,
            (!v.private).then_some(v.chat_id),
            svc.clock.now(),
        )
        .await
}

/// The parser's view of an actionable list: numbers 1..n and target titles.
pub fn items(list: &[WorkflowRow]) -> Vec<ActionableItem<'_>> {
    list.iter()
        .enumerate()
        .map(|(i, w)| ActionableItem {
            number: i + 1,
            title: &w.target_title,
        })
        .collect()
}

/// A request to open.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    /// The group, or for a personal verification the requester's private chat, or for a
    /// confirmation the chat of the turn.
    pub chat_id: i64,
    pub kind: Kind,
    pub requester_id: i64,
    /// The target's id in its own table (`None` when the target is the metadata itself).
    pub target_id: Option<i64>,
    pub target_title: &'a str,
    /// The only resolver of a personal verification.
    pub partner_id: Option<i64>,
    /// Kind-specific data (JSON) the kind's hook reads back.
    pub metadata: Option<String>,
}

/// An opened request.
#[derive(Debug, Clone)]
pub struct Opened {
    pub workflow: WorkflowRow,
    /// False when the request message could not be delivered.
    pub delivered: bool,
}

/// Open a request: check `guard` and insert in one transaction, then send the request message
/// with its hook's buttons (to the group; to the partner's private chat for a personal
/// verification), remember the message for later edits, and publish `WorkflowCreated`.
/// Eligibility and expiry come from the kind's hook (a kind without one: admins, the default
/// expiry).
///
/// Errors: storage. A failed guard comes back as `Ok(Err(_))` and changes nothing.
pub async fn open(
    svc: &Services,
    req: NewRequest<'_>,
    guard: CreateGuard,
) -> StoreResult<Result<Opened, CreateRefused>> {
    open_with(svc, req, guard, Resolution::default()).await
}

/// Who resolves one request and how, when it differs from its kind's defaults (a run's gate:
/// named resolvers, a quorum, the step's own expiry).
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// `Some(ids)`: only these members (eligibility `named`, stored in `workflow_resolvers` so
    /// lists filter them in queries); the requester is dropped from it. `None`: the hook's rule.
    pub named: Option<Vec<i64>>,
    /// Distinct approvals needed (0 or 1: one approval decides). One rejection always decides.
    pub required: u32,
    /// How long it stays pending; `None`: [`expiry_for`] its kind. At least one minute.
    pub expires: Option<Duration>,
}

/// [`open`] with a [`Resolution`] for this one request.
///
/// Errors: storage. A failed guard comes back as `Ok(Err(_))` and changes nothing.
pub async fn open_with(
    svc: &Services,
    req: NewRequest<'_>,
    guard: CreateGuard,
    how: Resolution,
) -> StoreResult<Result<Opened, CreateRefused>> {
    let now = svc.clock.now();
    let hook = svc.workflow_targets.get(req.kind).cloned();
    let (eligibility, resolvers) = match how.named {
        Some(mut ids) => {
            ids.retain(|id| *id != req.requester_id);
            (Eligibility::Named, ids)
        }
        None => (
            hook.as_ref()
                .map(|h| h.eligibility(req.kind))
                .unwrap_or(Eligibility::Admins),
            vec![],
        ),
    };
    let expires = how
        .expires
        .map(|d| d.max(Duration::minutes(1)))
        .unwrap_or_else(|| expiry_for(svc, req.kind));
    let row = svc
        .store
        .create_workflow(
            NewWorkflow {
                chat_id: req.chat_id,
                kind: req.kind,
                requester_id: req.requester_id,
                target_id: req.target_id,
                target_title: req.target_title,
                eligibility,
                partner_id: req.partner_id,
                created_at: now,
                expires_at: now + expires,
                metadata: req.metadata,
                required: i32::try_from(how.required.max(1)).unwrap_or(i32::MAX),
                resolvers,
            },
            guard,
        )
        .await?;
    let wf = match row {
        Ok(wf) => wf,
        Err(r) => return Ok(Err(r)),
    };
    tracing::info!(workflow_id = wf.id, chat_id = wf.chat_id, kind = %wf.kind, "request opened");
    svc.events.publish(HearthEvent::WorkflowCreated {
        chat_id: wf.chat_id,
        workflow_id: wf.id,
        workflow_type: wf.kind.as_str().to_string(),
        title: wf.target_title.clone(),
        requester_id: wf.requester_id,
    });
    let names = render::names(svc, &[wf.requester_id]).await?;
    let to = notice_chat(&wf);
    let html = render::request_notice(svc, &wf, &names, now);
    let buttons = match &hook {
        Some(h) => h.buttons(&wf),
        None => buttons::for_request(wf.id),
    };
    let delivered = match svc
        .outbox
        .send(Outbound {
            chat_id: to,
            html,
            buttons,
            reply_to: None,
        })
        .await
    {
        Ok(sent) => match sent.last() {
            Some(s) => {
                svc.store
                    .set_workflow_notice(wf.id, to, s.message_id)
                    .await?;
                true
            }
            None => false,
        },
        Err(e) => {
            tracing::warn!(workflow_id = wf.id, chat_id = to, error = %e, "request message not delivered");
            false
        }
    };
    let workflow = svc.store.workflow(wf.id).await?.unwrap_or(wf);
    Ok(Ok(Opened {
        workflow,
        delivered,
    }))
}

/// Where a request's message goes: the partner's private chat for a personal verification,
/// else the workflow's chat.
fn notice_chat(wf: &WorkflowRow) -> i64 {
    match (wf.eligibility, wf.partner_id) {
        (Eligibility::Partner, Some(p)) => p,
        _ => wf.chat_id,
    }
}

/// The change the move of `wf` to `to` makes to its target: its kind's hook decides (see
/// `chores::targets` for the chore kinds); a kind without a hook changes nothing.
async fn target_change(
    svc: &Services,
    wf: &WorkflowRow,
    to: Status,
) -> StoreResult<Option<TargetChange>> {
    match svc.workflow_targets.get(wf.kind) {
        Some(h) => h.change(svc, wf, to).await,
        None => Ok(None),
    }
}

/// What happened to one decision.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// This decision moved the workflow (its new status is in the row).
    Done(WorkflowRow),
    /// It was no longer pending (or had just expired); `by` is the resolver's name when there
    /// was one.
    Already {
        workflow: WorkflowRow,
        by: Option<String>,
    },
    /// The actor may not act on it.
    Denied(WorkflowRow, Denial),
    /// An approval toward a quorum that did not reach it: still pending. `approvals` distinct
    /// approvers of `required` so far; `new` is false when the actor had already approved
    /// (counted once).
    Counted {
        workflow: WorkflowRow,
        approvals: usize,
        required: usize,
        new: bool,
    },
    /// No such workflow.
    NotFound(i64),
}

/// One decision on one workflow.
#[derive(Debug, Clone)]
pub struct Decide<'a> {
    pub workflow_id: i64,
    pub actor_id: i64,
    pub decision: Decision,
    pub reason: Option<&'a str>,
    pub via: Via,
    /// The chat the decision was made in (a reply there already tells the group).
    pub origin_chat: i64,
}

/// The one validated path for approving or rejecting: authorize ([`may_resolve`], against
/// the actor's current membership, before anything is written), then — when the request is
/// past its `expires_at` but the sweep has not run yet — expire it on the spot (never approve
/// it), else the conditional transition with its audit row and target change in one
/// transaction, then the notifications (request message edited to show the outcome and who
/// decided, buttons removed; requester told; `WorkflowResolved` published; the hook's
/// `after`). Fifty concurrent calls give one `Done` and forty-nine `Already` naming the winner.
///
/// A request that needs a quorum (`required` > 1): an approval is counted
/// ([`crate::store::Store::approve_toward_quorum`]: an audit row, the request message edited to
/// show "1 of 2 approvals: Alice", still pending; the same member twice counts once) until the
/// `required`-th distinct approver moves it to approved; one rejection decides at once. Every
/// path (text, numbers, "approve both", buttons, commands, the agent's tools) comes here.
///
/// Errors: storage only; every refusal is an [`Outcome`].
pub async fn decide(svc: &Services, d: Decide<'_>) -> StoreResult<Outcome> {
    let Some(wf) = svc.store.workflow(d.workflow_id).await? else {
        return Ok(Outcome::NotFound(d.workflow_id));
    };
    let member = membership(svc, &wf, d.actor_id).await?;
    if let Err(denial) = may_resolve(&wf, d.actor_id, member.as_ref()) {
        return Ok(Outcome::Denied(wf, denial));
    }
    if wf.status != Status::Pending {
        return already(svc, wf).await;
    }
    if wf.expires_at <= svc.clock.now() {
        return expired_now(svc, wf).await;
    }
    let to = status_of(d.decision);
    let reason = d.reason.map(|r| crate::context::clip(r.trim(), 300));
    let change = target_change(svc, &wf, to).await?;
    let cancel_siblings = svc
        .workflow_targets
        .get(wf.kind)
        .and_then(|h| h.cancels(&wf, to));
    let transition = Transition {
        workflow_id: wf.id,
        to,
        actor_id: Some(d.actor_id),
        reason: reason.as_deref().filter(|r| !r.is_empty()),
        via: d.via,
        at: svc.clock.now(),
        change,
        cancel_siblings,
    };
    if to == Status::Approved && wf.required > 1 {
        return approve_quorum(svc, wf, transition, d).await;
    }
    let t = svc.store.transition_workflow(transition).await?;
    match t {
        Some(t) => {
            let tell = tell_requester(&t.workflow, d.via, d.origin_chat);
            after_transition(svc, &t, Some(d.actor_id), tell).await?;
            Ok(Outcome::Done(t.workflow))
        }
        None => {
            let wf = svc.store.workflow(wf.id).await?.unwrap_or(wf);
            already(svc, wf).await
        }
    }
}

/// [`decide`]'s approval of a request that needs a quorum.
async fn approve_quorum(
    svc: &Services,
    wf: WorkflowRow,
    t: Transition<'_>,
    d: Decide<'_>,
) -> StoreResult<Outcome> {
    match svc.store.approve_toward_quorum(t).await? {
        QuorumVote::NotPending => {
            let wf = svc.store.workflow(wf.id).await?.unwrap_or(wf);
            already(svc, wf).await
        }
        QuorumVote::Counted { approvers, new } => {
            if new {
                tracing::info!(
                    workflow_id = wf.id,
                    approvals = approvers.len(),
                    required = wf.required,
                    "approval counted toward a quorum"
                );
                edit_partial(svc, &wf, &approvers).await?;
            }
            let required = usize::try_from(wf.required).unwrap_or(1);
            Ok(Outcome::Counted {
                workflow: wf,
                approvals: approvers.len(),
                required,
                new,
            })
        }
        QuorumVote::Reached(t) => {
            let tell = tell_requester(&t.workflow, d.via, d.origin_chat);
            after_transition(svc, &t, Some(d.actor_id), tell).await?;
            Ok(Outcome::Done(t.workflow))
        }
    }
}

/// Edit a quorum request's message to show the approvals so far ("⏳ 1 of 2 approvals:
/// Alice"), keeping its buttons (best effort: logged).
async fn edit_partial(svc: &Services, wf: &WorkflowRow, approvers: &[i64]) -> StoreResult<()> {
    let (Some(chat), Some(msg)) = (wf.notice_chat_id, wf.notice_message_id) else {
        return Ok(());
    };
    let mut ids = approvers.to_vec();
    ids.push(wf.requester_id);
    let names = render::names(svc, &ids).await?;
    // the edit body, not the whole request: an edit can't be split past Telegram's limit
    let who = crate::format::escape_html(names.get(&wf.requester_id).map_or("someone", |n| n));
    let html = format!(
        "🙋 {} — Approve?\n{}\n<i>Tap a button or reply “approve” / “reject, reason”. Expires in {}.</i>",
        svc.workflow_targets.notice_body(wf, &who),
        render::quorum_line(wf, approvers, &names),
        render::until(svc.clock.now(), wf.expires_at)
    );
    let buttons = match svc.workflow_targets.get(wf.kind) {
        Some(h) => h.buttons(wf),
        None => buttons::for_request(wf.id),
    };
    if let Err(e) = svc.outbox.edit(chat, msg, &html, &buttons).await {
        tracing::warn!(workflow_id = wf.id, error = %e, "request message not edited");
    }
    Ok(())
}

async fn already(svc: &Services, wf: WorkflowRow) -> StoreResult<Outcome> {
    let by = match wf.resolver_id {
        Some(id) => render::names(svc, &[id]).await?.remove(&id),
        None => None,
    };
    Ok(Outcome::Already { workflow: wf, by })
}

/// A pending request found past its `expires_at` before the sweep: expire it now (restoring its
/// target, with the sweep's notices) and report it as already expired.
async fn expired_now(svc: &Services, wf: WorkflowRow) -> StoreResult<Outcome> {
    let id = wf.id;
    expire(svc, vec![wf]).await?;
    match svc.store.workflow(id).await? {
        Some(wf) => already(svc, wf).await,
        None => Ok(Outcome::NotFound(id)),
    }
}

/// Cancel `workflow_id` on behalf of its requester (restoring its target).
///
/// Errors: storage; a non-requester gets `Outcome::Denied(NotRequester)`.
pub async fn cancel(
    svc: &Services,
    workflow_id: i64,
    actor_id: i64,
    via: Via,
    origin_chat: i64,
) -> StoreResult<Outcome> {
    let Some(wf) = svc.store.workflow(workflow_id).await? else {
        return Ok(Outcome::NotFound(workflow_id));
    };
    if wf.requester_id != actor_id {
        return Ok(Outcome::Denied(wf, Denial::NotRequester));
    }
    if wf.status != Status::Pending {
        return already(svc, wf).await;
    }
    if wf.expires_at <= svc.clock.now() {
        return expired_now(svc, wf).await;
    }
    let change = target_change(svc, &wf, Status::Cancelled).await?;
    match svc
        .store
        .transition_workflow(Transition {
            workflow_id: wf.id,
            to: Status::Cancelled,
            actor_id: Some(actor_id),
            reason: None,
            via,
            at: svc.clock.now(),
            change,
            cancel_siblings: None,
        })
        .await?
    {
        Some(t) => {
            let tell = tell_requester(&t.workflow, via, origin_chat);
            after_transition(svc, &t, Some(actor_id), tell).await?;
            Ok(Outcome::Done(t.workflow))
        }
        None => {
            let wf = svc.store.workflow(wf.id).await?.unwrap_or(wf);
            already(svc, wf).await
        }
    }
}

/// Cancel a pending workflow because its target went away (no actor; audit via "system").
pub async fn cancel_by_system(svc: &Services, wf: &WorkflowRow, reason: &str) -> StoreResult<bool> {
    let change = target_change(svc, wf, Status::Cancelled).await?;
    match svc
        .store
        .transition_workflow(Transition {
            workflow_id: wf.id,
            to: Status::Cancelled,
            actor_id: None,
            reason: Some(reason),
            via: Via::System,
            at: svc.clock.now(),
            change,
            cancel_siblings: None,
        })
        .await?
    {
        Some(t) => {
            after_transition(svc, &t, None, false).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Notifications after a committed transition: events, the hook's `after` (its line goes into
/// the edit), the request message edited (outcome, who decided, buttons removed), and the
/// requester told when `tell_requester` (see [`tell_requester`]) and they did not act
/// themselves.
async fn after_transition(
    svc: &Services,
    t: &Transitioned,
    actor_id: Option<i64>,
    tell_requester: bool,
) -> StoreResult<()> {
    let wf = &t.workflow;
    let mut ids = vec![wf.requester_id];
    ids.extend(actor_id);
    ids.extend(t.cancelled.iter().map(|c| c.requester_id));
    let names = render::names(svc, &ids).await?;
    tracing::info!(workflow_id = wf.id, status = %wf.status, "request resolved");
    for w in std::iter::once(wf).chain(t.cancelled.iter()) {
        crate::metrics::approval(w.kind.as_str(), w.status.as_str());
        svc.events.publish(HearthEvent::WorkflowResolved {
            chat_id: w.chat_id,
            workflow_id: w.id,
            workflow_type: w.kind.as_str().to_string(),
            title: w.target_title.clone(),
            status: w.status.as_str().to_string(),
            resolver_id: w.resolver_id,
        });
        let mut extra = match svc.workflow_targets.get(w.kind) {
            Some(h) => h.after(svc, w).await?,
            None => None,
        };
        if w.required > 1 && w.status == Status::Approved {
            // a quorum: everyone who approved, not only the last one
            let approvers = svc.store.quorum_approvers(w.id).await?;
            let who = render::names(svc, &approvers).await?;
            let line = render::approvers_line(&approvers, &who);
            extra = Some(match extra {
                Some(x) => format!("{line}\n{x}"),
                None => line,
            });
        }
        edit_notice(svc, w, &names, extra).await;
    }
    if tell_requester && actor_id != Some(wf.requester_id) {
        let html = render::requester_notice(svc, wf, &names);
        if let Err(e) = svc.outbox.send(Outbound::html(wf.chat_id, html)).await {
            tracing::warn!(workflow_id = wf.id, error = %e, "requester not told");
        }
    }
    Ok(())
}

/// Whether the requester needs a separate message: not when the decision was typed in the
/// workflow's own chat (the reply there already says it to everyone, requester included).
fn tell_requester(wf: &WorkflowRow, via: Via, origin_chat: i64) -> bool {
    !(origin_chat == wf.chat_id && matches!(via, Via::Text | Via::Command | Via::Agent))
}

/// Edit the request message to show the outcome (and the hook's `extra` line), without
/// buttons (best effort: logged).
async fn edit_notice(
    svc: &Services,
    wf: &WorkflowRow,
    names: &HashMap<i64, String>,
    extra: Option<String>,
) {
    let (Some(chat), Some(msg)) = (wf.notice_chat_id, wf.notice_message_id) else {
        return;
    };
    let mut html = render::resolved_notice(svc, wf, names);
    if let Some(x) = extra {
        html.push('\n');
        html.push_str(&x);
    }
    if let Err(e) = svc.outbox.edit(chat, msg, &html, &[]).await {
        tracing::warn!(workflow_id = wf.id, error = %e, "request message not edited");
    }
}

/// Expire every pending workflow past its `expires_at`, restoring targets, in one transaction;
/// then edit each request message and tell its chat once (the group, or for a personal
/// verification the requester's private chat) when its hook has an expiry note. Idempotent: a
/// second run finds nothing. Run every minute by the scheduler and once at start-up (requests
/// that expired while hearth was down); [`decide`] and [`cancel`] also expire on the spot a
/// request they find past due. Returns how many expired.
pub async fn sweep_expired(svc: &Services) -> StoreResult<usize> {
    let due = svc.store.due_workflows(svc.clock.now()).await?;
    expire(svc, due).await
}

/// Expire `due` (pending, past `expires_at`) as the sweep does. Returns how many expired here.
async fn expire(svc: &Services, due: Vec<WorkflowRow>) -> StoreResult<usize> {
    if due.is_empty() {
        return Ok(0);
    }
    let now = svc.clock.now();
    let mut plan = Vec::with_capacity(due.len());
    for wf in &due {
        plan.push((wf.id, target_change(svc, wf, Status::Expired).await?));
    }
    let expired = svc.store.expire_workflows(&plan, now).await?;
    let ids: Vec<i64> = expired.iter().map(|w| w.requester_id).collect();
    let names = render::names(svc, &ids).await?;
    for wf in &expired {
        tracing::info!(workflow_id = wf.id, chat_id = wf.chat_id, "request expired");
        crate::metrics::approval(wf.kind.as_str(), Status::Expired.as_str());
        svc.events.publish(HearthEvent::WorkflowExpired {
            chat_id: wf.chat_id,
            workflow_id: wf.id,
            workflow_type: wf.kind.as_str().to_string(),
            title: wf.target_title.clone(),
        });
        let hook = svc.workflow_targets.get(wf.kind);
        let extra = match hook {
            Some(h) => h.after(svc, wf).await?,
            None => None,
        };
        edit_notice(svc, wf, &names, extra).await;
        let note = match hook {
            Some(h) => h.expired_note(wf),
            None => Some(""),
        };
        let Some(note) = note else { continue };
        let html = render::expired_notice(svc, wf, &names, note);
        if let Err(e) = svc.outbox.send(Outbound::html(wf.chat_id, html)).await {
            tracing::warn!(workflow_id = wf.id, error = %e, "expiry notice not delivered");
        }
    }
    Ok(expired.len())
}

/// Apply parsed actions to the viewer's actionable list `list` (numbers are 1-based positions
/// in it), one decision at a time through [`decide`]. Returns each item's (number, outcome).
pub async fn apply_actions(
    svc: &Services,
    v: Viewer,
    list: &[WorkflowRow],
    actions: &[ParsedAction],
    via: Via,
) -> StoreResult<Vec<(usize, Outcome)>> {
    let mut out = Vec::new();
    for a in actions {
        for &n in &a.targets {
            let Some(wf) = n.checked_sub(1).and_then(|i| list.get(i)) else {
                continue; // the parser validated numbers against the same list
            };
            let o = decide(
                svc,
                Decide {
                    workflow_id: wf.id,
                    actor_id: v.user_id,
                    decision: a.decision,
                    reason: a.reason.as_deref(),
                    via,
                    origin_chat: v.chat_id,
                },
            )
            .await?;
            out.push((n, o));
        }
    }
    Ok(out)
}

/// Core routing step 3: when `text` is an approval reply the parser fully understands,
/// resolve it (or explain why not) and reply in the chat; no model call is made. Returns
/// false when the message is not an approval reply (the core goes on to the agent).
///
/// `addressed`: a private chat, or a group message mentioning or replying to the bot.
/// `replied_to`: the message this one replies to, if any.
///
/// A reply that only counts because it was addressed — a bare "yes", "ok", "no" — must also be
/// about the requests: a reply to a request message, or sent while the bot's latest message in
/// this chat is one. Otherwise "yes" answering the agent's own question would approve the only
/// pending request; such a message goes to the agent, which sees the numbered list.
pub async fn handle_reply(
    svc: &Services,
    v: Viewer,
    text: &str,
    addressed: bool,
    reply_to: Option<i64>,
    replied_to: Option<i64>,
) -> StoreResult<bool> {
    let list = actionable(svc, v).await?;
    let items = items(&list);
    let mut outcome = parse::parse_reply(text, &items, addressed);
    if addressed && !matches!(outcome, ParseOutcome::NotApproval) {
        let plain = strip_mention(text, &svc.bot.username);
        let needs_context = matches!(
            parse::parse_reply(plain, &items, false),
            ParseOutcome::NotApproval
        );
        if needs_context && !about_requests(svc, v, &list, replied_to).await? {
            outcome = ParseOutcome::NotApproval;
        }
    }
    respond(svc, v, &list, outcome, Via::Text, reply_to).await
}

/// `text` without a leading `@bot` mention.
pub(crate) fn strip_mention<'a>(text: &'a str, bot: &str) -> &'a str {
    let t = text.trim_start();
    match t.strip_prefix('@') {
        // never slice by the name's byte length: it may end inside a character (issue 8, item 24)
        Some(rest) => match crate::casefold::strip_prefix_ci(rest, bot) {
            Some(after) => after.trim_start_matches([',', ':']).trim_start(),
            None => t,
        },
        _ => t,
    }
}

/// kv key holding the id of the latest `/approvals` list sent in a chat.
pub(crate) fn list_key(chat_id: i64) -> String {
    format!("workflow.approvals_list.{chat_id}")
}

/// True when the conversation is about the viewer's requests: `replied_to` (or, without a
/// reply, the bot's latest message in this chat) is one of their request messages or the
/// latest `/approvals` list.
async fn about_requests(
    svc: &Services,
    v: Viewer,
    list: &[WorkflowRow],
    replied_to: Option<i64>,
) -> StoreResult<bool> {
    let target = match replied_to {
        Some(id) => Some(id),
        None => svc.store.last_bot_message_id(v.chat_id).await?,
    };
    let Some(id) = target else { return Ok(false) };
    if list
        .iter()
        .any(|w| w.notice_chat_id == Some(v.chat_id) && w.notice_message_id == Some(id))
    {
        return Ok(true);
    }
    let shown = svc.store.kv_get(&list_key(v.chat_id)).await?;
    Ok(shown.and_then(|s| s.parse::<i64>().ok()) == Some(id))
}

/// Reply to a parse outcome: refusals as text, resolutions one by one with one line per item.
/// A viewer with nothing to decide but a request of their own pending is told they can't decide
/// their own request, in the button's words. Returns false for `NotApproval` (nothing sent).
pub async fn respond(
    svc: &Services,
    v: Viewer,
    list: &[WorkflowRow],
    outcome: ParseOutcome,
    via: Via,
    reply_to: Option<i64>,
) -> StoreResult<bool> {
    let html = match outcome {
        ParseOutcome::NotApproval => return Ok(false),
        ParseOutcome::Refuse(Refusal::NothingActionable | Refusal::OutOfRange { count: 0, .. })
            if list.is_empty() && has_own_request(svc, v).await? =>
        {
            // "approve", "approve 1", "/approve 1" by the requester: the same words as the button
            crate::format::escape_html(&Denial::OwnRequest.to_string())
        }
        ParseOutcome::Refuse(r) => crate::format::escape_html(&r.to_string()),
        ParseOutcome::Resolve(actions) => {
            let results = apply_actions(svc, v, list, &actions, via).await?;
            let mut ids: Vec<i64> = list.iter().map(|w| w.requester_id).collect();
            ids.push(v.user_id);
            let names = render::names(svc, &ids).await?;
            render::outcome_lines(svc, &results, &names)
        }
    };
    if let Err(e) = svc
        .outbox
        .send(Outbound {
            chat_id: v.chat_id,
            html,
            buttons: vec![],
            reply_to,
        })
        .await
    {
        tracing::warn!(chat_id = v.chat_id, error = %e, "approval reply not delivered");
    }
    Ok(true)
}

/// True when `v` has a pending request of their own that others decide (a confirmation is
/// theirs to decide, so it does not count).
async fn has_own_request(svc: &Services, v: Viewer) -> StoreResult<bool> {
    Ok(my_pending(svc, v)
        .await?
        .iter()
        .any(|w| w.eligibility != Eligibility::Requester))
}
