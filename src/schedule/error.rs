//! The error type shared by every parser in the schedule module.

use std::fmt;

/// Which user-facing input an error is about.
///
/// Its [`Display`](fmt::Display) form is the lowercase prefix every
/// [`ScheduleError`] message starts with (`"interval"`, `"cron"`, …), so a chat
/// reply can point at the part of the command that was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// An interval trigger such as `every 25 minutes` ([`parse_every`](super::parse_every)).
    Interval,
    /// A 5-field cron expression ([`CronSpec::parse`](super::CronSpec::parse)).
    Cron,
    /// A one-off time such as `tomorrow 09:00` ([`parse_at`](super::parse_at)).
    At,
    /// An IANA time-zone name ([`parse_zone`](super::parse_zone)).
    Zone,
    /// A chore recurrence phrase ([`Recurrence::parse`](super::Recurrence::parse)).
    Recurrence,
    /// A chore title ([`split_title_recurrence`](super::split_title_recurrence)).
    Title,
    /// A bare time of day ([`parse_time_of_day`](super::parse_time_of_day)).
    Time,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Interval => "interval",
            Field::Cron => "cron",
            Field::At => "at",
            Field::Zone => "zone",
            Field::Recurrence => "recurrence",
            Field::Title => "title",
            Field::Time => "time",
        })
    }
}

/// Everything that can go wrong while parsing schedules.
///
/// Every message starts with the [`Field`] it is about, followed by the rule
/// that was broken, and is meant to be shown to the user as is, e.g.
/// `interval: 10s is too short; the minimum is 30s`. User input echoed in a
/// message is cut to 60 characters.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ScheduleError {
    /// An interval below [`MIN_INTERVAL`](super::MIN_INTERVAL).
    #[error("interval: {given} is too short; the minimum is {min}")]
    IntervalTooShort {
        /// The interval that was asked for, normalized (`"10s"`).
        given: String,
        /// The minimum (`"30s"`).
        min: String,
    },
    /// An interval above [`MAX_INTERVAL`](super::MAX_INTERVAL).
    #[error("interval: {given} is too long; the maximum is {max}")]
    IntervalTooLong {
        /// The interval that was asked for, normalized (`"25h"`).
        given: String,
        /// The maximum (`"24h"`).
        max: String,
    },
    /// A cron expression without exactly five fields (seconds and years are refused).
    #[error("cron: expected 5 fields (minute hour day-of-month month day-of-week), got {got}")]
    CronFieldCount {
        /// How many whitespace-separated fields were given.
        got: usize,
    },
    /// One cron field broke the POSIX syntax or its range.
    #[error("cron: {field} field '{value}' is invalid: {reason}")]
    CronField {
        /// `minute`, `hour`, `day-of-month`, `month` or `day-of-week`.
        field: &'static str,
        /// The field as given.
        value: String,
        /// The rule it broke.
        reason: String,
    },
    /// A syntactically valid cron expression that matches no real date, e.g. `0 0 30 2 *`.
    #[error("cron: '{expr}' never fires: no month in the month field has that day of the month")]
    CronNeverFires {
        /// The normalized expression.
        expr: String,
    },
    /// A one-off time that is not after `now`.
    #[error("at: {when} is in the past")]
    InPast {
        /// The resolved time, as local wall-clock time of the zone (`"2026-01-01 09:00"`).
        when: String,
    },
    /// A time-zone name that is not in the IANA database.
    #[error("zone: '{input}' is not an IANA time zone")]
    UnknownZone {
        /// The name as given.
        input: String,
    },
    /// The chore text consists of a recurrence phrase only.
    #[error("title: missing")]
    TitleMissing,
    /// The input was not recognised at all.
    #[error("{field}: could not understand '{input}'")]
    Unparsed {
        /// Which input it was.
        field: Field,
        /// The input as given.
        input: String,
    },
    /// The input was recognised but breaks a rule (a count of 0, hour 25, day 32, …).
    #[error("{field}: {reason}")]
    Invalid {
        /// Which input it was.
        field: Field,
        /// The rule that was broken, with the offending part quoted.
        reason: String,
    },
}

impl ScheduleError {
    /// The [`Field`] this error is about.
    pub fn field(&self) -> Field {
        match self {
            ScheduleError::IntervalTooShort { .. } | ScheduleError::IntervalTooLong { .. } => {
                Field::Interval
            }
            ScheduleError::CronFieldCount { .. }
            | ScheduleError::CronField { .. }
            | ScheduleError::CronNeverFires { .. } => Field::Cron,
            ScheduleError::InPast { .. } => Field::At,
            ScheduleError::UnknownZone { .. } => Field::Zone,
            ScheduleError::TitleMissing => Field::Title,
            ScheduleError::Unparsed { field, .. } | ScheduleError::Invalid { field, .. } => *field,
        }
    }

    pub(crate) fn unparsed(field: Field, input: &str) -> Self {
        ScheduleError::Unparsed {
            field,
            input: clip(input),
        }
    }

    pub(crate) fn invalid(field: Field, reason: impl Into<String>) -> Self {
        ScheduleError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Trim and cut user input to at most 60 characters for echoing in a message.
pub(crate) fn clip(input: &str) -> String {
    const MAX: usize = 60;
    let input = input.trim();
    if input.chars().count() <= MAX {
        input.to_string()
    } else {
        let mut s: String = input.chars().take(MAX - 1).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_field_and_rule() {
        let cases: Vec<(ScheduleError, &str)> = vec![
            (
                ScheduleError::IntervalTooShort {
                    given: "10s".into(),
                    min: "30s".into(),
                },
                "interval: 10s is too short; the minimum is 30s",
            ),
            (
                ScheduleError::CronFieldCount { got: 6 },
                "cron: expected 5 fields (minute hour day-of-month month day-of-week), got 6",
            ),
            (
                ScheduleError::InPast {
                    when: "2026-01-01 09:00".into(),
                },
                "at: 2026-01-01 09:00 is in the past",
            ),
            (
                ScheduleError::UnknownZone {
                    input: "Europe/Lodnon".into(),
                },
                "zone: 'Europe/Lodnon' is not an IANA time zone",
            ),
            (
                ScheduleError::unparsed(Field::Recurrence, "every blue moon"),
                "recurrence: could not understand 'every blue moon'",
            ),
            (ScheduleError::TitleMissing, "title: missing"),
        ];
        for (err, msg) in cases {
            assert_eq!(err.to_string(), msg);
            assert!(msg.starts_with(&err.field().to_string()));
        }
    }

    #[test]
    fn long_input_is_clipped() {
        let long = "x".repeat(200);
        let msg = ScheduleError::unparsed(Field::At, &long).to_string();
        assert!(msg.chars().count() < 100, "{msg}");
        assert!(msg.ends_with("…'"));
    }
}
