//! Entity `workflow_resolvers`: the members named as the only resolvers of a workflow with
//! eligibility `named` (e.g. a run's approval gate with `resolvers = ["Alice", "Bob"]`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_resolvers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workflow_id: i64,
    /// A named resolver (Telegram user id).
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
