//! Inbound messages: persisted before any work (dedupe on chat + message id), marked done after
//! the reply is sent, recovered at start-up when a crash left them unfinished.
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait, OnConflict},
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};

use super::{entity::inbound, Store, StoreResult};

impl Store {
    /// Persist an inbound message. Returns `Some(id)` for a new one, `None` for a duplicate
    /// (same chat and message id, whatever the update id).
    pub async fn insert_inbound(
        &self,
        chat_id: i64,
        message_id: i64,
        update_id: Option<i64>,
        payload: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        let r = inbound::Entity::insert(inbound::ActiveModel {
            chat_id: Set(chat_id),
            message_id: Set(message_id),
            update_id: Set(update_id),
            payload: Set(payload.to_string()),
            status: Set("pending".into()),
            attempts: Set(1),
            received_at: Set(now),
            done_at: Set(None),
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

    /// Record the end of processing: status "done" or "failed".
    pub async fn finish_inbound(
        &self,
        id: i64,
        status: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        inbound::Entity::update_many()
            .col_expr(inbound::Column::Status, Expr::value(status))
            .col_expr(inbound::Column::DoneAt, Expr::value(now))
            .filter(inbound::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Count one more processing attempt (recovery; the first is counted at insert).
    pub async fn bump_inbound_attempt(&self, id: i64) -> StoreResult<()> {
        inbound::Entity::update_many()
            .col_expr(
                inbound::Column::Attempts,
                Expr::col(inbound::Column::Attempts).add(1),
            )
            .filter(inbound::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Unfinished inbound messages received at or after `since`, oldest first.
    pub async fn pending_inbound(&self, since: DateTime<Utc>) -> StoreResult<Vec<inbound::Model>> {
        Ok(inbound::Entity::find()
            .filter(inbound::Column::Status.eq("pending"))
            .filter(inbound::Column::ReceivedAt.gte(since))
            .order_by_asc(inbound::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Mark unfinished rows older than `before` as "abandoned" (too old to answer) and delete
    /// finished rows older than `purge_before`. Returns (abandoned, purged).
    pub async fn sweep_inbound(
        &self,
        before: DateTime<Utc>,
        purge_before: DateTime<Utc>,
    ) -> StoreResult<(u64, u64)> {
        let a = inbound::Entity::update_many()
            .col_expr(inbound::Column::Status, Expr::value("abandoned"))
            .filter(inbound::Column::Status.eq("pending"))
            .filter(inbound::Column::ReceivedAt.lt(before))
            .exec(self.conn())
            .await?;
        let p = inbound::Entity::delete_many()
            .filter(inbound::Column::Status.ne("pending"))
            .filter(inbound::Column::ReceivedAt.lt(purge_before))
            .exec(self.conn())
            .await?;
        Ok((a.rows_affected, p.rows_affected))
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
}
