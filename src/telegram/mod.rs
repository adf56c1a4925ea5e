//! Telegram adapter: the only module that imports teloxide.
//!
//! Owns: the Bot API client ([`client`]: JSON over reqwest, API URL from config, Telegram's limits
//! from config in front of every send ([`limits`]), bounded retries on 429 / 5xx / connection
//! errors behind it), receiving updates (long polling by one process of all sharing the database,
//! the holder of the [`POLLER_LEASE`], with the offset stored per bot id, each
//! update decoded on its own so one unreadable update never stops polling; or a webhook checked
//! against the secret token), and [`TelegramMessenger`] (HTML parse mode, split at 4096
//! characters, plain-text fallback when Telegram rejects the markup, typing, buttons, edits,
//! callback answers). `setMyCommands` runs only when the command list changed (OpenClaw hit 429
//! by setting it at every restart); each chat's own menu (its routines, chat scope) is
//! [`TelegramMessenger`]'s `set_chat_commands`, kept in step by `routines::menu`. teloxide
//! provides the update types ([`convert`]).
//!
//! Logs here never hold conversation text: an update that cannot be decoded is logged by its id
//! and the decode error's category and position only, and Bot API errors carry codes, not bodies.

pub mod client;
pub mod convert;
pub mod limits;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};
use subtle::ConstantTimeEq;
use teloxide::types::{Update, UpdateKind};
use tokio_util::sync::CancellationToken;

use client::{decode_reason, Body, Kind};
pub use client::{TgBot, TgError};

use crate::{
    config::{Config, TelegramConfig},
    core::Hearth,
    format::{html_to_plain, split_html, MAX_MESSAGE_LEN},
    messenger::{Messenger, SendError, Sent},
    services::BotIdentity,
    store::Store,
    types::{Button, Outbound},
};

/// A client for `token` against `api_url` with the default limits and retry budget of
/// `config/default.toml` (tests and `hearth check`; the daemon uses [`bot_with`]).
///
/// Errors: an unparseable `api_url`.
pub fn bot(token: &SecretString, api_url: &str) -> anyhow::Result<TgBot> {
    use figment::providers::Format as _;
    let mut cfg: TelegramConfig = figment::Figment::from(figment::providers::Toml::string(
        crate::config::DEFAULT_TOML,
    ))
    .extract_inner("telegram")
    .map_err(|e| anyhow::anyhow!("built-in [telegram] defaults: {e}"))?;
    cfg.api_url = api_url.to_string();
    TgBot::new(token, &cfg)
}

/// A client for `token` with the `[telegram]` section's API URL, limits and retry budget.
///
/// Errors: an unparseable `telegram.api_url`.
pub fn bot_with(token: &SecretString, cfg: &TelegramConfig) -> anyhow::Result<TgBot> {
    TgBot::new(token, cfg)
}

#[derive(Deserialize)]
struct Me {
    id: i64,
    first_name: String,
    username: Option<String>,
}

/// getMe → the bot's identity.
pub async fn identity(bot: &TgBot) -> Result<BotIdentity, TgError> {
    let me: Me = bot.call(Kind::Call, "getMe", json!({})).await?;
    Ok(BotIdentity {
        id: me.id,
        username: me.username.unwrap_or_default(),
        name: me.first_name,
    })
}

