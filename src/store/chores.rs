//! Chores: group tasks and personal ones (owner + optional accountability partner).
//!
//! Status changes that belong to an approval (claim → pending verification, completion,
//! archive) run inside the workflow transactions of `store::workflows` through [`ChoreChange`],
//! so a chore and its request never disagree.
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::Expr, sea_query::StringLen, ActiveModelTrait, ColumnTrait, ConnectionTrait,
    DeriveActiveEnum, EntityTrait, EnumIter, QueryFilter, QueryOrder, Set,
};

use super::{
    entity::{chat, chore, chore_completion, chore_reminder},
    Store, StoreResult,
};

/// Chore status: `todo → pending_verification → todo` (recurring) or `completed` (one-off);
/// any of them → `archived` (deleted, kept for history). Stored as the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum ChoreStatus {
    /// Open: anyone may claim it.
    #[sea_orm(string_value = "todo")]
    Todo,
    /// Claimed, waiting for a verification request.
    #[sea_orm(string_value = "pending_verification")]
    Pending,
    /// A one-off chore that was done and verified.
    #[sea_orm(string_value = "completed")]
    Completed,
    /// Deleted (kept for history).
    #[sea_orm(string_value = "archived")]
    Archived,
}

stored_names!(ChoreStatus {
    Todo => "todo",
    Pending => "pending_verification",
    Completed => "completed",
    Archived => "archived",
});

/// What the next due date counts from (per chore, `chores.anchor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Anchor {
    /// The previous due date: a late completion does not shift the rhythm (default).
    #[sea_orm(string_value = "due")]
    Due,
    /// The completion: "every 3 days" means three days after it was last done.
    #[sea_orm(string_value = "completion")]
    Completion,
}

stored_names!(Anchor {
    Due => "due",
    Completion => "completion",
});

/// How the next assignee is chosen when a completion is approved (per chore,
/// `chores.rotation`; the rules live in `chores::rotation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Rotation {
    /// The assignee stays (or nobody, when the chore is unassigned).
    #[sea_orm(string_value = "fixed")]
    Fixed,
    /// The member after the current assignee in the rotation order, wrapping around.
    #[sea_orm(string_value = "round_robin")]
    RoundRobin,
    /// The rotation member with the fewest completions of this chore; ties go to the first in
    /// rotation order after the current assignee.
    #[sea_orm(string_value = "least_completed")]
    LeastCompleted,
}

stored_names!(Rotation {
    Fixed => "fixed",
    RoundRobin => "round_robin",
    LeastCompleted => "least_completed",
});

/// A chore to insert.
#[derive(Debug, Clone)]
pub struct NewChore<'a> {
    /// The group, or the owner's private chat for a personal chore.
    pub chat_id: i64,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub personal: bool,
    pub owner_id: Option<i64>,
    pub partner_id: Option<i64>,
    pub assignee_id: Option<i64>,
    /// JSON recurrence (see `chores::Recurrence`), `None` for one-off.
    pub recurrence: Option<String>,
    pub next_due: Option<DateTime<Utc>>,
    pub points: i32,
    pub created_by: i64,
    pub created_at: DateTime<Utc>,
    /// What the next due date counts from.
    pub anchor: Anchor,
    pub rotation: Rotation,
    /// JSON array of user ids taking turns.
    pub rotation_members: Option<String>,
}

/// A completion to record (in the same transaction as the chore change that completes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCompletion {
    pub chore_id: i64,
    pub chat_id: i64,
    /// Who did it (gets the points).
    pub user_id: i64,
    /// Who was assigned when it was done.
    pub assignee_id: Option<i64>,
    pub points: i32,
    /// The occurrence's due instant (UTC).
    pub due_at: Option<DateTime<Utc>>,
    pub completed_at: DateTime<Utc>,
    pub on_time: bool,
    pub swap: bool,
}

/// A conditional change of one chore, applied inside a workflow transaction (or alone through
/// [`Store::apply_chore_change`]). Applies only when the chore's status is one of `expect`;
/// otherwise it is skipped (the target already moved on: nothing to restore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoreChange {
    pub chore_id: i64,
    /// Statuses the chore must be in for the change to apply.
    pub expect: &'static [ChoreStatus],
    /// The new status.
    pub status: ChoreStatus,
    /// `Some(x)`: set `next_due` to `x`.
    pub next_due: Option<Option<DateTime<Utc>>>,
    /// `Some(user)`: set `completed_at` (to the change's time) and `completed_by`.
    pub completed_by: Option<i64>,
    /// Set `archived_at` to the change's time.
    pub archive: bool,
    /// `Some(x)`: set `assignee_id` to `x` (the next assignee by rotation).
    pub assignee: Option<Option<i64>>,
    /// A completion row inserted when (and only when) the change applies.
    pub record: Option<NewCompletion>,
}

