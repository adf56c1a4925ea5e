//! The Bot API client: JSON (and multipart for photos) over reqwest, with Telegram's limits in
//! front of every send and bounded retries behind it.
//!
//! Why not teloxide's client: its `Throttle` adaptor retries 429 forever and pauses every chat
//! meanwhile (and caps supergroups at 10/min), and its network layer sleeps 10 s after any 5xx
//! before even returning the error. teloxide stays the source of the update *types*
//! (`convert.rs`); requests are plain JSON here.
//!
//! Retries (per call, config `telegram.retry_*`): a 429 blocks only its chat for `retry_after`
//! seconds ([`Limits::block`]); a 5xx or a transport error backs off exponentially from
//! `retry_backoff`; every call makes at most `retry_attempts` attempts and waits at most
//! `retry_max_wait` in all. A call whose next wait would pass that bound fails at once with a
//! [`TgError`]. Other errors (4xx) are not retried. A send cut off mid-flight may still have
//! reached Telegram (it has no idempotency key): a retry then delivers it twice, which hearth
//! prefers to losing the reply.
//!
//! Nothing here logs or returns request or response bodies: an error carries the HTTP status,
//! Telegram's `error_code` and a description cut before any quoted fragment, and transport errors
//! are stripped of their URL (which holds the token).

use std::{sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{value::RawValue, Value};

use super::limits::Limits;
use crate::config::TelegramConfig;

/// Longest time one ordinary Bot API request may take (getUpdates adds its long-poll timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A Bot API call that failed after the client's own retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TgError {
    /// Telegram refused the call (`ok: false`): `error_code` and the description, cut before the
    /// first quote so no fragment of a message is kept.
    #[error("Telegram refused {method}: {code} {description}")]
    Api {
        method: String,
        code: i64,
        description: String,
    },
    /// 429 and the wait (`retry_after`, seconds) would pass the attempts or `retry_max_wait`.
    #[error("Telegram rate-limited {method}: retry after {seconds} s, beyond the retry budget")]
    RetryAfter { method: String, seconds: u64 },
    /// Telegram answered 5xx on the last attempt (HTTP status).
    #[error("Telegram server error on {method}: HTTP {status}")]
    Server { method: String, status: u16 },
    /// The request did not complete (connect, timeout, reset); no URL, so no token.
    #[error("Telegram unreachable on {method}: {reason}")]
    Network { method: String, reason: String },
    /// The answer was not the Bot API shape (serde category, line, column; no content).
    #[error("unreadable answer to {method}: {reason}")]
    Decode { method: String, reason: String },
}

impl TgError {
    /// Telegram's `error_code` for an API refusal.
    pub fn code(&self) -> Option<i64> {
        match self {
            TgError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The (cut) description of an API refusal, lowercased; empty otherwise.
    pub fn description_lower(&self) -> String {
        match self {
            TgError::Api { description, .. } => description.to_lowercase(),
            _ => String::new(),
        }
    }
}

/// Telegram's description up to the first quote (a parse error quotes the offending tag).
fn safe_description(d: &str) -> String {
    let cut = d.split(['"', '«']).next().unwrap_or_default();
    cut.chars().take(200).collect::<String>().trim().to_string()
}

/// A serde_json error without its message (which can quote the input): category and position.
pub fn decode_reason(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// What one call sends.
#[derive(Clone)]
pub(crate) enum Body {
    Json(Value),
    /// multipart: text fields plus one PNG under `file_field`.
    Photo {
        fields: Vec<(&'static str, String)>,
        file_field: &'static str,
        png: Arc<Vec<u8>>,
    },
}

/// How a call is limited and retried.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A message to a chat: the chat's limits apply, retried within the budget.
    Send(i64),
    /// Anything else: no limits, retried within the budget.
    Call,
    /// One attempt only (typing indicators, getUpdates: the caller has its own loop).
    Once,
}

#[derive(Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    ok: bool,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    error_code: Option<i64>,
    description: Option<String>,
    parameters: Option<Parameters>,
}

enum Failure {
    RetryAfter(u64),
    Transient(TgError),
    Fatal(TgError),
}

impl Failure {
    /// The `outcome` label of an attempt for `hearth_telegram_api_calls_total`.
    fn label<T>(r: &Result<T, Failure>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(Failure::RetryAfter(_)) => "rate_limited",
            Err(Failure::Transient(_)) => "transient",
            Err(Failure::Fatal(_)) => "error",
        }
    }
}

struct Inner {
    http: reqwest::Client,
    /// `{api_url}/bot{token}`: holds the token, never logged.
    base: SecretString,
    /// `{api_url}/file/bot{token}`: where getFile's `file_path` is downloaded from.
    file_base: SecretString,
    limits: Limits,
    attempts: u32,
    max_wait: Duration,
    backoff: Duration,
}

/// The Bot API client hearth uses: cheap to clone, one set of limits per bot.
#[derive(Clone)]
pub struct TgBot {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TgBot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TgBot { .. }")
    }
}