/// getMe until it works: a refused token is an error; network trouble is retried every 5 s
/// until `stop` (then `Ok(None)`).
pub async fn connect(bot: &TgBot, stop: &CancellationToken) -> anyhow::Result<Option<BotIdentity>> {
    loop {
        match identity(bot).await {
            Ok(me) => return Ok(Some(me)),
            Err(e) if matches!(e.code(), Some(401 | 404)) => {
                anyhow::bail!("Telegram refused the bot token (getMe: unauthorized). Check TELEGRAM_BOT_TOKEN.");
            }
            Err(e) => {
                tracing::warn!(error = %e, "getMe failed; retrying in 5 s");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    }
}

/// Publish the command menu (`menu`: [`Hearth::menu`], from the registered command sets) when
/// it differs from what this bot last published.
pub async fn sync_commands(
    bot: &TgBot,
    store: &Store,
    me: &BotIdentity,
    menu: &[crate::router::MenuEntry],
) -> anyhow::Result<bool> {
    let hash = crate::router::menu_hash(menu);
    let key = format!("telegram.commands.{}", me.id);
    if store.kv_get(&key).await?.as_deref() == Some(hash.as_str()) {
        return Ok(false);
    }
    let cmds: Vec<Value> = menu
        .iter()
        .map(|(c, d)| json!({"command": c, "description": d}))
        .collect();
    bot.call::<Value>(Kind::Call, "setMyCommands", json!({ "commands": cmds }))
        .await?;
    store.kv_set(&key, &hash).await?;
    Ok(true)
}

fn allowed_updates() -> Value {
    json!(["message", "callback_query", "chat_member"])
}

/// Just the id of an update (the rest is skipped without depth limit, so it works on updates
/// too deeply nested to decode).
#[derive(Deserialize)]
struct UpdateIdOnly {
    update_id: Option<i64>,
}

/// Decode one raw update. `Err` carries its id (when readable) for the log line; the update's
/// content is never logged.
fn decode_update(raw: &str) -> Result<Update, (Option<i64>, String)> {
    match serde_json::from_str::<Update>(raw) {
        Ok(u) if !matches!(u.kind, UpdateKind::Error(_)) => Ok(u),
        Ok(u) => Err((
            Some(i64::from(u.id.0)),
            "unknown update kind or malformed content".into(),
        )),
        Err(e) => {
            let id = serde_json::from_str::<UpdateIdOnly>(raw)
                .ok()
                .and_then(|u| u.update_id);
            Err((id, decode_reason(&e)))
        }
    }
}

/// The named lease (`leases` table, [`Store::acquire_lease`]) that makes one process the long-poller
/// when several replicas share a database: Telegram answers a second concurrent getUpdates with
/// 409 and terminates the first, so two pollers of one bot fight forever (DESIGN.md, lessons: "Two
/// replicas long-polling one bot get Telegram's 409 in a loop").
pub const POLLER_LEASE: &str = "poller";

/// The poller role of one process: the [`POLLER_LEASE`] held by `owner` (the process id) for
/// `lease` (`cluster.lease`) at a time, renewed every `renew` (`runtime.heartbeat`, at most a
/// third of the lease) while it polls.
struct PollerRole {
    store: Store,
    clock: crate::clock::SharedClock,
    owner: String,
    lease: Duration,
    renew: Duration,
    /// End of the lease as last written by this process (`None`: not held).
    held_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a leader's renewal found.
enum Renewal {
    /// Still ours (renewed, or the database failed but the lease has not run out yet).
    Held,
    /// Another process holds it, or it ran out while the database could not be reached.
    Lost,
}

impl PollerRole {
    fn new(hearth: &Hearth) -> PollerRole {
        let cfg = &hearth.svc.config;
        let lease = cfg.cluster.lease;
        PollerRole {
            store: hearth.svc.store.clone(),
            clock: hearth.svc.clock.clone(),
            owner: hearth.owner().to_string(),
            lease,
            renew: cfg
                .runtime
                .heartbeat
                .min(lease / 3)
                .max(Duration::from_millis(50)),
            held_until: None,
        }
    }

    /// How often a process that does not poll checks whether the lease lapsed: a third of
    /// `cluster.lease`, so a dead poller is replaced within 4/3 × `cluster.lease`.
    fn check_every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(50))
    }

    /// Take or renew the lease (free, lapsed or ours). Storage errors count as "not taken" for
    /// a follower; for a leader see [`PollerRole::renew`].
    async fn acquire(&mut self) -> Result<bool, crate::store::StoreError> {
        let now = self.clock.now();
        let until =
            now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(15));
        let ok = self
            .store
            .acquire_lease(POLLER_LEASE, &self.owner, now, until)
            .await?;
        self.held_until = ok.then_some(until);
        Ok(ok)
    }

    /// A leader's renewal: lost at once when another process holds the lease; when the database
    /// cannot be reached, held only until the lease last written runs out.
    async fn renew(&mut self) -> Renewal {
        match self.acquire().await {
            Ok(true) => Renewal::Held,
            Ok(false) => Renewal::Lost,
            Err(e) => {
                let left = self.held_until.is_some_and(|u| u > self.clock.now());
                tracing::warn!(error = %e, "could not renew the poller lease");
                if left {
                    Renewal::Held
                } else {
                    self.held_until = None;
                    Renewal::Lost
                }
            }
        }
    }

    /// Give the lease up (graceful stop), so another replica polls at its next check.
    async fn release(&mut self) {
        if self.held_until.take().is_some() {
            if let Err(e) = self.store.release_lease(POLLER_LEASE, &self.owner).await {
                tracing::warn!(error = %e, "could not release the poller lease; it lapses on its own");
            }
        }
    }
}

