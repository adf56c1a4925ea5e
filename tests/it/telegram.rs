//! End to end over HTTP: fake Bot API ↔ real Telegram adapter ↔ core ↔ real OpenAI client ↔
//! wiremock model server.
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    fake_telegram::{Chat, FakeBotApi, User},
    tg::*,
};

const GROUP_ID: i64 = -100_200;
const WAIT: Duration = Duration::from_secs(10);

fn group() -> Chat {
    Chat::group(GROUP_ID, "Home")
}
fn alice() -> User {
    User::new(1, "Alice").with_username("alice")
}
fn bob() -> User {
    User::new(2, "Bob").with_username("bob")
}

fn request_text(body: &Value) -> String {
    body["messages"].to_string()
}

#[tokio::test]
async fn group_memory_reply_and_dm_privacy() {
    let app = TgApp::start().await;
    mount_next(
        &app.llm,
        completion("Alice said the bins go out tonight."),
        1,
        1,
    )
    .await;
    mount_default(&app.llm, completion("Got it.")).await;

    app.fake.push_update(FakeBotApi::text_message(
        0,
        group(),
        alice(),
        10,
        "the bins go out tonight",
    ));
    app.fake.push_update(FakeBotApi::text_message(
        0,
        group(),
        bob(),
        11,
        "@hearth_bot what did Alice say?",
    ));
    let sent = app.fake.wait_for("sendMessage", 1, WAIT).await;
    assert_eq!(sent[0]["chat_id"].as_i64(), Some(GROUP_ID));
    assert_eq!(sent[0]["text"], "Alice said the bins go out tonight.");

    let reqs = app.model_requests().await;
    assert_eq!(
        reqs.len(),
        1,
        "only the addressed message costs a model call"
    );
    let body = request_text(&reqs[0]);
    assert!(body.contains("Alice: the bins go out tonight"), "{body}");
    assert!(
        body.contains("Bob: @hearth_bot what did Alice say?"),
        "{body}"
    );

    // Alice's DM is answered in the DM and never appears in a later group request.
    app.fake.push_update(FakeBotApi::text_message(
        0,
        Chat::private(1, "Alice"),
        alice(),
        12,
        "psst: surprise party for Bob on Friday",
    ));
    let sent = app.fake.wait_for("sendMessage", 2, WAIT).await;
    assert_eq!(sent[1]["chat_id"].as_i64(), Some(1));
    app.fake.push_update(FakeBotApi::text_message(
        0,
        group(),
        bob(),
        13,
        "@hearth_bot anything planned this week?",
    ));
    app.fake.wait_for("sendMessage", 3, WAIT).await;
    let reqs = app.model_requests().await;
    assert_eq!(reqs.len(), 3);
    let last = request_text(&reqs[2]);
    assert!(
        !last.contains("surprise party"),
        "DM leaked into a group prompt: {last}"
    );
    assert!(
        last.contains("Hearth (bot): Alice said the bins go out tonight."),
        "{last}"
    );
    assert!(
        app.fake.calls_to("sendChatAction").len() >= 3,
        "typing indicator during turns"
    );
    app.stop().await;
}

#[tokio::test]
async fn duplicate_delivery_gets_one_reply() {
    let app = TgApp::start().await;
    mount_default(&app.llm, completion("Hello!")).await;
    app.fake.push_update(FakeBotApi::text_message(
        0,
        group(),
        alice(),
        20,
        "@hearth_bot hi",
    ));
    app.fake.wait_for("sendMessage", 1, WAIT).await;
    // the same message again under a new update id
    app.fake.push_update(FakeBotApi::text_message(
        0,
        group(),
        alice(),
        20,
        "@hearth_bot hi",
    ));
    app.fake.push_update(FakeBotApi::text_message(
        0,
        group(),
        alice(),
        21,
        "just chatting",
    ));
    // updates are accepted in order: once 21 is done, the redelivered 20 has been seen too
    app.wait_done(GROUP_ID, 21).await;
    assert_eq!(app.sent_texts(GROUP_ID).len(), 1);
    assert_eq!(app.model_requests().await.len(), 1);
    let row = app
        .store
        .inbound_by_message(GROUP_ID, 20)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "done");
    app.stop().await;
}

