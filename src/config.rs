//! Configuration: one TOML file plus environment overrides (figment), secrets in `secrecy` types.
//!
//! Owns: the `Config` shape, loading order, validation and the user-facing error that names the key
//! and its source. Uses: figment, serde, secrecy, chrono-tz. Nothing else in hearth reads the
//! environment for configuration.
//!
//! Loading order (later wins): built-in defaults (`config/default.toml`, compiled in) → the file
//! given by `--config` (or `config/default.toml` on disk when present) → the conveniences
//! `TELEGRAM_BOT_TOKEN` / `OPENAI_API_KEY` → `HEARTH_<SECTION>__<KEY>` variables.
//! Unknown keys are refused so a typo never silently falls back to a default.

use std::{net::SocketAddr, path::Path, time::Duration};

use chrono_tz::Tz;
use figment::{
    providers::{Format, Toml},
    Figment,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// The built-in defaults, identical to the shipped `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// A configuration error: which key, from which source, and what is wrong. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {message}")]
pub struct ConfigError {
    /// One line naming the key and the source, e.g.
    /// "telegram.mode: unknown variant `pull`, expected `polling` or `webhook` (from env HEARTH_TELEGRAM__MODE)".
    pub message: String,
}

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The whole configuration. Durations are written as humantime strings ("25s", "60m", "48h").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub telegram: TelegramConfig,
    pub llm: LlmConfig,
    pub database: DatabaseConfig,
    pub context: ContextConfig,
    pub group: GroupConfig,
    pub access: AccessConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub workflows: WorkflowsConfig,
    pub routines: RoutinesConfig,
    pub agent: AgentConfig,
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    pub cluster: ClusterConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// Bot token from BotFather. Secret: never logged.
    #[serde(default, deserialize_with = "opt_secret")]
    pub token: Option<SecretString>,
    /// Bot API server base URL (official or self-hosted `telegram-bot-api`).
    pub api_url: String,
    pub mode: TelegramMode,
    /// Long-polling timeout passed to getUpdates.
    #[serde(deserialize_with = "duration")]
    pub poll_timeout: Duration,
    /// Public HTTPS URL Telegram posts updates to (webhook mode), e.g. `https://bot.example.com/telegram/webhook`.
    pub webhook_url: String,
    /// Secret token Telegram echoes in `X-Telegram-Bot-Api-Secret-Token` (webhook mode). Secret.
    #[serde(default, deserialize_with = "opt_secret")]
    pub webhook_secret: Option<SecretString>,
    /// Bot-wide cap on messages sent (sendMessage, sendPhoto, edits), per second. Telegram's
    /// documented limit for bulk sending is 30/s.
    pub limit_per_second: u32,
    /// Cap per chat (private or group), messages per second. Telegram: "avoid sending more than
    /// one message per second in a particular chat".
    pub limit_per_chat_per_second: u32,
    /// Cap per group or supergroup, messages per minute (private chats have none). Telegram:
    /// "not more than 20 messages per minute" in a group.
    pub limit_per_group_per_minute: u32,
    /// Messages a group may receive back to back before the per-minute pace applies (1 = a strict
    /// pace of one message every 60/`limit_per_group_per_minute` seconds).
    pub limit_group_burst: u32,
    /// Attempts of one Bot API call, the first included, on 429, 5xx or a connection error.
    pub retry_attempts: u32,
    /// Longest total wait inside one call (`retry_after` waits plus backoff); a call whose next
    /// wait would pass it fails with a delivery error instead.
    #[serde(deserialize_with = "duration")]
    pub retry_max_wait: Duration,
    /// First backoff after a 5xx or a connection error; doubles with each attempt.
    #[serde(deserialize_with = "duration")]
    pub retry_backoff: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    Polling,
    Webhook,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// Any OpenAI-compatible base URL ending in `/v1` (OpenAI, Ollama, vLLM, OpenRouter).
    pub base_url: String,
    /// API key; optional for local servers. Secret.
    #[serde(default, deserialize_with = "opt_secret")]
    pub api_key: Option<SecretString>,
    pub model: String,
    /// Upper bound for one whole turn (all model calls and tools).
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Model calls per turn before the turn gives up.
    pub max_tool_steps: u32,
    /// `max_tokens` sent with every model call (completion tokens per call). Default 1024.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Longest answer posted to a chat, in characters (Unicode scalar values); longer answers
    /// are cut with a note and kept whole in the turn record (issue 8 item 11). Default 8,000.
    #[serde(default = "default_max_answer_chars")]
    pub max_answer_chars: usize,
    /// Model calls in flight at once across the process; more wait in a per-chat round-robin
    /// queue (issue 8 item 12). Default 4.
    #[serde(default = "default_max_concurrent_calls")]
    pub max_concurrent_calls: usize,
    /// Prices in US dollars per million tokens, for cost reports (models not in `prices`).
    pub prompt_price_per_mtok: f64,
    pub completion_price_per_mtok: f64,
    /// Per-model prices (model name → prompt / completion USD per million tokens); a model not
    /// listed uses `prompt_price_per_mtok` / `completion_price_per_mtok`.
    #[serde(default)]
    pub prices: std::collections::BTreeMap<String, ModelPrice>,
}

