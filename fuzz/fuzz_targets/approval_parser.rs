//! The approval parser: free-text replies ("approve both", "reject 2 not clean") and the
//! arguments of /approve and /reject, against a list with titles whose case folding changes
//! byte lengths. First byte: flags (addressed, list size); the rest: the text.
#![no_main]

use hearth_fuzz::approval::{parse_command, parse_reply, ActionableItem, Decision};
use libfuzzer_sys::fuzz_target;

const TITLES: &[&str] = &[
    "Dishes",
    "Bathroom ẞé",
    "Σ plants",
    "İstanbul trip",
    "Delete 'Bins'",
    "cafe\u{301}",
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let n = (flags as usize >> 1) % (TITLES.len() + 1);
    let items: Vec<ActionableItem<'_>> = TITLES[..n]
        .iter()
        .enumerate()
        .map(|(i, t)| ActionableItem {
            number: i + 1,
            title: t,
        })
        .collect();
    let _ = parse_reply(text, &items, flags & 1 == 1);
    let _ = parse_command(Decision::Approve, text, &items);
    let _ = parse_command(Decision::Reject, text, &items);
});
