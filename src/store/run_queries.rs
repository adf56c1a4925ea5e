//! Run control and run listings (issue 9, items 8, 10–13): the conditional updates members'
//! commands and buttons make on runs (pause, resume, cancel, retry, the cost / interrupted
//! answers), the progress message id, the listings behind `/runs`, `/run_history`, `/run_show`
//! and `hearth runs`, condition-trigger crossings, and small key-value helpers for the durable
//! input questions of `/<name>`.
//!
//! Every control update is ONE conditional statement (`WHERE id = ? AND status = …`) so a
//! concurrent executor, a second process or a double tap changes a run at most once; a `false`
//! return means the run was not in the expected state (the caller re-reads it to say why).
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait},
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};

use super::{
    entity::{kv, routine, routine_run, routine_trigger, step_run},
    NewStepRun, RunSource, RunStatus, StepStatus, Store, StoreResult, TriggerKind,
};

/// The unfinished run statuses (pending, running, waiting, paused).
const ACTIVE: [RunStatus; 4] = [
    RunStatus::Pending,
    RunStatus::Running,
    RunStatus::Waiting,
    RunStatus::Paused,
];

/// Step run statuses that are not finished (cancel turns them `skipped`).
const UNFINISHED_STEPS: [StepStatus; 4] = [
    StepStatus::Pending,
    StepStatus::Running,
    StepStatus::Waiting,
    StepStatus::Interrupted,
];

/// A run row with its durable columns, for tests, benchmarks and tools that must create a run
/// in a given state without the executor (e.g. a `waiting` run on a gate, a `failed` run).
#[derive(Debug, Clone)]
pub struct SeedRun {
    pub routine_id: i64,
    pub chat_id: i64,
    pub started_by: i64,
    pub status: RunStatus,
    pub source: RunSource,
    /// JSON object of the initial inputs.
    pub input: Option<String>,
    /// JSON of the `routines::steps::Definition` the run executes.
    pub snapshot: Option<String>,
    /// 0-based.
    pub current_step: i32,
    pub waiting_for: Option<String>,
    pub wake_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A finished step run's figures, for tests and tools that write step results directly.
#[derive(Debug, Clone, Default)]
pub struct StepResult {
    pub status: Option<StepStatus>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub cost_usd: f64,
    pub duration_ms: i64,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Which runs a listing wants (`hearth runs list`).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub routine_id: Option<i64>,
    pub chat_id: Option<i64>,
    /// Unfinished runs only.
    pub active_only: bool,
    pub limit: u64,
}

impl Store {
    /// Insert a run in the state `s` describes; returns its id. See [`SeedRun`].
    pub async fn seed_run(&self, s: SeedRun) -> StoreResult<i64> {
        let x = routine_run::Entity::insert(routine_run::ActiveModel {
            routine_id: Set(s.routine_id),
            trigger_id: Set(None),
            source: Set(s.source),
            catch_up: Set(false),
            status: Set(s.status),
            reason: Set(s.reason),
            input: Set(s.input),
            scheduled_for: Set(None),
            started_at: Set(s.started_at),
            duration_ms: Set(0),
            prompt_tokens: Set(0),
            completion_tokens: Set(0),
            cost_usd: Set(0.0),
            output: Set(None),
            chat_id: Set(Some(s.chat_id)),
            started_by: Set(Some(s.started_by)),
            snapshot: Set(s.snapshot),
            current_step: Set(s.current_step),
            owner: Set(None),
            lease_until: Set(None),
            wake_at: Set(s.wake_at),
            waiting_for: Set(s.waiting_for),
            progress_message_id: Set(None),
            parent_run_id: Set(None),
            depth: Set(0),
            cost_warned: Set(false),
            loops: Set("{}".into()),
            finished_at: Set(s.finished_at),
            ..Default::default()
        })
        .exec(self.conn())
        .await?;
        Ok(x.last_insert_id)
    }

