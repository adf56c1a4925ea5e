//! Condition triggers (issue 9, item 13): a routine fires when a hearth fact of its chat crosses
//! a threshold, evaluated each minute by the scheduler ([`evaluate`]), once per crossing from
//! false to true (`routine_triggers.condition_met`, a conditional update, so two processes fire
//! it once), with the facts as the run's initial inputs. With replicas the scheduler evaluates
//! on one process at a time (the lease `job:routine-conditions`, `app::jobs`): an evaluator whose
//! clock is behind would otherwise re-arm a crossing another just fired, and it would fire again.
//!
//! Grammar (trigger strings, case-insensitive):
//! - `when overdue > N` (also `when more than N chores are overdue`): more than N open chores of
//!   the chat are overdue. Stored spec `overdue > N`.
//! - `when a chore overdue 4h` (also `when a chore is overdue for 4h`, `when any chore overdue
//!   2d`): some open chore has been overdue for at least that long (minutes `m`, hours `h`,
//!   days `d`; 1 minute to 30 days). Stored spec `overdue_for <seconds>`.
//!
//! Uses: services (store, clock), chores (overdue rule), routines::runner.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{
    runner::{self, StartRun, Started},
    RoutineError,
};
use crate::{
    services::Services,
    store::{RunSource, StoreResult},
};

/// The accepted forms, for error messages.
pub const CONDITION_HELP: &str =
    "'when overdue > 3' (more than 3 chores overdue) or 'when a chore overdue 4h' (a chore overdue for 4 hours or more)";

/// Longest overdue duration a condition may name: 30 days.
const MAX_FOR: Duration = Duration::from_secs(30 * 86_400);

/// A condition over a chat's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// More than this many open chores are overdue.
    OverdueMore(u32),
    /// Some open chore has been overdue for at least this long.
    OverdueFor(Duration),
}

/// True when `rest` (the words after `when`) reads as a condition rather than an event kind
/// (`when chore_overdue` stays an event trigger).
pub fn looks_like(rest: &str) -> bool {
    let r = rest.trim().to_ascii_lowercase();
    ["overdue", "a chore", "any chore", "more than", "chore "]
        .iter()
        .any(|p| r.starts_with(p))
}

impl Condition {
    /// Parse the words after `when` (see the module grammar).
    ///
    /// Errors: [`RoutineError::Invalid`] on field `trigger`, naming the accepted forms.
    pub fn parse(rest: &str) -> Result<Condition, RoutineError> {
        let lower = rest.trim().to_ascii_lowercase();
        let words: Vec<&str> = lower
            .split_whitespace()
            .filter(|w| {
                !matches!(
                    *w,
                    "a" | "an" | "any" | "is" | "are" | "has" | "been" | "for"
                )
            })
            .collect();
        let bad = |why: &str| {
            RoutineError::invalid(
                "trigger",
                format!(
                    "'when {}' {why}; write {CONDITION_HELP}",
                    crate::context::clip(rest.trim(), 40)
                ),
            )
        };
        let count = |w: &str| -> Result<u32, RoutineError> {
            w.parse::<u32>()
                .map_err(|_| bad("needs a whole number of chores"))
        };
        match words.as_slice() {
            ["overdue", ">", n] => Ok(Condition::OverdueMore(count(n)?)),
            ["overdue", n] if n.starts_with('>') && !n.starts_with(">=") => {
                Ok(Condition::OverdueMore(count(&n[1..])?))
            }
            ["more", "than", n, "chores" | "chore", "overdue"] => {
                Ok(Condition::OverdueMore(count(n)?))
            }
            ["chore", "overdue", d @ ..] if !d.is_empty() => {
                let d = crate::schedule::parse_span(&d.join(" "))
                    .ok_or_else(|| bad("needs a duration like 30m, 4h or 2d after 'overdue'"))?;
                if d < Duration::from_secs(60) || d > MAX_FOR {
                    return Err(bad("needs a duration from 1m to 30d"));
                }
                Ok(Condition::OverdueFor(d))
            }
            _ => Err(bad("is not understood")),
        }
    }

    /// The stored `spec` column: `overdue > N` or `overdue_for <seconds>`.
    pub fn stored(&self) -> String {
        match self {
            Condition::OverdueMore(n) => format!("overdue > {n}"),
            Condition::OverdueFor(d) => format!("overdue_for {}", d.as_secs()),
        }
    }

    /// Rebuild from the stored spec.
    pub fn from_stored(spec: &str) -> Option<Condition> {
        let mut w = spec.split_whitespace();
        match (w.next()?, w.next()?, w.next()) {
            ("overdue", ">", Some(n)) => n.parse().ok().map(Condition::OverdueMore),
            ("overdue_for", s, None) => s
                .parse()
                .ok()
                .map(|s| Condition::OverdueFor(Duration::from_secs(s))),
            _ => None,
        }
    }

    /// Human form, e.g. "when overdue > 3", "when a chore overdue 4h".
    pub fn describe(&self) -> String {
        match self {
            Condition::OverdueMore(n) => format!("when overdue > {n}"),
            Condition::OverdueFor(d) => format!("when a chore overdue {}", span(*d)),
        }
    }

    /// Whether the condition holds over `facts`.
    pub fn holds(&self, facts: &Facts) -> bool {
        match self {
            Condition::OverdueMore(n) => facts.overdue > *n as usize,
            Condition::OverdueFor(d) => facts
                .longest_overdue
                .is_some_and(|l| l.num_seconds() >= d.as_secs() as i64),
        }
    }
}

/// `14400 s` → "4h", `86400 s` → "1d", `5400 s` → "1h30m".
fn span(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        return format!("{}d", s / 86_400);
    }
    crate::schedule::format_duration(d)
}

