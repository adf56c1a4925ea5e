//! One-off times: "tomorrow at 9am", "in 20m", "2026-12-01T09:00:00Z".

use chrono::{
    DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc, Weekday,
};
use chrono_tz::Tz;

use super::error::{clip, Field, ScheduleError};
use super::text::{duration_parts, time_prefix, weekday, words, Unit};
use super::zone::{resolve_local, to_local};

/// Time of day used by [`parse_at`] when a date is given without one
/// (`tomorrow`, `monday`, `2026-12-01`, `next week`): 09:00 local.
pub const DEFAULT_AT_TIME: NaiveTime = match NaiveTime::from_hms_opt(9, 0, 0) {
    Some(t) => t,
    None => NaiveTime::MIN,
};

/// Parse a one-off time relative to `now` (UTC) and return the UTC instant.
///
/// Wall-clock forms are read in `zone` and resolved with [`resolve_local`]
/// (a time in the spring-forward gap moves to the end of the gap; a repeated
/// fall-back time means its first occurrence). Accepted (case-insensitive):
///
/// * ISO-8601 with offset: `2026-12-01T09:00:00Z`, `2026-12-01T09:00+01:00`,
///   `2026-12-01 09:00:00.5-05:00` — the offset wins over `zone`;
/// * naive ISO, read in `zone`: `2026-12-01 09:00`, `2026-12-01T09:00:30`,
///   `2026-12-01` (at [`DEFAULT_AT_TIME`]);
/// * relative: `in 20m`, `in 2 hours`, `in 1h30m`, `in half an hour`,
///   `in two weeks`, `in 3 days`, `in 3 months`, `in 2 weeks at 9am`. Seconds, minutes and hours
///   are exact elapsed time; days, weeks, months and years are calendar steps
///   that keep the local time of day across DST changes (month ends clamp:
///   Jan 31 + 1 month = Feb 28). A fractional calendar amount counts as exact
///   time at 24 h a day (`in 1.5 days` = 36 h);
/// * `today 18:30`, `tomorrow 09:00`, `tomorrow at 9am`, `9am tomorrow`,
///   `the day after tomorrow`, `2026-12-01 at 7pm`;
/// * `monday 8am`, `on monday at 8`: the next time it is Monday 08:00, which
///   is today if it is Monday and 08:00 is still ahead; `next monday` is never
///   today;
/// * `at 17:00`, `17:00`, `5pm`, `noon`: the next occurrence — today if still
///   ahead, otherwise tomorrow;
/// * `next week`: Monday of next week (at [`DEFAULT_AT_TIME`] unless a time is given).
///
/// A bare hour (`8`) is a time only after `at`.
///
/// # Errors
/// * [`ScheduleError::InPast`] when the result is not after `now`
///   (`at: 2026-01-01 09:00 is in the past`, shown in `zone`'s local time);
/// * [`ScheduleError::Invalid`] for a recognised but impossible input
///   (`at: '2026-02-30' is not a valid date`, `at: '25:00' is not a valid
///   time of day`, `at: 'in 900000 years' is too far in the future`);
/// * [`ScheduleError::Unparsed`] otherwise.
pub fn parse_at(s: &str, now: DateTime<Utc>, zone: Tz) -> Result<DateTime<Utc>, ScheduleError> {
    let when = parse_any(s, now, zone)?;
    if when <= now {
        return Err(ScheduleError::InPast {
            when: to_local(when, zone)
                .unwrap_or(when.naive_utc())
                .format("%Y-%m-%d %H:%M")
                .to_string(),
        });
    }
    Ok(when)
}

fn parse_any(s: &str, now: DateTime<Utc>, zone: Tz) -> Result<DateTime<Utc>, ScheduleError> {
    let iso = s.trim().to_ascii_uppercase();
    if let Some(t) = iso_with_offset(&iso) {
        return Ok(t);
    }
    if let Some(naive) = iso_naive(&iso) {
        return Ok(resolve_local(naive, zone));
    }
    let w = words(s);
    let toks: Vec<&str> = w.iter().map(String::as_str).collect();
    if toks.first() == Some(&"in") {
        // "in 2 weeks at 9am": calendar steps to a day, then that time of day.
        if let Some(at) = toks.iter().position(|t| *t == "at") {
            if let Some(t) =
                whole_time(&toks[at..]).map_err(|r| ScheduleError::invalid(Field::At, r))?
            {
                return relative_day_at(&toks[1..at], t, s, now, zone);
            }
        }
        return relative(&toks[1..], s, now, zone);
    }
    day_and_time(&toks, s, now, zone)
}