fn default_max_tokens() -> u32 {
    1024
}
fn default_max_answer_chars() -> usize {
    8000
}
fn default_max_concurrent_calls() -> usize {
    4
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://data/hearth.db?mode=rwc` (default), `sqlite::memory:`, or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
    #[serde(deserialize_with = "duration")]
    pub busy_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextConfig {
    pub group_messages: u32,
    #[serde(deserialize_with = "duration")]
    pub group_max_age: Duration,
    pub dm_messages: u32,
    #[serde(deserialize_with = "duration")]
    pub dm_max_age: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub reply_mode: ReplyMode,
    /// Default IANA zone for new groups and DMs.
    #[serde(deserialize_with = "zone")]
    pub timezone: Tz,
    /// Welcome a member who joins a group with `/chores` and `/done` (once; see `core::greet`).
    pub greet_new_members: bool,
    /// Messages for the model one member may send in one chat per `flood_window`; past it they
    /// get one "slow down" and the excess is kept as context only (issue 8, item 20).
    pub flood_budget: u32,
    #[serde(deserialize_with = "duration")]
    pub flood_window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyMode {
    Mention,
    Always,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// When non-empty, only these chat ids are served.
    pub allowed_chats: Vec<i64>,
    /// When non-empty, only these user ids are served.
    pub allowed_users: Vec<i64>,
    /// Telegram user ids that are admins in every group.
    pub admin_ids: Vec<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve `/healthz`, `/readyz`, the webhook and api triggers. Forced on in webhook mode.
    pub enabled: bool,
    pub listen: SocketAddr,
    /// The address the admin pages are reached at from a browser (e.g.
    /// `https://hearth.example.org`, no trailing slash needed): `/admin` in a DM answers with
    /// `<public_url>/admin/login/<token>`. Unset: `/admin` says the web admin is not configured.
    /// An `https` URL marks the session cookie `Secure` (issue 11).
    #[serde(default)]
    pub public_url: Option<String>,
}

/// Prometheus `/metrics` (issue 11 item 5). Off by default; never public by accident: served
/// on its own address (`listen`), or on the main `http.listen` only behind a bearer `token`
/// (start-up refuses `enabled` without either).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics`. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Own listen address for `/metrics` (e.g. `127.0.0.1:9464`), no token needed there.
    /// Unset: `/metrics` is served on the main listener (`http.listen`) and needs `token`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Bearer token a scraper sends (`Authorization: Bearer <token>`) on the main listener.
    /// Secret: never logged. Env `HEARTH_METRICS__TOKEN`.
    #[serde(default, deserialize_with = "opt_secret")]
    pub token: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// tracing EnvFilter directive; `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowsConfig {
    /// How long a request stays pending before the scheduler expires it.
    #[serde(deserialize_with = "duration")]
    pub expiry: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutinesConfig {
    pub max_per_chat: u32,
    /// USD a run may spend before it asks "continue?" in the chat (once per run). Default 1.0.
    #[serde(default = "default_cost_warn")]
    pub cost_warn: f64,
    /// USD at which a run stops (`failed`, reason "cost limit"). Default 5.0.
    #[serde(default = "default_cost_limit")]
    pub cost_limit: f64,
    /// How long a process holds a run step without renewing it; after that another process
    /// takes the run over (a destructive step becomes `interrupted`). Default 30 s.
    #[serde(default = "default_step_lease", deserialize_with = "duration")]
    pub step_lease: Duration,
}

fn default_cost_warn() -> f64 {
    1.0
}
fn default_cost_limit() -> f64 {
    5.0
}
fn default_step_lease() -> Duration {
    Duration::from_secs(30)
}

/// A model's prices in US dollars per million tokens (`[llm.prices."<model>"]`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub prompt: f64,
    pub completion: f64,
}

/// `[agent]`: how far the model may act on its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// A destructive tool call the model makes in an ordinary turn is not run: the member it
    /// acts for gets a Confirm / Cancel message instead (issue 8: a small model approved
    /// requests on "what's the weather like today?"). Default true.
    pub confirm_destructive: bool,
    /// How long such a confirmation waits before it expires (nothing is done). At least 1 min.
    #[serde(deserialize_with = "duration")]
    pub confirm_expiry: Duration,
}

