//! The context log: every message of a chat (members' and the bot's), the source of context
//! windows and of `recall_conversation`.
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{ExprTrait, OnConflict},
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::{entity::message, inserted, Store, StoreResult};

/// A message to append to a chat's log.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub chat_id: i64,
    /// `None` for the bot.
    pub sender_user_id: Option<i64>,
    pub sender_name: &'a str,
    pub from_bot: bool,
    pub text: &'a str,
    pub tg_message_id: Option<i64>,
    pub reply_to: Option<i64>,
    pub created_at: DateTime<Utc>,
}

impl NewMessage<'_> {
    fn active(&self) -> message::ActiveModel {
        message::ActiveModel {
            chat_id: Set(self.chat_id),
            sender_user_id: Set(self.sender_user_id),
            sender_name: Set(self.sender_name.to_string()),
            from_bot: Set(self.from_bot),
            text: Set(self.text.to_string()),
            tg_message_id: Set(self.tg_message_id),
            reply_to: Set(self.reply_to),
            created_at: Set(self.created_at),
            ..Default::default()
        }
    }
}

impl Store {
    /// Append to the log. Idempotent on (chat, Telegram message id): a redelivered or recovered
    /// message is stored once. Returns false when it was already there.
    pub async fn append_message(&self, m: NewMessage<'_>) -> StoreResult<bool> {
        let _w = self.write_turn().await;
        inserted(
            message::Entity::insert(m.active())
                .on_conflict(
                    OnConflict::columns([message::Column::ChatId, message::Column::TgMessageId])
                        .do_nothing()
                        .to_owned(),
                )
                .exec(self.conn())
                .await,
        )
    }

    /// Append many rows in chunked multi-row inserts (imports, benchmarks, tests).
    pub async fn append_messages_bulk(&self, rows: &[NewMessage<'_>]) -> StoreResult<()> {
        for chunk in rows.chunks(500) {
            let models = chunk.iter().map(NewMessage::active);
            message::Entity::insert_many(models)
                .exec_without_returning(self.conn())
                .await?;
        }
        Ok(())
    }

    /// The context window: the newest `limit` messages of `chat_id` created at or after `since`,
    /// oldest first, excluding Telegram message `exclude_tg` (the message being answered).
    /// Uses the (chat_id, id) index: cost grows with `limit`, not with history.
    pub async fn window(
        &self,
        chat_id: i64,
        since: DateTime<Utc>,
        limit: u64,
        exclude_tg: Option<i64>,
    ) -> StoreResult<Vec<message::Model>> {
        let mut q = message::Entity::find()
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::CreatedAt.gte(since));
        if let Some(x) = exclude_tg {
            q = q.filter(
                message::Column::TgMessageId
                    .ne(x)
                    .or(message::Column::TgMessageId.is_null()),
            );
        }
        let mut rows = q
            .order_by_desc(message::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Older messages of one chat for `recall_conversation`: those with id below `before_id`
    /// (newest first), optionally containing `needle` (case-insensitive where the backend allows).
    pub async fn recall(
        &self,
        chat_id: i64,
        before_id: Option<i64>,
        needle: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<message::Model>> {
        let mut q = message::Entity::find().filter(message::Column::ChatId.eq(chat_id));
        if let Some(b) = before_id {
            q = q.filter(message::Column::Id.lt(b));
        }
        if let Some(n) = needle.filter(|n| !n.trim().is_empty()) {
            q = q.filter(message::Column::Text.contains(n.trim()));
        }
        let mut rows = q
            .order_by_desc(message::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Telegram id of the bot's latest message in `chat_id`.
    pub async fn last_bot_message_id(&self, chat_id: i64) -> StoreResult<Option<i64>> {
        Ok(message::Entity::find()
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::FromBot.eq(true))
            .order_by_desc(message::Column::Id)
            .one(self.conn())
            .await?
            .and_then(|m| m.tg_message_id))
    }

    /// Number of log rows of a chat (tests and stats).
    pub async fn message_count(&self, chat_id: i64) -> StoreResult<u64> {
        use sea_orm::PaginatorTrait;
        Ok(message::Entity::find()
            .filter(message::Column::ChatId.eq(chat_id))
            .count(self.conn())
            .await?)
    }
}
