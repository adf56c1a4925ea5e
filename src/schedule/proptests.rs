//! Property tests: cron semantics against a brute-force oracle, recurrence
//! invariants, and "never panics" on arbitrary input for every parser.

use chrono::{
    DateTime, Datelike, NaiveDate, NaiveTime, Offset, TimeDelta, TimeZone, Timelike, Utc, Weekday,
};
use proptest::prelude::*;

use super::*;

const ZONES: [Tz; 8] = [
    Tz::UTC,
    Tz::Europe__London,
    Tz::America__New_York,
    Tz::Australia__Sydney,
    Tz::Australia__Lord_Howe, // 30-minute DST shift
    Tz::Asia__Kathmandu,      // +05:45
    Tz::America__Santiago,
    Tz::Pacific__Chatham, // +12:45 / +13:45
];

fn offset_secs(zone: Tz, t: DateTime<Utc>) -> i32 {
    zone.offset_from_utc_datetime(&t.naive_utc())
        .fix()
        .local_minus_utc()
}

/// UTC instants at which `zone`'s offset changes during `year`.
fn transitions(zone: Tz, year: i32) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut prev = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
    for _ in 0..(366 * 4) {
        let next = prev + TimeDelta::hours(6);
        if offset_secs(zone, prev) != offset_secs(zone, next) {
            let at = |ts: i64| DateTime::from_timestamp(ts, 0).unwrap();
            let (mut lo, mut hi) = (prev.timestamp(), next.timestamp());
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_secs(zone, at(mid)) == offset_secs(zone, at(lo)) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push(at(hi));
        }
        prev = next;
    }
    out
}

/// An instant: either uniformly random, or within ±3 days of a DST transition.
fn instant(zone: Tz, year: i32, pick: usize, near: bool, minutes: i64) -> DateTime<Utc> {
    let ts = transitions(zone, year);
    if near && !ts.is_empty() {
        ts[pick % ts.len()] + TimeDelta::minutes(minutes % (3 * 24 * 60))
    } else {
        Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap()
            + TimeDelta::minutes(minutes.rem_euclid(366 * 24 * 60))
    }
}

/// One cron field over `min..=max`.
fn field(min: u32, max: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("*".to_string()),
        3 => (min..=max).prop_map(|v| v.to_string()),
        2 => (1..=max).prop_map(|s| format!("*/{s}")),
        2 => (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        1 => (min..=max, min..=max, 1..=max.max(1)).prop_map(|(a, b, s)| format!("{}-{}/{s}", a.min(b), a.max(b))),
        2 => prop::collection::vec(min..=max, 1..4)
            .prop_map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
    ]
}

fn dow_field() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => field(0, 7),
        1 => prop::sample::select(vec!["mon-fri", "sat,sun", "sun", "tue,thu", "MON"]).prop_map(String::from),
    ]
}

/// An independent, naive reading of a generated cron expression, so the oracle
/// does not share code with [`CronSpec`].
struct Naive {
    sets: Vec<Vec<bool>>,
    dom_star: bool,
    dow_star: bool,
}

impl Naive {
    fn new(expr: &str) -> Naive {
        let fields: Vec<String> = expr
            .split(' ')
            .map(|f| {
                f.to_lowercase()
                    .replace("mon", "1")
                    .replace("tue", "2")
                    .replace("thu", "4")
                    .replace("fri", "5")
                    .replace("sat", "6")
                    .replace("sun", "0")
            })
            .collect();
        let bounds = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
        let sets = fields
            .iter()
            .zip(bounds)
            .map(|(f, (min, max))| {
                let mut set = vec![false; max + 1];
                for part in f.split(',') {
                    let (range, step) = match part.split_once('/') {
                        Some((r, s)) => (r, s.parse::<usize>().unwrap()),
                        None => (part, 1),
                    };
                    let (a, b) = if range == "*" {
                        (min, max)
                    } else if let Some((a, b)) = range.split_once('-') {
                        (a.parse().unwrap(), b.parse().unwrap())
                    } else {
                        let v = range.parse().unwrap();
                        (v, v)
                    };
                    for v in (a..=b).step_by(step) {
                        set[v] = true;
                    }
                }
                set
            })
            .collect();
        Naive {
            sets,
            dom_star: fields[2].starts_with('*'),
            dow_star: fields[4].starts_with('*'),
        }
    }

