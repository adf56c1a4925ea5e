//! Approval workflows and their audit trail.
//!
//! Every transition is one transaction that starts with its write (SQLite `BEGIN IMMEDIATE`,
//! then the conditional `UPDATE … WHERE id = ? AND status = 'pending'`), so concurrent resolvers
//! queue on the write lock instead of failing a read→write upgrade, and exactly one of them sees
//! `rows_affected = 1`. The audit row and the target's change (a [`TargetChange`]) are written in
//! the same transaction: choresir flipped a workflow without completing its chore.
//!
//! Kinds, statuses, eligibility rules and audit sources are typed enums here, stored as their
//! snake_case names; nothing above `store/` spells them as strings.
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, Query, StringLen},
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction,
    DeriveActiveEnum, EntityTrait, EnumIter, QueryFilter, QueryOrder, Set, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

use super::{
    chores::{apply_change, ChoreChange, ChoreStatus},
    entity::{chore, workflow, workflow_audit, workflow_resolver},
    Store, StoreResult,
};

/// What a workflow is about. Each kind has one `WorkflowTarget` hook (registered in the wiring)
/// that knows its target; the workflow service knows none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum WorkflowKind {
    /// A member says they did a group chore; another member verifies.
    #[sea_orm(string_value = "chore_verification")]
    ChoreVerification,
    /// A member asks to delete a group chore; another member approves.
    #[sea_orm(string_value = "chore_deletion")]
    ChoreDeletion,
    /// The owner of a personal chore says they did it; only their named partner verifies.
    #[sea_orm(string_value = "personal_verification")]
    PersonalVerification,
    /// A destructive tool call the model proposed in an ordinary turn; only the member it acts
    /// for confirms it (`agent.confirm_destructive`). Metadata holds the call.
    #[sea_orm(string_value = "confirmation")]
    Confirmation,
    /// A run's approval gate (an `approval` step or `require_approval`): other members (or the
    /// named ones) decide, optionally with a quorum; `target_id` is the waiting step run.
    #[sea_orm(string_value = "routine_gate")]
    RoutineGate,
}

stored_names!(WorkflowKind {
    ChoreVerification => "chore_verification",
    ChoreDeletion => "chore_deletion",
    PersonalVerification => "personal_verification",
    Confirmation => "confirmation",
    RoutineGate => "routine_gate",
});

/// Workflow status: `pending → approved / rejected / expired / cancelled`. Only `Pending` moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum WorkflowStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "approved")]
    Approved,
    #[sea_orm(string_value = "rejected")]
    Rejected,
    #[sea_orm(string_value = "expired")]
    Expired,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

stored_names!(WorkflowStatus {
    Pending => "pending",
    Approved => "approved",
    Rejected => "rejected",
    Expired => "expired",
    Cancelled => "cancelled",
});

/// Who may resolve a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Eligibility {
    /// Any other current member of the workflow's group (never the requester).
    #[sea_orm(string_value = "others")]
    Others,
    /// Only the named partner (`partner_id`).
    #[sea_orm(string_value = "partner")]
    Partner,
    /// Only admins of the group (never the requester).
    #[sea_orm(string_value = "admins")]
    Admins,
    /// Only the requester: a confirmation of a call made on their behalf.
    #[sea_orm(string_value = "requester")]
    Requester,
    /// Only the members named in `workflow_resolvers` (never the requester), while they are
    /// current members of the workflow's group.
    #[sea_orm(string_value = "named")]
    Named,
}

stored_names!(Eligibility {
    Others => "others",
    Partner => "partner",
    Admins => "admins",
    Requester => "requester",
    Named => "named",
});

/// Where a transition came from (recorded in the audit row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Via {
    #[sea_orm(string_value = "text")]
    Text,
    #[sea_orm(string_value = "button")]
    Button,
    #[sea_orm(string_value = "command")]
    Command,
    #[sea_orm(string_value = "agent")]
    Agent,
    /// The expiry sweep.
    #[sea_orm(string_value = "scheduler")]
    Scheduler,
    /// hearth itself: the target went away (a member left, a chore was deleted).
    #[sea_orm(string_value = "system")]
    System,
}

stored_names!(Via {
    Text => "text",
    Button => "button",
    Command => "command",
    Agent => "agent",
    Scheduler => "scheduler",
    System => "system",
});

