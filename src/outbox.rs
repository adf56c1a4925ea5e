//! The one outbound boundary. Every bot message goes through [`Outbox::send`]: the silent token
//! is dropped here, the message is delivered through the [`Messenger`], and what was delivered is
//! appended to the chat's context log labelled as the bot (peers lost or mislabelled the bot's
//! replies: OpenClaw, choresir).

use std::sync::Arc;

use crate::{
    clock::SharedClock,
    format::html_to_plain,
    messenger::{Messenger, SendError, Sent},
    store::{NewMessage, ReplyRow, Store},
    types::{Button, Outbound},
};

/// A reply that is exactly this (after trimming) means "say nothing" (`reply_mode = always`).
pub const SILENT_TOKEN: &str = "[silent]";

/// Sends and records bot messages.
#[derive(Clone)]
pub struct Outbox {
    messenger: Arc<dyn Messenger>,
    store: Store,
    clock: SharedClock,
    bot_name: Arc<str>,
}

impl Outbox {
    /// An outbox delivering through `messenger`, labelling the bot's log rows `bot_name`.
    pub fn new(
        messenger: Arc<dyn Messenger>,
        store: Store,
        clock: SharedClock,
        bot_name: &str,
    ) -> Self {
        Self {
            messenger,
            store,
            clock,
            bot_name: bot_name.into(),
        }
    }

    /// The messenger (for callbacks, typing, edits).
    pub fn messenger(&self) -> &Arc<dyn Messenger> {
        &self.messenger
    }

    /// True when `text` is the silent token.
    pub fn is_silent(text: &str) -> bool {
        text.trim() == SILENT_TOKEN
    }

    /// Deliver and record. Returns the delivered parts (empty for a silent or empty message).
    pub async fn send(&self, msg: Outbound) -> Result<Vec<Sent>, SendError> {
        self.deliver(msg, None).await
    }

    /// Deliver the reply decided for inbound message `inbound_id`, decided once (issue 8): the
    /// reply (html, buttons, reply_to) is persisted BEFORE sending and the Telegram message ids
    /// AFTER, so a process killed in between leaves a stored, unconfirmed reply that recovery
    /// resends ([`Outbox::resend`]) without calling the model again. If storing fails the reply
    /// is still sent (a lost reply is worse than a rare duplicate).
    pub async fn send_for(&self, inbound_id: i64, msg: Outbound) -> Result<Vec<Sent>, SendError> {
        if Self::is_silent(&html_to_plain(&msg.html)) || msg.html.trim().is_empty() {
            return Ok(vec![]);
        }
        let buttons = serde_json::to_string(&msg.buttons).unwrap_or_else(|_| "[]".into());
        match self
            .store
            .save_reply(
                inbound_id,
                msg.chat_id,
                &msg.html,
                &buttons,
                msg.reply_to,
                self.clock.now(),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // one reply per message: another turn on it decided first (a process whose
                // lease lapsed mid-turn while another took the chat over; issue 12)
                tracing::warn!(
                    chat_id = msg.chat_id,
                    inbound = inbound_id,
                    "a reply to this message was already decided; not sent twice"
                );
                return Ok(vec![]);
            }
            Err(e) => {
                tracing::warn!(error = %e, chat_id = msg.chat_id, inbound = inbound_id, "could not store the reply before sending")
            }
        }
        let sent = self.deliver(msg.clone(), None).await?;
        self.confirm(inbound_id, msg.chat_id, &sent).await;
        Ok(sent)
    }

    /// Send a stored reply that was never confirmed (recovery after a crash between deciding and
    /// confirming): no model call. A confirmed reply is never sent again: callers check
    /// `sent_at` first; this refuses one too (returns `Ok(vec![])`).
    pub async fn resend(&self, row: &ReplyRow) -> Result<Vec<Sent>, SendError> {
        if row.sent_at.is_some() {
            return Ok(vec![]);
        }
        let msg = Outbound {
            chat_id: row.chat_id,
            html: row.html.clone(),
            buttons: serde_json::from_str(&row.buttons).unwrap_or_default(),
            reply_to: row.reply_to,
        };
        let sent = self.deliver(msg, None).await?;
        self.confirm(row.inbound_id, row.chat_id, &sent).await;
        Ok(sent)
    }

    async fn confirm(&self, inbound_id: i64, chat_id: i64, sent: &[Sent]) {
        let ids: Vec<i64> = sent.iter().map(|s| s.message_id).collect();
        if let Err(e) = self
            .store
            .confirm_reply(inbound_id, &ids, self.clock.now())
            .await
        {
            tracing::warn!(error = %e, chat_id, inbound = inbound_id, "could not record that the reply was sent");
        }
    }

    /// Deliver a message that carries a one-time secret (an api token): the chat sees it, the
    /// context log keeps only a placeholder, so no later prompt ever hands it to the model.
    pub async fn send_secret(&self, msg: Outbound) -> Result<Vec<Sent>, SendError> {
        self.deliver(
            msg,
            Some("[a one-time secret was shown here; it is not kept]"),
        )
        .await
    }

    /// Deliver a notice that is not conversation (a model failure, "I couldn't come up with an
    /// answer", an admin alert): the chat sees it, the context log does not keep it, so later
    /// prompts never show the model its own failures as things it said (issue 8).
    pub async fn send_notice(&self, msg: Outbound) -> Result<Vec<Sent>, SendError> {
        if msg.html.trim().is_empty() {
            return Ok(vec![]);
        }
        self.messenger.send(&msg).await
    }

    async fn deliver(&self, msg: Outbound, log_as: Option<&str>) -> Result<Vec<Sent>, SendError> {
        if Self::is_silent(&html_to_plain(&msg.html)) || msg.html.trim().is_empty() {
            return Ok(vec![]);
        }
        let sent = self.messenger.send(&msg).await?;
        let now = self.clock.now();
        for s in &sent {
            if let Err(e) = self
                .store
                .append_message(NewMessage {
                    chat_id: msg.chat_id,
                    sender_user_id: None,
                    sender_name: &self.bot_name,
                    from_bot: true,
                    text: log_as.unwrap_or(&s.text),
                    tg_message_id: Some(s.message_id),
                    reply_to: msg.reply_to,
                    created_at: now,
                })
                .await
            {
                tracing::warn!(error = %e, chat_id = msg.chat_id, "could not record the bot's reply");
            }
        }
        Ok(sent)
    }

    /// Send a PNG with an HTML caption and record the caption as the bot's message.
    pub async fn send_photo(
        &self,
        chat_id: i64,
        png: Vec<u8>,
        caption_html: &str,
    ) -> Result<(), SendError> {
        let sent = self
            .messenger
            .send_photo(chat_id, png, caption_html)
            .await?;
        if let Err(e) = self
            .store
            .append_message(NewMessage {
                chat_id,
                sender_user_id: None,
                sender_name: &self.bot_name,
                from_bot: true,
                text: &sent.text,
                tg_message_id: Some(sent.message_id),
                reply_to: None,
                created_at: self.clock.now(),
            })
            .await
        {
            tracing::warn!(error = %e, chat_id, "could not record the bot's photo caption");
        }
        Ok(())
    }

    /// Edit a message sent earlier (text and buttons).
    pub async fn edit(
        &self,
        chat_id: i64,
        message_id: i64,
        html: &str,
        buttons: &[Vec<Button>],
    ) -> Result<(), SendError> {
        self.messenger
            .edit(chat_id, message_id, html, buttons)
            .await
    }
}
