//! The real `hearth` binary as a process: configuration errors, `check`, and `run` against the
//! fake Bot API and a fake model server, stopped with SIGTERM.
use std::{
    process::{Command, Stdio},
    time::Duration,
};

use crate::support::{
    fake_telegram::{Chat, FakeBotApi, User},
    tg::{completion, mount_default},
};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_hearth");

pub(crate) fn hearth() -> Command {
    let mut c = Command::new(BIN);
    // a clean environment: no inherited HEARTH_* or tokens
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

#[test]
fn run_without_token_is_a_clear_config_error() {
    let out = hearth().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("telegram.token"), "{err}");
    assert!(err.contains("TELEGRAM_BOT_TOKEN"), "{err}");
}

#[test]
fn config_typo_and_bad_env_value_exit_2_naming_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hearth.toml");
    std::fs::write(&file, "[llm]\nmodle = \"x\"\n").unwrap();
    let out = hearth()
        .args(["--config", file.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("llm.modle") && err.contains("hearth.toml"),
        "{err}"
    );

    let out = hearth()
        .arg("check")
        .env("HEARTH_GROUP__REPLY_MODE", "sometimes")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("group.reply_mode") && err.contains("HEARTH_GROUP__REPLY_MODE"),
        "{err}"
    );
}

#[test]
fn env_override_wins_over_file_and_secrets_are_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hearth.toml");
    std::fs::write(
        &file,
        "[llm]\nmodel = \"file-model\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
    )
    .unwrap();
    let out = hearth()
        .args(["--config", file.to_str().unwrap(), "check"])
        .env("HEARTH_LLM__MODEL", "env-model")
        .env("TELEGRAM_BOT_TOKEN", "123:SUPERSECRET")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("env-model"), "{text}");
    assert!(!text.contains("file-model"));
    assert!(text.contains("telegram.token: set"));
    assert!(!text.contains("SUPERSECRET"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn real_binary_answers_a_group_mention_and_stops_on_sigterm() {
    let fake = FakeBotApi::start().await;
    let llm = wiremock::MockServer::start().await;
    mount_default(&llm, completion("Hello from the real binary.")).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("hearth.db");
    let port = free_port();
    let child = tokio::process::Command::new(BIN)
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TELEGRAM_BOT_TOKEN", "123:SUPERSECRET")
        .env("OPENAI_API_KEY", "sk-secret-key")
        .env("HEARTH_TELEGRAM__API_URL", fake.url())
        .env("HEARTH_TELEGRAM__POLL_TIMEOUT", "1s")
        .env("HEARTH_LLM__BASE_URL", format!("{}/v1", llm.uri()))
        .env(
            "HEARTH_DATABASE__URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        )
        .env("HEARTH_HTTP__ENABLED", "true")
        .env("HEARTH_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    fake.push_update(FakeBotApi::text_message(
        0,
        Chat::group(-500, "Flat"),
        User::new(7, "Alice").with_username("alice"),
        1,
        "@hearth_bot hello?",
    ));
    let sent = fake
        .wait_for("sendMessage", 1, Duration::from_secs(20))
        .await;
    assert_eq!(sent[0]["chat_id"].as_i64(), Some(-500));
    assert_eq!(sent[0]["text"], "Hello from the real binary.");
    assert!(
        db.exists(),
        "the SQLite file and its folder are created on first run"
    );

    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert!(!fake.calls_to("setMyCommands").is_empty());

    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "graceful stop exits 0");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("stopped"), "{logs}");
    assert!(!logs.contains("SUPERSECRET"), "bot token leaked into logs");
    assert!(!logs.contains("sk-secret-key"), "API key leaked into logs");
}

#[test]
fn console_runs_without_token_or_model() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("console.db");
    let mut child = hearth()
        .arg("console")
        .env(
            "HEARTH_DATABASE__URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        )
        .env("HEARTH_LLM__API_KEY", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"alice: hello everyone\nbob: @hearth are you there?\n/members\n/dm\nsecret plans\n/press 3\n/quit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("hearth → group: No model is configured"),
        "{text}"
    );
    assert!(
        text.contains("Alice @alice (admin)") && text.contains("• Bob @bob"),
        "{text}"
    );
    assert!(text.contains("(private chat with bob)"), "{text}");
    assert!(
        text.contains("hearth → DM Bob: No model is configured"),
        "{text}"
    );
    assert!(text.contains("(no button 3"), "{text}");
}