/// Durability of in-flight work (issue 8): leases, heartbeat, recovery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// How long a process holds an inbound message without renewing it; after that another
    /// process's recovery may take it (the worst-case wait after a crash).
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
    /// How often a process renews all its leases (one statement per period); below `lease`.
    #[serde(deserialize_with = "duration")]
    pub heartbeat: Duration,
    /// Started turns after which a message is given up (the chat is told once).
    pub max_attempts: u32,
}

/// Several processes on one database (issue 12; DESIGN.md "Processes").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// How long a process holds a chat (the right to run its turns and send to it), the
    /// long-poller role and a system job without renewing them; after a crash other processes
    /// take over within this. Renewed every `runtime.heartbeat`, which must be shorter. Default 15 s.
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
    /// How often a process looks for pending messages of chats it may work that another process
    /// accepted (webhooks spread over replicas), and for chats whose holder died. Default 200 ms.
    #[serde(deserialize_with = "duration")]
    pub poll: Duration,
}

impl Config {
    /// Load defaults, then `path` (must exist when given), then the environment `env`
    /// (pass `std::env::vars()`; tests pass their own list).
    ///
    /// Errors: a missing file, a TOML syntax error, an unknown key, or an invalid value; the message
    /// names the key and where it came from (file path or environment variable).
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::new(format!(
                        "config file {} does not exist",
                        p.display()
                    )));
                }
                fig = fig.merge(Toml::file_exact(p));
            }
            None => {
                let default = Path::new("config/default.toml");
                if default.exists() {
                    fig = fig.merge(Toml::file_exact(default));
                }
            }
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        let env_keys: Vec<(String, String)> = env
            .iter()
            .filter_map(|(k, _)| env_key(k).map(|key| (key, k.clone())))
            .collect();
        fig = fig.merge(EnvList(env));
        let cfg: Config = fig
            .extract()
            .map_err(|e| figment_error(e, &env_keys, path))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.telegram.mode == TelegramMode::Webhook {
            if self.telegram.webhook_url.trim().is_empty() {
                return Err(ConfigError::new(
                    "telegram.webhook_url: required when telegram.mode = \"webhook\" (set HEARTH_TELEGRAM__WEBHOOK_URL)",
                ));
            }
            if self.telegram.webhook_secret.is_none() {
                return Err(ConfigError::new(
                    "telegram.webhook_secret: required when telegram.mode = \"webhook\" (set HEARTH_TELEGRAM__WEBHOOK_SECRET)",
                ));
            }
        }
        if self.llm.max_tool_steps == 0 || self.llm.max_tool_steps > 32 {
            return Err(ConfigError::new(
                "llm.max_tool_steps: must be between 1 and 32",
            ));
        }
        if self.llm.max_tokens == 0
            || self.llm.max_answer_chars < 100
            || self.llm.max_concurrent_calls == 0
        {
            return Err(ConfigError::new(
                "llm.max_tokens and llm.max_concurrent_calls: at least 1; llm.max_answer_chars: at least 100",
            ));
        }
        if self.context.group_messages == 0 || self.context.dm_messages == 0 {
            return Err(ConfigError::new(
                "context.group_messages / context.dm_messages: must be at least 1",
            ));
        }
        let t = &self.telegram;
        if t.limit_per_second == 0
            || t.limit_per_chat_per_second == 0
            || t.limit_per_group_per_minute == 0
            || t.limit_group_burst == 0
            || t.retry_attempts == 0
        {
            return Err(ConfigError::new(
                "telegram.limit_* / telegram.retry_attempts: must be at least 1",
            ));
        }
        if self.cluster.poll.is_zero() || self.runtime.heartbeat >= self.cluster.lease {
            return Err(ConfigError::new(
                "cluster: poll must be above 0 and runtime.heartbeat shorter than cluster.lease",
            ));
        }
        if self.runtime.heartbeat.is_zero()
            || self.runtime.heartbeat >= self.runtime.lease
            || self.runtime.max_attempts == 0
        {
            return Err(ConfigError::new(
                "runtime: heartbeat must be shorter than lease; max_attempts must be above 0",
            ));
        }
        if self.metrics.enabled && self.metrics.listen.is_none() && self.metrics.token.is_none() {
            return Err(ConfigError::new(
                "metrics.token: required when metrics.enabled is on the main listener (no metrics.listen); set HEARTH_METRICS__TOKEN, or give metrics its own address with metrics.listen",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::new(
                "database.max_connections: must be at least 1",
            ));
        }
        Ok(())
    }

    /// The bot token, or the error `hearth run` reports (exit 2) when it is missing.
    pub fn require_token(&self) -> Result<&SecretString, ConfigError> {
        match &self.telegram.token {
            Some(t) if !t.expose_secret().trim().is_empty() => Ok(t),
            _ => Err(ConfigError::new(
                "telegram.token: missing. Set TELEGRAM_BOT_TOKEN (or HEARTH_TELEGRAM__TOKEN) to the token from @BotFather, or try `hearth console`",
            )),
        }
    }

    /// True when a model endpoint is usable: a key is set, or the endpoint is not OpenAI's
    /// (local servers such as Ollama need no key).
    pub fn model_configured(&self) -> bool {
        !self.llm.model.trim().is_empty()
            && !self.llm.base_url.trim().is_empty()
            && (self.llm.api_key.is_some() || !self.llm.base_url.contains("api.openai.com"))
    }

    /// True when the HTTP listener must run (enabled, or webhook mode).
    pub fn http_enabled(&self) -> bool {
        self.http.enabled
            || self.telegram.mode == TelegramMode::Webhook
            || (self.metrics.enabled && self.metrics.listen.is_none())
    }
}

