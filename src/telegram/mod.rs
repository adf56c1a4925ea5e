//! Telegram adapter: the only module that imports teloxide.
//!
//! Owns: the Bot API client (API URL from config, `Throttle` for Telegram's rate limits, our own
//! retry on 429 honouring `retry_after`), receiving updates (long polling with the offset stored
//! per bot id, or a webhook checked against the secret token), and [`TelegramMessenger`]
//! (HTML parse mode, split at 4096 characters, plain-text fallback when Telegram rejects the
//! markup, typing, buttons, edits, callback answers). `setMyCommands` runs only when the command
//! list changed (OpenClaw hit 429 by setting it at every restart).

pub mod convert;

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
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use teloxide::{
    adaptors::{throttle::Limits, Throttle},
    payloads::{
        AnswerCallbackQuerySetters, EditMessageTextSetters, GetUpdatesSetters, SendMessageSetters,
        SendPhotoSetters, SetWebhookSetters,
    },
    requests::{Request, Requester, RequesterExt},
    types::{
        AllowedUpdate, BotCommand, CallbackQueryId, ChatAction, ChatId, InlineKeyboardButton,
        InlineKeyboardMarkup, InputFile, MessageId, ParseMode, ReplyParameters, Update,
    },
    ApiError, Bot, RequestError,
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    core::Hearth,
    format::{html_to_plain, split_html, MAX_MESSAGE_LEN},
    messenger::{Messenger, SendError, Sent},
    services::BotIdentity,
    store::Store,
    types::{Button, Outbound},
};

/// The Bot API client hearth uses.
pub type TgBot = Throttle<Bot>;

/// Attempts of one Bot API call when Telegram answers 429.
const MAX_RETRY_AFTER_ATTEMPTS: u32 = 3;
/// Longest `retry_after` we wait inside one call; longer waits fail the call.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Build the client for `token` against `api_url`.
///
/// Errors: an unparseable `telegram.api_url`.
pub fn bot(token: &SecretString, api_url: &str) -> anyhow::Result<TgBot> {
    let url = url::Url::parse(api_url)
        .map_err(|e| anyhow::anyhow!("telegram.api_url: {e} ({api_url:?})"))?;
    Ok(Bot::new(token.expose_secret())
        .set_api_url(url)
        .throttle(Limits::default()))
}

/// getMe → the bot's identity.
pub async fn identity(bot: &TgBot) -> Result<BotIdentity, RequestError> {
    let me = with_retry(|| bot.get_me().send()).await?;
    Ok(BotIdentity {
        id: me.user.id.0 as i64,
        username: me.user.username.clone().unwrap_or_default(),
        name: me.user.first_name.clone(),
    })
}

