//! 5-field POSIX cron expressions evaluated in a time zone's wall-clock time.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use croner::CronComponent;

use super::error::{clip, ScheduleError};
use super::zone::{resolve_local, to_local};

/// A parsed 5-field POSIX cron expression:
/// `minute hour day-of-month month day-of-week`.
///
/// Syntax (as in Vixie cron / `crontab(5)`):
/// * `*`, numbers, lists `1,15`, ranges `1-5`, steps `*/15` and `1-30/2`;
/// * month names `jan`…`dec` in the month field, day names `sun`…`sat` in the
///   day-of-week field (also in ranges: `mon-fri`), case-insensitive;
/// * day-of-week `0` and `7` are both Sunday.
///
/// Refused: a 6th (seconds) or 7th (year) field, `@daily`-style nicknames, and
/// the non-POSIX extensions `L`, `W`, `#`, `?`; also single-number steps such
/// as `5/15` (write `5-59/15`). An expression that can never fire (`0 0 30 2 *`)
/// is refused as well.
///
/// Day matching follows **Vixie cron**: when both day fields are restricted
/// (neither starts with `*`) a day matches if **either** matches —
/// `0 12 13 * 5` fires on the 13th *and* on every Friday. When either day field
/// starts with `*` (including `*/2`), both must match.
///
/// Field parsing (ranges, steps, lists, bounds) is done by the `croner` crate;
/// name handling, POSIX restrictions and the search are done here so the
/// semantics above are exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CronSpec {
    source: String,
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    dom: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0.
    dow: u8,
    dom_star: bool,
    dow_star: bool,
}

struct FieldDef {
    name: &'static str,
    min: u16,
    max: u16,
    names: &'static [&'static str],
    name_base: u16,
}

const FIELDS: [FieldDef; 5] = [
    FieldDef {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        name_base: 0,
    },
    FieldDef {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        name_base: 0,
    },
    FieldDef {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        name_base: 0,
    },
    FieldDef {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
        name_base: 1,
    },
    FieldDef {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
        name_base: 0,
    },
];

/// Longest month length for each month (February counts 29).
const MAX_MONTH_DAYS: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// How far ahead [`CronSpec::next_after`] looks: one Gregorian cycle.
const SEARCH_YEARS: i32 = 400;

impl CronSpec {
    /// Parse a 5-field cron expression (see the type docs for the syntax).
    ///
    /// # Errors
    /// * [`ScheduleError::CronFieldCount`] — not exactly 5 fields
    ///   (`cron: expected 5 fields (minute hour day-of-month month day-of-week), got 6`);
    /// * [`ScheduleError::CronField`] — a field breaks the syntax or its range
    ///   (`cron: minute field '61' is invalid: …; allowed values are 0-59`);
    /// * [`ScheduleError::CronNeverFires`] — no real date matches.
    pub fn parse(expr: &str) -> Result<CronSpec, ScheduleError> {
        let fields: Vec<String> = expr.split_whitespace().map(str::to_lowercase).collect();
        if fields.len() != 5 {
            return Err(ScheduleError::CronFieldCount { got: fields.len() });
        }
        let mut masks = [0u64; 5];
        for (i, (raw, def)) in fields.iter().zip(FIELDS.iter()).enumerate() {
            masks[i] = parse_field(raw, def)?;
        }
        // Day-of-week 7 is Sunday.
        let dow = ((masks[4] | (masks[4] >> 7)) & 0x7f) as u8;
        let spec = CronSpec {
            source: fields.join(" "),
            minutes: masks[0],
            hours: masks[1] as u32,
            dom: masks[2] as u32,
            months: masks[3] as u16,
            dow,
            dom_star: fields[2].starts_with('*'),
            dow_star: fields[4].starts_with('*'),
        };
        if spec.and_mode() && !spec.some_month_has_a_listed_day() {
            return Err(ScheduleError::CronNeverFires { expr: spec.source });
        }
        Ok(spec)
    }

