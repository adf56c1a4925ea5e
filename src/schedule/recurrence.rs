//! Chore recurrences: "every monday and thursday at 19:00", "fortnightly".

use std::fmt;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::cron::CronSpec;
use super::error::{clip, Field, ScheduleError};
use super::text::{count, ordinal, split_time, tokenize, weekday, words};
use super::zone::{resolve_local, to_local};

/// How often a chore comes due.
///
/// Times (`at`, `due`) are local wall-clock times of the household's zone;
/// the zone is passed to [`Recurrence::next_after`]. `at: None` means "use the
/// caller's default time of day".
///
/// Serialized with an internal `kind` tag, e.g.
/// `{"kind":"weekly","days":["Mon","Thu"],"at":"19:00:00"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recurrence {
    /// Does not repeat. `due` is the local due time, if any.
    Once {
        /// Local due time.
        due: Option<NaiveDateTime>,
    },
    /// Every day.
    Daily {
        /// Local time of day.
        at: Option<NaiveTime>,
    },
    /// On the listed weekdays of every week (`every monday and thursday`,
    /// `weekdays`, `weekends`). Days are kept sorted Monday first, without
    /// duplicates.
    Weekly {
        /// The weekdays (serialized as `"Mon"`, `"Tue"`, …).
        days: Vec<Weekday>,
        /// Local time of day.
        at: Option<NaiveTime>,
    },
    /// Every `n` days, counted from the anchor's local date (`every 3 days`,
    /// `every other day`).
    EveryDays {
        /// Number of days, at least 1.
        n: u32,
        /// Local time of day.
        at: Option<NaiveTime>,
    },
    /// Every `n` weeks, counted from the anchor's local date (`weekly`,
    /// `every 2 weeks`, `fortnightly`).
    EveryWeeks {
        /// Number of weeks, at least 1.
        n: u32,
        /// Local time of day.
        at: Option<NaiveTime>,
    },
    /// On day `day` of every month; in shorter months the last day of the
    /// month instead (day 31 → Feb 28/29, Apr 30, May 31).
    Monthly {
        /// Day of the month, 1..=31.
        day: u32,
        /// Local time of day.
        at: Option<NaiveTime>,
    },
    /// A 5-field cron expression (see [`CronSpec`]), stored normalized.
    Cron {
        /// The normalized expression.
        expr: String,
    },
}

/// Longest recurrence phrase [`split_title_recurrence`] looks for, in words.
const MAX_PHRASE_WORDS: usize = 16;

const MAX_EVERY_DAYS: u64 = 365;
const MAX_EVERY_WEEKS: u64 = 52;

/// Frequency part of a phrase, before the time of day is attached.
#[derive(Debug)]
enum Freq {
    Daily,
    EveryDays(u32),
    EveryWeeks(u32),
    Weekly(Vec<Weekday>),
    Monthly(u32),
}

impl Recurrence {
    /// Parse a recurrence phrase; the whole string must be the phrase.
    /// Deterministic and case-insensitive. Understood:
    ///
    /// * daily: `daily`, `every day`, `everyday`, `each day`, `once a day`;
    /// * every n days / weeks: `every 3 days`, `every other day`,
    ///   `every second day`, `weekly`, `every week`, `once a week`,
    ///   `every 2 weeks`, `every other week`, `fortnightly`, `biweekly`
    ///   (`every 1 day` is daily);
    /// * weekdays: `every sunday`, `every monday and thursday`,
    ///   `every mon, wed & fri`, `mondays`, `on mondays and fridays`,
    ///   `every monday to friday`, `weekly on tuesday`, `weekdays`,
    ///   `every weekday`, `weekends`, `every weekend`. A lone singular day
    ///   (`monday`, `on monday`) is *not* a recurrence;
    /// * monthly: `monthly` and `every month` (on the 1st), `first of the month`,
    ///   `monthly on the 15th`, `on the 31st of every month`,
    ///   `every month on day 31`, `the 15th of each month`,
    ///   `last day of the month` (= day 31, clamped);
    /// * cron: `cron 0 19 * * 1` or a bare 5-field expression;
    /// * a time of day before or after any of the above (not cron):
    ///   `daily at 8`, `every day at 7pm`, `at 18:30 every day`,
    ///   `7:30 pm on weekdays`. A bare hour needs `at`.
    ///
    /// # Errors
    /// * [`ScheduleError::Unparsed`]: `recurrence: could not understand 'every blue moon'`;
    /// * [`ScheduleError::Invalid`] for recognised phrases that break a rule:
    ///   `recurrence: 'every 0 days' needs a count from 1 to 365`,
    ///   `recurrence: day of month 32 is out of range 1-31`,
    ///   `recurrence: '25:00' is not a valid time of day`;
    /// * cron errors from [`CronSpec::parse`].
    pub fn parse(phrase: &str) -> Result<Recurrence, ScheduleError> {
        let raw = phrase.trim();
        let lower = raw.to_lowercase();
        if let Some(expr) = lower
            .strip_prefix("cron")
            .filter(|r| r.starts_with(char::is_whitespace))
        {
            let spec = CronSpec::parse(expr)?;
            return Ok(Recurrence::Cron {
                expr: spec.as_str().to_string(),
            });
        }
        if looks_like_cron(&lower) {
            let spec = CronSpec::parse(&lower)?;
            return Ok(Recurrence::Cron {
                expr: spec.as_str().to_string(),
            });
        }
        let w = words(raw);
        let toks: Vec<&str> = w.iter().map(String::as_str).collect();
        let invalid = |reason: String| ScheduleError::invalid(Field::Recurrence, reason);
        let (at, rest) = split_time(&toks).map_err(invalid)?;
        let freq = parse_freq(rest, raw)
            .map_err(invalid)?
            .ok_or_else(|| ScheduleError::unparsed(Field::Recurrence, phrase))?;
        Ok(match freq {
            Freq::Daily => Recurrence::Daily { at },
            Freq::EveryDays(n) => Recurrence::EveryDays { n, at },
            Freq::EveryWeeks(n) => Recurrence::EveryWeeks { n, at },
            Freq::Weekly(days) => Recurrence::Weekly { days, at },
            Freq::Monthly(day) => Recurrence::Monthly { day, at },
        })
    }

