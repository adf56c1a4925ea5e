//! Entity `inbound`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "inbound")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub chat_id: i64,
    pub message_id: i64,
    pub update_id: Option<i64>,
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub received_at: DateTimeUtc,
    pub done_at: Option<DateTimeUtc>,
    /// The process holding this message (its id, logged at start-up); `None` when released.
    pub owner: Option<String>,
    /// Until when `owner` holds it; renewed by the owner's heartbeat. Lapsed → recoverable.
    pub lease_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