/// A workflow to insert (status pending).
#[derive(Debug, Clone)]
pub struct NewWorkflow<'a> {
    pub chat_id: i64,
    pub kind: WorkflowKind,
    pub requester_id: i64,
    pub target_id: Option<i64>,
    pub target_title: &'a str,
    pub eligibility: Eligibility,
    pub partner_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Kind-specific data (JSON), e.g. a confirmation's tool call.
    pub metadata: Option<String>,
    /// Distinct approvals needed (at least 1).
    pub required: i32,
    /// The only resolvers when `eligibility` is [`Eligibility::Named`] (user ids).
    pub resolvers: Vec<i64>,
}

/// What must hold for a workflow to be created, checked in the creating transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateGuard {
    /// Nothing to check.
    None,
    /// Move the chore from one of `from` to `to` (a claim: todo → pending verification); the
    /// request is refused when the chore is not in `from`.
    MoveChore {
        chore_id: i64,
        from: &'static [ChoreStatus],
        to: ChoreStatus,
    },
    /// The chore must be in one of `statuses` and have no pending workflow of the same kind
    /// (one pending deletion per chore).
    SoleRequest {
        chore_id: i64,
        statuses: &'static [ChoreStatus],
    },
}

/// Why a guarded creation did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateRefused {
    /// The chore is missing or not in an allowed status.
    TargetNotOpen,
    /// A pending workflow of the same kind exists for the target.
    Duplicate { workflow_id: i64 },
}

/// The change a transition makes to its target, written in the transition's transaction.
/// One variant per kind of target table; a target hook (`WorkflowTarget`) builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetChange {
    /// A conditional chore change (complete, reopen, archive).
    Chore(ChoreChange),
    /// A run's approval gate ended: its waiting step run records the outcome and the run is
    /// woken (see `store::runs`).
    RunGate {
        step_run_id: i64,
        run_id: i64,
        outcome: super::GateOutcome,
        reason: Option<String>,
    },
}

/// One transition of a pending workflow.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub workflow_id: i64,
    /// Approved | Rejected | Cancelled | Expired.
    pub to: WorkflowStatus,
    pub actor_id: Option<i64>,
    pub reason: Option<&'a str>,
    pub via: Via,
    pub at: DateTime<Utc>,
    /// The target's change, applied in the same transaction.
    pub change: Option<TargetChange>,
    /// Also cancel the other pending workflows on the same target with these kinds (the target
    /// is gone), with this reason.
    pub cancel_siblings: Option<(&'static [WorkflowKind], &'a str)>,
}

/// A transition that happened: the workflow after it, and siblings cancelled with it.
#[derive(Debug, Clone)]
pub struct Transitioned {
    pub workflow: workflow::Model,
    pub cancelled: Vec<workflow::Model>,
}

/// Apply a target change on `db` (the transition's transaction). True when it applied.
/// A [`TargetChange::RunGate`] without a reason takes the transition's `reason` (the member's
/// "reject 1, no fish please": the hook builds the change before the decision's words are
/// known to it).
async fn apply_target(
    db: &impl ConnectionTrait,
    change: &TargetChange,
    reason_of_transition: Option<&str>,
    at: DateTime<Utc>,
) -> StoreResult<bool> {
    match change {
        TargetChange::Chore(c) => apply_change(db, c, at).await,
        TargetChange::RunGate {
            step_run_id,
            run_id,
            outcome,
            reason,
        } => {
            let reason = reason.as_deref().or(reason_of_transition);
            super::runs::apply_gate(db, *step_run_id, *run_id, *outcome, reason, at).await
        }
    }
}

impl Store {
    /// A transaction that holds the write lock from its first statement (SQLite: `BEGIN
    /// IMMEDIATE`; other backends: a plain `BEGIN`).
    async fn write_txn(&self) -> StoreResult<DatabaseTransaction> {
        Ok(self
            .conn()
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?)
    }

