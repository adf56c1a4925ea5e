//! Charts, drawn in one place for every user (issue 11, item 4).
//!
//! - [`leaderboard`]: the chores leaderboard as a PNG for Telegram `sendPhoto` (plotters' bitmap
//!   backend, the embedded Noto Sans font).
//! - [`svg`]: stacked bar charts as small inline SVG for the web admin's overview (plotters' SVG
//!   backend; text as `<text>` elements in the page's font, so no font is embedded), each with a
//!   `<title>` and `role="img"`.
//!
//! Pure and synchronous: data in, bytes or text out; no I/O, no store, no clock.

pub mod leaderboard;
pub mod svg;
