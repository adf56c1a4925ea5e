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
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
