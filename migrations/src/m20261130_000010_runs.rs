//! Multi-step routines and durable runs (issue 9).
//!
//! - `routines`: `description` (searchable text), `publication` (`draft | published`; a draft
//!   neither fires nor runs from the chat), `definition` (JSON of the routine's inputs and steps,
//!   `routines::steps::Definition`; NULL for a single-prompt routine, which runs as one `prompt`
//!   step over `prompt`), `concurrent` (more than one active run per chat allowed).
//! - `routine_runs`: a run is durable and claimable: `chat_id`, `started_by` (the run owner),
//!   `snapshot` (the definition taken at the start; edits never reach a running run),
//!   `current_step` (0-based index into the snapshot), `owner` + `lease_until` (the process
//!   working it), `wake_at` (UTC deadline of a wait; a sweep resumes the run then),
//!   `waiting_for` (what it waits for, e.g. `timer`, `approval:12`, `event:member_joined`,
//!   `cost`, `interrupted`), `progress_message_id` (the chat message edited as steps finish),
//!   `parent_run_id` + `depth` (a `routine` step's child run), `cost_warned`, `loops` (JSON
//!   object: loop-backs taken per step), `finished_at`. Statuses are renamed to the run words:
//!   `queued → pending`, `success → completed`, `error → failed`.
//! - `step_runs`: one row per executed step (and per loop pass, `attempt`).
//! - `routine_triggers.condition_met`: a condition trigger's last evaluation (fires once per
//!   crossing from false to true).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Routines {
    Table,
    Description,
    Publication,
    Definition,
    Concurrent,
}

#[derive(DeriveIden)]
enum RoutineRuns {
    Table,
    Id,
    Status,
    ChatId,
    StartedBy,
    Snapshot,
    CurrentStep,
    Owner,
    LeaseUntil,
    WakeAt,
    WaitingFor,
    ProgressMessageId,
    ParentRunId,
    Depth,
    CostWarned,
    Loops,
    FinishedAt,
}