/// The facts of a chat a condition looks at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Open chores past their due time.
    pub overdue: usize,
    /// How long the oldest overdue chore has been overdue.
    pub longest_overdue: Option<chrono::Duration>,
    /// Titles of the overdue chores, oldest due first.
    pub titles: Vec<String>,
}

impl Facts {
    /// The run's initial inputs: `overdue` (count), `overdue_hours` (the oldest, whole hours),
    /// `chores` (titles, comma separated).
    pub fn inputs(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("overdue".into(), Value::from(self.overdue as u64));
        m.insert(
            "overdue_hours".into(),
            Value::from(self.longest_overdue.map_or(0, |d| d.num_hours())),
        );
        m.insert("chores".into(), Value::from(self.titles.join(", ")));
        m
    }
}

/// The chat's facts at `now`.
///
/// Errors: storage.
pub async fn facts(svc: &Services, chat_id: i64, now: DateTime<Utc>) -> StoreResult<Facts> {
    let mut overdue: Vec<_> = svc
        .store
        .open_chores(chat_id)
        .await?
        .into_iter()
        .filter(|c| crate::chores::is_overdue(c, now))
        .collect();
    overdue.sort_by_key(|c| c.next_due);
    Ok(Facts {
        overdue: overdue.len(),
        longest_overdue: overdue.first().and_then(|c| c.next_due).map(|d| now - d),
        titles: overdue.into_iter().map(|c| c.title).collect(),
    })
}

/// One crossing found by [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub trigger_id: i64,
    pub routine_id: i64,
    pub chat_id: i64,
    pub facts: Facts,
    /// What `start_run` did, or its error message.
    pub started: Result<Started, String>,
}

/// Evaluate every condition trigger at `now`: a trigger whose condition became true (its
/// `condition_met` was false) fires one run, with [`Facts::inputs`] as initial inputs; one that
/// became false is re-armed. Paused and draft routines are re-armed but do not fire (start_run
/// records them). Returns the fires. Run each minute by the scheduler.
///
/// Errors: storage (a failed start is reported in [`Fired::started`], not here).
pub async fn evaluate(svc: &Services, now: DateTime<Utc>) -> StoreResult<Vec<Fired>> {
    let mut fired = Vec::new();
    let mut cache: std::collections::HashMap<i64, Facts> = Default::default();
    for (t, r) in svc.store.condition_triggers().await? {
        let Some(cond) = Condition::from_stored(&t.spec) else {
            tracing::warn!(trigger_id = t.id, "unreadable condition trigger");
            continue;
        };
        let f = match cache.get(&r.chat_id) {
            Some(f) => f.clone(),
            None => {
                let f = facts(svc, r.chat_id, now).await?;
                cache.insert(r.chat_id, f.clone());
                f
            }
        };
        let holds = cond.holds(&f);
        if holds == t.condition_met {
            continue;
        }
        // the crossing is claimed by one conditional update: one process fires it
        if !svc.store.cross_condition(t.id, !holds, holds, now).await? || !holds {
            continue;
        }
        tracing::info!(
            trigger_id = t.id,
            routine_id = r.id,
            "condition trigger crossed"
        );
        let started = runner::start_run(
            svc,
            StartRun {
                routine_id: r.id,
                source: RunSource::Condition,
                trigger_id: Some(t.id),
                started_by: r.owner_id,
                inputs: f.inputs(),
                scheduled_for: Some(now),
                catch_up: false,
                parent_run_id: None,
                depth: 0,
            },
        )
        .await
        .map_err(|e| e.to_string());
        if let Err(e) = &started {
            tracing::warn!(trigger_id = t.id, error = %e, "condition trigger could not start a run");
        }
        fired.push(Fired {
            trigger_id: t.id,
            routine_id: r.id,
            chat_id: r.chat_id,
            facts: f,
            started,
        });
    }
    Ok(fired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_two_forms_and_round_trips() {
        let ok = |s: &str| Condition::parse(s).unwrap();
        assert_eq!(ok("overdue > 3"), Condition::OverdueMore(3));
        assert_eq!(ok("overdue >3"), Condition::OverdueMore(3));
        assert_eq!(
            ok("more than 2 chores are overdue"),
            Condition::OverdueMore(2)
        );
        assert_eq!(
            ok("a chore overdue 4h"),
            Condition::OverdueFor(Duration::from_secs(4 * 3600))
        );
        assert_eq!(
            ok("a chore is overdue for 2 days"),
            Condition::OverdueFor(Duration::from_secs(2 * 86_400))
        );
        assert_eq!(
            ok("any chore overdue 1h30m"),
            Condition::OverdueFor(Duration::from_secs(5400))
        );
        for c in [ok("overdue > 3"), ok("a chore overdue 4h")] {
            assert_eq!(Condition::from_stored(&c.stored()), Some(c));
        }
        assert_eq!(
            ok("a chore overdue 4h").describe(),
            "when a chore overdue 4h"
        );
        assert_eq!(
            ok("a chore overdue 2d").describe(),
            "when a chore overdue 2d"
        );
        let err = Condition::parse("overdue >= 3").unwrap_err().to_string();
        assert!(err.contains("when overdue > 3"), "{err}");
        let err = Condition::parse("a chore overdue soon")
            .unwrap_err()
            .to_string();
        assert!(err.contains("30m, 4h or 2d"), "{err}");
        assert!(Condition::parse("a chore overdue 40d").is_err());
        assert!(looks_like("overdue > 3") && looks_like("a chore overdue 4h"));
        assert!(!looks_like("chore_overdue assignee_id=4"));
    }
}
