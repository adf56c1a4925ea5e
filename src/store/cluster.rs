//! Replicas on one database (issue 12): chat leases (which process works a chat), named singleton
//! leases (the one long-poller, system jobs), the process table (who is live), and the claim of
//! pending inbound messages by the process that holds their chat.
//!
//! Every take is ONE conditional statement (an upsert whose update only applies when the row is
//! free, lapsed or already ours), so two processes never both hold a lease, on SQLite or on
//! Postgres. Claims of inbound rows use `FOR UPDATE SKIP LOCKED` on Postgres (SQLite has one
//! writer at a time; sea-query writes no lock clause there).
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, OnConflict, Query},
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Set,
};

use super::{
    entity::{chat_lease, inbound, lease, process},
    InboundStatus, Store, StoreResult,
};

/// Most inbound rows one claim takes.
pub const CLAIM_BATCH: u64 = 500;

impl Store {
    /// Take or renew the lease on `chat_id` for `owner` until `until`: in one upsert, only when
    /// the chat is free, its lease lapsed before `now`, or `owner` already holds it. Returns
    /// true when `owner` holds the chat after the call.
    pub async fn acquire_chat(
        &self,
        chat_id: i64,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let _w = self.write_turn().await;
        let r = chat_lease::Entity::insert(chat_lease::ActiveModel {
            chat_id: Set(chat_id),
            owner: Set(owner.to_string()),
            lease_until: Set(until),
        })
        .on_conflict(
            OnConflict::column(chat_lease::Column::ChatId)
                .update_columns([chat_lease::Column::Owner, chat_lease::Column::LeaseUntil])
                .action_and_where(
                    Condition::any()
                        .add(Expr::col((chat_lease::Entity, chat_lease::Column::Owner)).eq(owner))
                        .add(
                            Expr::col((chat_lease::Entity, chat_lease::Column::LeaseUntil)).lt(now),
                        )
                        .into(),
                )
                .to_owned(),
        )
        .exec_without_returning(self.conn())
        .await;
        match r {
            Ok(n) => Ok(n == 1),
            Err(sea_orm::DbErr::RecordNotInserted) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Give up `owner`'s leases on `chats` (their queues drained). Returns how many.
    pub async fn release_chats(&self, owner: &str, chats: &[i64]) -> StoreResult<u64> {
        if chats.is_empty() {
            return Ok(0);
        }
        let _w = self.write_turn().await;
        let r = chat_lease::Entity::delete_many()
            .filter(chat_lease::Column::Owner.eq(owner))
            .filter(chat_lease::Column::ChatId.is_in(chats.iter().copied()))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected)
    }

    /// Give up every chat lease `owner` holds (graceful stop). Returns how many.
    pub async fn release_all_chats(&self, owner: &str) -> StoreResult<u64> {
        let _w = self.write_turn().await;
        let r = chat_lease::Entity::delete_many()
            .filter(chat_lease::Column::Owner.eq(owner))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected)
    }

