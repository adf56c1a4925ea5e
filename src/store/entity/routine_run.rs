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
    /// "queued" | "running" | "success" | "error" | "skipped" | "silent".
    pub status: RunStatus,
    pub reason: Option<String>,
    /// JSON handed to the prompt: the event (`{event}`) or the api body (`{apiArgs}`).
    #[sea_orm(column_type = "Text", nullable)]
    pub input: Option<String>,
    /// The slot this run was for (UTC), when scheduled.
    pub scheduled_for: Option<DateTimeUtc>,
    pub started_at: DateTimeUtc,
    pub duration_ms: i64,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub cost_usd: f64,
    /// The first characters of the reply.
    #[sea_orm(column_type = "Text", nullable)]
    pub output: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
