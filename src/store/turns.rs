//! Turn records: tokens, steps, outcome and duration of every agent turn.
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::{entity::turn, Store, StoreResult};

/// A finished turn to record.
#[derive(Debug, Clone)]
pub struct NewTurn<'a> {
    pub chat_id: i64,
    /// "message" | "routine" | …
    pub source: &'a str,
    pub model: &'a str,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub steps: u32,
    /// "ok" or a short failure cause ("timeout", "rate_limited", "step_cap", …).
    pub outcome: &'a str,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// The model's whole final answer, before `llm.max_answer_chars` cut it; `None` on failure.
    pub reply_text: Option<&'a str>,
}

impl Store {
    /// Record a turn; returns its id.
    pub async fn record_turn(&self, t: NewTurn<'_>) -> StoreResult<i64> {
        let _w = self.write_turn().await;
        let r = turn::Entity::insert(turn::ActiveModel {
            chat_id: Set(t.chat_id),
            source: Set(t.source.to_string()),
            model: Set(t.model.to_string()),
            prompt_tokens: Set(t.prompt_tokens as i32),
            completion_tokens: Set(t.completion_tokens as i32),
            steps: Set(t.steps as i32),
            outcome: Set(t.outcome.to_string()),
            started_at: Set(t.started_at),
            duration_ms: Set(t.duration_ms),
            reply_text: Set(t.reply_text.map(str::to_string)),
            ..Default::default()
        })
        .exec(self.conn())
        .await?;
        Ok(r.last_insert_id)
    }

    /// Turns of a chat, newest first.
    pub async fn turns(&self, chat_id: i64) -> StoreResult<Vec<turn::Model>> {
        Ok(turn::Entity::find()
            .filter(turn::Column::ChatId.eq(chat_id))
            .order_by_desc(turn::Column::Id)
            .all(self.conn())
            .await?)
    }
}
