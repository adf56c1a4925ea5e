//! Entity `step_runs`: one executed step of a run (one row per loop pass).
use sea_orm::entity::prelude::*;

use crate::store::{StepStatus, StepType};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "step_runs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub run_id: i64,
    /// 0-based index into the run's snapshot.
    pub position: i32,
    /// 1 on the first pass; a loop-back or a retry adds one.
    pub attempt: i32,
    pub name: Option<String>,
    pub kind: StepType,
    pub status: StepStatus,
    /// The resolved input (rendered template, mapped arguments), as run.
    #[sea_orm(column_type = "Text", nullable)]
    pub input: Option<String>,
    /// The output (a prompt's final text, a tool's result, "approved"/"rejected", the branch).
    #[sea_orm(column_type = "Text", nullable)]
    pub output: Option<String>,
    /// An approval's rejection reason.
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub cost_usd: f64,
    pub duration_ms: i64,
    /// The approval gate's or confirmation's workflow.
    pub workflow_id: Option<i64>,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
