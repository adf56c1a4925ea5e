//! Entity `turns`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "turns")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub chat_id: i64,
    pub source: String,
    pub model: String,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub steps: i32,
    pub outcome: String,
    pub started_at: DateTimeUtc,
    pub duration_ms: i64,
    /// The model's whole final answer (before the length cap); `None` for failed turns.
    pub reply_text: Option<String>,
    /// The Telegram user the turn acted for (`None`: a routine turn with no owner).
    pub actor_id: Option<i64>,
    /// The member's message as the model saw it ("Bob: move my chores to Alice").
    #[sea_orm(column_type = "Text", nullable)]
    pub request: Option<String>,
    /// The ordered tool names and argument keys of the turn's successful calls,
    /// `chore_list();chore_update(id,owner)`; `None` without any.
    pub fingerprint: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