#[tokio::test]
async fn unfinished_message_is_recovered_at_startup() {
    use hearth::types::{ChatKind, ChatRef, Content, InboundEvent, InboundMessage, UserRef};
    let store = crate::support::test_store().await;
    // a message persisted by a run that crashed before replying
    let ev = InboundEvent::Message(InboundMessage {
        update_id: Some(7),
        chat: ChatRef {
            id: GROUP_ID,
            kind: ChatKind::Group,
            title: "Home".into(),
        },
        from: UserRef {
            id: 1,
            first_name: "Alice".into(),
            username: Some("alice".into()),
            is_bot: false,
        },
        message_id: 30,
        content: Content::Text {
            text: "@hearth_bot are you there?".into(),
        },
        reply_to: None,
        mentions_bot: true,
        date: chrono::Utc::now(),
    });
    let payload = serde_json::to_string(&ev).unwrap();
    store
        .insert_inbound(GROUP_ID, 30, Some(7), &payload, chrono::Utc::now())
        .await
        .unwrap();

    let fake = FakeBotApi::start().await;
    let llm = wiremock::MockServer::start().await;
    mount_default(&llm, completion("Yes, I'm back.")).await;
    let mut cfg = crate::support::test_config();
    cfg.telegram.api_url = fake.url();
    cfg.telegram.poll_timeout = Duration::from_secs(1);
    cfg.llm.base_url = format!("{}/v1", llm.uri());
    cfg.llm.api_key = Some(secrecy::SecretString::from("sk-test"));
    let app = TgApp::start_on(fake, llm, cfg, store).await;
    let sent = app.fake.wait_for("sendMessage", 1, WAIT).await;
    assert_eq!(sent[0]["text"], "Yes, I'm back.");
    app.hearth.idle().await;
    assert_eq!(
        app.store
            .inbound_by_message(GROUP_ID, 30)
            .await
            .unwrap()
            .unwrap()
            .status,
        "done"
    );
    app.stop().await;
}

#[tokio::test]
async fn long_reply_is_split_and_rejected_markup_is_resent_plain() {
    // above the default answer cap (8,000 characters) on purpose: this tests the splitting
    let app = TgApp::start_with(|c| c.llm.max_answer_chars = 20_000).await;
    let para = "word ".repeat(180); // ~900 chars
    let long: String = (0..10)
        .map(|i| format!("Paragraph {i}: {para}"))
        .collect::<Vec<_>>()
        .join("\n\n");
    assert!(long.len() > 9000);
    mount_next(&app.llm, completion(&long), 1, 1).await;
    mount_default(&app.llm, completion("**bold** answer")).await;
    app.fake.push_update(FakeBotApi::text_message(
        0,
        group(),
        alice(),
        40,
        "@hearth_bot tell me everything",
    ));
    app.wait_done(GROUP_ID, 40).await;
    let texts = app.sent_texts(GROUP_ID);
    assert!(
        texts.len() >= 3,
        "9,000+ characters need at least 3 parts, got {}",
        texts.len()
    );
    for t in &texts {
        assert!(t.encode_utf16().count() <= 4096);
    }
    let joined: String = texts.join("");
    assert_eq!(
        joined.split_whitespace().count(),
        long.split_whitespace().count(),
        "nothing lost in splitting"
    );

    app.fake.reject_html(true);
    app.fake.clear_calls();
    app.fake.push_update(FakeBotApi::text_message(
        0,
        group(),
        alice(),
        41,
        "@hearth_bot again",
    ));
    let sent = app.fake.wait_for("sendMessage", 2, WAIT).await;
    assert_eq!(sent[0]["parse_mode"], "HTML", "first attempt uses HTML");
    assert!(
        sent[1].get("parse_mode").is_none(),
        "fallback is plain text"
    );
    assert_eq!(app.sent_texts(GROUP_ID).last().unwrap(), "bold answer");
    app.stop().await;
}

