//! Replicas benchmark (issue 12): 1, 2 and 3 `hearth run` processes (the release binary) in
//! webhook mode on one PostgreSQL database, a fake Bot API and a fake OpenAI-compatible model
//! answering every call in `BENCH_MODEL_MS` (default 300 ms), `BENCH_CHATS` groups (default
//! 1,000) × `BENCH_PER_CHAT` mentions (default 5) POSTed round-robin over the replicas' webhook
//! listeners (each chat's messages in order, chats concurrently).
//!
//! Reports per replica count: messages answered per second (first POST → last reply), the
//! latency from a message's accepted POST to its reply at the fake Bot API (p50 / p99), and the
//! p99 of each replica's wait for a database connection (`hearth_db_pool_wait_seconds`, read from
//! its `/metrics`: every acquisition of the pool, recorded by sqlx). Telegram's pacing and the
//! model-call cap are raised in the replicas' config so the database and the processes are what
//! is measured. Goals (issue 12): 3 replicas ≥ 2.5 × one replica; pool wait p99 ≤ 10 ms.
//!
//! PostgreSQL: `BENCH_DATABASE_URL` (a server URL whose user may create databases), else a
//! throwaway cluster started with the server binaries in `/usr/lib/postgresql/*/bin` (run as
//! root: the cluster runs as user `postgres`), else the bench says so and exits.
//!
//! Run: `cargo bench --bench replicas`.
#[path = "../tests/it/support/fake_telegram.rs"]
#[allow(unused_imports)] // its unit tests' imports (benches build with cfg(test))
mod fake_telegram;

