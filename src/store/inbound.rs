//! Inbound messages: persisted before any work (dedupe on chat + message id), held by one process
//! at a time through a lease (owner + `lease_until`, renewed by that process's heartbeat), marked
//! done after the reply is sent, and recovered — at start-up and periodically — only when their
//! lease lapsed. Also the `replies` table: the reply decided for an inbound message, persisted
//! before sending and confirmed after (issue 8).
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait, OnConflict},
    ColumnTrait, Condition, EntityTrait, QueryFilter, Set,
};

use super::{
    entity::{inbound, reply},
    Store, StoreResult,
};

/// Where an inbound message stands. Stored as its lowercase name in `inbound.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundStatus {
    /// Persisted, not finished: queued, being answered, or waiting for recovery.
    Pending,
    /// Processed (answered, or kept as context).
    Done,
    /// Given up: a panic, an unreadable payload, or too many started attempts.
    Failed,
    /// Given up: too old to answer when recovery found it.
    Abandoned,
}

impl InboundStatus {
    /// The stored name ("pending", "done", "failed", "abandoned").
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Abandoned => "abandoned",
        }
    }
}

/// Rows a lease-holder may take: unowned, or whose lease lapsed before `now`.
pub(super) fn lapsed(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(inbound::Column::Owner.is_null())
        .add(inbound::Column::LeaseUntil.is_null())
        .add(inbound::Column::LeaseUntil.lt(now))
}

impl Store {
    /// Persist an inbound message with no owner (recovery may take it at once). Returns
    /// `Some(id)` for a new one, `None` for a duplicate (same chat and message id, whatever the
    /// update id). No attempt is counted: that happens when a turn starts ([`Store::start_turn`]).
    pub async fn insert_inbound(
        &self,
        chat_id: i64,
        message_id: i64,
        update_id: Option<i64>,
        payload: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        self.insert_inbound_leased(chat_id, message_id, update_id, payload, now, None)
            .await
    }

