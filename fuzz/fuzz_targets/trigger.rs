//! The trigger parsers of src/schedule: `every` intervals, one-off `at` times ("tomorrow 18:00",
//! "in 2h", dates) around a DST change in three zones, cron with a zone, zone names.
#![no_main]

use chrono::{TimeZone, Utc};
use hearth_fuzz::schedule::{parse_at, parse_every, parse_zone, CronSpec, Tz};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
    let _ = parse_every(text);
    for zone in [Tz::UTC, Tz::Europe__London, Tz::Pacific__Chatham] {
        let _ = parse_at(text, now, zone);
    }
    if let Some((expr, zone)) = text.rsplit_once(' ') {
        if let (Ok(spec), Ok(_)) = (CronSpec::parse(expr), parse_zone(zone)) {
            let _ = spec.as_str();
        }
    }
    let _ = parse_zone(text);
});