/// Fields an edit may change; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChoreEdit {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub recurrence: Option<Option<String>>,
    pub next_due: Option<Option<DateTime<Utc>>>,
    pub assignee: Option<Option<i64>>,
    pub points: Option<i32>,
    pub anchor: Option<Anchor>,
    pub rotation: Option<Rotation>,
    pub rotation_members: Option<Option<String>>,
    pub partner: Option<Option<i64>>,
}

impl Store {
    /// Insert a chore; returns the stored row.
    pub async fn insert_chore(&self, c: NewChore<'_>) -> StoreResult<chore::Model> {
        let am = chore::ActiveModel {
            chat_id: Set(c.chat_id),
            title: Set(c.title.to_string()),
            description: Set(c.description.map(str::to_string)),
            personal: Set(c.personal),
            owner_id: Set(c.owner_id),
            partner_id: Set(c.partner_id),
            assignee_id: Set(c.assignee_id),
            status: Set(ChoreStatus::Todo),
            recurrence: Set(c.recurrence),
            next_due: Set(c.next_due),
            points: Set(c.points),
            created_by: Set(c.created_by),
            created_at: Set(c.created_at),
            updated_at: Set(c.created_at),
            completed_at: Set(None),
            completed_by: Set(None),
            archived_at: Set(None),
            anchor: Set(c.anchor),
            rotation: Set(c.rotation),
            rotation_members: Set(c.rotation_members),
            ..Default::default()
        };
        Ok(am.insert(self.conn()).await?)
    }

    /// One chore by id.
    pub async fn chore(&self, id: i64) -> StoreResult<Option<chore::Model>> {
        Ok(chore::Entity::find_by_id(id).one(self.conn()).await?)
    }

