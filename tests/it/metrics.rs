//! Prometheus `/metrics` (issue 11 item 5): the exposition is valid text format, counters move
//! when a turn, a routine fire and an approval happen, the bearer token guards the main
//! listener, and it is off by default. Served over real HTTP (`http::serve` on port 0).
//!
//! The registry is process-wide and counters only grow, so assertions compare a scrape before
//! and after the event (other tests running in parallel can only add).
use std::collections::HashMap;

use hearth::{
    clock::Clock,
    config::{Config, MetricsConfig},
    routines::{self, CreateRequest, RoutineEngine},
    testkit::Script,
    types::UserRef,
};
use secrecy::SecretString;

use crate::support::*;

/// One parsed sample: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn is_label_name(s: &str) -> bool {
    is_name(s) && !s.contains(':')
}

fn number(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parse `name="value",…` (escapes `\\`, `\"`, `\n`); None when malformed.
fn label_set(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut out = vec![];
    while !s.is_empty() {
        let (name, rest) = s.split_once("=\"")?;
        if !is_label_name(name) {
            return None;
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    _ => return None,
                },
                (_, '\n') => return None,
                (_, c) => value.push(c),
            }
        };
        out.push((name.to_string(), value));
        s = &rest[end + 1..];
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// A strict check of the text exposition (Prometheus text format 0.0.4 / OpenMetrics 1.0 text):
/// every line is `# HELP name text`, `# TYPE name type`, `# UNIT name unit`, a final `# EOF`,
/// or a sample `name{labels} value`; a family is typed before its samples, and a sample's name
/// is its family's name plus a suffix allowed for the type. Panics naming the bad line.
fn parse(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = vec![];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "exposition must end with # EOF"
    );
    for (n, line) in lines.iter().enumerate() {
        let bad = || panic!("line {}: not valid exposition: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            if rest == "EOF" {
                assert_eq!(n + 1, lines.len(), "# EOF before the end");
                continue;
            }
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, arg) = (parts.next(), parts.next(), parts.next());
            let (Some(kw), Some(name)) = (kw, name) else {
                bad()
            };
            if !is_name(name) {
                bad();
            }
            match (kw, arg) {
                ("HELP", Some(_)) => {}
                ("UNIT", Some(u)) if is_label_name(u) && name.ends_with(&format!("_{u}")) => {}
                ("TYPE", Some(t))
                    if [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "untyped",
                        "unknown",
                        "info",
                        "stateset",
                        "gaugehistogram",
                    ]
                    .contains(&t) =>
                {
                    assert!(
                        types.insert(name.to_string(), t.to_string()).is_none(),
                        "line {}: second TYPE for {name}",
                        n + 1
                    );
                }
                _ => bad(),
            }
            continue;
        }
        // sample: name[{labels}] value [timestamp]
        let (name, labels, rest) = match line.find('{') {
            Some(i) if line[..i].find(' ').is_none() => {
                let Some(close) = line.rfind("} ") else { bad() };
                let Some(l) = label_set(&line[i + 1..close]) else {
                    bad()
                };
                (&line[..i], l, &line[close + 2..])
            }
            _ => {
                let Some((name, rest)) = line.split_once(' ') else {
                    bad()
                };
                (name, vec![], rest)
            }
        };
        if !is_name(name) {
            bad();
        }
        let mut fields = rest.split(' ');
        let Some(value) = fields.next().and_then(number) else {
            bad()
        };
        if let Some(ts) = fields.next() {
            if number(ts).is_none() {
                bad();
            }
        }
        if fields.next().is_some() {
            bad();
        }
        let family = types
            .iter()
            .filter(|(f, _)| name.starts_with(f.as_str()))
            .max_by_key(|(f, _)| f.len());
        let Some((family, ty)) = family else {
            panic!("line {}: sample {name} before its # TYPE", n + 1)
        };
        let suffix = &name[family.len()..];
        let allowed: &[&str] = match ty.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            _ => &[""],
        };
        assert!(
            allowed.contains(&suffix),
            "line {}: {name} is not a sample name of {ty} {family}",
            n + 1
        );
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// Sum of the samples named `name` whose labels include every pair of `with`.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .sum()
}

