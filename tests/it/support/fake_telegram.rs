//! A fake Telegram Bot API server for tests.
//!
//! [`FakeBotApi::start`] binds a real HTTP server on `127.0.0.1:0`. Point any
//! Bot API client at [`FakeBotApi::url`] (teloxide:
//! `Bot::new("123:ABC").set_api_url(url.parse()?)`) and it answers
//! `POST {url}/bot{TOKEN}/{method}` (JSON, `multipart/form-data`,
//! `x-www-form-urlencoded` or query-string parameters) with Bot API shaped
//! responses that teloxide deserializes.
//!
//! Behaviour modelled on the real API (so bugs that would fail in production
//! fail here too):
//! * `parse_mode=HTML` text is parsed like Telegram does: unsupported or
//!   unbalanced tags give `400 Bad Request: can't parse entities: …`; the
//!   returned message carries the plain text and the entities (UTF-16 offsets).
//! * Text is trimmed; empty text → `message text is empty`; more than 4096
//!   UTF-16 units → `message is too long` (`MESSAGE_TOO_LONG` for edits);
//!   captions over 1024 → `message caption is too long`.
//! * Inline keyboards are validated (`callback_data` 1–64 bytes) and echoed.
//! * Replies must target a known message (one pushed as an update or sent by
//!   the bot) unless `allow_sending_without_reply` is set.
//! * Only the bot's own messages can be edited; an edit that changes nothing
//!   gives `message is not modified`; editing text without `reply_markup`
//!   removes the keyboard, as on Telegram.
//! * `getUpdates` honours `offset` (confirming older updates), `limit`,
//!   `timeout` (long-polls up to min(timeout, 1 s)) and the remembered
//!   `allowed_updates` (default excludes `chat_member`, `message_reaction`,
//!   `message_reaction_count`); it fails with 409 while a webhook is set. Like
//!   Telegram, a `getUpdates` that arrives while another one is still open
//!   ends the older one with `409 Conflict: terminated by other getUpdates
//!   request` ([`FakeBotApi::conflicts`] counts them).
//! * A path prefix before `/bot{token}/` is accepted and recorded
//!   ([`Call::via`]): processes of one bot pointed at `{url}/a` and `{url}/b`
//!   share this fake's state but their calls can be told apart.
//! * Error responses use the HTTP status equal to `error_code` (hearth's own
//!   client retries 5xx at once with backoff; teloxide's slept 10 s).
//!   [`FakeBotApi::fail_next_in_chat`] fails only calls to one chat (a per-chat
//!   429), [`FakeBotApi::push_raw_update`] puts JSON text the bot may not be
//!   able to decode into a `getUpdates` batch, and every call records when it
//!   arrived ([`FakeBotApi::call_times`]) so rate limits can be measured.
//!
//! The bot is id 999, `@hearth_bot`, first name "Hearth". Any token is accepted.

#![allow(dead_code)] // shared test support: not every test binary uses every helper

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Bytes,
    extract::State as AxumState,
    http::{header::CONTENT_TYPE, HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json, Router,
};
use serde_json::{json, Map, Value};
use tokio::{sync::Notify, task::JoinHandle, time::Instant};

/// The fake bot's user id.
pub const BOT_ID: i64 = 999;
/// The fake bot's username (without `@`).
pub const BOT_USERNAME: &str = "hearth_bot";
/// The fake bot's first name.
pub const BOT_FIRST_NAME: &str = "Hearth";

/// Maximum message text length, in UTF-16 code units after entity parsing.
const MAX_TEXT_UNITS: usize = 4096;
/// Maximum media caption length, in UTF-16 code units after entity parsing.
const MAX_CAPTION_UNITS: usize = 1024;
/// Longest `getUpdates` long-poll the fake will hold a request for.
const MAX_LONG_POLL: Duration = Duration::from_secs(1);

/// What kind of chat a [`Chat`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatKind {
    /// A basic group (`"type": "group"`).
    Group {
        /// Group title.
        title: String,
    },
    /// A supergroup (`"type": "supergroup"`); real ids look like `-100…`.
    Supergroup {
        /// Supergroup title.
        title: String,
    },
    /// A one-to-one chat with a user; its id equals the user's id.
    Private {
        /// The other user's first name.
        first_name: String,
    },
}

/// A chat, for building update JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    /// Chat id (negative for groups).
    pub id: i64,
    /// Group or private chat.
    pub kind: ChatKind,
}

impl Chat {
    /// A basic group chat.
    pub fn group(id: i64, title: &str) -> Chat {
        Chat {
            id,
            kind: ChatKind::Group {
                title: title.to_string(),
            },
        }
    }

    /// A supergroup chat.
    pub fn supergroup(id: i64, title: &str) -> Chat {
        Chat {
            id,
            kind: ChatKind::Supergroup {
                title: title.to_string(),
            },
        }
    }

    /// A private chat with a user (`id` is the user's id).
    pub fn private(id: i64, first_name: &str) -> Chat {
        Chat {
            id,
            kind: ChatKind::Private {
                first_name: first_name.to_string(),
            },
        }
    }

    /// The Bot API `Chat` object.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            ChatKind::Group { title } => json!({"id": self.id, "type": "group", "title": title}),
            ChatKind::Supergroup { title } => {
                json!({"id": self.id, "type": "supergroup", "title": title})
            }
            ChatKind::Private { first_name } => {
                json!({"id": self.id, "type": "private", "first_name": first_name})
            }
        }
    }
}

/// A user, for building update JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id (positive).
    pub id: i64,
    /// First name.
    pub first_name: String,
    /// Username without `@`.
    pub username: Option<String>,
}

impl User {
    /// A user without a username.
    pub fn new(id: i64, first_name: &str) -> User {
        User {
            id,
            first_name: first_name.to_string(),
            username: None,
        }
    }

    /// The same user with a username (without `@`).
    pub fn with_username(mut self, username: &str) -> User {
        self.username = Some(username.to_string());
        self
    }

    /// The fake bot itself.
    pub fn bot() -> User {
        User::new(BOT_ID, BOT_FIRST_NAME).with_username(BOT_USERNAME)
    }

