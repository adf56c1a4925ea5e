//! Schema migrations for hearth, applied at start-up (`hearth migrate` applies them alone).
//!
//! Owns: every table and index. Portable across SQLite and Postgres: only sea-query schema
//! builders, no raw SQL. Timestamps are stored as UTC.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_foundation;
mod m20261121_000002_workflows;
mod m20261121_000004_routines;
mod m20261121_000005_chores;
mod m20261130_000006_leases;
mod m20261130_000008_routine_names;
mod m20261130_000009_turn_text;
mod m20261130_000010_runs;
mod m20261130_000012_gate_quorum;
mod m20261130_000013_recorded;
mod m20261130_000014_admin;
mod m20261130_000015_admin_runs;
mod m20261130_000016_overview;
mod m20261201_000017_cluster;

/// The ordered list of migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_foundation::Migration),
            Box::new(m20261121_000002_workflows::Migration),
            Box::new(m20261121_000004_routines::Migration),
            Box::new(m20261121_000005_chores::Migration),
            Box::new(m20261130_000006_leases::Migration),
            Box::new(m20261130_000008_routine_names::Migration),
            Box::new(m20261130_000009_turn_text::Migration),
            Box::new(m20261130_000010_runs::Migration),
            Box::new(m20261130_000012_gate_quorum::Migration),
            Box::new(m20261130_000013_recorded::Migration),
            Box::new(m20261130_000014_admin::Migration),
            Box::new(m20261130_000015_admin_runs::Migration),
            Box::new(m20261130_000016_overview::Migration),
            Box::new(m20261201_000017_cluster::Migration),
        ]
    }
}
