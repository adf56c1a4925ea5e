//! Each chat's own Telegram command menu (issue 10, item 5): the built-in commands, then the
//! chat's routines that run by `/<name>`, published with `setMyCommands` scoped to that chat
//! (`{"type":"chat","chat_id":…}`). A chat scope replaces the default list in that chat, so the
//! built-ins come first; a personal routine's chat is its owner's DM (Telegram's private chat id
//! is the user id), so it shows only there.
//!
//! Sent only when the list changed: a SHA-256 of the list is kept in `kv` under
//! `telegram.menu.<bot id>.<chat id>` and written only after Telegram accepted it, so a restart
//! sends nothing new and a failed send is tried again at the next change or start
//! ([`sync_all`]). A chat whose last routine went gets its own menu removed (`deleteMyCommands`).
//! OpenClaw hit 429 by setting commands at every restart (DESIGN.md, lessons).
//!
//! [`sync`] is called by every path that changes what a chat can run by name:
//! [`super::doc::save_doc`] (imports, edits, drafts, the save flow), [`super::delete`] and a
//! draft's Save / Cancel. Failures are logged (chat id and error, never routine text) and never
//! fail the change itself. Uses: services (store, outbox's messenger, bot id, built-in menu).

use crate::{
    services::Services,
    store::{Publication, RoutineRow, RoutineStatus, StoreResult},
};

/// Telegram's limit on commands in one `setMyCommands` list.
pub const MAX_COMMANDS: usize = 100;
/// Telegram's limit on a command description, in characters (`BotCommand.description`).
pub const MAX_DESCRIPTION_CHARS: usize = 256;

/// What [`sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    /// The chat's menu is already what Telegram shows (or the chat never had one and needs none).
    Unchanged,
    /// Telegram accepted the new list (or the removal), and its hash was stored.
    Sent,
    /// The adapter has no command menu (console, CLI): nothing sent, nothing stored.
    NoMenu,
    /// Reading the routines or sending failed (logged); retried at the next change or start.
    Failed,
}

/// True when `r` shows in its chat's menu: active, published, and runnable by `/<name>` with
/// its own definition (a multi-step or recorded routine; a single-prompt scheduled routine is
/// managed with /routine_run).
pub fn in_menu(r: &RoutineRow) -> bool {
    r.status == RoutineStatus::Active
        && r.publication == Publication::Published
        && r.definition.is_some()
}

/// The chat's menu as (command, description): the built-ins ([`Services::menu`]) then the
/// chat's routines in creation order, at most [`MAX_COMMANDS`] (built-ins kept first), each
/// description clipped to [`MAX_DESCRIPTION_CHARS`]. Empty when the chat has no routine in
/// the menu (then it needs no menu of its own).
///
/// Errors: storage.
pub async fn entries(svc: &Services, chat_id: i64) -> StoreResult<Vec<(String, String)>> {
    let routines: Vec<RoutineRow> = svc
        .store
        .routines_of_chat(chat_id)
        .await?
        .into_iter()
        .filter(in_menu)
        .collect();
    if routines.is_empty() {
        return Ok(Vec::new());
    }
    let mut out: Vec<(String, String)> = svc
        .menu
        .iter()
        .map(|(c, d)| (c.to_string(), d.to_string()))
        .collect();
    for r in routines {
        if out.len() >= MAX_COMMANDS {
            break;
        }
        if out.iter().any(|(c, _)| *c == r.name) {
            continue; // a built-in keeps its name
        }
        out.push((
            r.name.clone(),
            description(&r.name, &r.description, &r.prompt),
        ));
    }
    out.truncate(MAX_COMMANDS);
    Ok(out)
}

/// A routine's menu description: its description (else its prompt column), on one line,
/// clipped to [`MAX_DESCRIPTION_CHARS`] with "…"; "Run <name>" when both are empty.
fn description(name: &str, description: &str, prompt: &str) -> String {
    let text = if description.trim().is_empty() {
        prompt
    } else {
        description
    };
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return format!("Run {name}");
    }
    if one_line.chars().count() <= MAX_DESCRIPTION_CHARS {
        return one_line;
    }
    let mut s: String = one_line.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
    s.push('…');
    s
}

fn key(svc: &Services, chat_id: i64) -> String {
    format!("{}{chat_id}", prefix(svc))
}

fn prefix(svc: &Services) -> String {
    format!("telegram.menu.{}.", svc.bot.id)
}

/// Bring chat `chat_id`'s Telegram menu up to date with its routines: send the list when it
/// differs from the last one Telegram accepted (stored hash), remove the chat's menu when its
/// last routine went. Never fails the caller: failures are logged and [`Synced::Failed`].
pub async fn sync(svc: &Services, chat_id: i64) -> Synced {
    // one sync per chat at a time in this process: a slower, older list never lands last
    static SYNCING: std::sync::OnceLock<crate::services::ChatLocks> = std::sync::OnceLock::new();
    let _turn = SYNCING.get_or_init(Default::default).lock(chat_id).await;
    let key = key(svc, chat_id);
    let (list, stored) = match (entries(svc, chat_id).await, svc.store.kv_get(&key).await) {
        (Ok(l), Ok(s)) => (l, s),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(chat_id, error = %e, "chat command menu not checked; retried at the next change or start");
            return Synced::Failed;
        }
    };
    let h = crate::router::menu_hash(&list);
    if (list.is_empty() && stored.is_none()) || stored.as_deref() == Some(h.as_str()) {
        return Synced::Unchanged;
    }
    match svc
        .outbox
        .messenger()
        .set_chat_commands(chat_id, &list)
        .await
    {
        Ok(true) => {
            let kept = if list.is_empty() {
                svc.store.kv_delete(&key).await
            } else {
                svc.store.kv_set(&key, &h).await
            };
            if let Err(e) = kept {
                tracing::warn!(chat_id, error = %e, "chat command menu sent but its hash not stored; it is sent again at the next change");
            }
            tracing::info!(chat_id, commands = list.len(), "chat command menu updated");
            Synced::Sent
        }
        Ok(false) => Synced::NoMenu,
        Err(e) => {
            tracing::warn!(chat_id, error = %e, "chat command menu not set; retried at the next change or start");
            Synced::Failed
        }
    }
}

/// [`sync`] every chat that has routines or had a menu of its own (start-up: catches what
/// changed while hearth was down, a CLI import, and sends that failed). Returns how many chats
/// were sent a new menu.
pub async fn sync_all(svc: &Services) -> usize {
    let mut chats = match svc.store.chats_with_routines().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "chat command menus not checked at start-up");
            return 0;
        }
    };
    let prefix = prefix(svc);
    match svc.store.kv_with_prefix(&prefix).await {
        Ok(kv) => chats.extend(
            kv.iter()
                .filter_map(|(k, _)| k.strip_prefix(&prefix)?.parse::<i64>().ok()),
        ),
        Err(e) => tracing::warn!(error = %e, "stored chat command menus not read"),
    }
    chats.sort_unstable();
    chats.dedup();
    let mut sent = 0;
    for chat_id in chats {
        if sync(svc, chat_id).await == Synced::Sent {
            sent += 1;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_one_line_and_clipped_to_telegrams_limit() {
        assert_eq!(
            description("x", " ", "line one\n line two"),
            "line one line two"
        );
        assert_eq!(description("x", "", ""), "Run x");
        let d = description("x", &"é".repeat(300), "p");
        assert_eq!(d.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(d.ends_with('…'));
    }
}