#[tokio::test]
async fn check_online_reports_what_works() {
    let fake = FakeBotApi::start().await;
    let llm = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/v1/models"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "object": "list", "data": [
                    {"id": "test-model", "object": "model", "created": 1, "owned_by": "me"},
                    {"id": "other-model", "object": "model", "created": 1, "owned_by": "me"}
                ]
            })),
        )
        .mount(&llm)
        .await;
    let out = tokio::process::Command::new(BIN)
        .args(["check", "--online"])
        .env_clear()
        .env("TELEGRAM_BOT_TOKEN", "123:TEST")
        .env("OPENAI_API_KEY", "sk-test")
        .env("HEARTH_TELEGRAM__API_URL", fake.url())
        .env("HEARTH_LLM__BASE_URL", format!("{}/v1", llm.uri()))
        .env("HEARTH_LLM__MODEL", "test-model")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("telegram: ok, bot @hearth_bot"), "{text}");
    assert!(
        text.contains("model endpoint: ok (2 models, test-model available)"),
        "{text}"
    );

    // a model a multi-model endpoint does not list is reported and fails the check
    let out = tokio::process::Command::new(BIN)
        .args(["check", "--online"])
        .env_clear()
        .env("TELEGRAM_BOT_TOKEN", "123:TEST")
        .env("OPENAI_API_KEY", "sk-test")
        .env("HEARTH_TELEGRAM__API_URL", fake.url())
        .env("HEARTH_LLM__BASE_URL", format!("{}/v1", llm.uri()))
        .env("HEARTH_LLM__MODEL", "gpt-9")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("gpt-9 NOT listed"));
}

// ---- issue 8: durability across process boundaries (webhook mode: updates POSTed directly) ----

const WEBHOOK_SECRET: &str = "s3cret-token";

/// A fresh database URL for the real binary: a SQLite file in `dir`, or a new Postgres database
/// when `HEARTH_TEST_DATABASE_URL` names a Postgres server.
pub(crate) async fn binary_db_url(dir: &std::path::Path) -> String {
    match std::env::var("HEARTH_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let name = format!(
                "hearth_bin_{}_{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
                    % 1_000_000_000
            );
            hearth::store::Store::create_postgres_database(&url, &name)
                .await
                .unwrap();
            let base = url.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
            format!("{base}/{name}")
        }
        _ => format!("sqlite://{}?mode=rwc", dir.join("hearth.db").display()),
    }
}

/// `hearth run` in webhook mode with short leases (2 s for messages and run steps, heartbeat
/// 0.5 s, recovery every 1 s);
/// stderr goes to `log`.
pub(crate) struct Daemon {
    child: tokio::process::Child,
    port: u16,
}

impl Daemon {
    pub(crate) async fn start(
        fake: &FakeBotApi,
        llm: &str,
        db_url: &str,
        log: &std::path::Path,
    ) -> Daemon {
        Self::start_with(fake, llm, db_url, log, &[]).await
    }

