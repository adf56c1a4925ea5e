//! Issue 8, the model side: the real OpenAI-compatible client against a wiremock fake that
//! behaves like llama.cpp's server (strict about message shape, lenient in what it returns),
//! the length cap, failure notices kept out of the context window, what-was-done on a partial
//! failure, admin alerts on quota / key errors (manual clock), and fair model-call queueing.
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicI64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;
use hearth::{
    agent::{
        gate::ModelGate,
        llm::{ChatMessage, ChatModel, ModelError, ModelReply, ToolSpec},
    },
    app,
    clock::{Clock, ManualClock, SharedClock},
    config::{Config, ReplyMode},
    core::Hearth,
    store::Store,
    testkit::{RecordingMessenger, Script},
    types::{Content, InboundEvent, InboundMessage},
};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, Request, Respond, ResponseTemplate,
};

use crate::support::{
    alice, bob, build_core, dm, group, t0, test_config, test_store, TestApp, GROUP,
};

// ---------------------------------------------------------------------------------------------
// A llama.cpp-like fake server

/// One scripted answer of the fake server.
#[derive(Clone)]
enum Step {
    Text(&'static str),
    /// Text cut at `max_tokens` (`finish_reason: "length"`).
    Cut(&'static str),
    Tool(&'static str, &'static str),
}

/// Behaves like llama-cpp-python's `chatml-function-calling` server: HTTP 500 when an assistant
/// message with `tool_calls` lacks the `content` key (its template reads it), `tools` ignored
/// without `tool_choice` (the model then claims an action it never took), and answers without
/// the optional fields OpenAI sends (`system_fingerprint`, `logprobs`, `usage` details).
struct LlamaLike {
    script: Mutex<VecDeque<Step>>,
}

impl LlamaLike {
    fn new(steps: &[Step]) -> Self {
        Self {
            script: Mutex::new(steps.iter().cloned().collect()),
        }
    }
}

fn answer(message: Value, finish: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-llama", "object": "chat.completion", "created": 1, "model": "smollm2",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
    }))
}

impl Respond for LlamaLike {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        if messages.iter().any(|m| {
            m["role"] == "assistant" && m.get("tool_calls").is_some() && m.get("content").is_none()
        }) {
            return ResponseTemplate::new(500).set_body_string(
                "jinja2.exceptions.UndefinedError: 'dict object' has no attribute 'content'",
            );
        }
        let tools_on = body.get("tools").is_some() && body["tool_choice"] == "auto";
        let step = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Step::Text("ok"));
        match step {
            Step::Text(t) => answer(json!({"role": "assistant", "content": t}), "stop"),
            Step::Cut(t) => answer(json!({"role": "assistant", "content": t}), "length"),
            Step::Tool(..) if !tools_on => answer(
                json!({"role": "assistant", "content": "Done! I took care of it."}),
                "stop",
            ),
            Step::Tool(name, args) => answer(
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_0", "type": "function", "function": {"name": name, "arguments": args}}
                ]}),
                "tool_calls",
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// An in-process hearth with the real OpenAI client, a manual clock and a recording messenger

struct LlmApp {
    hearth: Arc<Hearth>,
    messenger: RecordingMessenger,
    clock: ManualClock,
    store: Store,
    llm: MockServer,
    next_id: AtomicI64,
}

