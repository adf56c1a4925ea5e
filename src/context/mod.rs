//! Context windows: the recent conversation of one chat as the model sees it.
//!
//! Owns: which messages enter a prompt (group: `context.group_messages` within
//! `context.group_max_age`; DM: `dm_messages` within `dm_max_age`), how senders are labelled
//! (members by first name, the bot as "<name> (bot)"), and clipping of long texts. A window only
//! ever reads its own chat's log, so nothing said in a DM reaches a group prompt.
//! Uses: store, services.

use chrono::Duration;

use crate::{
    services::{zone_of, Services},
    store::{ChatRow, StoreResult},
    types::ChatKind,
};

/// Longest text of one past message in a prompt, in characters.
pub const MAX_LINE_CHARS: usize = 500;

/// The window as prompt lines, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// "14:02 Alice: text"
    pub lines: Vec<String>,
    /// The oldest log id in the window (recall reads before it).
    pub start_id: Option<i64>,
}

/// Build the window for `chat`, leaving out Telegram message `exclude_tg` (the one being answered).
pub async fn window(
    svc: &Services,
    chat: &ChatRow,
    kind: ChatKind,
    exclude_tg: Option<i64>,
) -> StoreResult<Window> {
    let c = &svc.config.context;
    let (limit, age) = match kind {
        ChatKind::Group => (c.group_messages, c.group_max_age),
        ChatKind::Private => (c.dm_messages, c.dm_max_age),
    };
    let since = svc.clock.now() - Duration::from_std(age).unwrap_or(Duration::hours(1));
    let rows = svc
        .store
        .window(chat.id, since, limit as u64, exclude_tg)
        .await?;
    let zone = zone_of(chat);
    let lines = rows
        .iter()
        .map(|m| {
            let who = if m.from_bot {
                format!("{} (bot)", m.sender_name)
            } else {
                m.sender_name.clone()
            };
            format!(
                "{} {}: {}",
                m.created_at.with_timezone(&zone).format("%H:%M"),
                who,
                clip(&m.text, MAX_LINE_CHARS)
            )
        })
        .collect();
    Ok(Window {
        lines,
        start_id: rows.first().map(|m| m.id),
    })
}

/// At most `max` characters of `s` on one line, with "…" when cut.
pub fn clip(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clip_keeps_short_and_cuts_long() {
        assert_eq!(clip("a\nb", 10), "a b");
        let long = "é".repeat(600);
        let c = clip(&long, 500);
        assert_eq!(c.chars().count(), 500);
        assert!(c.ends_with('…'));
    }
}
