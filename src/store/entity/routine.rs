//! Entity `routines`.
use sea_orm::entity::prelude::*;

use crate::store::{Publication, RoutineStatus};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "routines")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub chat_id: i64,
    pub name: String,
    /// Telegram user id of the member the routine's turns act for.
    pub owner_id: i64,
    #[sea_orm(column_type = "Text")]
    pub prompt: String,
    /// IANA zone for placeholders and the daily cap's midnight.
    pub zone: String,
    pub quiet: bool,
    pub paused: bool,
    /// The api trigger's JSON body reaches the prompt as `{apiArgs}`.
    pub api_args: bool,
    /// SHA-256 hex of the api bearer token (never the token).
    pub api_token_hash: Option<String>,
    pub max_ticks: Option<i32>,
    pub max_runs_per_day: Option<i32>,
    /// JSON object, at most 2 KB.
    #[sea_orm(column_type = "Text")]
    pub state: String,
    pub tick_count: i32,
    pub runs_today: i32,
    /// Local date (`YYYY-MM-DD`, routine zone) `runs_today` counts for.
    pub runs_day: String,
    /// "active" | "ended".
    pub status: RoutineStatus,
    pub created_at: DateTimeUtc,
    /// Searchable text: what the routine is for.
    #[sea_orm(column_type = "Text")]
    pub description: String,
    /// "draft" | "published": a draft neither fires nor runs from the chat.
    pub publication: Publication,
    /// JSON of `routines::steps::Definition` (inputs and 1..20 steps); `None` for a
    /// single-prompt routine, which runs as one `prompt` step over `prompt`.
    #[sea_orm(column_type = "Text", nullable)]
    pub definition: Option<String>,
    /// More than one active run per chat is allowed.
    pub concurrent: bool,
    /// The turn a recorded routine was saved from (issue 10); not exported.
    pub source_turn_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
