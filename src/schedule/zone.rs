//! Time zones and the one DST rule every other function builds on.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};

use super::error::{clip, ScheduleError};

/// Resolve a wall-clock time in `zone` to a UTC instant.
///
/// `naive` is local wall-clock time of `zone`; the result is UTC. Most wall
/// times map to exactly one instant. Around daylight-saving changes:
///
/// * **Ambiguous** (the fall-back hour, which happens twice): the **earlier**
///   instant, i.e. the first time the wall clock shows `naive`. Schedulers that
///   picked "each occurrence" were seen to fire a job twice at fall-back; taking
///   the first occurrence means a daily 01:30 job fires once on that day.
/// * **Nonexistent** (inside the spring-forward gap): the **first valid instant
///   after the gap**, i.e. the moment the clocks jump. 02:30 on 2026-03-08 in
///   America/New_York becomes 03:00 EDT (07:00 UTC); 01:30 on 2026-03-29 in
///   Europe/London becomes 02:00 BST (01:00 UTC). The job runs late rather than
///   being skipped, as Vixie cron and cronie do for jobs in the skipped hour.
///
/// Never panics. At the far edges of chrono's range, where the zone data
/// cannot be consulted, `naive` is read as UTC.
pub fn resolve_local(naive: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(dt) => dt.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.with_timezone(&Utc).min(b.with_timezone(&Utc)),
        LocalResult::None => gap_end(naive, zone).unwrap_or_else(|| naive.and_utc()),
    }
}

/// Local wall-clock time of `t` in `zone`; `None` when it falls outside
/// chrono's representable range (where `DateTime::naive_local` would panic).
pub(crate) fn to_local(t: DateTime<Utc>, zone: Tz) -> Option<NaiveDateTime> {
    let utc = t.naive_utc();
    utc.checked_add_offset(zone.offset_from_utc_datetime(&utc).fix())
}

/// The first instant after the gap that contains `naive`.
fn gap_end(naive: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    match GapInfo::new(&naive, &zone).and_then(|g| g.end) {
        Some(end) => Some(end.with_timezone(&Utc)),
        None => search_gap_end(naive, zone),
    }
}

