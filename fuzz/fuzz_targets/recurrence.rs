//! The recurrence parsers (src/schedule): a recurrence phrase (then its description and next
//! occurrences around a DST change), a title with a trailing recurrence, a cron expression, a
//! time of day; and the case-insensitive search the chore parser uses for "… by <time>".
#![no_main]

use chrono::{NaiveTime, TimeZone, Utc};
use hearth_fuzz::{
    casefold::{strip_prefix_ci, strip_suffix_ci, Folded},
    schedule::{parse_time_of_day, split_title_recurrence, CronSpec, Recurrence, Tz},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Recurrence::parse(text) {
        let _ = r.describe();
        let mut at = Utc.with_ymd_and_hms(2026, 3, 28, 23, 30, 0).unwrap();
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        for _ in 0..4 {
            match r.next_after(at, Tz::Europe__London, nine) {
                Some(next) if next > at => at = next,
                _ => break,
            }
        }
    }
    let _ = split_title_recurrence(text);
    let _ = CronSpec::parse(text);
    let _ = parse_time_of_day(text);
    let f = Folded::new(text);
    for needle in [" by ", " nobody", "ß", "i̇", "σ"] {
        for r in [f.find(needle), f.rfind(needle)].into_iter().flatten() {
            assert!(text.get(r).is_some(), "range off a char boundary");
        }
        let _ = strip_prefix_ci(text, needle);
        let _ = strip_suffix_ci(text, needle);
    }
});