impl LlmApp {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let llm = MockServer::start().await;
        let mut cfg = test_config();
        cfg.llm.base_url = format!("{}/v1", llm.uri());
        cfg.llm.api_key = Some(SecretString::from("sk-test"));
        cfg.llm.model = "test-model".into();
        cfg.llm.timeout = Duration::from_secs(10);
        cfg.access.admin_ids = vec![1];
        tweak(&mut cfg);
        let store = test_store().await;
        let clock = ManualClock::new(t0());
        let shared: SharedClock = Arc::new(clock.clone());
        let messenger = RecordingMessenger::default();
        let model = app::model(&cfg);
        let hearth = build_core(
            cfg,
            store.clone(),
            shared,
            Arc::new(messenger.clone()),
            model,
        );
        Self {
            hearth,
            messenger,
            clock,
            store,
            llm,
            next_id: AtomicI64::new(1),
        }
    }

    async fn say(&self, chat: &hearth::types::ChatRef, from: &hearth::types::UserRef, text: &str) {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.hearth
            .accept(InboundEvent::Message(InboundMessage {
                update_id: None,
                chat: chat.clone(),
                from: from.clone(),
                message_id: id,
                content: Content::Text { text: text.into() },
                reply_to: None,
                mentions_bot: text.contains("@hearth_bot"),
                date: self.clock.now(),
            }))
            .await
            .expect("accept");
        self.hearth.idle().await;
    }

    async fn requests(&self) -> Vec<Value> {
        self.llm
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().ends_with("/chat/completions"))
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect()
    }

    async fn mount(&self, r: impl Respond + 'static) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(r)
            .mount(&self.llm)
            .await;
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_llama_cpp_like_server_gets_tool_choice_max_tokens_and_content_with_tool_calls() {
    let app = LlmApp::start(|_| {}).await;
    app.mount(LlamaLike::new(&[
        Step::Tool("list_members", "{}"),
        Step::Text("Alice and Bob are here."),
    ]))
    .await;
    app.say(&group(), &bob(), "hi").await;
    app.say(&group(), &alice(), "@hearth_bot who is here?")
        .await;

    // the tool really ran and the follow-up call was accepted (no HTTP 500)
    assert_eq!(
        app.messenger.texts_to(GROUP).last().map(String::as_str),
        Some("Alice and Bob are here.")
    );
    let reqs = app.requests().await;
    assert_eq!(reqs.len(), 2, "one tool round trip, no retried 500s");
    for r in &reqs {
        assert_eq!(r["tool_choice"], "auto", "{r}");
        assert_eq!(r["max_tokens"], 1024, "{r}");
    }
    let assistant = reqs[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .cloned()
        .unwrap();
    assert_eq!(assistant["content"], "");
    assert_eq!(
        assistant["tool_calls"][0]["function"]["name"],
        "list_members"
    );
    let turns = app.store.turns(GROUP).await.unwrap();
    assert_eq!(turns[0].prompt_tokens, 60, "both calls counted");
}

#[tokio::test]
async fn an_answer_cut_at_max_tokens_says_it_was_cut_off() {
    let app = LlmApp::start(|c| c.llm.max_tokens = 64).await;
    app.mount(LlamaLike::new(&[Step::Cut(
        "There are three things to know about the bins. First,",
    )]))
    .await;
    app.say(&group(), &alice(), "@hearth_bot tell me about the bins")
        .await;
    let last = app.messenger.texts_to(GROUP).pop().unwrap();
    assert!(last.starts_with("There are three things"), "{last}");
    assert!(last.contains("My answer was cut off here"), "{last}");
    assert_eq!(app.requests().await[0]["max_tokens"], 64);
}

#[tokio::test]
async fn a_quota_error_tells_the_member_and_dms_the_admins_once_per_hour() {
    let app = LlmApp::start(|_| {}).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}})))
        .mount(&app.llm)
        .await;
    app.say(&group(), &alice(), "hello all").await; // Alice (admin) is a member
    app.say(&group(), &bob(), "@hearth_bot what's for dinner?")
        .await;
    let last = app.messenger.texts_to(GROUP).pop().unwrap();
    assert!(last.contains("run out of credit"), "{last}");
    assert!(!last.contains("try again in a minute"), "{last}");
    let dms = app.messenger.texts_to(alice().id);
    assert_eq!(dms.len(), 1, "{dms:?}");
    assert!(
        dms[0].contains("Home") && dms[0].contains("quota"),
        "{dms:?}"
    );
    assert!(
        app.messenger.texts_to(bob().id).is_empty(),
        "Bob is no admin"
    );

    // within the hour: the member is told again, the admin is not
    app.clock.advance(chrono::TimeDelta::minutes(30));
    app.say(&group(), &bob(), "@hearth_bot and tomorrow?").await;
    assert!(app
        .messenger
        .texts_to(GROUP)
        .pop()
        .unwrap()
        .contains("run out of credit"));
    assert_eq!(app.messenger.texts_to(alice().id).len(), 1);

    // after an hour: one more DM
    app.clock.advance(chrono::TimeDelta::minutes(31));
    app.say(&group(), &bob(), "@hearth_bot still there?").await;
    assert_eq!(app.messenger.texts_to(alice().id).len(), 2);

    // a different cause (the key is rejected) is its own alert, even within the hour
    app.llm.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "message": "Incorrect API key provided", "type": "invalid_request_error",
            "param": null, "code": "invalid_api_key"}})))
        .mount(&app.llm)
        .await;
    app.say(&group(), &bob(), "@hearth_bot hello?").await;
    assert!(app
        .messenger
        .texts_to(GROUP)
        .pop()
        .unwrap()
        .contains("rejected my API key"));
    let dms = app.messenger.texts_to(alice().id);
    assert_eq!(dms.len(), 3, "{dms:?}");
    assert!(dms[2].contains("HTTP 401"), "{dms:?}");
    app.say(&group(), &bob(), "@hearth_bot hello??").await;
    assert_eq!(app.messenger.texts_to(alice().id).len(), 3);

    // the rate state lives in the kv table (see the restart test below)
    let key = format!("model_alert:{GROUP}:unauthorized");
    assert!(app.store.kv_get(&key).await.unwrap().is_some());
}

