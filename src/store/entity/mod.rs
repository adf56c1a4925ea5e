//! sea-orm entities, one file per table (schema lives in the `migrations` crate).
pub mod chat;
pub mod chore;
pub mod chore_completion;
pub mod chore_reminder;
pub mod inbound;
pub mod kv;
pub mod member;
pub mod message;
pub mod reply;
pub mod routine;
pub mod routine_run;
pub mod routine_trigger;
pub mod step_run;
pub mod turn;
pub mod user;
pub mod workflow;
pub mod workflow_audit;