    fn matches(&self, t: chrono::NaiveDateTime) -> bool {
        let wd = t.weekday().num_days_from_sunday() as usize;
        let dom = self.sets[2][t.day() as usize];
        let dow = self.sets[4][wd] || (wd == 0 && self.sets[4][7]);
        let day = if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        };
        self.sets[0][t.minute() as usize]
            && self.sets[1][t.hour() as usize]
            && self.sets[3][t.month() as usize]
            && day
    }
}

/// Whether no earlier instant (within 3 h) shows the same wall time as `u`,
/// worked out from raw offsets rather than [`resolve_local`].
fn first_occurrence(zone: Tz, u: DateTime<Utc>) -> bool {
    let wall = u.naive_utc() + TimeDelta::seconds(i64::from(offset_secs(zone, u)));
    (1..=6).all(|k| {
        let o = offset_secs(zone, u - TimeDelta::minutes(30 * k));
        let v = (wall - TimeDelta::seconds(i64::from(o))).and_utc();
        !(v < u && offset_secs(zone, v) == o)
    })
}

/// Is `u` a firing instant of `spec` under the documented rules?
/// Either its local wall time matches and `u` is that wall time's first
/// occurrence, or `u` ends a spring-forward gap containing a matching slot.
fn fires_at(spec: &Naive, zone: Tz, u: DateTime<Utc>) -> bool {
    let local = u.with_timezone(&zone).naive_local();
    if local.second() == 0 && spec.matches(local) && first_occurrence(zone, u) {
        return true;
    }
    let before = u - TimeDelta::seconds(1);
    if offset_secs(zone, before) < offset_secs(zone, u) {
        // Gap: wall times (local(before), local(u)) do not exist.
        let gap_start = before.with_timezone(&zone).naive_local() + TimeDelta::seconds(1);
        let mut w = gap_start.with_second(0).unwrap();
        if w < gap_start {
            w += TimeDelta::minutes(1);
        }
        while w < local {
            if spec.matches(w) {
                return true;
            }
            w += TimeDelta::minutes(1);
        }
    }
    false
}

fn vocab() -> impl Strategy<Value = String> {
    let words = vec![
        "every",
        "each",
        "day",
        "days",
        "week",
        "weeks",
        "month",
        "monthly",
        "daily",
        "weekly",
        "at",
        "on",
        "the",
        "of",
        "and",
        "in",
        "tomorrow",
        "today",
        "next",
        "monday",
        "mondays",
        "fri",
        "weekdays",
        "weekends",
        "first",
        "31st",
        "32nd",
        "last",
        "0",
        "1",
        "3",
        "25",
        "400",
        "7pm",
        "19:00",
        "25:00",
        "noon",
        "midnight",
        "cron",
        "*",
        "*/15",
        "1-5",
        "jan",
        "half",
        "an",
        "hour",
        "m",
        "h",
        "30s",
        "1h30m",
        "other",
        "fortnightly",
        "2026-12-01",
        "2026-02-30",
        "-",
        ",",
        "9",
        "am",
        "pm",
        "o'clock",
        "Z",
        "T09:00",
        "99999999999999999999",
        "½",
        "ß",
    ];
    prop::collection::vec(prop::sample::select(words), 0..8).prop_map(|w| w.join(" "))
}

fn time_of_day() -> impl Strategy<Value = Option<NaiveTime>> {
    prop::option::of(
        (0u32..24, 0u32..60).prop_map(|(h, m)| NaiveTime::from_hms_opt(h, m, 0).unwrap()),
    )
}