/// Environment provider: `HEARTH_A__B` → `a.b`, plus the two conveniences. Kept as our own small
/// provider so errors name the exact variable.
struct EnvList(Vec<(String, String)>);

impl figment::Provider for EnvList {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut fig = Figment::new();
        for (k, v) in &self.0 {
            let key = match k.as_str() {
                "TELEGRAM_BOT_TOKEN" => "telegram.token".to_string(),
                "OPENAI_API_KEY" => "llm.api_key".to_string(),
                _ => match k.strip_prefix("HEARTH_") {
                    Some(rest) if rest.contains("__") => {
                        rest.to_ascii_lowercase().replace("__", ".")
                    }
                    _ => continue,
                },
            };
            let value: figment::value::Value =
                if key.ends_with("token") || key.ends_with("secret") || key.ends_with("api_key") {
                    // secrets stay strings even when they look like numbers
                    figment::value::Value::from(v.clone())
                } else {
                    v.parse::<figment::value::Value>()
                        .unwrap_or_else(|_| figment::value::Value::from(v.clone()))
                };
            fig = fig.merge(
                figment::providers::Serialized::default(&key, value)
                    .profile(figment::Profile::Default),
            );
        }
        fig.data()
    }
}

/// The config key an environment variable sets: `HEARTH_A__B` → `a.b`, plus the conveniences.
fn env_key(var: &str) -> Option<String> {
    match var {
        "TELEGRAM_BOT_TOKEN" => Some("telegram.token".into()),
        "OPENAI_API_KEY" => Some("llm.api_key".into()),
        _ => match var.strip_prefix("HEARTH_") {
            Some(rest) if rest.contains("__") => Some(rest.to_ascii_lowercase().replace("__", ".")),
            _ => None,
        },
    }
}

