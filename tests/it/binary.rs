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

const BIN: &str = env!("CARGO_BIN_EXE_hearth");

fn hearth() -> Command {
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
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "object": "list", "data": [{"id": "test-model", "object": "model", "created": 1, "owned_by": "me"}]
        })))
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
        text.contains("model endpoint: ok (1 models, test-model available)"),
        "{text}"
    );

    // a model the endpoint does not list is reported and fails the check
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