impl TgBot {
    /// A client for `token` against `cfg.api_url`, with `cfg`'s limits and retry budget.
    ///
    /// Errors: an unparseable `telegram.api_url`, or a TLS backend that fails to start.
    pub fn new(token: &SecretString, cfg: &TelegramConfig) -> anyhow::Result<Self> {
        let url = url::Url::parse(&cfg.api_url)
            .map_err(|e| anyhow::anyhow!("telegram.api_url: {e} ({:?})", cfg.api_url))?;
        let base = format!(
            "{}/bot{}",
            url.as_str().trim_end_matches('/'),
            token.expose_secret()
        );
        let file_base = format!(
            "{}/file/bot{}",
            url.as_str().trim_end_matches('/'),
            token.expose_secret()
        );
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| anyhow::anyhow!("HTTP client: {}", e.without_url()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: SecretString::from(base),
                file_base: SecretString::from(file_base),
                limits: Limits::new(cfg),
                attempts: cfg.retry_attempts.max(1),
                max_wait: cfg.retry_max_wait,
                backoff: cfg.retry_backoff,
            }),
        })
    }

    /// Pace this process's bot-wide sends at its share of `telegram.limit_per_second` among
    /// `processes` live processes ([`Limits::divide`]). Returns the share, messages a second.
    pub fn divide_rate(&self, processes: u64) -> u32 {
        self.inner.limits.divide(processes)
    }

    /// This process's bot-wide pace, messages a second ([`Limits::per_second`]).
    pub fn rate_per_second(&self) -> u32 {
        self.inner.limits.per_second()
    }

    /// True while `chat_id` waits out a 429 (`retry_after`).
    pub(crate) fn chat_blocked(&self, chat_id: i64) -> bool {
        !self.inner.limits.blocked_for(chat_id).is_zero()
    }

    /// Call `method` with a JSON body and decode its `result` as `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        kind: Kind,
        method: &str,
        body: Value,
    ) -> Result<T, TgError> {
        self.execute(kind, method, Body::Json(body), REQUEST_TIMEOUT)
            .await
    }

    /// A file a member sent: getFile, then its bytes from the file endpoint, refused over `max`
    /// bytes (by getFile's `file_size` and again while reading). Errors carry no URL (token).
    pub(crate) async fn download(&self, file_id: &str, max: usize) -> Result<Vec<u8>, TgError> {
        #[derive(Deserialize)]
        struct File {
            file_path: Option<String>,
            file_size: Option<u64>,
        }
        let f: File = self
            .call(
                Kind::Call,
                "getFile",
                serde_json::json!({ "file_id": file_id }),
            )
            .await?;
        let too_big = || TgError::Api {
            method: "getFile".into(),
            code: 400,
            description: format!("file is larger than {max} bytes"),
        };
        if f.file_size.is_some_and(|s| s > max as u64) {
            return Err(too_big());
        }
        let path = f.file_path.ok_or_else(|| TgError::Decode {
            method: "getFile".into(),
            reason: "no file_path".into(),
        })?;
        let url = format!("{}/{path}", self.inner.file_base.expose_secret());
        let mut resp = self
            .inner
            .http
            .get(url)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| network("file download", e))?;
        if !resp.status().is_success() {
            return Err(TgError::Server {
                method: "file download".into(),
                status: resp.status().as_u16(),
            });
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| network("file download", e))?
        {
            out.extend_from_slice(&chunk);
            if out.len() > max {
                return Err(too_big());
            }
        }
        Ok(out)
    }

    /// getUpdates, once, waiting up to `poll` on Telegram's side: the raw updates, each to be
    /// decoded on its own by the caller.
    pub(crate) async fn get_updates(
        &self,
        body: Value,
        poll: Duration,
    ) -> Result<Vec<Box<RawValue>>, TgError> {
        self.execute(
            Kind::Once,
            "getUpdates",
            Body::Json(body),
            poll + REQUEST_TIMEOUT,
        )
        .await
    }

    pub(crate) async fn execute<T: DeserializeOwned>(
        &self,
        kind: Kind,
        method: &str,
        body: Body,
        timeout: Duration,
    ) -> Result<T, TgError> {
        let inner = &self.inner;
        let attempts = if kind == Kind::Once {
            1
        } else {
            inner.attempts
        };
        let mut waited = Duration::ZERO;
        let mut backoff = inner.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Kind::Send(chat) = kind {
                let blocked = inner.limits.blocked_for(chat);
                if !blocked.is_zero() {
                    if waited + blocked > inner.max_wait {
                        return Err(TgError::RetryAfter {
                            method: method.to_string(),
                            seconds: blocked.as_secs_f64().ceil() as u64,
                        });
                    }
                    tokio::time::sleep(blocked).await;
                    waited += blocked;
                }
                inner.limits.acquire(chat).await;
            }
            let r = self.once::<T>(method, &body, timeout).await;
            crate::metrics::bot_api_call(method, Failure::label(&r));
            let failure = match r {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            let last = attempt >= attempts;
            match failure {
                Failure::Fatal(e) => return Err(e),
                Failure::Transient(e) => {
                    if last || waited + backoff > inner.max_wait {
                        return Err(e);
                    }
                    tracing::warn!(method, attempt, error = %e, wait = ?backoff, "Bot API call failed; retrying");
                    tokio::time::sleep(backoff).await;
                    waited += backoff;
                    backoff = backoff.saturating_mul(2);
                }
                Failure::RetryAfter(seconds) => {
                    let wait = Duration::from_secs(seconds);
                    if let Kind::Send(chat) = kind {
                        inner.limits.block(chat, wait);
                    }
                    if last || waited + wait > inner.max_wait {
                        tracing::warn!(
                            method,
                            attempt,
                            seconds,
                            "Telegram asked us to slow down; giving up on this call"
                        );
                        return Err(TgError::RetryAfter {
                            method: method.to_string(),
                            seconds,
                        });
                    }
                    tracing::warn!(method, attempt, seconds, "Telegram asked us to slow down");
                    if !matches!(kind, Kind::Send(_)) {
                        // a chat send waits at the top of the loop, with any other sender to it
                        tokio::time::sleep(wait).await;
                        waited += wait;
                    }
                }
            }
        }
    }

    async fn once<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &Body,
        timeout: Duration,
    ) -> Result<T, Failure> {
        let url = format!("{}/{method}", self.inner.base.expose_secret());
        let req = self.inner.http.post(url).timeout(timeout);
        let req = match body {
            Body::Json(v) => req.json(v),
            Body::Photo {
                fields,
                file_field,
                png,
            } => {
                let mut form = reqwest::multipart::Form::new();
                for (k, v) in fields {
                    form = form.text(*k, v.clone());
                }
                let part = reqwest::multipart::Part::bytes(png.as_ref().clone())
                    .file_name("chart.png")
                    .mime_str("image/png")
                    .map_err(|e| Failure::Fatal(network(method, e)))?;
                req.multipart(form.part(*file_field, part))
            }
        };
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transient(network(method, e)))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Failure::Transient(network(method, e)))?;
        let env: Envelope = match serde_json::from_slice(&bytes) {
            Ok(env) => env,
            Err(_) if status.is_server_error() => {
                return Err(Failure::Transient(TgError::Server {
                    method: method.into(),
                    status: status.as_u16(),
                }))
            }
            Err(e) => {
                return Err(Failure::Fatal(TgError::Decode {
                    method: method.into(),
                    reason: format!("HTTP {}: {}", status.as_u16(), decode_reason(&e)),
                }))
            }
        };
        if env.ok {
            let raw = env.result.map(RawValue::get).unwrap_or("null");
            return serde_json::from_str(raw).map_err(|e| {
                Failure::Fatal(TgError::Decode {
                    method: method.into(),
                    reason: decode_reason(&e),
                })
            });
        }
        let code = env.error_code.unwrap_or(i64::from(status.as_u16()));
        if let Some(s) = env.parameters.and_then(|p| p.retry_after) {
            return Err(Failure::RetryAfter(s));
        }
        let err = TgError::Api {
            method: method.into(),
            code,
            description: safe_description(env.description.as_deref().unwrap_or("")),
        };
        if status.is_server_error() || code >= 500 {
            Err(Failure::Transient(TgError::Server {
                method: method.into(),
                status: status.as_u16(),
            }))
        } else if code == 429 {
            Err(Failure::RetryAfter(1))
        } else {
            Err(Failure::Fatal(err))
        }
    }
}

fn network(method: &str, e: reqwest::Error) -> TgError {
    let e = e.without_url();
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    // the source chain of a transport error names hosts and OS errors, not content
    let mut reason = kind.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        reason = format!("{reason}: {s}");
        src = s.source();
    }
    TgError::Network {
        method: method.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_keep_no_quoted_fragment() {
        assert_eq!(
            safe_description("Bad Request: can't parse entities: Unsupported start tag \"secret\" at byte offset 3"),
            "Bad Request: can't parse entities: Unsupported start tag"
        );
        assert_eq!(
            safe_description("Forbidden: bot was blocked by the user"),
            "Forbidden: bot was blocked by the user"
        );
    }

    #[test]
    fn decode_reasons_hold_no_input() {
        let e = serde_json::from_str::<u32>("\"my secret plans\"").unwrap_err();
        let r = decode_reason(&e);
        assert!(!r.contains("secret"), "{r}");
        assert!(r.contains("line 1"), "{r}");
    }
}