    /// The next due time strictly after `anchor` (UTC), computed in the
    /// wall-clock time of `zone`, returned in UTC.
    ///
    /// `anchor` is the previous due time or the completion time — the caller
    /// picks. `default_at` (local) is used when the recurrence has no time of day.
    ///
    /// * `Once` → `None`.
    /// * `Daily`: the next day (today included) whose time of day is after `anchor`.
    /// * `Weekly`: the next listed day; the anchor's own day only if the time
    ///   of day is still ahead of `anchor`.
    /// * `EveryDays`/`EveryWeeks`: `n` days / `7n` days after the anchor's
    ///   local date, at the time of day (`n = 0` counts as 1).
    /// * `Monthly`: the next month day (this month included) after `anchor`,
    ///   clamped to the month's length; `day` outside 1..=31 is clamped too.
    /// * `Cron`: [`CronSpec::next_after`] (`default_at` unused); `None` if the
    ///   stored expression no longer parses.
    ///
    /// DST follows [`resolve_local`]: a time in the spring-forward gap is due at
    /// the end of the gap, a repeated fall-back time only at its first
    /// occurrence, so a daily chore is due exactly once per local day.
    pub fn next_after(
        &self,
        anchor: DateTime<Utc>,
        zone: Tz,
        default_at: NaiveTime,
    ) -> Option<DateTime<Utc>> {
        let local = to_local(anchor, zone)?.date();
        let first = |t: NaiveTime, dates: &mut dyn Iterator<Item = NaiveDate>| {
            dates
                .map(|d| resolve_local(d.and_time(t), zone))
                .find(|due| *due > anchor)
        };
        let plus_days = |n: u64| local.checked_add_days(Days::new(n));
        match self {
            Recurrence::Once { .. } => None,
            Recurrence::Daily { at } => {
                first(at.unwrap_or(default_at), &mut (0..=2).filter_map(plus_days))
            }
            Recurrence::Weekly { days, at } => first(
                at.unwrap_or(default_at),
                &mut (0..=7)
                    .filter_map(plus_days)
                    .filter(|d| days.contains(&d.weekday())),
            ),
            Recurrence::EveryDays { n, at } => {
                let n = u64::from((*n).max(1));
                first(
                    at.unwrap_or(default_at),
                    &mut (1..=2).filter_map(|k| plus_days(k * n)),
                )
            }
            Recurrence::EveryWeeks { n, at } => {
                let n = 7 * u64::from((*n).max(1));
                first(
                    at.unwrap_or(default_at),
                    &mut (1..=2).filter_map(|k| plus_days(k * n)),
                )
            }
            Recurrence::Monthly { day, at } => {
                let month_start = local.with_day(1)?;
                let day = (*day).clamp(1, 31);
                first(
                    at.unwrap_or(default_at),
                    &mut (0..=2).filter_map(|k| {
                        let start = month_start.checked_add_months(Months::new(k))?;
                        start.with_day(day.min(days_in_month(start)))
                    }),
                )
            }
            Recurrence::Cron { expr } => CronSpec::parse(expr).ok()?.next_after(anchor, zone),
        }
    }