/// getMe until it works: a refused token is an error; network trouble is retried every 5 s
/// until `stop` (then `Ok(None)`).
pub async fn connect(bot: &TgBot, stop: &CancellationToken) -> anyhow::Result<Option<BotIdentity>> {
    loop {
        match identity(bot).await {
            Ok(me) => return Ok(Some(me)),
            Err(RequestError::Api(ApiError::InvalidToken)) => {
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
    let mut h = Sha256::new();
    for (c, d) in menu {
        h.update(c.as_bytes());
        h.update([0]);
        h.update(d.as_bytes());
        h.update([0]);
    }
    let hash = hex::encode(h.finalize());
    let key = format!("telegram.commands.{}", me.id);
    if store.kv_get(&key).await?.as_deref() == Some(hash.as_str()) {
        return Ok(false);
    }
    let cmds: Vec<BotCommand> = menu.iter().map(|(c, d)| BotCommand::new(*c, *d)).collect();
    with_retry(|| bot.set_my_commands(cmds.clone()).send()).await?;
    store.kv_set(&key, &hash).await?;
    Ok(true)
}

fn allowed_updates() -> Vec<AllowedUpdate> {
    vec![
        AllowedUpdate::Message,
        AllowedUpdate::CallbackQuery,
        AllowedUpdate::ChatMember,
    ]
}

/// Run `f`, waiting out 429s (`retry_after`, at most [`MAX_RETRY_AFTER`] each).
async fn with_retry<T, F, Fut>(mut f: F) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RequestError>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Err(RequestError::RetryAfter(s)) if attempt + 1 < MAX_RETRY_AFTER_ATTEMPTS => {
                let wait = s.duration();
                if wait > MAX_RETRY_AFTER {
                    return Err(RequestError::RetryAfter(s));
                }
                tracing::warn!(seconds = wait.as_secs(), "Telegram asked us to slow down");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Long polling until `stop` is cancelled. Each update is handed to the core and made durable
/// before its offset is confirmed, so a crash never loses a request. The offset is stored per bot
/// id: a new token starts clean instead of skipping updates.
pub async fn run_polling(
    bot: TgBot,
    hearth: Arc<Hearth>,
    me: BotIdentity,
    timeout: Duration,
    stop: CancellationToken,
) {
    let store = hearth.svc.store.clone();
    let key = format!("telegram.offset.{}", me.id);
    let mut offset: i32 = match store.kv_get(&key).await {
        Ok(Some(v)) => v.parse().unwrap_or(0),
        _ => 0,
    };
    if let Err(e) = with_retry(|| bot.delete_webhook().send()).await {
        tracing::warn!(error = %e, "deleteWebhook failed");
    }
    let mut backoff = Duration::from_secs(1);
    tracing::info!(bot = %me.username, "polling for updates");
    loop {
        let req = bot
            .get_updates()
            .offset(offset)
            .timeout(timeout.as_secs() as u32)
            .allowed_updates(allowed_updates());
        let result = tokio::select! {
            _ = stop.cancelled() => break,
            r = req.send() => r,
        };
        match result {
            Ok(updates) => {
                backoff = Duration::from_secs(1);
                for u in updates {
                    let next = (u.id.0 as i32).saturating_add(1);
                    if !deliver(&hearth, &u, &me).await {
                        // storage is failing: do not confirm; retry this update after a pause
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        break;
                    }
                    offset = next;
                    if let Err(e) = store.kv_set(&key, &offset.to_string()).await {
                        tracing::warn!(error = %e, "could not store the update offset");
                    }
                }
            }
            Err(RequestError::RetryAfter(s)) => {
                tokio::time::sleep(s.duration().min(MAX_RETRY_AFTER)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, wait = ?backoff, "getUpdates failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
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
    with_retry(|| {
        bot.set_webhook(url.clone())
            .secret_token(secret.clone())
            .allowed_updates(allowed_updates())
            .send()
    })
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
    let update: Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable webhook update");
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

fn keyboard(buttons: &[Vec<Button>]) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(buttons.iter().map(|row| {
        row.iter()
            .map(|b| InlineKeyboardButton::callback(b.label.clone(), b.data.clone()))
            .collect::<Vec<_>>()
    }))
}

fn markup_rejected(e: &RequestError) -> bool {
    match e {
        RequestError::Api(ApiError::CantParseEntities(_)) => true,
        RequestError::Api(ApiError::Unknown(s)) => {
            let s = s.to_ascii_lowercase();
            s.contains("parse entities")
                || s.contains("unsupported start tag")
                || s.contains("can't find end")
        }
        _ => false,
    }
}

fn not_modified(e: &RequestError) -> bool {
    matches!(e, RequestError::Api(ApiError::MessageNotModified))
}

fn send_err(e: RequestError) -> SendError {
    SendError(e.to_string())
}

impl TelegramMessenger {
    async fn send_part(
        &self,
        chat: ChatId,
        html: &str,
        kb: Option<&InlineKeyboardMarkup>,
        reply_to: Option<i64>,
    ) -> Result<Vec<Sent>, SendError> {
        let build = |text: String, html_mode: bool| {
            let mut r = self.bot.send_message(chat, text);
            if html_mode {
                r = r.parse_mode(ParseMode::Html);
            }
            if let Some(kb) = kb {
                r = r.reply_markup(kb.clone());
            }
            if let Some(id) = reply_to {
                r = r.reply_parameters(
                    ReplyParameters::new(MessageId(id as i32)).allow_sending_without_reply(),
                );
            }
            r
        };
        match with_retry(|| build(html.to_string(), true).send()).await {
            Ok(m) => Ok(vec![Sent {
                message_id: i64::from(m.id.0),
                text: html_to_plain(html),
            }]),
            Err(e) if markup_rejected(&e) => {
                tracing::warn!(error = %e, "Telegram rejected the markup; resending as plain text");
                let plain = html_to_plain(html);
                let mut sent = Vec::new();
                for part in split_plain(&plain) {
                    let m = with_retry(|| build(part.clone(), false).send())
                        .await
                        .map_err(send_err)?;
                    sent.push(Sent {
                        message_id: i64::from(m.id.0),
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
    async fn send(&self, msg: &Outbound) -> Result<Vec<Sent>, SendError> {
        let chat = ChatId(msg.chat_id);
        let parts = split_html(&msg.html, MAX_MESSAGE_LEN);
        let kb = (!msg.buttons.is_empty()).then(|| keyboard(&msg.buttons));
        let mut sent = Vec::new();
        let n = parts.len();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == n;
            let reply_to = if i == 0 { msg.reply_to } else { None };
            let part_kb = if last { kb.as_ref() } else { None };
            sent.extend(self.send_part(chat, part, part_kb, reply_to).await?);
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
        let chat = ChatId(chat_id);
        let id = MessageId(message_id as i32);
        let kb = keyboard(buttons);
        let html = split_html(html, MAX_MESSAGE_LEN)
            .into_iter()
            .next()
            .unwrap_or_default();
        let r = with_retry(|| {
            self.bot
                .edit_message_text(chat, id, html.clone())
                .parse_mode(ParseMode::Html)
                .reply_markup(kb.clone())
                .send()
        })
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if not_modified(&e) => Ok(()),
            Err(e) if markup_rejected(&e) => {
                let plain = html_to_plain(&html);
                match with_retry(|| {
                    self.bot
                        .edit_message_text(chat, id, plain.clone())
                        .reply_markup(kb.clone())
                        .send()
                })
                .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if not_modified(&e) => Ok(()),
                    Err(e) => Err(send_err(e)),
                }
            }
            Err(e) => Err(send_err(e)),
        }
    }

    async fn answer_callback(
        &self,
        callback_id: &str,
        text: Option<&str>,
        alert: bool,
    ) -> Result<(), SendError> {
        let mut r = self
            .bot
            .answer_callback_query(CallbackQueryId(callback_id.to_string()))
            .show_alert(alert);
        if let Some(t) = text {
            r = r.text(t.chars().take(200).collect::<String>());
        }
        r.send().await.map(|_| ()).map_err(send_err)
    }

    async fn typing(&self, chat_id: i64) -> Result<(), SendError> {
        self.bot
            .send_chat_action(ChatId(chat_id), ChatAction::Typing)
            .send()
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
        let caption: String = caption_html.to_string();
        let m = with_retry(|| {
            self.bot
                .send_photo(
                    ChatId(chat_id),
                    InputFile::memory(png.clone()).file_name("chart.png"),
                )
                .caption(caption.clone())
                .parse_mode(ParseMode::Html)
                .send()
        })
        .await
        .map_err(send_err)?;
        Ok(Sent {
            message_id: i64::from(m.id.0),
            text: html_to_plain(caption_html),
        })
    }
}