#[derive(DeriveIden)]
enum StepRuns {
    Table,
    Id,
    RunId,
    Position,
    Attempt,
    Name,
    Kind,
    Status,
    Input,
    Output,
    Reason,
    Error,
    PromptTokens,
    CompletionTokens,
    CostUsd,
    DurationMs,
    WorkflowId,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum RoutineTriggers {
    Table,
    ConditionMet,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for col in [
            text(Routines::Description).default("").to_owned(),
            string_len(Routines::Publication, 16)
                .default("published")
                .to_owned(),
            text_null(Routines::Definition).to_owned(),
            boolean(Routines::Concurrent).default(false).to_owned(),
        ] {
            let mut col = col;
            m.alter_table(
                Table::alter()
                    .table(Routines::Table)
                    .add_column(&mut col)
                    .to_owned(),
            )
            .await?;
        }
        for col in [
            big_integer_null(RoutineRuns::ChatId).to_owned(),
            big_integer_null(RoutineRuns::StartedBy).to_owned(),
            text_null(RoutineRuns::Snapshot).to_owned(),
            integer(RoutineRuns::CurrentStep).default(0).to_owned(),
            string_len_null(RoutineRuns::Owner, 64).to_owned(),
            timestamp_with_time_zone_null(RoutineRuns::LeaseUntil).to_owned(),
            timestamp_with_time_zone_null(RoutineRuns::WakeAt).to_owned(),
            text_null(RoutineRuns::WaitingFor).to_owned(),
            big_integer_null(RoutineRuns::ProgressMessageId).to_owned(),
            big_integer_null(RoutineRuns::ParentRunId).to_owned(),
            integer(RoutineRuns::Depth).default(0).to_owned(),
            boolean(RoutineRuns::CostWarned).default(false).to_owned(),
            text(RoutineRuns::Loops).default("{}").to_owned(),
            timestamp_with_time_zone_null(RoutineRuns::FinishedAt).to_owned(),
        ] {
            let mut col = col;
            m.alter_table(
                Table::alter()
                    .table(RoutineRuns::Table)
                    .add_column(&mut col)
                    .to_owned(),
            )
            .await?;
        }
        for (old, new) in [
            ("queued", "pending"),
            ("success", "completed"),
            ("error", "failed"),
        ] {
            m.exec_stmt(
                Query::update()
                    .table(RoutineRuns::Table)
                    .value(RoutineRuns::Status, new)
                    .and_where(Expr::col(RoutineRuns::Status).eq(old))
                    .to_owned(),
            )
            .await?;
        }
        // The run sweep: `WHERE status = 'waiting' AND wake_at <= now` and unfinished runs.
        m.create_index(
            Index::create()
                .name("ix_routine_runs_status_wake")
                .table(RoutineRuns::Table)
                .col(RoutineRuns::Status)
                .col(RoutineRuns::WakeAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(StepRuns::Table)
                .if_not_exists()
                .col(big_integer(StepRuns::Id).auto_increment().primary_key())
                .col(big_integer(StepRuns::RunId))
                .col(integer(StepRuns::Position))
                .col(integer(StepRuns::Attempt).default(1))
                .col(string_len_null(StepRuns::Name, 64))
                .col(string_len(StepRuns::Kind, 16))
                .col(string_len(StepRuns::Status, 16))
                .col(text_null(StepRuns::Input))
                .col(text_null(StepRuns::Output))
                .col(text_null(StepRuns::Reason))
                .col(text_null(StepRuns::Error))
                .col(integer(StepRuns::PromptTokens).default(0))
                .col(integer(StepRuns::CompletionTokens).default(0))
                .col(double(StepRuns::CostUsd).default(0.0))
                .col(big_integer(StepRuns::DurationMs).default(0))
                .col(big_integer_null(StepRuns::WorkflowId))
                .col(timestamp_with_time_zone_null(StepRuns::StartedAt))
                .col(timestamp_with_time_zone_null(StepRuns::FinishedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_step_runs_run")
                        .from(StepRuns::Table, StepRuns::RunId)
                        .to(RoutineRuns::Table, RoutineRuns::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_step_runs_run")
                .table(StepRuns::Table)
                .col(StepRuns::RunId)
                .col(StepRuns::Position)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(RoutineTriggers::Table)
                .add_column(boolean(RoutineTriggers::ConditionMet).default(false))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(StepRuns::Table).to_owned())
            .await?;
        m.drop_index(
            Index::drop()
                .name("ix_routine_runs_status_wake")
                .table(RoutineRuns::Table)
                .to_owned(),
        )
        .await?;
        for (old, new) in [
            ("queued", "pending"),
            ("success", "completed"),
            ("error", "failed"),
        ] {
            m.exec_stmt(
                Query::update()
                    .table(RoutineRuns::Table)
                    .value(RoutineRuns::Status, old)
                    .and_where(Expr::col(RoutineRuns::Status).eq(new))
                    .to_owned(),
            )
            .await?;
        }
        m.alter_table(
            Table::alter()
                .table(RoutineTriggers::Table)
                .drop_column(RoutineTriggers::ConditionMet)
                .to_owned(),
        )
        .await?;
        for c in [
            RoutineRuns::ChatId,
            RoutineRuns::StartedBy,
            RoutineRuns::Snapshot,
            RoutineRuns::CurrentStep,
            RoutineRuns::Owner,
            RoutineRuns::LeaseUntil,
            RoutineRuns::WakeAt,
            RoutineRuns::WaitingFor,
            RoutineRuns::ProgressMessageId,
            RoutineRuns::ParentRunId,
            RoutineRuns::Depth,
            RoutineRuns::CostWarned,
            RoutineRuns::Loops,
            RoutineRuns::FinishedAt,
        ] {
            m.alter_table(
                Table::alter()
                    .table(RoutineRuns::Table)
                    .drop_column(c)
                    .to_owned(),
            )
            .await?;
        }
        for c in [
            Routines::Description,
            Routines::Publication,
            Routines::Definition,
            Routines::Concurrent,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Routines::Table)
                    .drop_column(c)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