    /// The Bot API `User` object (`is_bot` is true only for [`BOT_ID`]).
    pub fn to_json(&self) -> Value {
        let mut v =
            json!({"id": self.id, "is_bot": self.id == BOT_ID, "first_name": self.first_name});
        if let Some(u) = &self.username {
            v["username"] = json!(u);
        }
        v
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Bot API method name as sent. teloxide capitalises it (`"SendMessage"`);
    /// Telegram and this fake treat names case-insensitively, so compare with
    /// `eq_ignore_ascii_case` or use [`FakeBotApi::calls_to`].
    pub method: String,
    /// The token from the `/bot{token}/` path segment.
    pub token: String,
    /// The path before `/bot{token}/` without slashes (`""` for the plain URL; `"a"` for an API
    /// URL of `{url}/a`).
    pub via: String,
    /// Parameters as a JSON object. For multipart requests text fields are
    /// strings (numbers, booleans, objects and arrays are decoded from their
    /// JSON text, except for free-text fields like `text`/`caption`), and
    /// file parts are `{"file_name": …, "content_type": …, "size": bytes}`
    /// under their part name (the `attach://` target).
    pub body: Value,
    /// When the request arrived.
    pub at: Instant,
}

struct Failure {
    method: String,
    /// Only calls whose `chat_id` is this one (any chat when `None`).
    chat_id: Option<i64>,
    code: i64,
    description: String,
    retry_after: Option<u64>,
}

struct ApiErr {
    code: i64,
    description: String,
}

fn bad(description: &str) -> ApiErr {
    ApiErr {
        code: 400,
        description: format!("Bad Request: {description}"),
    }
}

#[derive(Default)]
struct FakeState {
    calls: Vec<Call>,
    updates: VecDeque<Value>,
    next_update_id: i64,
    allowed_updates: Option<Vec<String>>,
    failures: Vec<Failure>,
    reject_html: bool,
    /// Every known message by (chat id, message id): pushed or sent by the bot.
    messages: HashMap<(i64, i64), Value>,
    /// Messages the bot sent, in order.
    bot_sent: Vec<(i64, i64)>,
    /// Highest message id seen per chat.
    max_message_id: HashMap<i64, i64>,
    chats: HashMap<i64, Value>,
    users: HashMap<i64, Value>,
    member_status: HashMap<(i64, i64), String>,
    commands: HashMap<String, Value>,
    webhook_url: Option<String>,
    file_counter: u64,
    /// Files members sent, by file id: served by getFile and `/file/bot<token>/<path>`.
    files: HashMap<String, Vec<u8>>,
    /// Sequence number of the newest `getUpdates`; an open long poll with an older number is
    /// terminated with 409, as Telegram does.
    poll_seq: u64,
    /// `getUpdates` calls answered with 409 "terminated by other getUpdates request".
    conflicts: usize,
}

struct Inner {
    state: Mutex<FakeState>,
    updates_changed: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake Bot API server. The server stops when this is dropped.
pub struct FakeBotApi {
    inner: Arc<Inner>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for FakeBotApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl FakeBotApi {
    /// Bind `127.0.0.1:0` and serve in a background task on the current Tokio runtime.
    pub async fn start() -> FakeBotApi {
        let inner = Arc::new(Inner {
            state: Mutex::new(FakeState {
                next_update_id: 1,
                ..FakeState::default()
            }),
            updates_changed: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Bot API listener");
        let addr = listener.local_addr().expect("listener address");
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeBotApi {
            inner,
            addr,
            server,
        }
    }

    /// Base URL to use as the API URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bot as a [`User`] (id 999, `@hearth_bot`, "Hearth").
    pub fn bot_user() -> User {
        User::bot()
    }

    /// Queue an update for `getUpdates`. A missing, null or `0` `update_id`
    /// is replaced by the next id (one more than the highest seen). Updates
    /// are delivered in `update_id` order. Messages in the update become
    /// known (they can be replied to), their chats and users are remembered
    /// for `getChat`/`getChatMember`, join/leave service messages update
    /// member status, and a callback query's message is replaced by the
    /// current state of that message if the bot sent it.
    pub fn push_update(&self, mut update: Value) {
        let mut st = self.inner.lock();
        let id = update.get("update_id").and_then(Value::as_i64).unwrap_or(0);
        let id = if id == 0 {
            let id = st.next_update_id;
            update["update_id"] = json!(id);
            id
        } else {
            id
        };
        st.next_update_id = st.next_update_id.max(id + 1);
        st.learn_update(&mut update);
        let pos = st
            .updates
            .iter()
            .position(|u| update_id(u) > id)
            .unwrap_or(st.updates.len());
        st.updates.insert(pos, update);
        drop(st);
        self.inner.updates_changed.notify_waiters();
    }

    /// An update with a text message. Sets `bot_command` entities for
    /// `/commands` (with optional `@botname`) at the start of a word and
    /// `mention` entities for `@usernames`, with UTF-16 offsets.
    pub fn text_message(
        update_id: i64,
        chat: Chat,
        from: User,
        message_id: i64,
        text: &str,
    ) -> Value {
        json!({"update_id": update_id, "message": user_message(&chat, &from, message_id, text)})
    }

    /// Like [`text_message`](Self::text_message), replying to `reply_to`:
    /// either a message object (e.g. from [`bot_messages`](Self::bot_messages)
    /// or a teloxide response serialized back) or a whole update containing one.
    pub fn reply_message(
        update_id: i64,
        chat: Chat,
        from: User,
        message_id: i64,
        text: &str,
        reply_to: Value,
    ) -> Value {
        let mut msg = user_message(&chat, &from, message_id, text);
        let mut target = reply_to
            .get("message")
            .filter(|_| reply_to.get("update_id").is_some())
            .cloned()
            .unwrap_or(reply_to);
        if let Some(obj) = target.as_object_mut() {
            // Telegram never nests replies more than one level.
            obj.remove("reply_to_message");
        }
        msg["reply_to_message"] = target;
        json!({"update_id": update_id, "message": msg})
    }

    /// An update with a callback query: `from` pressed a button with `data`
    /// on message `message_id` in `chat`. The message is a placeholder from
    /// the bot; [`push_update`](Self::push_update) swaps in the real message
    /// when the bot sent it. The query id is `"cbq-{update_id}"`.
    pub fn callback_query(
        update_id: i64,
        from: User,
        chat: Chat,
        message_id: i64,
        data: &str,
    ) -> Value {
        json!({
            "update_id": update_id,
            "callback_query": {
                "id": format!("cbq-{update_id}"),
                "from": from.to_json(),
                "message": {
                    "message_id": message_id,
                    "from": User::bot().to_json(),
                    "chat": chat.to_json(),
                    "date": now(),
                    "text": "…",
                },
                "chat_instance": format!("ci{}", chat.id),
                "data": data,
            }
        })
    }

    /// A `new_chat_members` service message: `from` added `members` (pass
    /// `from` itself in `members` for someone joining by link).
    pub fn member_joined(
        update_id: i64,
        chat: Chat,
        from: User,
        message_id: i64,
        members: Vec<User>,
    ) -> Value {
        let members: Vec<Value> = members.iter().map(User::to_json).collect();
        let first = members.first().cloned().unwrap_or(Value::Null);
        json!({
            "update_id": update_id,
            "message": {
                "message_id": message_id,
                "from": from.to_json(),
                "chat": chat.to_json(),
                "date": now(),
                "new_chat_participant": first,
                "new_chat_member": first,
                "new_chat_members": members,
            }
        })
    }

    /// A `left_chat_member` service message: `left` left (or was removed by `from`).
    pub fn member_left(
        update_id: i64,
        chat: Chat,
        from: User,
        message_id: i64,
        left: User,
    ) -> Value {
        json!({
            "update_id": update_id,
            "message": {
                "message_id": message_id,
                "from": from.to_json(),
                "chat": chat.to_json(),
                "date": now(),
                "left_chat_participant": left.to_json(),
                "left_chat_member": left.to_json(),
            }
        })
    }

    /// A message carrying a document (`file_id`, `file_name`, `file_size` bytes) captioned
    /// "@hearth_bot" (addressed to the bot); its bytes are served once registered with
    /// [`FakeBotApi::add_file`].
    pub fn document_message(
        update_id: i64,
        chat: Chat,
        from: User,
        message_id: i64,
        file_id: &str,
        file_name: &str,
        file_size: u64,
    ) -> Value {
        json!({
            "update_id": update_id,
            "message": {
                "message_id": message_id,
                "from": from.to_json(),
                "chat": chat.to_json(),
                "date": now(),
                "caption": "@hearth_bot",
                "document": {
                    "file_id": file_id,
                    "file_unique_id": format!("uniq-{file_id}"),
                    "file_name": file_name,
                    "mime_type": "application/toml",
                    "file_size": file_size,
                }
            }
        })
    }

    /// Serve `bytes` as file `file_id` (getFile answers `documents/<file_id>`).
    pub fn add_file(&self, file_id: &str, bytes: impl Into<Vec<u8>>) {
        self.inner
            .lock()
            .files
            .insert(file_id.to_string(), bytes.into());
    }

    /// A message with a regular static 512×512 sticker for `emoji`.
    pub fn sticker_message(
        update_id: i64,
        chat: Chat,
        from: User,
        message_id: i64,
        emoji: &str,
    ) -> Value {
        json!({
            "update_id": update_id,
            "message": {
                "message_id": message_id,
                "from": from.to_json(),
                "chat": chat.to_json(),
                "date": now(),
                "sticker": {
                    "file_id": format!("sticker-file-{message_id}"),
                    "file_unique_id": format!("sticker-uniq-{message_id}"),
                    "type": "regular",
                    "width": 512,
                    "height": 512,
                    "is_animated": false,
                    "is_video": false,
                    "emoji": emoji,
                    "set_name": "HearthTestStickers",
                    "file_size": 12345,
                }
            }
        })
    }

    /// Every request received so far, in order (including failed ones and
    /// `getUpdates` polls).
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().calls.clone()
    }

    /// Bodies of the requests to `method` (case-insensitive), in order.
    pub fn calls_to(&self, method: &str) -> Vec<Value> {
        self.inner
            .lock()
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .map(|c| c.body.clone())
            .collect()
    }

    /// Forget all recorded calls.
    pub fn clear_calls(&self) {
        self.inner.lock().calls.clear();
    }

    /// Wait until at least `count` requests to `method` were received and
    /// return all of them; panics after `timeout` listing every call seen.
    pub async fn wait_for(&self, method: &str, count: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.calls_to(method);
            if seen.len() >= count {
                return seen;
            }
            if Instant::now() >= deadline {
                let all: Vec<String> = self
                    .calls()
                    .iter()
                    .map(|c| format!("  {} {}", c.method, c.body))
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {count} {method} call(s), got {}; calls seen:\n{}",
                    seen.len(),
                    all.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Make the next request to `method` (case-insensitive) fail once with
    /// `error_code`/`description` (HTTP status = `error_code`) and, if given,
    /// `parameters.retry_after` (teloxide then returns
    /// `RequestError::RetryAfter`). Several injections queue up in order.
    pub fn fail_next(
        &self,
        method: &str,
        error_code: i64,
        description: &str,
        retry_after: Option<u64>,
    ) {
        self.inner.lock().failures.push(Failure {
            method: method.to_string(),
            chat_id: None,
            code: error_code,
            description: description.to_string(),
            retry_after,
        });
    }

    /// Like [`fail_next`](Self::fail_next), but only for a call to `method`
    /// whose `chat_id` is `chat_id` (calls to other chats go through), e.g. a
    /// 429 with `retry_after` for one chat.
    pub fn fail_next_in_chat(
        &self,
        method: &str,
        chat_id: i64,
        error_code: i64,
        description: &str,
        retry_after: Option<u64>,
    ) {
        self.inner.lock().failures.push(Failure {
            method: method.to_string(),
            chat_id: Some(chat_id),
            code: error_code,
            description: description.to_string(),
            retry_after,
        });
    }

    /// Drop every injected failure not used yet.
    pub fn clear_failures(&self) {
        self.inner.lock().failures.clear();
    }

    /// Queue JSON text as one element of the next `getUpdates` batches, after
    /// the updates queued so far, exactly as given: it need not decode (no
    /// `update_id`, wrong types, nesting deeper than any decoder allows). It
    /// has the `update_id` given here for ordering and confirmation (`None`:
    /// confirmed by any positive offset), whatever the text says.
    pub fn push_raw_update(&self, update_id: Option<i64>, json_text: &str) {
        let mut st = self.inner.lock();
        let mut entry = json!({ RAW_KEY: json_text });
        if let Some(id) = update_id {
            entry["update_id"] = json!(id);
            st.next_update_id = st.next_update_id.max(id + 1);
        }
        st.updates.push_back(entry);
        drop(st);
        self.inner.updates_changed.notify_waiters();
    }

    /// Arrival times of the requests to `method` (case-insensitive), with
    /// their bodies, in order.
    pub fn call_times(&self, method: &str) -> Vec<(Value, Instant)> {
        self.inner
            .lock()
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .map(|c| (c.body.clone(), c.at))
            .collect()
    }

    /// While on, `sendMessage`/`editMessageText` (and media captions) with
    /// `parse_mode` HTML fail with `400 Bad Request: can't parse entities: …`
    /// whatever the markup, to exercise the plain-text fallback.
    pub fn reject_html(&self, on: bool) {
        self.inner.lock().reject_html = on;
    }

    /// Set what `getChatMember` reports for `user_id` in `chat_id`:
    /// `"creator"`, `"administrator"`, `"member"`, `"restricted"`, `"left"`
    /// or `"kicked"`. Defaults to `"member"`; join/leave updates update it.
    pub fn set_member_status(&self, chat_id: i64, user_id: i64, status: &str) {
        self.inner
            .lock()
            .member_status
            .insert((chat_id, user_id), status.to_string());
    }

    /// Messages the bot sent, in sending order, each in its current state
    /// (after edits; deleted ones are left out).
    pub fn bot_messages(&self) -> Vec<Value> {
        let st = self.inner.lock();
        st.bot_sent
            .iter()
            .filter_map(|k| st.messages.get(k).cloned())
            .collect()
    }

    /// The current state of a known message.
    pub fn message(&self, chat_id: i64, message_id: i64) -> Option<Value> {
        self.inner
            .lock()
            .messages
            .get(&(chat_id, message_id))
            .cloned()
    }

    /// How many `getUpdates` were terminated with 409 by a newer concurrent `getUpdates`.
    pub fn conflicts(&self) -> usize {
        self.inner.lock().conflicts
    }

    /// Calls to `method` (case-insensitive) that came through the API URL prefix `via` (see
    /// [`Call::via`]).
    pub fn calls_via(&self, method: &str, via: &str) -> usize {
        self.inner
            .lock()
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method) && c.via == via)
            .count()
    }

    /// Updates queued and not yet confirmed by a `getUpdates` offset.
    pub fn pending_updates(&self) -> usize {
        self.inner.lock().updates.len()
    }
}

/// Marks a queued [`FakeBotApi::push_raw_update`] entry; its value is the JSON text.
const RAW_KEY: &str = "__raw_json_text__";

fn update_id(u: &Value) -> i64 {
    u.get("update_id").and_then(Value::as_i64).unwrap_or(0)
}

/// The kind of an update: its first field other than `update_id`.
fn update_kind(u: &Value) -> String {
    u.as_object()
        .and_then(|o| o.keys().find(|k| *k != "update_id").cloned())
        .unwrap_or_default()
}

fn user_message(chat: &Chat, from: &User, message_id: i64, text: &str) -> Value {
    let mut msg = json!({
        "message_id": message_id,
        "from": from.to_json(),
        "chat": chat.to_json(),
        "date": now(),
        "text": text,
    });
    let entities = detect_entities(text);
    if !entities.is_empty() {
        msg["entities"] = Value::Array(entities);
    }
    msg
}

/// `bot_command` and `mention` entities, as Telegram would attach them.
fn detect_entities(text: &str) -> Vec<Value> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let chars: Vec<char> = text.chars().collect();
    let mut entities = Vec::new();
    let mut units = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev_ok = i == 0 || !(word(chars[i - 1]) || chars[i - 1] == '/' || chars[i - 1] == '@');
        let kind = match c {
            '/' if prev_ok && (i == 0 || chars[i - 1].is_whitespace()) => Some("bot_command"),
            '@' if prev_ok => Some("mention"),
            _ => None,
        };
        if let Some(kind) = kind {
            let mut j = i + 1;
            while j < chars.len() && word(chars[j]) {
                j += 1;
            }
            if j > i + 1 {
                if kind == "bot_command"
                    && j + 1 < chars.len()
                    && chars[j] == '@'
                    && word(chars[j + 1])
                {
                    j += 1;
                    while j < chars.len() && word(chars[j]) {
                        j += 1;
                    }
                }
                let length: usize = chars[i..j].iter().map(|c| c.len_utf16()).sum();
                entities.push(json!({"type": kind, "offset": units, "length": length}));
                units += length;
                i = j;
                continue;
            }
        }
        units += c.len_utf16();
        i += 1;
    }
    entities
}

impl FakeState {
    fn learn_message(&mut self, msg: &Value) {
        let (Some(chat_id), Some(message_id)) = (
            msg.pointer("/chat/id").and_then(Value::as_i64),
            msg.get("message_id").and_then(Value::as_i64),
        ) else {
            return;
        };
        if let Some(chat) = msg.get("chat") {
            self.chats.insert(chat_id, chat.clone());
        }
        if let Some(id) = msg.pointer("/from/id").and_then(Value::as_i64) {
            self.users.insert(id, msg["from"].clone());
        }
        if let Some(members) = msg.get("new_chat_members").and_then(Value::as_array) {
            for m in members {
                if let Some(id) = m.get("id").and_then(Value::as_i64) {
                    self.users.insert(id, m.clone());
                    self.member_status.insert((chat_id, id), "member".into());
                }
            }
        }
        if let Some(id) = msg.pointer("/left_chat_member/id").and_then(Value::as_i64) {
            self.users.insert(id, msg["left_chat_member"].clone());
            self.member_status.insert((chat_id, id), "left".into());
        }
        if let Some(reply) = msg.get("reply_to_message") {
            let key = (
                reply
                    .pointer("/chat/id")
                    .and_then(Value::as_i64)
                    .unwrap_or(chat_id),
                reply.get("message_id").and_then(Value::as_i64).unwrap_or(0),
            );
            if !self.messages.contains_key(&key) {
                self.learn_message(reply);
            }
        }
        let max = self.max_message_id.entry(chat_id).or_insert(0);
        *max = (*max).max(message_id);
        self.messages.insert((chat_id, message_id), msg.clone());
    }