/// Sleep `d` unless `stop` comes first (then false).
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Telegram's 409 for two concurrent getUpdates ("terminated by other getUpdates request").
fn poll_conflict(e: &TgError) -> bool {
    e.code() == Some(409) && !e.description_lower().contains("webhook")
}

/// Long polling until `stop` is cancelled, by one process of all those sharing the database: the
/// holder of [`POLLER_LEASE`]. A process that does not hold it never calls getUpdates; it checks
/// every third of `cluster.lease` and the first to find the lease lapsed (its holder died) takes it
/// and polls from the stored offset, so a dead poller is replaced within 4/3 × `cluster.lease`. The
/// leader renews the lease every `runtime.heartbeat` (at most a third of the lease), also while a
/// long poll is open, and stops polling at once when the renewal finds another holder; on a
/// graceful stop it releases the lease. A 409 Conflict (another getUpdates, e.g. a process of an
/// older deploy without the lease) backs off 1 s, 2 s, 4 s … up to `cluster.lease` and re-checks
/// the lease before polling again, logged once per episode (DESIGN.md, lessons: "Two replicas
/// long-polling one bot get Telegram's 409 in a loop").
///
/// Each update is decoded on its own, handed to the core and made durable before its offset is
/// confirmed, so a crash never loses a request and one unreadable update never stops the others
/// (it is skipped, logged by id). The offset is the highest update id seen plus one (an update
/// without an id cannot hold it back), stored per bot id: a new token starts clean instead of
/// skipping updates, and a new leader starts where the last one stopped (an update delivered twice
/// across a hand-over is dropped by the inbound unique key).
pub async fn run_polling(
    bot: TgBot,
    hearth: Arc<Hearth>,
    me: BotIdentity,
    timeout: Duration,
    stop: CancellationToken,
) {
    let mut role = PollerRole::new(&hearth);
    let mut announced = false;
    while !stop.is_cancelled() {
        match role.acquire().await {
            Ok(true) => {
                tracing::info!(bot = %me.username, "took the poller lease; polling for updates");
                lead(&bot, &hearth, &me, timeout, &stop, &mut role).await;
                announced = false;
            }
            Ok(false) => {
                if !announced {
                    tracing::info!(
                        "another process polls Telegram; waiting for its poller lease to lapse"
                    );
                    announced = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not check the poller lease"),
        }
        if !pause(&stop, role.check_every()).await {
            break;
        }
    }
    role.release().await;
}

/// Poll while this process holds the poller lease; returns when it is lost or on `stop` (the
/// caller releases it).
async fn lead(
    bot: &TgBot,
    hearth: &Arc<Hearth>,
    me: &BotIdentity,
    timeout: Duration,
    stop: &CancellationToken,
    role: &mut PollerRole,
) {
    let store = hearth.svc.store.clone();
    let key = format!("telegram.offset.{}", me.id);
    // read at every take-over: the previous leader advanced it
    let mut offset: i64 = match store.kv_get(&key).await {
        Ok(Some(v)) => v.parse().unwrap_or(0),
        _ => 0,
    };
    if let Err(e) = bot
        .call::<Value>(Kind::Call, "deleteWebhook", json!({}))
        .await
    {
        tracing::warn!(error = %e, "deleteWebhook failed");
    }
    let mut backoff = Duration::from_secs(1);
    let mut conflict_since: Option<u32> = None;
    let mut renew = tokio::time::interval(role.renew);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renew.tick().await; // the first tick is immediate; the lease was just taken
    loop {
        let body = json!({
            "offset": offset,
            "timeout": timeout.as_secs(),
            "allowed_updates": allowed_updates(),
        });
        let poll = bot.get_updates(body, timeout);
        tokio::pin!(poll);
        let result = loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = renew.tick() => {
                    if let Renewal::Lost = role.renew().await {
                        tracing::warn!("poller lease lost to another process; stopped polling");
                        return;
                    }
                }
                r = &mut poll => break r,
            }
        };
        let wait = match result {
            Ok(raws) => {
                backoff = Duration::from_secs(1);
                if let Some(n) = conflict_since.take() {
                    tracing::info!(conflicts = n, "getUpdates works again");
                }
                if handle_batch(hearth, &store, &key, me, &raws, &mut offset).await {
                    None
                } else {
                    // storage is failing: do not confirm; retry from this update after a pause
                    Some(Duration::from_secs(2))
                }
            }
            Err(TgError::RetryAfter { seconds, .. }) => Some(Duration::from_secs(seconds.min(60))),
            Err(e) if poll_conflict(&e) => {
                let n = conflict_since.get_or_insert(0);
                *n += 1;
                if *n == 1 {
                    tracing::warn!(error = %e, "getUpdates conflicts with another poller of this bot; backing off and re-checking the poller lease");
                }
                let w = backoff;
                backoff = (backoff * 2).min(role.lease.max(Duration::from_secs(1)));
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, wait = ?backoff, "getUpdates failed");
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                Some(w)
            }
        };
        if let Some(w) = wait {
            // keep the lease while waiting, then re-check it before polling again
            let end = tokio::time::Instant::now() + w;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(end) => break,
                    _ = renew.tick() => {
                        if let Renewal::Lost = role.renew().await {
                            tracing::warn!("poller lease lost to another process; stopped polling");
                            return;
                        }
                    }
                }
            }
            if let Renewal::Lost = role.renew().await {
                tracing::warn!("poller lease lost to another process; stopped polling");
                return;
            }
            renew.reset();
        }
    }
}

