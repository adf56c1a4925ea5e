//! Whole-pipeline harness over HTTP: the real Telegram adapter (long polling, config limits) against
//! the fake Bot API, and the real OpenAI-compatible client against a wiremock server.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use hearth::{
    app,
    clock::{SharedClock, SystemClock},
    config::Config,
    core::Hearth,
    messenger::Messenger,
    store::Store,
    telegram,
};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

use super::{fake_telegram::FakeBotApi, test_config};

pub struct TgApp {
    pub fake: FakeBotApi,
    pub llm: MockServer,
    pub hearth: Arc<Hearth>,
    pub store: Store,
    pub stop: CancellationToken,
    poller: tokio::task::JoinHandle<()>,
}

/// An OpenAI chat completion answering `text`.
pub fn completion(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
    }))
}

/// An OpenAI chat completion asking for one tool call.
pub fn tool_call(name: &str, arguments: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45}
    }))
}

/// An OpenAI-style error.
pub fn api_error(status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"error": {"message": format!("status {status}"), "type": "test", "param": null, "code": null}}))
}

/// Answer every chat completion with `t` (lowest priority: specific mocks win).
pub async fn mount_default(llm: &MockServer, t: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(t)
        .with_priority(10)
        .mount(llm)
        .await;
}

/// Answer the next `n` chat completions with `t` (before the default).
pub async fn mount_next(llm: &MockServer, t: ResponseTemplate, n: u64, priority: u8) {
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(t)
        .up_to_n_times(n)
        .with_priority(priority)
        .mount(llm)
        .await;
}

impl TgApp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let fake = FakeBotApi::start().await;
        let llm = MockServer::start().await;
        let mut cfg = test_config();
        cfg.telegram.api_url = fake.url();
        cfg.telegram.poll_timeout = Duration::from_secs(1);
        cfg.llm.base_url = format!("{}/v1", llm.uri());
        cfg.llm.api_key = Some(SecretString::from("sk-test"));
        cfg.llm.model = "test-model".into();
        cfg.llm.timeout = Duration::from_secs(5);
        tweak(&mut cfg);
        Self::start_on(fake, llm, cfg, super::test_store().await).await
    }

    pub async fn start_on(fake: FakeBotApi, llm: MockServer, cfg: Config, store: Store) -> Self {
        let cfg = Arc::new(cfg);
        let token = SecretString::from("123:TEST");
        let bot = telegram::bot_with(&token, &cfg.telegram).expect("bot");
        let me = telegram::identity(&bot).await.expect("getMe");
        let clock: SharedClock = Arc::new(SystemClock);
        let messenger: Arc<dyn Messenger> = Arc::new(telegram::TelegramMessenger::new(bot.clone()));
        let agent =
            app::agent(&cfg, app::model(&cfg), std::path::Path::new("prompts")).expect("agent");
        let hearth = app::core(
            cfg.clone(),
            store.clone(),
            clock,
            messenger,
            me.clone(),
            agent,
        );
        hearth.recover().await.expect("recover");
        let stop = CancellationToken::new();
        let poller = tokio::spawn(telegram::run_polling(
            bot,
            hearth.clone(),
            me,
            cfg.telegram.poll_timeout,
            stop.clone(),
        ));
        Self {
            fake,
            llm,
            hearth,
            store,
            stop,
            poller,
        }
    }

    /// Bodies of every chat completion request the model server received.
    pub async fn model_requests(&self) -> Vec<Value> {
        self.llm
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().ends_with("/chat/completions"))
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect()
    }

    /// Wait until the inbound message (chat, message id) has been processed (status "done").
    /// Panics after 10 s.
    pub async fn wait_done(&self, chat_id: i64, message_id: i64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(row)) = self.store.inbound_by_message(chat_id, message_id).await {
                if row.status == "done" {
                    self.hearth.idle().await;
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "message {message_id} not processed in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// sendMessage texts to `chat_id`.
    pub fn sent_texts(&self, chat_id: i64) -> Vec<String> {
        self.fake
            .calls_to("sendMessage")
            .into_iter()
            .filter(|b| b["chat_id"].as_i64() == Some(chat_id))
            .filter_map(|b| b["text"].as_str().map(str::to_string))
            .collect()
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.poller.await;
        self.hearth.shutdown(Duration::from_secs(5)).await;
    }
}
