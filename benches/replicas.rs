//! Replicas benchmark (issue 12): 1, 2 and 3 `hearth run` processes (the release binary) in
//! webhook mode on one PostgreSQL database, a fake Bot API and a fake OpenAI-compatible model
//! answering every call in `BENCH_MODEL_MS` (default 300 ms). Two loads per replica count:
//! - **burst**: `BENCH_CHATS` groups (default 1,000) × `BENCH_PER_CHAT` mentions (default 5)
//!   POSTed at once, round-robin over the replicas' webhook listeners (each chat's messages in
//!   order, chats concurrently): the most the processes and the database answer;
//! - **paced**: `BENCH_PACED_CHATS` other groups (default 200) × the same count at
//!   `BENCH_PACE` messages a second (default 100): a load the deployment is sized for.
//!
//! Reports per load: messages answered per second (first POST → last reply), the latency from a
//! message's accepted POST to its reply at the fake Bot API (p50 / p99), the p99 of each
//! replica's wait for a database connection during the load (`hearth_db_pool_wait_seconds`,
//! read from its `/metrics` before and after: every acquisition of the pool, recorded by sqlx),
//! and the CPU time per answered message of the replicas, of PostgreSQL and of the bench
//! process (load, fake Bot API, fake model), from `/proc`: all of them share the machine's
//! cores, so when their sum × the rate reaches the core count, more replicas cannot answer more.
//! Telegram's pacing and the model-call cap are raised in the replicas' config so the database
//! and the processes are what is measured. Goals (issue 12): 3 replicas ≥ 2.5 × one replica;
//! pool wait p99 ≤ 10 ms.
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

    /// This replica's `hearth_db_pool_wait_seconds` histogram: (upper bound s, cumulative
    /// count) per bucket, from its `/metrics`.
    async fn pool_wait_buckets(&self) -> Vec<(f64, f64)> {
        let Ok(r) = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port)).await
        else {
            return vec![];
        };
        let text = r.text().await.unwrap_or_default();
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
        buckets
    }

    /// CPU time (user + system, s) this replica's process has used so far.
    fn cpu_seconds(&self) -> f64 {
        self.child.id().map(cpu_of).unwrap_or(0.0)
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

/// p99 (s) of the acquisitions between two snapshots of a pool wait histogram: the upper
/// bound of the first bucket holding 99 % of them (`None`: none happened).
fn p99_between(before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let diff: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |(_, m)| *m);
            (*le, n - was)
        })
        .collect();
    let total = diff.last()?.1;
    if total <= 0.0 {
        return None;
    }
    diff.iter()
        .find(|(_, n)| *n >= 0.99 * total)
        .map(|(le, _)| *le)
}

/// CPU time (user + system, s) used so far by process `pid` (Linux `/proc/<pid>/stat`).
fn cpu_of(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // fields after the command name (which may hold spaces) start at field 3
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0 // USER_HZ
}

/// CPU time (s) used so far by every process named `postgres` (the server and its backends;
/// a backend that exited meanwhile is not counted).
fn postgres_cpu() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_of)
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What one load phase measured.
struct Phase {
    /// Messages answered per second (first POST → last reply).
    rate: f64,
    /// Latency from a message's accepted POST to its reply, p50 and p99, s.
    p50: f64,
    p99: f64,
    /// Each replica's pool wait p99 during the phase, s (`None`: no acquisition).
    pool: Vec<Option<f64>>,
    /// CPU per answered message, ms: the replicas together, PostgreSQL, and this process (the
    /// load, the fake Bot API and the fake model).
    cpu_ms: [f64; 3],
}