/// Deliver one getUpdates batch in order, advancing `offset` (and its stored copy) past every
/// update handled or skipped. False when the core could not persist an update (the offset then
/// stays on it).
async fn handle_batch(
    hearth: &Arc<Hearth>,
    store: &Store,
    key: &str,
    me: &BotIdentity,
    raws: &[Box<RawValue>],
    offset: &mut i64,
) -> bool {
    for raw in raws {
        let id = match decode_update(raw.get()) {
            Ok(u) => {
                if !deliver(hearth, &u, me).await {
                    return false;
                }
                Some(i64::from(u.id.0))
            }
            Err((id, reason)) => {
                tracing::warn!(update_id = ?id, error = %reason, "skipped an update that could not be decoded");
                id
            }
        };
        if let Some(next) = id.map(|i| i.saturating_add(1)).filter(|n| *n > *offset) {
            *offset = next;
            if let Err(e) = store.kv_set(key, &offset.to_string()).await {
                tracing::warn!(error = %e, "could not store the update offset");
            }
        }
    }
    true
}

/// Hand one update's events to the core. False when the core could not persist them.
async fn deliver(hearth: &Arc<Hearth>, u: &Update, me: &BotIdentity) -> bool {
    for ev in convert::events(u, me) {
        if let Err(e) = hearth.accept(ev).await {
            tracing::error!(error = %e, update_id = u.id.0, "could not persist an update");
            return false;
        }
    }
    true
}

/// Register the webhook with Telegram (webhook mode).
pub async fn set_webhook(bot: &TgBot, cfg: &Config) -> anyhow::Result<()> {
    let url = url::Url::parse(&cfg.telegram.webhook_url)
        .map_err(|e| anyhow::anyhow!("telegram.webhook_url: {e}"))?;
    let secret = cfg
        .telegram
        .webhook_secret
        .as_ref()
        .map(|s| s.expose_secret().to_string())
        .unwrap_or_default();
    bot.call::<Value>(
        Kind::Call,
        "setWebhook",
        json!({"url": url.as_str(), "secret_token": secret, "allowed_updates": allowed_updates()}),
    )
    .await?;
    Ok(())
}

#[derive(Clone)]
struct WebhookState {
    hearth: Arc<Hearth>,
    me: BotIdentity,
    secret: Arc<SecretString>,
}

/// Path Telegram posts updates to.
pub const WEBHOOK_PATH: &str = "/telegram/webhook";

/// The webhook route: checks `X-Telegram-Bot-Api-Secret-Token` in constant time (401 otherwise),
/// persists the update's events and answers 200; 500 makes Telegram redeliver.
pub fn webhook_router(hearth: Arc<Hearth>, me: BotIdentity, secret: SecretString) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(webhook))
        .with_state(WebhookState {
            hearth,
            me,
            secret: Arc::new(secret),
        })
}

