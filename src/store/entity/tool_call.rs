//! Entity `tool_calls`: one tool call of a turn, in order (issue 10).
use sea_orm::entity::prelude::*;

use crate::store::ToolCallStatus;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tool_calls")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub turn_id: i64,
    pub chat_id: i64,
    /// 0-based order within the turn.
    pub position: i32,
    pub name: String,
    /// The JSON arguments as the model sent them (`{}` when empty).
    #[sea_orm(column_type = "Text")]
    pub arguments: String,
    /// The JSON result given back to the model, clipped to
    /// [`crate::store::MAX_RECORDED_RESULT_CHARS`].
    #[sea_orm(column_type = "Text")]
    pub result: String,
    pub status: ToolCallStatus,
    pub destructive: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
