//! The figures of a routines listing (the web admin's routines page, issue 11): per routine and
//! run status, the run count, the newest start, the summed cost and the summed recorded wall
//! time — one grouped query for a whole page, never one per routine.
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Alias, Expr, ExprTrait, Func},
    ColumnTrait, EntityTrait, QueryFilter, QuerySelect,
};

use super::{entity::routine_run, RunStatus, Store, StoreResult};

/// One routine's runs of one status, from [`Store::routine_figures`].
#[derive(Debug, Clone, PartialEq, sea_orm::FromQueryResult)]
pub struct RoutineFigures {
    pub routine_id: i64,
    pub status: RunStatus,
    /// Runs of this routine with this status (kept history: [`crate::routines::KEEP_RUNS`]).
    pub runs: i64,
    /// When the newest of them started (UTC).
    pub last_started: Option<DateTime<Utc>>,
    /// Their summed cost, US dollars (`routine_runs.cost_usd`).
    pub cost_usd: f64,
    /// Their summed `duration_ms` (the wall time the executor records when it ends a run;
    /// 0 for a run still going or cancelled).
    pub duration_ms: i64,
}

impl Store {
    /// [`RoutineFigures`] of `routine_ids` grouped by (routine, status): one query for a listing.
    /// Sums are cast to BIGINT / kept as REAL so SQLite and Postgres (whose `SUM(bigint)` is
    /// `numeric`) decode alike.
    pub async fn routine_figures(&self, routine_ids: &[i64]) -> StoreResult<Vec<RoutineFigures>> {
        if routine_ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(routine_run::Entity::find()
            .select_only()
            .column(routine_run::Column::RoutineId)
            .column(routine_run::Column::Status)
            .column_as(routine_run::Column::Id.count(), "runs")
            .column_as(routine_run::Column::StartedAt.max(), "last_started")
            .column_as(
                Expr::expr(Func::coalesce([
                    Func::sum(Expr::col(routine_run::Column::CostUsd)).into(),
                    Expr::val(0.0f64),
                ])),
                "cost_usd",
            )
            .column_as(
                Func::coalesce([
                    Func::sum(Expr::col(routine_run::Column::DurationMs)).into(),
                    Expr::val(0i64),
                ])
                .cast_as(Alias::new("BIGINT")),
                "duration_ms",
            )
            .filter(routine_run::Column::RoutineId.is_in(routine_ids.iter().copied()))
            .group_by(routine_run::Column::RoutineId)
            .group_by(routine_run::Column::Status)
            .into_model::<RoutineFigures>()
            .all(self.conn())
            .await?)
    }
}