/// One load phase on running replicas: chats `first..first + chats` × `per_chat` messages
/// POSTed round-robin over the replicas' listeners: all at once (each chat's messages in order,
/// chats concurrently) when `pace` is `None`, else `pace` messages a second (message 1 of every
/// chat, then message 2, …).
async fn phase(
    replicas: &[Replica],
    fake: &FakeBotApi,
    first: u64,
    chats: u64,
    per_chat: u64,
    pace: Option<f64>,
) -> Phase {
    let ports: Arc<Vec<u16>> = Arc::new(replicas.iter().map(|r| r.port).collect());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let accepted: Arc<std::sync::Mutex<HashMap<(i64, i64), Instant>>> = Default::default();
    let seen = fake.call_times("sendMessage").len();
    let mut buckets = Vec::new();
    for r in replicas {
        buckets.push(r.pool_wait_buckets().await);
    }
    let cpu0 = [
        replicas.iter().map(Replica::cpu_seconds).sum::<f64>(),
        postgres_cpu(),
        cpu_of(std::process::id()),
    ];
    let post = {
        let (ports, client, accepted) = (ports.clone(), client.clone(), accepted.clone());
        move |c: u64, i: u64| {
            let (ports, client, accepted) = (ports.clone(), client.clone(), accepted.clone());
            async move {
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
        }
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    match pace {
        None => {
            for c in first..first + chats {
                let post = post.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..per_chat {
                        post(c, i).await;
                    }
                }));
            }
        }
        Some(rate) => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            for i in 0..per_chat {
                for c in first..first + chats {
                    tick.tick().await;
                    tasks.push(tokio::spawn(post(c, i)));
                }
            }
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = (chats * per_chat) as usize;
    let deadline = Instant::now() + Duration::from_secs(600);
    let replies = loop {
        let r = fake.call_times("sendMessage");
        if r.len() >= seen + total || Instant::now() > deadline {
            break r[seen..].to_vec();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = replies
        .iter()
        .map(|(_, at)| at.into_std())
        .max()
        .unwrap_or_else(Instant::now)
        - started;
    let cpu1 = [
        replicas.iter().map(Replica::cpu_seconds).sum::<f64>(),
        postgres_cpu(),
        cpu_of(std::process::id()),
    ];
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
    for (r, before) in replicas.iter().zip(&buckets) {
        pool.push(p99_between(before, &r.pool_wait_buckets().await));
    }
    assert_eq!(replies.len(), total, "every message answered");
    let per_msg = |k: usize| (cpu1[k] - cpu0[k]) * 1e3 / total as f64;
    Phase {
        rate: total as f64 / took.as_secs_f64(),
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        pool,
        cpu_ms: [per_msg(0), per_msg(1), per_msg(2)],
    }
}

/// `n` replicas on a fresh database: the burst, then the paced load (`pace` msg/s over
/// `paced_chats` other chats).
async fn measure(
    n: usize,
    admin_url: &str,
    llm: &str,
    (chats, per_chat): (u64, u64),
    (pace, paced_chats): (f64, u64),
) -> (Phase, Phase) {
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
    let burst = phase(&replicas, &fake, 0, chats, per_chat, None).await;
    let paced = phase(&replicas, &fake, chats, paced_chats, per_chat, Some(pace)).await;
    for r in replicas {
        r.stop().await;
    }
    (burst, paced)
}

/// "[≤2.5 ms, ≤5.0 ms]": each replica's pool wait p99 (a bucket's upper bound).
fn pool_text(pool: &[Option<f64>]) -> String {
    let each: Vec<String> = pool
        .iter()
        .map(|p| match p {
            Some(s) if s.is_finite() => format!("≤{:.1} ms", s * 1e3),
            Some(_) => "> 5 s".into(),
            None => "none".into(),
        })
        .collect();
    format!("[{}]", each.join(", "))
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
        let pace = env("BENCH_PACE", 100) as f64;
        let paced_chats = env("BENCH_PACED_CHATS", 200);
        let mut one = None;
        for n in 1..=3 {
            let (burst, paced) = measure(
                n,
                &admin,
                &llm.uri(),
                (chats, per_chat),
                (pace, paced_chats),
            )
            .await;
            let base = *one.get_or_insert(burst.rate);
            let cpu = |p: &Phase| {
                format!(
                    "CPU per message {:.1} ms in the replicas, {:.1} ms in PostgreSQL, {:.1} ms in the load and fakes",
                    p.cpu_ms[0], p.cpu_ms[1], p.cpu_ms[2]
                )
            };
            println!(
                "{n} replica(s), burst: {:.0} msg/s ({:.2}× one), latency p50 {:.0} ms, p99 {:.0} ms, pool wait p99 per replica {}; {}",
                burst.rate,
                burst.rate / base,
                burst.p50 * 1e3,
                burst.p99 * 1e3,
                pool_text(&burst.pool),
                cpu(&burst)
            );
            println!(
                "{n} replica(s), paced {pace:.0} msg/s: latency p50 {:.0} ms, p99 {:.0} ms, pool wait p99 per replica {}; {}",
                paced.p50 * 1e3,
                paced.p99 * 1e3,
                pool_text(&paced.pool),
                cpu(&paced)
            );
        }
    });
}
