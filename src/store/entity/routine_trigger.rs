//! Entity `routine_triggers`.
use sea_orm::entity::prelude::*;

use crate::store::TriggerKind;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "routine_triggers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub routine_id: i64,
    /// 1-based order within the routine.
    pub position: i32,
    /// "every" | "cron" | "at" | "event" | "api".
    pub kind: TriggerKind,
    /// Kind-specific stored form (seconds, cron expression, RFC 3339 instant, event filter).
    pub spec: String,
    pub zone: String,
    /// UTC; `None` for event / api triggers and for a spent one-off.
    pub next_fire_at: Option<DateTimeUtc>,
    pub last_fire_at: Option<DateTimeUtc>,
    /// A condition trigger's last evaluation: it fires on the crossing from false to true.
    pub condition_met: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
