//! Entity `workflow_audit`: one row per workflow transition.
use sea_orm::entity::prelude::*;

use crate::store::{Via, WorkflowStatus};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_audit")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub workflow_id: i64,
    /// `None` for the scheduler or the system.
    pub actor_id: Option<i64>,
    pub at: DateTimeUtc,
    pub from_status: WorkflowStatus,
    pub to_status: WorkflowStatus,
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
    pub via: Via,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