fn recurrence() -> impl Strategy<Value = Recurrence> {
    let days = prop::collection::vec(0u8..7, 1..4).prop_map(|v| {
        let mut d: Vec<Weekday> = v
            .into_iter()
            .map(|i| Weekday::try_from(i).unwrap())
            .collect();
        d.sort_by_key(Weekday::num_days_from_monday);
        d.dedup();
        d
    });
    prop_oneof![
        time_of_day().prop_map(|at| Recurrence::Daily { at }),
        (days, time_of_day()).prop_map(|(days, at)| Recurrence::Weekly { days, at }),
        (1u32..40, time_of_day()).prop_map(|(n, at)| Recurrence::EveryDays { n, at }),
        (1u32..10, time_of_day()).prop_map(|(n, at)| Recurrence::EveryWeeks { n, at }),
        (1u32..=31, time_of_day()).prop_map(|(day, at)| Recurrence::Monthly { day, at }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn cron_next_after_matches_oracle(
        minute in field(0, 59),
        hour in field(0, 23),
        dom in prop_oneof![3 => Just("*".to_string()), 1 => field(1, 31)],
        month in prop_oneof![3 => Just("*".to_string()), 1 => field(1, 12)],
        dow in prop_oneof![2 => Just("*".to_string()), 1 => dow_field()],
        zone_i in 0..ZONES.len(),
        year in 2000i32..2060,
        pick in 0usize..4,
        near in any::<bool>(),
        minutes in -10_000_000i64..10_000_000,
        secs in 0i64..60,
    ) {
        let expr = format!("{minute} {hour} {dom} {month} {dow}");
        let spec = match CronSpec::parse(&expr) {
            Ok(s) => s,
            Err(ScheduleError::CronNeverFires { .. }) => return Ok(()),
            Err(e) => panic!("{expr}: {e}"),
        };
        prop_assert_eq!(CronSpec::parse(spec.as_str()), Ok(spec.clone()));
        let zone = ZONES[zone_i];
        let oracle = Naive::new(&expr);
        let mut after = instant(zone, year, pick, near, minutes) + TimeDelta::seconds(secs);
        // Three consecutive firings, each fed back in as `after`.
        for _ in 0..3 {
            let next = spec.next_after(after, zone).expect("a valid spec fires within 400 years");
            prop_assert!(next > after, "{} -> {}", after, next);
            // Local hour/minute/day match the spec, unless the slot was moved to
            // the end of a spring-forward gap.
            let local = next.with_timezone(&zone).naive_local();
            prop_assert!(
                oracle.matches(local) || offset_secs(zone, next - TimeDelta::seconds(1)) < offset_secs(zone, next),
                "{} in {}: {} (local {})", expr, zone, next, local
            );
            prop_assert_eq!(spec.matches_local(local), oracle.matches(local));
            prop_assert!(fires_at(&oracle, zone, next), "{} in {}: {}", expr, zone, next);
            // No firing was skipped: brute force every minute in between (when short).
            if next - after <= TimeDelta::days(3) {
                let mut u = after.with_second(0).unwrap().with_nanosecond(0).unwrap() + TimeDelta::minutes(1);
                while u < next {
                    prop_assert!(!fires_at(&oracle, zone, u), "{} in {}: missed {} before {}", expr, zone, u, next);
                    u += TimeDelta::minutes(1);
                }
            }
            after = next;
        }
    }

    #[test]
    fn recurrence_next_after_invariants(
        rec in recurrence(),
        zone_i in 0..ZONES.len(),
        year in 2000i32..2060,
        pick in 0usize..4,
        near in any::<bool>(),
        minutes in -10_000_000i64..10_000_000,
    ) {
        let zone = ZONES[zone_i];
        let default_at = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let anchor = instant(zone, year, pick, near, minutes);
        let next = rec.next_after(anchor, zone, default_at).unwrap();
        prop_assert!(next > anchor);
        let local = next.with_timezone(&zone).naive_local();
        let anchor_day = anchor.with_timezone(&zone).date_naive();
        let (at, day_ok) = match &rec {
            Recurrence::Daily { at } => (at, local.date() - anchor_day <= TimeDelta::days(2)),
            Recurrence::Weekly { days, at } => (at, days.contains(&local.weekday())),
            Recurrence::EveryDays { n, at } => (at, local.date() == anchor_day + TimeDelta::days(i64::from(*n))),
            Recurrence::EveryWeeks { n, at } => (at, local.date() == anchor_day + TimeDelta::days(7 * i64::from(*n))),
            Recurrence::Monthly { day, at } => {
                let last = NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap()
                    .checked_add_months(chrono::Months::new(1)).unwrap().pred_opt().unwrap().day();
                (at, local.day() == (*day).min(last))
            }
            _ => unreachable!(),
        };
        let in_gap = offset_secs(zone, next - TimeDelta::seconds(1)) < offset_secs(zone, next);
        prop_assert!(day_ok || in_gap, "{:?} from {}: {}", rec, anchor, local);
        prop_assert!(local.time() == at.unwrap_or(default_at) || in_gap, "{:?} from {}: {}", rec, anchor, local);
        prop_assert_eq!(resolve_local(local, zone), next);
        // Serde round trip.
        let json = serde_json::to_string(&rec).unwrap();
        prop_assert_eq!(serde_json::from_str::<Recurrence>(&json).unwrap(), rec);
    }

    #[test]
    fn every_round_trips(h in 0u64..30, m in 0u64..60, s in 0u64..60) {
        let secs = h * 3600 + m * 60 + s;
        let text = format_duration(std::time::Duration::from_secs(secs));
        match parse_every(&text) {
            Ok(d) => {
                prop_assert_eq!(d.as_secs(), secs);
                prop_assert!((30..=86_400).contains(&secs));
            }
            Err(ScheduleError::IntervalTooShort { .. }) => prop_assert!(secs < 30),
            Err(ScheduleError::IntervalTooLong { .. }) => prop_assert!(secs > 86_400),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn parsers_never_panic(
        s in prop_oneof![any::<String>(), vocab(), "[0-9a-z*/,: -]{0,30}"],
        zone_i in 0..ZONES.len(),
        now_secs in 0i64..4_000_000_000,
    ) {
        let zone = ZONES[zone_i];
        let now = DateTime::from_timestamp(now_secs, 0).unwrap();
        let _ = parse_every(&s);
        let _ = parse_zone(&s);
        let _ = parse_time_of_day(&s);
        if let Ok(t) = parse_at(&s, now, zone) {
            prop_assert!(t > now);
        }
        if let Ok(spec) = CronSpec::parse(&s) {
            let _ = spec.next_after(now, zone);
        }
        if let Ok(rec) = Recurrence::parse(&s) {
            let _ = rec.describe();
            let _ = rec.next_after(now, zone, NaiveTime::MIN);
        }
        if let Ok((title, _)) = split_title_recurrence(&s) {
            prop_assert!(!title.trim().is_empty());
        }
        for e in [
            parse_every(&s).err(),
            CronSpec::parse(&s).err(),
            Recurrence::parse(&s).err(),
            parse_at(&s, now, zone).err(),
        ].into_iter().flatten() {
            prop_assert!(e.to_string().starts_with(&e.field().to_string()));
        }
    }
}

#[test]
fn transitions_helper_finds_2026_changes() {
    let london = transitions(Tz::Europe__London, 2026);
    assert_eq!(
        london,
        [
            "2026-03-29T01:00:00Z".parse::<DateTime<Utc>>().unwrap(),
            "2026-10-25T01:00:00Z".parse().unwrap()
        ]
    );
}

#[test]
fn extremes_do_not_panic() {
    let instants = [
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::MAX_UTC,
        DateTime::<Utc>::MAX_UTC - TimeDelta::days(2),
        DateTime::<Utc>::MIN_UTC + TimeDelta::days(2),
    ];
    let specs = ["* * * * *", "0 0 29 2 *", "0 12 13 * 5"].map(|s| CronSpec::parse(s).unwrap());
    let recs = [
        Recurrence::Daily { at: None },
        Recurrence::Weekly {
            days: vec![Weekday::Mon],
            at: None,
        },
        Recurrence::EveryDays { n: 0, at: None },
        Recurrence::EveryWeeks {
            n: u32::MAX,
            at: None,
        },
        Recurrence::Monthly { day: 0, at: None },
        Recurrence::Monthly { day: 99, at: None },
        Recurrence::Weekly {
            days: vec![],
            at: None,
        },
        Recurrence::Cron {
            expr: "not cron".into(),
        },
    ];
    for zone in ZONES {
        for t in instants {
            for spec in &specs {
                if let Some(n) = spec.next_after(t, zone) {
                    assert!(n > t);
                }
            }
            for rec in &recs {
                if let Some(n) = rec.next_after(t, zone, NaiveTime::MIN) {
                    assert!(n > t);
                }
            }
            for s in [
                "+262143-12-31T23:59:59Z",
                "262143-12-31 23:59",
                "9999-12-31 23:59",
                "0000-01-01",
                "in 99999999 days",
                "in 4294967295 months at 9am",
                "in 18446744073709551615 seconds",
                "next week",
                "sunday 23:59",
                "tomorrow",
            ] {
                if let Ok(n) = parse_at(s, t, zone) {
                    assert!(n > t);
                }
            }
        }
    }
}
