//! Entity `replies`: the reply decided for one inbound message (issue 8, "a reply is decided
//! once"). Written before sending; `sent_at` and `tg_message_ids` after Telegram confirmed it.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "replies")]
pub struct Model {
    /// The inbound message this answers (`inbound.id`); one reply per inbound message.
    #[sea_orm(primary_key, auto_increment = false)]
    pub inbound_id: i64,
    pub chat_id: i64,
    /// Telegram HTML, as handed to the messenger.
    #[sea_orm(column_type = "Text")]
    pub html: String,
    /// Inline keyboard as JSON: rows of `{"label", "data"}`.
    #[sea_orm(column_type = "Text")]
    pub buttons: String,
    /// Telegram message id replied to.
    pub reply_to: Option<i64>,
    pub created_at: DateTimeUtc,
    /// When Telegram confirmed delivery; `None` = decided but not (known to be) sent.
    pub sent_at: Option<DateTimeUtc>,
    /// Comma-separated Telegram message ids of the delivered parts.
    #[sea_orm(column_type = "Text", nullable)]
    pub tg_message_ids: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