/// One line per problem: "key: what is wrong (from env VAR | file PATH | built-in defaults)".
fn figment_error(
    e: figment::Error,
    env_keys: &[(String, String)],
    file: Option<&Path>,
) -> ConfigError {
    let mut lines = Vec::new();
    for err in e {
        let mut path = err.path.clone();
        // unknown keys are reported on their parent; name the field itself
        if let figment::error::Kind::UnknownField(f, _) = &err.kind {
            path.push(f.clone());
        }
        let key = if path.is_empty() {
            "(top level)".to_string()
        } else {
            path.join(".")
        };
        let from_env = env_keys
            .iter()
            .find(|(k, _)| *k == key || key.starts_with(&format!("{k}.")))
            .map(|(_, var)| format!("env {var}"));
        let source = from_env.unwrap_or_else(|| {
            match err.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                Some(figment::Source::File(p)) => format!("file {}", p.display()),
                _ => match file {
                    Some(p) => format!("file {} or built-in defaults", p.display()),
                    None => "config/default.toml or built-in defaults".to_string(),
                },
            }
        });
        lines.push(format!("{key}: {} (from {source})", err.kind));
    }
    ConfigError::new(lines.join("; "))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(s.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {s:?} ({e}); write it like \"30s\", \"60m\" or \"48h\""
        ))
    })
}

fn zone<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse::<Tz>().map_err(|_| {
        serde::de::Error::custom(format!(
            "{s:?} is not an IANA time zone (for example \"Europe/London\")"
        ))
    })
}

fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.filter(|s| !s.trim().is_empty())
        .map(|s| SecretString::from(s.trim().to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_are_sane() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.telegram.mode, TelegramMode::Polling);
        assert_eq!(c.context.group_messages, 20);
        assert_eq!(c.context.group_max_age, Duration::from_secs(3600));
        assert_eq!(c.context.dm_messages, 10);
        assert_eq!(c.llm.max_tool_steps, 8);
        assert!(c.telegram.token.is_none());
        assert!(c.require_token().is_err());
    }

    #[test]
    fn env_overrides_and_conveniences() {
        let c = Config::load(
            None,
            env(&[
                ("HEARTH_TELEGRAM__API_URL", "http://127.0.0.1:9"),
                ("HEARTH_LLM__MAX_TOOL_STEPS", "3"),
                ("TELEGRAM_BOT_TOKEN", "123:abc"),
                ("HEARTH_ACCESS__ADMIN_IDS", "[1, 2]"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.telegram.api_url, "http://127.0.0.1:9");
        assert_eq!(c.llm.max_tool_steps, 3);
        assert_eq!(c.access.admin_ids, vec![1, 2]);
        assert_eq!(c.require_token().unwrap().expose_secret(), "123:abc");
    }

    #[test]
    fn bad_values_name_key_and_source() {
        let e = Config::load(None, env(&[("HEARTH_TELEGRAM__MODE", "pull")])).unwrap_err();
        assert!(e.message.contains("telegram.mode"), "{}", e.message);
        assert!(e.message.contains("HEARTH_TELEGRAM__MODE"), "{}", e.message);

        let e = Config::load(None, env(&[("HEARTH_GROUP__TIMEZONE", "Mars/Base")])).unwrap_err();
        assert!(e.message.contains("group.timezone"), "{}", e.message);

        let e = Config::load(None, env(&[("HEARTH_LLM__TIMEOUT", "soon")])).unwrap_err();
        assert!(e.message.contains("llm.timeout"), "{}", e.message);
    }

    #[test]
    fn typo_in_file_is_refused_with_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.toml");
        std::fs::write(&p, "[telegram]\nmdoe = \"polling\"\n").unwrap();
        let e = Config::load(Some(&p), env(&[])).unwrap_err();
        assert!(e.message.contains("mdoe"), "{}", e.message);
        assert!(e.message.contains("h.toml"), "{}", e.message);
        let e = Config::load(Some(&dir.path().join("missing.toml")), env(&[])).unwrap_err();
        assert!(e.message.contains("does not exist"));
    }

    #[test]
    fn webhook_mode_requires_url_and_secret() {
        let e = Config::load(None, env(&[("HEARTH_TELEGRAM__MODE", "webhook")])).unwrap_err();
        assert!(e.message.contains("telegram.webhook_url"));
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let c = Config::load(None, env(&[("OPENAI_API_KEY", "sk-very-secret")])).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("sk-very-secret"));
    }
}
