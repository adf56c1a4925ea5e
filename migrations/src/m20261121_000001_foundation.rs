//! Foundation tables: chats, users, members, the context log, inbound updates, turns, kv.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Chats {
    Table,
    Id,
    Kind,
    Title,
    Timezone,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    FirstName,
    Username,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    Id,
    ChatId,
    UserId,
    Role,
    Active,
    JoinedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    ChatId,
    SenderUserId,
    SenderName,
    FromBot,
    Text,
    TgMessageId,
    ReplyTo,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Inbound {
    Table,
    Id,
    ChatId,
    MessageId,
    UpdateId,
    Payload,
    Status,
    Attempts,
    ReceivedAt,
    DoneAt,
}

#[derive(DeriveIden)]
enum Turns {
    Table,
    Id,
    ChatId,
    Source,
    Model,
    PromptTokens,
    CompletionTokens,
    Steps,
    Outcome,
    StartedAt,
    DurationMs,
}

#[derive(DeriveIden)]
enum Kv {
    Table,
    Key,
    Value,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Chats::Table)
                .if_not_exists()
                .col(big_integer(Chats::Id).primary_key())
                .col(string_len(Chats::Kind, 16))
                .col(string(Chats::Title))
                .col(string_len(Chats::Timezone, 64))
                .col(timestamp_with_time_zone(Chats::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Users::Table)
                .if_not_exists()
                .col(big_integer(Users::Id).primary_key())
                .col(string(Users::FirstName))
                .col(string_null(Users::Username))
                .col(timestamp_with_time_zone(Users::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Members::Table)
                .if_not_exists()
                .col(big_integer(Members::Id).auto_increment().primary_key())
                .col(big_integer(Members::ChatId))
                .col(big_integer(Members::UserId))
                .col(string_len(Members::Role, 16))
                .col(boolean(Members::Active))
                .col(timestamp_with_time_zone(Members::JoinedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_members_chat_user")
                .table(Members::Table)
                .col(Members::ChatId)
                .col(Members::UserId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Messages::Table)
                .if_not_exists()
                .col(big_integer(Messages::Id).auto_increment().primary_key())
                .col(big_integer(Messages::ChatId))
                .col(big_integer_null(Messages::SenderUserId))
                .col(string(Messages::SenderName))
                .col(boolean(Messages::FromBot))
                .col(text(Messages::Text))
                .col(big_integer_null(Messages::TgMessageId))
                .col(big_integer_null(Messages::ReplyTo))
                .col(timestamp_with_time_zone(Messages::CreatedAt))
                .to_owned(),
        )
        .await?;
        // The window query is `WHERE chat_id = ? AND created_at >= ? ORDER BY id DESC LIMIT n`:
        // this index keeps it proportional to the window, never to the chat's history.
        m.create_index(
            Index::create()
                .name("ix_messages_chat_id_desc")
                .table(Messages::Table)
                .col(Messages::ChatId)
                .col(Messages::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_messages_chat_tg")
                .table(Messages::Table)
                .col(Messages::ChatId)
                .col(Messages::TgMessageId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Inbound::Table)
                .if_not_exists()
                .col(big_integer(Inbound::Id).auto_increment().primary_key())
                .col(big_integer(Inbound::ChatId))
                .col(big_integer(Inbound::MessageId))
                .col(big_integer_null(Inbound::UpdateId))
                .col(text(Inbound::Payload))
                .col(string_len(Inbound::Status, 16))
                .col(integer(Inbound::Attempts))
                .col(timestamp_with_time_zone(Inbound::ReceivedAt))
                .col(timestamp_with_time_zone_null(Inbound::DoneAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_inbound_chat_message")
                .table(Inbound::Table)
                .col(Inbound::ChatId)
                .col(Inbound::MessageId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_inbound_status_received")
                .table(Inbound::Table)
                .col(Inbound::Status)
                .col(Inbound::ReceivedAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Turns::Table)
                .if_not_exists()
                .col(big_integer(Turns::Id).auto_increment().primary_key())
                .col(big_integer(Turns::ChatId))
                .col(string_len(Turns::Source, 32))
                .col(string(Turns::Model))
                .col(integer(Turns::PromptTokens))
                .col(integer(Turns::CompletionTokens))
                .col(integer(Turns::Steps))
                .col(string(Turns::Outcome))
                .col(timestamp_with_time_zone(Turns::StartedAt))
                .col(big_integer(Turns::DurationMs))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_turns_chat_started")
                .table(Turns::Table)
                .col(Turns::ChatId)
                .col(Turns::StartedAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Kv::Table)
                .if_not_exists()
                .col(string(Kv::Key).primary_key())
                .col(text(Kv::Value))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            Kv::Table.into_iden(),
            Turns::Table.into_iden(),
            Inbound::Table.into_iden(),
            Messages::Table.into_iden(),
            Members::Table.into_iden(),
            Users::Table.into_iden(),
            Chats::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
