//! Shared test harness: an in-process hearth over in-memory SQLite (real migrations), a manual
//! clock, a recording messenger and a scripted model.
#![allow(dead_code)]

pub mod admin;
pub mod fake_telegram;
pub mod tg;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use hearth::{
    agent::llm::ChatModel,
    app,
    clock::{ManualClock, SharedClock},
    config::Config,
    core::Hearth,
    services::BotIdentity,
    store::Store,
    testkit::{RecordingMessenger, Script, ScriptedModel},
    types::{
        CallbackQuery, ChatKind, ChatRef, Content, InboundEvent, InboundMessage, ReplyRef, UserRef,
    },
};

pub const GROUP: i64 = -1001;

/// 2026-11-21 10:00 UTC.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()
}

pub fn user(id: i64, name: &str) -> UserRef {
    UserRef {
        id,
        first_name: name.into(),
        username: Some(name.to_lowercase()),
        is_bot: false,
    }
}
pub fn alice() -> UserRef {
    user(1, "Alice")
}
pub fn bob() -> UserRef {
    user(2, "Bob")
}
pub fn carol() -> UserRef {
    user(3, "Carol")
}
pub fn dave() -> UserRef {
    user(4, "Dave")
}

pub fn group() -> ChatRef {
    ChatRef {
        id: GROUP,
        kind: ChatKind::Group,
        title: "Home".into(),
    }
}
pub fn dm(u: &UserRef) -> ChatRef {
    ChatRef {
        id: u.id,
        kind: ChatKind::Private,
        title: u.first_name.clone(),
    }
}

/// A core over `cfg` with the real agent wiring (every tool, `prompts/`), the test bot
/// (`@hearth_bot`, id 999) and `model` (`None`: commands only).
pub fn build_core(
    cfg: Config,
    store: Store,
    clock: SharedClock,
    messenger: Arc<dyn hearth::messenger::Messenger>,
    model: Option<Arc<dyn ChatModel>>,
) -> Arc<Hearth> {
    let agent = app::agent(&cfg, model, std::path::Path::new("prompts")).expect("agent");
    let bot = BotIdentity {
        id: 999,
        username: "hearth_bot".into(),
        name: "Hearth".into(),
    };
    app::core(Arc::new(cfg), store, clock, messenger, bot, agent)
}

pub fn test_config() -> Config {
    let mut c = Config::load(None, Vec::<(String, String)>::new()).expect("default config");
    c.database.url = "sqlite::memory:".into();
    c
}

/// A fresh store: in-memory SQLite, or a new Postgres database when `HEARTH_TEST_DATABASE_URL`
/// names a Postgres server (`.ci/run` starts one and runs the suite against it too).
pub async fn test_store() -> Store {
    match std::env::var("HEARTH_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let name = format!(
                "hearth_t_{}_{}_{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
                    % 1_000_000_000,
                N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            );
            Store::create_postgres_database(&url, &name)
                .await
                .expect("create test database");
            let base = url
                .rsplit_once('/')
                .map(|(b, _)| b.to_string())
                .unwrap_or(url.clone());
            Store::connect(
                &format!("{base}/{name}"),
                5,
                std::time::Duration::from_secs(5),
            )
            .await
            .expect("connect test database")
        }
        _ => Store::memory().await.expect("store"),
    }
}

pub struct TestApp {
    pub hearth: Arc<Hearth>,
    pub messenger: RecordingMessenger,
    pub model: ScriptedModel,
    pub clock: ManualClock,
    pub store: Store,
    next_message_id: std::sync::atomic::AtomicI64,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(|_| {}, vec![]).await
    }

    /// Build with a config tweak and a model script.
    pub async fn with(tweak: impl FnOnce(&mut Config), script: Vec<Script>) -> Self {
        let store = test_store().await;
        Self::on_store(store, ManualClock::new(t0()), tweak, script).await
    }

    /// Build over an existing store and clock (file databases, restarts).
    pub async fn on_store(
        store: Store,
        clock: ManualClock,
        tweak: impl FnOnce(&mut Config),
        script: Vec<Script>,
    ) -> Self {
        let mut cfg = test_config();
        tweak(&mut cfg);
        let shared: SharedClock = Arc::new(clock.clone());
        let messenger = RecordingMessenger::default();
        let model = ScriptedModel::new(script);
        let hearth = build_core(
            cfg,
            store.clone(),
            shared,
            Arc::new(messenger.clone()),
            Some(Arc::new(model.clone()) as Arc<dyn ChatModel>),
        );
        Self {
            hearth,
            messenger,
            model,
            clock,
            store,
            next_message_id: 1.into(),
        }
    }

    /// Continue message ids from `from` (a restarted app over the same database must not reuse
    /// ids: the inbound table would drop them as duplicates).
    pub fn continue_ids_from(&self, from: i64) {
        self.next_message_id
            .store(from, std::sync::atomic::Ordering::SeqCst);
    }

    fn next_id(&self) -> i64 {
        self.next_message_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    /// A member says `text` in `chat`; waits until processed. Returns the message id.
    pub async fn say(&self, chat: &ChatRef, from: &UserRef, text: &str) -> i64 {
        let id = self.next_id();
        let mentions_bot = text.to_lowercase().contains("@hearth_bot");
        self.send_event(InboundEvent::Message(InboundMessage {
            update_id: None,
            chat: chat.clone(),
            from: from.clone(),
            message_id: id,
            content: Content::Text { text: text.into() },
            reply_to: None,
            mentions_bot,
            date: self.clock.now_utc(),
        }))
        .await;
        id
    }

    /// A member replies to the bot's message `to` with `text`.
    pub async fn reply_to_bot(&self, chat: &ChatRef, from: &UserRef, to: i64, text: &str) -> i64 {
        let id = self.next_id();
        self.send_event(InboundEvent::Message(InboundMessage {
            update_id: None,
            chat: chat.clone(),
            from: from.clone(),
            message_id: id,
            content: Content::Text { text: text.into() },
            reply_to: Some(ReplyRef {
                message_id: to,
                to_bot: true,
            }),
            mentions_bot: false,
            date: self.clock.now_utc(),
        }))
        .await;
        id
    }

    /// A member taps a button carrying `data` on message `message_id`.
    pub async fn press(&self, chat: &ChatRef, from: &UserRef, message_id: i64, data: &str) {
        let id = format!("cb{}", self.next_id());
        self.send_event(InboundEvent::Callback(CallbackQuery {
            id,
            from: from.clone(),
            chat: chat.clone(),
            message_id,
            data: data.into(),
        }))
        .await;
    }

    pub async fn send_event(&self, ev: InboundEvent) {
        self.hearth.accept(ev).await.expect("accept");
        self.hearth.idle().await;
    }

    /// Plain texts the bot sent to `chat_id`.
    pub fn texts(&self, chat_id: i64) -> Vec<String> {
        self.messenger.texts_to(chat_id)
    }

    pub fn last_text(&self, chat_id: i64) -> String {
        self.texts(chat_id).pop().unwrap_or_default()
    }
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}
impl NowUtc for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        use hearth::clock::Clock;
        self.now()
    }
}