    /// The normalized expression: lowercase, fields separated by one space
    /// (`"0 9 * * mon-fri"`). Parsing it again gives an equal `CronSpec`.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The next firing time strictly after `after` (UTC), with the expression
    /// evaluated in the wall-clock time of `zone`. Returns UTC.
    ///
    /// Daylight-saving rules (see [`resolve_local`]):
    /// * **Fall-back**: a wall time that occurs twice fires **once**, at its
    ///   first occurrence. This also holds for `*/15`-style expressions: the
    ///   repeated hour is not run again (Vixie cron does the same for fixed-time
    ///   jobs; schedulers that fired every occurrence ran jobs twice).
    /// * **Spring-forward**: a wall time inside the gap fires at the first
    ///   valid instant after the gap (`30 2 * * *` on 2026-03-08 in
    ///   America/New_York fires at 03:00 EDT = 07:00 UTC), like Vixie cron runs
    ///   jobs of a skipped hour right after the jump. Several slots in the same
    ///   gap collapse into that one firing.
    /// * Never fires twice for one wall-clock slot, and successive calls
    ///   (feeding each result back in as `after`) never lose a day.
    ///
    /// `None` only if nothing matches within 400 years or the search would
    /// leave chrono's date range.
    pub fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let local = to_local(after, zone)?;
        let mut wall = self.next_wall_after(local)?;
        // Resolution is monotonic in wall time, so the first slot that
        // resolves after `after` is the answer. Slots that resolve at or
        // before it are the second pass of a fall-back hour or further slots
        // of a spring-forward gap; skip them. A fall-back hour has at most
        // 60 per-minute slots; the bound is only a guard.
        for _ in 0..100_000 {
            let at = resolve_local(wall, zone);
            if at > after {
                return Some(at);
            }
            wall = self.next_wall_after(wall)?;
        }
        None
    }

    /// Whether `naive` (local wall-clock time, seconds ignored) matches.
    pub fn matches_local(&self, naive: NaiveDateTime) -> bool {
        self.month_ok(naive.month())
            && self.day_ok(naive.date())
            && self.hours & (1 << naive.hour()) != 0
            && self.minutes & (1 << naive.minute()) != 0
    }

    fn and_mode(&self) -> bool {
        self.dom_star || self.dow_star
    }

    fn some_month_has_a_listed_day(&self) -> bool {
        (1..=12u32).any(|m| {
            self.months & (1 << m) != 0
                && (self.dom & ((1u64 << (MAX_MONTH_DAYS[m as usize] + 1)) - 1) as u32) != 0
        })
    }

    fn month_ok(&self, month: u32) -> bool {
        self.months & (1 << month) != 0
    }

    fn day_ok(&self, date: NaiveDate) -> bool {
        let dom = self.dom & (1 << date.day()) != 0;
        let dow = self.dow & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.and_mode() {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// First matching time of day at or after `from` (minute precision).
    fn first_time_from(&self, from_hour: u32, from_minute: u32) -> Option<NaiveTime> {
        for h in from_hour..24 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let m0 = if h == from_hour { from_minute } else { 0 };
            let rest = self.minutes >> m0;
            if rest != 0 {
                return NaiveTime::from_hms_opt(h, m0 + rest.trailing_zeros(), 0);
            }
        }
        None
    }

    /// The first matching wall-clock minute strictly after `local`.
    fn next_wall_after(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        let start = local
            .with_second(0)?
            .with_nanosecond(0)?
            .checked_add_signed(TimeDelta::minutes(1))?;
        let limit_year = start.year().saturating_add(SEARCH_YEARS);
        let mut date = start.date();
        let mut from = Some(start.time());
        loop {
            if date.year() > limit_year {
                return None;
            }
            if !self.month_ok(date.month()) {
                let (y, m) = if date.month() == 12 {
                    (date.year().checked_add(1)?, 1)
                } else {
                    (date.year(), date.month() + 1)
                };
                date = NaiveDate::from_ymd_opt(y, m, 1)?;
                from = None;
                continue;
            }
            if self.day_ok(date) {
                let (h, m) = from.map_or((0, 0), |t| (t.hour(), t.minute()));
                if let Some(t) = self.first_time_from(h, m) {
                    return Some(date.and_time(t));
                }
            }
            date = date.succ_opt()?;
            from = None;
        }
    }
}

