//! Approval workflows and the chores they act on: `chores`, `workflows`, `workflow_audit`.
//!
//! `chores` is shaped for the full chores domain (personal chores with a partner, recurrence,
//! points); the workflow issue uses only part of it. Portable: sea-query builders only.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Chores {
    Table,
    Id,
    ChatId,
    Title,
    Description,
    Personal,
    OwnerId,
    PartnerId,
    AssigneeId,
    Status,
    Recurrence,
    NextDue,
    Points,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    CompletedAt,
    CompletedBy,
    ArchivedAt,
}

#[derive(DeriveIden)]
enum Workflows {
    Table,
    Id,
    ChatId,
    Kind,
    Status,
    RequesterId,
    TargetId,
    TargetTitle,
    Eligibility,
    PartnerId,
    CreatedAt,
    ExpiresAt,
    ResolvedAt,
    ResolverId,
    Reason,
    Metadata,
    NoticeChatId,
    NoticeMessageId,
}

#[derive(DeriveIden)]
enum WorkflowAudit {
    Table,
    Id,
    WorkflowId,
    ActorId,
    At,
    FromStatus,
    ToStatus,
    Reason,
    Via,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Chores::Table)
                .if_not_exists()
                .col(big_integer(Chores::Id).auto_increment().primary_key())
                .col(big_integer(Chores::ChatId))
                .col(string(Chores::Title))
                .col(text_null(Chores::Description))
                .col(boolean(Chores::Personal))
                .col(big_integer_null(Chores::OwnerId))
                .col(big_integer_null(Chores::PartnerId))
                .col(big_integer_null(Chores::AssigneeId))
                .col(string_len(Chores::Status, 32))
                .col(text_null(Chores::Recurrence))
                .col(timestamp_with_time_zone_null(Chores::NextDue))
                .col(integer(Chores::Points))
                .col(big_integer(Chores::CreatedBy))
                .col(timestamp_with_time_zone(Chores::CreatedAt))
                .col(timestamp_with_time_zone(Chores::UpdatedAt))
                .col(timestamp_with_time_zone_null(Chores::CompletedAt))
                .col(big_integer_null(Chores::CompletedBy))
                .col(timestamp_with_time_zone_null(Chores::ArchivedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_chores_chat_status")
                .table(Chores::Table)
                .col(Chores::ChatId)
                .col(Chores::Status)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Workflows::Table)
                .if_not_exists()
                .col(big_integer(Workflows::Id).auto_increment().primary_key())
                .col(big_integer(Workflows::ChatId))
                .col(string_len(Workflows::Kind, 32))
                .col(string_len(Workflows::Status, 16))
                .col(big_integer(Workflows::RequesterId))
                .col(big_integer_null(Workflows::TargetId))
                .col(string(Workflows::TargetTitle))
                .col(string_len(Workflows::Eligibility, 16))
                .col(big_integer_null(Workflows::PartnerId))
                .col(timestamp_with_time_zone(Workflows::CreatedAt))
                .col(timestamp_with_time_zone(Workflows::ExpiresAt))
                .col(timestamp_with_time_zone_null(Workflows::ResolvedAt))
                .col(big_integer_null(Workflows::ResolverId))
                .col(text_null(Workflows::Reason))
                .col(text_null(Workflows::Metadata))
                .col(big_integer_null(Workflows::NoticeChatId))
                .col(big_integer_null(Workflows::NoticeMessageId))
                .to_owned(),
        )
        .await?;
        // actionable lists: pending workflows of a chat, in creation order
        m.create_index(
            Index::create()
                .name("ix_workflows_chat_status")
                .table(Workflows::Table)
                .col(Workflows::ChatId)
                .col(Workflows::Status)
                .to_owned(),
        )
        .await?;
        // the expiry sweep: pending workflows by expiry
        m.create_index(
            Index::create()
                .name("ix_workflows_status_expires")
                .table(Workflows::Table)
                .col(Workflows::Status)
                .col(Workflows::ExpiresAt)
                .to_owned(),
        )
        .await?;
        // personal verifications, listed only to the partner
        m.create_index(
            Index::create()
                .name("ix_workflows_partner_status")
                .table(Workflows::Table)
                .col(Workflows::PartnerId)
                .col(Workflows::Status)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_workflows_target")
                .table(Workflows::Table)
                .col(Workflows::TargetId)
                .col(Workflows::Status)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WorkflowAudit::Table)
                .if_not_exists()
                .col(
                    big_integer(WorkflowAudit::Id)
                        .auto_increment()
                        .primary_key(),
                )
                .col(big_integer(WorkflowAudit::WorkflowId))
                .col(big_integer_null(WorkflowAudit::ActorId))
                .col(timestamp_with_time_zone(WorkflowAudit::At))
                .col(string_len(WorkflowAudit::FromStatus, 16))
                .col(string_len(WorkflowAudit::ToStatus, 16))
                .col(text_null(WorkflowAudit::Reason))
                .col(string_len(WorkflowAudit::Via, 16))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_workflow_audit_workflow")
                .table(WorkflowAudit::Table)
                .col(WorkflowAudit::WorkflowId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            WorkflowAudit::Table.into_iden(),
            Workflows::Table.into_iden(),
            Chores::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
