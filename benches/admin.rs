//! Web admin benchmark (issue 11, figures): server time of admin pages over a big history, and
//! the overview's page weight.
//!
//! Seeds a SQLite file: one group (Home, -1001; Alice admin, Bob, Carol), 10 routines,
//! `BENCH_RUNS` runs (default 100,000) and as many turns spread over the last 365 days (so the
//! 30-day plots aggregate about 8,200 of each), 5,000 chore completions, and `BENCH_MESSAGES`
//! stored messages (default 1,000,000) — bulk inserts of 1,000 rows a statement in
//! transactions. Then it serves the real admin router on 127.0.0.1 and GETs each path of
//! `BENCH_PATHS` (comma-separated; default the overview `/admin/g/-1001` and the run list
//! `/admin/g/-1001/runs`) `BENCH_ITERS` times (default 200) with a signed-in session, and
//! reports the status, p50 / p99 / max of the time to the whole body (client side, over
//! loopback: an upper bound of the server time) and the body size in bytes. A path that does
//! not answer 200 is reported as such, without timings.
//!
//! Targets (issue 11): p99 ≤ 50 ms; overview page ≤ 100 KB (HTML + SVG + script, all inline).
//!
//! Run: `cargo bench --bench admin` (release). Where no release build exists yet, `cargo bench
//! --bench admin --profile dev` reuses the debug artifacts (much slower: SQLite and plotters
//! unoptimized; an upper bound).
use std::{sync::Arc, time::Duration};

use chrono::{SecondsFormat, Utc};
use hearth::{
    agent::llm::ChatModel,
    app,
    clock::{SharedClock, SystemClock},
    config::Config,
    http::{self, admin::AdminState},
    routines::{self, CreateRequest, RoutineEngine},
    services::BotIdentity,
    store::Store,
    testkit::{RecordingMessenger, ScriptedModel},
};
use sea_orm::{ConnectionTrait, Database};
use tokio_util::sync::CancellationToken;

const GROUP: i64 = -1001;
/// Rows per INSERT statement; statements per transaction.
const BATCH: usize = 1000;
const TXN: usize = 50;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

/// Insert `n` rows into `table (cols)`, `row(i)` giving each row's SQL values, in batches.
async fn bulk(
    db: &sea_orm::DatabaseConnection,
    table: &str,
    cols: &str,
    n: usize,
    row: impl Fn(usize) -> String,
) {
    let mut i = 0;
    while i < n {
        db.execute_unprepared("BEGIN").await.unwrap();
        for _ in 0..TXN {
            if i >= n {
                break;
            }
            let end = (i + BATCH).min(n);
            let values: Vec<String> = (i..end).map(|j| format!("({})", row(j))).collect();
            db.execute_unprepared(&format!(
                "INSERT INTO {table} ({cols}) VALUES {}",
                values.join(",")
            ))
            .await
            .unwrap();
            i = end;
        }
        db.execute_unprepared("COMMIT").await.unwrap();
    }
}

