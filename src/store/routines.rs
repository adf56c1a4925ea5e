//! Routines, their triggers and run history. The trigger claim ([`Store::claim_trigger`]) is the
//! conditional update that makes a slot fire once even with two hearth processes on one
//! database; [`Store::claim_queued_run`] does the same for queued manual and api runs.
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::Expr, sea_query::StringLen, ActiveModelTrait, ColumnTrait, DeriveActiveEnum,
    EntityTrait, EnumIter, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};

use super::{
    entity::{routine, routine_run, routine_trigger},
    Store, StoreResult,
};

/// Routine status: `active → ended` (a spent one-off, `max_ticks` reached, or ended by a
/// member). Pausing is the separate `paused` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum RoutineStatus {
    #[sea_orm(string_value = "active")]
    Active,
    #[sea_orm(string_value = "ended")]
    Ended,
}

stored_names!(RoutineStatus {
    Active => "active",
    Ended => "ended",
});

/// Run status: `pending → running → (waiting ⇄ running) → completed | failed | cancelled`;
/// `paused` by a member (resumed to `pending`). Two terminal statuses record runs that did no
/// work: `skipped` (the routine was paused, ended, over its daily cap or already running) and
/// `silent` (a quiet routine had nothing to say). Unfinished: pending, running, waiting, paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum RunStatus {
    /// Ready to run its current step; any process's sweep claims it.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// A process holds it (`owner`, `lease_until`) and is executing its current step.
    #[sea_orm(string_value = "running")]
    Running,
    /// Waiting for `waiting_for` until `wake_at` (a timer, an approval, an event, a
    /// confirmation, a cost question, a Retry/Skip choice); no task holds it.
    #[sea_orm(string_value = "waiting")]
    Waiting,
    /// Paused by its owner or an admin; `/run_resume` makes it pending again.
    #[sea_orm(string_value = "paused")]
    Paused,
    /// Every step on its path finished.
    #[sea_orm(string_value = "completed")]
    Completed,
    /// A step failed, or a limit stopped it (`reason`).
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Cancelled by a member; its remaining steps are `skipped`.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
    /// Not run; `reason` says why.
    #[sea_orm(string_value = "skipped")]
    Skipped,
    /// A quiet routine answered its quiet token: nothing sent.
    #[sea_orm(string_value = "silent")]
    Silent,
}

stored_names!(RunStatus {
    Pending => "pending",
    Running => "running",
    Waiting => "waiting",
    Paused => "paused",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
    Skipped => "skipped",
    Silent => "silent",
});

impl RunStatus {
    /// True for pending, running, waiting and paused runs.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RunStatus::Pending | RunStatus::Running | RunStatus::Waiting | RunStatus::Paused
        )
    }
}

/// Step run status: `pending → running → completed | failed | skipped`, `waiting` while the step
/// waits (timer, event, approval, confirmation), and `interrupted` when the process running a
/// step that may have called a destructive tool died: the run then waits for Retry or Skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum StepStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "waiting")]
    Waiting,
    #[sea_orm(string_value = "completed")]
    Completed,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "skipped")]
    Skipped,
    #[sea_orm(string_value = "interrupted")]
    Interrupted,
}

stored_names!(StepStatus {
    Pending => "pending",
    Running => "running",
    Waiting => "waiting",
    Completed => "completed",
    Failed => "failed",
    Skipped => "skipped",
    Interrupted => "interrupted",
});

/// The kind of a step (`routines::steps::StepKind` without its fields), as stored on step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum StepType {
    #[sea_orm(string_value = "prompt")]
    Prompt,
    #[sea_orm(string_value = "routine")]
    Routine,
    #[sea_orm(string_value = "message")]
    Message,
    #[sea_orm(string_value = "tool")]
    Tool,
    #[sea_orm(string_value = "wait")]
    Wait,
    #[sea_orm(string_value = "condition")]
    Condition,
    #[sea_orm(string_value = "approval")]
    Approval,
}

stored_names!(StepType {
    Prompt => "prompt",
    Routine => "routine",
    Message => "message",
    Tool => "tool",
    Wait => "wait",
    Condition => "condition",
    Approval => "approval",
});

