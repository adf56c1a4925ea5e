//! Recorded routines (issue 10): every tool call of a turn, and what a turn needs to be saved.
//!
//! - `tool_calls`: one row per tool call the model asked for in a turn, in order (`position`
//!   from 0): name, JSON arguments as sent, a clipped result, `status` (`ran` | `error` |
//!   `held` — a destructive call waiting for its member's confirmation | `refused` — outside
//!   a replay's tool set, or withheld | `repeat` — the same call again in one turn) and whether
//!   the tool is destructive. Written with the turn in one transaction.
//! - `turns.actor_id`, `turns.request`, `turns.fingerprint`: who the turn acted for (Telegram
//!   user id), the member's message as the model saw it, and the ordered tool names with their
//!   argument keys of its successful calls (`chore_list();chore_update(id,owner)`), for `/save`
//!   and the suggestions.
//! - `routines.source_turn_id`: the turn a recorded routine was saved from (not exported).
//!
//! Portable: sea-query builders only.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Turns {
    Table,
    Id,
    ActorId,
    Request,
    Fingerprint,
    ChatId,
}

#[derive(DeriveIden)]
enum Routines {
    Table,
    SourceTurnId,
}

#[derive(DeriveIden)]
enum ToolCalls {
    Table,
    Id,
    TurnId,
    ChatId,
    Position,
    Name,
    Arguments,
    Result,
    Status,
    Destructive,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            big_integer_null(Turns::ActorId),
            text_null(Turns::Request),
            string_len_null(Turns::Fingerprint, 512),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Turns::Table)
                    .add_column(col)
                    .to_owned(),
            )
            .await?;
        }
        m.alter_table(
            Table::alter()
                .table(Routines::Table)
                .add_column(big_integer_null(Routines::SourceTurnId))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ToolCalls::Table)
                .if_not_exists()
                .col(big_integer(ToolCalls::Id).auto_increment().primary_key())
                .col(big_integer(ToolCalls::TurnId))
                .col(big_integer(ToolCalls::ChatId))
                .col(integer(ToolCalls::Position))
                .col(string_len(ToolCalls::Name, 64))
                .col(text(ToolCalls::Arguments))
                .col(text(ToolCalls::Result))
                .col(string_len(ToolCalls::Status, 16))
                .col(boolean(ToolCalls::Destructive))
                .col(timestamp_with_time_zone(ToolCalls::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_tool_calls_turn")
                        .from(ToolCalls::Table, ToolCalls::TurnId)
                        .to(Turns::Table, Turns::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_tool_calls_turn")
                .table(ToolCalls::Table)
                .col(ToolCalls::TurnId)
                .col(ToolCalls::Position)
                .to_owned(),
        )
        .await?;
        // `/save` and the suggestions: a member's latest turns in a chat
        m.create_index(
            Index::create()
                .name("ix_turns_chat_actor")
                .table(Turns::Table)
                .col(Turns::ChatId)
                .col(Turns::ActorId)
                .col(Turns::Id)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_turns_chat_actor")
                .table(Turns::Table)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(ToolCalls::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Routines::Table)
                .drop_column(Routines::SourceTurnId)
                .to_owned(),
        )
        .await?;
        for c in [Turns::ActorId, Turns::Request, Turns::Fingerprint] {
            m.alter_table(Table::alter().table(Turns::Table).drop_column(c).to_owned())
                .await?;
        }
        Ok(())
    }
}