/// Parse one field into a bit mask of allowed values.
fn parse_field(raw: &str, def: &FieldDef) -> Result<u64, ScheduleError> {
    let err = |reason: String| ScheduleError::CronField {
        field: def.name,
        value: clip(raw),
        reason,
    };
    let range = format!("allowed values are {}-{}", def.min, def.max);
    // Replace names by numbers.
    let mut mapped = String::with_capacity(raw.len());
    let mut chars = raw.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_ascii_alphabetic() {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !d.is_ascii_alphabetic() {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            let word = &raw[i..end];
            let Some(pos) = def.names.iter().position(|n| *n == word) else {
                return Err(err(if def.names.is_empty() {
                    format!("names are not allowed here (POSIX cron; no L, W, # or ?); {range}")
                } else {
                    format!(
                        "unknown name '{}'; use {}-{} or numbers; {range}",
                        clip(word),
                        def.names[0],
                        def.names[def.names.len() - 1]
                    )
                }));
            };
            mapped.push_str(&(pos as u16 + def.name_base).to_string());
        } else if c.is_ascii_digit() || matches!(c, '*' | ',' | '-' | '/') {
            mapped.push(c);
        } else {
            return Err(err(format!(
                "only numbers, names, '*', ',', '-' and '/' are allowed (POSIX cron; no L, W, # or ?); {range}"
            )));
        }
    }
    if mapped.split(',').any(str::is_empty) {
        return Err(err(format!("a list has an empty item; {range}")));
    }
    let mut component = CronComponent::new(def.min, def.max, 0, 0);
    component.parse(&mapped).map_err(|e| {
        let detail = e.to_string();
        let detail = detail
            .strip_prefix("Component error: ")
            .unwrap_or(&detail)
            .trim_end_matches('.')
            .to_lowercase();
        err(format!("{detail}; {range}"))
    })?;
    let mut mask = 0u64;
    for v in component.values() {
        mask |= 1 << v;
    }
    if mask == 0 {
        return Err(err(format!("it selects no value; {range}")));
    }
    Ok(mask)
}

impl FromStr for CronSpec {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronSpec::parse(s)
    }
}

