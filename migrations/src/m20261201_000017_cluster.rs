//! Replicas on one database (issue 12).
//!
//! - `chat_leases`: which process works a chat (`owner`, `lease_until`, renewed by the owner's
//!   heartbeat). Only the holder runs turns for the chat and sends to it; a lapsed lease may be
//!   taken by any process (one conditional upsert).
//! - `leases`: named singleton leases (`poller`: the one long-poller; `job:<name>`: a system job
//!   that must not run on two replicas at once).
//! - `processes`: the live processes (id, host, start, last heartbeat): the bot-wide send rate is
//!   divided among the processes whose heartbeat is recent.
//! - `ix_inbound_status_chat` (`status`, `chat_id`, `id`): a replica's poll for pending messages
//!   of the chats it may work.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChatLeases {
    Table,
    ChatId,
    Owner,
    LeaseUntil,
}

#[derive(DeriveIden)]
enum Leases {
    Table,
    Name,
    Owner,
    LeaseUntil,
}

#[derive(DeriveIden)]
enum Processes {
    Table,
    Id,
    Host,
    StartedAt,
    BeatAt,
}

#[derive(DeriveIden)]
enum Inbound {
    Table,
    Status,
    ChatId,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ChatLeases::Table)
                .if_not_exists()
                .col(big_integer(ChatLeases::ChatId).primary_key())
                .col(string_len(ChatLeases::Owner, 64))
                .col(timestamp_with_time_zone(ChatLeases::LeaseUntil))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_chat_leases_owner")
                .table(ChatLeases::Table)
                .col(ChatLeases::Owner)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Leases::Table)
                .if_not_exists()
                .col(string_len(Leases::Name, 64).primary_key())
                .col(string_len(Leases::Owner, 64))
                .col(timestamp_with_time_zone(Leases::LeaseUntil))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Processes::Table)
                .if_not_exists()
                .col(string_len(Processes::Id, 64).primary_key())
                .col(string_len(Processes::Host, 255))
                .col(timestamp_with_time_zone(Processes::StartedAt))
                .col(timestamp_with_time_zone(Processes::BeatAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_inbound_status_chat")
                .table(Inbound::Table)
                .col(Inbound::Status)
                .col(Inbound::ChatId)
                .col(Inbound::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_inbound_status_chat")
                .table(Inbound::Table)
                .to_owned(),
        )
        .await?;
        for t in [
            ChatLeases::Table.into_iden(),
            Leases::Table.into_iden(),
            Processes::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