#[tokio::test]
async fn the_admin_alert_rate_survives_a_restart() {
    let store = test_store().await;
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!({"error": {"message": "forbidden", "type": "x", "param": null, "code": null}}),
        ))
        .mount(&llm)
        .await;
    let clock = ManualClock::new(t0());
    let start = |store: Store| {
        let mut cfg = test_config();
        cfg.llm.base_url = format!("{}/v1", llm.uri());
        cfg.llm.api_key = Some(SecretString::from("sk-test"));
        cfg.llm.model = "test-model".into();
        cfg.access.admin_ids = vec![1];
        let messenger = RecordingMessenger::default();
        let model = app::model(&cfg);
        let hearth = build_core(
            cfg,
            store,
            Arc::new(clock.clone()),
            Arc::new(messenger.clone()),
            model,
        );
        (hearth, messenger)
    };
    let msg = |id: i64, from: hearth::types::UserRef, text: &str| {
        InboundEvent::Message(InboundMessage {
            update_id: None,
            chat: group(),
            from,
            message_id: id,
            content: Content::Text { text: text.into() },
            reply_to: None,
            mentions_bot: true,
            date: clock.now(),
        })
    };
    let (h1, m1) = start(store.clone());
    h1.accept(msg(1, alice(), "@hearth_bot hi")).await.unwrap();
    h1.idle().await;
    assert_eq!(m1.texts_to(alice().id).len(), 1);
    h1.shutdown(Duration::from_secs(1)).await;
    let (h2, m2) = start(store.clone());
    h2.accept(msg(2, bob(), "@hearth_bot hi")).await.unwrap();
    h2.idle().await;
    assert!(m2
        .texts_to(GROUP)
        .pop()
        .unwrap()
        .contains("rejected my API key"));
    assert!(
        m2.texts_to(alice().id).is_empty(),
        "no second DM within the hour"
    );
}

