//! Typed inputs (issue 10, item 5): an answer to an input of type `member`, `chore`, `date` or
//! `number` is checked when given (inline or answered) and stored in a normal form the run's
//! prompt can use as it is; a wrong one is asked again with why ("I don't know a member called
//! 'bobby' here").
//!
//! | type   | accepted                                             | stored as            |
//! | ------ | ---------------------------------------------------- | -------------------- |
//! | text   | anything                                             | the text             |
//! | member | an active member of the chat: first name, @username, Telegram id | first name |
//! | chore  | an open chore of the chat: title (words, fuzzy) or `#id` | its title        |
//! | date   | what `schedule::parse_at` reads ("sunday", "tomorrow", "2026-12-06", "in 3 days") plus "6 Dec", "Dec 6", "6 December 2026"; in the chat's IANA zone; today or later | "Sun 6 Dec 2026" |
//! | number | a decimal number ("3", "2.5", "2,5")                 | the number           |
//!
//! Uses: services (store, clock), chores (lookup, zone), schedule (date parsing).

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;

use super::steps::{InputSpec, InputType};
use crate::{
    chores::{self, Lookup},
    context::clip,
    services::Services,
    store::StoreResult,
};

/// Check `raw` against `spec`'s type in chat `chat_id`: `Ok(Ok(normal form))`, or `Ok(Err(why))`
/// — a sentence without a final period, e.g. "I don't know a member called 'bobby' here".
///
/// Errors: storage only.
pub async fn check(
    svc: &Services,
    chat_id: i64,
    spec: &InputSpec,
    raw: &str,
) -> StoreResult<Result<String, String>> {
    let v = raw.trim();
    Ok(match spec.kind {
        InputType::Text => Ok(raw.to_string()),
        InputType::Number => number(v),
        InputType::Member => member(svc, chat_id, v).await?,
        InputType::Chore => chore(svc, chat_id, v).await?,
        InputType::Date => {
            let zone = chores::zone_of(svc, chat_id).await?;
            date(v, svc.clock.now(), zone)
        }
    })
}

fn number(v: &str) -> Result<String, String> {
    let n = v.replace(',', ".");
    match n.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(n),
        _ => Err(format!("'{}' is not a number", clip(v, 40))),
    }
}

async fn member(svc: &Services, chat_id: i64, v: &str) -> StoreResult<Result<String, String>> {
    let unknown = || {
        Err(format!(
            "I don't know a member called '{}' here",
            clip(v, 40)
        ))
    };
    if v.is_empty() {
        return Ok(unknown());
    }
    let members = svc.store.members(chat_id).await?;
    let active: Vec<_> = members.iter().filter(|m| m.active).collect();
    if let Ok(id) = v.parse::<i64>() {
        if let Some(m) = active.iter().find(|m| m.user_id == id) {
            return Ok(Ok(m.first_name.clone()));
        }
    }
    let n = v.trim_start_matches('@');
    if let Some(m) = active.iter().find(|m| {
        m.username
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(n))
    }) {
        return Ok(Ok(m.first_name.clone()));
    }
    let by_name: Vec<_> = active
        .iter()
        .filter(|m| m.first_name.eq_ignore_ascii_case(n))
        .collect();
    Ok(match by_name.as_slice() {
        [m] => Ok(m.first_name.clone()),
        [] => unknown(),
        many => Err(format!(
            "{} members are called '{}' here; use their @username",
            many.len(),
            clip(v, 40)
        )),
    })
}

