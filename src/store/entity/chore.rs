//! Entity `chores`.
use sea_orm::entity::prelude::*;

use crate::store::{Anchor, ChoreStatus, Rotation};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "chores")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The group, or for a personal chore the owner's private chat.
    pub chat_id: i64,
    pub title: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    pub personal: bool,
    pub owner_id: Option<i64>,
    pub partner_id: Option<i64>,
    pub assignee_id: Option<i64>,
    /// "todo" | "pending_verification" | "completed" | "archived"
    pub status: ChoreStatus,
    /// JSON (`schedule::Recurrence`; legacy `{"every_days":n}` is still read), `None` for a one-off chore.
    #[sea_orm(column_type = "Text", nullable)]
    pub recurrence: Option<String>,
    pub next_due: Option<DateTimeUtc>,
    pub points: i32,
    pub created_by: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    pub completed_by: Option<i64>,
    pub archived_at: Option<DateTimeUtc>,
    /// What the next due date counts from: "due" (the previous due date) or "completion".
    pub anchor: Anchor,
    /// "fixed" | "round_robin" | "least_completed".
    pub rotation: Rotation,
    /// JSON array of user ids taking turns (rotation order), `None` when not rotating.
    #[sea_orm(column_type = "Text", nullable)]
    pub rotation_members: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
