//! Integration tests: one binary (fast to link), one module per area.
mod support;

mod binary;
mod chores;
mod chores_min;
mod cross;
mod durability;
mod foundation;
mod routines;
mod telegram;
mod tokens;
mod workflows;