    /// Create a pending workflow after checking `guard`, in one transaction.
    pub async fn create_workflow(
        &self,
        w: NewWorkflow<'_>,
        guard: CreateGuard,
    ) -> StoreResult<Result<workflow::Model, CreateRefused>> {
        let txn = self.write_txn().await?;
        match &guard {
            CreateGuard::None => {}
            CreateGuard::MoveChore { chore_id, from, to } => {
                let r = chore::Entity::update_many()
                    .col_expr(chore::Column::Status, Expr::value(*to))
                    .col_expr(chore::Column::UpdatedAt, Expr::value(w.created_at))
                    .filter(chore::Column::Id.eq(*chore_id))
                    .filter(chore::Column::Status.is_in(from.iter().copied()))
                    .exec(&txn)
                    .await?;
                if r.rows_affected == 0 {
                    txn.rollback().await?;
                    return Ok(Err(CreateRefused::TargetNotOpen));
                }
            }
            CreateGuard::SoleRequest { chore_id, statuses } => {
                // a write first: it takes the lock that serializes competing requests
                let r = chore::Entity::update_many()
                    .col_expr(chore::Column::UpdatedAt, Expr::value(w.created_at))
                    .filter(chore::Column::Id.eq(*chore_id))
                    .filter(chore::Column::Status.is_in(statuses.iter().copied()))
                    .exec(&txn)
                    .await?;
                if r.rows_affected == 0 {
                    txn.rollback().await?;
                    return Ok(Err(CreateRefused::TargetNotOpen));
                }
                if let Some(existing) = workflow::Entity::find()
                    .filter(workflow::Column::TargetId.eq(*chore_id))
                    .filter(workflow::Column::Kind.eq(w.kind))
                    .filter(workflow::Column::Status.eq(WorkflowStatus::Pending))
                    .one(&txn)
                    .await?
                {
                    txn.rollback().await?;
                    return Ok(Err(CreateRefused::Duplicate {
                        workflow_id: existing.id,
                    }));
                }
            }
        }
        let row = workflow::ActiveModel {
            chat_id: Set(w.chat_id),
            kind: Set(w.kind),
            status: Set(WorkflowStatus::Pending),
            requester_id: Set(w.requester_id),
            target_id: Set(w.target_id),
            target_title: Set(w.target_title.to_string()),
            eligibility: Set(w.eligibility),
            partner_id: Set(w.partner_id),
            created_at: Set(w.created_at),
            expires_at: Set(w.expires_at),
            resolved_at: Set(None),
            resolver_id: Set(None),
            reason: Set(None),
            metadata: Set(w.metadata),
            notice_chat_id: Set(None),
            notice_message_id: Set(None),
            required: Set(w.required.max(1)),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        let mut named = w.resolvers.clone();
        named.sort_unstable();
        named.dedup();
        if !named.is_empty() {
            workflow_resolver::Entity::insert_many(named.into_iter().map(|user_id| {
                workflow_resolver::ActiveModel {
                    workflow_id: Set(row.id),
                    user_id: Set(user_id),
                }
            }))
            .exec(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(Ok(row))
    }

    /// Remember where the request message (with buttons) was sent.
    pub async fn set_workflow_notice(
        &self,
        id: i64,
        chat_id: i64,
        message_id: i64,
    ) -> StoreResult<()> {
        workflow::Entity::update_many()
            .col_expr(workflow::Column::NoticeChatId, Expr::value(chat_id))
            .col_expr(workflow::Column::NoticeMessageId, Expr::value(message_id))
            .filter(workflow::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// One workflow by id.
    pub async fn workflow(&self, id: i64) -> StoreResult<Option<workflow::Model>> {
        Ok(workflow::Entity::find_by_id(id).one(self.conn()).await?)
    }

    /// Pending, unexpired (`expires_at > now`, even before the sweep ran) workflows that `viewer`
    /// could possibly resolve: those of the chats `chat_ids`, plus those naming `viewer` as
    /// partner, excluding the viewer's own and confirmations (only their requester decides
    /// them); in creation order.
    /// A personal verification lives in its requester's private chat, so it is only returned
    /// here to its partner (choresir listed partners' private verifications to everyone).
    /// A workflow with eligibility `named` is only returned to its named resolvers (a
    /// `workflow_resolvers` row for the viewer).
    /// The caller still applies the eligibility rule to each row.
    pub async fn pending_for_viewer(
        &self,
        chat_ids: &[i64],
        viewer: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<workflow::Model>> {
        Ok(workflow::Entity::find()
            .filter(workflow::Column::Status.eq(WorkflowStatus::Pending))
            .filter(workflow::Column::ExpiresAt.gt(now))
            .filter(workflow::Column::RequesterId.ne(viewer))
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(workflow::Column::ChatId.is_in(chat_ids.iter().copied()))
                            .add(workflow::Column::Eligibility.is_not_in([
                                Eligibility::Partner,
                                Eligibility::Requester,
                                Eligibility::Named,
                            ])),
                    )
                    .add(
                        Condition::all()
                            .add(workflow::Column::ChatId.is_in(chat_ids.iter().copied()))
                            .add(workflow::Column::Eligibility.eq(Eligibility::Named))
                            .add(
                                workflow::Column::Id.in_subquery(
                                    Query::select()
                                        .column(workflow_resolver::Column::WorkflowId)
                                        .from(workflow_resolver::Entity)
                                        .and_where(workflow_resolver::Column::UserId.eq(viewer))
                                        .to_owned(),
                                ),
                            ),
                    )
                    .add(workflow::Column::PartnerId.eq(viewer)),
            )
            .order_by_asc(workflow::Column::CreatedAt)
            .order_by_asc(workflow::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Pending, unexpired (`expires_at > now`) workflows requested by `requester`, in creation
    /// order; only those of `chat_id` when given.
    pub async fn pending_by_requester(
        &self,
        requester: i64,
        chat_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<workflow::Model>> {
        let mut q = workflow::Entity::find()
            .filter(workflow::Column::Status.eq(WorkflowStatus::Pending))
            .filter(workflow::Column::ExpiresAt.gt(now))
            .filter(workflow::Column::RequesterId.eq(requester));
        if let Some(c) = chat_id {
            q = q.filter(workflow::Column::ChatId.eq(c));
        }
        Ok(q.order_by_asc(workflow::Column::CreatedAt)
            .order_by_asc(workflow::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Pending workflows on a target (any kind), in creation order.
    pub async fn pending_for_target(&self, target_id: i64) -> StoreResult<Vec<workflow::Model>> {
        Ok(workflow::Entity::find()
            .filter(workflow::Column::Status.eq(WorkflowStatus::Pending))
            .filter(workflow::Column::TargetId.eq(target_id))
            .order_by_asc(workflow::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Move a pending workflow, with its audit row and side effects, in one transaction.
    /// Returns `None` when it was no longer pending (someone else moved it first): nothing
    /// was changed.
    pub async fn transition_workflow(
        &self,
        t: Transition<'_>,
    ) -> StoreResult<Option<Transitioned>> {
        let txn = self.write_txn().await?;
        match transition_in(&txn, &t).await? {
            Some(done) => {
                txn.commit().await?;
                Ok(Some(done))
            }
            None => {
                txn.rollback().await?;
                Ok(None)
            }
        }
    }

    /// An approval of a workflow that needs `required` > 1 distinct approvers (a quorum), in
    /// one transaction that first locks the row (a no-op conditional update: SQLite's write
    /// lock, Postgres' row lock), so concurrent approvals are counted one after the other.
    /// The actor's first approval writes an audit row `pending → pending` (a partial approval;
    /// a second one by the same member counts once and writes nothing); when the distinct
    /// approvers reach `required`, the transition `t` (to approved) happens in the same
    /// transaction with its target change. `t.actor_id` must be set.
    pub async fn approve_toward_quorum(&self, t: Transition<'_>) -> StoreResult<QuorumVote> {
        let Some(actor) = t.actor_id else {
            return Ok(QuorumVote::NotPending);
        };
        let txn = self.write_txn().await?;
        let locked = workflow::Entity::update_many()
            .col_expr(
                workflow::Column::Status,
                Expr::value(WorkflowStatus::Pending),
            )
            .filter(workflow::Column::Id.eq(t.workflow_id))
            .filter(workflow::Column::Status.eq(WorkflowStatus::Pending))
            .exec(&txn)
            .await?
            .rows_affected
            > 0;
        let row = match locked {
            true => {
                workflow::Entity::find_by_id(t.workflow_id)
                    .one(&txn)
                    .await?
            }
            false => None,
        };
        let Some(row) = row else {
            txn.rollback().await?;
            return Ok(QuorumVote::NotPending);
        };
        let mut approvers = partial_approvers(&txn, t.workflow_id).await?;
        let new = !approvers.contains(&actor);
        if new {
            let partial = Transition {
                to: WorkflowStatus::Pending,
                change: None,
                cancel_siblings: None,
                ..t.clone()
            };
            insert_audit(&txn, &partial, WorkflowStatus::Pending).await?;
            approvers.push(actor);
        }
        if (approvers.len() as i64) < i64::from(row.required) {
            txn.commit().await?;
            return Ok(QuorumVote::Counted { approvers, new });
        }
        match transition_in(&txn, &t).await? {
            Some(done) => {
                txn.commit().await?;
                Ok(QuorumVote::Reached(Box::new(done)))
            }
            None => {
                txn.rollback().await?;
                Ok(QuorumVote::NotPending)
            }
        }
    }

    /// The distinct members who approved a quorum workflow so far (its partial approvals, in
    /// order).
    pub async fn quorum_approvers(&self, workflow_id: i64) -> StoreResult<Vec<i64>> {
        partial_approvers(self.conn(), workflow_id).await
    }

    /// True when `user_id` is a named resolver of workflow `workflow_id`.
    pub async fn is_named_resolver(&self, workflow_id: i64, user_id: i64) -> StoreResult<bool> {
        Ok(workflow_resolver::Entity::find()
            .filter(workflow_resolver::Column::WorkflowId.eq(workflow_id))
            .filter(workflow_resolver::Column::UserId.eq(user_id))
            .one(self.conn())
            .await?
            .is_some())
    }

    /// The named resolvers of a workflow (user ids, ascending).
    pub async fn named_resolvers(&self, workflow_id: i64) -> StoreResult<Vec<i64>> {
        Ok(workflow_resolver::Entity::find()
            .filter(workflow_resolver::Column::WorkflowId.eq(workflow_id))
            .order_by_asc(workflow_resolver::Column::UserId)
            .all(self.conn())
            .await?
            .into_iter()
            .map(|r| r.user_id)
            .collect())
    }

    /// Ids of pending workflows whose `expires_at` is at or before `now`, oldest first.
    pub async fn due_workflows(&self, now: DateTime<Utc>) -> StoreResult<Vec<workflow::Model>> {
        Ok(workflow::Entity::find()
            .filter(workflow::Column::Status.eq(WorkflowStatus::Pending))
            .filter(workflow::Column::ExpiresAt.lte(now))
            .order_by_asc(workflow::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Expire the given due workflows in one transaction: each moves only if still pending
    /// (and still due), writes its audit row (via "scheduler") and its restore `change`.
    /// Returns the workflows this call expired (a second sweep returns none).
    pub async fn expire_workflows(
        &self,
        due: &[(i64, Option<TargetChange>)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<workflow::Model>> {
        if due.is_empty() {
            return Ok(vec![]);
        }
        let txn = self.write_txn().await?;
        let mut out = Vec::new();
        for (id, change) in due {
            let t = Transition {
                workflow_id: *id,
                to: WorkflowStatus::Expired,
                actor_id: None,
                reason: None,
                via: Via::Scheduler,
                at: now,
                change: None,
                cancel_siblings: None,
            };
            let moved = workflow::Entity::update_many()
                .col_expr(workflow::Column::Status, Expr::value(t.to))
                .col_expr(workflow::Column::ResolvedAt, Expr::value(now))
                .filter(workflow::Column::Id.eq(*id))
                .filter(workflow::Column::Status.eq(WorkflowStatus::Pending))
                .filter(workflow::Column::ExpiresAt.lte(now))
                .exec(&txn)
                .await?
                .rows_affected
                > 0;
            if !moved {
                continue;
            }
            insert_audit(&txn, &t, WorkflowStatus::Pending).await?;
            if let Some(c) = change {
                apply_target(&txn, c, None, now).await?;
            }
            if let Some(row) = workflow::Entity::find_by_id(*id).one(&txn).await? {
                out.push(row);
            }
        }
        txn.commit().await?;
        Ok(out)
    }

    /// The audit rows of a workflow, oldest first.
    pub async fn workflow_audit(&self, id: i64) -> StoreResult<Vec<workflow_audit::Model>> {
        Ok(workflow_audit::Entity::find()
            .filter(workflow_audit::Column::WorkflowId.eq(id))
            .order_by_asc(workflow_audit::Column::Id)
            .all(self.conn())
            .await?)
    }
}

/// What one approval toward a quorum did ([`Store::approve_toward_quorum`]).
#[derive(Debug, Clone)]
pub enum QuorumVote {
    /// The workflow was no longer pending: nothing was written.
    NotPending,
    /// Still pending: `approvers` are the distinct approvers so far (in order, the actor
    /// included); `new` is false when the actor had already approved (counted once).
    Counted { approvers: Vec<i64>, new: bool },
    /// This approval reached the quorum: the workflow moved to approved with its change.
    Reached(Box<Transitioned>),
}

/// The distinct actors of a workflow's partial approvals (audit rows `pending → pending`), in
/// order.
async fn partial_approvers(db: &impl ConnectionTrait, workflow_id: i64) -> StoreResult<Vec<i64>> {
    let rows = workflow_audit::Entity::find()
        .filter(workflow_audit::Column::WorkflowId.eq(workflow_id))
        .filter(workflow_audit::Column::FromStatus.eq(WorkflowStatus::Pending))
        .filter(workflow_audit::Column::ToStatus.eq(WorkflowStatus::Pending))
        .order_by_asc(workflow_audit::Column::Id)
        .all(db)
        .await?;
    let mut out: Vec<i64> = Vec::new();
    for a in rows.into_iter().filter_map(|r| r.actor_id) {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// A transition inside the caller's transaction: the conditional move with its audit row, the
/// siblings it cancels, then the target's change. `None` when it was no longer pending (the
/// caller rolls back).
async fn transition_in(
    txn: &DatabaseTransaction,
    t: &Transition<'_>,
) -> StoreResult<Option<Transitioned>> {
    if !move_pending(txn, t).await? {
        return Ok(None);
    }
    let workflow = workflow::Entity::find_by_id(t.workflow_id)
        .one(txn)
        .await?
        .ok_or_else(|| sea_orm::DbErr::RecordNotFound(format!("workflow {}", t.workflow_id)))?;
    let mut cancelled = Vec::new();
    if let (Some((kinds, reason)), Some(target)) = (t.cancel_siblings, workflow.target_id) {
        let siblings = workflow::Entity::find()
            .filter(workflow::Column::TargetId.eq(target))
            .filter(workflow::Column::Kind.is_in(kinds.iter().copied()))
            .filter(workflow::Column::Status.eq(WorkflowStatus::Pending))
            .filter(workflow::Column::Id.ne(workflow.id))
            .all(txn)
            .await?;
        for s in siblings {
            let st = Transition {
                workflow_id: s.id,
                to: WorkflowStatus::Cancelled,
                actor_id: None,
                reason: Some(reason),
                via: Via::System,
                at: t.at,
                change: None,
                cancel_siblings: None,
            };
            if move_pending(txn, &st).await? {
                if let Some(row) = workflow::Entity::find_by_id(s.id).one(txn).await? {
                    cancelled.push(row);
                }
            }
        }
    }
    // the target's change last: a sibling's own restore never overrides it
    if let Some(change) = &t.change {
        let applied = apply_target(txn, change, t.reason, t.at).await?;
        if !applied {
            tracing::info!(
                workflow_id = t.workflow_id,
                "target already moved on; no change applied"
            );
        }
    }
    Ok(Some(Transitioned {
        workflow,
        cancelled,
    }))
}

/// The conditional update (only pending moves) and its audit row. True when it moved.
async fn move_pending(db: &impl ConnectionTrait, t: &Transition<'_>) -> StoreResult<bool> {
    let r = workflow::Entity::update_many()
        .col_expr(workflow::Column::Status, Expr::value(t.to))
        .col_expr(workflow::Column::ResolvedAt, Expr::value(t.at))
        .col_expr(workflow::Column::ResolverId, Expr::value(t.actor_id))
        .col_expr(
            workflow::Column::Reason,
            Expr::value(t.reason.map(str::to_string)),
        )
        .filter(workflow::Column::Id.eq(t.workflow_id))
        .filter(workflow::Column::Status.eq(WorkflowStatus::Pending))
        .exec(db)
        .await?;
    if r.rows_affected == 0 {
        return Ok(false);
    }
    insert_audit(db, t, WorkflowStatus::Pending).await?;
    Ok(true)
}

async fn insert_audit(
    db: &impl ConnectionTrait,
    t: &Transition<'_>,
    from: WorkflowStatus,
) -> StoreResult<()> {
    workflow_audit::ActiveModel {
        workflow_id: Set(t.workflow_id),
        actor_id: Set(t.actor_id),
        at: Set(t.at),
        from_status: Set(from),
        to_status: Set(t.to),
        reason: Set(t.reason.map(str::to_string)),
        via: Set(t.via),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}