    /// Write a step run's result (tests and tools; the executor has its own leased commit).
    pub async fn set_step_result(&self, step_run_id: i64, r: StepResult) -> StoreResult<()> {
        let mut q = step_run::Entity::update_many()
            .col_expr(step_run::Column::Output, Expr::value(r.output))
            .col_expr(step_run::Column::Error, Expr::value(r.error))
            .col_expr(step_run::Column::PromptTokens, Expr::value(r.prompt_tokens))
            .col_expr(
                step_run::Column::CompletionTokens,
                Expr::value(r.completion_tokens),
            )
            .col_expr(step_run::Column::CostUsd, Expr::value(r.cost_usd))
            .col_expr(step_run::Column::DurationMs, Expr::value(r.duration_ms))
            .col_expr(step_run::Column::FinishedAt, Expr::value(r.finished_at));
        if let Some(st) = r.status {
            q = q.col_expr(step_run::Column::Status, Expr::value(st));
        }
        q.filter(step_run::Column::Id.eq(step_run_id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Write a run's status and totals directly (tests and tools).
    pub async fn set_run_totals(
        &self,
        run_id: i64,
        status: RunStatus,
        tokens: (i32, i32),
        cost_usd: f64,
        finished_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        routine_run::Entity::update_many()
            .col_expr(routine_run::Column::Status, Expr::value(status))
            .col_expr(routine_run::Column::PromptTokens, Expr::value(tokens.0))
            .col_expr(routine_run::Column::CompletionTokens, Expr::value(tokens.1))
            .col_expr(routine_run::Column::CostUsd, Expr::value(cost_usd))
            .col_expr(routine_run::Column::FinishedAt, Expr::value(finished_at))
            .filter(routine_run::Column::Id.eq(run_id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Set a routine's definition JSON (`None`: a single-prompt routine). Tests and tools; the
    /// importer validates before saving.
    pub async fn put_definition_json(
        &self,
        routine_id: i64,
        json: Option<&str>,
    ) -> StoreResult<()> {
        routine::Entity::update_many()
            .col_expr(
                routine::Column::Definition,
                Expr::value(json.map(str::to_string)),
            )
            .filter(routine::Column::Id.eq(routine_id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Set a routine's publication (tests and tools; the importer saves it with the document).
    pub async fn put_publication(&self, routine_id: i64, p: super::Publication) -> StoreResult<()> {
        routine::Entity::update_many()
            .col_expr(routine::Column::Publication, Expr::value(p))
            .filter(routine::Column::Id.eq(routine_id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Remember the run's progress message, only if it has none yet. True when stored.
    pub async fn set_progress_message(&self, run_id: i64, message_id: i64) -> StoreResult<bool> {
        let _w = self.write_turn().await;
        let r = routine_run::Entity::update_many()
            .col_expr(
                routine_run::Column::ProgressMessageId,
                Expr::value(Some(message_id)),
            )
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::ProgressMessageId.is_null())
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Pause: pending | waiting | running → `paused`, keeping `current_step`, `wake_at` and
    /// `waiting_for` (a running step's process sees its next commit touch 0 rows and stops).
    pub async fn pause_run(&self, run_id: i64) -> StoreResult<bool> {
        let r = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::Status, Expr::value(RunStatus::Paused))
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.is_in([
                RunStatus::Pending,
                RunStatus::Waiting,
                RunStatus::Running,
            ]))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Resume: paused → `waiting` when `waiting_for` is set (its `wake_at` kept, so a lapsed
    /// timer fires at the next sweep), else → `pending`. Returns the new status, `None` when the
    /// run was not paused.
    pub async fn resume_run(&self, run_id: i64) -> StoreResult<Option<RunStatus>> {
        let r = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::Status, Expr::value(RunStatus::Waiting))
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.eq(RunStatus::Paused))
            .filter(routine_run::Column::WaitingFor.is_not_null())
            .exec(self.conn())
            .await?;
        if r.rows_affected == 1 {
            return Ok(Some(RunStatus::Waiting));
        }
        let r = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::Status, Expr::value(RunStatus::Pending))
            .col_expr(
                routine_run::Column::Owner,
                Expr::value(Option::<String>::None),
            )
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.eq(RunStatus::Paused))
            .filter(routine_run::Column::WaitingFor.is_null())
            .exec(self.conn())
            .await?;
        Ok((r.rows_affected == 1).then_some(RunStatus::Pending))
    }

    /// Wake a waiting run now (`wake_at = at`), e.g. one resumed after its gate was decided
    /// while it was paused (the gate's own wake-up only touches waiting runs). True when woken.
    pub async fn wake_waiting_run(&self, run_id: i64, at: DateTime<Utc>) -> StoreResult<bool> {
        let r = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::WakeAt, Expr::value(Some(at)))
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.eq(RunStatus::Waiting))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Cancel: any active run → `cancelled` with `finished_at`; in the same transaction its
    /// unfinished step runs → `skipped` and `remaining` (skipped rows for the steps never
    /// reached) are inserted. False (nothing written) when the run was not active.
    pub async fn cancel_run(
        &self,
        run_id: i64,
        at: DateTime<Utc>,
        remaining: Vec<NewStepRun>,
    ) -> StoreResult<bool> {
        let txn = self.conn().begin().await?;
        let r = routine_run::Entity::update_many()
            .col_expr(
                routine_run::Column::Status,
                Expr::value(RunStatus::Cancelled),
            )
            .col_expr(routine_run::Column::FinishedAt, Expr::value(Some(at)))
            .col_expr(
                routine_run::Column::Reason,
                Expr::value(Some("cancelled".to_string())),
            )
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.is_in(ACTIVE))
            .exec(&txn)
            .await?;
        if r.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        step_run::Entity::update_many()
            .col_expr(step_run::Column::Status, Expr::value(StepStatus::Skipped))
            .col_expr(step_run::Column::FinishedAt, Expr::value(Some(at)))
            .filter(step_run::Column::RunId.eq(run_id))
            .filter(step_run::Column::Status.is_in(UNFINISHED_STEPS))
            .exec(&txn)
            .await?;
        for s in remaining {
            let skipped = step_run::ActiveModel {
                finished_at: Set(Some(at)),
                ..super::runs::new_step_model(NewStepRun {
                    status: StepStatus::Skipped,
                    input: None,
                    started_at: None,
                    ..s
                })
            };
            step_run::Entity::insert(skipped).exec(&txn).await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Retry: failed → `pending` at step `position` (0-based), reason, finish and wait cleared.
    /// The executor makes a new step run there with attempt + 1.
    pub async fn retry_run(&self, run_id: i64, position: i32) -> StoreResult<bool> {
        let r = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::Status, Expr::value(RunStatus::Pending))
            .col_expr(routine_run::Column::CurrentStep, Expr::value(position))
            .col_expr(
                routine_run::Column::Reason,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                routine_run::Column::FinishedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                routine_run::Column::WaitingFor,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                routine_run::Column::WakeAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                routine_run::Column::Owner,
                Expr::value(Option::<String>::None),
            )
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.eq(RunStatus::Failed))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// The cost question answered Continue: waiting on `cost` → pending, `cost_warned`.
    pub async fn run_cost_continue(&self, run_id: i64) -> StoreResult<bool> {
        self.end_wait(run_id, "cost", true).await
    }

    /// A run waiting on `waiting_for` → pending (the executor continues at `current_step`);
    /// `cost_warned` also marks the cost question answered. False when it was not waiting so.
    async fn end_wait(
        &self,
        run_id: i64,
        waiting_for: &str,
        cost_warned: bool,
    ) -> StoreResult<bool> {
        let mut u = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::Status, Expr::value(RunStatus::Pending))
            .col_expr(
                routine_run::Column::WaitingFor,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                routine_run::Column::WakeAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            );
        if cost_warned {
            u = u.col_expr(routine_run::Column::CostWarned, Expr::value(true));
        }
        let r = u
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.eq(RunStatus::Waiting))
            .filter(routine_run::Column::WaitingFor.eq(waiting_for))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// The cost question answered Stop: waiting on `cost` → failed, "stopped at the cost
    /// question".
    pub async fn run_cost_stop(&self, run_id: i64, at: DateTime<Utc>) -> StoreResult<bool> {
        let txn = self.conn().begin().await?;
        let r = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::Status, Expr::value(RunStatus::Failed))
            .col_expr(
                routine_run::Column::Reason,
                Expr::value(Some("stopped at the cost question".to_string())),
            )
            .col_expr(routine_run::Column::FinishedAt, Expr::value(Some(at)))
            .col_expr(
                routine_run::Column::WaitingFor,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                routine_run::Column::WakeAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.eq(RunStatus::Waiting))
            .filter(routine_run::Column::WaitingFor.eq("cost"))
            .exec(&txn)
            .await?;
        if r.rows_affected == 1 {
            step_run::Entity::update_many()
                .col_expr(step_run::Column::Status, Expr::value(StepStatus::Skipped))
                .col_expr(step_run::Column::FinishedAt, Expr::value(Some(at)))
                .filter(step_run::Column::RunId.eq(run_id))
                .filter(step_run::Column::Status.is_in(UNFINISHED_STEPS))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(r.rows_affected == 1)
    }

    /// Interrupted step, Retry: waiting on `interrupted` → pending (the executor re-runs
    /// `current_step` as a new attempt).
    pub async fn run_interrupted_retry(&self, run_id: i64) -> StoreResult<bool> {
        self.end_wait(run_id, "interrupted", false).await
    }

    /// Interrupted step, Skip: the interrupted step run → `skipped`, the run moves to the next
    /// step (`pending`), or → `completed` when `past_end` (the step was the last). One
    /// transaction; false when the run was not waiting on `interrupted`.
    pub async fn run_interrupted_skip(
        &self,
        run_id: i64,
        past_end: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let txn = self.conn().begin().await?;
        let mut q = routine_run::Entity::update_many()
            .col_expr(
                routine_run::Column::CurrentStep,
                Expr::col(routine_run::Column::CurrentStep).add(1),
            )
            .col_expr(
                routine_run::Column::WaitingFor,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                routine_run::Column::WakeAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            );
        q = if past_end {
            q.col_expr(
                routine_run::Column::Status,
                Expr::value(RunStatus::Completed),
            )
            .col_expr(routine_run::Column::FinishedAt, Expr::value(Some(at)))
        } else {
            q.col_expr(routine_run::Column::Status, Expr::value(RunStatus::Pending))
        };
        let r = q
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.eq(RunStatus::Waiting))
            .filter(routine_run::Column::WaitingFor.eq("interrupted"))
            .exec(&txn)
            .await?;
        if r.rows_affected == 1 {
            step_run::Entity::update_many()
                .col_expr(step_run::Column::Status, Expr::value(StepStatus::Skipped))
                .col_expr(step_run::Column::FinishedAt, Expr::value(Some(at)))
                .filter(step_run::Column::RunId.eq(run_id))
                .filter(step_run::Column::Status.eq(StepStatus::Interrupted))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(r.rows_affected == 1)
    }

    /// Runs matching `f`, newest first.
    pub async fn runs_where(&self, f: &RunFilter) -> StoreResult<Vec<routine_run::Model>> {
        let mut q = routine_run::Entity::find();
        if let Some(r) = f.routine_id {
            q = q.filter(routine_run::Column::RoutineId.eq(r));
        }
        if let Some(c) = f.chat_id {
            // runs carry their chat; a row written without it belongs to its routine's chat
            let of_chat = sea_orm::sea_query::Query::select()
                .column(routine::Column::Id)
                .from(routine::Entity)
                .and_where(routine::Column::ChatId.eq(c))
                .to_owned();
            q = q.filter(
                sea_orm::Condition::any()
                    .add(routine_run::Column::ChatId.eq(c))
                    .add(
                        sea_orm::Condition::all()
                            .add(routine_run::Column::ChatId.is_null())
                            .add(routine_run::Column::RoutineId.in_subquery(of_chat)),
                    ),
            );
        }
        if f.active_only {
            q = q.filter(routine_run::Column::Status.is_in(ACTIVE));
        }
        Ok(q.order_by_desc(routine_run::Column::Id)
            .limit(std::cmp::max(f.limit, 1))
            .all(self.conn())
            .await?)
    }

    /// Step runs of several runs, in id order (analytics).
    pub async fn step_runs_of_runs(&self, run_ids: &[i64]) -> StoreResult<Vec<step_run::Model>> {
        if run_ids.is_empty() {
            return Ok(vec![]);
        }
        Ok(step_run::Entity::find()
            .filter(step_run::Column::RunId.is_in(run_ids.iter().copied()))
            .order_by_asc(step_run::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Condition triggers with their routines (not ended), in trigger id order.
    pub async fn condition_triggers(
        &self,
    ) -> StoreResult<Vec<(routine_trigger::Model, routine::Model)>> {
        let triggers = routine_trigger::Entity::find()
            .filter(routine_trigger::Column::Kind.eq(TriggerKind::Condition))
            .order_by_asc(routine_trigger::Column::Id)
            .all(self.conn())
            .await?;
        if triggers.is_empty() {
            return Ok(vec![]);
        }
        let routines = routine::Entity::find()
            .filter(routine::Column::Id.is_in(triggers.iter().map(|t| t.routine_id)))
            .filter(routine::Column::Status.eq(super::RoutineStatus::Active))
            .all(self.conn())
            .await?;
        Ok(triggers
            .into_iter()
            .filter_map(|t| {
                let r = routines.iter().find(|r| r.id == t.routine_id)?.clone();
                Some((t, r))
            })
            .collect())
    }

    /// Move a condition trigger's `condition_met` from `from` to `to` (one conditional update:
    /// two processes see the crossing once). True when this caller made the change; with
    /// `to = true` it also stamps `last_fire_at`.
    pub async fn cross_condition(
        &self,
        trigger_id: i64,
        from: bool,
        to: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut q = routine_trigger::Entity::update_many()
            .col_expr(routine_trigger::Column::ConditionMet, Expr::value(to));
        if to {
            q = q.col_expr(routine_trigger::Column::LastFireAt, Expr::value(Some(at)));
        }
        let r = q
            .filter(routine_trigger::Column::Id.eq(trigger_id))
            .filter(routine_trigger::Column::ConditionMet.eq(from))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Routines called `name` in any chat (the CLI looks a name up without a chat).
    pub async fn routines_named(&self, name: &str) -> StoreResult<Vec<routine::Model>> {
        Ok(routine::Entity::find()
            .filter(routine::Column::Name.eq(name))
            .order_by_asc(routine::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Delete `key` only while it still holds `value` (a compare-and-delete). True when deleted.
    pub async fn kv_take(&self, key: &str, value: &str) -> StoreResult<bool> {
        let r = kv::Entity::delete_many()
            .filter(kv::Column::Key.eq(key))
            .filter(kv::Column::Value.eq(value))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Replace `key`'s value `old` by `new` (a compare-and-swap). True when swapped.
    pub async fn kv_swap(&self, key: &str, old: &str, new: &str) -> StoreResult<bool> {
        let r = kv::Entity::update_many()
            .col_expr(kv::Column::Value, Expr::value(new))
            .filter(kv::Column::Key.eq(key))
            .filter(kv::Column::Value.eq(old))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Delete `key` (nothing when absent).
    pub async fn kv_delete(&self, key: &str) -> StoreResult<()> {
        kv::Entity::delete_many()
            .filter(kv::Column::Key.eq(key))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
