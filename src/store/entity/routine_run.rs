//! Entity `routine_runs`.
use sea_orm::entity::prelude::*;

use crate::store::{RunSource, RunStatus};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "routine_runs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub routine_id: i64,
    pub trigger_id: Option<i64>,
    /// "every" | "cron" | "at" | "event" | "api" | "manual".
    pub source: RunSource,
    /// A late fire after downtime (one catch-up run, or a one-off fired at start-up).
    pub catch_up: bool,
    /// "pending" | "running" | "waiting" | "paused" | "completed" | "failed" | "cancelled", or
    /// "skipped" / "silent" (see [`RunStatus`]).
    pub status: RunStatus,
    pub reason: Option<String>,
    /// JSON: the run's initial inputs (an object; for an event trigger the event's fields, for
    /// the api trigger the body).
    #[sea_orm(column_type = "Text", nullable)]
    pub input: Option<String>,
    /// The slot this run was for (UTC), when scheduled.
    pub scheduled_for: Option<DateTimeUtc>,
    pub started_at: DateTimeUtc,
    pub duration_ms: i64,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub cost_usd: f64,
    /// The first characters of the last step's output.
    #[sea_orm(column_type = "Text", nullable)]
    pub output: Option<String>,
    /// The chat the run works in (the routine's chat).
    pub chat_id: Option<i64>,
    /// The run owner: the member who started it by hand, else the routine's owner.
    pub started_by: Option<i64>,
    /// JSON of the `routines::steps::Definition` taken at the start (editing the routine never
    /// changes a running run).
    #[sea_orm(column_type = "Text", nullable)]
    pub snapshot: Option<String>,
    /// 0-based index into the snapshot's steps of the step to run (or running / waiting).
    pub current_step: i32,
    /// Process id holding the run while a step executes.
    pub owner: Option<String>,
    /// UTC; the owner's claim lapses after this.
    pub lease_until: Option<DateTimeUtc>,
    /// UTC deadline of a wait: a sweep resumes the run at or after it.
    pub wake_at: Option<DateTimeUtc>,
    /// What a waiting run waits for: "timer", "approval:<workflow id>", "event:<kind>",
    /// "confirm:<workflow id>", "cost", "interrupted".
    #[sea_orm(column_type = "Text", nullable)]
    pub waiting_for: Option<String>,
    /// Telegram message id of the run's progress message (edited in place).
    pub progress_message_id: Option<i64>,
    /// The run whose `routine` step started this one.
    pub parent_run_id: Option<i64>,
    /// Nesting depth: 0 for a top-level run, at most 3.
    pub depth: i32,
    /// The `routines.cost_warn` question was asked (and answered Continue).
    pub cost_warned: bool,
    /// JSON object: loop-backs taken per step index, e.g. `{"1": 2}`.
    #[sea_orm(column_type = "Text")]
    pub loops: String,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
