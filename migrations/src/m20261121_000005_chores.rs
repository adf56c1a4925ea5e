//! Chores, full issue: per-chore anchor and rotation columns on `chores`, where reminders go
//! (`chats.reminders`), the completion history `chore_completions` (stats, leaderboards,
//! least-completed rotation, the weekly swap limit) and `chore_reminders` (one row per reminder
//! sent; its unique `key` is inserted before sending so a restart never sends twice).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Chores {
    Table,
    Anchor,
    Rotation,
    RotationMembers,
}

#[derive(DeriveIden)]
enum Chats {
    Table,
    Reminders,
}

#[derive(DeriveIden)]
enum ChoreCompletions {
    Table,
    Id,
    ChoreId,
    ChatId,
    UserId,
    AssigneeId,
    Points,
    DueAt,
    CompletedAt,
    OnTime,
    Swap,
}

#[derive(DeriveIden)]
enum ChoreReminders {
    Table,
    Id,
    Key,
    ChatId,
    Kind,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        m.alter_table(
            Table::alter()
                .table(Chores::Table)
                .add_column(string_len(Chores::Anchor, 16).default("due"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Chores::Table)
                .add_column(string_len(Chores::Rotation, 16).default("fixed"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Chores::Table)
                .add_column(text_null(Chores::RotationMembers))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Chats::Table)
                .add_column(string_len(Chats::Reminders, 8).default("group"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ChoreCompletions::Table)
                .if_not_exists()
                .col(
                    big_integer(ChoreCompletions::Id)
                        .auto_increment()
                        .primary_key(),
                )
                .col(big_integer(ChoreCompletions::ChoreId))
                .col(big_integer(ChoreCompletions::ChatId))
                .col(big_integer(ChoreCompletions::UserId))
                .col(big_integer_null(ChoreCompletions::AssigneeId))
                .col(integer(ChoreCompletions::Points))
                .col(timestamp_with_time_zone_null(ChoreCompletions::DueAt))
                .col(timestamp_with_time_zone(ChoreCompletions::CompletedAt))
                .col(boolean(ChoreCompletions::OnTime))
                .col(boolean(ChoreCompletions::Swap))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_chore_completions_chat_at")
                .table(ChoreCompletions::Table)
                .col(ChoreCompletions::ChatId)
                .col(ChoreCompletions::CompletedAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_chore_completions_chore")
                .table(ChoreCompletions::Table)
                .col(ChoreCompletions::ChoreId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ChoreReminders::Table)
                .if_not_exists()
                .col(
                    big_integer(ChoreReminders::Id)
                        .auto_increment()
                        .primary_key(),
                )
                .col(string_len(ChoreReminders::Key, 128))
                .col(big_integer(ChoreReminders::ChatId))
                .col(string_len(ChoreReminders::Kind, 24))
                .col(timestamp_with_time_zone(ChoreReminders::SentAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_chore_reminders_key")
                .table(ChoreReminders::Table)
                .col(ChoreReminders::Key)
                .unique()
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ChoreReminders::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(ChoreCompletions::Table).to_owned())
            .await?;
        for col in [Chores::Anchor, Chores::Rotation, Chores::RotationMembers] {
            m.alter_table(
                Table::alter()
                    .table(Chores::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        m.alter_table(
            Table::alter()
                .table(Chats::Table)
                .drop_column(Chats::Reminders)
                .to_owned(),
        )
        .await
    }
}