async fn chore(svc: &Services, chat_id: i64, v: &str) -> StoreResult<Result<String, String>> {
    let all = chores::list(svc, chat_id).await?;
    Ok(match chores::find(&all, v) {
        Lookup::One(c) => Ok(c.title.clone()),
        Lookup::None => Err(format!("there is no chore '{}' here", clip(v, 60))),
        Lookup::Many(cs) => Err(format!(
            "'{}' could be {}; say which",
            clip(v, 60),
            cs.iter()
                .take(5)
                .map(|c| format!("#{} {}", c.id, c.title))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    })
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// A month's name or its prefix of 3+ letters ("dec", "december", "sept") → 1..=12.
fn month_of(w: &str) -> Option<u32> {
    let w = w.trim_end_matches('.').to_ascii_lowercase();
    if w.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| m.starts_with(&w))
        .map(|i| i as u32 + 1)
}

/// "6 Dec", "Dec 6", "6 December 2026", "dec 6th": the day's next occurrence on or after
/// `today` when no year is given.
fn day_month(v: &str, today: NaiveDate) -> Option<NaiveDate> {
    let toks: Vec<String> = v
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| t.to_ascii_lowercase())
        .collect();
    let day = |t: &str| -> Option<u32> {
        let d = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        d.parse::<u32>().ok().filter(|d| (1..=31).contains(d))
    };
    let (d, m, rest) = match toks.as_slice() {
        [a, b, rest @ ..] => match (day(a), month_of(b), month_of(a), day(b)) {
            (Some(d), Some(m), _, _) => (d, m, rest),
            (_, _, Some(m), Some(d)) => (d, m, rest),
            _ => return None,
        },
        _ => return None,
    };
    match rest {
        [] => {
            let this = NaiveDate::from_ymd_opt(today.year(), m, d);
            match this {
                Some(x) if x >= today => Some(x),
                _ => NaiveDate::from_ymd_opt(today.year() + 1, m, d),
            }
        }
        [y] => y
            .parse::<i32>()
            .ok()
            .and_then(|y| NaiveDate::from_ymd_opt(y, m, d)),
        _ => None,
    }
}

/// A date input in `zone`, today or later, as "Sun 6 Dec 2026".
pub fn date(v: &str, now: DateTime<Utc>, zone: Tz) -> Result<String, String> {
    let today = now.with_timezone(&zone).date_naive();
    let fmt = |d: NaiveDate| d.format("%a %-d %b %Y").to_string();
    let bad = || {
        Err(format!(
            "I can't read '{}' as a date (try sunday, tomorrow, 6 Dec or 2026-12-06)",
            clip(v, 40)
        ))
    };
    if v.is_empty() {
        return bad();
    }
    if let Some(d) = day_month(v, today) {
        return if d < today {
            Err(format!("{} is in the past", fmt(d)))
        } else {
            Ok(fmt(d))
        };
    }
    // parse_at reads one-off times relative to `now`; from the start of today so that "today"
    // and today's weekday name mean today
    let midnight = crate::schedule::resolve_local(today.and_time(chrono::NaiveTime::MIN), zone);
    match crate::schedule::parse_at(v, midnight, zone) {
        Ok(t) => {
            let d = t.with_timezone(&zone).date_naive();
            if d < today {
                Err(format!("{} is in the past", fmt(d)))
            } else {
                Ok(fmt(d))
            }
        }
        Err(crate::schedule::ScheduleError::InPast { .. }) => {
            Err(format!("'{}' is in the past", clip(v, 40)))
        }
        Err(_) => bad(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_the_chats_zone() {
        // Saturday 21 Nov 2026, 10:00 UTC
        let now = "2026-11-21T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let z: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(date("sunday", now, z).unwrap(), "Sun 22 Nov 2026");
        assert_eq!(date("today", now, z).unwrap(), "Sat 21 Nov 2026");
        assert_eq!(date("saturday", now, z).unwrap(), "Sat 21 Nov 2026");
        assert_eq!(date("tomorrow", now, z).unwrap(), "Sun 22 Nov 2026");
        assert_eq!(date("6 Dec", now, z).unwrap(), "Sun 6 Dec 2026");
        assert_eq!(date("Dec 6th", now, z).unwrap(), "Sun 6 Dec 2026");
        assert_eq!(date("6 december 2026", now, z).unwrap(), "Sun 6 Dec 2026");
        assert_eq!(date("2026-12-06", now, z).unwrap(), "Sun 6 Dec 2026");
        assert_eq!(date("1 Jan", now, z).unwrap(), "Fri 1 Jan 2027");
        assert!(date("someday", now, z)
            .unwrap_err()
            .starts_with("I can't read 'someday' as a date"));
        assert!(date("2026-01-02", now, z).unwrap_err().contains("past"));
        // at 10:00 UTC on Saturday it is already Sunday 00:00 in Kiritimati (UTC+14)
        let akl: Tz = "Pacific/Kiritimati".parse().unwrap();
        assert_eq!(date("today", now, akl).unwrap(), "Sun 22 Nov 2026");
        assert_eq!(number("2,5").unwrap(), "2.5");
        assert!(number("two").is_err());
    }
}