async fn run() {
    let runs = env("BENCH_RUNS", 100_000) as usize;
    let messages = env("BENCH_MESSAGES", 1_000_000) as usize;
    let iters = env("BENCH_ITERS", 200) as usize;
    let paths: Vec<String> = std::env::var("BENCH_PATHS")
        .unwrap_or_else(|_| "/admin/g/-1001,/admin/g/-1001/runs".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("admin.db").display()
    );
    let mut cfg = Config::load(None, Vec::<(String, String)>::new()).unwrap();
    cfg.database.url = url.clone();
    cfg.routines.max_per_chat = 1000;
    let store = Store::connect(&url, 5, Duration::from_secs(10))
        .await
        .unwrap();
    let agent = app::agent(
        &cfg,
        Some(Arc::new(ScriptedModel::new(vec![])) as Arc<dyn ChatModel>),
        std::path::Path::new("prompts"),
    )
    .unwrap();
    let hearth = app::core(
        Arc::new(cfg),
        store.clone(),
        Arc::new(SystemClock) as SharedClock,
        Arc::new(RecordingMessenger::default()),
        BotIdentity {
            id: 999,
            username: "hearth_bot".into(),
            name: "Hearth".into(),
        },
        agent,
    );
    let engine = RoutineEngine::new(hearth.svc.clone(), hearth.agent.clone());
    let now = Utc::now();
    store
        .upsert_chat(GROUP, "group", "Home", "UTC", now)
        .await
        .unwrap();
    for (id, name) in [(1, "Alice"), (2, "Bob"), (3, "Carol")] {
        store.upsert_user(id, name, None, now).await.unwrap();
        store.ensure_member(GROUP, id, id == 1, now).await.unwrap();
    }
    let mut routine_ids = Vec::new();
    for i in 0..10 {
        let c = routines::create(
            engine.services(),
            CreateRequest {
                chat_id: GROUP,
                chat_zone: "UTC".parse().unwrap(),
                owner_id: 1,
                name: Some(format!("routine_{i}")),
                prompt: format!("bench routine {i}"),
                triggers: vec!["event member_joined".into()],
                quiet: i % 3 == 0,
                max_ticks: None,
                max_runs_per_day: None,
            },
        )
        .await
        .unwrap();
        routine_ids.push(c.routine.id);
    }

    // bulk history over the last 365 days
    let seed = std::time::Instant::now();
    let db = Database::connect(&url).await.unwrap();
    let span = 365 * 86_400i64;
    let at = |i: usize, n: usize| {
        (now - chrono::Duration::seconds(span - (i as i64 * span) / n.max(1) as i64))
            .to_rfc3339_opts(SecondsFormat::Secs, false)
    };
    const STATUSES: [&str; 20] = [
        "completed",
        "completed",
        "completed",
        "completed",
        "completed",
        "completed",
        "completed",
        "completed",
        "completed",
        "completed",
        "completed",
        "completed",
        "completed",
        "completed",
        "failed",
        "failed",
        "cancelled",
        "silent",
        "silent",
        "skipped",
    ];
    bulk(
        &db,
        "routine_runs",
        "routine_id, source, catch_up, status, started_at, duration_ms, prompt_tokens, \
         completion_tokens, cost_usd, chat_id, started_by, current_step, depth, cost_warned, \
         loops, finished_at",
        runs,
        |i| {
            let t = at(i, runs);
            format!(
                "{}, 'manual', 0, '{}', '{t}', 1200, 800, 150, 0.0002, {GROUP}, 1, 0, 0, 0, '{{}}', '{t}'",
                routine_ids[i % routine_ids.len()],
                STATUSES[i % STATUSES.len()],
            )
        },
    )
    .await;
    bulk(
        &db,
        "turns",
        "chat_id, source, model, prompt_tokens, completion_tokens, steps, outcome, started_at, \
         duration_ms",
        runs,
        |i| {
            let source = if i % 2 == 0 { "routine" } else { "message" };
            format!(
                "{GROUP}, '{source}', 'gpt-4o-mini', 800, 150, 2, 'ok', '{}', 900",
                at(i, runs)
            )
        },
    )
    .await;
    bulk(
        &db,
        "chore_completions",
        "chore_id, chat_id, user_id, points, completed_at, on_time, swap",
        5_000,
        |i| {
            format!(
                "{}, {GROUP}, {}, 1, '{}', 1, 0",
                1 + i % 20,
                1 + i % 3,
                at(i, 5_000)
            )
        },
    )
    .await;
    bulk(
        &db,
        "messages",
        "chat_id, sender_user_id, sender_name, from_bot, text, created_at",
        messages,
        |i| {
            let who = 1 + i % 3;
            format!(
                "{GROUP}, {who}, 'Member {who}', 0, 'message number {i} about the dishes and the bins', '{}'",
                at(i, messages)
            )
        },
    )
    .await;
    db.execute_unprepared("ANALYZE").await.unwrap();
    let seeded = seed.elapsed();
    println!(
        "seeded {runs} runs, {runs} turns, 5000 completions, {messages} messages in {:.1} s",
        seeded.as_secs_f64()
    );

    // the overview's aggregates alone (store calls, no HTTP, no drawing)
    let since = Utc::now() - chrono::Duration::days(30);
    for (name, n) in [
        ("runs_per_day", 0),
        ("usage_per_day", 1),
        ("chores_done_per_day", 2),
    ] {
        let mut ms = Vec::new();
        for _ in 0..30 {
            let t = std::time::Instant::now();
            match n {
                0 => drop(store.runs_per_day(GROUP, since).await.unwrap()),
                1 => drop(store.usage_per_day(GROUP, since).await.unwrap()),
                _ => drop(store.chores_done_per_day(GROUP, since).await.unwrap()),
            }
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        println!("store {name}: p50 {:.2} ms", pct(&mut ms, 0.5));
    }

    // a signed-in session for Alice, and the real admin router on loopback
    let token = http::admin::auth::issue_link(&store, Utc::now(), 1)
        .await
        .unwrap();
    let id = http::admin::auth::open_session(&store, Utc::now(), &token)
        .await
        .unwrap()
        .expect("session");
    let cookie = format!("{}={id}", http::admin::auth::COOKIE);
    let stop = CancellationToken::new();
    let (addr, _task) = http::serve(
        "127.0.0.1:0".parse().unwrap(),
        http::admin::router(AdminState::new(engine.clone(), None)),
        stop.clone(),
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();

    for path in &paths {
        let get = || async {
            let t = std::time::Instant::now();
            let r = client
                .get(format!("http://{addr}{path}"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.bytes().await.unwrap();
            (status, body.len(), t.elapsed().as_secs_f64() * 1000.0)
        };
        let (status, bytes, _) = get().await;
        if !status.is_success() {
            println!("GET {path}: {status} (not measured)");
            continue;
        }
        for _ in 0..5 {
            get().await;
        }
        let mut ms = Vec::with_capacity(iters);
        for _ in 0..iters {
            ms.push(get().await.2);
        }
        let (p50, p99) = (pct(&mut ms, 0.50), pct(&mut ms, 0.99));
        let max = ms.last().copied().unwrap_or(f64::NAN);
        println!(
            "GET {path}: {status}, {bytes} bytes ({:.1} KB), {iters} requests: p50 {p50:.2} ms, \
             p99 {p99:.2} ms, max {max:.2} ms",
            bytes as f64 / 1024.0
        );
    }
    stop.cancel();
}
