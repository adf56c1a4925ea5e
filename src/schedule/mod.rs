//! Schedule time math for hearth: cron expressions, interval triggers,
//! one-off times, chore recurrences and the DST rules they share.
//!
//! Everything here is pure: no I/O and no clock reads. Functions that need the
//! current time take `now: DateTime<Utc>` from the caller's injectable clock.
//!
//! # Units
//! * Instants are [`DateTime<Utc>`](chrono::DateTime) in and out.
//! * Wall-clock values ([`NaiveDateTime`](chrono::NaiveDateTime),
//!   [`NaiveTime`](chrono::NaiveTime)) are **local** to a [`Tz`] that is always
//!   passed explicitly; [`resolve_local`] turns them into UTC.
//! * Intervals are elapsed [`std::time::Duration`]s, unaffected by DST.
//!
//! # Daylight saving, in one place
//! Every wall-clock computation goes through [`resolve_local`]:
//! * a wall time that happens twice (fall-back) means its **first** occurrence,
//!   so a daily 01:30 chore or `30 1 * * *` cron fires once that day — schedulers
//!   that fired each occurrence were seen to run jobs twice at fall-back, and
//!   Vixie cron likewise does not re-run fixed-time jobs in the repeated hour;
//! * a wall time that does not exist (spring-forward gap) moves to the **first
//!   instant after the gap** (02:30 → 03:00 EDT in New York), as Vixie cron runs
//!   jobs of a skipped hour right after the jump, instead of silently skipping
//!   that day.
//!
//! Cron day matching follows Vixie cron: if both day-of-month and day-of-week
//! are restricted, either may match.
//!
//! # Errors
//! All parsers return [`ScheduleError`], whose messages start with the input
//! they are about (`interval:`, `cron:`, `at:`, `zone:`, `recurrence:`,
//! `title:`, `time:`) and state the rule that was broken, ready to show to
//! the user.
#![warn(missing_docs)]

mod at;
mod cron;
mod error;
mod every;
mod recurrence;
mod text;
mod zone;

#[cfg(test)]
mod proptests;

pub use chrono_tz::Tz;

pub use at::{parse_at, DEFAULT_AT_TIME};
pub use cron::CronSpec;
pub use error::{Field, ScheduleError};
pub use every::{format_duration, parse_every, parse_span, MAX_INTERVAL, MIN_INTERVAL};
pub use recurrence::{split_title_recurrence, Recurrence};
pub use text::parse_time_of_day;
pub use zone::{parse_zone, resolve_local};
