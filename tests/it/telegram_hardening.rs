//! Issue 8, Telegram adapter and console: per-chat 429s, bounded retries, 5xx and connection
//! errors retried, Telegram's limits from config, one undecodable update never stops polling and
//! never reaches a log with its text, console images saved to disk.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant as StdInstant},
};

use hearth::{
    config::TelegramConfig,
    console::ConsoleMessenger,
    messenger::Messenger,
    telegram::{self, TelegramMessenger, TgError},
    types::Outbound,
};
use secrecy::SecretString;
use serde_json::Value;
use tokio::time::Instant;

use crate::support::{
    fake_telegram::{Chat, FakeBotApi, User},
    test_config,
    tg::*,
};

const WAIT: Duration = Duration::from_secs(10);

fn alice() -> User {
    User::new(101, "Alice").with_username("alice")
}
fn bob() -> User {
    User::new(102, "Bob").with_username("bob")
}

/// (chat id, arrival) of every `method` call, failed ones included.
fn calls_by_chat(fake: &FakeBotApi, method: &str, chat: i64) -> Vec<Instant> {
    fake.call_times(method)
        .into_iter()
        .filter(|(b, _)| b["chat_id"].as_i64() == Some(chat))
        .map(|(_, t)| t)
        .collect()
}

async fn wait_calls(fake: &FakeBotApi, method: &str, chat: i64, n: usize) -> Vec<Instant> {
    let deadline = Instant::now() + WAIT;
    loop {
        let c = calls_by_chat(fake, method, chat);
        if c.len() >= n {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{method} to {chat}: {} of {n} calls in {WAIT:?}",
            c.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Bot messages that really exist in `chat` (sent successfully).
fn delivered(fake: &FakeBotApi, chat: i64) -> Vec<Value> {
    fake.bot_messages()
        .into_iter()
        .filter(|m| m["chat"]["id"].as_i64() == Some(chat))
        .collect()
}

fn telegram_cfg(api_url: &str, tweak: impl FnOnce(&mut TelegramConfig)) -> TelegramConfig {
    let mut c = test_config().telegram;
    c.api_url = api_url.to_string();
    tweak(&mut c);
    c
}

#[tokio::test]
async fn a_429_on_one_chat_does_not_delay_another_chat() {
    let app = TgApp::start().await;
    mount_default(&app.llm, completion("Noted.")).await;
    let (a, b) = (alice().id, bob().id);
    app.fake.fail_next_in_chat(
        "sendMessage",
        a,
        429,
        "Too Many Requests: retry after 3",
        Some(3),
    );
    app.fake.push_update(FakeBotApi::text_message(
        0,
        Chat::private(a, "Alice"),
        alice(),
        1,
        "hello",
    ));
    let first_a = wait_calls(&app.fake, "sendMessage", a, 1).await[0];
    app.fake.push_update(FakeBotApi::text_message(
        0,
        Chat::private(b, "Bob"),
        bob(),
        1,
        "hello",
    ));
    let b_calls = wait_calls(&app.fake, "sendMessage", b, 1).await;
    let a_calls = wait_calls(&app.fake, "sendMessage", a, 2).await;

    // chat B was answered while chat A waited out its retry_after
    assert!(
        b_calls[0] < a_calls[1],
        "B waited for A's 429: B at {:?}, A's retry at {:?}",
        b_calls[0] - first_a,
        a_calls[1] - first_a
    );
    // and A waited the whole retry_after before trying again
    assert!(
        a_calls[1] - first_a >= Duration::from_millis(2900),
        "{:?}",
        a_calls[1] - first_a
    );
    app.wait_done(a, 1).await;
    assert_eq!(delivered(&app.fake, a).len(), 1, "delivered once");
    assert_eq!(delivered(&app.fake, b).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_429_storm_gives_up_after_the_configured_attempts() {
    let app = TgApp::start_with(|c| {
        c.telegram.retry_attempts = 3;
        c.telegram.retry_max_wait = Duration::from_secs(10);
    })
    .await;
    mount_default(&app.llm, completion("Noted.")).await;
    let a = alice().id;
    for _ in 0..10 {
        app.fake.fail_next_in_chat(
            "sendMessage",
            a,
            429,
            "Too Many Requests: retry after 1",
            Some(1),
        );
    }
    let t0 = Instant::now();
    app.fake.push_update(FakeBotApi::text_message(
        0,
        Chat::private(a, "Alice"),
        alice(),
        1,
        "hello",
    ));
    let calls = wait_calls(&app.fake, "sendMessage", a, 3).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        calls_by_chat(&app.fake, "sendMessage", a).len(),
        3,
        "no attempt after the third"
    );
    assert!(calls[2] - calls[0] >= Duration::from_millis(1900));
    assert!(calls[2] - t0 < Duration::from_secs(6), "bounded");
    assert!(delivered(&app.fake, a).is_empty());

    // the chat is not stuck: once Telegram accepts again, the next message is answered
    app.fake.clear_failures();
    app.fake.push_update(FakeBotApi::text_message(
        0,
        Chat::private(a, "Alice"),
        alice(),
        2,
        "still there?",
    ));
    app.wait_done(a, 2).await;
    let sent = wait_calls(&app.fake, "sendMessage", a, 4).await;
    assert_eq!(sent.len(), 4);
    assert_eq!(delivered(&app.fake, a).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_fails_at_once_and_blocks_only_that_chat() {
    let fake = FakeBotApi::start().await;
    let cfg = telegram_cfg(&fake.url(), |c| {
        c.retry_max_wait = Duration::from_secs(5);
    });
    let bot = telegram::bot_with(&SecretString::from("123:TEST"), &cfg).unwrap();
    let m = TelegramMessenger::new(bot);
    fake.fail_next_in_chat("sendMessage", 7, 429, "Too Many Requests", Some(65));
    let t = StdInstant::now();
    let err = m.send(&Outbound::html(7, "hi")).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(err.0.contains("retry after 65"), "{err}");
    // the chat stays blocked for its retry_after: no call reaches Telegram meanwhile
    let err = m.send(&Outbound::html(7, "again")).await.unwrap_err();
    assert!(err.0.contains("rate-limited"), "{err}");
    assert_eq!(fake.calls_to("sendMessage").len(), 1);
    // nor a typing indicator
    m.typing(7).await.unwrap();
    assert!(fake.calls_to("sendChatAction").is_empty());
    m.typing(8).await.unwrap();
    assert_eq!(fake.calls_to("sendChatAction").len(), 1);
    // another chat is not affected
    let t = StdInstant::now();
    m.send(&Outbound::html(8, "hi")).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_500_then_success_delivers_once_without_a_stall() {
    let app = TgApp::start().await;
    mount_default(&app.llm, completion("Here you go.")).await;
    let a = alice().id;
    app.fake
        .fail_next("sendMessage", 500, "Internal Server Error", None);
    app.fake.fail_next("sendMessage", 502, "Bad Gateway", None);
    let t0 = Instant::now();
    app.fake.push_update(FakeBotApi::text_message(
        0,
        Chat::private(a, "Alice"),
        alice(),
        1,
        "hello",
    ));
    let calls = wait_calls(&app.fake, "sendMessage", a, 3).await;
    app.wait_done(a, 1).await;
    assert_eq!(calls.len(), 3);
    let msgs = delivered(&app.fake, a);
    assert_eq!(msgs.len(), 1, "delivered once");
    assert_eq!(msgs[0]["text"], "Here you go.");
    // backoff 500 ms then 1 s, not teloxide's 10 s per 5xx
    assert!(
        calls[2] - t0 < Duration::from_secs(4),
        "{:?}",
        calls[2] - t0
    );
    app.stop().await;
}

#[tokio::test]
async fn edits_and_photos_are_retried_after_a_5xx() {
    let fake = FakeBotApi::start().await;
    let cfg = telegram_cfg(&fake.url(), |c| {
        c.retry_backoff = Duration::from_millis(50);
    });
    let m =
        TelegramMessenger::new(telegram::bot_with(&SecretString::from("123:TEST"), &cfg).unwrap());
    let sent = m.send(&Outbound::html(-5, "first")).await.unwrap();
    fake.fail_next("editMessageText", 503, "Service Unavailable", None);
    m.edit(-5, sent[0].message_id, "second", &[]).await.unwrap();
    assert_eq!(
        fake.message(-5, sent[0].message_id).unwrap()["text"],
        "second"
    );
    fake.fail_next("sendPhoto", 500, "Internal Server Error", None);
    m.send_photo(-5, vec![0x89, b'P', b'N', b'G'], "chart")
        .await
        .unwrap();
    assert_eq!(fake.calls_to("sendPhoto").len(), 2);
    assert_eq!(fake.calls_to("editMessageText").len(), 2);
}

#[tokio::test]
async fn a_connection_error_is_retried_within_the_bounded_time() {
    // a port nothing listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = telegram_cfg(&format!("http://127.0.0.1:{port}"), |c| {
        c.retry_attempts = 4;
        c.retry_backoff = Duration::from_millis(100);
        c.retry_max_wait = Duration::from_secs(5);
    });
    let bot = telegram::bot_with(&SecretString::from("123:SECRET"), &cfg).unwrap();
    let t = StdInstant::now();
    let err = telegram::identity(&bot).await.unwrap_err();
    let took = t.elapsed();
    // three backoffs: 100 + 200 + 400 ms
    assert!(took >= Duration::from_millis(650), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(matches!(err, TgError::Network { .. }), "{err:?}");
    assert!(!err.to_string().contains("SECRET"), "token in {err}");

    // a server that comes back during the backoff gets the call
    let fake = FakeBotApi::start().await;
    let cfg = telegram_cfg(&fake.url(), |_| {});
    let bot = telegram::bot_with(&SecretString::from("123:TEST"), &cfg).unwrap();
    fake.fail_next("getMe", 500, "Internal Server Error", None);
    assert_eq!(telegram::identity(&bot).await.unwrap().id, 999);
}

#[tokio::test]
async fn dms_are_not_capped_per_minute_while_a_group_is_paced() {
    let fake = FakeBotApi::start().await;
    // per chat 20/s (50 ms apart); groups 120/min (500 ms apart), strictly paced
    let cfg = telegram_cfg(&fake.url(), |c| {
        c.limit_per_chat_per_second = 20;
        c.limit_per_group_per_minute = 120;
        c.limit_group_burst = 1;
    });
    let m = Arc::new(TelegramMessenger::new(
        telegram::bot_with(&SecretString::from("123:TEST"), &cfg).unwrap(),
    ));
    let (dm, group, supergroup) = (42_i64, -42_i64, -1_000_000_000_042_i64);
    let mut tasks = Vec::new();
    for chat in [dm, group, supergroup] {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..6 {
                m.send(&Outbound::html(chat, format!("message {i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let gaps = |chat: i64| {
        let t = calls_by_chat(&fake, "sendMessage", chat);
        assert_eq!(t.len(), 6);
        t.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
    };
    let dm_gaps = gaps(dm);
    let span: Duration = dm_gaps.iter().sum();
    assert!(
        span < Duration::from_millis(1500),
        "a DM is paced only per second: {dm_gaps:?}"
    );
    for chat in [group, supergroup] {
        let g = gaps(chat);
        // 500 ms apart, give or take the HTTP round trip of one call
        let span: Duration = g.iter().sum();
        assert!(
            g.iter().all(|d| *d >= Duration::from_millis(350))
                && span >= Duration::from_millis(2200),
            "groups and supergroups keep the group pace: {chat} {g:?}"
        );
    }
}

/// The default bot-wide cap (30 messages a second) holds across many chats sending at once.
#[tokio::test]
async fn the_bot_wide_pace_holds_across_chats() {
    let fake = FakeBotApi::start().await;
    let cfg = telegram_cfg(&fake.url(), |_| {});
    assert_eq!(cfg.limit_per_second, 30, "Telegram's documented default");
    let m = Arc::new(TelegramMessenger::new(
        telegram::bot_with(&SecretString::from("123:TEST"), &cfg).unwrap(),
    ));
    let t = StdInstant::now();
    let tasks: Vec<_> = (1..=61_i64)
        .map(|chat| {
            let m = m.clone();
            tokio::spawn(async move { m.send(&Outbound::html(chat, "hi")).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let took = t.elapsed();
    let times: Vec<Instant> = fake
        .call_times("sendMessage")
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(times.len(), 61);
    let span = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    // 61 messages at 30/s: 60 intervals of 33 ms
    assert!(span >= Duration::from_millis(1900), "{span:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    let per_second = |from: Instant| {
        times
            .iter()
            .filter(|t| **t >= from && **t < from + Duration::from_secs(1))
            .count()
    };
    assert!(
        times.iter().all(|t| per_second(*t) <= 31),
        "never over 30 in a second"
    );
}

#[tokio::test]
async fn a_malformed_update_is_skipped_and_polling_continues() {
    let app = TgApp::start().await;
    mount_default(&app.llm, completion("Answered.")).await;
    let (a, b) = (alice().id, bob().id);
    // one batch: good, no update_id, absurd nesting, wrong type, good
    app.fake.push_update(FakeBotApi::text_message(
        10,
        Chat::private(a, "Alice"),
        alice(),
        1,
        "first",
    ));
    let mut no_id = FakeBotApi::text_message(0, Chat::private(b, "Bob"), bob(), 9, "lost");
    no_id.as_object_mut().unwrap().remove("update_id");
    app.fake.push_raw_update(None, &no_id.to_string());
    app.fake
        .push_raw_update(Some(12), &deep_update(12, 100_000));
    app.fake.push_raw_update(
        Some(13),
        r#"{"update_id":13,"message":{"message_id":"x","chat":42,"text":7}}"#,
    );
    app.fake.push_update(FakeBotApi::text_message(
        14,
        Chat::private(b, "Bob"),
        bob(),
        2,
        "second",
    ));
    app.wait_done(a, 1).await;
    app.wait_done(b, 2).await;
    // polling goes on after the batch
    app.fake.push_update(FakeBotApi::text_message(
        15,
        Chat::private(a, "Alice"),
        alice(),
        3,
        "third",
    ));
    app.wait_done(a, 3).await;
    assert_eq!(delivered(&app.fake, a).len(), 2);
    assert_eq!(delivered(&app.fake, b).len(), 1);
    let polls = app.fake.calls_to("getUpdates");
    assert!(polls.iter().any(|p| p["offset"].as_i64() == Some(16)));
    assert_eq!(app.fake.pending_updates(), 0, "every update confirmed");
    app.stop().await;
}

/// An update whose message text sits `depth` arrays deep.
fn deep_update(id: i64, depth: usize) -> String {
    format!(
        r#"{{"update_id":{id},"message":{{"message_id":5,"date":1,"chat":{{"id":7,"type":"private","first_name":"Eve"}},"text":{}"nested secret words"{}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// Item 3 through the real binary: a batch with undecodable updates next to a DM; stderr (at
/// debug level) names the skipped update ids and holds none of the conversation text.
#[tokio::test]
async fn logs_name_skipped_updates_by_id_and_never_hold_message_text() {
    use std::process::Stdio;
    let fake = FakeBotApi::start().await;
    let llm = wiremock::MockServer::start().await;
    mount_default(&llm, completion("Reply to the private note.")).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("hearth.db");
    // queued before start: all in the first getUpdates batch
    fake.push_update(FakeBotApi::text_message(
        1,
        Chat::private(101, "Alice"),
        alice(),
        1,
        "my private note about the surprise party",
    ));
    fake.push_raw_update(
        Some(2),
        r#"{"update_id":2,"message":{"message_id":2,"chat":{"id":102,"type":"private","first_name":"Bob"},"from":{"id":102,"is_bot":false,"first_name":"Bob"},"date":"yesterday","text":"bob's diary entry"}}"#,
    );
    fake.push_raw_update(Some(3), &deep_update(3, 5000));
    fake.push_raw_update(
        None,
        r#"{"message":{"message_id":4,"text":"carol's bank details"}}"#,
    );
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TELEGRAM_BOT_TOKEN", "123:SUPERSECRET")
        .env("OPENAI_API_KEY", "sk-test")
        .env("HEARTH_TELEGRAM__API_URL", fake.url())
        .env("HEARTH_TELEGRAM__POLL_TIMEOUT", "1s")
        .env("HEARTH_LLM__BASE_URL", format!("{}/v1", llm.uri()))
        .env(
            "HEARTH_DATABASE__URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        )
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let sent = fake
        .wait_for("sendMessage", 1, Duration::from_secs(20))
        .await;
    assert_eq!(sent[0]["text"], "Reply to the private note.");
    // and polling went on past the bad updates
    fake.push_update(FakeBotApi::text_message(
        5,
        Chat::private(101, "Alice"),
        alice(),
        5,
        "one more private thought",
    ));
    fake.wait_for("sendMessage", 2, Duration::from_secs(20))
        .await;
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    let logs = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    let skipped: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("could not be decoded"))
        .collect();
    assert_eq!(skipped.len(), 3, "{logs}");
    assert!(
        skipped.iter().any(|l| l.contains("update_id=Some(2)")),
        "{logs}"
    );
    assert!(
        skipped.iter().any(|l| l.contains("update_id=Some(3)")),
        "{logs}"
    );
    assert!(
        skipped.iter().any(|l| l.contains("update_id=None")),
        "{logs}"
    );
    for text in [
        "surprise party",
        "diary",
        "nested secret",
        "bank details",
        "private thought",
        "Reply to the private note",
        "SUPERSECRET",
    ] {
        assert!(!logs.contains(text), "{text:?} in the logs:\n{logs}");
    }
}

/// `text` without ANSI colour sequences (ESC `[` … letter).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Collects what the console prints.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_console_saves_images_and_prints_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("data").join("images");
    let out = Buffer::default();
    let m = ConsoleMessenger::new(Box::new(out.clone())).with_image_dir(&images);
    let png = vec![0x89, b'P', b'N', b'G', 1, 2, 3];
    m.send_photo(hearth::console::GROUP_ID, png.clone(), "🏆 Leaderboard")
        .await
        .unwrap();
    let printed = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let files: Vec<_> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(std::fs::read(&files[0]).unwrap(), png);
    assert!(
        printed.contains(&files[0].display().to_string()) && printed.contains("🏆 Leaderboard"),
        "{printed}"
    );
}

/// The console binary end to end: a chore is done and approved, `/leaderboard` draws the chart,
/// and the PNG lands next to the SQLite file.
#[test]
fn the_console_binary_saves_the_leaderboard_chart_next_to_the_database() {
    use std::{io::Write, process::Stdio};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("hearth.db");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("console")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "HEARTH_DATABASE__URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"alice: hi\nbob: hello\nalice: /addchore dishes\nalice: /done dishes\n/as bob\n/press 1\nalice: /leaderboard\n/quit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let images = dir.path().join("data").join("images");
    let files: Vec<_> = std::fs::read_dir(&images)
        .unwrap_or_else(|e| panic!("{e}: {text}"))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{text}");
    let png = std::fs::read(&files[0]).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG file");
    assert!(
        text.contains(&format!("[image {}", files[0].display())),
        "{text}"
    );
    assert!(!text.contains("[image, "), "{text}");
}
