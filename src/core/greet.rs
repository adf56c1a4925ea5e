//! The welcome a new member gets when they join a group (`new_chat_members` or a `chat_member`
//! join): one short message with the two commands that matter, `/chores` and `/done`.
//!
//! The rule: a member is greeted at most once per group per [`GREET_AGAIN_AFTER`]. The claim
//! is a row in `kv` (`greeted:<chat>:<user>`, the time) taken with an insert-or-conditional
//! update, so the same join delivered twice (a redelivered update, or Telegram sending both a
//! service message and a `chat_member` update for one join), a rejoin within that time, or two
//! processes on one database give one greeting. The claim comes before the send: a greeting
//! that fails to send is not retried (a missing welcome beats two). Off with
//! `group.greet_new_members = false`. Uses: services (store, clock, outbox, config), format.

use crate::{
    format::escape_html,
    services::Services,
    types::{ChatRef, Outbound, UserRef},
};

/// A member who left and joins the same group again within this time is not greeted again.
pub const GREET_AGAIN_AFTER: chrono::Duration = chrono::Duration::days(30);

/// The welcome, HTML: the member's name escaped, two commands, one line on the rest.
pub fn welcome(name: &str) -> String {
    format!(
        "👋 Welcome, {}! I keep this group's chores and approvals. /chores shows what needs doing; /done &lt;chore&gt; when you've done one. Mention me for anything else.",
        escape_html(name)
    )
}

/// Greet `user`, who just joined `chat`, unless greetings are off, the user is a bot or outside
/// `access.allowed_users`, or they were greeted in this group within [`GREET_AGAIN_AFTER`].
/// Failures are logged (ids only), never returned: a welcome must not hold up the chat.
pub async fn on_joined(svc: &Services, chat: &ChatRef, user: &UserRef) {
    let allowed = &svc.config.access.allowed_users;
    if !svc.config.group.greet_new_members
        || user.is_bot
        || (!allowed.is_empty() && !allowed.contains(&user.id))
    {
        return;
    }
    let now = svc.clock.now();
    let key = format!("greeted:{}:{}", chat.id, user.id);
    match svc.store.kv_claim(&key, now, now - GREET_AGAIN_AFTER).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(chat_id = chat.id, user_id = user.id, "already greeted");
            return;
        }
        Err(err) => {
            tracing::warn!(chat_id = chat.id, user_id = user.id, error = %err, "greeting not claimed");
            return;
        }
    }
    if let Err(err) = svc
        .outbox
        .send(Outbound::html(chat.id, welcome(user.label())))
        .await
    {
        tracing::warn!(chat_id = chat.id, user_id = user.id, error = %err, "greeting not delivered");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_welcome_escapes_the_name() {
        let w = super::welcome("<b>Bob & co</b>");
        assert!(
            w.contains("Welcome, &lt;b&gt;Bob &amp; co&lt;/b&gt;!"),
            "{w}"
        );
        assert!(w.contains("/chores") && w.contains("/done"));
    }
}