    fn learn_update(&mut self, update: &mut Value) {
        for key in [
            "message",
            "edited_message",
            "channel_post",
            "edited_channel_post",
        ] {
            if let Some(msg) = update.get(key).cloned() {
                self.learn_message(&msg);
            }
        }
        if let Some(cq) = update.get_mut("callback_query") {
            if let Some(id) = cq.pointer("/from/id").and_then(Value::as_i64) {
                self.users.insert(id, cq["from"].clone());
            }
            let key = (
                cq.pointer("/message/chat/id").and_then(Value::as_i64),
                cq.pointer("/message/message_id").and_then(Value::as_i64),
            );
            if let (Some(chat_id), Some(message_id)) = key {
                if let Some(current) = self.messages.get(&(chat_id, message_id)) {
                    cq["message"] = current.clone();
                } else if let Some(chat) = cq.pointer("/message/chat") {
                    self.chats.insert(chat_id, chat.clone());
                }
            }
        }
        for key in ["my_chat_member", "chat_member"] {
            if let Some(id) = update
                .pointer(&format!("/{key}/chat/id"))
                .and_then(Value::as_i64)
            {
                self.chats.insert(id, update[key]["chat"].clone());
            }
        }
    }

    fn chat_json(&self, chat_id: i64) -> Value {
        if let Some(c) = self.chats.get(&chat_id) {
            return c.clone();
        }
        if chat_id > 0 {
            json!({"id": chat_id, "type": "private", "first_name": format!("User {chat_id}")})
        } else if chat_id < -1_000_000_000_000 {
            json!({"id": chat_id, "type": "supergroup", "title": format!("Chat {chat_id}")})
        } else {
            json!({"id": chat_id, "type": "group", "title": format!("Chat {chat_id}")})
        }
    }

