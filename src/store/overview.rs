//! The web admin's overview and approvals queries (issue 11, item 3): per-day aggregates for the
//! plots, grouped in SQL over a chat's time index (never a query per day or per member), recent
//! runs, and a chat's requests with their audit trail, a page at a time.
//!
//! Days are UTC calendar days, `YYYY-MM-DD`: SQLite stores a timestamp as RFC 3339 text in UTC,
//! so its first ten characters are the day; Postgres formats the `timestamptz` at UTC.
//! Indexes used (the first two cover their queries): `ix_routine_runs_chat_started`,
//! `ix_turns_chat_usage`, `ix_chore_completions_chat_at`, `ix_workflows_chat_status`,
//! `ix_workflow_audit_workflow`.
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::Expr, ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{
    entity::{chore_completion, routine_run, turn, workflow, workflow_audit},
    RunStatus, Store, StoreResult, WorkflowStatus,
};

/// Runs of one status on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsOnDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub status: RunStatus,
    pub runs: u64,
}

/// Model use on one UTC day for one model: every turn of the chat (members' messages, routine
/// steps, silent and quiet runs alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageOnDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The model the turns used (prices are per model).
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub turns: u64,
}

/// Chore completions credited to one member on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneOnDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub user_id: i64,
    pub done: u64,
}

/// A chat's requests: the pending ones, or the resolved ones (any other status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Pending,
    Resolved,
}

impl Store {
    /// The UTC day (`YYYY-MM-DD`) of timestamp column `col`, for this backend.
    fn day_of(&self, col: impl sea_orm::IntoSimpleExpr) -> Expr {
        let col = col.into_simple_expr();
        match self.backend() {
            DbBackend::Postgres => {
                Expr::cust_with_expr("to_char($1 AT TIME ZONE 'UTC', 'YYYY-MM-DD')", col)
            }
            // the placeholder of a custom expression is the backend's: `?` for SQLite
            _ => Expr::cust_with_expr("substr(?, 1, 10)", col),
        }
    }

    /// Runs of chat `chat_id` started at or after `since`, counted per UTC day and status (one
    /// grouped query over the covering `(chat_id, started_at, status)` index).
    pub async fn runs_per_day(
        &self,
        chat_id: i64,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<RunsOnDay>> {
        let day = self.day_of(routine_run::Column::StartedAt);
        let rows: Vec<(String, String, i64)> = routine_run::Entity::find()
            .select_only()
            .column_as(day.clone(), "day")
            .column(routine_run::Column::Status)
            .column_as(Expr::cust("COUNT(*)"), "n")
            .filter(routine_run::Column::ChatId.eq(chat_id))
            .filter(routine_run::Column::StartedAt.gte(since))
            .group_by(day)
            .group_by(routine_run::Column::Status)
            .into_tuple()
            .all(self.conn())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(day, status, n)| {
                Some(RunsOnDay {
                    day,
                    status: RunStatus::parse(&status)?,
                    runs: n.max(0) as u64,
                })
            })
            .collect())
    }

    /// Tokens of chat `chat_id`'s turns started at or after `since`, summed per UTC day and
    /// model (one grouped query over the covering `(chat_id, started_at, model, tokens)` index).
    pub async fn usage_per_day(
        &self,
        chat_id: i64,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<UsageOnDay>> {
        let day = self.day_of(turn::Column::StartedAt);
        let rows: Vec<(String, String, i64, i64, i64)> = turn::Entity::find()
            .select_only()
            .column_as(day.clone(), "day")
            .column(turn::Column::Model)
            .column_as(turn::Column::PromptTokens.sum(), "p")
            .column_as(turn::Column::CompletionTokens.sum(), "c")
            .column_as(Expr::cust("COUNT(*)"), "n")
            .filter(turn::Column::ChatId.eq(chat_id))
            .filter(turn::Column::StartedAt.gte(since))
            .group_by(day)
            .group_by(turn::Column::Model)
            .into_tuple()
            .all(self.conn())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(day, model, p, c, n)| UsageOnDay {
                day,
                model,
                prompt_tokens: p.max(0) as u64,
                completion_tokens: c.max(0) as u64,
                turns: n.max(0) as u64,
            })
            .collect())
    }

    /// Chore completions in chat `chat_id` at or after `since`, counted per UTC day and member
    /// (one grouped query over `(chat_id, completed_at)`).
    pub async fn chores_done_per_day(
        &self,
        chat_id: i64,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<DoneOnDay>> {
        let day = self.day_of(chore_completion::Column::CompletedAt);
        let rows: Vec<(String, i64, i64)> = chore_completion::Entity::find()
            .select_only()
            .column_as(day.clone(), "day")
            .column(chore_completion::Column::UserId)
            .column_as(Expr::cust("COUNT(*)"), "n")
            .filter(chore_completion::Column::ChatId.eq(chat_id))
            .filter(chore_completion::Column::CompletedAt.gte(since))
            .group_by(day)
            .group_by(chore_completion::Column::UserId)
            .into_tuple()
            .all(self.conn())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(day, user_id, n)| DoneOnDay {
                day,
                user_id,
                done: n.max(0) as u64,
            })
            .collect())
    }

    /// The `limit` most recently started runs of chat `chat_id`, newest first.
    pub async fn recent_runs(
        &self,
        chat_id: i64,
        limit: u64,
    ) -> StoreResult<Vec<routine_run::Model>> {
        Ok(routine_run::Entity::find()
            .filter(routine_run::Column::ChatId.eq(chat_id))
            .order_by_desc(routine_run::Column::StartedAt)
            .order_by_desc(routine_run::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?)
    }

    /// Chat `chat_id`'s requests in `state`, newest first: `limit` of them after skipping
    /// `offset`.
    pub async fn requests_of_chat(
        &self,
        chat_id: i64,
        state: RequestState,
        offset: u64,
        limit: u64,
    ) -> StoreResult<Vec<workflow::Model>> {
        let q = workflow::Entity::find().filter(workflow::Column::ChatId.eq(chat_id));
        let q = match state {
            RequestState::Pending => q.filter(workflow::Column::Status.eq(WorkflowStatus::Pending)),
            RequestState::Resolved => {
                q.filter(workflow::Column::Status.ne(WorkflowStatus::Pending))
            }
        };
        Ok(q.order_by_desc(workflow::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(self.conn())
            .await?)
    }

    /// The audit rows of several workflows, oldest first (one query).
    pub async fn audit_of_workflows(&self, ids: &[i64]) -> StoreResult<Vec<workflow_audit::Model>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        Ok(workflow_audit::Entity::find()
            .filter(workflow_audit::Column::WorkflowId.is_in(ids.iter().copied()))
            .order_by_asc(workflow_audit::Column::Id)
            .all(self.conn())
            .await?)
    }
}
