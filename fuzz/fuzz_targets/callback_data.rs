//! Callback data of inline buttons (`wf:a:<id>` / `wf:r:<id>` / `wf:c:<id>`): anything a client may send.
#![no_main]

use hearth_fuzz::approval::{parse_callback_data, Decision, Tap, CALLBACK_PREFIX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((d, id)) = parse_callback_data(text) {
        assert!(text.starts_with(CALLBACK_PREFIX) && id > 0);
        let letter = match d {
            Tap::Decide(Decision::Approve) => 'a',
            Tap::Decide(Decision::Reject) => 'r',
            Tap::Cancel => 'c',
        };
        assert!(text.starts_with(&format!("{CALLBACK_PREFIX}{letter}:")));
    }
});