#[tokio::test]
async fn a_failure_after_a_tool_ran_says_what_was_done() {
    let app = TestApp::with(
        |_| {},
        vec![
            Script::Tools(vec![(
                "chore_create".into(),
                r#"{"title":"Clean the bathroom"}"#.into(),
            )]),
            Script::Fail(|| ModelError::Server {
                status: 500,
                message: "boom".into(),
            }),
        ],
    )
    .await;
    app.say(&group(), &alice(), "@hearth_bot add a bathroom chore")
        .await;
    assert_eq!(
        app.last_text(GROUP),
        "I created the chore “Clean the bathroom”, then lost the model — nothing else was changed. Ask again if there was more to do."
    );
    // the notice is not conversation: the next prompt does not show it
    app.say(&group(), &alice(), "@hearth_bot did it work?")
        .await;
    let reqs = app.model.requests();
    let ChatMessage::System(system) = &reqs.last().unwrap()[0] else {
        panic!("no system prompt")
    };
    assert!(system.contains("add a bathroom chore"), "{system}");
    assert!(!system.contains("lost the model"), "{system}");
}

#[tokio::test]
async fn an_empty_answer_gets_a_sentence_and_stays_out_of_the_context() {
    let app = TestApp::with(|_| {}, vec![Script::Text("  ".into())]).await;
    app.say(&group(), &alice(), "@hearth_bot hmm").await;
    let last = app.last_text(GROUP);
    assert!(last.contains("couldn't come up with an answer"), "{last}");
    assert!(!last.contains('🤷'));
    app.say(&group(), &alice(), "@hearth_bot again").await;
    let reqs = app.model.requests();
    let ChatMessage::System(system) = &reqs.last().unwrap()[0] else {
        panic!("no system prompt")
    };
    assert!(!system.contains("couldn't come up"), "{system}");
    assert_eq!(
        app.store
            .turns(GROUP)
            .await
            .unwrap()
            .last()
            .unwrap()
            .outcome,
        "empty"
    );
}

#[tokio::test]
async fn a_failure_notice_stays_out_of_the_context() {
    let app = TestApp::with(
        |_| {},
        vec![Script::Fail(|| ModelError::Connection("refused".into()))],
    )
    .await;
    app.say(&group(), &alice(), "@hearth_bot first").await;
    assert!(app.last_text(GROUP).contains("can't reach the model"));
    app.say(&group(), &alice(), "@hearth_bot second").await;
    let reqs = app.model.requests();
    let ChatMessage::System(system) = &reqs.last().unwrap()[0] else {
        panic!("no system prompt")
    };
    assert!(system.contains("first"), "{system}");
    assert!(!system.contains("can't reach"), "{system}");
}

#[tokio::test]
async fn a_long_answer_is_capped_and_kept_whole_in_the_turn_record() {
    let long = "word ".repeat(4000); // 20,000 characters
    let app = TestApp::with(|_| {}, vec![Script::Text(long.clone())]).await;
    app.say(&group(), &alice(), "@hearth_bot write a lot").await;
    let sent = app.last_text(GROUP);
    assert!(sent.chars().count() <= 8000, "{}", sent.chars().count());
    assert!(sent.chars().count() > 7000, "{}", sent.chars().count());
    assert!(
        sent.ends_with("(Cut here: my answer was 19999 characters long and I post at most 8000.)"),
        "{}",
        &sent[sent.len() - 120..]
    );
    let turn = app.store.turns(GROUP).await.unwrap().remove(0);
    assert_eq!(turn.reply_text.as_deref(), Some(long.trim()));

    // a smaller cap from config, with multi-byte text: cut on a character boundary
    let app = TestApp::with(
        |c| c.llm.max_answer_chars = 200,
        vec![Script::Text("ẞé".repeat(500))],
    )
    .await;
    app.say(&group(), &alice(), "@hearth_bot more").await;
    let sent = app.last_text(GROUP);
    assert!(sent.chars().count() <= 200, "{sent}");
    assert!(
        sent.starts_with("ẞéẞé") && sent.contains("I post at most 200"),
        "{sent}"
    );
}

