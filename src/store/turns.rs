//! Turn records: tokens, steps, outcome and duration of every agent turn, and its tool calls in
//! order (issue 10: recorded routines are saved from them; the web admin lists them).
use chrono::{DateTime, Utc};
use sea_orm::{
    entity::prelude::StringLen, ColumnTrait, DeriveActiveEnum, EntityTrait, EnumIter, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};

use super::{
    entity::{tool_call, turn},
    Store, StoreResult,
};

/// Longest tool result kept in a `tool_calls` row, in characters.
pub const MAX_RECORDED_RESULT_CHARS: usize = 2000;
/// `turns.source` of a dry run's turns (the web admin's test runner, issue 11): recorded for
/// their tokens, never a member's task (`/save`, suggestions).
pub const DRY_RUN_SOURCE: &str = "dry_run";

/// What became of one tool call the model asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum ToolCallStatus {
    /// It ran and succeeded.
    #[sea_orm(string_value = "ran")]
    Ran,
    /// It ran (or was checked) and failed; the error went back to the model.
    #[sea_orm(string_value = "error")]
    Error,
    /// A destructive call held for its member's confirmation (nothing done yet).
    #[sea_orm(string_value = "held")]
    Held,
    /// Not run: outside a replay's tool set, unknown, or destructive where that is withheld.
    #[sea_orm(string_value = "refused")]
    Refused,
    /// The same call (name and arguments) again in one turn: not run again.
    #[sea_orm(string_value = "repeat")]
    Repeat,
}

stored_names!(ToolCallStatus {
    Ran => "ran",
    Error => "error",
    Held => "held",
    Refused => "refused",
    Repeat => "repeat",
});

/// One tool call to record with its turn.
#[derive(Debug, Clone, PartialEq)]
pub struct NewToolCall {
    pub name: String,
    /// JSON arguments as sent (`{}` when empty).
    pub arguments: String,
    /// JSON result (clipped to [`MAX_RECORDED_RESULT_CHARS`] when stored).
    pub result: String,
    pub status: ToolCallStatus,
    pub destructive: bool,
}

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
    /// The Telegram user the turn acted for.
    pub actor_id: Option<i64>,
    /// The member's message as the model saw it.
    pub request: Option<&'a str>,
    /// The tool calls, in order.
    pub calls: &'a [NewToolCall],
}

/// A finished turn, owned: recorded later in the commit of the routine step that ran it
/// ([`crate::store::AdvanceExtras::turn`]) instead of in a statement of its own.
#[derive(Debug, Clone)]
pub struct TurnRecord {
    pub chat_id: i64,
    pub source: String,
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub steps: u32,
    pub outcome: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub reply_text: Option<String>,
    pub actor_id: Option<i64>,
    pub request: Option<String>,
    pub calls: Vec<NewToolCall>,
}

impl TurnRecord {
    /// The record as [`Store::record_turn`] takes it.
    pub fn as_new(&self) -> NewTurn<'_> {
        NewTurn {
            chat_id: self.chat_id,
            source: &self.source,
            model: &self.model,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            steps: self.steps,
            outcome: &self.outcome,
            started_at: self.started_at,
            duration_ms: self.duration_ms,
            reply_text: self.reply_text.as_deref(),
            actor_id: self.actor_id,
            request: self.request.as_deref(),
            calls: &self.calls,
        }
    }
}

/// The `turns` row of `t` (its tool calls are rows of their own).
pub(super) fn turn_model(t: &NewTurn<'_>) -> turn::ActiveModel {
    turn::ActiveModel {
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
        actor_id: Set(t.actor_id),
        request: Set(t.request.map(str::to_string)),
        fingerprint: Set(fingerprint(t.calls)),
        ..Default::default()
    }
}

