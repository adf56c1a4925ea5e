//! Approval gates of runs (issue 9): named resolvers and a quorum on any workflow.
//!
//! - `workflows.required`: distinct approvals needed to approve (default 1; one rejection always
//!   decides). A partial approval is an audit row `pending → pending` with its actor.
//! - `workflow_resolvers`: the members named as the only resolvers of a workflow with
//!   eligibility `named` (one row per member), so the actionable list, `/approvals`, buttons and
//!   "approve both" filter eligibility in their queries.
//!
//! Portable: sea-query builders only.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Workflows {
    Table,
    Id,
    Required,
}

#[derive(DeriveIden)]
enum WorkflowResolvers {
    Table,
    WorkflowId,
    UserId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Workflows::Table)
                .add_column(integer(Workflows::Required).default(1))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WorkflowResolvers::Table)
                .if_not_exists()
                .col(big_integer(WorkflowResolvers::WorkflowId))
                .col(big_integer(WorkflowResolvers::UserId))
                .primary_key(
                    Index::create()
                        .col(WorkflowResolvers::WorkflowId)
                        .col(WorkflowResolvers::UserId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_workflow_resolvers_workflow")
                        .from(WorkflowResolvers::Table, WorkflowResolvers::WorkflowId)
                        .to(Workflows::Table, Workflows::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // the viewer filter: `EXISTS (… WHERE workflow_id = ? AND user_id = viewer)`
        m.create_index(
            Index::create()
                .name("ix_workflow_resolvers_user")
                .table(WorkflowResolvers::Table)
                .col(WorkflowResolvers::UserId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(WorkflowResolvers::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Workflows::Table)
                .drop_column(Workflows::Required)
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
