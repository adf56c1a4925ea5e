//! Plain types that cross layers: what adapters hand to the core ([`InboundEvent`]) and what the
//! core hands back ([`Outbound`]). No adapter or storage types leak through here.
//! Uses: chrono, serde.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The kind of chat. Telegram's supergroups and groups are both [`ChatKind::Group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatKind {
    Group,
    Private,
}

impl ChatKind {
    /// Stored form: "group" | "private".
    pub fn as_str(self) -> &'static str {
        match self {
            ChatKind::Group => "group",
            ChatKind::Private => "private",
        }
    }
}

/// A chat as an adapter sees it. `id` is Telegram's chat id (negative for groups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRef {
    pub id: i64,
    pub kind: ChatKind,
    /// Group title, or the user's first name for a private chat.
    pub title: String,
}

/// A Telegram user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub id: i64,
    pub first_name: String,
    pub username: Option<String>,
    pub is_bot: bool,
}

impl UserRef {
    /// The label used in context and messages: the first name (falls back to @username).
    pub fn label(&self) -> &str {
        if self.first_name.trim().is_empty() {
            self.username.as_deref().unwrap_or("someone")
        } else {
            &self.first_name
        }
    }
}

/// The message this one replies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRef {
    pub message_id: i64,
    /// True when the replied-to message was sent by this bot.
    pub to_bot: bool,
}

/// What a message carries. Non-text content is recorded with a short marker and never crashes
/// the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    /// Text or a media caption.
    Text { text: String },
    /// Something hearth does not read (sticker, voice, photo without caption …), e.g. "sticker".
    Unsupported { kind: String },
    /// A file sent as a document (hearth reads `.toml` playbooks from admins): Telegram's
    /// `file_id` (fetched with [`crate::messenger::Messenger::download`]), its name and size in
    /// bytes as Telegram reports them.
    Document {
        file_id: String,
        file_name: String,
        size: u64,
    },
}

/// One inbound chat message, normalized by an adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub update_id: Option<i64>,
    pub chat: ChatRef,
    pub from: UserRef,
    /// Telegram message id, unique per chat.
    pub message_id: i64,
    pub content: Content,
    pub reply_to: Option<ReplyRef>,
    /// True when the text mentions the bot (`@username` or a text mention).
    pub mentions_bot: bool,
    /// When Telegram says the message was sent (UTC).
    pub date: DateTime<Utc>,
}

impl InboundMessage {
    /// The text, or "" for unsupported content.
    pub fn text(&self) -> &str {
        match &self.content {
            Content::Text { text } => text,
            Content::Unsupported { .. } | Content::Document { .. } => "",
        }
    }
}

/// A press of an inline button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackQuery {
    /// Telegram's callback query id, answered with answerCallbackQuery.
    pub id: String,
    pub from: UserRef,
    pub chat: ChatRef,
    /// The message that carries the button.
    pub message_id: i64,
    /// Callback data (at most 64 bytes, set by hearth).
    pub data: String,
}

/// Everything an adapter can hand to the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum InboundEvent {
    Message(InboundMessage),
    Callback(CallbackQuery),
    MemberJoined { chat: ChatRef, user: UserRef },
    MemberLeft { chat: ChatRef, user: UserRef },
}

impl InboundEvent {
    /// The chat the event belongs to.
    pub fn chat(&self) -> &ChatRef {
        match self {
            InboundEvent::Message(m) => &m.chat,
            InboundEvent::Callback(c) => &c.chat,
            InboundEvent::MemberJoined { chat, .. } | InboundEvent::MemberLeft { chat, .. } => chat,
        }
    }
}

/// An inline button: a label and callback data (≤ 64 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub label: String,
    pub data: String,
}

/// A message for a chat. `html` uses Telegram's HTML subset; user text in it is escaped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outbound {
    pub chat_id: i64,
    pub html: String,
    /// Rows of inline buttons.
    pub buttons: Vec<Vec<Button>>,
    /// Telegram message id to reply to.
    pub reply_to: Option<i64>,
}

impl Outbound {
    /// A message of HTML text with no buttons.
    pub fn html(chat_id: i64, html: impl Into<String>) -> Self {
        Self {
            chat_id,
            html: html.into(),
            ..Default::default()
        }
    }
    /// A message of plain text (escaped here).
    pub fn text(chat_id: i64, text: &str) -> Self {
        Self::html(chat_id, crate::format::escape_html(text))
    }
}
