//! Entity `chore_reminders`: one row per reminder sent; `key` is unique.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "chore_reminders")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// e.g. "overdue:12:1795000000" or "summary:-1001:2026-11-21".
    pub key: String,
    pub chat_id: i64,
    pub kind: String,
    pub sent_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