    /// [`Store::insert_inbound`], held at once by `lease` = (owner process id, lease end).
    pub async fn insert_inbound_leased(
        &self,
        chat_id: i64,
        message_id: i64,
        update_id: Option<i64>,
        payload: &str,
        now: DateTime<Utc>,
        lease: Option<(&str, DateTime<Utc>)>,
    ) -> StoreResult<Option<i64>> {
        let r = inbound::Entity::insert(inbound::ActiveModel {
            chat_id: Set(chat_id),
            message_id: Set(message_id),
            update_id: Set(update_id),
            payload: Set(payload.to_string()),
            status: Set(InboundStatus::Pending.as_str().into()),
            attempts: Set(0),
            received_at: Set(now),
            done_at: Set(None),
            owner: Set(lease.map(|(o, _)| o.to_string())),
            lease_until: Set(lease.map(|(_, u)| u)),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::columns([inbound::Column::ChatId, inbound::Column::MessageId])
                .do_nothing()
                .to_owned(),
        )
        .exec(self.conn())
        .await;
        match r {
            Ok(r) => Ok(Some(r.last_insert_id)),
            Err(sea_orm::DbErr::RecordNotInserted) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Record the end of processing (done, failed or abandoned) and release the lease.
    pub async fn finish_inbound(
        &self,
        id: i64,
        status: InboundStatus,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        inbound::Entity::update_many()
            .col_expr(inbound::Column::Status, Expr::value(status.as_str()))
            .col_expr(inbound::Column::DoneAt, Expr::value(now))
            .col_expr(inbound::Column::Owner, Expr::value(Option::<String>::None))
            .col_expr(
                inbound::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(inbound::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// A turn starts on message `id` in process `owner`: in ONE conditional update, count the
    /// attempt and (re)take the lease until `lease_until` — only if the message is still pending
    /// and held by `owner`, by nobody, or by a lapsed lease. Returns true when the turn may run,
    /// false when another process holds it or it is finished.
    pub async fn start_turn(
        &self,
        id: i64,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let r = inbound::Entity::update_many()
            .col_expr(
                inbound::Column::Attempts,
                Expr::col(inbound::Column::Attempts).add(1),
            )
            .col_expr(inbound::Column::Owner, Expr::value(owner))
            .col_expr(inbound::Column::LeaseUntil, Expr::value(lease_until))
            .filter(inbound::Column::Id.eq(id))
            .filter(inbound::Column::Status.eq(InboundStatus::Pending.as_str()))
            .filter(
                Condition::any()
                    .add(inbound::Column::Owner.eq(owner))
                    .add(lapsed(now)),
            )
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// The heartbeat: extend every pending lease `owner` holds to `lease_until`, in one
    /// statement whatever the number of messages. Returns how many rows it renewed.
    pub async fn renew_leases(&self, owner: &str, lease_until: DateTime<Utc>) -> StoreResult<u64> {
        let r = inbound::Entity::update_many()
            .col_expr(inbound::Column::LeaseUntil, Expr::value(lease_until))
            .filter(inbound::Column::Owner.eq(owner))
            .filter(inbound::Column::Status.eq(InboundStatus::Pending.as_str()))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected)
    }

    /// Give up every pending lease `owner` holds (graceful stop): the next process to recover
    /// takes them at once instead of waiting for the lease to lapse.
    pub async fn release_leases(&self, owner: &str) -> StoreResult<u64> {
        self.release_where(inbound::Column::Owner.eq(owner)).await
    }

    /// Release one pending message `owner` holds (its turn failed, or another process holds
    /// its chat): whoever holds the chat claims it at its next pass. A message another process
    /// claimed meanwhile is left alone.
    pub async fn release_inbound(&self, id: i64, owner: &str) -> StoreResult<()> {
        self.release_where(
            inbound::Column::Id
                .eq(id)
                .and(inbound::Column::Owner.eq(owner)),
        )
        .await?;
        Ok(())
    }

    /// Clear owner and lease of the pending rows matching `which`; returns how many.
    async fn release_where(&self, which: sea_orm::sea_query::SimpleExpr) -> StoreResult<u64> {
        let r = inbound::Entity::update_many()
            .col_expr(inbound::Column::Owner, Expr::value(Option::<String>::None))
            .col_expr(
                inbound::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(which)
            .filter(inbound::Column::Status.eq(InboundStatus::Pending.as_str()))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected)
    }

    /// How many inbound rows are pending (queued, being answered or awaiting recovery): the
    /// inbound queue depth exported by `/metrics`.
    pub async fn pending_inbound_count(&self) -> StoreResult<u64> {
        use sea_orm::PaginatorTrait;
        Ok(inbound::Entity::find()
            .filter(inbound::Column::Status.eq(InboundStatus::Pending.as_str()))
            .count(self.conn())
            .await?)
    }

    /// Delete finished inbound rows (and their replies) received before `purge_before`.
    /// Returns how many inbound rows were deleted.
    pub async fn purge_inbound(&self, purge_before: DateTime<Utc>) -> StoreResult<u64> {
        let p = inbound::Entity::delete_many()
            .filter(inbound::Column::Status.ne(InboundStatus::Pending.as_str()))
            .filter(inbound::Column::ReceivedAt.lt(purge_before))
            .exec(self.conn())
            .await?;
        reply::Entity::delete_many()
            .filter(reply::Column::CreatedAt.lt(purge_before))
            .exec(self.conn())
            .await?;
        Ok(p.rows_affected)
    }

    /// One inbound row (tests, diagnostics).
    pub async fn inbound_by_message(
        &self,
        chat_id: i64,
        message_id: i64,
    ) -> StoreResult<Option<inbound::Model>> {
        Ok(inbound::Entity::find()
            .filter(inbound::Column::ChatId.eq(chat_id))
            .filter(inbound::Column::MessageId.eq(message_id))
            .one(self.conn())
            .await?)
    }

    /// Persist the reply decided for inbound message `inbound_id`, before it is sent.
    /// `buttons` is the keyboard as JSON. A reply already stored for it is kept (decided once).
    /// Returns true when this call stored it, false when one was stored before (by an earlier
    /// turn, or by another process that worked the message while this one's lease lapsed).
    pub async fn save_reply(
        &self,
        inbound_id: i64,
        chat_id: i64,
        html: &str,
        buttons: &str,
        reply_to: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let r = reply::Entity::insert(reply::ActiveModel {
            inbound_id: Set(inbound_id),
            chat_id: Set(chat_id),
            html: Set(html.to_string()),
            buttons: Set(buttons.to_string()),
            reply_to: Set(reply_to),
            created_at: Set(now),
            sent_at: Set(None),
            tg_message_ids: Set(None),
        })
        .on_conflict(
            OnConflict::column(reply::Column::InboundId)
                .do_nothing()
                .to_owned(),
        )
        .exec(self.conn())
        .await;
        match r {
            Ok(_) => Ok(true),
            Err(sea_orm::DbErr::RecordNotInserted) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Telegram confirmed the reply to `inbound_id`: record its message ids.
    pub async fn confirm_reply(
        &self,
        inbound_id: i64,
        tg_message_ids: &[i64],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let ids = tg_message_ids
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        reply::Entity::update_many()
            .col_expr(reply::Column::SentAt, Expr::value(now))
            .col_expr(reply::Column::TgMessageIds, Expr::value(ids))
            .filter(reply::Column::InboundId.eq(inbound_id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// The reply stored for inbound message `inbound_id`, if one was decided.
    pub async fn reply_for(&self, inbound_id: i64) -> StoreResult<Option<reply::Model>> {
        Ok(reply::Entity::find_by_id(inbound_id)
            .one(self.conn())
            .await?)
    }
}
