//! hearth's pure text parsers, compiled from the main crate's own source files (`#[path]`) so
//! the fuzz build does not instrument hearth's whole dependency tree (sea-orm, teloxide, axum …)
//! — the parsers are std / chrono / chrono-tz / croner only. Nothing here is a copy.
#![allow(dead_code, unused_imports)]

/// `src/schedule`: recurrence phrases, cron, `every`, `at`, time zones.
#[path = "../../src/schedule/mod.rs"]
pub mod schedule;

/// `src/workflow/parse.rs`: approval replies, /approve and /reject arguments, callback data.
#[path = "../../src/workflow/parse.rs"]
pub mod approval;

/// `src/casefold.rs`: case-insensitive search with offsets into the original text.
#[path = "../../src/casefold.rs"]
pub mod casefold;
