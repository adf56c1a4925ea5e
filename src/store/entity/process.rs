//! Entity `processes`: the hearth processes on this database and their last heartbeat (issue 12).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "processes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The host name the process runs on (diagnostics).
    pub host: String,
    pub started_at: DateTimeUtc,
    /// The last heartbeat (UTC); a process is live while this is within one lease.
    pub beat_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