    fn user_json(&self, user_id: i64) -> Value {
        if user_id == BOT_ID {
            return User::bot().to_json();
        }
        self.users.get(&user_id).cloned().unwrap_or_else(
            || json!({"id": user_id, "is_bot": false, "first_name": format!("User {user_id}")}),
        )
    }

    fn next_message_id(&mut self, chat_id: i64) -> i64 {
        let max = self.max_message_id.entry(chat_id).or_insert(0);
        *max += 1;
        *max
    }

    fn take_failure(&mut self, method: &str, p: &Map<String, Value>) -> Option<Failure> {
        let chat = p.get("chat_id").and_then(as_i64);
        let pos = self.failures.iter().position(|f| {
            f.method.eq_ignore_ascii_case(method) && (f.chat_id.is_none() || f.chat_id == chat)
        })?;
        Some(self.failures.remove(pos))
    }

    /// Parse `text` per `parse_mode`, trim it, check its length.
    fn render_text(
        &self,
        p: &Map<String, Value>,
        text_field: &str,
        entities_field: &str,
        max_units: usize,
        too_long: &str,
    ) -> Result<(String, Vec<Value>), ApiErr> {
        let raw = p.get(text_field).map(value_to_string).unwrap_or_default();
        let html = p
            .get("parse_mode")
            .and_then(Value::as_str)
            .is_some_and(|m| m.eq_ignore_ascii_case("html"));
        let (text, entities) = if html {
            if self.reject_html {
                return Err(bad(
                    "can't parse entities: Unsupported start tag \"rejected\" at byte offset 0 (FakeBotApi::reject_html)",
                ));
            }
            parse_telegram_html(&raw).map_err(|e| bad(&format!("can't parse entities: {e}")))?
        } else {
            let entities = p
                .get(entities_field)
                .map(json_value)
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default();
            (raw, entities)
        };
        let (text, entities) = trim_text(&text, entities);
        if utf16_len(&text) > max_units {
            return Err(bad(too_long));
        }
        Ok((text, entities))
    }