    /// The heartbeat: extend every chat lease `owner` still holds to `until` (one statement).
    /// Returns how many it renewed.
    pub async fn renew_chat_leases(&self, owner: &str, until: DateTime<Utc>) -> StoreResult<u64> {
        let _w = self.write_turn().await;
        let r = chat_lease::Entity::update_many()
            .col_expr(chat_lease::Column::LeaseUntil, Expr::value(until))
            .filter(chat_lease::Column::Owner.eq(owner))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected)
    }

    /// The chats `owner` holds (tests, diagnostics).
    pub async fn chats_held(&self, owner: &str) -> StoreResult<Vec<i64>> {
        Ok(chat_lease::Entity::find()
            .filter(chat_lease::Column::Owner.eq(owner))
            .all(self.conn())
            .await?
            .into_iter()
            .map(|r| r.chat_id)
            .collect())
    }

    /// Take or renew the named lease `name` (`poller`, `job:<name>`) for `owner` until `until`,
    /// under the same rule as [`Store::acquire_chat`]. Returns true when `owner` holds it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let _w = self.write_turn().await;
        let r = lease::Entity::insert(lease::ActiveModel {
            name: Set(name.to_string()),
            owner: Set(owner.to_string()),
            lease_until: Set(until),
        })
        .on_conflict(
            OnConflict::column(lease::Column::Name)
                .update_columns([lease::Column::Owner, lease::Column::LeaseUntil])
                .action_and_where(
                    Condition::any()
                        .add(Expr::col((lease::Entity, lease::Column::Owner)).eq(owner))
                        .add(Expr::col((lease::Entity, lease::Column::LeaseUntil)).lt(now))
                        .into(),
                )
                .to_owned(),
        )
        .exec_without_returning(self.conn())
        .await;
        match r {
            Ok(n) => Ok(n == 1),
            Err(sea_orm::DbErr::RecordNotInserted) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Give up the named lease if `owner` holds it. Returns true when it did.
    pub async fn release_lease(&self, name: &str, owner: &str) -> StoreResult<bool> {
        let _w = self.write_turn().await;
        let r = lease::Entity::delete_many()
            .filter(lease::Column::Name.eq(name))
            .filter(lease::Column::Owner.eq(owner))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Who holds the named lease at `now` (`None`: free or lapsed).
    pub async fn lease_holder(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<String>> {
        Ok(lease::Entity::find_by_id(name.to_string())
            .filter(lease::Column::LeaseUntil.gte(now))
            .one(self.conn())
            .await?
            .map(|r| r.owner))
    }

    /// Record a heartbeat of process `id` (inserted on its first beat).
    pub async fn beat_process(
        &self,
        id: &str,
        host: &str,
        started_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let _w = self.write_turn().await;
        process::Entity::insert(process::ActiveModel {
            id: Set(id.to_string()),
            host: Set(host.chars().take(255).collect()),
            started_at: Set(started_at),
            beat_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(process::Column::Id)
                .update_column(process::Column::BeatAt)
                .to_owned(),
        )
        .exec_without_returning(self.conn())
        .await?;
        Ok(())
    }

    /// Every process row, oldest start first (diagnostics, tests).
    pub async fn processes(&self) -> StoreResult<Vec<process::Model>> {
        use sea_orm::QueryOrder;
        Ok(process::Entity::find()
            .order_by_asc(process::Column::StartedAt)
            .all(self.conn())
            .await?)
    }

    /// How many processes beat at or after `since` (at least 1: the caller counts itself).
    pub async fn live_processes(&self, since: DateTime<Utc>) -> StoreResult<u64> {
        let n = process::Entity::find()
            .filter(process::Column::BeatAt.gte(since))
            .count(self.conn())
            .await?;
        Ok(std::cmp::max(n, 1))
    }

    /// Remove process `id` (graceful stop) and the rows of processes silent since `stale`.
    pub async fn remove_process(&self, id: &str, stale: DateTime<Utc>) -> StoreResult<()> {
        let _w = self.write_turn().await;
        process::Entity::delete_many()
            .filter(
                Condition::any()
                    .add(process::Column::Id.eq(id))
                    .add(process::Column::BeatAt.lt(stale)),
            )
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// The chats `owner` may take pending inbound messages of at `now`, at most [`CLAIM_BATCH`]:
    /// chats with a pending message nobody holds (unowned: accepted by a process that could not
    /// take the chat; or lapsed: its process died) and no live chat lease, or whose lease is
    /// `owner`'s (accepted by another process meanwhile) — exactly the chats where
    /// [`Store::claim_inbound`] would claim something: a message behind an older one another
    /// process still holds does not count (after a crash the chat is taken when that lease
    /// lapses, instead of taken and let go every poll until then). One statement.
    pub async fn claimable_chats(&self, owner: &str, now: DateTime<Utc>) -> StoreResult<Vec<i64>> {
        let mut live = Query::select();
        live.column(chat_lease::Column::ChatId)
            .from(chat_lease::Entity)
            .and_where(chat_lease::Column::LeaseUntil.gte(now));
        let mut mine = Query::select();
        mine.column(chat_lease::Column::ChatId)
            .from(chat_lease::Entity)
            .and_where(chat_lease::Column::Owner.eq(owner));
        Ok(inbound::Entity::find()
            .select_only()
            .column(inbound::Column::ChatId)
            .distinct()
            .filter(inbound::Column::Status.eq(InboundStatus::Pending.as_str()))
            .filter(super::inbound::lapsed(now))
            .filter(Expr::exists(held_before(owner, now)).not())
            .filter(
                Condition::any()
                    .add(inbound::Column::ChatId.not_in_subquery(live))
                    .add(inbound::Column::ChatId.in_subquery(mine)),
            )
            .limit(CLAIM_BATCH)
            .into_tuple::<i64>()
            .all(self.conn())
            .await?)
    }

    /// Claim for `owner` (until `until`) the pending inbound messages of `chats` that nobody
    /// holds at `now` (unowned: accepted by a process that did not hold the chat, or handed
    /// back; or lapsed: their process died), oldest first, at most [`CLAIM_BATCH`]: one
    /// `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING *`, so two processes
    /// never claim the same row and never wait on each other's rows. Never past an older pending
    /// message of the chat that another process still holds (its lease not lapsed): a dead
    /// process's leases lapse at different moments (a turn started after its last heartbeat
    /// outlives the queued messages the heartbeat renewed), and claiming the newer ones first
    /// answered them first (issue 12, seen in the SIGKILL test on PostgreSQL). The caller must
    /// hold the chats' leases. Returns the claimed rows in id order.
    pub async fn claim_inbound(
        &self,
        owner: &str,
        chats: &[i64],
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<inbound::Model>> {
        if chats.is_empty() {
            return Ok(Vec::new());
        }
        let mut pick = Query::select();
        pick.column(inbound::Column::Id)
            .from(inbound::Entity)
            .and_where(inbound::Column::Status.eq(InboundStatus::Pending.as_str()))
            .and_where(inbound::Column::ChatId.is_in(chats.iter().copied()))
            .cond_where(super::inbound::lapsed(now))
            .and_where(Expr::exists(held_before(owner, now)).not())
            .order_by(inbound::Column::Id, sea_orm::Order::Asc)
            .limit(CLAIM_BATCH)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        let _w = self.write_turn().await;
        let mut rows = inbound::Entity::update_many()
            .col_expr(inbound::Column::Owner, Expr::value(owner))
            .col_expr(inbound::Column::LeaseUntil, Expr::value(until))
            .filter(inbound::Column::Id.in_subquery(pick))
            .exec_with_returning(self.conn())
            .await?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }
}

/// `SELECT 1 FROM inbound AS older WHERE …`: an older pending message of the same chat (the
/// outer `inbound` row's) held by another process than `owner` at `now` (the negation of
/// [`super::inbound::lapsed`] for another owner). For `NOT EXISTS` in [`Store::claim_inbound`]
/// and [`Store::claimable_chats`].
fn held_before(owner: &str, now: DateTime<Utc>) -> sea_orm::sea_query::SelectStatement {
    let older = Alias::new("older");
    let col = |c: inbound::Column| Expr::col((older.clone(), c));
    let outer = |c: inbound::Column| Expr::col((inbound::Entity, c));
    Query::select()
        .expr(Expr::val(1))
        .from_as(inbound::Entity, older.clone())
        .and_where(col(inbound::Column::ChatId).eq(outer(inbound::Column::ChatId)))
        .and_where(col(inbound::Column::Status).eq(InboundStatus::Pending.as_str()))
        .and_where(col(inbound::Column::Id).lt(outer(inbound::Column::Id)))
        .and_where(col(inbound::Column::Owner).ne(owner))
        .and_where(col(inbound::Column::LeaseUntil).gte(now))
        .to_owned()
}