/// The fingerprint of a turn's calls: the tool names with their sorted argument keys, in order,
/// of the calls that ran (`chore_list();chore_update(id,owner)`); `None` when none ran. Two turns
/// with the same fingerprint did "the same kind of task" (issue 10, item 8).
pub fn fingerprint(calls: &[NewToolCall]) -> Option<String> {
    let parts: Vec<String> = calls
        .iter()
        .filter(|c| c.status == ToolCallStatus::Ran)
        .map(|c| {
            let keys = serde_json::from_str::<serde_json::Value>(&c.arguments)
                .ok()
                .and_then(|v| {
                    v.as_object().map(|o| {
                        let mut k: Vec<String> = o.keys().cloned().collect();
                        k.sort();
                        k
                    })
                })
                .unwrap_or_default();
            format!("{}({})", c.name, keys.join(","))
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    let mut f = parts.join(";");
    if f.len() > 512 {
        let mut end = 512;
        while !f.is_char_boundary(end) {
            end -= 1;
        }
        f.truncate(end);
    }
    Some(f)
}

fn clip_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl Store {
    /// Record a turn and its tool calls in one transaction (one statement when it made no
    /// call: the common turn pays no BEGIN/COMMIT); returns the turn's id.
    pub async fn record_turn(&self, t: NewTurn<'_>) -> StoreResult<i64> {
        let _w = self.write_turn().await;
        let row = turn_model(&t);
        if t.calls.is_empty() {
            return Ok(turn::Entity::insert(row)
                .exec(self.conn())
                .await?
                .last_insert_id);
        }
        let txn = self.conn().begin().await?;
        let turn_id = turn::Entity::insert(row).exec(&txn).await?.last_insert_id;
        let rows = t
            .calls
            .iter()
            .enumerate()
            .map(|(i, c)| tool_call::ActiveModel {
                turn_id: Set(turn_id),
                chat_id: Set(t.chat_id),
                position: Set(i as i32),
                name: Set(c.name.chars().take(64).collect()),
                arguments: Set(c.arguments.clone()),
                result: Set(clip_chars(&c.result, MAX_RECORDED_RESULT_CHARS)),
                status: Set(c.status),
                destructive: Set(c.destructive),
                created_at: Set(t.started_at),
                ..Default::default()
            });
        tool_call::Entity::insert_many(rows).exec(&txn).await?;
        txn.commit().await?;
        Ok(turn_id)
    }

    /// Turns of a chat, newest first.
    pub async fn turns(&self, chat_id: i64) -> StoreResult<Vec<turn::Model>> {
        Ok(turn::Entity::find()
            .filter(turn::Column::ChatId.eq(chat_id))
            .order_by_desc(turn::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// One turn by id.
    pub async fn turn(&self, id: i64) -> StoreResult<Option<turn::Model>> {
        Ok(turn::Entity::find_by_id(id).one(self.conn()).await?)
    }

    /// A turn's tool calls, in order.
    pub async fn tool_calls(&self, turn_id: i64) -> StoreResult<Vec<tool_call::Model>> {
        Ok(tool_call::Entity::find()
            .filter(tool_call::Column::TurnId.eq(turn_id))
            .order_by_asc(tool_call::Column::Position)
            .all(self.conn())
            .await?)
    }

    /// The latest turns member `actor_id` made in chat `chat_id` with a fingerprint (at least
    /// one call that ran), newest first, at most `limit`. A dry run's turns (source
    /// [`DRY_RUN_SOURCE`]) are not tasks the member did: left out.
    pub async fn tool_turns_of(
        &self,
        chat_id: i64,
        actor_id: i64,
        limit: u64,
    ) -> StoreResult<Vec<turn::Model>> {
        Ok(turn::Entity::find()
            .filter(turn::Column::ChatId.eq(chat_id))
            .filter(turn::Column::ActorId.eq(actor_id))
            .filter(turn::Column::Fingerprint.is_not_null())
            .filter(turn::Column::Source.ne(DRY_RUN_SOURCE))
            .order_by_desc(turn::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?)
    }

    /// Member `actor_id`'s first routine turn (source "routine") in chat `chat_id` started at or
    /// after `since` (UTC): the turn of a run's `prompt` step that started then (issue 10: what a
    /// replay did).
    pub async fn first_turn_since(
        &self,
        chat_id: i64,
        actor_id: i64,
        since: DateTime<Utc>,
    ) -> StoreResult<Option<turn::Model>> {
        Ok(turn::Entity::find()
            .filter(turn::Column::ChatId.eq(chat_id))
            .filter(turn::Column::ActorId.eq(actor_id))
            .filter(turn::Column::Source.eq("routine"))
            .filter(turn::Column::StartedAt.gte(since))
            .order_by_asc(turn::Column::Id)
            .one(self.conn())
            .await?)
    }

    /// Member `actor_id`'s turns in chat `chat_id` with fingerprint `fp` started at or after
    /// `since` (UTC), newest first (dry runs left out).
    pub async fn turns_with_fingerprint(
        &self,
        chat_id: i64,
        actor_id: i64,
        fp: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<turn::Model>> {
        Ok(turn::Entity::find()
            .filter(turn::Column::ChatId.eq(chat_id))
            .filter(turn::Column::ActorId.eq(actor_id))
            .filter(turn::Column::Fingerprint.eq(fp))
            .filter(turn::Column::Source.ne(DRY_RUN_SOURCE))
            .filter(turn::Column::StartedAt.gte(since))
            .order_by_desc(turn::Column::Id)
            .all(self.conn())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &str, status: ToolCallStatus) -> NewToolCall {
        NewToolCall {
            name: name.into(),
            arguments: args.into(),
            result: "{}".into(),
            status,
            destructive: false,
        }
    }

    #[test]
    fn fingerprint_is_names_and_sorted_keys_of_calls_that_ran() {
        let calls = [
            call("chore_list", "{}", ToolCallStatus::Ran),
            call(
                "chore_update",
                r#"{"owner":"Alice","id":3}"#,
                ToolCallStatus::Ran,
            ),
            call("nope", "{}", ToolCallStatus::Refused),
            call("chore_update", "not json", ToolCallStatus::Ran),
        ];
        assert_eq!(
            fingerprint(&calls).as_deref(),
            Some("chore_list();chore_update(id,owner);chore_update()")
        );
        assert_eq!(fingerprint(&calls[2..3]), None);
    }
}