    /// A short human description: `every 3 days`, `Mon, Thu at 19:00`,
    /// `monthly on day 31`, `daily at 08:00`, `weekdays`, `fortnightly`.
    pub fn describe(&self) -> String {
        let with_at = |base: String, at: &Option<NaiveTime>| match at {
            Some(t) => format!("{base} at {}", fmt_time(*t)),
            None => base,
        };
        match self {
            Recurrence::Once { due: None } => "once".to_string(),
            Recurrence::Once { due: Some(d) } => format!("once on {}", d.format("%Y-%m-%d %H:%M")),
            Recurrence::Daily { at } => with_at("daily".into(), at),
            Recurrence::Weekly { days, at } => {
                let mut sorted = days.clone();
                sorted.sort_by_key(Weekday::num_days_from_monday);
                sorted.dedup();
                let base = match sorted.as_slice() {
                    [] => "never".to_string(),
                    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri] => {
                        "weekdays".to_string()
                    }
                    [Weekday::Sat, Weekday::Sun] => "weekends".to_string(),
                    d if d.len() == 7 => "every day".to_string(),
                    d => d
                        .iter()
                        .map(|w| w.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                with_at(base, at)
            }
            Recurrence::EveryDays { n, at } => with_at(
                match n {
                    0 | 1 => "daily".to_string(),
                    n => format!("every {n} days"),
                },
                at,
            ),
            Recurrence::EveryWeeks { n, at } => with_at(
                match n {
                    0 | 1 => "weekly".to_string(),
                    2 => "fortnightly".to_string(),
                    n => format!("every {n} weeks"),
                },
                at,
            ),
            Recurrence::Monthly { day, at } => with_at(format!("monthly on day {day}"), at),
            Recurrence::Cron { expr } => format!("cron {expr}"),
        }
    }
}

impl fmt::Display for Recurrence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn fmt_time(t: NaiveTime) -> String {
    if chrono::Timelike::second(&t) == 0 {
        t.format("%H:%M").to_string()
    } else {
        t.format("%H:%M:%S").to_string()
    }
}

fn days_in_month(first: NaiveDate) -> u32 {
    match first
        .checked_add_months(Months::new(1))
        .and_then(|n| n.pred_opt())
    {
        Some(last) => last.day(),
        None => 31,
    }
}

/// 5 to 7 whitespace-separated fields made of cron characters only; the
/// first starts with a digit or `*`. Such text is parsed (and refused) as cron.
fn looks_like_cron(s: &str) -> bool {
    const NAMES: [&str; 22] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "sun",
        "mon", "tue", "wed", "thu", "fri", "sat", "l", "w", "lw",
    ];
    let fields: Vec<&str> = s.split_whitespace().collect();
    (5..=7).contains(&fields.len())
        && fields[0].starts_with(|c: char| c.is_ascii_digit() || c == '*')
        && fields.iter().all(|f| {
            f.split(|c: char| c.is_ascii_digit() || "*,/-?#".contains(c))
                .all(|word| word.is_empty() || NAMES.contains(&word))
        })
}

/// Token cursor for the phrase grammar.
struct P<'a, 'b> {
    t: &'a [&'b str],
    i: usize,
}

impl<'b> P<'_, 'b> {
    fn peek(&self) -> Option<&'b str> {
        self.t.get(self.i).copied()
    }
    fn next(&mut self) -> Option<&'b str> {
        let t = self.peek()?;
        self.i += 1;
        Some(t)
    }
    fn eat(&mut self, w: &str) -> bool {
        self.eat_any(&[w])
    }
    fn eat_any(&mut self, ws: &[&str]) -> bool {
        match self.peek() {
            Some(t) if ws.contains(&t) => {
                self.i += 1;
                true
            }
            _ => false,
        }
    }
    fn done(&self) -> bool {
        self.i == self.t.len()
    }
}

type Alt = fn(&mut P<'_, '_>, &str) -> Result<Option<Freq>, String>;

/// Match the whole token list against each alternative of the grammar.
fn parse_freq(toks: &[&str], raw: &str) -> Result<Option<Freq>, String> {
    const ALTS: [Alt; 5] = [daily, every_n, weekly, weekdays, monthly];
    for alt in ALTS {
        let mut p = P { t: toks, i: 0 };
        if let Some(f) = alt(&mut p, raw)? {
            if p.done() {
                return Ok(Some(f));
            }
        }
    }
    Ok(None)
}

fn once_a(p: &mut P<'_, '_>, unit: &str) -> bool {
    let save = p.i;
    if p.eat("once") && p.eat_any(&["a", "per", "every", "each"]) && p.eat(unit) {
        return true;
    }
    p.i = save;
    false
}

fn daily(p: &mut P<'_, '_>, _: &str) -> Result<Option<Freq>, String> {
    if p.eat_any(&["daily", "everyday"]) || once_a(p, "day") {
        return Ok(Some(Freq::Daily));
    }
    if p.eat_any(&["every", "each"]) {
        p.eat("single");
        if p.eat("day") {
            return Ok(Some(Freq::Daily));
        }
    }
    Ok(None)
}

fn every_n(p: &mut P<'_, '_>, raw: &str) -> Result<Option<Freq>, String> {
    if p.eat_any(&["fortnightly", "biweekly", "bi-weekly"]) {
        return Ok(Some(Freq::EveryWeeks(2)));
    }
    if !p.eat_any(&["every", "each"]) {
        return Ok(None);
    }
    if p.eat("fortnight") {
        return Ok(Some(Freq::EveryWeeks(2)));
    }
    let n = if p.eat_any(&["other", "alternate"]) {
        2
    } else {
        match p.next() {
            Some("a" | "an") | None => return Ok(None),
            Some(t) => match count(t).or_else(|| ordinal(t)) {
                Some(n) => n,
                None => return Ok(None),
            },
        }
    };
    let bad = |max: u64| format!("'{}' needs a count from 1 to {max}", clip(raw));
    let unit = p.next();
    if !p.done() {
        return Ok(None);
    }
    match unit {
        Some("day" | "days") => match n {
            1 => Ok(Some(Freq::Daily)),
            2..=MAX_EVERY_DAYS => Ok(Some(Freq::EveryDays(n as u32))),
            _ => Err(bad(MAX_EVERY_DAYS)),
        },
        Some("week" | "weeks") => match n {
            1..=MAX_EVERY_WEEKS => Ok(Some(Freq::EveryWeeks(n as u32))),
            _ => Err(bad(MAX_EVERY_WEEKS)),
        },
        _ => Ok(None),
    }
}

fn week_word(p: &mut P<'_, '_>) -> bool {
    let save = p.i;
    if p.eat("weekly") || once_a(p, "week") || (p.eat_any(&["every", "each"]) && p.eat("week")) {
        return true;
    }
    p.i = save;
    false
}