async fn webhook(State(st): State<WebhookState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let expected = st.secret.expose_secret().as_bytes();
    if expected.is_empty() || !bool::from(given.ct_eq(expected)) {
        return StatusCode::UNAUTHORIZED;
    }
    let update = match std::str::from_utf8(&body)
        .map_err(|_| (None, "not UTF-8".to_string()))
        .and_then(decode_update)
    {
        Ok(u) => u,
        Err((id, reason)) => {
            tracing::warn!(update_id = ?id, error = %reason, "skipped a webhook update that could not be decoded");
            return StatusCode::OK; // redelivery would not help
        }
    };
    if deliver(&st.hearth, &update, &st.me).await {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// [`Messenger`] over the Bot API.
#[derive(Clone)]
pub struct TelegramMessenger {
    bot: TgBot,
}

impl TelegramMessenger {
    /// Wrap a client.
    pub fn new(bot: TgBot) -> Self {
        Self { bot }
    }
}

/// `{"inline_keyboard": [[{"text", "callback_data"}]]}`.
fn keyboard(buttons: &[Vec<Button>]) -> Value {
    let rows: Vec<Vec<Value>> = buttons
        .iter()
        .map(|row| {
            row.iter()
                .map(|b| json!({"text": b.label, "callback_data": b.data}))
                .collect()
        })
        .collect();
    json!({ "inline_keyboard": rows })
}

fn markup_rejected(e: &TgError) -> bool {
    let d = e.description_lower();
    e.code() == Some(400)
        && (d.contains("parse entities")
            || d.contains("unsupported start tag")
            || d.contains("can't find end"))
}

fn not_modified(e: &TgError) -> bool {
    e.description_lower().contains("message is not modified")
}

fn send_err(e: TgError) -> SendError {
    SendError(e.to_string())
}

#[derive(Deserialize)]
struct SentMessage {
    message_id: i64,
}

impl TelegramMessenger {
    async fn send_message(&self, chat_id: i64, body: Value) -> Result<i64, TgError> {
        let m: SentMessage = self
            .bot
            .call(Kind::Send(chat_id), "sendMessage", body)
            .await?;
        Ok(m.message_id)
    }

    async fn send_part(
        &self,
        chat_id: i64,
        html: &str,
        kb: Option<&Value>,
        reply_to: Option<i64>,
    ) -> Result<Vec<Sent>, SendError> {
        let build = |text: &str, html_mode: bool| {
            let mut b = json!({"chat_id": chat_id, "text": text});
            if html_mode {
                b["parse_mode"] = json!("HTML");
            }
            if let Some(kb) = kb {
                b["reply_markup"] = kb.clone();
            }
            if let Some(id) = reply_to {
                b["reply_parameters"] =
                    json!({"message_id": id, "allow_sending_without_reply": true});
            }
            b
        };
        match self.send_message(chat_id, build(html, true)).await {
            Ok(id) => Ok(vec![Sent {
                message_id: id,
                text: html_to_plain(html),
            }]),
            Err(e) if markup_rejected(&e) => {
                tracing::warn!(
                    code = e.code(),
                    "Telegram rejected the markup; resending as plain text"
                );
                let plain = html_to_plain(html);
                let mut sent = Vec::new();
                for part in split_plain(&plain) {
                    let id = self
                        .send_message(chat_id, build(&part, false))
                        .await
                        .map_err(send_err)?;
                    sent.push(Sent {
                        message_id: id,
                        text: part,
                    });
                }
                Ok(sent)
            }
            Err(e) => Err(send_err(e)),
        }
    }
}

/// Split plain text on Telegram's limit (the HTML splitter handles escaping for us).
fn split_plain(plain: &str) -> Vec<String> {
    split_html(&crate::format::escape_html(plain), MAX_MESSAGE_LEN)
        .into_iter()
        .map(|p| html_to_plain(&p))
        .collect()
}

#[async_trait]
impl Messenger for TelegramMessenger {
    async fn download(&self, file_id: &str, max: usize) -> Result<Vec<u8>, SendError> {
        self.bot
            .download(file_id, max)
            .await
            .map_err(|e| SendError(e.to_string()))
    }

    async fn send(&self, msg: &Outbound) -> Result<Vec<Sent>, SendError> {
        let parts = split_html(&msg.html, MAX_MESSAGE_LEN);
        let kb = (!msg.buttons.is_empty()).then(|| keyboard(&msg.buttons));
        let mut sent = Vec::new();
        let n = parts.len();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == n;
            let reply_to = if i == 0 { msg.reply_to } else { None };
            let part_kb = if last { kb.as_ref() } else { None };
            sent.extend(self.send_part(msg.chat_id, part, part_kb, reply_to).await?);
        }
        Ok(sent)
    }

    async fn edit(
        &self,
        chat_id: i64,
        message_id: i64,
        html: &str,
        buttons: &[Vec<Button>],
    ) -> Result<(), SendError> {
        let kb = keyboard(buttons);
        let html = split_html(html, MAX_MESSAGE_LEN)
            .into_iter()
            .next()
            .unwrap_or_default();
        let edit = |text: &str, html_mode: bool| {
            let mut b = json!({"chat_id": chat_id, "message_id": message_id, "text": text, "reply_markup": kb});
            if html_mode {
                b["parse_mode"] = json!("HTML");
            }
            self.bot
                .call::<Value>(Kind::Send(chat_id), "editMessageText", b)
        };
        match edit(&html, true).await {
            Ok(_) => Ok(()),
            Err(e) if not_modified(&e) => Ok(()),
            Err(e) if markup_rejected(&e) => match edit(&html_to_plain(&html), false).await {
                Ok(_) => Ok(()),
                Err(e) if not_modified(&e) => Ok(()),
                Err(e) => Err(send_err(e)),
            },
            Err(e) => Err(send_err(e)),
        }
    }

    async fn answer_callback(
        &self,
        callback_id: &str,
        text: Option<&str>,
        alert: bool,
    ) -> Result<(), SendError> {
        let mut b = json!({"callback_query_id": callback_id, "show_alert": alert});
        if let Some(t) = text {
            b["text"] = json!(t.chars().take(200).collect::<String>());
        }
        self.bot
            .call::<Value>(Kind::Call, "answerCallbackQuery", b)
            .await
            .map(|_| ())
            .map_err(send_err)
    }

    /// `setMyCommands` (or `deleteMyCommands` for an empty list) with a chat scope; Telegram's
    /// 429 and 5xx are retried within the client's budget (`Kind::Call`).
    async fn set_chat_commands(
        &self,
        chat_id: i64,
        commands: &[(String, String)],
    ) -> Result<bool, SendError> {
        let scope = json!({"type": "chat", "chat_id": chat_id});
        let (method, body) = if commands.is_empty() {
            ("deleteMyCommands", json!({ "scope": scope }))
        } else {
            let cmds: Vec<Value> = commands
                .iter()
                .map(|(c, d)| json!({"command": c, "description": d}))
                .collect();
            ("setMyCommands", json!({ "commands": cmds, "scope": scope }))
        };
        self.bot
            .call::<Value>(Kind::Call, method, body)
            .await
            .map(|_| true)
            .map_err(send_err)
    }

    async fn typing(&self, chat_id: i64) -> Result<(), SendError> {
        if self.bot.chat_blocked(chat_id) {
            return Ok(()); // cosmetic; nothing goes to a chat Telegram asked us to leave alone
        }
        self.bot
            .call::<Value>(
                Kind::Once,
                "sendChatAction",
                json!({"chat_id": chat_id, "action": "typing"}),
            )
            .await
            .map(|_| ())
            .map_err(send_err)
    }

    async fn send_photo(
        &self,
        chat_id: i64,
        png: Vec<u8>,
        caption_html: &str,
    ) -> Result<Sent, SendError> {
        let body = Body::Photo {
            fields: vec![
                ("chat_id", chat_id.to_string()),
                ("caption", caption_html.to_string()),
                ("parse_mode", "HTML".to_string()),
            ],
            file_field: "photo",
            png: Arc::new(png),
        };
        let m: SentMessage = self
            .bot
            .execute(
                Kind::Send(chat_id),
                "sendPhoto",
                body,
                Duration::from_secs(60),
            )
            .await
            .map_err(send_err)?;
        Ok(Sent {
            message_id: m.message_id,
            text: html_to_plain(caption_html),
        })
    }
}