    fn reply_target(&self, p: &Map<String, Value>, chat_id: i64) -> Result<Option<Value>, ApiErr> {
        let params = p.get("reply_parameters").map(json_value);
        let message_id = params
            .as_ref()
            .and_then(|r| r.get("message_id"))
            .or_else(|| p.get("reply_to_message_id"))
            .and_then(as_i64);
        let Some(message_id) = message_id else {
            return Ok(None);
        };
        let reply_chat = params
            .as_ref()
            .and_then(|r| r.get("chat_id"))
            .and_then(as_i64)
            .unwrap_or(chat_id);
        let allow_missing = params
            .as_ref()
            .and_then(|r| r.get("allow_sending_without_reply"))
            .or_else(|| p.get("allow_sending_without_reply"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        match self.messages.get(&(reply_chat, message_id)) {
            Some(m) => {
                let mut m = m.clone();
                if let Some(o) = m.as_object_mut() {
                    o.remove("reply_to_message");
                }
                Ok(Some(m))
            }
            None if allow_missing => Ok(None),
            None => Err(bad("message to be replied not found")),
        }
    }

    fn new_bot_message(&mut self, chat_id: i64, p: &Map<String, Value>) -> Value {
        let message_id = self.next_message_id(chat_id);
        let mut msg = json!({
            "message_id": message_id,
            "from": User::bot().to_json(),
            "chat": self.chat_json(chat_id),
            "date": now(),
        });
        if let Some(thread) = p.get("message_thread_id").and_then(as_i64) {
            msg["message_thread_id"] = json!(thread);
        }
        msg
    }

    fn store_bot_message(&mut self, msg: &Value) {
        let chat_id = msg.pointer("/chat/id").and_then(Value::as_i64).unwrap_or(0);
        let message_id = msg.get("message_id").and_then(Value::as_i64).unwrap_or(0);
        self.messages.insert((chat_id, message_id), msg.clone());
        self.bot_sent.push((chat_id, message_id));
    }

    fn send_message(&mut self, p: &Map<String, Value>) -> Result<Value, ApiErr> {
        let chat_id = chat_id(p)?;
        let (text, entities) =
            self.render_text(p, "text", "entities", MAX_TEXT_UNITS, "message is too long")?;
        if text.is_empty() {
            return Err(bad("message text is empty"));
        }
        let markup = inline_markup(p.get("reply_markup"))?;
        let reply = self.reply_target(p, chat_id)?;
        let mut msg = self.new_bot_message(chat_id, p);
        msg["text"] = json!(text);
        if !entities.is_empty() {
            msg["entities"] = Value::Array(entities);
        }
        if let Some(m) = markup {
            msg["reply_markup"] = m;
        }
        if let Some(r) = reply {
            msg["reply_to_message"] = r;
        }
        self.store_bot_message(&msg);
        Ok(msg)
    }

    fn send_photo(&mut self, p: &Map<String, Value>) -> Result<Value, ApiErr> {
        let chat_id = chat_id(p)?;
        let photo = p.get("photo").map(value_to_string).unwrap_or_default();
        if photo.is_empty() {
            return Err(bad("there is no photo in the request"));
        }
        let attached = photo
            .strip_prefix("attach://")
            .map(|name| p.get(name).is_some_and(Value::is_object));
        if attached == Some(false) {
            return Err(bad(
                "wrong remote file identifier specified: can't unserialize it",
            ));
        }
        let (caption, entities) = self.render_text(
            p,
            "caption",
            "caption_entities",
            MAX_CAPTION_UNITS,
            "message caption is too long",
        )?;
        let markup = inline_markup(p.get("reply_markup"))?;
        let reply = self.reply_target(p, chat_id)?;
        self.file_counter += 1;
        let n = self.file_counter;
        let sizes: Vec<Value> = [(90, 90), (320, 320), (800, 800)]
            .iter()
            .enumerate()
            .map(|(i, (w, h))| {
                json!({
                    "file_id": format!("fake-photo-{n}-{i}"),
                    "file_unique_id": format!("fake-photo-uniq-{n}-{i}"),
                    "width": w,
                    "height": h,
                    "file_size": 1000 * (i + 1),
                })
            })
            .collect();
        let mut msg = self.new_bot_message(chat_id, p);
        msg["photo"] = Value::Array(sizes);
        if !caption.is_empty() {
            msg["caption"] = json!(caption);
        }
        if !entities.is_empty() {
            msg["caption_entities"] = Value::Array(entities);
        }
        if let Some(m) = markup {
            msg["reply_markup"] = m;
        }
        if let Some(r) = reply {
            msg["reply_to_message"] = r;
        }
        self.store_bot_message(&msg);
        Ok(msg)
    }

    /// Look up a message the bot may edit.
    fn editable(&self, p: &Map<String, Value>) -> Result<(i64, i64), ApiErr> {
        let chat_id = chat_id(p)?;
        let message_id = p
            .get("message_id")
            .and_then(as_i64)
            .ok_or_else(|| bad("message identifier is not specified"))?;
        let msg = self
            .messages
            .get(&(chat_id, message_id))
            .ok_or_else(|| bad("message to edit not found"))?;
        if msg.pointer("/from/id").and_then(Value::as_i64) != Some(BOT_ID) {
            return Err(bad("message can't be edited"));
        }
        Ok((chat_id, message_id))
    }

    fn edit_message_text(&mut self, p: &Map<String, Value>) -> Result<Value, ApiErr> {
        let (text, entities) =
            self.render_text(p, "text", "entities", MAX_TEXT_UNITS, "MESSAGE_TOO_LONG")?;
        if text.is_empty() {
            return Err(bad("message text is empty"));
        }
        let markup = inline_markup(p.get("reply_markup"))?;
        if p.contains_key("inline_message_id") {
            return Ok(json!(true));
        }
        let key = self.editable(p)?;
        let msg = self.messages.get_mut(&key).expect("checked by editable");
        if msg.get("text").is_none() {
            return Err(bad("there is no text in the message to edit"));
        }
        let same = msg.get("text") == Some(&json!(text))
            && msg.get("entities").cloned().unwrap_or(json!([])) == json!(entities)
            && msg.get("reply_markup") == markup.as_ref();
        if same {
            return Err(not_modified());
        }
        let obj = msg.as_object_mut().expect("message is an object");
        obj.insert("text".into(), json!(text));
        set_or_remove(
            obj,
            "entities",
            (!entities.is_empty()).then(|| json!(entities)),
        );
        set_or_remove(obj, "reply_markup", markup);
        obj.insert("edit_date".into(), json!(now()));
        Ok(msg.clone())
    }

    fn edit_message_reply_markup(&mut self, p: &Map<String, Value>) -> Result<Value, ApiErr> {
        let markup = inline_markup(p.get("reply_markup"))?;
        if p.contains_key("inline_message_id") {
            return Ok(json!(true));
        }
        let key = self.editable(p)?;
        let msg = self.messages.get_mut(&key).expect("checked by editable");
        if msg.get("reply_markup") == markup.as_ref() {
            return Err(not_modified());
        }
        let obj = msg.as_object_mut().expect("message is an object");
        set_or_remove(obj, "reply_markup", markup);
        obj.insert("edit_date".into(), json!(now()));
        Ok(msg.clone())
    }

    fn delete_message(&mut self, p: &Map<String, Value>) -> Result<Value, ApiErr> {
        let chat_id = chat_id(p)?;
        let message_id = p.get("message_id").and_then(as_i64).unwrap_or(0);
        match self.messages.remove(&(chat_id, message_id)) {
            Some(_) => Ok(json!(true)),
            None => Err(bad("message to delete not found")),
        }
    }

    fn commands_key(p: &Map<String, Value>) -> String {
        let scope = p
            .get("scope")
            .map(json_value)
            .unwrap_or_else(|| json!({"type": "default"}));
        let lang = p
            .get("language_code")
            .map(value_to_string)
            .unwrap_or_default();
        format!("{scope}|{lang}")
    }

    /// A `chat` scope must name a chat the bot is in (Telegram: "chat not found").
    fn check_scope(&self, p: &Map<String, Value>) -> Result<(), ApiErr> {
        let scope = p.get("scope").map(json_value).unwrap_or(Value::Null);
        if scope.get("type").and_then(Value::as_str) == Some("chat") {
            let known = scope
                .get("chat_id")
                .and_then(as_i64)
                .is_some_and(|id| self.chats.contains_key(&id));
            if !known {
                return Err(bad("chat not found"));
            }
        }
        Ok(())
    }

    fn set_my_commands(&mut self, p: &Map<String, Value>) -> Result<Value, ApiErr> {
        self.check_scope(p)?;
        let commands = p.get("commands").map(json_value).unwrap_or(json!([]));
        let list = commands
            .as_array()
            .ok_or_else(|| bad("can't parse commands JSON object"))?;
        if list.len() > 100 {
            return Err(bad("BOT_COMMANDS_TOO_MUCH"));
        }
        for c in list {
            let command = c.get("command").and_then(Value::as_str).unwrap_or("");
            let ok = (1..=32).contains(&command.len())
                && command
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
            if !ok {
                return Err(bad("BOT_COMMAND_INVALID"));
            }
            let description = c.get("description").and_then(Value::as_str).unwrap_or("");
            if !(1..=256).contains(&description.chars().count()) {
                return Err(bad("command description must be non-empty"));
            }
        }
        self.commands.insert(Self::commands_key(p), commands);
        Ok(json!(true))
    }

    fn chat_member(&self, p: &Map<String, Value>) -> Result<Value, ApiErr> {
        let chat_id = chat_id(p)?;
        let user_id = p
            .get("user_id")
            .and_then(as_i64)
            .ok_or_else(|| bad("invalid user_id specified"))?;
        let status = self
            .member_status
            .get(&(chat_id, user_id))
            .map(String::as_str)
            .unwrap_or("member");
        let mut m = match status {
            "creator" => json!({"status": "creator", "is_anonymous": false}),
            "administrator" => json!({
                "status": "administrator",
                "can_be_edited": false,
                "is_anonymous": false,
                "can_manage_chat": true,
                "can_delete_messages": true,
                "can_manage_video_chats": true,
                "can_restrict_members": true,
                "can_promote_members": false,
                "can_change_info": true,
                "can_invite_users": true,
                "can_post_stories": false,
                "can_edit_stories": false,
                "can_delete_stories": false,
                "can_pin_messages": true,
            }),
            "restricted" => json!({
                "status": "restricted",
                "until_date": 0,
                "is_member": true,
                "can_send_messages": false,
                "can_send_audios": false,
                "can_send_documents": false,
                "can_send_photos": false,
                "can_send_videos": false,
                "can_send_video_notes": false,
                "can_send_voice_notes": false,
                "can_send_polls": false,
                "can_send_other_messages": false,
                "can_add_web_page_previews": false,
                "can_change_info": false,
                "can_invite_users": false,
                "can_pin_messages": false,
                "can_manage_topics": false,
            }),
            "left" => json!({"status": "left"}),
            "kicked" => json!({"status": "kicked", "until_date": 0}),
            _ => json!({"status": "member"}),
        };
        m["user"] = self.user_json(user_id);
        Ok(m)
    }

    fn get_chat(&self, p: &Map<String, Value>) -> Result<Value, ApiErr> {
        let mut chat = self.chat_json(chat_id(p)?);
        chat["accent_color_id"] = json!(0);
        chat["max_reaction_count"] = json!(11);
        chat["accepted_gift_types"] = json!({
            "unlimited_gifts": false,
            "limited_gifts": false,
            "unique_gifts": false,
            "premium_subscription": false,
        });
        Ok(chat)
    }

    fn dispatch(&mut self, method: &str, p: &Map<String, Value>) -> Result<Value, ApiErr> {
        match method.to_ascii_lowercase().as_str() {
            "getfile" => {
                let id = p
                    .get("file_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("file_id is empty"))?;
                let size = self
                    .files
                    .get(id)
                    .map(Vec::len)
                    .ok_or_else(|| bad("invalid file_id"))?;
                Ok(json!({
                    "file_id": id,
                    "file_unique_id": format!("uniq-{id}"),
                    "file_size": size,
                    "file_path": format!("documents/{id}"),
                }))
            }
            "getme" => Ok(json!({
                "id": BOT_ID,
                "is_bot": true,
                "first_name": BOT_FIRST_NAME,
                "username": BOT_USERNAME,
                "can_join_groups": true,
                "can_read_all_group_messages": false,
                "supports_inline_queries": false,
                "can_connect_to_business": false,
                "has_main_web_app": false,
            })),
            "sendmessage" => self.send_message(p),
            "sendphoto" => self.send_photo(p),
            "editmessagetext" => self.edit_message_text(p),
            "editmessagereplymarkup" => self.edit_message_reply_markup(p),
            "deletemessage" => self.delete_message(p),
            "answercallbackquery" => {
                if p.get("callback_query_id")
                    .map(value_to_string)
                    .unwrap_or_default()
                    .is_empty()
                {
                    return Err(bad(
                        "query is too old and response timeout expired or query id is invalid",
                    ));
                }
                Ok(json!(true))
            }
            "sendchataction" => {
                chat_id(p)?;
                Ok(json!(true))
            }
            "setmycommands" => self.set_my_commands(p),
            "getmycommands" => Ok(self
                .commands
                .get(&Self::commands_key(p))
                .cloned()
                .unwrap_or(json!([]))),
            "deletemycommands" => {
                self.check_scope(p)?;
                self.commands.remove(&Self::commands_key(p));
                Ok(json!(true))
            }
            "setwebhook" => {
                let url = p.get("url").map(value_to_string).unwrap_or_default();
                if p.get("drop_pending_updates").and_then(Value::as_bool) == Some(true) {
                    self.updates.clear();
                }
                self.webhook_url = (!url.is_empty()).then_some(url);
                Ok(json!(true))
            }
            "deletewebhook" => {
                if p.get("drop_pending_updates").and_then(Value::as_bool) == Some(true) {
                    self.updates.clear();
                }
                self.webhook_url = None;
                Ok(json!(true))
            }
            "getwebhookinfo" => Ok(json!({
                "url": self.webhook_url.clone().unwrap_or_default(),
                "has_custom_certificate": false,
                "pending_update_count": self.updates.len(),
            })),
            "getchatmember" => self.chat_member(p),
            "getchat" => self.get_chat(p),
            _ => Ok(json!(true)),
        }
    }

    /// One `getUpdates` attempt: confirm by offset, then the deliverable batch.
    fn poll_updates(&mut self, p: &Map<String, Value>) -> Result<Vec<Value>, ApiErr> {
        if self.webhook_url.is_some() {
            return Err(ApiErr {
                code: 409,
                description: "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first".into(),
            });
        }
        let allowed = p.get("allowed_updates").map(json_value);
        if let Some(list) = allowed.as_ref().and_then(Value::as_array) {
            let list: Vec<String> = list
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            self.allowed_updates = (!list.is_empty()).then_some(list);
        }
        match p.get("offset").and_then(as_i64) {
            Some(off) if off > 0 => self.updates.retain(|u| update_id(u) >= off),
            Some(off) if off < 0 => {
                let keep = off.unsigned_abs() as usize;
                while self.updates.len() > keep {
                    self.updates.pop_front();
                }
            }
            _ => {}
        }
        let limit = p.get("limit").and_then(as_i64).unwrap_or(100).clamp(1, 100) as usize;
        let allowed = |kind: &str| match &self.allowed_updates {
            Some(list) => list.iter().any(|k| k == kind),
            None => !matches!(
                kind,
                "chat_member" | "message_reaction" | "message_reaction_count"
            ),
        };
        Ok(self
            .updates
            .iter()
            .filter(|u| u.get(RAW_KEY).is_some() || allowed(&update_kind(u)))
            .take(limit)
            .cloned()
            .collect())
    }
}

fn not_modified() -> ApiErr {
    bad(
        "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
    )
}

fn set_or_remove(obj: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(v) => {
            obj.insert(key.into(), v);
        }
        None => {
            obj.remove(key);
        }
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn value_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Objects/arrays may arrive as JSON text (multipart, form) or as JSON.
fn json_value(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        other => other.clone(),
    }
}

fn chat_id(p: &Map<String, Value>) -> Result<i64, ApiErr> {
    match p.get("chat_id") {
        None => Err(bad("chat_id is empty")),
        Some(v) => as_i64(v).ok_or_else(|| bad("chat not found")),
    }
}

/// Validate `reply_markup`; return it if it is an inline keyboard (the only
/// kind echoed in the resulting message).
fn inline_markup(markup: Option<&Value>) -> Result<Option<Value>, ApiErr> {
    let Some(markup) = markup.map(json_value) else {
        return Ok(None);
    };
    if !markup.is_object() {
        return Err(bad("can't parse reply keyboard markup JSON object"));
    }
    let Some(rows) = markup.get("inline_keyboard") else {
        return Ok(None);
    };
    let rows = rows.as_array().ok_or_else(|| {
        bad("field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array")
    })?;
    const ACTIONS: [&str; 10] = [
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    ];
    for row in rows {
        let buttons = row.as_array().ok_or_else(|| {
            bad("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
        })?;
        for b in buttons {
            let text = b.get("text").and_then(Value::as_str).unwrap_or("");
            if text.is_empty() {
                return Err(bad(
                    "can't parse inline keyboard button: Text of the button must be non-empty",
                ));
            }
            if !ACTIONS.iter().any(|a| b.get(*a).is_some()) {
                return Err(bad(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
                ));
            }
            if let Some(data) = b.get("callback_data") {
                let len = data.as_str().map(str::len).unwrap_or(0);
                if !(1..=64).contains(&len) {
                    return Err(bad("BUTTON_DATA_INVALID"));
                }
            }
            let url = b.get("url").and_then(Value::as_str);
            if url.is_some_and(|u| {
                !(u.starts_with("http://") || u.starts_with("https://") || u.starts_with("tg://"))
            }) {
                return Err(bad("inline keyboard button URL is invalid"));
            }
        }
    }
    Ok(Some(markup))
}

fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Trim surrounding whitespace like Telegram does, shifting entities.
fn trim_text(text: &str, entities: Vec<Value>) -> (String, Vec<Value>) {
    let trimmed_start = text.trim_start();
    let lead = utf16_len(&text[..text.len() - trimmed_start.len()]);
    let trimmed = trimmed_start.trim_end().to_string();
    let len = utf16_len(&trimmed);
    let entities = entities
        .into_iter()
        .filter_map(|mut e| {
            let offset = e.get("offset").and_then(Value::as_u64)? as usize;
            let length = e.get("length").and_then(Value::as_u64)? as usize;
            let start = offset.max(lead) - lead;
            let end = (offset + length).clamp(lead, lead + len) - lead;
            if end <= start {
                return None;
            }
            e["offset"] = json!(start);
            e["length"] = json!(end - start);
            Some(e)
        })
        .collect();
    (trimmed, entities)
}

/// Parse Telegram-style HTML (the rules of TDLib's parser): returns the text
/// and its entities (UTF-16 offsets), or the error description Telegram
/// would put after "can't parse entities: ".
pub(crate) fn parse_telegram_html(html: &str) -> Result<(String, Vec<Value>), String> {
    struct Open {
        name: String,
        start: usize,
        attr: Option<String>,
        code_in_pre: bool,
    }
    const TAGS: [&str; 16] = [
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    ];
    let b = html.as_bytes();
    let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c);
    let mut text = String::with_capacity(html.len());
    let mut units = 0usize;
    let mut stack: Vec<Open> = Vec::new();
    let mut entities: Vec<(usize, usize, Value)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if let Some((c, len)) = (b[i] == b'&').then(|| decode_entity(&html[i..])).flatten() {
            text.push(c);
            units += c.len_utf16();
            i += len;
            continue;
        }
        if b[i] != b'<' {
            let c = html[i..].chars().next().unwrap_or('\u{fffd}');
            text.push(c);
            units += c.len_utf16();
            i += c.len_utf8();
            continue;
        }
        let begin = i;
        if i + 1 >= b.len() {
            return Err(format!("Unclosed start tag at byte offset {begin}"));
        }
        if b[i + 1] != b'/' {
            let mut j = i + 1;
            while j < b.len() && !is_space(b[j]) && b[j] != b'>' {
                j += 1;
            }
            if j >= b.len() {
                return Err(format!("Unclosed start tag at byte offset {begin}"));
            }
            let name = html[i + 1..j].to_ascii_lowercase();
            if !TAGS.contains(&name.as_str()) {
                return Err(format!(
                    "Unsupported start tag \"{name}\" at byte offset {begin}"
                ));
            }
            // Attributes.
            let mut attrs: Vec<(String, String)> = Vec::new();
            loop {
                while j < b.len() && is_space(b[j]) {
                    j += 1;
                }
                if j >= b.len() {
                    return Err(format!(
                        "Unclosed start tag \"{name}\" at byte offset {begin}"
                    ));
                }
                if b[j] == b'>' {
                    j += 1;
                    break;
                }
                let an_start = j;
                while j < b.len() && !is_space(b[j]) && b[j] != b'=' && b[j] != b'>' {
                    j += 1;
                }
                let attr_name = html[an_start..j].to_ascii_lowercase();
                while j < b.len() && is_space(b[j]) {
                    j += 1;
                }
                if j >= b.len() || b[j] != b'=' {
                    attrs.push((attr_name, String::new()));
                    continue;
                }
                j += 1;
                while j < b.len() && is_space(b[j]) {
                    j += 1;
                }
                if j >= b.len() {
                    return Err(format!("Unclosed start tag at byte offset {begin}"));
                }
                let value = if b[j] == b'"' || b[j] == b'\'' {
                    let q = b[j];
                    let v_start = j + 1;
                    let Some(len) = b[v_start..].iter().position(|&c| c == q) else {
                        return Err(format!(
                            "Unclosed end of attribute value at byte offset {j}"
                        ));
                    };
                    j = v_start + len + 1;
                    &html[v_start..v_start + len]
                } else {
                    let v_start = j;
                    while j < b.len() && !is_space(b[j]) && b[j] != b'>' {
                        j += 1;
                    }
                    &html[v_start..j]
                };
                attrs.push((attr_name, decode_all_entities(value)));
            }
            let attr = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let attr_value = match name.as_str() {
                "a" => attr("href"),
                "span" => {
                    if attr("class").as_deref() != Some("tg-spoiler") {
                        return Err(format!(
                            "Tag \"span\" must have class \"tg-spoiler\" at byte offset {begin}"
                        ));
                    }
                    None
                }
                "code" => attr("class").and_then(|c| c.strip_prefix("language-").map(String::from)),
                "blockquote" => attr("expandable").map(|_| String::new()),
                "tg-emoji" => match attr("emoji-id") {
                    Some(id) => Some(id),
                    None => {
                        return Err(format!(
                            "Tag \"tg-emoji\" must have attribute \"emoji-id\" at byte offset {begin}"
                        ));
                    }
                },
                _ => None,
            };
            let code_in_pre = name == "code"
                && stack
                    .last()
                    .is_some_and(|o| o.name == "pre" && o.start == units);
            stack.push(Open {
                name,
                start: units,
                attr: attr_value,
                code_in_pre,
            });
            i = j;
        } else {
            let Some(top_name) = stack.last().map(|o| o.name.clone()) else {
                return Err(format!("Unexpected end tag at byte offset {begin}"));
            };
            let mut j = i + 2;
            while j < b.len() && !is_space(b[j]) && b[j] != b'>' {
                j += 1;
            }
            let name = html[i + 2..j].to_ascii_lowercase();
            while j < b.len() && is_space(b[j]) {
                j += 1;
            }
            if j >= b.len() || b[j] != b'>' {
                return Err(format!("Unclosed end tag at byte offset {begin}"));
            }
            if !name.is_empty() && name != top_name {
                return Err(format!(
                    "Unmatched end tag at byte offset {begin}, expected \"</{top_name}>\", found \"</{name}>\""
                ));
            }
            let open = stack.pop().expect("checked non-empty");
            i = j + 1;
            let length = units - open.start;
            let kind = match open.name.as_str() {
                "b" | "strong" => Some(json!({"type": "bold"})),
                "i" | "em" => Some(json!({"type": "italic"})),
                "u" | "ins" => Some(json!({"type": "underline"})),
                "s" | "strike" | "del" => Some(json!({"type": "strikethrough"})),
                "tg-spoiler" | "span" => Some(json!({"type": "spoiler"})),
                "a" => open
                    .attr
                    .filter(|h| !h.is_empty())
                    .map(|url| json!({"type": "text_link", "url": url})),
                "tg-emoji" => open
                    .attr
                    .map(|id| json!({"type": "custom_emoji", "custom_emoji_id": id})),
                "blockquote" => Some(if open.attr.is_some() {
                    json!({"type": "expandable_blockquote"})
                } else {
                    json!({"type": "blockquote"})
                }),
                "code" if open.code_in_pre => {
                    // <pre><code class="language-x">: the language goes on the pre.
                    if let (Some(lang), Some(pre)) = (open.attr, stack.last_mut()) {
                        pre.attr = Some(lang);
                    }
                    None
                }
                "code" => Some(json!({"type": "code"})),
                "pre" => Some(match open.attr {
                    Some(lang) => json!({"type": "pre", "language": lang}),
                    None => json!({"type": "pre"}),
                }),
                _ => None,
            };
            if let Some(mut kind) = kind.filter(|_| length > 0) {
                kind["offset"] = json!(open.start);
                kind["length"] = json!(length);
                entities.push((open.start, length, kind));
            }
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{}\"",
            open.name
        ));
    }
    entities.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    Ok((text, entities.into_iter().map(|e| e.2).collect()))
}

/// The HTML entities Telegram understands: `&lt;` `&gt;` `&amp;` `&quot;` and
/// numeric ones. Anything else is literal text.
fn decode_entity(s: &str) -> Option<(char, usize)> {
    let end = s.as_bytes().iter().take(12).position(|&c| c == b';')?;
    let body = &s[1..end];
    let c = match body {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        _ => {
            let num = body.strip_prefix('#')?;
            let n = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(n).filter(|&c| c != '\0')?
        }
    };
    Some((c, end + 1))
}

fn decode_all_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if let Some((c, len)) = (s.as_bytes()[i] == b'&')
            .then(|| decode_entity(&s[i..]))
            .flatten()
        {
            out.push(c);
            i += len;
            continue;
        }
        let c = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

// ---------------------------------------------------------------------------
// HTTP layer
// ---------------------------------------------------------------------------

fn ok_response(result: Value) -> Response {
    (StatusCode::OK, Json(json!({"ok": true, "result": result}))).into_response()
}

/// A `getUpdates` answer; raw entries are spliced in as their text.
fn updates_response(batch: &[Value]) -> Response {
    let items: Vec<String> = batch
        .iter()
        .map(|u| match u.get(RAW_KEY).and_then(Value::as_str) {
            Some(text) => text.to_string(),
            None => u.to_string(),
        })
        .collect();
    let body = format!("{{\"ok\":true,\"result\":[{}]}}", items.join(","));
    (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response()
}

fn error_response(code: i64, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(secs) = retry_after {
        body["parameters"] = json!({"retry_after": secs});
    }
    let status = u16::try_from(code)
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(body)).into_response()
}

/// `/{via…}/bot{token}/{method}` → (token, method, via). File downloads
/// (`/file/bot{token}/…`) and other paths give `None`.
fn parse_path(path: &str) -> Option<(String, String, String)> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let pos = segments.iter().position(|s| s.starts_with("bot"))?;
    if pos > 0 && segments[pos - 1] == "file" {
        return None;
    }
    let method = segments.get(pos + 1)?;
    Some((
        segments[pos][3..].to_string(),
        method.to_string(),
        segments[..pos].join("/"),
    ))
}

/// Free-text fields that must stay strings even if they look like JSON.
const TEXT_FIELDS: [&str; 12] = [
    "text",
    "caption",
    "parse_mode",
    "query",
    "description",
    "short_description",
    "title",
    "name",
    "emoji",
    "data",
    "callback_query_id",
    "url",
];

/// A form/multipart text field as a JSON value (see [`Call::body`]).
fn field_value(name: &str, value: String) -> Value {
    if TEXT_FIELDS.contains(&name) {
        return Value::String(value);
    }
    match serde_json::from_str::<Value>(&value) {
        Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Object(_) | Value::Array(_))) => v,
        _ => Value::String(value),
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_urlencoded(s: &str, into: &mut Map<String, Value>) {
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k);
        let v = percent_decode(v);
        into.insert(k.clone(), field_value(&k, v));
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from >= haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Minimal `multipart/form-data` parser (RFC 7578), enough for reqwest/teloxide.
fn parse_multipart(body: &[u8], boundary: &str, into: &mut Map<String, Value>) {
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let Some(mut pos) = find(body, delim, 0) else {
        return;
    };
    loop {
        let start = pos + delim.len();
        if body[start..].starts_with(b"--") {
            break; // closing delimiter
        }
        let Some(next) = find(body, delim, start) else {
            break;
        };
        let mut part = &body[start..next];
        part = part.strip_prefix(b"\r\n").unwrap_or(part);
        part = part.strip_suffix(b"\r\n").unwrap_or(part);
        if let Some(split) = find(part, b"\r\n\r\n", 0) {
            let headers = String::from_utf8_lossy(&part[..split]);
            let content = &part[split + 4..];
            let mut name = None;
            let mut file_name = None;
            let mut content_type = None;
            for line in headers.split("\r\n") {
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("content-disposition:") {
                    name = header_param(line, "name");
                    file_name = header_param(line, "filename");
                } else if let Some(ct) = lower.strip_prefix("content-type:") {
                    content_type = Some(ct.trim().to_string());
                }
            }
            if let Some(name) = name {
                let value = match file_name {
                    Some(file_name) => json!({
                        "file_name": file_name,
                        "content_type": content_type,
                        "size": content.len(),
                    }),
                    None => field_value(&name, String::from_utf8_lossy(content).into_owned()),
                };
                into.insert(name, value);
            }
        }
        pos = next;
    }
}

/// `name="value"` from a `Content-Disposition` header line.
fn header_param(line: &str, param: &str) -> Option<String> {
    line.split(';').skip(1).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k.trim().eq_ignore_ascii_case(param)).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn parse_params(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Map<String, Value> {
    let mut params = Map::new();
    if let Some(q) = uri.query() {
        parse_urlencoded(q, &mut params);
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let lower = content_type.to_ascii_lowercase();
    if lower.starts_with("multipart/form-data") {
        if let Some(boundary) = header_param(&content_type, "boundary") {
            parse_multipart(body, &boundary, &mut params);
        }
    } else if lower.starts_with("application/x-www-form-urlencoded") {
        parse_urlencoded(&String::from_utf8_lossy(body), &mut params);
    } else if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        params.extend(map);
    }
    params
}

async fn handle(
    AxumState(inner): AxumState<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // `GET /file/bot<token>/documents/<file id>`: a file's bytes (after getFile)
    if let Some(rest) = uri.path().strip_prefix("/file/bot") {
        let id = rest.rsplit('/').next().unwrap_or_default();
        let bytes = inner.lock().files.get(id).cloned();
        return match bytes {
            Some(b) => (axum::http::StatusCode::OK, b).into_response(),
            None => error_response(404, "Not Found", None),
        };
    }
    let Some((token, method, via)) = parse_path(uri.path()) else {
        return error_response(404, "Not Found", None);
    };
    let params = parse_params(&uri, &headers, &body);
    let failure = {
        let mut st = inner.lock();
        st.calls.push(Call {
            method: method.clone(),
            token,
            via,
            body: Value::Object(params.clone()),
            at: Instant::now(),
        });
        st.take_failure(&method, &params)
    };
    if let Some(f) = failure {
        return error_response(f.code, &f.description, f.retry_after);
    }
    if method.eq_ignore_ascii_case("getUpdates") {
        return get_updates(&inner, &params).await;
    }
    let result = inner.lock().dispatch(&method, &params);
    match result {
        Ok(v) => ok_response(v),
        Err(e) => error_response(e.code, &e.description, None),
    }
}

async fn get_updates(inner: &Inner, p: &Map<String, Value>) -> Response {
    let timeout = p.get("timeout").and_then(as_i64).unwrap_or(0).max(0) as u64;
    let deadline = Instant::now() + Duration::from_secs(timeout).min(MAX_LONG_POLL);
    let seq = {
        let mut st = inner.lock();
        st.poll_seq += 1;
        st.poll_seq
    };
    // an older long poll still open ends now with 409, like on Telegram
    inner.updates_changed.notify_waiters();
    loop {
        let notified = inner.updates_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let result = {
            let mut st = inner.lock();
            if st.poll_seq != seq {
                st.conflicts += 1;
                Err(ApiErr {
                    code: 409,
                    description: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running".into(),
                })
            } else {
                st.poll_updates(p)
            }
        };
        match result {
            Err(e) => return error_response(e.code, &e.description, None),
            Ok(batch) if !batch.is_empty() || Instant::now() >= deadline => {
                return updates_response(&batch);
            }
            Ok(_) => {}
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_parsing_matches_telegram_rules() {
        let (text, entities) =
            parse_telegram_html("<b>bold <i>both</i></b> &amp; <a href=\"https://x.org/?a=1&amp;b=2\">link</a> 😀<code>c</code>")
                .unwrap();
        assert_eq!(text, "bold both & link 😀c");
        assert_eq!(
            entities,
            vec![
                json!({"type": "bold", "offset": 0, "length": 9}),
                json!({"type": "italic", "offset": 5, "length": 4}),
                json!({"type": "text_link", "url": "https://x.org/?a=1&b=2", "offset": 12, "length": 4}),
                json!({"type": "code", "offset": 19, "length": 1}),
            ]
        );
        let (text, entities) =
            parse_telegram_html("<pre><code class=\"language-rust\">fn x</code></pre>").unwrap();
        assert_eq!(text, "fn x");
        assert_eq!(
            entities,
            vec![json!({"type": "pre", "language": "rust", "offset": 0, "length": 4})]
        );
        assert!(parse_telegram_html("a & b &unknown; <b>x</b>").is_ok());
        let err = |h: &str| parse_telegram_html(h).unwrap_err();
        assert_eq!(
            err("<b>x"),
            "Can't find end tag corresponding to start tag \"b\""
        );
        assert_eq!(
            err("<p>x</p>"),
            "Unsupported start tag \"p\" at byte offset 0"
        );
        assert_eq!(err("a < b"), "Unsupported start tag \"\" at byte offset 2");
        assert_eq!(err("x</b>"), "Unexpected end tag at byte offset 1");
        assert_eq!(
            err("<b><i>x</b></i>"),
            "Unmatched end tag at byte offset 7, expected \"</i>\", found \"</b>\""
        );
        assert!(err("<span>x</span>").contains("tg-spoiler"));
    }

    #[test]
    fn trims_and_shifts_entities() {
        let (text, entities) = trim_text(
            "  <x>  ",
            vec![json!({"type": "bold", "offset": 1, "length": 4})],
        );
        assert_eq!(text, "<x>");
        assert_eq!(
            entities,
            vec![json!({"type": "bold", "offset": 0, "length": 3})]
        );
    }

    #[test]
    fn command_and_mention_entities_use_utf16_offsets() {
        let e = detect_entities("😀 /start@hearth_bot hi @alice, mail a@b.c /x");
        assert_eq!(
            e,
            vec![
                json!({"type": "bot_command", "offset": 3, "length": 17}),
                json!({"type": "mention", "offset": 24, "length": 6}),
                json!({"type": "bot_command", "offset": 43, "length": 2}),
            ]
        );
    }

    #[test]
    fn multipart_and_form_parsing() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n-100\r\n--XX\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\n42\r\n--XX\r\nContent-Disposition: form-data; name=\"f1\"; filename=\"cat.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--XX--\r\n";
        let mut m = Map::new();
        parse_multipart(body, "XX", &mut m);
        assert_eq!(m["chat_id"], json!(-100));
        assert_eq!(m["caption"], json!("42"));
        assert_eq!(
            m["f1"],
            json!({"file_name": "cat.png", "content_type": "image/png", "size": 4})
        );
        let mut m = Map::new();
        parse_urlencoded("chat_id=5&text=a+b%26c%", &mut m);
        assert_eq!(m["chat_id"], json!(5));
        assert_eq!(m["text"], json!("a b&c%"));
        assert_eq!(
            parse_path("/bot1:A/sendMessage"),
            Some(("1:A".into(), "sendMessage".into(), String::new()))
        );
        assert_eq!(
            parse_path("/b/bot1:A/getUpdates"),
            Some(("1:A".into(), "getUpdates".into(), "b".into()))
        );
        assert_eq!(parse_path("/file/bot1:A/photos/x.jpg"), None);
    }
}