impl fmt::Display for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Europe::London};

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// The first `n` firings after `from`.
    fn fires(expr: &str, from: &str, zone: Tz, n: usize) -> Vec<String> {
        let spec = CronSpec::parse(expr).unwrap();
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = spec.next_after(t, zone).unwrap();
            out.push(t.format("%Y-%m-%dT%H:%MZ").to_string());
        }
        out
    }

    #[test]
    fn parse_accepts() {
        let cases = [
            ("*/15 * * * *", "*/15 * * * *"),
            ("0 9 * * 1-5", "0 9 * * 1-5"),
            ("  0   9 * *   MON-FRI ", "0 9 * * mon-fri"),
            ("0 0 1,15 * *", "0 0 1,15 * *"),
            ("0 12 13 * 5", "0 12 13 * 5"),
            ("0 0 * * 7", "0 0 * * 7"),
            ("0 0 * JAN,jul sun", "0 0 * jan,jul sun"),
            ("1-30/2 */3 1-31 1-12 0-7", "1-30/2 */3 1-31 1-12 0-7"),
            ("59 23 31 12 *", "59 23 31 12 *"),
            ("0 0 29 2 *", "0 0 29 2 *"),
        ];
        for (input, norm) in cases {
            let spec = CronSpec::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(spec.as_str(), norm);
            assert_eq!(CronSpec::parse(spec.as_str()).unwrap(), spec);
        }
    }

    #[test]
    fn parse_refuses() {
        let cases = [
            (
                "0 0 9 * * 1",
                "cron: expected 5 fields (minute hour day-of-month month day-of-week), got 6",
            ),
            (
                "* * * *",
                "cron: expected 5 fields (minute hour day-of-month month day-of-week), got 4",
            ),
            (
                "@daily",
                "cron: expected 5 fields (minute hour day-of-month month day-of-week), got 1",
            ),
            (
                "",
                "cron: expected 5 fields (minute hour day-of-month month day-of-week), got 0",
            ),
            (
                "61 * * * *",
                "cron: minute field '61' is invalid: number out of bounds; allowed values are 0-59",
            ),
            (
                "0 24 * * *",
                "cron: hour field '24' is invalid: number out of bounds; allowed values are 0-23",
            ),
            (
                "0 0 0 * *",
                "cron: day-of-month field '0' is invalid: number out of bounds; allowed values are 1-31",
            ),
            (
                "0 0 * 13 *",
                "cron: month field '13' is invalid: number out of bounds; allowed values are 1-12",
            ),
            (
                "0 0 * * 8",
                "cron: day-of-week field '8' is invalid: number out of bounds; allowed values are 0-7",
            ),
            (
                "0 0 L * *",
                "cron: day-of-month field 'l' is invalid: names are not allowed here (POSIX cron; no L, W, # or ?); allowed values are 1-31",
            ),
            (
                "0 0 * * 5#2",
                "cron: day-of-week field '5#2' is invalid: only numbers, names, '*', ',', '-' and '/' are allowed (POSIX cron; no L, W, # or ?); allowed values are 0-7",
            ),
            (
                "0 0 ? * *",
                "cron: day-of-month field '?' is invalid: only numbers, names, '*', ',', '-' and '/' are allowed (POSIX cron; no L, W, # or ?); allowed values are 1-31",
            ),
            (
                "0 0 * foo *",
                "cron: month field 'foo' is invalid: unknown name 'foo'; use jan-dec or numbers; allowed values are 1-12",
            ),
            (
                "0 0 * * mon-funday",
                "cron: day-of-week field 'mon-funday' is invalid: unknown name 'funday'; use sun-sat or numbers; allowed values are 0-7",
            ),
            (
                "*/0 * * * *",
                "cron: minute field '*/0' is invalid: step cannot be zero; allowed values are 0-59",
            ),
            (
                "5-1 * * * *",
                "cron: minute field '5-1' is invalid: range out of bounds; allowed values are 0-59",
            ),
            (
                "1,,2 * * * *",
                "cron: minute field '1,,2' is invalid: a list has an empty item; allowed values are 0-59",
            ),
            (
                "0 0 30 2 *",
                "cron: '0 0 30 2 *' never fires: no month in the month field has that day of the month",
            ),
        ];
        for (input, msg) in cases {
            assert_eq!(
                CronSpec::parse(input).unwrap_err().to_string(),
                msg,
                "{input}"
            );
        }
        // Single-number steps are refused too (their meaning differs between crons).
        assert!(CronSpec::parse("5/15 * * * *").is_err());
    }

    #[test]
    fn next_after_table() {
        let cases: &[(&str, &str, Tz, &[&str])] = &[
            (
                "*/15 * * * *",
                "2026-06-01T10:07:00Z",
                Tz::UTC,
                &[
                    "2026-06-01T10:15Z",
                    "2026-06-01T10:30Z",
                    "2026-06-01T10:45Z",
                    "2026-06-01T11:00Z",
                ],
            ),
            // 2026-06-05 is a Friday: weekdays skip the weekend.
            (
                "0 9 * * 1-5",
                "2026-06-05T09:00:00Z",
                Tz::UTC,
                &["2026-06-08T09:00Z", "2026-06-09T09:00Z"],
            ),
            // Europe/London in summer: 09:00 BST = 08:00 UTC.
            (
                "0 9 * * mon-fri",
                "2026-06-05T07:00:00Z",
                London,
                &["2026-06-05T08:00Z", "2026-06-08T08:00Z"],
            ),
            (
                "0 0 1,15 * *",
                "2026-01-20T00:00:00Z",
                Tz::UTC,
                &[
                    "2026-02-01T00:00Z",
                    "2026-02-15T00:00Z",
                    "2026-03-01T00:00Z",
                ],
            ),
            // Vixie OR: the 13th OR any Friday. 2026-03-13 is a Friday.
            (
                "0 12 13 * 5",
                "2026-02-01T00:00:00Z",
                Tz::UTC,
                &[
                    "2026-02-06T12:00Z",
                    "2026-02-13T12:00Z",
                    "2026-02-20T12:00Z",
                    "2026-02-27T12:00Z",
                    "2026-03-06T12:00Z",
                    "2026-03-13T12:00Z",
                    "2026-03-20T12:00Z",
                ],
            ),
            // A '*'-led day field means AND: odd days that are Mondays.
            (
                "0 0 */2 * 1",
                "2026-06-01T00:00:00Z",
                Tz::UTC,
                &[
                    "2026-06-15T00:00Z",
                    "2026-06-29T00:00Z",
                    "2026-07-13T00:00Z",
                ],
            ),
            // 7 is Sunday; 2026-06-07 is a Sunday.
            (
                "0 0 * * 7",
                "2026-06-03T00:00:00Z",
                Tz::UTC,
                &["2026-06-07T00:00Z", "2026-06-14T00:00Z"],
            ),
            (
                "0 0 * * sun",
                "2026-06-03T00:00:00Z",
                Tz::UTC,
                &["2026-06-07T00:00Z"],
            ),
            (
                "30 8 * jan,jul *",
                "2026-01-31T08:30:00Z",
                Tz::UTC,
                &["2026-07-01T08:30Z"],
            ),
            (
                "0 0 29 2 *",
                "2026-01-01T00:00:00Z",
                Tz::UTC,
                &["2028-02-29T00:00Z", "2032-02-29T00:00Z"],
            ),
            (
                "59 23 31 12 *",
                "2026-12-31T23:59:00Z",
                Tz::UTC,
                &["2027-12-31T23:59Z"],
            ),
        ];
        for (expr, from, zone, want) in cases {
            assert_eq!(
                fires(expr, from, *zone, want.len()),
                *want,
                "{expr} from {from} in {zone}"
            );
        }
    }

    #[test]
    fn next_after_is_strict_and_ignores_seconds() {
        let spec = CronSpec::parse("0 9 * * *").unwrap();
        let at = utc("2026-06-01T09:00:00Z");
        assert_eq!(
            spec.next_after(at, Tz::UTC),
            Some(utc("2026-06-02T09:00:00Z"))
        );
        assert_eq!(
            spec.next_after(utc("2026-06-01T08:59:59.999Z"), Tz::UTC),
            Some(at)
        );
        assert_eq!(
            spec.next_after(utc("2026-06-01T09:00:00.001Z"), Tz::UTC),
            Some(utc("2026-06-02T09:00:00Z"))
        );
    }

    #[test]
    fn dst_london() {
        // Spring forward 2026-03-29 01:00 GMT -> 02:00 BST: 01:30 is in the gap.
        assert_eq!(
            fires("30 1 * * *", "2026-03-27T12:00:00Z", London, 4),
            [
                "2026-03-28T01:30Z",
                "2026-03-29T01:00Z",
                "2026-03-30T00:30Z",
                "2026-03-31T00:30Z"
            ]
        );
        // 02:30 is not in London's gap: ordinary 02:30 BST.
        assert_eq!(
            fires("30 2 * * *", "2026-03-28T12:00:00Z", London, 2),
            ["2026-03-29T01:30Z", "2026-03-30T01:30Z"]
        );
        // Fall back 2026-10-25 02:00 BST -> 01:00 GMT: 01:30 happens twice, fires once.
        assert_eq!(
            fires("30 1 * * *", "2026-10-23T12:00:00Z", London, 4),
            [
                "2026-10-24T00:30Z",
                "2026-10-25T00:30Z",
                "2026-10-26T01:30Z",
                "2026-10-27T01:30Z"
            ]
        );
        // Every 15 minutes through the gap: the whole gap collapses into 01:00 UTC.
        assert_eq!(
            fires("*/15 * * * *", "2026-03-29T00:30:00Z", London, 4),
            [
                "2026-03-29T00:45Z",
                "2026-03-29T01:00Z",
                "2026-03-29T01:15Z",
                "2026-03-29T01:30Z"
            ]
        );
        // Every 30 minutes through the repeated hour: not run again.
        assert_eq!(
            fires("*/30 * * * *", "2026-10-24T23:45:00Z", London, 4),
            [
                "2026-10-25T00:00Z",
                "2026-10-25T00:30Z",
                "2026-10-25T02:00Z",
                "2026-10-25T02:30Z"
            ]
        );
    }

    #[test]
    fn dst_new_york() {
        // 02:30 on 2026-03-08 does not exist: fires at 03:00 EDT = 07:00 UTC.
        assert_eq!(
            fires("30 2 * * *", "2026-03-06T12:00:00Z", New_York, 4),
            [
                "2026-03-07T07:30Z",
                "2026-03-08T07:00Z",
                "2026-03-09T06:30Z",
                "2026-03-10T06:30Z"
            ]
        );
        // 01:30 on 2026-11-01 happens twice: fires once, at 01:30 EDT.
        assert_eq!(
            fires("30 1 * * *", "2026-10-30T12:00:00Z", New_York, 4),
            [
                "2026-10-31T05:30Z",
                "2026-11-01T05:30Z",
                "2026-11-02T06:30Z",
                "2026-11-03T06:30Z"
            ]
        );
        // Asked during the second 01:30 (EST), the slot already fired: next day.
        let spec = CronSpec::parse("30 1 * * *").unwrap();
        assert_eq!(
            spec.next_after(utc("2026-11-01T06:00:00Z"), New_York),
            Some(utc("2026-11-02T06:30:00Z"))
        );
    }

    /// Iterate over 10 days around each change: exactly one firing per local day.
    #[test]
    fn dst_one_fire_per_local_day() {
        let cases = [
            (London, "2026-03-24T12:00:00Z", "30 1 * * *"),
            (London, "2026-10-20T12:00:00Z", "30 1 * * *"),
            (London, "2026-10-20T12:00:00Z", "0 1 * * *"),
            (London, "2026-03-24T12:00:00Z", "0 1 * * *"),
            (New_York, "2026-03-03T12:00:00Z", "30 2 * * *"),
            (New_York, "2026-03-03T12:00:00Z", "30 1 * * *"),
            (New_York, "2026-10-27T12:00:00Z", "30 1 * * *"),
            (New_York, "2026-10-27T12:00:00Z", "30 2 * * *"),
        ];
        for (zone, from, expr) in cases {
            let spec = CronSpec::parse(expr).unwrap();
            let mut t = utc(from);
            let first_day = t.with_timezone(&zone).date_naive();
            let mut days = Vec::new();
            for _ in 0..10 {
                let next = spec.next_after(t, zone).unwrap();
                assert!(next > t);
                days.push(next.with_timezone(&zone).date_naive());
                t = next;
            }
            let want: Vec<NaiveDate> = (1..=10).map(|i| first_day + TimeDelta::days(i)).collect();
            assert_eq!(days, want, "{expr} in {zone} from {from}");
        }
    }

    #[test]
    fn matches_local_agrees() {
        let spec = CronSpec::parse("0 12 13 * 5").unwrap();
        let d = |y, m, dd| {
            NaiveDate::from_ymd_opt(y, m, dd)
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap()
        };
        assert!(spec.matches_local(d(2026, 1, 13))); // Tuesday the 13th
        assert!(spec.matches_local(d(2026, 1, 16))); // Friday
        assert!(!spec.matches_local(d(2026, 1, 14)));
    }
}
