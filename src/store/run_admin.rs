//! The admin run pages' queries (issue 11, item 3 "Runs"): a chat's runs one page at a time
//! (keyset on the run id, newest first, served by the indexes of migration
//! `m20261130_000015_admin_runs`), and deleting a finished run's record with its step runs.
use sea_orm::{
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select, TransactionTrait,
};

use super::{
    entity::{routine_run, step_run},
    RunStatus, Store, StoreResult,
};

/// Finished run statuses: a run in one of these may have its record deleted.
pub const FINISHED: [RunStatus; 5] = [
    RunStatus::Completed,
    RunStatus::Failed,
    RunStatus::Cancelled,
    RunStatus::Skipped,
    RunStatus::Silent,
];

/// One page of a chat's run list: `WHERE chat_id = ? [AND routine_id = ?] [AND status = ?]
/// [AND id < before] ORDER BY id DESC LIMIT limit`.
#[derive(Debug, Clone, Default)]
pub struct RunPage {
    pub chat_id: i64,
    pub routine_id: Option<i64>,
    pub status: Option<RunStatus>,
    /// Keyset cursor: only runs with a smaller id (the last id of the previous page).
    pub before: Option<i64>,
    /// Rows wanted (at least 1).
    pub limit: u64,
}

/// The query of [`Store::runs_page`].
fn page_select(p: &RunPage) -> Select<routine_run::Entity> {
    let mut q = routine_run::Entity::find().filter(routine_run::Column::ChatId.eq(p.chat_id));
    if let Some(r) = p.routine_id {
        q = q.filter(routine_run::Column::RoutineId.eq(r));
    }
    if let Some(s) = p.status {
        q = q.filter(routine_run::Column::Status.eq(s));
    }
    if let Some(b) = p.before {
        q = q.filter(routine_run::Column::Id.lt(b));
    }
    q.order_by_desc(routine_run::Column::Id)
        .limit(p.limit.max(1))
}

impl Store {
    /// The runs of `p.chat_id` matching `p`, newest first (see [`RunPage`]). A run's chat is its
    /// own `chat_id` column (backfilled for old rows by the migration).
    pub async fn runs_page(&self, p: &RunPage) -> StoreResult<Vec<routine_run::Model>> {
        Ok(page_select(p).all(self.conn()).await?)
    }

    /// Delete run `run_id`'s record and its step runs, only while the run is finished (see
    /// [`FINISHED`]). One transaction: the run goes with a conditional `DELETE … WHERE id = ? AND
    /// status IN (finished)` (so an active run, e.g. one retried meanwhile, is never touched),
    /// then its step runs (the foreign key cascades too; deleting them explicitly does not
    /// depend on it). False, nothing written, when no finished run has that id.
    pub async fn delete_finished_run(&self, run_id: i64) -> StoreResult<bool> {
        let _w = self.write_turn().await;
        let txn = self.conn().begin().await?;
        let r = routine_run::Entity::delete_many()
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.is_in(FINISHED))
            .exec(&txn)
            .await?;
        if r.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        step_run::Entity::delete_many()
            .filter(step_run::Column::RunId.eq(run_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DbBackend, QueryTrait, Statement};

    use super::*;

    /// SQLite's plan for the page query: every filter combination is served by an index in id
    /// order (no full scan of the table, no sort of its rows), so a page costs the same at
    /// 100,000 runs as at 100.
    #[tokio::test]
    async fn every_page_query_walks_an_index_in_id_order() {
        let store = Store::memory().await.unwrap();
        for (routine_id, status, before, index) in [
            (None, None, None, "chat_id"),
            (None, None, Some(500), "chat_id"),
            (None, Some(RunStatus::Failed), None, "chat_status"),
            (None, Some(RunStatus::Failed), Some(500), "chat_status"),
            (Some(7), None, Some(500), "chat_routine"),
            (Some(7), Some(RunStatus::Completed), None, "chat_routine"),
        ] {
            let p = RunPage {
                chat_id: -1001,
                routine_id,
                status,
                before,
                limit: 51,
            };
            let st = page_select(&p).build(DbBackend::Sqlite);
            let explain = Statement {
                sql: format!("EXPLAIN QUERY PLAN {}", st.sql),
                ..st
            };
            let rows = store.conn().query_all_raw(explain).await.unwrap();
            let plan: Vec<String> = rows
                .iter()
                .map(|r| r.try_get::<String>("", "detail").unwrap())
                .collect();
            let plan = plan.join(" | ");
            let want = format!("SEARCH routine_runs USING INDEX ix_routine_runs_{index} ");
            assert!(plan.contains(&want), "{p:?}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{p:?}: {plan}");
        }
    }
}
