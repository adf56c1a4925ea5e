//! Entity `workflows`.
use sea_orm::entity::prelude::*;

use crate::store::{Eligibility, WorkflowKind, WorkflowStatus};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workflows")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The group (or, for a personal verification, the requester's private chat).
    pub chat_id: i64,
    pub kind: WorkflowKind,
    pub status: WorkflowStatus,
    pub requester_id: i64,
    pub target_id: Option<i64>,
    /// The target's title when the request was made.
    pub target_title: String,
    /// Who may resolve.
    pub eligibility: Eligibility,
    /// The named resolver for "partner" (for "named": the `workflow_resolvers` rows).
    pub partner_id: Option<i64>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    pub resolver_id: Option<i64>,
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub metadata: Option<String>,
    /// Where the request message with buttons was sent (edited on resolution).
    pub notice_chat_id: Option<i64>,
    pub notice_message_id: Option<i64>,
    /// Distinct approvals needed to approve (a quorum; 1 for most). One rejection decides; a
    /// partial approval is an audit row `pending → pending` with its actor.
    pub required: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
