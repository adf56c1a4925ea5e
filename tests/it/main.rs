//! Integration tests: one binary (fast to link), one module per area.
mod support;

mod admin_auth;
mod admin_overview;
mod binary;
mod chores;
mod chores_min;
mod cross;
mod durability;
mod foundation;
mod gates;
mod llm_hardening;
mod metrics;
mod playbooks;
mod recorded_manage;
mod recorded_replay;
mod recorded_save;
mod router_hardening;
mod routines;
mod run_control;
mod runs;
mod telegram;
mod telegram_hardening;
mod tokens;
mod ux_hardening;
mod workflows;
mod workflows_hardening;