fn weekly(p: &mut P<'_, '_>, _: &str) -> Result<Option<Freq>, String> {
    if !week_word(p) {
        return Ok(None);
    }
    if p.done() {
        return Ok(Some(Freq::EveryWeeks(1)));
    }
    if p.eat("on") {
        return Ok(day_list(p, true).map(Freq::Weekly));
    }
    Ok(None)
}

fn weekdays(p: &mut P<'_, '_>, _: &str) -> Result<Option<Freq>, String> {
    const WORK: [Weekday; 5] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ];
    const WEEKEND: [Weekday; 2] = [Weekday::Sat, Weekday::Sun];
    let every = p.eat_any(&["every", "each"]);
    if !every {
        p.eat_any(&["on", "at"]);
    }
    let group = match p.peek() {
        Some("weekdays") => Some(WORK.to_vec()),
        Some("weekday") if every => Some(WORK.to_vec()),
        Some("weekends") => Some(WEEKEND.to_vec()),
        Some("weekend") if every => Some(WEEKEND.to_vec()),
        _ => None,
    };
    if let Some(days) = group {
        p.i += 1;
        return Ok(Some(Freq::Weekly(days)));
    }
    // Singular day names need "every"; otherwise they must be plural ("mondays").
    Ok(day_list(p, every).map(Freq::Weekly))
}

/// `monday and thursday`, `mon wed & fri`, `monday to friday`; sorted, deduplicated.
fn day_list(p: &mut P<'_, '_>, singular_ok: bool) -> Option<Vec<Weekday>> {
    let mut days = Vec::new();
    let day = |p: &mut P<'_, '_>| {
        let (d, plural) = weekday(p.peek()?)?;
        if !plural && !singular_ok {
            return None;
        }
        p.i += 1;
        Some(d)
    };
    loop {
        let d = day(p)?;
        if p.eat_any(&["to", "through", "thru", "-"]) {
            let end = day(p)?;
            let mut cur = d;
            days.push(cur);
            while cur != end {
                cur = cur.succ();
                days.push(cur);
            }
        } else {
            days.push(d);
        }
        if p.done() {
            break;
        }
        p.eat_any(&["and", "or"]);
    }
    days.sort_by_key(Weekday::num_days_from_monday);
    days.dedup();
    Some(days)
}

fn month_word(p: &mut P<'_, '_>) -> bool {
    let save = p.i;
    if p.eat("monthly") || once_a(p, "month") || (p.eat_any(&["every", "each"]) && p.eat("month")) {
        return true;
    }
    p.i = save;
    false
}

/// A day of the month: `15th`, `first`, `the 31st`, `day 31`, `last day`,
/// `end`. Not range-checked yet (see [`monthly_day`]).
fn month_day(p: &mut P<'_, '_>) -> Option<u64> {
    p.eat("the");
    match p.next()? {
        "day" => p.next().and_then(count),
        "last" => {
            p.eat("day");
            Some(31)
        }
        "end" => Some(31),
        t => {
            let n = ordinal(t)?;
            p.eat("day");
            Some(n)
        }
    }
}

/// Range-check a day of the month once the whole phrase has matched.
fn monthly_day(p: &P<'_, '_>, n: u64) -> Result<Option<Freq>, String> {
    if !p.done() {
        Ok(None)
    } else if (1..=31).contains(&n) {
        Ok(Some(Freq::Monthly(n as u32)))
    } else {
        Err(format!("day of month {n} is out of range 1-31"))
    }
}

fn monthly(p: &mut P<'_, '_>, _: &str) -> Result<Option<Freq>, String> {
    // "monthly [on the 15th]", "every month [on day 31]".
    if month_word(p) {
        if p.done() {
            return Ok(Some(Freq::Monthly(1)));
        }
        p.eat("on");
        return match month_day(p) {
            Some(n) => monthly_day(p, n),
            None => Ok(None),
        };
    }
    // "[every|on] the 15th of every month", "first of the month", "the 15th each month".
    p.eat_any(&["every", "each", "on"]);
    let Some(day) = month_day(p) else {
        return Ok(None);
    };
    let linked = if p.eat("of") {
        p.eat_any(&["every", "each", "the", "a"]);
        true
    } else {
        p.eat_any(&["every", "each"])
    };
    if linked && p.eat("month") {
        monthly_day(p, day)
    } else {
        Ok(None)
    }
}

