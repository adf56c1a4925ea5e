//! Entity `chore_completions`: one row per approved (or self-verified) completion.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "chore_completions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub chore_id: i64,
    /// The chore's chat (a group, or the owner's private chat for a personal chore).
    pub chat_id: i64,
    /// Who did it (gets the points).
    pub user_id: i64,
    /// Who was assigned at the time (differs from `user_id` for a swap).
    pub assignee_id: Option<i64>,
    pub points: i32,
    /// The occurrence's due instant (UTC), if it had one.
    pub due_at: Option<DateTimeUtc>,
    pub completed_at: DateTimeUtc,
    /// Completed at or before `due_at` (true when there was no due date).
    pub on_time: bool,
    /// Someone else's chore ("I did Bob's vacuuming").
    pub swap: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
