//! The admin overview (issue 11, item 3 "Overview"): runs per UTC day and status over the last
//! 30 days, and a chat's most recent runs, read from `ix_routine_runs_chat_started` on
//! (`chat_id`, `started_at`) — a range of one chat's runs, never the whole table.
//! (Turns and chore completions already have (`chat_id`, time) indexes.)

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RoutineRuns {
    Table,
    ChatId,
    StartedAt,
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
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_routine_runs_chat_started")
                .table(RoutineRuns::Table)
                .to_owned(),
        )
        .await
    }
}