use std::{
    collections::HashMap,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use fake_telegram::{Chat, FakeBotApi, User};

const SECRET: &str = "bench-secret";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throwaway PostgreSQL cluster (stopped and removed on drop).
struct Postgres {
    bin: String,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Start one on a free loopback port; `None` when the server binaries or the `postgres`
    /// user are missing. Returns the server URL too.
    fn start() -> Option<(Postgres, String)> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()?
            .display()
            .to_string();
        let dir = tempfile::tempdir().ok()?;
        let d = dir.path().display().to_string();
        let port = free_port();
        let su = |cmd: String| {
            Command::new("su")
                .args(["postgres", "-c", &cmd])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        Command::new("chown").args(["postgres", &d]).status().ok()?;
        if !su(format!("{bin}/initdb -D {d}/db -A trust -U postgres")) {
            return None;
        }
        let started = su(format!(
            "{bin}/pg_ctl -D {d}/db -w -l {d}/log -o '-p {port} -k {d} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off' start"
        ));
        started.then(|| {
            (
                Postgres { bin, dir },
                format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            )
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("su")
            .args([
                "postgres",
                "-c",
                &format!(
                    "{}/pg_ctl -D {}/db -m fast stop",
                    self.bin,
                    self.dir.path().display()
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One `hearth run` process.
struct Replica {
    child: tokio::process::Child,
    port: u16,
    metrics_port: u16,
}

impl Replica {
    async fn start(fake: &FakeBotApi, llm: &str, db: &str) -> Replica {
        let (port, metrics_port) = (free_port(), free_port());
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TELEGRAM_BOT_TOKEN", "123:BENCH")
            .env("OPENAI_API_KEY", "sk-bench")
            .env("HEARTH_TELEGRAM__API_URL", fake.url())
            .env("HEARTH_TELEGRAM__MODE", "webhook")
            .env(
                "HEARTH_TELEGRAM__WEBHOOK_URL",
                "https://bot.example.test/telegram/webhook",
            )
            .env("HEARTH_TELEGRAM__WEBHOOK_SECRET", SECRET)
            .env("HEARTH_TELEGRAM__LIMIT_PER_SECOND", "100000")
            .env("HEARTH_TELEGRAM__LIMIT_PER_CHAT_PER_SECOND", "1000")
            .env("HEARTH_TELEGRAM__LIMIT_PER_GROUP_PER_MINUTE", "100000")
            .env("HEARTH_TELEGRAM__LIMIT_GROUP_BURST", "1000")
            .env("HEARTH_LLM__BASE_URL", format!("{llm}/v1"))
            .env("HEARTH_LLM__MAX_CONCURRENT_CALLS", "2000")
            .env("HEARTH_DATABASE__URL", db)
            .env(
                "HEARTH_DATABASE__MAX_CONNECTIONS",
                std::env::var("BENCH_POOL").unwrap_or_else(|_| "10".into()),
            )
            .env("HEARTH_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("HEARTH_METRICS__ENABLED", "true")
            .env(
                "HEARTH_METRICS__LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            )
            .env("HEARTH_GROUP__FLOOD_BUDGET", "1000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start hearth");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
            {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "replica not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Replica {
            child,
            port,
            metrics_port,
        }
    }

    /// p99 of the pool wait (s) from this replica's `hearth_db_pool_wait_seconds` histogram:
    /// the upper bound of the first bucket holding 99 % of the acquisitions.
    async fn pool_wait_p99(&self) -> Option<f64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let mut buckets: Vec<(f64, f64)> = text
            .lines()
            .filter(|l| l.starts_with("hearth_db_pool_wait_seconds_bucket"))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                let n: f64 = l.rsplit(' ').next()?.parse().ok()?;
                Some((le, n))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        buckets
            .iter()
            .find(|(_, n)| *n >= 0.99 * total)
            .map(|(le, _)| *le)
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

fn update(c: u64, i: u64) -> serde_json::Value {
    FakeBotApi::text_message(
        (c * 100 + i) as i64 + 1,
        Chat::group(-1_000_000 - c as i64, "Bench group"),
        User::new(10_000 + c as i64, "Ann").with_username("ann"),
        (i + 10) as i64,
        &format!("@hearth_bot question {i}"),
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One measure with `n` replicas: (msg/s, latency p50 s, p99 s, pool wait p99 per replica).
async fn measure(
    n: usize,
    admin_url: &str,
    llm: &str,
    chats: u64,
    per_chat: u64,
) -> (f64, f64, f64, Vec<Option<f64>>) {
    let name = format!("hearth_bench_{n}_{}", std::process::id());
    hearth::store::Store::create_postgres_database(admin_url, &name)
        .await
        .expect("create the bench database");
    let db = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let fake = FakeBotApi::start().await;
    let mut replicas = Vec::new();
    for _ in 0..n {
        replicas.push(Replica::start(&fake, llm, &db).await);
    }
    let ports: Arc<Vec<u16>> = Arc::new(replicas.iter().map(|r| r.port).collect());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let accepted: Arc<std::sync::Mutex<HashMap<(i64, i64), Instant>>> = Default::default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..chats {
        let (ports, client, accepted) = (ports.clone(), client.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per_chat {
                let port = ports[((c + i) as usize) % ports.len()];
                let r = client
                    .post(format!("http://127.0.0.1:{port}/telegram/webhook"))
                    .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
                    .json(&update(c, i))
                    .send()
                    .await
                    .expect("webhook POST");
                assert_eq!(r.status(), 200);
                accepted
                    .lock()
                    .unwrap()
                    .insert((-1_000_000 - c as i64, (i + 10) as i64), Instant::now());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = (chats * per_chat) as usize;
    let deadline = Instant::now() + Duration::from_secs(600);
    let replies = loop {
        let r = fake.call_times("sendMessage");
        if r.len() >= total || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took = replies
        .iter()
        .map(|(_, at)| at.into_std())
        .max()
        .unwrap_or_else(Instant::now)
        - started;
    let accepted = accepted.lock().unwrap().clone();
    let mut lat: Vec<f64> = replies
        .iter()
        .filter_map(|(body, at)| {
            let params = match &body["reply_parameters"] {
                serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or_default(),
                v => v.clone(),
            };
            let key = (body["chat_id"].as_i64()?, params["message_id"].as_i64()?);
            Some(
                at.into_std()
                    .saturating_duration_since(*accepted.get(&key)?)
                    .as_secs_f64(),
            )
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let mut pool = Vec::new();
    for r in &replicas {
        pool.push(r.pool_wait_p99().await);
    }
    for r in replicas {
        r.stop().await;
    }
    assert_eq!(replies.len(), total, "every message answered");
    (
        total as f64 / took.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        pool,
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (chats, per_chat) = (env("BENCH_CHATS", 1_000), env("BENCH_PER_CHAT", 5));
        let model_ms = env("BENCH_MODEL_MS", 300);
        let mut _pg = None;
        let admin = match std::env::var("BENCH_DATABASE_URL") {
            Ok(u) => u,
            Err(_) => match Postgres::start() {
                Some((pg, url)) => {
                    _pg = Some(pg);
                    url
                }
                None => {
                    println!("replicas bench skipped: no PostgreSQL (set BENCH_DATABASE_URL or install the server binaries)");
                    return;
                }
            },
        };
        let llm = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path("/v1/chat/completions"))
            .respond_with(
                wiremock::ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({
                        "id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                        "model": "bench-model",
                        "choices": [{"index": 0, "message": {"role": "assistant",
                            "content": "answer"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
                    }))
                    .set_delay(Duration::from_millis(model_ms)),
            )
            .mount(&llm)
            .await;
        println!(
            "replicas: {chats} chats × {per_chat} messages over webhooks, model {model_ms} ms, PostgreSQL, {} cores",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        );
        let mut one = None;
        for n in 1..=3 {
            let (rate, p50, p99, pool) = measure(n, &admin, &llm.uri(), chats, per_chat).await;
            let base = *one.get_or_insert(rate);
            let pool: Vec<String> = pool
                .iter()
                .map(|p| match p {
                    Some(s) if s.is_finite() => format!("≤{:.1} ms", s * 1e3),
                    Some(_) => "> 5 s".into(),
                    None => "n/a".into(),
                })
                .collect();
            println!(
                "{n} replica(s): {rate:.0} msg/s ({:.2}× one), latency p50 {:.0} ms, p99 {:.0} ms, pool wait p99 per replica [{}]",
                rate / base,
                p50 * 1e3,
                p99 * 1e3,
                pool.join(", ")
            );
        }
    });
}