/// Whether a routine is in use: a `draft` neither fires nor runs from the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Publication {
    #[sea_orm(string_value = "draft")]
    Draft,
    #[sea_orm(string_value = "published")]
    Published,
}

stored_names!(Publication {
    Draft => "draft",
    Published => "published",
});

/// What kind of trigger a `routine_triggers` row is; its `spec` column is read by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum TriggerKind {
    /// A fixed interval (spec: seconds).
    #[sea_orm(string_value = "every")]
    Every,
    /// A cron expression in the trigger's zone.
    #[sea_orm(string_value = "cron")]
    Cron,
    /// A one-off instant (spec: RFC 3339).
    #[sea_orm(string_value = "at")]
    At,
    /// A chat event (spec: the event kind and filters).
    #[sea_orm(string_value = "event")]
    Event,
    /// The HTTP api (spec: "args" when the body reaches the prompt).
    #[sea_orm(string_value = "api")]
    Api,
    /// A hearth fact crossing a threshold, evaluated each minute (spec: `overdue > N` or
    /// `overdue_for <seconds>`; see `routines::conditions`).
    #[sea_orm(string_value = "condition")]
    Condition,
}

stored_names!(TriggerKind {
    Every => "every",
    Cron => "cron",
    At => "at",
    Event => "event",
    Api => "api",
    Condition => "condition",
});

/// What started a run: one of the trigger kinds, or a member's manual run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum RunSource {
    #[sea_orm(string_value = "every")]
    Every,
    #[sea_orm(string_value = "cron")]
    Cron,
    #[sea_orm(string_value = "at")]
    At,
    #[sea_orm(string_value = "event")]
    Event,
    #[sea_orm(string_value = "api")]
    Api,
    /// `/routine_run` or the run tool.
    #[sea_orm(string_value = "manual")]
    Manual,
    /// A condition trigger's crossing.
    #[sea_orm(string_value = "condition")]
    Condition,
}

stored_names!(RunSource {
    Every => "every",
    Cron => "cron",
    At => "at",
    Event => "event",
    Api => "api",
    Manual => "manual",
    Condition => "condition",
});

impl From<TriggerKind> for RunSource {
    fn from(k: TriggerKind) -> RunSource {
        match k {
            TriggerKind::Every => RunSource::Every,
            TriggerKind::Cron => RunSource::Cron,
            TriggerKind::At => RunSource::At,
            TriggerKind::Event => RunSource::Event,
            TriggerKind::Api => RunSource::Api,
            TriggerKind::Condition => RunSource::Condition,
        }
    }
}

/// A routine to insert (validated by the routine service).
#[derive(Debug, Clone)]
pub struct NewRoutine {
    pub chat_id: i64,
    pub name: String,
    pub owner_id: i64,
    pub prompt: String,
    pub zone: String,
    pub quiet: bool,
    pub api_args: bool,
    pub api_token_hash: Option<String>,
    pub max_ticks: Option<i32>,
    pub max_runs_per_day: Option<i32>,
    pub created_at: DateTime<Utc>,
}

/// A trigger to insert with its routine.
#[derive(Debug, Clone)]
pub struct NewTrigger {
    pub kind: TriggerKind,
    pub spec: String,
    pub zone: String,
    /// First fire (UTC); `None` for event and api triggers.
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// A run record to insert.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub routine_id: i64,
    pub trigger_id: Option<i64>,
    pub source: RunSource,
    pub catch_up: bool,
    /// Pending | Skipped.
    pub status: RunStatus,
    pub reason: Option<String>,
    /// JSON object of the initial inputs.
    pub input: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    /// The routine's chat.
    pub chat_id: Option<i64>,
    /// The run owner (Telegram user id).
    pub started_by: Option<i64>,
    /// JSON of the `Definition` the run executes.
    pub snapshot: Option<String>,
    pub parent_run_id: Option<i64>,
    /// 0 for a top-level run.
    pub depth: i32,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunEnd {
    /// Success | Error | Skipped | Silent.
    pub status: RunStatus,
    pub reason: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub cost_usd: f64,
    pub output: Option<String>,
}

/// The routine counters written after a run.
#[derive(Debug, Clone, Copy)]
pub struct RoutineCounters<'a> {
    pub tick_count: i32,
    pub runs_today: i32,
    pub runs_day: &'a str,
}

