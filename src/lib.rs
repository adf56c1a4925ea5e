//! hearth: a group-chat agent for households and teams.
//!
//! Layers (an arrow points to what a module may use; see `../shared/DESIGN.md`):
//! `app` → adapters (`telegram`, `console`, `http`) → `core` → services (`agent`, `context`, …)
//! → `store` → `migrations`. Plain types cross layers through [`types`] and the [`messenger`] port.

pub mod agent;
pub mod app;
pub mod casefold;
pub mod chores;
pub mod clock;
pub mod config;
pub mod console;
pub mod context;
pub mod core;
pub mod events;
pub mod format;
pub mod http;
pub mod messenger;
pub mod metrics;
pub mod outbox;
pub mod plots;
pub mod router;
pub mod routines;
pub mod schedule;
pub mod scheduler;
pub mod services;
pub mod store;
pub mod telegram;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod types;
pub mod workflow;