async fn fault_case(setup: impl AsyncFnOnce(&TgApp), expect: &str) {
    let app = TgApp::start_with(|c| {
        c.llm.timeout = Duration::from_secs(2);
        c.llm.max_tool_steps = 2; // below the identical-call loop stop (3), so the cap is what ends it
    })
    .await;
    setup(&app).await;
    app.fake.push_update(FakeBotApi::text_message(
        0,
        group(),
        alice(),
        50,
        "@hearth_bot help me",
    ));
    // the group's message (a key or quota failure also DMs the admins)
    app.wait_done(GROUP_ID, 50).await;
    let text = app
        .sent_texts(GROUP_ID)
        .first()
        .cloned()
        .unwrap_or_default();
    assert!(text.contains(expect), "expected {expect:?} in {text:?}");
    app.hearth.idle().await;
    assert_eq!(
        app.sent_texts(GROUP_ID).len(),
        1,
        "exactly one message to the user"
    );
    app.stop().await;
}

#[tokio::test]
async fn model_fault_429_then_success() {
    fault_case(
        async |app| {
            mount_next(&app.llm, api_error(429), 1, 1).await;
            mount_default(&app.llm, completion("Recovered answer")).await;
        },
        "Recovered answer",
    )
    .await;
}

#[tokio::test]
async fn model_fault_500s() {
    fault_case(
        async |app| mount_default(&app.llm, api_error(500)).await,
        "having trouble",
    )
    .await;
}

#[tokio::test]
async fn model_fault_persistent_429() {
    fault_case(
        async |app| mount_default(&app.llm, api_error(429)).await,
        "rate limited",
    )
    .await;
}

#[tokio::test]
async fn model_fault_timeout() {
    fault_case(
        async |app| {
            mount_default(
                &app.llm,
                completion("too late").set_delay(Duration::from_secs(4)),
            )
            .await
        },
        "took too long",
    )
    .await;
}

#[tokio::test]
async fn model_fault_invalid_tool_arguments_then_answer() {
    fault_case(
        async |app| {
            mount_next(&app.llm, tool_call("list_members", "{not json"), 1, 1).await;
            mount_default(&app.llm, completion("Here are the members.")).await;
        },
        "Here are the members.",
    )
    .await;
}

#[tokio::test]
async fn model_fault_unknown_tool_until_step_cap() {
    fault_case(
        async |app| mount_default(&app.llm, tool_call("launch_rockets", "{}")).await,
        "more steps than I'm allowed",
    )
    .await;
}

#[tokio::test]
async fn model_fault_step_cap() {
    fault_case(
        async |app| mount_default(&app.llm, tool_call("list_members", "{}")).await,
        "more steps than I'm allowed",
    )
    .await;
}

#[tokio::test]
async fn unauthorized_key_is_explained() {
    fault_case(
        async |app| mount_default(&app.llm, api_error(401)).await,
        "rejected my API key",
    )
    .await;
}

#[tokio::test]
async fn sticker_and_huge_message_lose_nothing() {
    let app = TgApp::start().await;
    mount_default(&app.llm, completion("Long message received.")).await;
    app.fake.push_update(FakeBotApi::sticker_message(
        0,
        Chat::private(1, "Alice"),
        alice(),
        60,
        "😀",
    ));
    let sent = app.fake.wait_for("sendMessage", 1, WAIT).await;
    assert!(sent[0]["text"].as_str().unwrap().contains("only read text"));
    let big = "x".repeat(4096);
    app.fake.push_update(FakeBotApi::text_message(
        0,
        Chat::private(1, "Alice"),
        alice(),
        70,
        &big,
    ));
    app.fake.wait_for("sendMessage", 2, WAIT).await;
    app.hearth.idle().await;
    assert_eq!(
        app.store.message_count(1).await.unwrap(),
        4,
        "both inbound and both replies are in the DM log"
    );
    app.stop().await;
}