#[tokio::test]
async fn silent_answers_are_counted_in_the_turn_record() {
    let app = TestApp::with(
        |c| c.group.reply_mode = ReplyMode::Always,
        vec![Script::Text("[silent]".into())],
    )
    .await;
    app.say(&group(), &alice(), "just chatting").await;
    assert!(app.texts(GROUP).is_empty());
    let turn = app.store.turns(GROUP).await.unwrap().remove(0);
    assert_eq!((turn.prompt_tokens, turn.completion_tokens), (10, 2));
}

// ---------------------------------------------------------------------------------------------
// Fair queueing

#[tokio::test]
async fn the_gate_lets_another_chat_in_before_a_long_queue() {
    let gate = ModelGate::new(1);
    let held = gate.acquire(1).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (g, o) = (gate.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let _p = g.acquire(1).await;
            o.lock().unwrap().push(format!("a{i}"));
        }));
    }
    while gate.queued() < 50 {
        tokio::task::yield_now().await;
    }
    let (g, o) = (gate.clone(), order.clone());
    tasks.push(tokio::spawn(async move {
        let _p = g.acquire(2).await;
        o.lock().unwrap().push("b".into());
    }));
    while gate.queued() < 51 {
        tokio::task::yield_now().await;
    }
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), 51);
    let b = order.iter().position(|x| x == "b").unwrap();
    assert!(b <= 1, "chat 2 came {b}th of 51: {order:?}");
}

/// A model that takes 30 ms per call and records the overlap and the order of callers.
#[derive(Clone, Default)]
struct SlowModel {
    active: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
    calls: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl ChatModel for SlowModel {
    async fn complete(
        &self,
        messages: &[ChatMessage],
        _tools: &[ToolSpec],
    ) -> Result<ModelReply, ModelError> {
        let n = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(n, Ordering::SeqCst);
        let who = messages
            .iter()
            .find_map(|m| match m {
                ChatMessage::User(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.calls.lock().unwrap().push(who);
        self.active.fetch_sub(1, Ordering::SeqCst);
        Ok(ModelReply {
            content: Some("ok".into()),
            prompt_tokens: 1,
            completion_tokens: 1,
            ..Default::default()
        })
    }
    fn name(&self) -> &str {
        "slow"
    }
}

async fn slow_app(limit: usize, model: SlowModel) -> Arc<Hearth> {
    let mut cfg = test_config();
    cfg.llm.max_concurrent_calls = limit;
    cfg.group.flood_budget = 1_000; // this measures the model gate, not the flood budget
    build_core(
        cfg,
        test_store().await,
        Arc::new(ManualClock::new(t0())),
        Arc::new(RecordingMessenger::default()),
        Some(Arc::new(model) as Arc<dyn ChatModel>),
    )
}

fn dm_msg(id: i64, from: hearth::types::UserRef, text: &str) -> InboundEvent {
    InboundEvent::Message(InboundMessage {
        update_id: None,
        chat: dm(&from),
        from,
        message_id: id,
        content: Content::Text { text: text.into() },
        reply_to: None,
        mentions_bot: false,
        date: t0(),
    })
}

#[tokio::test]
async fn a_busy_chat_does_not_make_another_chat_wait_for_its_queue() {
    let model = SlowModel::default();
    let hearth = slow_app(1, model.clone()).await;
    for i in 0..12 {
        hearth
            .accept(dm_msg(i + 1, alice(), &format!("a{i}")))
            .await
            .unwrap();
    }
    while model.active.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let before = model.calls.lock().unwrap().len();
    hearth.accept(dm_msg(100, bob(), "b")).await.unwrap();
    hearth.idle().await;
    let calls = model.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 13);
    let b = calls.iter().position(|c| c.ends_with(": b")).unwrap();
    // Bob waits for at most the call in flight when he arrived, not for Alice's queue
    assert!(b <= before + 2, "Bob's turn came {b}th of 13: {calls:?}");
    assert!(b < 12, "{calls:?}");
    assert_eq!(model.max_active.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn model_calls_in_flight_are_bounded_by_config() {
    let model = SlowModel::default();
    let hearth = slow_app(2, model.clone()).await;
    for i in 0..8 {
        let u = crate::support::user(10 + i, &format!("U{i}"));
        hearth.accept(dm_msg(i + 1, u, "hello")).await.unwrap();
    }
    hearth.idle().await;
    assert_eq!(model.calls.lock().unwrap().len(), 8);
    assert_eq!(model.max_active.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------------
// hearth check --online against a lenient model list

/// `hearth check --online` (the real binary) against the fake Bot API and `llm`, for `model`.
async fn check_online(
    fake: &crate::support::fake_telegram::FakeBotApi,
    llm: &MockServer,
    model: &str,
) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["check", "--online"])
        .env_clear()
        .env("TELEGRAM_BOT_TOKEN", "123:TEST")
        .env("HEARTH_TELEGRAM__API_URL", fake.url())
        .env("HEARTH_LLM__BASE_URL", format!("{}/v1", llm.uri()))
        .env("HEARTH_LLM__MODEL", model)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn check_online_accepts_a_model_list_without_created() {
    let fake = crate::support::fake_telegram::FakeBotApi::start().await;
    let llm = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "data": [{"id": "smollm2", "object": "model", "owned_by": "me", "permissions": []}]
        })))
        .mount(&llm)
        .await;
    let out = check_online(&fake, &llm, "smollm2").await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("model endpoint: ok (1 models, smollm2 available)"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("ERROR") && !stderr.contains("permissions"),
        "{stderr}"
    );

    // a single-model server (llama.cpp lists its one model by file path) answers any name
    let out = check_online(&fake, &llm, "qwen").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("serves one model (smollm2); qwen is sent as given"),
        "{stdout}"
    );

    // a body that is no model list: reported without the body, exit 1
    llm.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"secret": "Alice said hi"})))
        .mount(&llm)
        .await;
    let out = check_online(&fake, &llm, "smollm2").await;
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("model endpoint: the model's answer could not be read"),
        "{all}"
    );
    assert!(!all.contains("Alice said hi"), "{all}");
}