/// Routine names must be unique per chat; this maps the unique-index violation.
pub(super) fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    let s = e.to_string().to_ascii_lowercase();
    s.contains("unique") || s.contains("duplicate key")
}

impl Store {
    /// Insert a routine with its triggers in one transaction. Returns `Ok(None)` when the name
    /// is already used in the chat (nothing is written).
    pub async fn insert_routine(
        &self,
        r: NewRoutine,
        triggers: Vec<NewTrigger>,
    ) -> StoreResult<Option<i64>> {
        let single_prompt = super::DefinitionFields {
            description: String::new(),
            publication: super::Publication::Published,
            definition: None,
            concurrent: false,
            source_turn_id: None,
        };
        self.insert_routine_doc(r, single_prompt, triggers).await
    }

    /// The routine with id `id`.
    pub async fn routine(&self, id: i64) -> StoreResult<Option<routine::Model>> {
        Ok(routine::Entity::find_by_id(id).one(self.conn()).await?)
    }

    /// The routine called `name` in `chat_id`.
    pub async fn routine_by_name(
        &self,
        chat_id: i64,
        name: &str,
    ) -> StoreResult<Option<routine::Model>> {
        Ok(routine::Entity::find()
            .filter(routine::Column::ChatId.eq(chat_id))
            .filter(routine::Column::Name.eq(name))
            .one(self.conn())
            .await?)
    }

