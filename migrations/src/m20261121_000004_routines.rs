//! Routine tables: `routines` (one row per routine, unique name per chat), `routine_triggers`
//! (1–4 per routine; the persisted `next_fire_at` in UTC is the source of truth for schedules)
//! and `routine_runs` (run history, the last 50 kept per routine; also the queue of manual and
//! api runs).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Routines {
    Table,
    Id,
    ChatId,
    Name,
    OwnerId,
    Prompt,
    Zone,
    Quiet,
    Paused,
    ApiArgs,
    ApiTokenHash,
    MaxTicks,
    MaxRunsPerDay,
    State,
    TickCount,
    RunsToday,
    RunsDay,
    Status,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RoutineTriggers {
    Table,
    Id,
    RoutineId,
    Position,
    Kind,
    Spec,
    Zone,
    NextFireAt,
    LastFireAt,
}

#[derive(DeriveIden)]
enum RoutineRuns {
    Table,
    Id,
    RoutineId,
    TriggerId,
    Source,
    CatchUp,
    Status,
    Reason,
    Input,
    ScheduledFor,
    StartedAt,
    DurationMs,
    PromptTokens,
    CompletionTokens,
    CostUsd,
    Output,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Routines::Table)
                .if_not_exists()
                .col(big_integer(Routines::Id).auto_increment().primary_key())
                .col(big_integer(Routines::ChatId))
                .col(string_len(Routines::Name, 32))
                .col(big_integer(Routines::OwnerId))
                .col(text(Routines::Prompt))
                .col(string_len(Routines::Zone, 64))
                .col(boolean(Routines::Quiet))
                .col(boolean(Routines::Paused))
                .col(boolean(Routines::ApiArgs))
                .col(string_len_null(Routines::ApiTokenHash, 64))
                .col(integer_null(Routines::MaxTicks))
                .col(integer_null(Routines::MaxRunsPerDay))
                .col(text(Routines::State))
                .col(integer(Routines::TickCount))
                .col(integer(Routines::RunsToday))
                .col(string_len(Routines::RunsDay, 10))
                .col(string_len(Routines::Status, 16))
                .col(timestamp_with_time_zone(Routines::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_routines_chat_name")
                .table(Routines::Table)
                .col(Routines::ChatId)
                .col(Routines::Name)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RoutineTriggers::Table)
                .if_not_exists()
                .col(
                    big_integer(RoutineTriggers::Id)
                        .auto_increment()
                        .primary_key(),
                )
                .col(big_integer(RoutineTriggers::RoutineId))
                .col(integer(RoutineTriggers::Position))
                .col(string_len(RoutineTriggers::Kind, 16))
                .col(string(RoutineTriggers::Spec))
                .col(string_len(RoutineTriggers::Zone, 64))
                .col(timestamp_with_time_zone_null(RoutineTriggers::NextFireAt))
                .col(timestamp_with_time_zone_null(RoutineTriggers::LastFireAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_routine_triggers_routine")
                        .from(RoutineTriggers::Table, RoutineTriggers::RoutineId)
                        .to(Routines::Table, Routines::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // The sweep's query is `WHERE next_fire_at <= now ORDER BY next_fire_at LIMIT n`.
        m.create_index(
            Index::create()
                .name("ix_routine_triggers_next_fire")
                .table(RoutineTriggers::Table)
                .col(RoutineTriggers::NextFireAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_routine_triggers_routine")
                .table(RoutineTriggers::Table)
                .col(RoutineTriggers::RoutineId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RoutineRuns::Table)
                .if_not_exists()
                .col(big_integer(RoutineRuns::Id).auto_increment().primary_key())
                .col(big_integer(RoutineRuns::RoutineId))
                .col(big_integer_null(RoutineRuns::TriggerId))
                .col(string_len(RoutineRuns::Source, 16))
                .col(boolean(RoutineRuns::CatchUp))
                .col(string_len(RoutineRuns::Status, 16))
                .col(string_null(RoutineRuns::Reason))
                .col(text_null(RoutineRuns::Input))
                .col(timestamp_with_time_zone_null(RoutineRuns::ScheduledFor))
                .col(timestamp_with_time_zone(RoutineRuns::StartedAt))
                .col(big_integer(RoutineRuns::DurationMs))
                .col(integer(RoutineRuns::PromptTokens))
                .col(integer(RoutineRuns::CompletionTokens))
                .col(double(RoutineRuns::CostUsd))
                .col(text_null(RoutineRuns::Output))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_routine_runs_routine")
                        .from(RoutineRuns::Table, RoutineRuns::RoutineId)
                        .to(Routines::Table, Routines::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_routine_runs_routine_id")
                .table(RoutineRuns::Table)
                .col(RoutineRuns::RoutineId)
                .col(RoutineRuns::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_routine_runs_status")
                .table(RoutineRuns::Table)
                .col(RoutineRuns::Status)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            RoutineRuns::Table.into_iden(),
            RoutineTriggers::Table.into_iden(),
            Routines::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
