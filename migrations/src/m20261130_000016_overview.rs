//! The admin overview (issue 11, item 3 "Overview"): its per-day aggregates read one chat's
//! time range from covering indexes (no table lookups: 8,000 runs of a month aggregate in a few
//! milliseconds at 100,000 runs):
//!
//! - `ix_routine_runs_chat_started` (`chat_id`, `started_at`, `status`): runs per day and
//!   status, and the chat's most recent runs;
//! - `ix_turns_chat_usage` (`chat_id`, `started_at`, `model`, `prompt_tokens`,
//!   `completion_tokens`): tokens per day and model.
//!
//! (Chore completions already have (`chat_id`, `completed_at`).)

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RoutineRuns {
    Table,
    ChatId,
    StartedAt,
    Status,
}

#[derive(DeriveIden)]
enum Turns {
    Table,
    ChatId,
    StartedAt,
    Model,
    PromptTokens,
    CompletionTokens,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("ix_routine_runs_chat_started")
                .table(RoutineRuns::Table)
                .col(RoutineRuns::ChatId)
                .col(RoutineRuns::StartedAt)
                .col(RoutineRuns::Status)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_turns_chat_usage")
                .table(Turns::Table)
                .col(Turns::ChatId)
                .col(Turns::StartedAt)
                .col(Turns::Model)
                .col(Turns::PromptTokens)
                .col(Turns::CompletionTokens)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_turns_chat_usage")
                .table(Turns::Table)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("ix_routine_runs_chat_started")
                .table(RoutineRuns::Table)
                .to_owned(),
        )
        .await
    }
}
