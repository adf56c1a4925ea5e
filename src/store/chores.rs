//! Chores: group tasks and personal ones (owner + optional accountability partner).
//!
//! Status changes that belong to an approval (claim → pending verification, completion,
//! archive) run inside the workflow transactions of `store::workflows` through [`ChoreChange`],
//! so a chore and its request never disagree.
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, Set,
};

use super::{entity::chore, Store, StoreResult};

/// Chore status "todo": open, anyone may claim it.
pub const CHORE_TODO: &str = "todo";
/// Chore status "pending_verification": claimed, waiting for a verification request.
pub const CHORE_PENDING: &str = "pending_verification";
/// Chore status "completed": a one-off chore that was done and verified.
pub const CHORE_COMPLETED: &str = "completed";
/// Chore status "archived": deleted (kept for history).
pub const CHORE_ARCHIVED: &str = "archived";

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
}

/// A conditional change of one chore, applied inside a workflow transaction (or alone through
/// [`Store::apply_chore_change`]). Applies only when the chore's status is one of `expect`;
/// otherwise it is skipped (the target already moved on: nothing to restore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoreChange {
    pub chore_id: i64,
    /// Statuses the chore must be in for the change to apply.
    pub expect: &'static [&'static str],
    /// The new status.
    pub status: &'static str,
    /// `Some(x)`: set `next_due` to `x`.
    pub next_due: Option<Option<DateTime<Utc>>>,
    /// `Some(user)`: set `completed_at` (to the change's time) and `completed_by`.
    pub completed_by: Option<i64>,
    /// Set `archived_at` to the change's time.
    pub archive: bool,
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
            status: Set(CHORE_TODO.into()),
            recurrence: Set(c.recurrence),
            next_due: Set(c.next_due),
            points: Set(c.points),
            created_by: Set(c.created_by),
            created_at: Set(c.created_at),
            updated_at: Set(c.created_at),
            completed_at: Set(None),
            completed_by: Set(None),
            archived_at: Set(None),
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
            .filter(chore::Column::Status.ne(CHORE_ARCHIVED))
            .order_by_asc(chore::Column::Id)
            .all(self.conn())
            .await?)
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
    let r = q
        .filter(chore::Column::Id.eq(change.chore_id))
        .filter(chore::Column::Status.is_in(change.expect.iter().copied()))
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}