    /// [`Daemon::start`] with more environment variables (`HEARTH_…` overrides).
    pub(crate) async fn start_with(
        fake: &FakeBotApi,
        llm: &str,
        db_url: &str,
        log: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Daemon {
        Self::launch(&fake.url(), llm, db_url, log, extra).await
    }

    /// `hearth run` against the Bot API at `api_url`: webhook mode and short leases unless
    /// `extra` overrides them; returns once `/readyz` answers 200.
    async fn launch(
        api_url: &str,
        llm: &str,
        db_url: &str,
        log: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Daemon {
        let port = free_port();
        let child = tokio::process::Command::new(BIN)
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TELEGRAM_BOT_TOKEN", "123:TEST")
            .env("OPENAI_API_KEY", "sk-test")
            .env("HEARTH_TELEGRAM__API_URL", api_url)
            .env("HEARTH_TELEGRAM__MODE", "webhook")
            .env(
                "HEARTH_TELEGRAM__WEBHOOK_URL",
                "https://bot.example.test/telegram/webhook",
            )
            .env("HEARTH_TELEGRAM__WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("HEARTH_LLM__BASE_URL", format!("{llm}/v1"))
            .env("HEARTH_DATABASE__URL", db_url)
            .env("HEARTH_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("HEARTH_RUNTIME__LEASE", "2s")
            .env("HEARTH_RUNTIME__HEARTBEAT", "500ms")
            .env("HEARTH_CLUSTER__LEASE", "2s")
            .env("HEARTH_ROUTINES__STEP_LEASE", "2s")
            .env("HEARTH_GROUP__FLOOD_BUDGET", "1000")
            // HEARTH_TEST_DAEMON_LOG raises the processes' log level when a test is diagnosed
            .env(
                "RUST_LOG",
                std::env::var("HEARTH_TEST_DAEMON_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            ))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let d = Daemon { child, port };
        d.wait_ready(Duration::from_secs(60)).await;
        d
    }

    /// POST one update to this process's webhook; returns once hearth accepted it (durable).
    pub(crate) async fn post(&self, update: &serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/telegram/webhook", self.port))
            .header("X-Telegram-Bot-Api-Secret-Token", WEBHOOK_SECRET)
            .json(update)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// The OS process id (the prefix of the process's lease owner id).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// SIGTERM, then wait up to 60 s for the exit; returns the exit code.
    pub(crate) async fn stop_code(mut self) -> Option<i32> {
        let pid = self.child.id()?.to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .ok()?
            .ok()?
            .code()
    }

    pub(crate) fn kill9(mut self) {
        let pid = self.child.id().unwrap().to_string();
        assert!(Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success());
        let _ = self.child.start_kill();
    }

    pub(crate) async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

/// `hearth run` processes for the replica tests (issue 12): polling mode and readiness.
impl Daemon {
    /// `hearth run` in polling mode against `api_url` (the fake's URL, or a prefix of it so that
    /// the fake tells processes apart), leases as [`Daemon::start`] (cluster.lease 2 s, heartbeat
    /// 0.5 s), poll timeout 1 s; stderr goes to `log`. Returns once `/readyz` answers 200.
    pub(crate) async fn start_polling(
        api_url: &str,
        llm: &str,
        db_url: &str,
        log: &std::path::Path,
    ) -> Daemon {
        let polling = [
            ("HEARTH_TELEGRAM__MODE", "polling"),
            ("HEARTH_TELEGRAM__POLL_TIMEOUT", "1s"),
            ("HEARTH_HTTP__ENABLED", "true"),
        ];
        Self::launch(api_url, llm, db_url, log, &polling).await
    }

    /// Wait until `/readyz` answers 200; panics after `timeout`.
    pub(crate) async fn wait_ready(&self, timeout: Duration) {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{}/readyz", self.port))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "daemon not ready in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// (chat id, replied-to message id) of every sendMessage whose text is `text`.
pub(crate) fn replies_with(fake: &FakeBotApi, text: &str) -> Vec<(i64, i64)> {
    fake.calls_to("sendMessage")
        .into_iter()
        .filter(|b| b["text"] == text)
        .map(|b| {
            let params = match &b["reply_parameters"] {
                serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or_default(),
                v => v.clone(),
            };
            let to = params["message_id"]
                .as_i64()
                .or_else(|| b["reply_to_message_id"].as_i64())
                .unwrap_or(0);
            (b["chat_id"].as_i64().unwrap_or(0), to)
        })
        .collect()
}

/// Wait until no reply `text` was sent for `gap` (a moment between two replies).
pub(crate) async fn wait_quiet(fake: &FakeBotApi, text: &str, gap: Duration) {
    let mut seen = replies_with(fake, text).len();
    let mut since = std::time::Instant::now();
    while since.elapsed() < gap {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let n = replies_with(fake, text).len();
        if n != seen {
            (seen, since) = (n, std::time::Instant::now());
        }
    }
}

/// Wait until `n` replies `text` were sent; panics after `timeout`.
pub(crate) async fn wait_replies(fake: &FakeBotApi, text: &str, n: usize, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while replies_with(fake, text).len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} replies after {timeout:?}",
            replies_with(fake, text).len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each expected (chat, message) answered exactly once.
pub(crate) fn assert_each_answered_once(fake: &FakeBotApi, text: &str, expected: &[(i64, i64)]) {
    let got = replies_with(fake, text);
    for key in expected {
        let n = got.iter().filter(|k| *k == key).count();
        assert_eq!(n, 1, "message {key:?} answered {n} times");
    }
    assert_eq!(got.len(), expected.len(), "no reply to anything else");
}

/// 60 mentions: 6 groups × 10 messages. Returns (updates, expected reply keys).
fn sixty_mentions() -> (Vec<serde_json::Value>, Vec<(i64, i64)>) {
    let mut updates = Vec::new();
    let mut keys = Vec::new();
    for i in 0..10i64 {
        for c in 0..6i64 {
            let chat = -600 - c;
            let mid = 100 + i;
            updates.push(FakeBotApi::text_message(
                1_000 + i * 6 + c,
                Chat::group(chat, &format!("Group {c}")),
                User::new(10 + c, "Ann").with_username(&format!("ann{c}")),
                mid,
                &format!("@hearth_bot question {i}"),
            ));
            keys.push((chat, mid));
        }
    }
    (updates, keys)
}

pub(crate) async fn slow_model(delay_ms: u64) -> wiremock::MockServer {
    let llm = wiremock::MockServer::start().await;
    mount_default(
        &llm,
        completion("answer").set_delay(Duration::from_millis(delay_ms)),
    )
    .await;
    llm
}

#[tokio::test]
async fn sigkill_with_60_queued_messages_then_restart_answers_each_once() {
    let fake = FakeBotApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = binary_db_url(dir.path()).await;
    let log = dir.path().join("hearth.log");
    // a slow model (15 s a turn): all 60 are queued, 6 turns in flight, when the process dies
    let slow = slow_model(15_000).await;
    let a = Daemon::start(&fake, &slow.uri(), &db, &log).await;
    let (updates, keys) = sixty_mentions();
    for u in &updates {
        a.post(u).await;
    }
    a.kill9();
    let before = replies_with(&fake, "answer").len();
    assert!(
        before <= 6,
        "killed with messages still queued ({before} answered)"
    );

    let fast = slow_model(0).await;
    let restarted = std::time::Instant::now();
    let b = Daemon::start(&fake, &fast.uri(), &db, &log).await;
    let up = restarted.elapsed();
    wait_replies(&fake, "answer", before + 1, Duration::from_secs(60)).await;
    let first = restarted.elapsed();
    wait_replies(&fake, "answer", 60, Duration::from_secs(60)).await;
    let took = restarted.elapsed();
    println!(
        "SIGKILL recovery: {} queued messages; after the restart: ready {up:.2?}, first answer {first:.2?}, all answered {took:.2?} (lease 2 s)",
        60 - before,
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // nothing more arrives
    assert_each_answered_once(&fake, "answer", &keys);
    b.stop().await;
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("process identity"), "{logs}");
    assert!(logs.contains("recovering unfinished messages"), "{logs}");
}

#[tokio::test]
async fn two_processes_on_one_database_answer_each_message_once() {
    let fake = FakeBotApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = binary_db_url(dir.path()).await;
    let log = dir.path().join("hearth.log");
    let llm = slow_model(700).await;
    let dm = |i: i64, update: i64| {
        FakeBotApi::text_message(
            update,
            Chat::private(500 + i, "Dee"),
            User::new(500 + i, "Dee"),
            1,
            "are you there?",
        )
    };
    let a = Daemon::start(&fake, &llm.uri(), &db, &log).await;
    for i in 0..10 {
        a.post(&dm(i, 2_000 + i)).await;
    }
    // a second process starts while the first is answering (its start-up recovery runs), gets
    // 10 DMs of its own, and Telegram redelivers the first 10 to it as well
    let b = Daemon::start(&fake, &llm.uri(), &db, &log).await;
    for i in 10..20 {
        b.post(&dm(i, 2_000 + i)).await;
    }
    for i in 0..10 {
        b.post(&dm(i, 2_000 + i)).await;
    }
    wait_replies(&fake, "answer", 20, Duration::from_secs(60)).await;
    // longer than a lease plus a recovery pass: nobody answers anything twice
    tokio::time::sleep(Duration::from_secs(4)).await;
    let keys: Vec<(i64, i64)> = (0..20).map(|i| (500 + i, 0)).collect();
    let got: Vec<(i64, i64)> = replies_with(&fake, "answer")
        .into_iter()
        .map(|(c, _)| (c, 0))
        .collect();
    for k in &keys {
        assert_eq!(got.iter().filter(|g| *g == k).count(), 1, "DM {k:?}");
    }
    assert_eq!(got.len(), 20);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn crash_loop_never_fails_untouched_queued_messages() {
    let fake = FakeBotApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = binary_db_url(dir.path()).await;
    let log = dir.path().join("hearth.log");
    // cycle 1: killed with all 60 queued (6 turns in flight on a 15 s model)
    let very_slow = slow_model(15_000).await;
    let (updates, keys) = sixty_mentions();
    let first = Daemon::start(&fake, &very_slow.uri(), &db, &log).await;
    for u in &updates {
        first.post(u).await;
    }
    first.kill9();
    assert!(replies_with(&fake, "answer").len() <= 6);
    // cycles 2 and 3: restarted, killed mid-turn (1 s into a 2 s model call) after one more
    // answer per chat
    let slow = slow_model(2_000).await;
    // one model call per chat at once (6 chats; the default is 4 calls): with fewer slots than
    // chats a restarted message can still be waiting for its slot at the kill, and the bound
    // below counts started turns
    let all_at_once = [("HEARTH_LLM__MAX_CONCURRENT_CALLS", "6")];
    for cycle in 2..=3 {
        let d = Daemon::start_with(&fake, &slow.uri(), &db, &log, &all_at_once).await;
        let seen = replies_with(&fake, "answer").len();
        assert!(
            seen < 54,
            "messages still queued at cycle {cycle} ({seen} answered)"
        );
        wait_replies(&fake, "answer", seen + 6, Duration::from_secs(30)).await;
        // mid-turn, between two replies: a kill between Telegram's answer and the write that
        // records it re-sends that reply (at least once; Telegram has no idempotency key), and
        // with chats taken over one by one the replies no longer come in one wave
        wait_quiet(&fake, "answer", Duration::from_millis(400)).await;
        d.kill9();
    }
    let fast = slow_model(0).await;
    let last = Daemon::start(&fake, &fast.uri(), &db, &log).await;
    wait_replies(&fake, "answer", 60, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_each_answered_once(&fake, "answer", &keys);
    assert!(
        !fake
            .calls_to("sendMessage")
            .iter()
            .any(|b| b["text"].as_str().unwrap_or("").contains("couldn't answer")),
        "nothing was given up"
    );
    last.stop().await;
    let store = hearth::store::Store::connect(&db, 1, Duration::from_secs(5))
        .await
        .unwrap();
    for (chat, mid) in &keys {
        let row = store
            .inbound_by_message(*chat, *mid)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.status, "done", "{chat}/{mid}");
        assert!(row.attempts <= 2, "{chat}/{mid}: {} attempts", row.attempts);
    }
}

/// A multi-step run waiting on a timer survives SIGKILL of the real binary: the routine is
/// imported with `hearth routines import`, started by a member's `/timer` over the webhook, the
/// process is killed while the run waits, and the restarted process sends the step after the
/// wait exactly once, when the timer ends (the wait is a row with a deadline, not a task).
#[tokio::test]
async fn sigkill_while_a_run_waits_then_restart_resumes_it_once() {
    let fake = FakeBotApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = binary_db_url(dir.path()).await;
    let log = dir.path().join("hearth.log");
    let llm = slow_model(0).await;
    let group = Chat::group(-700, "Flat");
    let ann = User::new(70, "Ann");
    let a = Daemon::start(&fake, &llm.uri(), &db, &log).await;
    a.post(&FakeBotApi::text_message(
        7_000,
        group.clone(),
        ann.clone(),
        1,
        "hello",
    ))
    .await;
    let file = dir.path().join("timer.toml");
    std::fs::write(
        &file,
        "name = \"timer\"\n\n[[steps]]\nkind = \"message\"\ntext = \"before the wait\"\n\n\
         [[steps]]\nkind = \"wait\"\nduration = \"5s\"\n\n\
         [[steps]]\nkind = \"message\"\ntext = \"after the wait\"\n",
    )
    .unwrap();
    let out = hearth()
        .args(["routines", "import", file.to_str().unwrap()])
        .args(["--chat", "-700", "--as", "70"])
        .env("HEARTH_DATABASE__URL", &db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.post(&FakeBotApi::text_message(
        7_001,
        group.clone(),
        ann.clone(),
        2,
        "/timer",
    ))
    .await;
    wait_replies(&fake, "before the wait", 1, Duration::from_secs(20)).await;
    // killed while the run waits (a kill between a message's send and its step's commit would
    // send it again: message steps are re-run on takeover)
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let killed = std::time::Instant::now();
    a.kill9();
    assert!(replies_with(&fake, "after the wait").is_empty());

    let b = Daemon::start(&fake, &llm.uri(), &db, &log).await;
    wait_replies(&fake, "after the wait", 1, Duration::from_secs(30)).await;
    let resumed = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(2500)).await; // nothing more arrives
    assert_eq!(replies_with(&fake, "before the wait").len(), 1);
    assert_eq!(
        replies_with(&fake, "after the wait").len(),
        1,
        "resumed once"
    );
    assert!(
        resumed >= Duration::from_secs(2),
        "not before the timer ended: {resumed:?}"
    );
    println!("SIGKILL during a 5 s wait: resumed {resumed:.2?} after the kill");
    b.stop().await;
}