    /// The chores of a chat that are not archived, oldest first. For a group these are the
    /// group's chores; personal chores live in the owner's private chat and never show here.
    pub async fn open_chores(&self, chat_id: i64) -> StoreResult<Vec<chore::Model>> {
        Ok(chore::Entity::find()
            .filter(chore::Column::ChatId.eq(chat_id))
            .filter(chore::Column::Status.ne(ChoreStatus::Archived))
            .order_by_asc(chore::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Apply an edit to a chore that is not archived. Returns true when it applied.
    pub async fn edit_chore(&self, id: i64, e: &ChoreEdit, at: DateTime<Utc>) -> StoreResult<bool> {
        let mut q =
            chore::Entity::update_many().col_expr(chore::Column::UpdatedAt, Expr::value(at));
        if let Some(v) = &e.title {
            q = q.col_expr(chore::Column::Title, Expr::value(v.clone()));
        }
        if let Some(v) = &e.description {
            q = q.col_expr(chore::Column::Description, Expr::value(v.clone()));
        }
        if let Some(v) = &e.recurrence {
            q = q.col_expr(chore::Column::Recurrence, Expr::value(v.clone()));
        }
        if let Some(v) = e.next_due {
            q = q.col_expr(chore::Column::NextDue, Expr::value(v));
        }
        if let Some(v) = e.assignee {
            q = q.col_expr(chore::Column::AssigneeId, Expr::value(v));
        }
        if let Some(v) = e.points {
            q = q.col_expr(chore::Column::Points, Expr::value(v));
        }
        if let Some(v) = e.anchor {
            q = q.col_expr(chore::Column::Anchor, Expr::value(v));
        }
        if let Some(v) = e.rotation {
            q = q.col_expr(chore::Column::Rotation, Expr::value(v));
        }
        if let Some(v) = &e.rotation_members {
            q = q.col_expr(chore::Column::RotationMembers, Expr::value(v.clone()));
        }
        if let Some(v) = e.partner {
            q = q.col_expr(chore::Column::PartnerId, Expr::value(v));
        }
        let r = q
            .filter(chore::Column::Id.eq(id))
            .filter(chore::Column::Status.ne(ChoreStatus::Archived))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected > 0)
    }

    /// Every chore that is not archived, in every chat (reminder sweep), oldest first.
    pub async fn all_open_chores(&self) -> StoreResult<Vec<chore::Model>> {
        Ok(chore::Entity::find()
            .filter(chore::Column::Status.ne(ChoreStatus::Archived))
            .order_by_asc(chore::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Open personal chores (any owner) whose accountability partner is `partner_id`.
    pub async fn personal_chores_with_partner(
        &self,
        partner_id: i64,
    ) -> StoreResult<Vec<chore::Model>> {
        Ok(chore::Entity::find()
            .filter(chore::Column::Personal.eq(true))
            .filter(chore::Column::PartnerId.eq(partner_id))
            .filter(chore::Column::Status.ne(ChoreStatus::Archived))
            .order_by_asc(chore::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Completions recorded in `chat_id` at or after `since` (all when `None`), oldest first.
    pub async fn completions(
        &self,
        chat_id: i64,
        since: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<chore_completion::Model>> {
        let mut q =
            chore_completion::Entity::find().filter(chore_completion::Column::ChatId.eq(chat_id));
        if let Some(s) = since {
            q = q.filter(chore_completion::Column::CompletedAt.gte(s));
        }
        Ok(q.order_by_asc(chore_completion::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Completions of one chore, oldest first.
    pub async fn chore_completions(
        &self,
        chore_id: i64,
    ) -> StoreResult<Vec<chore_completion::Model>> {
        Ok(chore_completion::Entity::find()
            .filter(chore_completion::Column::ChoreId.eq(chore_id))
            .order_by_asc(chore_completion::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Record that the reminder `key` is being sent: true when this call inserted it (send
    /// it), false when it was already recorded (skip). Insert-or-skip on the unique key, so two
    /// processes or a restart never send the same reminder twice.
    pub async fn claim_reminder(
        &self,
        key: &str,
        chat_id: i64,
        kind: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let am = chore_reminder::ActiveModel {
            key: Set(key.to_string()),
            chat_id: Set(chat_id),
            kind: Set(kind.to_string()),
            sent_at: Set(at),
            ..Default::default()
        };
        let r = chore_reminder::Entity::insert(am)
            .on_conflict_do_nothing_on([chore_reminder::Column::Key])
            .exec(self.conn())
            .await?;
        Ok(matches!(r, sea_orm::TryInsertResult::Inserted(_)))
    }

    /// Group chats (kind "group"), for the reminder sweep.
    pub async fn group_chats(&self) -> StoreResult<Vec<chat::Model>> {
        Ok(chat::Entity::find()
            .filter(chat::Column::Kind.eq("group"))
            .order_by_asc(chat::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Set where a chat's chore reminders go ("group" | "dm"; validated by the caller).
    pub async fn set_chat_reminders(&self, id: i64, to: &str) -> StoreResult<()> {
        chat::Entity::update_many()
            .col_expr(chat::Column::Reminders, Expr::value(to))
            .filter(chat::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Apply a conditional chore change on its own. Returns true when it applied.
    pub async fn apply_chore_change(
        &self,
        change: &ChoreChange,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        apply_change(self.conn(), change, at).await
    }
}

/// Apply `change` on `db` (a connection or a transaction). Returns true when a row changed.
pub(crate) async fn apply_change(
    db: &impl ConnectionTrait,
    change: &ChoreChange,
    at: DateTime<Utc>,
) -> StoreResult<bool> {
    let mut q = chore::Entity::update_many()
        .col_expr(chore::Column::Status, Expr::value(change.status))
        .col_expr(chore::Column::UpdatedAt, Expr::value(at));
    if let Some(next) = change.next_due {
        q = q.col_expr(chore::Column::NextDue, Expr::value(next));
    }
    if let Some(by) = change.completed_by {
        q = q
            .col_expr(chore::Column::CompletedAt, Expr::value(at))
            .col_expr(chore::Column::CompletedBy, Expr::value(by));
    }
    if change.archive {
        q = q.col_expr(chore::Column::ArchivedAt, Expr::value(at));
    }
    if let Some(a) = change.assignee {
        q = q.col_expr(chore::Column::AssigneeId, Expr::value(a));
    }
    let r = q
        .filter(chore::Column::Id.eq(change.chore_id))
        .filter(chore::Column::Status.is_in(change.expect.iter().copied()))
        .exec(db)
        .await?;
    let applied = r.rows_affected > 0;
    if let (true, Some(c)) = (applied, &change.record) {
        chore_completion::ActiveModel {
            chore_id: Set(c.chore_id),
            chat_id: Set(c.chat_id),
            user_id: Set(c.user_id),
            assignee_id: Set(c.assignee_id),
            points: Set(c.points),
            due_at: Set(c.due_at),
            completed_at: Set(c.completed_at),
            on_time: Set(c.on_time),
            swap: Set(c.swap),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }
    Ok(applied)
}