/// Split chore text into a title and a trailing recurrence phrase.
///
/// The longest run of trailing words (up to 16) that [`Recurrence::parse`]
/// accepts is the phrase; the text before it, trimmed of whitespace and of
/// trailing `,;:-–—`, is the title. Without such a phrase the whole trimmed
/// text is the title and the recurrence is `None`.
///
/// * `"Water plants every 3 days"` → `("Water plants", EveryDays { n: 3, at: None })`
/// * `"Bins every monday at 7pm"` → `("Bins", Weekly { [Mon], 19:00 })`
/// * `"Dishes daily at 8"` → `("Dishes", Daily { 08:00 })`
/// * `"Take out trash"` → `("Take out trash", None)`
///
/// # Errors
/// * [`ScheduleError::TitleMissing`] (`title: missing`) when nothing is left for
///   the title (`"every day"`, `""`);
/// * a recurrence or cron error when the longest recognised trailing phrase
///   breaks a rule (`"Bins every 0 days"`), rather than silently keeping it in
///   the title.
pub fn split_title_recurrence(text: &str) -> Result<(String, Option<Recurrence>), ScheduleError> {
    let text = text.trim();
    let toks = tokenize(text);
    if toks.is_empty() {
        return Err(ScheduleError::TitleMissing);
    }
    let first = toks.len().saturating_sub(MAX_PHRASE_WORDS);
    for (i, tok) in toks.iter().enumerate().skip(first) {
        match Recurrence::parse(&text[tok.start..]) {
            Ok(rec) => {
                let title = text[..tok.start]
                    .trim_end_matches(|c: char| c.is_whitespace() || ",;:-–—".contains(c));
                if title.is_empty() || i == 0 {
                    return Err(ScheduleError::TitleMissing);
                }
                return Ok((title.to_string(), Some(rec)));
            }
            Err(ScheduleError::Unparsed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((text.to_string(), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, Timelike};
    use chrono_tz::{America::New_York, Europe::London};
    use Weekday::*;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn parse_accepts() {
        use Recurrence as R;
        let cases: Vec<(&str, R)> = vec![
            ("every 3 days", R::EveryDays { n: 3, at: None }),
            ("Every Three Days", R::EveryDays { n: 3, at: None }),
            (
                "every monday and thursday at 19:00",
                R::Weekly {
                    days: vec![Mon, Thu],
                    at: Some(t(19, 0)),
                },
            ),
            (
                "every thursday & monday at 7pm",
                R::Weekly {
                    days: vec![Mon, Thu],
                    at: Some(t(19, 0)),
                },
            ),
            (
                "every mon, wed and fri",
                R::Weekly {
                    days: vec![Mon, Wed, Fri],
                    at: None,
                },
            ),
            ("daily at 8", R::Daily { at: Some(t(8, 0)) }),
            ("daily", R::Daily { at: None }),
            ("every day at 7pm", R::Daily { at: Some(t(19, 0)) }),
            ("everyday", R::Daily { at: None }),
            ("once a day", R::Daily { at: None }),
            ("every 1 day", R::Daily { at: None }),
            (
                "at 18:30 every day",
                R::Daily {
                    at: Some(t(18, 30)),
                },
            ),
            (
                "7:30 pm daily",
                R::Daily {
                    at: Some(t(19, 30)),
                },
            ),
            ("every day at noon", R::Daily { at: Some(t(12, 0)) }),
            ("first of the month", R::Monthly { day: 1, at: None }),
            (
                "the 1st of each month at 9am",
                R::Monthly {
                    day: 1,
                    at: Some(t(9, 0)),
                },
            ),
            ("monthly", R::Monthly { day: 1, at: None }),
            ("every month", R::Monthly { day: 1, at: None }),
            ("monthly on the 15th", R::Monthly { day: 15, at: None }),
            (
                "on the 31st of every month",
                R::Monthly { day: 31, at: None },
            ),
            ("every month on day 31", R::Monthly { day: 31, at: None }),
            (
                "on the fifteenth every month",
                R::Monthly { day: 15, at: None },
            ),
            ("last day of the month", R::Monthly { day: 31, at: None }),
            (
                "every month on the last day at 18:00",
                R::Monthly {
                    day: 31,
                    at: Some(t(18, 0)),
                },
            ),
            (
                "weekdays",
                R::Weekly {
                    days: vec![Mon, Tue, Wed, Thu, Fri],
                    at: None,
                },
            ),
            (
                "on weekdays at 7:30",
                R::Weekly {
                    days: vec![Mon, Tue, Wed, Thu, Fri],
                    at: Some(t(7, 30)),
                },
            ),
            (
                "7:30 pm on weekdays",
                R::Weekly {
                    days: vec![Mon, Tue, Wed, Thu, Fri],
                    at: Some(t(19, 30)),
                },
            ),
            (
                "every weekday",
                R::Weekly {
                    days: vec![Mon, Tue, Wed, Thu, Fri],
                    at: None,
                },
            ),
            (
                "weekends",
                R::Weekly {
                    days: vec![Sat, Sun],
                    at: None,
                },
            ),
            (
                "every weekend at 10am",
                R::Weekly {
                    days: vec![Sat, Sun],
                    at: Some(t(10, 0)),
                },
            ),
            ("weekly", R::EveryWeeks { n: 1, at: None }),
            ("every week", R::EveryWeeks { n: 1, at: None }),
            ("once a week", R::EveryWeeks { n: 1, at: None }),
            (
                "weekly on tuesday",
                R::Weekly {
                    days: vec![Tue],
                    at: None,
                },
            ),
            ("every other day", R::EveryDays { n: 2, at: None }),
            ("every second day", R::EveryDays { n: 2, at: None }),
            ("every 2 weeks", R::EveryWeeks { n: 2, at: None }),
            ("every other week", R::EveryWeeks { n: 2, at: None }),
            ("fortnightly", R::EveryWeeks { n: 2, at: None }),
            (
                "every fortnight at 9",
                R::EveryWeeks {
                    n: 2,
                    at: Some(t(9, 0)),
                },
            ),
            (
                "every sunday",
                R::Weekly {
                    days: vec![Sun],
                    at: None,
                },
            ),
            (
                "mondays",
                R::Weekly {
                    days: vec![Mon],
                    at: None,
                },
            ),
            (
                "on mondays and fridays",
                R::Weekly {
                    days: vec![Mon, Fri],
                    at: None,
                },
            ),
            (
                "every monday to friday",
                R::Weekly {
                    days: vec![Mon, Tue, Wed, Thu, Fri],
                    at: None,
                },
            ),
            (
                "every friday through monday",
                R::Weekly {
                    days: vec![Mon, Fri, Sat, Sun],
                    at: None,
                },
            ),
            (
                "cron 0 19 * * 1",
                R::Cron {
                    expr: "0 19 * * 1".into(),
                },
            ),
            (
                "0 19 * * MON",
                R::Cron {
                    expr: "0 19 * * mon".into(),
                },
            ),
            (
                "0 0 1,15 * *",
                R::Cron {
                    expr: "0 0 1,15 * *".into(),
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Recurrence::parse(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn parse_refuses() {
        let cases = [
            (
                "every blue moon",
                "recurrence: could not understand 'every blue moon'",
            ),
            ("", "recurrence: could not understand ''"),
            ("monday", "recurrence: could not understand 'monday'"),
            ("on monday", "recurrence: could not understand 'on monday'"),
            ("sometimes", "recurrence: could not understand 'sometimes'"),
            ("daily 8", "recurrence: could not understand 'daily 8'"),
            (
                "every 0 days",
                "recurrence: 'every 0 days' needs a count from 1 to 365",
            ),
            (
                "every 400 days",
                "recurrence: 'every 400 days' needs a count from 1 to 365",
            ),
            (
                "every 53 weeks",
                "recurrence: 'every 53 weeks' needs a count from 1 to 52",
            ),
            (
                "on the 32nd of every month",
                "recurrence: day of month 32 is out of range 1-31",
            ),
            (
                "daily at 25:00",
                "recurrence: '25:00' is not a valid time of day",
            ),
            (
                "every day at 13pm",
                "recurrence: '13pm' is not a valid time of day",
            ),
            (
                "cron 0 0 9 * * 1",
                "cron: expected 5 fields (minute hour day-of-month month day-of-week), got 6",
            ),
            (
                "0 0 9 * * 1",
                "cron: expected 5 fields (minute hour day-of-month month day-of-week), got 6",
            ),
            (
                "cron 61 * * * *",
                "cron: minute field '61' is invalid: number out of bounds; allowed values are 0-59",
            ),
        ];
        for (input, msg) in cases {
            assert_eq!(
                Recurrence::parse(input).unwrap_err().to_string(),
                msg,
                "{input}"
            );
        }
    }

    #[test]
    fn split_table() {
        use Recurrence as R;
        let ok: Vec<(&str, &str, Option<R>)> = vec![
            (
                "Water plants every 3 days",
                "Water plants",
                Some(R::EveryDays { n: 3, at: None }),
            ),
            (
                "Bins every monday at 7pm",
                "Bins",
                Some(R::Weekly {
                    days: vec![Mon],
                    at: Some(t(19, 0)),
                }),
            ),
            ("Take out trash", "Take out trash", None),
            (
                "Dishes daily at 8",
                "Dishes",
                Some(R::Daily { at: Some(t(8, 0)) }),
            ),
            (
                "Water plants, every 3 days.",
                "Water plants",
                Some(R::EveryDays { n: 3, at: None }),
            ),
            (
                "Pay rent - first of the month",
                "Pay rent",
                Some(R::Monthly { day: 1, at: None }),
            ),
            ("Weekly review", "Weekly review", None),
            (
                "Team sync weekly",
                "Team sync",
                Some(R::EveryWeeks { n: 1, at: None }),
            ),
            ("Call mom on monday", "Call mom on monday", None),
            (
                "Gym mondays and thursdays at 6:30am",
                "Gym",
                Some(R::Weekly {
                    days: vec![Mon, Thu],
                    at: Some(t(6, 30)),
                }),
            ),
            (
                "Backup 0 3 * * *",
                "Backup",
                Some(R::Cron {
                    expr: "0 3 * * *".into(),
                }),
            ),
            (
                "Read 2 chapters daily",
                "Read 2 chapters",
                Some(R::Daily { at: None }),
            ),
            (
                "  Vacuum   at 18:30 every day ",
                "Vacuum",
                Some(R::Daily {
                    at: Some(t(18, 30)),
                }),
            ),
        ];
        for (input, title, rec) in ok {
            assert_eq!(
                split_title_recurrence(input),
                Ok((title.to_string(), rec)),
                "{input}"
            );
        }
        let bad = [
            ("every day", "title: missing"),
            ("Mondays", "title: missing"),
            ("", "title: missing"),
            ("   ", "title: missing"),
            ("- every day", "title: missing"),
            (
                "Bins every 0 days",
                "recurrence: 'every 0 days' needs a count from 1 to 365",
            ),
            (
                "Bins daily at 25:00",
                "recurrence: '25:00' is not a valid time of day",
            ),
        ];
        for (input, msg) in bad {
            assert_eq!(
                split_title_recurrence(input).unwrap_err().to_string(),
                msg,
                "{input}"
            );
        }
    }

    #[test]
    fn describe_table() {
        use Recurrence as R;
        let cases = [
            (R::EveryDays { n: 3, at: None }, "every 3 days"),
            (
                R::Weekly {
                    days: vec![Thu, Mon],
                    at: Some(t(19, 0)),
                },
                "Mon, Thu at 19:00",
            ),
            (R::Monthly { day: 31, at: None }, "monthly on day 31"),
            (R::Daily { at: Some(t(8, 0)) }, "daily at 08:00"),
            (R::Daily { at: None }, "daily"),
            (
                R::Weekly {
                    days: vec![Mon, Tue, Wed, Thu, Fri],
                    at: None,
                },
                "weekdays",
            ),
            (
                R::Weekly {
                    days: vec![Sat, Sun],
                    at: Some(t(10, 0)),
                },
                "weekends at 10:00",
            ),
            (R::EveryWeeks { n: 1, at: None }, "weekly"),
            (R::EveryWeeks { n: 2, at: None }, "fortnightly"),
            (
                R::EveryWeeks {
                    n: 3,
                    at: Some(t(9, 30)),
                },
                "every 3 weeks at 09:30",
            ),
            (
                R::Cron {
                    expr: "0 19 * * 1".into(),
                },
                "cron 0 19 * * 1",
            ),
            (R::Once { due: None }, "once"),
        ];
        for (rec, want) in cases {
            assert_eq!(rec.describe(), want);
            assert_eq!(rec.to_string(), want);
        }
    }

    #[test]
    fn describe_round_trips_through_parse() {
        for phrase in [
            "every 3 days",
            "daily at 08:00",
            "weekdays",
            "weekends at 10:00",
            "weekly",
            "fortnightly",
            "every 3 weeks at 09:30",
            "cron 0 19 * * 1",
            "monthly",
        ] {
            let rec = Recurrence::parse(phrase).unwrap();
            assert_eq!(
                Recurrence::parse(&rec.describe()),
                Ok(rec.clone()),
                "{phrase}"
            );
        }
    }

    #[test]
    fn serde_shape() {
        let rec = Recurrence::Weekly {
            days: vec![Mon, Thu],
            at: Some(t(19, 0)),
        };
        let json = serde_json::to_string(&rec).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"weekly","days":["Mon","Thu"],"at":"19:00:00"}"#
        );
        assert_eq!(serde_json::from_str::<Recurrence>(&json).unwrap(), rec);
        let all = [
            Recurrence::Once { due: None },
            Recurrence::Daily { at: None },
            Recurrence::EveryDays {
                n: 3,
                at: Some(t(7, 0)),
            },
            Recurrence::EveryWeeks { n: 2, at: None },
            Recurrence::Monthly { day: 31, at: None },
            Recurrence::Cron {
                expr: "0 19 * * 1".into(),
            },
        ];
        for rec in all {
            let json = serde_json::to_string(&rec).unwrap();
            assert_eq!(
                serde_json::from_str::<Recurrence>(&json).unwrap(),
                rec,
                "{json}"
            );
        }
        // Missing optional fields default to None.
        assert_eq!(
            serde_json::from_str::<Recurrence>(r#"{"kind":"daily"}"#).unwrap(),
            Recurrence::Daily { at: None }
        );
    }

    fn nexts(rec: &Recurrence, from: &str, zone: Tz, n: usize) -> Vec<String> {
        let mut a = utc(from);
        (0..n)
            .map(|_| {
                a = rec.next_after(a, zone, t(9, 0)).unwrap();
                a.format("%Y-%m-%dT%H:%MZ").to_string()
            })
            .collect()
    }

    #[test]
    fn next_after_table() {
        use Recurrence as R;
        let cases: Vec<(R, &str, Tz, Vec<&str>)> = vec![
            (
                R::Once { due: None },
                "2026-06-01T00:00:00Z",
                Tz::UTC,
                vec![],
            ),
            // Default time of day when the recurrence has none.
            (
                R::Daily { at: None },
                "2026-06-01T08:00:00Z",
                Tz::UTC,
                vec!["2026-06-01T09:00Z", "2026-06-02T09:00Z"],
            ),
            (
                R::Daily { at: Some(t(8, 0)) },
                "2026-06-01T08:00:00Z",
                Tz::UTC,
                vec!["2026-06-02T08:00Z"],
            ),
            (
                R::EveryDays { n: 3, at: None },
                "2026-06-01T09:00:00Z",
                Tz::UTC,
                vec!["2026-06-04T09:00Z", "2026-06-07T09:00Z"],
            ),
            (
                R::EveryWeeks {
                    n: 2,
                    at: Some(t(18, 0)),
                },
                "2026-06-01T09:00:00Z",
                Tz::UTC,
                vec!["2026-06-15T18:00Z", "2026-06-29T18:00Z"],
            ),
            // 2026-06-01 is a Monday. Anchor Monday 19:00 -> Thursday, then Monday.
            (
                R::Weekly {
                    days: vec![Mon, Thu],
                    at: Some(t(19, 0)),
                },
                "2026-06-01T19:00:00Z",
                Tz::UTC,
                vec![
                    "2026-06-04T19:00Z",
                    "2026-06-08T19:00Z",
                    "2026-06-11T19:00Z",
                ],
            ),
            // Anchor Monday morning: the same Monday evening still counts.
            (
                R::Weekly {
                    days: vec![Mon, Thu],
                    at: Some(t(19, 0)),
                },
                "2026-06-01T08:00:00Z",
                Tz::UTC,
                vec!["2026-06-01T19:00Z"],
            ),
            (
                R::Weekly {
                    days: vec![Mon],
                    at: Some(t(19, 0)),
                },
                "2026-06-01T19:00:00Z",
                Tz::UTC,
                vec!["2026-06-08T19:00Z"],
            ),
            // Weekly in London summer: 19:00 BST = 18:00 UTC.
            (
                R::Weekly {
                    days: vec![Sun],
                    at: Some(t(19, 0)),
                },
                "2026-06-01T00:00:00Z",
                London,
                vec!["2026-06-07T18:00Z"],
            ),
            (
                R::Cron {
                    expr: "0 19 * * 1".into(),
                },
                "2026-06-01T19:00:00Z",
                Tz::UTC,
                vec!["2026-06-08T19:00Z"],
            ),
        ];
        for (rec, from, zone, want) in cases {
            let got = if want.is_empty() {
                assert_eq!(rec.next_after(utc(from), zone, t(9, 0)), None);
                vec![]
            } else {
                nexts(&rec, from, zone, want.len())
            };
            assert_eq!(got, want, "{rec:?} from {from}");
        }
    }

    #[test]
    fn monthly_clamps() {
        let rec = Recurrence::Monthly {
            day: 31,
            at: Some(t(9, 0)),
        };
        assert_eq!(
            nexts(&rec, "2027-01-01T00:00:00Z", Tz::UTC, 6),
            [
                "2027-01-31T09:00Z",
                "2027-02-28T09:00Z",
                "2027-03-31T09:00Z",
                "2027-04-30T09:00Z",
                "2027-05-31T09:00Z",
                "2027-06-30T09:00Z",
            ]
        );
        // Leap year 2028.
        assert_eq!(
            nexts(&rec, "2028-01-31T09:00:00Z", Tz::UTC, 2),
            ["2028-02-29T09:00Z", "2028-03-31T09:00Z"]
        );
        // From a completion time inside the month.
        let rec15 = Recurrence::Monthly { day: 15, at: None };
        assert_eq!(
            nexts(&rec15, "2026-06-20T12:00:00Z", Tz::UTC, 2),
            ["2026-07-15T09:00Z", "2026-08-15T09:00Z"]
        );
        // Year wrap.
        assert_eq!(
            nexts(&rec, "2026-12-31T10:00:00Z", Tz::UTC, 1),
            ["2027-01-31T09:00Z"]
        );
    }

    /// Daily recurrences over 10 days around each DST change: exactly one due
    /// time per local day, at the right local time.
    #[test]
    fn dst_daily_once_per_local_day() {
        let cases = [
            // (zone, start, at, expected UTC on the change day)
            (
                London,
                "2026-03-24T12:00:00Z",
                t(1, 30),
                "2026-03-29T01:00:00Z",
            ), // in the gap
            (
                London,
                "2026-10-20T12:00:00Z",
                t(1, 30),
                "2026-10-25T00:30:00Z",
            ), // first 01:30 (BST)
            (
                New_York,
                "2026-03-03T12:00:00Z",
                t(2, 30),
                "2026-03-08T07:00:00Z",
            ), // 03:00 EDT
            (
                New_York,
                "2026-10-27T12:00:00Z",
                t(1, 30),
                "2026-11-01T05:30:00Z",
            ), // first 01:30 (EDT)
        ];
        for (zone, start, at, change) in cases {
            let rec = Recurrence::Daily { at: Some(at) };
            let mut anchor = utc(start);
            let first_day = anchor.with_timezone(&zone).date_naive();
            let mut seen = Vec::new();
            for _ in 0..10 {
                let next = rec.next_after(anchor, zone, t(9, 0)).unwrap();
                assert!(next > anchor);
                seen.push(next);
                anchor = next;
            }
            let days: Vec<NaiveDate> = seen
                .iter()
                .map(|d| d.with_timezone(&zone).date_naive())
                .collect();
            let want: Vec<NaiveDate> = (1..=10).map(|i| first_day + TimeDelta::days(i)).collect();
            assert_eq!(days, want, "{zone} {at}");
            assert!(seen.contains(&utc(change)), "{zone} {at}: {seen:?}");
            // Every other day keeps the wall-clock time.
            for d in &seen {
                let local = d.with_timezone(&zone);
                if *d != utc(change) {
                    assert_eq!((local.hour(), local.minute()), (at.hour(), at.minute()));
                }
            }
            // Anchored at the completion time during the repeated hour (second
            // pass), the day's slot does not come due again.
            let second_pass = utc(change) + TimeDelta::hours(1);
            let next = rec.next_after(second_pass, zone, t(9, 0)).unwrap();
            assert_eq!(
                next.with_timezone(&zone).date_naive(),
                utc(change).with_timezone(&zone).date_naive() + TimeDelta::days(1)
            );
        }
    }

    #[test]
    fn weekly_and_every_days_across_dst() {
        // Sunday 2026-03-29 London springs forward; 09:00 stays 09:00 local.
        let rec = Recurrence::Weekly {
            days: vec![Sun],
            at: None,
        };
        assert_eq!(
            nexts(&rec, "2026-03-22T09:00:00Z", London, 2),
            ["2026-03-29T08:00Z", "2026-04-05T08:00Z"]
        );
        let rec = Recurrence::EveryDays {
            n: 2,
            at: Some(t(9, 0)),
        };
        assert_eq!(
            nexts(&rec, "2026-10-30T13:00:00Z", New_York, 2),
            ["2026-11-01T14:00Z", "2026-11-03T14:00Z"]
        );
    }
}