/// Fallback for [`gap_end`] (not expected with real tz data): binary search
/// for the first whole second whose local time is later than `naive`. Any UTC
/// offset is within ±26 h, so the transition lies in that window.
fn search_gap_end(naive: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    const WINDOW: i64 = 26 * 3600;
    let local_of = |ts: i64| DateTime::from_timestamp(ts, 0).and_then(|t| to_local(t, zone));
    let p = naive.and_utc().timestamp();
    let (mut lo, mut hi) = (p.checked_sub(WINDOW)?, p.checked_add(WINDOW)?);
    if local_of(lo)? > naive || local_of(hi)? <= naive {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local_of(mid)? > naive {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

/// Parse an IANA time-zone name such as `Europe/London` or `America/New_York`.
///
/// Surrounding whitespace is ignored and the match is case-insensitive
/// (`europe/london` works). Abbreviations that are not zone names (`BST`, `PST`)
/// are refused.
///
/// # Errors
/// [`ScheduleError::UnknownZone`]: `zone: 'Europe/Lodnon' is not an IANA time zone`.
pub fn parse_zone(s: &str) -> Result<Tz, ScheduleError> {
    let t = s.trim();
    if let Ok(z) = t.parse::<Tz>() {
        return Ok(z);
    }
    chrono_tz::TZ_VARIANTS
        .iter()
        .copied()
        .find(|z| z.name().eq_ignore_ascii_case(t))
        .ok_or_else(|| ScheduleError::UnknownZone { input: clip(s) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeDelta};
    use chrono_tz::{America::New_York, Europe::London};

    fn nd(y: i32, m: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn resolve_table() {
        let cases = [
            // (zone, local, expected UTC, why)
            (
                London,
                nd(2026, 1, 15, 9, 0),
                "2026-01-15T09:00:00Z",
                "winter GMT",
            ),
            (
                London,
                nd(2026, 7, 15, 9, 0),
                "2026-07-15T08:00:00Z",
                "summer BST",
            ),
            (
                London,
                nd(2026, 3, 29, 0, 59),
                "2026-03-29T00:59:00Z",
                "just before gap",
            ),
            (
                London,
                nd(2026, 3, 29, 1, 0),
                "2026-03-29T01:00:00Z",
                "gap start -> jump",
            ),
            (
                London,
                nd(2026, 3, 29, 1, 30),
                "2026-03-29T01:00:00Z",
                "in gap -> jump",
            ),
            (
                London,
                nd(2026, 3, 29, 2, 0),
                "2026-03-29T01:00:00Z",
                "gap end",
            ),
            (
                London,
                nd(2026, 3, 29, 2, 30),
                "2026-03-29T01:30:00Z",
                "after gap",
            ),
            (
                London,
                nd(2026, 10, 25, 1, 30),
                "2026-10-25T00:30:00Z",
                "ambiguous -> BST",
            ),
            (
                London,
                nd(2026, 10, 25, 2, 0),
                "2026-10-25T02:00:00Z",
                "after overlap",
            ),
            (
                New_York,
                nd(2026, 3, 8, 2, 30),
                "2026-03-08T07:00:00Z",
                "in gap -> 03:00 EDT",
            ),
            (
                New_York,
                nd(2026, 3, 8, 3, 0),
                "2026-03-08T07:00:00Z",
                "gap end",
            ),
            (
                New_York,
                nd(2026, 11, 1, 1, 30),
                "2026-11-01T05:30:00Z",
                "ambiguous -> EDT",
            ),
            (
                New_York,
                nd(2026, 11, 1, 2, 0),
                "2026-11-01T07:00:00Z",
                "after overlap",
            ),
            (
                Tz::UTC,
                nd(2026, 3, 29, 1, 30),
                "2026-03-29T01:30:00Z",
                "UTC",
            ),
        ];
        for (zone, local, want, why) in cases {
            assert_eq!(
                resolve_local(local, zone),
                utc(want),
                "{zone} {local} ({why})"
            );
        }
    }

    #[test]
    fn resolve_is_monotonic_across_changes() {
        for (zone, day) in [
            (London, NaiveDate::from_ymd_opt(2026, 3, 29).unwrap()),
            (London, NaiveDate::from_ymd_opt(2026, 10, 25).unwrap()),
            (New_York, NaiveDate::from_ymd_opt(2026, 3, 8).unwrap()),
            (New_York, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
        ] {
            let mut prev = resolve_local(day.and_hms_opt(0, 0, 0).unwrap(), zone);
            for m in 1..(24 * 60) {
                let local = day.and_hms_opt(0, 0, 0).unwrap() + TimeDelta::minutes(m);
                let r = resolve_local(local, zone);
                assert!(r >= prev, "{zone} {local}");
                prev = r;
            }
        }
    }

    #[test]
    fn gap_search_fallback_agrees_with_tz_data() {
        for (zone, local) in [
            (London, nd(2026, 3, 29, 1, 0)),
            (London, nd(2026, 3, 29, 1, 59)),
            (New_York, nd(2026, 3, 8, 2, 30)),
            (Tz::Australia__Lord_Howe, nd(2026, 10, 4, 2, 10)),
        ] {
            assert_eq!(
                search_gap_end(local, zone),
                gap_end(local, zone),
                "{zone} {local}"
            );
            assert!(search_gap_end(local, zone).is_some());
        }
    }

    #[test]
    fn resolve_extremes_do_not_panic() {
        let _ = resolve_local(NaiveDateTime::MIN, London);
        let _ = resolve_local(NaiveDateTime::MAX, New_York);
    }

    #[test]
    fn zone_table() {
        let ok = [
            ("Europe/London", London),
            ("  America/New_York ", New_York),
            ("europe/london", London),
            ("UTC", Tz::UTC),
            ("Etc/UTC", Tz::Etc__UTC),
        ];
        for (input, want) in ok {
            assert_eq!(parse_zone(input), Ok(want), "{input}");
        }
        let bad = [
            (
                "Europe/Lodnon",
                "zone: 'Europe/Lodnon' is not an IANA time zone",
            ),
            ("", "zone: '' is not an IANA time zone"),
            ("BST", "zone: 'BST' is not an IANA time zone"),
            ("+01:00", "zone: '+01:00' is not an IANA time zone"),
        ];
        for (input, msg) in bad {
            assert_eq!(parse_zone(input).unwrap_err().to_string(), msg);
        }
    }
}
