//! The run side of approval gates that the gate service and its tests need: putting a run in
//! the `waiting` state for its gate (what the engine does when a step opens one).
use chrono::{DateTime, Utc};
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};

use super::{entity::routine_run, RunStatus, Store, StoreResult};

impl Store {
    /// Mark run `run_id` waiting for `waiting_for` (e.g. `approval:12`) until `wake_at` (UTC,
    /// the sweep's safety net: an approval's expiry + 1 min), unless it already ended (only an
    /// active run moves). True when it moved.
    pub async fn set_run_waiting(
        &self,
        run_id: i64,
        waiting_for: &str,
        wake_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let r = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::Status, Expr::value(RunStatus::Waiting))
            .col_expr(
                routine_run::Column::WaitingFor,
                Expr::value(Some(waiting_for.to_string())),
            )
            .col_expr(routine_run::Column::WakeAt, Expr::value(Some(wake_at)))
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.is_in([
                RunStatus::Pending,
                RunStatus::Running,
                RunStatus::Waiting,
            ]))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected > 0)
    }
}