fn iso_with_offset(s: &str) -> Option<DateTime<Utc>> {
    let owned;
    let s = match s.strip_suffix('Z') {
        Some(base) => {
            owned = format!("{base}+00:00");
            owned.as_str()
        }
        None => s,
    };
    const FORMATS: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M%#z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M%#z",
    ];
    FORMATS
        .iter()
        .find_map(|f| DateTime::parse_from_str(s, f).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn iso_naive(s: &str) -> Option<NaiveDateTime> {
    const FORMATS: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ];
    FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

fn too_far(s: &str) -> ScheduleError {
    ScheduleError::invalid(Field::At, format!("'{}' is too far in the future", clip(s)))
}

fn relative(
    toks: &[&str],
    s: &str,
    now: DateTime<Utc>,
    zone: Tz,
) -> Result<DateTime<Utc>, ScheduleError> {
    let parts =
        duration_parts(&toks.join(" ")).ok_or_else(|| ScheduleError::unparsed(Field::At, s))?;
    let (mut months, mut days, mut exact) = (0u64, 0u64, 0u64);
    let overflow = || too_far(s);
    for (amount, unit) in parts {
        let calendar = match unit {
            Unit::Day => Some((0, 1)),
            Unit::Week => Some((0, 7)),
            Unit::Month => Some((1, 0)),
            Unit::Year => Some((12, 0)),
            Unit::Second | Unit::Minute | Unit::Hour => None,
        };
        match calendar {
            Some((m, d)) if amount.is_integer() => {
                let add_m = amount.whole.checked_mul(m).ok_or_else(overflow)?;
                let add_d = amount.whole.checked_mul(d).ok_or_else(overflow)?;
                months = months.checked_add(add_m).ok_or_else(overflow)?;
                days = days.checked_add(add_d).ok_or_else(overflow)?;
            }
            _ => {
                let secs = amount.times(unit.seconds()).ok_or_else(overflow)?;
                exact = exact.checked_add(secs).ok_or_else(overflow)?;
            }
        }
    }
    let base = if months > 0 || days > 0 {
        let local = to_local(now, zone).ok_or_else(overflow)?;
        let target = local
            .checked_add_months(Months::new(u32::try_from(months).map_err(|_| overflow())?))
            .and_then(|t| t.checked_add_days(Days::new(days)))
            .ok_or_else(overflow)?;
        resolve_local(target, zone)
    } else {
        now
    };
    let exact = TimeDelta::try_seconds(i64::try_from(exact).map_err(|_| overflow())?)
        .ok_or_else(overflow)?;
    base.checked_add_signed(exact).ok_or_else(overflow)
}

/// `in 3 days at 18:00`: whole days, weeks, months or years from today's
/// local date, at a local time of day.
fn relative_day_at(
    toks: &[&str],
    t: NaiveTime,
    s: &str,
    now: DateTime<Utc>,
    zone: Tz,
) -> Result<DateTime<Utc>, ScheduleError> {
    let parts =
        duration_parts(&toks.join(" ")).ok_or_else(|| ScheduleError::unparsed(Field::At, s))?;
    let (mut months, mut days) = (0u32, 0u64);
    for (amount, unit) in parts {
        let (m, d) = match unit {
            Unit::Day => (0, 1),
            Unit::Week => (0, 7),
            Unit::Month => (1, 0),
            Unit::Year => (12, 0),
            Unit::Second | Unit::Minute | Unit::Hour => {
                return Err(ScheduleError::unparsed(Field::At, s))
            }
        };
        if !amount.is_integer() {
            return Err(ScheduleError::unparsed(Field::At, s));
        }
        let n = u32::try_from(amount.whole).map_err(|_| too_far(s))?;
        months = n
            .checked_mul(m)
            .and_then(|x| months.checked_add(x))
            .ok_or_else(|| too_far(s))?;
        days = u64::from(n)
            .checked_mul(d)
            .and_then(|x| days.checked_add(x))
            .ok_or_else(|| too_far(s))?;
    }
    let day = to_local(now, zone)
        .ok_or_else(|| too_far(s))?
        .date()
        .checked_add_months(Months::new(months))
        .and_then(|d| d.checked_add_days(Days::new(days)))
        .ok_or_else(|| too_far(s))?;
    Ok(resolve_local(day.and_time(t), zone))
}

/// The day part of a one-off time.
#[derive(Debug, Clone, Copy)]
enum DayPart {
    Date(NaiveDate),
    /// `monday` (`strict: false`, may be today) or `next monday` (`strict: true`).
    Weekday {
        day: Weekday,
        strict: bool,
    },
    NextWeek,
}

/// Read a day part at the start of `toks`; returns it and the tokens used.
fn day_prefix(toks: &[&str], today: NaiveDate) -> Result<Option<(DayPart, usize)>, String> {
    let date = |n: u64| today.checked_add_days(Days::new(n)).map(DayPart::Date);
    let found = match toks {
        ["today", ..] => date(0).map(|d| (d, 1)),
        ["tomorrow" | "tmrw" | "tmr", ..] => date(1).map(|d| (d, 1)),
        ["the", "day", "after", "tomorrow", ..] => date(2).map(|d| (d, 4)),
        ["day", "after", "tomorrow", ..] => date(2).map(|d| (d, 3)),
        ["next", "week", ..] => Some((DayPart::NextWeek, 2)),
        ["next", w, ..] if weekday(w).is_some_and(|(_, plural)| !plural) => {
            weekday(w).map(|(day, _)| (DayPart::Weekday { day, strict: true }, 2))
        }
        ["on" | "this", w, ..] if weekday(w).is_some_and(|(_, plural)| !plural) => {
            weekday(w).map(|(day, _)| (DayPart::Weekday { day, strict: false }, 2))
        }
        [w, ..] if weekday(w).is_some_and(|(_, plural)| !plural) => {
            weekday(w).map(|(day, _)| (DayPart::Weekday { day, strict: false }, 1))
        }
        ["on", d, ..] if looks_like_date(d) => Some((DayPart::Date(iso_date(d)?), 2)),
        [d, ..] if looks_like_date(d) => Some((DayPart::Date(iso_date(d)?), 1)),
        _ => None,
    };
    Ok(found)
}

fn looks_like_date(tok: &str) -> bool {
    let parts: Vec<&str> = tok.split('-').collect();
    parts.len() == 3
        && parts[0].len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn iso_date(tok: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(tok, "%Y-%m-%d")
        .map_err(|_| format!("'{}' is not a valid date", clip(tok)))
}

/// A time of day filling all of `toks` (with an optional leading `at`).
fn whole_time(toks: &[&str]) -> Result<Option<NaiveTime>, String> {
    let (rest, bare) = match toks.first() {
        Some(&"at") => (&toks[1..], true),
        _ => (toks, false),
    };
    Ok(time_prefix(rest, bare)?.and_then(|(t, used)| (used == rest.len()).then_some(t)))
}

fn day_and_time(
    toks: &[&str],
    s: &str,
    now: DateTime<Utc>,
    zone: Tz,
) -> Result<DateTime<Utc>, ScheduleError> {
    let invalid = |reason: String| ScheduleError::invalid(Field::At, reason);
    let today = to_local(now, zone).ok_or_else(|| too_far(s))?.date();
    let mut parsed: Option<(Option<DayPart>, Option<NaiveTime>)> = None;
    // Day first: "tomorrow at 9am", "monday", "2026-12-01 18:00".
    if let Some((day, used)) = day_prefix(toks, today).map_err(invalid)? {
        let rest = &toks[used..];
        if rest.is_empty() {
            parsed = Some((Some(day), None));
        } else if let Some(t) = whole_time(rest).map_err(invalid)? {
            parsed = Some((Some(day), Some(t)));
        }
    }
    // Time first: "9am tomorrow", "at 17:00", "17:00".
    if parsed.is_none() {
        for split in (1..=toks.len()).rev() {
            let Ok(Some(t)) = whole_time(&toks[..split]) else {
                continue;
            };
            let rest = &toks[split..];
            if rest.is_empty() {
                parsed = Some((None, Some(t)));
            } else if let Some((day, used)) = day_prefix(rest, today).map_err(invalid)? {
                if used == rest.len() {
                    parsed = Some((Some(day), Some(t)));
                }
            }
            break;
        }
        if parsed.is_none() {
            // Report an out-of-range time rather than "could not understand".
            whole_time(toks).map_err(invalid)?;
        }
    }
    let Some((day, time)) = parsed else {
        return Err(ScheduleError::unparsed(Field::At, s));
    };
    let at_day = |d: NaiveDate, t: NaiveTime| resolve_local(d.and_time(t), zone);
    let next_day = |n: u64| {
        today
            .checked_add_days(Days::new(n))
            .ok_or_else(|| too_far(s))
    };
    let t = time.unwrap_or(DEFAULT_AT_TIME);
    Ok(match day {
        None => {
            let first = at_day(today, t);
            if first > now {
                first
            } else {
                at_day(next_day(1)?, t)
            }
        }
        Some(DayPart::Date(d)) => at_day(d, t),
        Some(DayPart::NextWeek) => {
            let to_monday = 7 - u64::from(today.weekday().num_days_from_monday());
            at_day(next_day(to_monday)?, t)
        }
        Some(DayPart::Weekday { day, strict }) => {
            let mut found = None;
            for k in u64::from(strict)..=14 {
                let d = next_day(k)?;
                if d.weekday() == day && at_day(d, t) > now {
                    found = Some(at_day(d, t));
                    break;
                }
            }
            found.ok_or_else(|| too_far(s))?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Europe::London};

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Saturday 2026-11-21 10:00 UTC (10:00 GMT in London, 05:00 EST in New York).
    const NOW: &str = "2026-11-21T10:00:00Z";

    #[test]
    fn accepted_table() {
        let cases: &[(&str, Tz, &str)] = &[
            ("2026-12-01T09:00:00Z", London, "2026-12-01T09:00:00Z"),
            ("2026-12-01T09:00:00+01:00", London, "2026-12-01T08:00:00Z"),
            ("2026-12-01T09:00+01:00", New_York, "2026-12-01T08:00:00Z"),
            (
                "2026-12-01 09:00:00.5-05:00",
                London,
                "2026-12-01T14:00:00.5Z",
            ),
            ("2026-12-01t09:00z", London, "2026-12-01T09:00:00Z"),
            ("2026-12-01T09:00:00+0100", London, "2026-12-01T08:00:00Z"),
            ("2026-12-01 09:00", London, "2026-12-01T09:00:00Z"),
            ("2026-12-01T09:00", New_York, "2026-12-01T14:00:00Z"),
            ("2026-12-01T09:00:30", London, "2026-12-01T09:00:30Z"),
            ("2026-12-01", London, "2026-12-01T09:00:00Z"),
            ("2026-12-01 at 7pm", London, "2026-12-01T19:00:00Z"),
            ("on 2026-12-01 at 7pm", London, "2026-12-01T19:00:00Z"),
            ("in 20m", London, "2026-11-21T10:20:00Z"),
            ("in 20 minutes", New_York, "2026-11-21T10:20:00Z"),
            ("In 2 hours", London, "2026-11-21T12:00:00Z"),
            ("in 1h30m", London, "2026-11-21T11:30:00Z"),
            ("in half an hour", London, "2026-11-21T10:30:00Z"),
            ("in an hour", London, "2026-11-21T11:00:00Z"),
            ("in 90 seconds", London, "2026-11-21T10:01:30Z"),
            ("in 3 days", London, "2026-11-24T10:00:00Z"),
            ("in two weeks", London, "2026-12-05T10:00:00Z"),
            ("in 1 day and 2 hours", London, "2026-11-22T12:00:00Z"),
            ("in 1.5 days", London, "2026-11-22T22:00:00Z"),
            ("in 2 weeks at 9am", London, "2026-12-05T09:00:00Z"),
            ("in 3 days at 18:00", New_York, "2026-11-24T23:00:00Z"),
            ("in a month at noon", London, "2026-12-21T12:00:00Z"),
            ("tomorrow 09:00", London, "2026-11-22T09:00:00Z"),
            ("tomorrow 09:00", New_York, "2026-11-22T14:00:00Z"),
            ("tomorrow at 9am", London, "2026-11-22T09:00:00Z"),
            ("Tomorrow at 9", London, "2026-11-22T09:00:00Z"),
            ("9am tomorrow", London, "2026-11-22T09:00:00Z"),
            ("tomorrow", London, "2026-11-22T09:00:00Z"),
            (
                "the day after tomorrow at noon",
                London,
                "2026-11-23T12:00:00Z",
            ),
            ("today 18:30", London, "2026-11-21T18:30:00Z"),
            ("today at 6:30 pm", New_York, "2026-11-21T23:30:00Z"),
            // Saturday now: Monday is in two days.
            ("monday 8am", London, "2026-11-23T08:00:00Z"),
            ("on monday at 8", London, "2026-11-23T08:00:00Z"),
            ("next monday", London, "2026-11-23T09:00:00Z"),
            // It is Saturday 10:00: Saturday 11:00 is today, Saturday 9am is next week.
            ("saturday 11:00", London, "2026-11-21T11:00:00Z"),
            ("sat 9am", London, "2026-11-28T09:00:00Z"),
            ("next saturday 11:00", London, "2026-11-28T11:00:00Z"),
            // Times of day: next occurrence.
            ("at 17:00", London, "2026-11-21T17:00:00Z"),
            ("17:00", London, "2026-11-21T17:00:00Z"),
            ("5pm", New_York, "2026-11-21T22:00:00Z"),
            ("at 9", London, "2026-11-22T09:00:00Z"),
            ("noon", London, "2026-11-21T12:00:00Z"),
            ("at midnight", London, "2026-11-22T00:00:00Z"),
            ("next week", London, "2026-11-23T09:00:00Z"),
            ("next week at 7pm", London, "2026-11-23T19:00:00Z"),
        ];
        for (input, zone, want) in cases {
            assert_eq!(
                parse_at(input, utc(NOW), *zone),
                Ok(utc(want)),
                "{input} in {zone}"
            );
        }
    }

    #[test]
    fn refused_table() {
        let cases: &[(&str, &str)] = &[
            ("2026-01-01 09:00", "at: 2026-01-01 09:00 is in the past"),
            (
                "2026-01-01T09:00:00Z",
                "at: 2026-01-01 09:00 is in the past",
            ),
            ("today 08:00", "at: 2026-11-21 08:00 is in the past"),
            ("today", "at: 2026-11-21 09:00 is in the past"),
            ("in 0 minutes", "at: 2026-11-21 10:00 is in the past"),
            ("2026-02-30 09:00", "at: '2026-02-30' is not a valid date"),
            (
                "tomorrow at 25:00",
                "at: '25:00' is not a valid time of day",
            ),
            ("13pm", "at: '13pm' is not a valid time of day"),
            (
                "in 900000 years",
                "at: 'in 900000 years' is too far in the future",
            ),
            (
                "in 99999999999 weeks",
                "at: 'in 99999999999 weeks' is too far in the future",
            ),
            ("whenever", "at: could not understand 'whenever'"),
            ("", "at: could not understand ''"),
            ("in", "at: could not understand 'in'"),
            ("in a while", "at: could not understand 'in a while'"),
            (
                "in 2 hours at 9am",
                "at: could not understand 'in 2 hours at 9am'",
            ),
            (
                "in 2 days at 26:00",
                "at: '26:00' is not a valid time of day",
            ),
            ("in 0 days at 9am", "at: 2026-11-21 09:00 is in the past"),
            ("tomorrow 9", "at: could not understand 'tomorrow 9'"),
            (
                "monday tomorrow",
                "at: could not understand 'monday tomorrow'",
            ),
            ("9am 10am", "at: could not understand '9am 10am'"),
        ];
        for (input, msg) in cases {
            assert_eq!(
                parse_at(input, utc(NOW), London).unwrap_err().to_string(),
                *msg,
                "{input}"
            );
        }
    }

    #[test]
    fn three_months_away_stays_three_months_away() {
        // Winter now, summer target: the wall-clock time is kept, the UTC
        // offset of the target date applies.
        let now = utc("2027-01-15T12:00:00Z");
        assert_eq!(
            parse_at("2027-04-15 09:00", now, London),
            Ok(utc("2027-04-15T08:00:00Z"))
        );
        assert_eq!(
            parse_at("in 3 months", now, London),
            Ok(utc("2027-04-15T11:00:00Z"))
        );
        assert_eq!(
            parse_at("in 3 months", now, New_York),
            Ok(utc("2027-04-15T11:00:00Z"))
        );
        // And the other way round, summer to winter.
        let now = utc("2026-08-31T12:00:00Z");
        assert_eq!(
            parse_at("in 3 months", now, London),
            Ok(utc("2026-11-30T13:00:00Z"))
        );
        // Month-end clamps.
        let now = utc("2027-01-31T12:00:00Z");
        assert_eq!(
            parse_at("in 1 month", now, Tz::UTC),
            Ok(utc("2027-02-28T12:00:00Z"))
        );
    }

    #[test]
    fn days_keep_wall_clock_across_dst() {
        // Friday 2026-03-27 09:00 GMT; London springs forward on Sunday.
        let now = utc("2026-03-27T09:00:00Z");
        assert_eq!(
            parse_at("in 3 days", now, London),
            Ok(utc("2026-03-30T08:00:00Z"))
        );
        assert_eq!(
            parse_at("in 72 hours", now, London),
            Ok(utc("2026-03-30T09:00:00Z"))
        );
        // A time inside the gap moves to its end.
        let now = utc("2026-03-07T12:00:00Z");
        assert_eq!(
            parse_at("tomorrow at 2:30am", now, New_York),
            Ok(utc("2026-03-08T07:00:00Z"))
        );
    }
}
