//! Integration tests: one binary (fast to link), one module per area.
mod support;

mod chores_min;
mod foundation;
mod workflows;
