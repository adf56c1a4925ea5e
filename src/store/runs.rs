//! Step runs and the durable side of runs: the rows a run's steps leave, and the gate outcome an
//! approval writes in its transition's transaction.
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Condition, Expr, ExprTrait},
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, Set, Statement,
    TransactionTrait,
};

use super::{
    entity::{routine, routine_run, step_run, workflow},
    turns::TurnRecord,
    RunStatus, StepStatus, StepType, Store, StoreResult, WorkflowKind, WorkflowStatus,
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

/// How the executor moves a run it holds, written with the step's result in one transaction
/// ([`Store::advance_run`]). Token and cost fields are ADDED to the run's totals.
#[derive(Debug, Clone)]
pub struct RunChange {
    /// Running (go on), Waiting, Completed, Failed or Silent.
    pub status: RunStatus,
    /// 0-based index of the step to run next (or the waiting step).
    pub current_step: i32,
    pub waiting_for: Option<String>,
    /// UTC; when a sweep looks at a waiting run again (`None`: only when woken).
    pub wake_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// `Some`: replaces the run's output snippet.
    pub output: Option<String>,
    pub add_prompt_tokens: i32,
    pub add_completion_tokens: i32,
    pub add_cost_usd: f64,
    /// `Some`: the run's duration, set when it ends.
    pub duration_ms: Option<i64>,
    /// `Some`: the loop counters JSON.
    pub loops: Option<String>,
    /// UTC; set when the run ends.
    pub finished_at: Option<DateTime<Utc>>,
    /// UTC; the holder's new lease while it keeps the run (`Running`).
    pub lease_until: Option<DateTime<Utc>>,
}

impl RunChange {
    /// Keep running at step `current_step` (nothing else changes).
    pub fn running(current_step: i32, lease_until: DateTime<Utc>) -> Self {
        Self {
            status: RunStatus::Running,
            current_step,
            waiting_for: None,
            wake_at: None,
            reason: None,
            output: None,
            add_prompt_tokens: 0,
            add_completion_tokens: 0,
            add_cost_usd: 0.0,
            duration_ms: None,
            loops: None,
            finished_at: None,
            lease_until: Some(lease_until),
        }
    }
}

/// A step run's result, written with the run's [`RunChange`].
#[derive(Debug, Clone)]
pub struct StepChange {
    pub id: i64,
    pub status: StepStatus,
    pub output: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub cost_usd: f64,
    pub duration_ms: i64,
    pub workflow_id: Option<i64>,
    /// UTC; `None` while the step waits.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its tokens and cost are already in the run's totals (a step finishing after a wait).
    pub counted: bool,
}

/// The claimable condition of the run state machine (issue 9 contract): pending; waiting and
/// due; running with a lapsed lease.
fn claimable(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(routine_run::Column::Status.eq(RunStatus::Pending))
        .add(
            Condition::all()
                .add(routine_run::Column::Status.eq(RunStatus::Waiting))
                .add(routine_run::Column::WakeAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(routine_run::Column::Status.eq(RunStatus::Running))
                .add(routine_run::Column::LeaseUntil.lt(now)),
        )
}

/// The row of a new step run: `s` with nothing produced yet (no output, tokens, cost or end).
pub(super) fn new_step_model(s: NewStepRun) -> step_run::ActiveModel {
    step_run::ActiveModel {
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
}

/// Rows written with a run's move in the same commit ([`Store::advance_run_with`]).
#[derive(Debug, Default)]
pub struct AdvanceExtras {
    /// The turn of the step that ends with this move (a prompt step's agent turn), recorded in
    /// the commit instead of in a statement of its own. A turn with tool calls is recorded
    /// first, on its own (its calls need its id). Recorded whatever the move comes to.
    pub turn: Option<TurnRecord>,
    /// The step run of the step the run goes on to, inserted in the commit (`running`) when the
    /// run goes on in the holder's hands; the executor then uses it instead of inserting one.
    pub next_step: Option<NewStepRun>,
}

/// What [`Store::advance_run_with`] wrote while the run stays held or ends in the holder's
/// hands.
#[derive(Debug, Clone)]
pub struct Advanced {
    /// The run row as written.
    pub run: routine_run::Model,
    /// The routine's new `tick_count` when the end was counted (`None`: not counted, or the
    /// routine is gone).
    pub tick: Option<i32>,
    /// The row of [`AdvanceExtras::next_step`], as inserted.
    pub next_step: Option<step_run::Model>,
}

/// The run's move for [`Store::advance_run_counted`] (without its status and the held
/// condition, which the callers add).
fn run_move(run_id: i64, owner: &str, c: &RunChange) -> sea_orm::UpdateMany<routine_run::Entity> {
    let holds = c.status == RunStatus::Running;
    let mut u = routine_run::Entity::update_many()
        .col_expr(
            routine_run::Column::CurrentStep,
            Expr::value(c.current_step),
        )
        .col_expr(
            routine_run::Column::WaitingFor,
            Expr::value(c.waiting_for.clone()),
        )
        .col_expr(routine_run::Column::WakeAt, Expr::value(c.wake_at))
        .col_expr(routine_run::Column::Reason, Expr::value(c.reason.clone()))
        .col_expr(
            routine_run::Column::PromptTokens,
            Expr::col(routine_run::Column::PromptTokens).add(c.add_prompt_tokens),
        )
        .col_expr(
            routine_run::Column::CompletionTokens,
            Expr::col(routine_run::Column::CompletionTokens).add(c.add_completion_tokens),
        )
        .col_expr(
            routine_run::Column::CostUsd,
            Expr::col(routine_run::Column::CostUsd).add(c.add_cost_usd),
        )
        .col_expr(
            routine_run::Column::Owner,
            Expr::value(holds.then(|| owner.to_string())),
        )
        .col_expr(
            routine_run::Column::LeaseUntil,
            Expr::value(if holds { c.lease_until } else { None }),
        );
    if let Some(o) = &c.output {
        u = u.col_expr(routine_run::Column::Output, Expr::value(o.clone()));
    }
    if let Some(d) = c.duration_ms {
        u = u.col_expr(routine_run::Column::DurationMs, Expr::value(d));
    }
    if let Some(l) = &c.loops {
        u = u.col_expr(routine_run::Column::Loops, Expr::value(l.clone()));
    }
    if let Some(f) = c.finished_at {
        u = u.col_expr(routine_run::Column::FinishedAt, Expr::value(Some(f)));
    }
    u.filter(routine_run::Column::Id.eq(run_id))
        .filter(routine_run::Column::Owner.eq(owner))
}

/// A step run's result ([`StepChange`]) as an update.
fn step_update(s: &StepChange) -> sea_orm::UpdateMany<step_run::Entity> {
    step_run::Entity::update_many()
        .col_expr(step_run::Column::Status, Expr::value(s.status))
        .col_expr(step_run::Column::Output, Expr::value(s.output.clone()))
        .col_expr(step_run::Column::Reason, Expr::value(s.reason.clone()))
        .col_expr(step_run::Column::Error, Expr::value(s.error.clone()))
        .col_expr(step_run::Column::PromptTokens, Expr::value(s.prompt_tokens))
        .col_expr(
            step_run::Column::CompletionTokens,
            Expr::value(s.completion_tokens),
        )
        .col_expr(step_run::Column::CostUsd, Expr::value(s.cost_usd))
        .col_expr(step_run::Column::DurationMs, Expr::value(s.duration_ms))
        .col_expr(step_run::Column::WorkflowId, Expr::value(s.workflow_id))
        .col_expr(step_run::Column::FinishedAt, Expr::value(s.finished_at))
        .filter(step_run::Column::Id.eq(s.id))
}

/// Run `stmts` in the transaction `txn`, in order, and return every row they return, in
/// order. On SQLite they go to the connection as ONE query: sqlx-sqlite prepares and steps the
/// statements of a string one after the other and binds the `?` parameters in order across them,
/// so a commit of four statements costs one round trip to the connection's worker thread instead
/// of four (benches/runs.rs). On Postgres (one statement per extended-protocol message) one after
/// the other. Every statement is built by sea-query.
async fn run_batch(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    stmts: Vec<Statement>,
) -> StoreResult<Vec<QueryResult>> {
    if backend == DbBackend::Sqlite && stmts.len() > 1 {
        let mut sql = String::new();
        let mut values = Vec::new();
        for s in stmts {
            if !sql.is_empty() {
                sql.push_str(";\n");
            }
            sql.push_str(&s.sql);
            if let Some(v) = s.values {
                values.extend(v.0);
            }
        }
        return Ok(txn
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?);
    }
    let mut rows = Vec::new();
    for s in stmts {
        rows.extend(txn.query_all_raw(s).await?);
    }
    Ok(rows)
}

impl Store {
    /// Claimable runs (see the run state machine), oldest first, at most `limit`.
    pub async fn claimable_runs(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<routine_run::Model>> {
        Ok(routine_run::Entity::find()
            .filter(claimable(now))
            .order_by_asc(routine_run::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?)
    }

    /// Claim a run seen as `seen` (ONE conditional update: still claimable, and still in the
    /// status it was seen in): `running`, `owner`, `lease_until`. True when this caller holds it.
    pub async fn claim_run(
        &self,
        seen: &routine_run::Model,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let r = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::Status, Expr::value(RunStatus::Running))
            .col_expr(routine_run::Column::Owner, Expr::value(owner))
            .col_expr(routine_run::Column::LeaseUntil, Expr::value(lease_until))
            .filter(routine_run::Column::Id.eq(seen.id))
            .filter(routine_run::Column::Status.eq(seen.status))
            .filter(claimable(now))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Claim the runs `ids`, all seen in status `seen`, in ONE conditional update (still
    /// claimable at `now` and still in status `seen`): `running`, `owner`, `lease_until`.
    /// Returns the rows this caller now holds, as updated (`UPDATE … RETURNING`, SQLite ≥ 3.35
    /// and Postgres): a row another process claimed first is not among them, so each run is
    /// claimed by exactly one caller.
    pub async fn claim_runs(
        &self,
        ids: &[i64],
        seen: RunStatus,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<routine_run::Model>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let _w = self.write_turn().await;
        let mut rows = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::Status, Expr::value(RunStatus::Running))
            .col_expr(routine_run::Column::Owner, Expr::value(owner))
            .col_expr(routine_run::Column::LeaseUntil, Expr::value(lease_until))
            .filter(routine_run::Column::Id.is_in(ids.iter().copied()))
            .filter(routine_run::Column::Status.eq(seen))
            .filter(claimable(now))
            .exec_with_returning(self.conn())
            .await?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    /// Finish the lapsed timer waits of runs `owner` holds (`running`, `waiting_for` `timer` or
    /// `until`, just claimed), all in one transaction: each run's waiting step run at its
    /// `current_step` → `completed` with output "done" and its duration (ms, from its start to
    /// `now`), and the run → `current_step + 1`, output "done", `waiting_for`/`wake_at` NULL,
    /// `lease_until`; for each run moved on, `next(run as moved)` may give the step run of the
    /// step it goes on to, inserted `running` in the same commit (its `attempt` is set here: one
    /// more than the rows at its position), so the executor does not insert it. `runs`: the
    /// claimed rows. Returns the runs moved on, as updated, each with all its step runs in id
    /// order as they are after the commit (others are left as they were for the executor to
    /// resume one by one). Round trips: one read, BEGIN, the runs' update, one batch for the step
    /// runs ([`run_batch`]), COMMIT.
    pub async fn finish_timer_waits(
        &self,
        runs: &[routine_run::Model],
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        next: impl Fn(&routine_run::Model) -> Option<NewStepRun>,
    ) -> StoreResult<Vec<(routine_run::Model, Vec<step_run::Model>)>> {
        use sea_orm::sea_query::CaseStatement;
        use std::collections::HashMap;
        let timers: Vec<&routine_run::Model> = runs
            .iter()
            .filter(|r| matches!(r.waiting_for.as_deref(), Some("timer" | "until")))
            .collect();
        if timers.is_empty() {
            return Ok(vec![]);
        }
        // read before the transaction: a write transaction that begins with a read cannot
        // wait for the write lock on SQLite (it fails "database is locked"); the updates below
        // are conditional, so a run cancelled meanwhile is left alone
        let all = step_run::Entity::find()
            .filter(step_run::Column::RunId.is_in(timers.iter().map(|r| r.id)))
            .order_by_asc(step_run::Column::Id)
            .all(self.conn())
            .await?;
        let mut steps: HashMap<i64, Vec<step_run::Model>> = HashMap::new();
        for s in all {
            steps.entry(s.run_id).or_default().push(s);
        }
        // the run's one waiting step run, at its current step
        let mut step_of = HashMap::new();
        for r in &timers {
            let mut at = steps
                .get(&r.id)
                .into_iter()
                .flatten()
                .filter(|s| s.status == StepStatus::Waiting && s.position == r.current_step);
            if let (Some(s), None) = (at.next(), at.next()) {
                step_of.insert(r.id, s.id);
            }
        }
        if step_of.is_empty() {
            return Ok(vec![]);
        }
        let backend = self.backend();
        let _w = self.write_turn().await;
        let txn = self.conn().begin().await?;
        let mut moved = routine_run::Entity::update_many()
            .col_expr(
                routine_run::Column::CurrentStep,
                Expr::col(routine_run::Column::CurrentStep).add(1),
            )
            .col_expr(routine_run::Column::Output, Expr::value("done"))
            .col_expr(
                routine_run::Column::WaitingFor,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                routine_run::Column::WakeAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(routine_run::Column::LeaseUntil, Expr::value(lease_until))
            .filter(routine_run::Column::Id.is_in(step_of.keys().copied()))
            .filter(routine_run::Column::Owner.eq(owner))
            .filter(routine_run::Column::Status.eq(RunStatus::Running))
            .filter(routine_run::Column::WaitingFor.is_in(["timer", "until"]))
            .exec_with_returning(&txn)
            .await?;
        moved.sort_by_key(|r| r.id);
        let mut out = Vec::with_capacity(moved.len());
        if !moved.is_empty() {
            let mut duration = CaseStatement::new();
            let mut durations = HashMap::new();
            for r in &moved {
                let s = steps[&r.id].iter().find(|s| s.id == step_of[&r.id]);
                let ms = s
                    .and_then(|s| s.started_at)
                    .map(|t| (now - t).num_milliseconds())
                    .map(|ms| std::cmp::max(ms, 0))
                    .unwrap_or(0);
                durations.insert(step_of[&r.id], ms);
                duration = duration.case(step_run::Column::Id.eq(step_of[&r.id]), Expr::value(ms));
            }
            let mut stmts = vec![step_run::Entity::update_many()
                .col_expr(step_run::Column::Status, Expr::value(StepStatus::Completed))
                .col_expr(step_run::Column::Output, Expr::value("done"))
                .col_expr(step_run::Column::FinishedAt, Expr::value(Some(now)))
                .col_expr(
                    step_run::Column::DurationMs,
                    duration
                        .finally(Expr::col(step_run::Column::DurationMs))
                        .into(),
                )
                .filter(step_run::Column::Id.is_in(moved.iter().map(|r| step_of[&r.id])))
                .filter(step_run::Column::Status.eq(StepStatus::Waiting))
                .build(backend)];
            let inserts: Vec<step_run::ActiveModel> = moved
                .iter()
                .filter_map(|r| {
                    let mut n = next(r)?;
                    n.attempt = steps[&r.id]
                        .iter()
                        .filter(|s| s.position == n.position)
                        .count() as i32
                        + 1;
                    Some(new_step_model(n))
                })
                .collect();
            if !inserts.is_empty() {
                let mut q = step_run::Entity::insert_many(inserts).into_query();
                stmts.push(backend.build(q.returning_all()));
            }
            let mut inserted: HashMap<i64, Vec<step_run::Model>> = HashMap::new();
            for row in run_batch(&txn, backend, stmts).await? {
                let s = step_run::Model::from_query_result(&row, "")?;
                inserted.entry(s.run_id).or_default().push(s);
            }
            txn.commit().await?;
            for r in moved {
                let mut rows = steps.remove(&r.id).unwrap_or_default();
                for s in rows.iter_mut().filter(|s| s.id == step_of[&r.id]) {
                    s.status = StepStatus::Completed;
                    s.output = Some("done".into());
                    s.finished_at = Some(now);
                    s.duration_ms = durations[&s.id];
                }
                rows.extend(inserted.remove(&r.id).unwrap_or_default());
                out.push((r, rows));
            }
        } else {
            txn.commit().await?;
        }
        Ok(out)
    }

    /// The earliest `wake_at` of a waiting run in (`after`, `until`] (UTC), if any: when the
    /// next wait ends before the next sweep.
    pub async fn next_wake(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let w: Option<Option<DateTime<Utc>>> = routine_run::Entity::find()
            .select_only()
            .column(routine_run::Column::WakeAt)
            .filter(routine_run::Column::Status.eq(RunStatus::Waiting))
            .filter(routine_run::Column::WakeAt.gt(after))
            .filter(routine_run::Column::WakeAt.lte(until))
            .order_by_asc(routine_run::Column::WakeAt)
            .limit(1)
            .into_tuple()
            .one(self.conn())
            .await?;
        Ok(w.flatten())
    }

    /// Renew the lease of every run `owner` holds (`running`), in one statement (the heartbeat).
    pub async fn renew_run_leases(
        &self,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let _w = self.write_turn().await;
        let r = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::LeaseUntil, Expr::value(lease_until))
            .filter(routine_run::Column::Owner.eq(owner))
            .filter(routine_run::Column::Status.eq(RunStatus::Running))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected)
    }

    /// Write a step's result and move the run, in one transaction, only while `owner` holds the
    /// run (`status = running`). False when the run is no longer running: the executor must stop.
    ///
    /// A run paused by a member while `owner` was executing its step (owner kept, `paused`)
    /// still records that step's result, tokens and next position (and ends if the step was its
    /// last), staying `paused`: a resume continues after the step instead of running it again (it
    /// may have called a destructive tool). A cancelled or taken-over run gets nothing written.
    pub async fn advance_run(
        &self,
        run_id: i64,
        owner: &str,
        c: &RunChange,
        step: Option<&StepChange>,
    ) -> StoreResult<bool> {
        Ok(self
            .advance_run_row(run_id, owner, c, step)
            .await?
            .is_some())
    }

    /// [`Store::advance_run`], returning the run row as written (`UPDATE … RETURNING`), so the
    /// executor goes on without reading it again. `None`: the executor stops (not held any more:
    /// nothing written; or paused meanwhile: the step recorded).
    pub async fn advance_run_row(
        &self,
        run_id: i64,
        owner: &str,
        c: &RunChange,
        step: Option<&StepChange>,
    ) -> StoreResult<Option<routine_run::Model>> {
        Ok(self
            .advance_run_counted(run_id, owner, c, step, None)
            .await?
            .map(|(row, _)| row))
    }

    /// [`Store::advance_run_row`] for a change that ends the run, counting the end in the same
    /// commit when `count` is `Some((routine id, the routine's local day YYYY-MM-DD))` and the
    /// run was held ([`Store::count_run_end`]). Returns the row as written and the routine's new
    /// `tick_count` (`None`: the routine is gone, or nothing counted); `None`: the executor stops.
    pub async fn advance_run_counted(
        &self,
        run_id: i64,
        owner: &str,
        c: &RunChange,
        step: Option<&StepChange>,
        count: Option<(i64, &str)>,
    ) -> StoreResult<Option<(routine_run::Model, Option<i32>)>> {
        let _w = self.write_turn().await;
        let txn = self.conn().begin().await?;
        let ends = !c.status.is_active();
        let mine = run_move(run_id, owner, c);
        let row = mine
            .clone()
            .col_expr(routine_run::Column::Status, Expr::value(c.status))
            .filter(routine_run::Column::Status.eq(RunStatus::Running))
            .exec_with_returning(&txn)
            .await?
            .pop();
        if row.is_none() {
            // paused meanwhile: record the step, keep the pause (unless the run just ended)
            let paused = if ends {
                mine.col_expr(routine_run::Column::Status, Expr::value(c.status))
            } else {
                mine
            }
            .filter(routine_run::Column::Status.eq(RunStatus::Paused))
            .exec(&txn)
            .await?;
            if paused.rows_affected == 0 {
                txn.rollback().await?;
                return Ok(None);
            }
        }
        if let Some(s) = step {
            step_update(s).exec(&txn).await?;
        }
        let tick = match (&row, count) {
            (Some(_), Some((routine_id, day))) => {
                super::routines::count_run_end_in(&txn, routine_id, day).await?
            }
            _ => None,
        };
        txn.commit().await?;
        Ok(row.map(|r| (r, tick)))
    }

    /// [`Store::advance_run_counted`] with [`AdvanceExtras`] (the step's turn, the next step's
    /// step run) in the same commit, and in one round trip on SQLite: BEGIN, the batch (the
    /// run's move `WHERE owner = me AND status = running … RETURNING`, the step's result, the
    /// end's count, the turn, the next step run), COMMIT. When the run is no longer running in
    /// `owner`'s hands the batch is rolled back and [`Store::advance_run_counted`] writes what a
    /// paused run keeps (the turn is recorded on its own): `None`, the executor stops.
    pub async fn advance_run_with(
        &self,
        run_id: i64,
        owner: &str,
        c: &RunChange,
        step: Option<&StepChange>,
        count: Option<(i64, &str)>,
        extras: AdvanceExtras,
    ) -> StoreResult<Option<Advanced>> {
        let AdvanceExtras {
            mut turn,
            next_step,
        } = extras;
        if turn.as_ref().is_some_and(|t| !t.calls.is_empty()) {
            if let Some(t) = turn.take() {
                self.record_turn(t.as_new()).await?;
            }
        }
        let backend = self.backend();
        let mut stmts = Vec::with_capacity(5);
        let mut mv = run_move(run_id, owner, c)
            .col_expr(routine_run::Column::Status, Expr::value(c.status))
            .filter(routine_run::Column::Status.eq(RunStatus::Running))
            .into_query();
        stmts.push(backend.build(mv.returning_all()));
        if let Some(s) = step {
            stmts.push(step_update(s).build(backend));
        }
        if let Some((routine_id, day)) = count {
            let mut q = super::routines::count_run_end_update(routine_id, day).into_query();
            stmts.push(backend.build(q.returning_all()));
        }
        if let Some(t) = &turn {
            stmts.push(
                super::entity::turn::Entity::insert(super::turns::turn_model(&t.as_new()))
                    .build(backend),
            );
        }
        let go_on = c.status == RunStatus::Running;
        if let Some(n) = next_step.clone().filter(|_| go_on) {
            let mut q = step_run::Entity::insert(new_step_model(n)).into_query();
            stmts.push(backend.build(q.returning_all()));
        }
        let written = {
            let _w = self.write_turn().await;
            let txn = self.conn().begin().await?;
            let rows = run_batch(&txn, backend, stmts).await?;
            let mut run = None;
            let mut tick = None;
            let mut next = None;
            for row in rows {
                if row.try_get::<i32>("", "attempt").is_ok() {
                    next = Some(step_run::Model::from_query_result(&row, "")?);
                } else if let Ok(t) = row.try_get::<i32>("", "tick_count") {
                    tick = Some(t);
                } else {
                    run = Some(routine_run::Model::from_query_result(&row, "")?);
                }
            }
            match run {
                Some(run) => {
                    txn.commit().await?;
                    Some(Advanced {
                        run,
                        tick,
                        next_step: next,
                    })
                }
                None => {
                    txn.rollback().await?;
                    None
                }
            }
        };
        if written.is_some() {
            return Ok(written);
        }
        // not running in our hands: a paused run keeps the step (the turn in any case)
        if let Some(t) = turn {
            self.record_turn(t.as_new()).await?;
        }
        Ok(self
            .advance_run_counted(run_id, owner, c, step, count)
            .await?
            .map(|(run, tick)| Advanced {
                run,
                tick,
                next_step: None,
            }))
    }

    /// Wake a waiting run now (`wake_at = at`) when it still waits for `waiting_for` (any wait
    /// when `None`). True when it was waiting.
    pub async fn wake_run(
        &self,
        run_id: i64,
        waiting_for: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut q = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::WakeAt, Expr::value(Some(at)))
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.eq(RunStatus::Waiting));
        if let Some(w) = waiting_for {
            q = q.filter(routine_run::Column::WaitingFor.eq(w));
        }
        let _w = self.write_turn().await;
        Ok(q.exec(self.conn()).await?.rows_affected == 1)
    }

    /// Waiting runs of a chat whose `waiting_for` starts with `prefix` ("event:chore_overdue",
    /// "confirm:").
    pub async fn runs_waiting_for(
        &self,
        chat_id: i64,
        prefix: &str,
    ) -> StoreResult<Vec<routine_run::Model>> {
        Ok(routine_run::Entity::find()
            .filter(routine_run::Column::ChatId.eq(chat_id))
            .filter(routine_run::Column::Status.eq(RunStatus::Waiting))
            .filter(routine_run::Column::WaitingFor.starts_with(prefix))
            .order_by_asc(routine_run::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Complete a waiting step run with `output` (an event arrived) and wake its run, in one
    /// transaction. True when the step run was still waiting (exactly one resolver wins).
    pub async fn complete_waiting_step(
        &self,
        step_run_id: i64,
        run_id: i64,
        output: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let txn = self.conn().begin().await?;
        let r = step_run::Entity::update_many()
            .col_expr(step_run::Column::Status, Expr::value(StepStatus::Completed))
            .col_expr(step_run::Column::Output, Expr::value(output))
            .col_expr(step_run::Column::FinishedAt, Expr::value(Some(at)))
            .filter(step_run::Column::Id.eq(step_run_id))
            .filter(step_run::Column::Status.eq(StepStatus::Waiting))
            .exec(&txn)
            .await?;
        if r.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        routine_run::Entity::update_many()
            .col_expr(routine_run::Column::WakeAt, Expr::value(Some(at)))
            .filter(routine_run::Column::Id.eq(run_id))
            .filter(routine_run::Column::Status.eq(RunStatus::Waiting))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Unfinished runs (pending, running, waiting, paused) of a routine in a chat.
    pub async fn active_runs_of(
        &self,
        routine_id: i64,
        chat_id: i64,
    ) -> StoreResult<Vec<routine_run::Model>> {
        Ok(routine_run::Entity::find()
            .filter(routine_run::Column::RoutineId.eq(routine_id))
            .filter(routine_run::Column::ChatId.eq(chat_id))
            .filter(routine_run::Column::Status.is_in([
                RunStatus::Pending,
                RunStatus::Running,
                RunStatus::Waiting,
                RunStatus::Paused,
            ]))
            .all(self.conn())
            .await?)
    }

    /// Ids of the pending confirmations `requester_id` got in `chat_id` since `since` (a prompt
    /// step's destructive calls).
    pub async fn confirmations_since(
        &self,
        chat_id: i64,
        requester_id: i64,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<i64>> {
        Ok(workflow::Entity::find()
            .select_only()
            .column(workflow::Column::Id)
            .filter(workflow::Column::ChatId.eq(chat_id))
            .filter(workflow::Column::RequesterId.eq(requester_id))
            .filter(workflow::Column::Kind.eq(WorkflowKind::Confirmation))
            .filter(workflow::Column::Status.eq(WorkflowStatus::Pending))
            .filter(workflow::Column::CreatedAt.gte(since))
            .order_by_asc(workflow::Column::Id)
            .into_tuple()
            .all(self.conn())
            .await?)
    }

    /// How many of the workflows `ids` are still pending.
    pub async fn count_pending_workflows(&self, ids: &[i64]) -> StoreResult<u64> {
        use sea_orm::PaginatorTrait;
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(workflow::Entity::find()
            .filter(workflow::Column::Id.is_in(ids.iter().copied()))
            .filter(workflow::Column::Status.eq(WorkflowStatus::Pending))
            .count(self.conn())
            .await?)
    }

    /// Test and tooling helper: set (or clear) a routine's definition JSON (a
    /// `routines::steps::Definition`, validated by the caller) and its `concurrent` flag.
    pub async fn set_routine_definition(
        &self,
        routine_id: i64,
        definition: Option<&str>,
        concurrent: bool,
    ) -> StoreResult<()> {
        routine::Entity::update_many()
            .col_expr(
                routine::Column::Definition,
                Expr::value(definition.map(str::to_string)),
            )
            .col_expr(routine::Column::Concurrent, Expr::value(concurrent))
            .filter(routine::Column::Id.eq(routine_id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Insert a step run; returns its id.
    pub async fn insert_step_run(&self, s: NewStepRun) -> StoreResult<i64> {
        Ok(self.insert_step_run_row(s).await?.id)
    }

    /// Insert a step run; returns the row as inserted (`INSERT … RETURNING`).
    pub async fn insert_step_run_row(&self, s: NewStepRun) -> StoreResult<step_run::Model> {
        let _w = self.write_turn().await;
        Ok(new_step_model(s).insert(self.conn()).await?)
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