/// Serve the main router of `store` with `cfg`'s metrics over HTTP; returns the base URL.
async fn serve(store: &hearth::store::Store, cfg: &MetricsConfig) -> String {
    let app = hearth::http::with_metrics(
        hearth::http::router(store.clone(), Default::default()),
        cfg,
        store.clone(),
    );
    let (addr, _task) = hearth::http::serve(
        "127.0.0.1:0".parse().unwrap(),
        app,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    format!("http://{addr}")
}

fn on_main(token: &str) -> MetricsConfig {
    MetricsConfig {
        enabled: true,
        listen: None,
        token: Some(SecretString::from(token.to_string())),
    }
}

async fn scrape(base: &str, token: &str) -> Vec<Sample> {
    let r = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    parse(&r.text().await.unwrap())
}

fn jack() -> UserRef {
    user(10, "Jack")
}
fn lottie() -> UserRef {
    user(11, "Lottie")
}

#[tokio::test]
async fn metrics_are_off_by_default_404() {
    let cfg = test_config();
    assert!(!cfg.metrics.enabled);
    let store = test_store().await;
    let base = serve(&store, &cfg.metrics).await;
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 404);
    // the main listener itself is up
    let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_main_listener_requires_the_bearer_token_401() {
    let store = test_store().await;
    let base = serve(&store, &on_main("s3cret-token")).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/metrics");
    let none = c.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let body = none.text().await.unwrap();
    assert!(!body.contains("hearth_"), "{body}");
    let wrong = c
        .get(&url)
        .bearer_auth("s3cret-tokeX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let short = c.get(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(short.status(), 401);
    // an idle hearth exports its gauge (no inbound message: depth 0 for this store)
    let s = scrape(&base, "s3cret-token").await;
    assert!(s.iter().any(|x| x.name == "hearth_inbound_queue_depth"));
}

#[test]
fn config_refuses_metrics_on_the_main_listener_without_a_token() {
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let e = Config::load(None, env(&[("HEARTH_METRICS__ENABLED", "true")])).unwrap_err();
    assert!(
        e.message.starts_with("metrics.token: required"),
        "{}",
        e.message
    );
    let c = Config::load(
        None,
        env(&[
            ("HEARTH_METRICS__ENABLED", "true"),
            ("HEARTH_METRICS__TOKEN", "abc"),
        ]),
    )
    .unwrap();
    assert!(c.http_enabled(), "metrics on the main listener turns it on");
    let c = Config::load(
        None,
        env(&[
            ("HEARTH_METRICS__ENABLED", "true"),
            ("HEARTH_METRICS__LISTEN", "127.0.0.1:9464"),
        ]),
    )
    .unwrap();
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert!(!c.http_enabled());
    // the token never shows in the config's Debug output
    let c = Config::load(
        None,
        env(&[
            ("HEARTH_METRICS__ENABLED", "true"),
            ("HEARTH_METRICS__TOKEN", "very-secret-value"),
        ]),
    )
    .unwrap();
    assert!(!format!("{c:?}").contains("very-secret-value"));
}

#[tokio::test]
async fn counters_move_on_a_turn_a_fire_and_an_approval() {
    let app = TestApp::with(|_| {}, vec![Script::Text("Hello!".into())]).await;
    let base = serve(&app.store, &on_main("t")).await;
    let before = scrape(&base, "t").await;

    // a turn (a DM always gets an answer)
    app.say(&dm(&alice()), &alice(), "hi there").await;
    // an approval: Jack (first, admin) asks to delete a chore, Lottie approves
    for u in [jack(), lottie(), bob()] {
        app.say(&group(), &u, "hi").await;
    }
    app.say(&group(), &jack(), "/addchore Water plants").await;
    app.say(&group(), &jack(), "/deletechore water plants")
        .await;
    app.say(&group(), &lottie(), "approve 1").await;
    // a routine fire: every 30s, swept 30s later
    let e = RoutineEngine::new(app.hearth.svc.clone(), app.hearth.agent.clone());
    routines::create(
        &app.hearth.svc,
        CreateRequest {
            chat_id: GROUP,
            chat_zone: "UTC".parse().unwrap(),
            owner_id: jack().id,
            name: None,
            prompt: "say tick".into(),
            triggers: vec!["every 30s".into()],
            quiet: false,
            max_ticks: None,
            max_runs_per_day: None,
        },
    )
    .await
    .unwrap();
    app.clock.advance(chrono::Duration::seconds(30));
    e.sweep(app.clock.now()).await.unwrap();
    e.settle().await;

    let after = scrape(&base, "t").await;
    let moved =
        |name: &str, with: &[(&str, &str)]| sum(&after, name, with) - sum(&before, name, with);
    assert!(
        moved(
            "hearth_turns_total",
            &[("source", "message"), ("outcome", "ok")]
        ) >= 1.0
    );
    assert!(moved("hearth_turns_total", &[("source", "routine")]) >= 1.0);
    assert!(moved("hearth_turn_duration_seconds_count", &[]) >= 2.0);
    assert!(moved("hearth_model_tokens_total", &[("kind", "prompt")]) >= 20.0);
    assert!(moved("hearth_model_tokens_total", &[("kind", "completion")]) >= 1.0);
    assert!(
        moved(
            "hearth_routine_fires_total",
            &[("trigger", "every"), ("status", "fired")]
        ) >= 1.0
    );
    assert!(moved("hearth_model_cost_usd_total", &[]) > 0.0);
    assert!(moved("hearth_routine_runs_total", &[("status", "completed")]) >= 1.0);
    assert!(moved("hearth_approvals_total", &[("outcome", "approved")]) >= 1.0);
    assert_eq!(
        sum(&after, "hearth_inbound_queue_depth", &[]),
        0.0,
        "every inbound message of this store is finished"
    );
    // the histogram's buckets are cumulative and end at +Inf = _count
    let inf = sum(
        &after,
        "hearth_turn_duration_seconds_bucket",
        &[("le", "+Inf")],
    );
    assert_eq!(inf, sum(&after, "hearth_turn_duration_seconds_count", &[]));
}

#[test]
fn the_parser_refuses_malformed_lines() {
    let ok = "# HELP x_total A.\n# TYPE x counter\nx_total{a=\"b\\\"c\"} 1\n# EOF\n";
    assert_eq!(parse(ok)[0].labels, vec![("a".into(), "b\"c".into())]);
    for bad in [
        "# TYPE x counter\nx_total{a=b} 1\n# EOF\n",
        "# TYPE x counter\nx 1\n# EOF\n",
        "# TYPE x counter\nx_total one\n# EOF\n",
        "y 1\n# EOF\n",
        "# TYPE x counter\nx_total 1\n",
    ] {
        let r = std::panic::catch_unwind(|| parse(bad));
        assert!(r.is_err(), "accepted: {bad:?}");
    }
}

#[tokio::test]
async fn bot_api_calls_count_by_method_and_outcome_including_429() {
    use hearth::{messenger::Messenger, telegram, types::Outbound};
    let fake = crate::support::fake_telegram::FakeBotApi::start().await;
    let mut cfg = test_config().telegram;
    cfg.api_url = fake.url();
    cfg.retry_max_wait = std::time::Duration::from_secs(5);
    let bot = telegram::bot_with(&SecretString::from("123:TEST"), &cfg).unwrap();
    let m = telegram::TelegramMessenger::new(bot);
    let store = test_store().await;
    let base = serve(&store, &on_main("t")).await;
    let before = scrape(&base, "t").await;
    // a 429 whose retry_after passes the budget: one attempt, given up at once
    fake.fail_next_in_chat("sendMessage", 7, 429, "Too Many Requests", Some(65));
    m.send(&Outbound::html(7, "hi")).await.unwrap_err();
    m.send(&Outbound::html(8, "hi")).await.unwrap();
    let after = scrape(&base, "t").await;
    let moved = |with: &[(&str, &str)]| {
        sum(&after, "hearth_telegram_api_calls_total", with)
            - sum(&before, "hearth_telegram_api_calls_total", with)
    };
    assert!(moved(&[("method", "sendMessage"), ("outcome", "rate_limited")]) >= 1.0);
    assert!(moved(&[("method", "sendMessage"), ("outcome", "ok")]) >= 1.0);
}

#[tokio::test]
async fn a_fire_past_the_daily_cap_counts_as_capped() {
    let app = TestApp::with(|_| {}, vec![]).await;
    app.say(&group(), &jack(), "hi").await;
    let base = serve(&app.store, &on_main("t")).await;
    let before = scrape(&base, "t").await;
    let e = RoutineEngine::new(app.hearth.svc.clone(), app.hearth.agent.clone());
    routines::create(
        &app.hearth.svc,
        CreateRequest {
            chat_id: GROUP,
            chat_zone: "UTC".parse().unwrap(),
            owner_id: jack().id,
            name: None,
            prompt: "say tick".into(),
            triggers: vec!["every 30s".into()],
            quiet: false,
            max_ticks: None,
            max_runs_per_day: Some(1),
        },
    )
    .await
    .unwrap();
    for _ in 0..2 {
        app.clock.advance(chrono::Duration::seconds(30));
        e.sweep(app.clock.now()).await.unwrap();
        e.settle().await;
    }
    let after = scrape(&base, "t").await;
    let moved =
        |name: &str, with: &[(&str, &str)]| sum(&after, name, with) - sum(&before, name, with);
    let fires = "hearth_routine_fires_total";
    assert!(moved(fires, &[("trigger", "every"), ("status", "capped")]) >= 1.0);
    assert!(moved("hearth_routine_runs_total", &[("status", "skipped")]) >= 1.0);
}

#[test]
fn the_binary_refuses_metrics_on_the_main_listener_without_a_token() {
    let out = crate::binary::hearth()
        .arg("run")
        .env("TELEGRAM_BOT_TOKEN", "123:TEST")
        .env("HEARTH_METRICS__ENABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics.token: required"), "{err}");
}

/// The real binary with `/metrics` on its own address (main listener off): a scrape there needs
/// no token, parses, and shows the turn and the Bot API calls of a group mention.
#[tokio::test]
async fn real_binary_serves_metrics_on_its_own_address() {
    use crate::support::{
        fake_telegram::{Chat, FakeBotApi, User},
        tg::{completion, mount_default},
    };
    let fake = FakeBotApi::start().await;
    let llm = wiremock::MockServer::start().await;
    mount_default(&llm, completion("Hello.")).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(crate::binary::BIN)
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TELEGRAM_BOT_TOKEN", "123:TEST")
        .env("OPENAI_API_KEY", "sk-test")
        .env("HEARTH_TELEGRAM__API_URL", fake.url())
        .env("HEARTH_TELEGRAM__POLL_TIMEOUT", "1s")
        .env("HEARTH_LLM__BASE_URL", format!("{}/v1", llm.uri()))
        .env(
            "HEARTH_DATABASE__URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("h.db").display()),
        )
        .env("HEARTH_METRICS__ENABLED", "true")
        .env("HEARTH_METRICS__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
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
    fake.wait_for("sendMessage", 1, std::time::Duration::from_secs(20))
        .await;
    let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = parse(&r.text().await.unwrap());
    assert!(sum(&s, "hearth_turns_total", &[("source", "message")]) >= 1.0);
    assert!(
        sum(
            &s,
            "hearth_telegram_api_calls_total",
            &[("method", "sendMessage"), ("outcome", "ok")]
        ) >= 1.0
    );
    assert!(s.iter().any(|x| x.name == "hearth_inbound_queue_depth"));
    child.kill().await.unwrap();
}
