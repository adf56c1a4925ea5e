//! Step runs and the durable side of runs: the rows a run's steps leave, and the gate outcome an
//! approval writes in its transition's transaction.
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, Set,
};

use super::{
    entity::{routine_run, step_run},
    RunStatus, StepStatus, StepType, Store, StoreResult,
};

/// A step run to insert.
#[derive(Debug, Clone)]
pub struct NewStepRun {
    pub run_id: i64,
    /// 0-based index into the run's snapshot.
    pub position: i32,
    pub attempt: i32,
    pub name: Option<String>,
    pub kind: StepType,
    pub status: StepStatus,
    pub input: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
}

/// How an approval gate (workflow kind `routine_gate`) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOutcome {
    Approved,
    Rejected,
    Expired,
    Cancelled,
}

impl GateOutcome {
    /// The step run's output: "approved" | "rejected" | "expired" | "cancelled".
    pub fn as_str(self) -> &'static str {
        match self {
            GateOutcome::Approved => "approved",
            GateOutcome::Rejected => "rejected",
            GateOutcome::Expired => "expired",
            GateOutcome::Cancelled => "cancelled",
        }
    }
}

/// Apply a gate's outcome in the transition's transaction: the waiting step run becomes
/// `completed` with output [`GateOutcome::as_str`] and the reason, and its waiting run is woken
/// (`wake_at` = `at`) so the next sweep continues it. True when the step run was waiting.
pub(super) async fn apply_gate(
    db: &impl ConnectionTrait,
    step_run_id: i64,
    run_id: i64,
    outcome: GateOutcome,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> StoreResult<bool> {
    let r = step_run::Entity::update_many()
        .col_expr(step_run::Column::Status, Expr::value(StepStatus::Completed))
        .col_expr(step_run::Column::Output, Expr::value(outcome.as_str()))
        .col_expr(
            step_run::Column::Reason,
            Expr::value(reason.map(str::to_string)),
        )
        .col_expr(step_run::Column::FinishedAt, Expr::value(Some(at)))
        .filter(step_run::Column::Id.eq(step_run_id))
        .filter(step_run::Column::Status.eq(StepStatus::Waiting))
        .exec(db)
        .await?;
    if r.rows_affected == 0 {
        return Ok(false);
    }
    routine_run::Entity::update_many()
        .col_expr(routine_run::Column::WakeAt, Expr::value(Some(at)))
        .filter(routine_run::Column::Id.eq(run_id))
        .filter(routine_run::Column::Status.eq(RunStatus::Waiting))
        .exec(db)
        .await?;
    Ok(true)
}

impl Store {
    /// Insert a step run; returns its id.
    pub async fn insert_step_run(&self, s: NewStepRun) -> StoreResult<i64> {
        let m = step_run::ActiveModel {
            run_id: Set(s.run_id),
            position: Set(s.position),
            attempt: Set(s.attempt),
            name: Set(s.name),
            kind: Set(s.kind),
            status: Set(s.status),
            input: Set(s.input),
            output: Set(None),
            reason: Set(None),
            error: Set(None),
            prompt_tokens: Set(0),
            completion_tokens: Set(0),
            cost_usd: Set(0.0),
            duration_ms: Set(0),
            workflow_id: Set(None),
            started_at: Set(s.started_at),
            finished_at: Set(None),
            ..Default::default()
        }
        .insert(self.conn())
        .await?;
        Ok(m.id)
    }

    /// One step run.
    pub async fn step_run(&self, id: i64) -> StoreResult<Option<step_run::Model>> {
        Ok(step_run::Entity::find_by_id(id).one(self.conn()).await?)
    }

    /// A run's step runs in execution order (position, then attempt).
    pub async fn step_runs_of(&self, run_id: i64) -> StoreResult<Vec<step_run::Model>> {
        Ok(step_run::Entity::find()
            .filter(step_run::Column::RunId.eq(run_id))
            .order_by_asc(step_run::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Mark a step run waiting on workflow `workflow_id` (an approval gate or a confirmation).
    pub async fn set_step_run_waiting(&self, id: i64, workflow_id: Option<i64>) -> StoreResult<()> {
        step_run::Entity::update_many()
            .col_expr(step_run::Column::Status, Expr::value(StepStatus::Waiting))
            .col_expr(step_run::Column::WorkflowId, Expr::value(workflow_id))
            .filter(step_run::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