#[test]
fn model_limits_default_from_config() {
    let c = test_config();
    assert_eq!(c.llm.max_tokens, 1024);
    assert_eq!(c.llm.max_answer_chars, 8000);
    assert_eq!(c.llm.max_concurrent_calls, 4);
    let bad = Config::load(
        None,
        vec![(
            "HEARTH_LLM__MAX_CONCURRENT_CALLS".to_string(),
            "0".to_string(),
        )],
    );
    assert!(bad.is_err());
}

/// Seen against llama-cpp-python with a 135M model: `list_members {}` asked for again and again
/// until the step cap (8 model calls, ~10k prompt tokens). The same call with the same arguments
/// runs once; the second is answered "already called"; the third ends the turn as a loop.
#[tokio::test]
async fn a_repeated_identical_tool_call_runs_once_and_the_third_ends_the_turn() {
    let same = || Script::Tools(vec![("list_members".into(), "{ }".into())]);
    let app = TestApp::with(|_| {}, vec![same(), same(), same(), same()]).await;
    app.say(
        &group(),
        &alice(),
        "@hearth_bot what is the weather like today?",
    )
    .await;
    assert_eq!(
        app.last_text(GROUP),
        "Sorry, I got stuck repeating the same step. Could you ask in another way?"
    );
    let reqs = app.model.requests();
    assert_eq!(reqs.len(), 3, "stopped at the third identical call");
    let tool_results: Vec<String> = reqs
        .last()
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            ChatMessage::Tool { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(tool_results.len(), 2, "{tool_results:?}");
    assert!(tool_results[0].contains("Alice"), "{}", tool_results[0]);
    assert!(
        tool_results[1].contains("already called list_members"),
        "{}",
        tool_results[1]
    );
}