#[tokio::test]
async fn commands_menu_is_set_once_per_change() {
    let app = TgApp::start().await;
    let bot =
        hearth::telegram::bot(&secrecy::SecretString::from("123:TEST"), &app.fake.url()).unwrap();
    let me = hearth::telegram::identity(&bot).await.unwrap();
    let menu = app.hearth.menu();
    assert!(
        hearth::telegram::sync_commands(&bot, &app.store, &me, &menu)
            .await
            .unwrap()
    );
    assert!(
        !hearth::telegram::sync_commands(&bot, &app.store, &me, &menu)
            .await
            .unwrap(),
        "unchanged list is not sent again"
    );
    assert_eq!(app.fake.calls_to("setMyCommands").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn webhook_checks_the_secret_and_delivers() {
    use secrecy::SecretString;
    let fake = FakeBotApi::start().await;
    let llm = wiremock::MockServer::start().await;
    mount_default(&llm, completion("Webhook reply.")).await;
    let mut cfg = crate::support::test_config();
    cfg.telegram.api_url = fake.url();
    cfg.llm.base_url = format!("{}/v1", llm.uri());
    cfg.llm.api_key = Some(SecretString::from("sk-test"));
    let cfg = std::sync::Arc::new(cfg);
    let store = crate::support::test_store().await;
    let bot = hearth::telegram::bot(&SecretString::from("123:TEST"), &fake.url()).unwrap();
    let me = hearth::telegram::identity(&bot).await.unwrap();
    let agent = hearth::app::agent(
        &cfg,
        hearth::app::model(&cfg),
        std::path::Path::new("prompts"),
    )
    .unwrap();
    let clock: hearth::clock::SharedClock = std::sync::Arc::new(hearth::clock::SystemClock);
    let hearth_core = hearth::app::core(
        cfg.clone(),
        store.clone(),
        clock,
        std::sync::Arc::new(hearth::telegram::TelegramMessenger::new(bot)),
        me.clone(),
        agent,
    );
    let router = hearth::telegram::webhook_router(
        hearth_core.clone(),
        me,
        SecretString::from("s3cret-token"),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let (addr, _task) = hearth::http::serve("127.0.0.1:0".parse().unwrap(), router, stop.clone())
        .await
        .unwrap();
    let url = format!("http://{addr}{}", hearth::telegram::WEBHOOK_PATH);
    let update = FakeBotApi::text_message(77, group(), alice(), 90, "@hearth_bot via webhook");
    let client = reqwest::Client::new();

    let r = client.post(&url).json(&update).send().await.unwrap();
    assert_eq!(r.status(), 401, "no secret header");
    let r = client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", "wrong")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "wrong secret");
    assert!(fake.calls_to("sendMessage").is_empty());

    let r = client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", "s3cret-token")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = fake.wait_for("sendMessage", 1, WAIT).await;
    assert_eq!(sent[0]["text"], "Webhook reply.");
    // Telegram redelivers the same update: still one reply
    let r = client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", "s3cret-token")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    hearth_core.idle().await;
    assert_eq!(fake.calls_to("sendMessage").len(), 1);
    stop.cancel();
}

#[tokio::test]
async fn telegram_429_is_waited_out() {
    let app = TgApp::start().await;
    mount_default(&app.llm, completion("After the flood wait.")).await;
    app.fake.fail_next(
        "sendMessage",
        429,
        "Too Many Requests: retry after 1",
        Some(1),
    );
    app.fake.push_update(FakeBotApi::text_message(
        0,
        group(),
        alice(),
        95,
        "@hearth_bot hi",
    ));
    let started = std::time::Instant::now();
    let sent = app.fake.wait_for("sendMessage", 2, WAIT).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "retry_after honoured"
    );
    assert_eq!(sent[1]["text"], "After the flood wait.");
    app.hearth.idle().await;
    assert_eq!(
        app.sent_texts(GROUP_ID).len(),
        2,
        "one failed attempt, one delivery"
    );
    app.stop().await;
}
