//! Leases on in-flight inbound messages and the replies they were answered with (issue 8).
//!
//! `inbound.owner` / `inbound.lease_until`: the process that holds the message and until when
//! (renewed by that process's heartbeat); recovery takes only rows whose lease lapsed.
//! `replies`: the reply decided for an inbound message, persisted before sending
//! (`sent_at` / `tg_message_ids` written after Telegram confirmed it), so recovery resends an
//! unconfirmed reply without calling the model again and never resends a confirmed one.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Inbound {
    Table,
    Owner,
    LeaseUntil,
}

#[derive(DeriveIden)]
enum Replies {
    Table,
    InboundId,
    ChatId,
    Html,
    Buttons,
    ReplyTo,
    CreatedAt,
    SentAt,
    TgMessageIds,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        m.alter_table(
            Table::alter()
                .table(Inbound::Table)
                .add_column(string_len_null(Inbound::Owner, 64))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Inbound::Table)
                .add_column(timestamp_with_time_zone_null(Inbound::LeaseUntil))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Replies::Table)
                .if_not_exists()
                .col(big_integer(Replies::InboundId).primary_key())
                .col(big_integer(Replies::ChatId))
                .col(text(Replies::Html))
                .col(text(Replies::Buttons))
                .col(big_integer_null(Replies::ReplyTo))
                .col(timestamp_with_time_zone(Replies::CreatedAt))
                .col(timestamp_with_time_zone_null(Replies::SentAt))
                .col(text_null(Replies::TgMessageIds))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Replies::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Inbound::Table)
                .drop_column(Inbound::LeaseUntil)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Inbound::Table)
                .drop_column(Inbound::Owner)
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