    /// Routines of a chat, oldest first.
    pub async fn routines_of_chat(&self, chat_id: i64) -> StoreResult<Vec<routine::Model>> {
        Ok(routine::Entity::find()
            .filter(routine::Column::ChatId.eq(chat_id))
            .order_by_asc(routine::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Routines with these ids.
    pub async fn routines_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<routine::Model>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        Ok(routine::Entity::find()
            .filter(routine::Column::Id.is_in(ids.iter().copied()))
            .all(self.conn())
            .await?)
    }

    /// Number of routines in a chat that have not ended (paused ones count).
    pub async fn count_active_routines(&self, chat_id: i64) -> StoreResult<u64> {
        Ok(routine::Entity::find()
            .filter(routine::Column::ChatId.eq(chat_id))
            .filter(routine::Column::Status.eq(RoutineStatus::Active))
            .count(self.conn())
            .await?)
    }

    /// Triggers of a routine in position order.
    pub async fn routine_triggers(
        &self,
        routine_id: i64,
    ) -> StoreResult<Vec<routine_trigger::Model>> {
        Ok(routine_trigger::Entity::find()
            .filter(routine_trigger::Column::RoutineId.eq(routine_id))
            .order_by_asc(routine_trigger::Column::Position)
            .all(self.conn())
            .await?)
    }

    /// Triggers whose `next_fire_at` is at or before `now` (UTC), earliest first, at most `limit`.
    pub async fn due_triggers(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<routine_trigger::Model>> {
        Ok(routine_trigger::Entity::find()
            .filter(routine_trigger::Column::NextFireAt.lte(now))
            .order_by_asc(routine_trigger::Column::NextFireAt)
            .limit(limit)
            .all(self.conn())
            .await?)
    }

    /// Event triggers of `kind` on active routines of `chat_id`.
    pub async fn event_triggers(
        &self,
        chat_id: i64,
        kind: &str,
    ) -> StoreResult<Vec<(routine_trigger::Model, routine::Model)>> {
        let routines = routine::Entity::find()
            .filter(routine::Column::ChatId.eq(chat_id))
            .filter(routine::Column::Status.eq(RoutineStatus::Active))
            .all(self.conn())
            .await?;
        if routines.is_empty() {
            return Ok(vec![]);
        }
        let triggers = routine_trigger::Entity::find()
            .filter(routine_trigger::Column::RoutineId.is_in(routines.iter().map(|r| r.id)))
            .filter(routine_trigger::Column::Kind.eq(TriggerKind::Event))
            .order_by_asc(routine_trigger::Column::Id)
            .all(self.conn())
            .await?;
        Ok(triggers
            .into_iter()
            .filter(|t| t.spec.split_whitespace().next() == Some(kind))
            .filter_map(|t| {
                let r = routines.iter().find(|r| r.id == t.routine_id)?.clone();
                Some((t, r))
            })
            .collect())
    }

    /// Claim a due slot: set `next_fire_at` to `next` (and `last_fire_at` to `old`) only if it is
    /// still `old`. Returns true when this caller owns the fire (exactly one claimant wins).
    pub async fn claim_trigger(
        &self,
        trigger_id: i64,
        old: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        let r = routine_trigger::Entity::update_many()
            .col_expr(routine_trigger::Column::NextFireAt, Expr::value(next))
            .col_expr(routine_trigger::Column::LastFireAt, Expr::value(old))
            .filter(routine_trigger::Column::Id.eq(trigger_id))
            .filter(routine_trigger::Column::NextFireAt.eq(old))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Pause or resume.
    pub async fn set_routine_paused(&self, id: i64, paused: bool) -> StoreResult<()> {
        routine::Entity::update_many()
            .col_expr(routine::Column::Paused, Expr::value(paused))
            .filter(routine::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Replace the routine's state JSON (validated by the caller).
    pub async fn set_routine_state(&self, id: i64, state: &str) -> StoreResult<()> {
        routine::Entity::update_many()
            .col_expr(routine::Column::State, Expr::value(state))
            .filter(routine::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Write the counters after a run.
    pub async fn set_routine_counters(&self, id: i64, c: RoutineCounters<'_>) -> StoreResult<()> {
        routine::Entity::update_many()
            .col_expr(routine::Column::TickCount, Expr::value(c.tick_count))
            .col_expr(routine::Column::RunsToday, Expr::value(c.runs_today))
            .col_expr(routine::Column::RunsDay, Expr::value(c.runs_day))
            .filter(routine::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Count a run end in ONE statement (concurrent ends of one routine all count):
    /// `tick_count + 1`, and `runs_today + 1` when `runs_day` is `day` (the routine's local
    /// `YYYY-MM-DD`), else `runs_today = 1, runs_day = day`. Returns the new `tick_count`
    /// (`None`: the routine is gone).
    pub async fn count_run_end(&self, id: i64, day: &str) -> StoreResult<Option<i32>> {
        let _w = self.write_turn().await;
        count_run_end_in(self.conn(), id, day).await
    }

    /// End a routine: status "ended", no trigger fires again.
    pub async fn end_routine(&self, id: i64) -> StoreResult<()> {
        let txn = self.conn().begin().await?;
        routine::Entity::update_many()
            .col_expr(routine::Column::Status, Expr::value(RoutineStatus::Ended))
            .filter(routine::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        routine_trigger::Entity::update_many()
            .col_expr(
                routine_trigger::Column::NextFireAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(routine_trigger::Column::RoutineId.eq(id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Delete a routine with its triggers and runs. Returns false when it did not exist.
    pub async fn delete_routine(&self, id: i64) -> StoreResult<bool> {
        let txn = self.conn().begin().await?;
        let runs = routine_run::Entity::find()
            .select_only()
            .column(routine_run::Column::Id)
            .filter(routine_run::Column::RoutineId.eq(id))
            .into_tuple::<i64>()
            .all(&txn)
            .await?;
        for chunk in runs.chunks(500) {
            super::entity::step_run::Entity::delete_many()
                .filter(super::entity::step_run::Column::RunId.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
        }
        routine_run::Entity::delete_many()
            .filter(routine_run::Column::RoutineId.eq(id))
            .exec(&txn)
            .await?;
        routine_trigger::Entity::delete_many()
            .filter(routine_trigger::Column::RoutineId.eq(id))
            .exec(&txn)
            .await?;
        let r = routine::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        Ok(r.rows_affected == 1)
    }

    /// Insert a run record; returns its id.
    pub async fn insert_run(&self, r: NewRun) -> StoreResult<i64> {
        let _w = self.write_turn().await;
        let x = routine_run::Entity::insert(routine_run::ActiveModel {
            routine_id: Set(r.routine_id),
            trigger_id: Set(r.trigger_id),
            source: Set(r.source),
            catch_up: Set(r.catch_up),
            status: Set(r.status),
            reason: Set(r.reason),
            input: Set(r.input),
            scheduled_for: Set(r.scheduled_for),
            started_at: Set(r.started_at),
            duration_ms: Set(0),
            prompt_tokens: Set(0),
            completion_tokens: Set(0),
            cost_usd: Set(0.0),
            output: Set(None),
            chat_id: Set(r.chat_id),
            started_by: Set(r.started_by),
            snapshot: Set(r.snapshot),
            current_step: Set(0),
            parent_run_id: Set(r.parent_run_id),
            depth: Set(r.depth),
            cost_warned: Set(false),
            loops: Set("{}".into()),
            finished_at: Set(matches!(r.status, RunStatus::Skipped).then_some(r.started_at)),
            ..Default::default()
        })
        .exec(self.conn())
        .await?;
        Ok(x.last_insert_id)
    }

    /// One run.
    pub async fn run(&self, id: i64) -> StoreResult<Option<routine_run::Model>> {
        Ok(routine_run::Entity::find_by_id(id).one(self.conn()).await?)
    }

    /// Queued runs, oldest first, at most `limit`.
    pub async fn queued_runs(&self, limit: u64) -> StoreResult<Vec<routine_run::Model>> {
        Ok(routine_run::Entity::find()
            .filter(routine_run::Column::Status.eq(RunStatus::Pending))
            .order_by_asc(routine_run::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?)
    }

    /// Move a queued run to "running" at `now` if it is still queued. True when this caller owns it.
    pub async fn claim_queued_run(&self, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        let r = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::Status, Expr::value(RunStatus::Running))
            .col_expr(routine_run::Column::StartedAt, Expr::value(now))
            .filter(routine_run::Column::Id.eq(id))
            .filter(routine_run::Column::Status.eq(RunStatus::Pending))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Record how a run ended.
    pub async fn finish_run(&self, id: i64, e: RunEnd) -> StoreResult<()> {
        let Some(row) = routine_run::Entity::find_by_id(id).one(self.conn()).await? else {
            return Ok(());
        };
        let mut am: routine_run::ActiveModel = row.into();
        am.status = Set(e.status);
        am.reason = Set(e.reason);
        am.started_at = Set(e.started_at);
        am.duration_ms = Set(e.duration_ms);
        am.prompt_tokens = Set(e.prompt_tokens);
        am.completion_tokens = Set(e.completion_tokens);
        am.cost_usd = Set(e.cost_usd);
        am.output = Set(e.output);
        am.update(self.conn()).await?;
        Ok(())
    }

    /// Delete all but the newest `keep` finished runs of a routine (queued and running runs stay).
    pub async fn prune_runs(&self, routine_id: i64, keep: u64) -> StoreResult<u64> {
        let cutoff = routine_run::Entity::find()
            .filter(routine_run::Column::RoutineId.eq(routine_id))
            .order_by_desc(routine_run::Column::Id)
            .offset(keep)
            .limit(1)
            .one(self.conn())
            .await?;
        let Some(cut) = cutoff else { return Ok(0) };
        let _w = self.write_turn().await;
        let r = routine_run::Entity::delete_many()
            .filter(routine_run::Column::RoutineId.eq(routine_id))
            .filter(routine_run::Column::Id.lte(cut.id))
            .filter(routine_run::Column::Status.is_not_in([
                RunStatus::Pending,
                RunStatus::Running,
                RunStatus::Waiting,
                RunStatus::Paused,
            ]))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected)
    }

    /// Runs of a routine, newest first, at most `limit`.
    pub async fn routine_runs(
        &self,
        routine_id: i64,
        limit: u64,
    ) -> StoreResult<Vec<routine_run::Model>> {
        Ok(routine_run::Entity::find()
            .filter(routine_run::Column::RoutineId.eq(routine_id))
            .order_by_desc(routine_run::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?)
    }

    /// Mark runs left "running" without a lease since before `before` as failed (a crash or
    /// restart cut them before runs were durable; leased runs are taken over instead).
    pub async fn interrupt_stale_runs(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let r = routine_run::Entity::update_many()
            .col_expr(routine_run::Column::Status, Expr::value(RunStatus::Failed))
            .col_expr(
                routine_run::Column::Reason,
                Expr::value("interrupted by a restart"),
            )
            .filter(routine_run::Column::Status.eq(RunStatus::Running))
            .filter(routine_run::Column::LeaseUntil.is_null())
            .filter(routine_run::Column::StartedAt.lt(before))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected)
    }

    /// Move a routine to IANA zone `zone` (placeholders and the daily cap's midnight).
    pub async fn set_routine_zone(&self, id: i64, zone: &str) -> StoreResult<()> {
        routine::Entity::update_many()
            .col_expr(routine::Column::Zone, Expr::value(zone))
            .filter(routine::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Move a trigger to `zone` with its recomputed `next_fire_at` (UTC).
    pub async fn set_trigger_zone(
        &self,
        trigger_id: i64,
        zone: &str,
        next: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        routine_trigger::Entity::update_many()
            .col_expr(routine_trigger::Column::Zone, Expr::value(zone))
            .col_expr(routine_trigger::Column::NextFireAt, Expr::value(next))
            .filter(routine_trigger::Column::Id.eq(trigger_id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Test and benchmark helper: set a trigger's `next_fire_at` directly.
    pub async fn set_trigger_next_fire(
        &self,
        trigger_id: i64,
        next: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        routine_trigger::Entity::update_many()
            .col_expr(routine_trigger::Column::NextFireAt, Expr::value(next))
            .filter(routine_trigger::Column::Id.eq(trigger_id))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}

/// One routine's run counts by status, from [`Store::run_tallies`].
#[derive(Debug, Clone, PartialEq, sea_orm::FromQueryResult)]
pub struct RunTally {
    pub routine_id: i64,
    pub status: RunStatus,
    /// Runs of this routine with this status.
    pub runs: i64,
    /// When the newest of them started (UTC).
    pub last_started: Option<DateTime<Utc>>,
}

impl Store {
    /// Run counts of `routine_ids` grouped by (routine, status), with each group's newest start:
    /// one query for a whole listing (`/routines`), never one per routine.
    pub async fn run_tallies(&self, routine_ids: &[i64]) -> StoreResult<Vec<RunTally>> {
        if routine_ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(routine_run::Entity::find()
            .select_only()
            .column(routine_run::Column::RoutineId)
            .column(routine_run::Column::Status)
            .column_as(routine_run::Column::Id.count(), "runs")
            .column_as(routine_run::Column::StartedAt.max(), "last_started")
            .filter(routine_run::Column::RoutineId.is_in(routine_ids.iter().copied()))
            .group_by(routine_run::Column::RoutineId)
            .group_by(routine_run::Column::Status)
            .into_model::<RunTally>()
            .all(self.conn())
            .await?)
    }

    /// The chats that have at least one routine (any status), ascending.
    pub async fn chats_with_routines(&self) -> StoreResult<Vec<i64>> {
        let ids: Vec<i64> = routine::Entity::find()
            .select_only()
            .column(routine::Column::ChatId)
            .distinct()
            .order_by_asc(routine::Column::ChatId)
            .into_tuple()
            .all(self.conn())
            .await?;
        Ok(ids)
    }
}

/// [`Store::count_run_end`] on `db` (a connection or a transaction: the executor counts a run's
/// end in the commit that ends it, [`Store::advance_run_counted`]).
pub(super) async fn count_run_end_in(
    db: &impl sea_orm::ConnectionTrait,
    id: i64,
    day: &str,
) -> StoreResult<Option<i32>> {
    Ok(count_run_end_update(id, day)
        .exec_with_returning(db)
        .await?
        .pop()
        .map(|r| r.tick_count))
}

/// The update behind [`count_run_end_in`]: `tick_count + 1`, the day's run count (+ 1 on the
/// same local day `day`, YYYY-MM-DD, else 1), `runs_day = day`.
pub(super) fn count_run_end_update(id: i64, day: &str) -> sea_orm::UpdateMany<routine::Entity> {
    use sea_orm::sea_query::{CaseStatement, ExprTrait};
    let today = CaseStatement::new()
        .case(
            routine::Column::RunsDay.eq(day),
            Expr::col(routine::Column::RunsToday).add(1),
        )
        .finally(Expr::value(1));
    routine::Entity::update_many()
        .col_expr(
            routine::Column::TickCount,
            Expr::col(routine::Column::TickCount).add(1),
        )
        .col_expr(routine::Column::RunsToday, today.into())
        .col_expr(routine::Column::RunsDay, Expr::value(day))
        .filter(routine::Column::Id.eq(id))
}
