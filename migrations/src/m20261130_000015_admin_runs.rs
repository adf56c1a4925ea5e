//! The admin run list (issue 11, item 3 "Runs"): a chat's runs, newest first, optionally of one
//! status, paged with a keyset (`id < cursor`), `LIMIT 50`, must stay fast at 100,000 runs.
//!
//! - `routine_runs.chat_id` is backfilled from the run's routine where a row predates the column
//!   (every run written since carries it), so the list filters on `chat_id` alone.
//! - `ix_routine_runs_chat_id` on (`chat_id`, `id`) serves `WHERE chat_id = ? [AND id < ?]
//!   ORDER BY id DESC LIMIT n`; `ix_routine_runs_chat_status` on (`chat_id`, `status`, `id`)
//!   serves the same with `AND status = ?`; `ix_routine_runs_chat_routine` on (`chat_id`,
//!   `routine_id`, `id`) with `AND routine_id = ?` (a routine keeps few runs, so its status
//!   filter reads at most those).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RoutineRuns {
    Table,
    Id,
    RoutineId,
    ChatId,
    Status,
}

#[derive(DeriveIden)]
enum Routines {
    Table,
    Id,
    ChatId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // UPDATE routine_runs SET chat_id = (SELECT chat_id FROM routines
        //   WHERE routines.id = routine_runs.routine_id) WHERE chat_id IS NULL
        let of_routine = Query::select()
            .column((Routines::Table, Routines::ChatId))
            .from(Routines::Table)
            .and_where(
                Expr::col((Routines::Table, Routines::Id))
                    .equals((RoutineRuns::Table, RoutineRuns::RoutineId)),
            )
            .to_owned();
        m.exec_stmt(
            Query::update()
                .table(RoutineRuns::Table)
                .value(
                    RoutineRuns::ChatId,
                    Expr::SubQuery(None, Box::new(of_routine.into())),
                )
                .and_where(Expr::col(RoutineRuns::ChatId).is_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_routine_runs_chat_id")
                .table(RoutineRuns::Table)
                .col(RoutineRuns::ChatId)
                .col(RoutineRuns::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_routine_runs_chat_routine")
                .table(RoutineRuns::Table)
                .col(RoutineRuns::ChatId)
                .col(RoutineRuns::RoutineId)
                .col(RoutineRuns::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_routine_runs_chat_status")
                .table(RoutineRuns::Table)
                .col(RoutineRuns::ChatId)
                .col(RoutineRuns::Status)
                .col(RoutineRuns::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for name in [
            "ix_routine_runs_chat_status",
            "ix_routine_runs_chat_routine",
            "ix_routine_runs_chat_id",
        ] {
            m.drop_index(
                Index::drop()
                    .name(name)
                    .table(RoutineRuns::Table)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
