//! Interval triggers: "every 25 minutes".

use std::time::Duration;

use super::error::{Field, ScheduleError};
use super::text::{duration_parts, words};

/// The shortest interval [`parse_every`] accepts: 30 seconds.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// The longest interval [`parse_every`] accepts: 24 hours.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Parse an interval trigger into an exact [`Duration`] (elapsed time, not
/// wall-clock: an interval is unaffected by daylight-saving changes).
///
/// Accepted: `30s`, `25m`, `1h30m`, `1h 30m`, `1.5h`, `90 seconds`,
/// `every 25 minutes`, `every 2 hours`, `every hour`, `every half hour`,
/// `every two hours and 15 minutes`, `1d` (case-insensitive; the leading
/// `every`/`each` is optional). Fractions of a second are dropped.
///
/// # Errors
/// * [`ScheduleError::IntervalTooShort`] below 30 s
///   (`interval: 10s is too short; the minimum is 30s`);
/// * [`ScheduleError::IntervalTooLong`] above 24 h
///   (`interval: 25h is too long; the maximum is 24h`);
/// * [`ScheduleError::Unparsed`] for anything else
///   (`interval: could not understand 'often'`).
pub fn parse_every(s: &str) -> Result<Duration, ScheduleError> {
    let w = words(s);
    let rest = match w.first().map(String::as_str) {
        Some("every" | "each") => &w[1..],
        _ => &w[..],
    };
    let parts = duration_parts(&rest.join(" "))
        .ok_or_else(|| ScheduleError::unparsed(Field::Interval, s))?;
    let mut total: Option<u64> = Some(0);
    for (amount, unit) in parts {
        total = total.and_then(|t| t.checked_add(amount.times(unit.seconds())?));
    }
    let too_long = || ScheduleError::IntervalTooLong {
        given: total.map_or_else(|| super::error::clip(s), format_secs),
        max: format_secs(MAX_INTERVAL.as_secs()),
    };
    let secs = total.ok_or_else(too_long)?;
    if secs < MIN_INTERVAL.as_secs() {
        return Err(ScheduleError::IntervalTooShort {
            given: format_secs(secs),
            min: format_secs(MIN_INTERVAL.as_secs()),
        });
    }
    if secs > MAX_INTERVAL.as_secs() {
        return Err(too_long());
    }
    Ok(Duration::from_secs(secs))
}

/// Parse a span of time with no bounds: `90s`, `1d`, `2h30m`, `4 hours`, `1.5h`, `two weeks`,
/// `half an hour` (case-insensitive). Used by run waits, approval expiries and condition
/// triggers, which apply their own limits. `None` for anything else or an overflow.
pub fn parse_span(s: &str) -> Option<Duration> {
    let parts = duration_parts(&s.trim().to_lowercase())?;
    let mut total: u64 = 0;
    for (amount, unit) in parts {
        total = total.checked_add(amount.times(unit.seconds())?)?;
    }
    Some(Duration::from_secs(total))
}

/// Format whole seconds compactly: `30s`, `25m`, `1h30m`, `24h`, `2m5s`.
pub fn format_duration(d: Duration) -> String {
    format_secs(d.as_secs())
}

fn format_secs(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        let cases = [
            ("30s", 30),
            ("24h", 86_400),
            ("1d", 86_400),
            ("1h30m", 5_400),
            ("1h 30m", 5_400),
            ("1.5h", 5_400),
            ("25m", 1_500),
            ("every 25 minutes", 1_500),
            ("Every 2 Hours", 7_200),
            ("90 seconds", 90),
            ("every hour", 3_600),
            ("every minute", 60),
            ("every day", 86_400),
            ("every half hour", 1_800),
            ("each 45 mins", 2_700),
            ("every two hours and 15 minutes", 8_100),
            ("0.5m", 30),
            ("  10 min ", 600),
        ];
        for (input, secs) in cases {
            assert_eq!(parse_every(input), Ok(Duration::from_secs(secs)), "{input}");
        }
    }

    #[test]
    fn refused() {
        let cases = [
            ("29s", "interval: 29s is too short; the minimum is 30s"),
            ("10s", "interval: 10s is too short; the minimum is 30s"),
            ("0s", "interval: 0s is too short; the minimum is 30s"),
            (
                "every 29 seconds",
                "interval: 29s is too short; the minimum is 30s",
            ),
            ("25h", "interval: 25h is too long; the maximum is 24h"),
            ("24h1s", "interval: 24h1s is too long; the maximum is 24h"),
            (
                "every 2 days",
                "interval: 48h is too long; the maximum is 24h",
            ),
            (
                "every week",
                "interval: 168h is too long; the maximum is 24h",
            ),
            (
                "99999999999999999999h",
                "interval: could not understand '99999999999999999999h'",
            ),
            (
                "9999999999999999h",
                "interval: 9999999999999999h is too long; the maximum is 24h",
            ),
            ("often", "interval: could not understand 'often'"),
            ("every", "interval: could not understand 'every'"),
            ("", "interval: could not understand ''"),
            ("30", "interval: could not understand '30'"),
            (
                "every blue moon",
                "interval: could not understand 'every blue moon'",
            ),
            ("-5m", "interval: could not understand '-5m'"),
        ];
        for (input, msg) in cases {
            assert_eq!(parse_every(input).unwrap_err().to_string(), msg, "{input}");
        }
    }

    #[test]
    fn format() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m5s");
        assert_eq!(format_duration(Duration::from_secs(0)), "0s");
    }
}
