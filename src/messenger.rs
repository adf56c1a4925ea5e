//! The outbound port: how services talk to a chat without knowing Telegram or the console.
//! Implemented by `telegram::TelegramMessenger`, `console::ConsoleMessenger` and test doubles.
//! Uses: crate::types only.

use async_trait::async_trait;

use crate::types::{Button, Outbound};

/// A delivery failure after the adapter's own retries (rate limits, markup fallback).
#[derive(Debug, thiserror::Error)]
#[error("delivery failed: {0}")]
pub struct SendError(pub String);

/// One message as delivered: its id in the chat and the plain text that was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message_id: i64,
    pub text: String,
}

/// Sends messages to chats. Implementations split long text, escape, and fall back to plain
/// text when markup is refused; callers hand over one logical message.
#[async_trait]
pub trait Messenger: Send + Sync + 'static {
    /// Deliver `msg`; returns one [`Sent`] per part (long messages are split; buttons ride on the
    /// last part).
    async fn send(&self, msg: &Outbound) -> Result<Vec<Sent>, SendError>;
    /// Replace the text and buttons of a message sent earlier (empty `buttons` removes them).
    async fn edit(
        &self,
        chat_id: i64,
        message_id: i64,
        html: &str,
        buttons: &[Vec<Button>],
    ) -> Result<(), SendError>;
    /// Answer a callback query at once; `text` shows as a toast (or an alert when `alert`).
    async fn answer_callback(
        &self,
        callback_id: &str,
        text: Option<&str>,
        alert: bool,
    ) -> Result<(), SendError>;
    /// The bytes of a file a member sent ([`crate::types::Content::Document`]'s `file_id`),
    /// refused over `max` bytes. Default: not supported by this adapter.
    async fn download(&self, file_id: &str, max: usize) -> Result<Vec<u8>, SendError> {
        let _ = (file_id, max);
        Err(SendError("this adapter cannot download files".into()))
    }
    /// Replace the command menu Telegram shows in one chat (`setMyCommands` with scope
    /// `{"type":"chat","chat_id":…}`): `commands` are (name without the slash, description), at
    /// most 100, names `[a-z0-9_]{1,32}`, descriptions 1–256 characters (Telegram's limits). An
    /// empty list removes the chat's own menu (`deleteMyCommands`: the default menu shows again).
    /// `Ok(true)`: applied; `Ok(false)`: this adapter has no command menu (nothing was set, so
    /// nothing may be remembered as sent). Default: an error (callers log it and retry later).
    async fn set_chat_commands(
        &self,
        chat_id: i64,
        commands: &[(String, String)],
    ) -> Result<bool, SendError> {
        let _ = (chat_id, commands);
        Err(SendError(
            "this adapter cannot set a chat's command menu".into(),
        ))
    }
    /// Show "typing…" in a chat (lasts about 5 s on Telegram).
    async fn typing(&self, chat_id: i64) -> Result<(), SendError>;
    /// Send a PNG image with an HTML caption.
    async fn send_photo(
        &self,
        chat_id: i64,
        png: Vec<u8>,
        caption_html: &str,
    ) -> Result<Sent, SendError>;
}
