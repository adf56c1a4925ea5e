//! Suggestions (issue 10, item 8): when a member's turn has the same fingerprint (the ordered
//! tool names and argument keys of its calls that ran, `store::fingerprint`) as two earlier
//! turns of theirs in the same chat within [`WINDOW`], offer once to save it: a short message
//! with the "💾 Save as routine" button of the latest turn. No model call.
//!
//! Rules, each a `kv` row: never twice for one fingerprint and member
//! (`rsave_suggested:<user>:<hash>`, claimed once, kept); at most one open suggestion per member
//! (`rsave_suggest_open:<user>`, claimed for [`OPEN_TTL`], released when the member starts a
//! save). Turns are counted in the chat of the turn only, so what a member did in a DM is never
//! suggested in a group.
//!
//! Uses: store (turns, kv), services (clock, outbox).

use chrono::{DateTime, Duration, Utc};

use super::save::{save_button, MIN_CALLS};
use crate::{services::Services, store::StoreResult, types::Outbound};

/// How far back matching turns count.
pub const WINDOW: Duration = Duration::days(14);
/// Matching turns (this one included) before the offer.
pub const TIMES: usize = 3;
/// How long an unanswered suggestion stays the member's open one.
pub const OPEN_TTL: Duration = Duration::days(1);

fn open_key(user_id: i64) -> String {
    format!("rsave_suggest_open:{user_id}")
}

/// FNV-1a 64 of the fingerprint (kv keys stay short; fingerprints reach 512 bytes).
fn hash(fp: &str) -> u64 {
    fp.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn marker_key(user_id: i64, fp: &str) -> String {
    format!("rsave_suggested:{user_id}:{:016x}", hash(fp))
}

/// "chore_list → chore_update" from "chore_list();chore_update(chore,value)".
fn tools_of(fp: &str) -> String {
    fp.split(';')
        .map(|p| p.split('(').next().unwrap_or(p))
        .collect::<Vec<_>>()
        .join(" → ")
}

/// The offer for member `user_id`'s turn `turn_id` in `chat_id` with fingerprint `fp` and `ran`
/// calls that ran, when the rules (module doc) allow one now; the claims are taken here.
///
/// Errors: storage.
pub async fn offer(
    svc: &Services,
    chat_id: i64,
    user_id: i64,
    turn_id: i64,
    fp: &str,
    ran: usize,
) -> StoreResult<Option<Outbound>> {
    if ran < MIN_CALLS {
        return Ok(None);
    }
    let now = svc.clock.now();
    let matching = svc
        .store
        .turns_with_fingerprint(chat_id, user_id, fp, now - WINDOW)
        .await?;
    if matching.len() < TIMES {
        return Ok(None);
    }
    let marker = marker_key(user_id, fp);
    if svc.store.kv_get(&marker).await?.is_some() {
        return Ok(None);
    }
    // one open suggestion per member, then the fingerprint's one offer (released if taken)
    if !svc
        .store
        .kv_claim(&open_key(user_id), now, now - OPEN_TTL)
        .await?
    {
        return Ok(None);
    }
    if !svc
        .store
        .kv_claim(&marker, now, DateTime::<Utc>::MIN_UTC)
        .await?
    {
        svc.store.kv_delete(&open_key(user_id)).await?;
        return Ok(None);
    }
    tracing::info!(chat_id, turn_id, "recorded routine suggested");
    Ok(Some(Outbound {
        chat_id,
        html: format!(
            "You've had me do this {} times lately ({}). Save it as a routine, so next time it is one command?",
            matching.len(),
            crate::format::escape_html(&tools_of(fp))
        ),
        buttons: save_button(turn_id),
        reply_to: None,
    }))
}

/// The member started a save: their open suggestion (if any) is closed.
///
/// Errors: storage.
pub async fn close(svc: &Services, user_id: i64) -> StoreResult<()> {
    svc.store.kv_delete(&open_key(user_id)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_and_keys() {
        assert_eq!(
            tools_of("chore_list();chore_update(action,chore,value)"),
            "chore_list → chore_update"
        );
        assert_ne!(marker_key(1, "a()"), marker_key(1, "b()"));
        assert_ne!(marker_key(1, "a()"), marker_key(2, "a()"));
    }
}
