//! Entity `messages`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub chat_id: i64,
    pub sender_user_id: Option<i64>,
    pub sender_name: String,
    pub from_bot: bool,
    #[sea_orm(column_type = "Text")]
    pub text: String,
    pub tg_message_id: Option<i64>,
    pub reply_to: Option<i64>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
