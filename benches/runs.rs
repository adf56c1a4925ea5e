//! Run engine benchmark (issue 9), on a SQLite file with the real clock, an instant scripted
//! model and a recording messenger.
//!
//! Reports:
//! 1. engine overhead per step, excluding model time: runs of 10 `message` steps (render,
//!    step run row, outbox, the conditional commit) and of 10 `prompt` steps (the same plus an
//!    agent turn against the instant model), p50 / p99 of the per-step time over `BENCH_RUNS`
//!    runs (default 200);
//! 2. `BENCH_WAITING` runs (default 10,000) waiting on timers: the idle sweep (nothing due)
//!    p50 / p99, the process RSS growth over the empty database, then, sweeping once a second
//!    as the scheduler does, the resume lateness (when the step after the wait started − when
//!    the wait ended, measured at the messenger: runs are pruned to the last 50 per routine) p50
//!    / p99 once all come due.
//!
//! Run: `cargo bench --bench runs` (env `BENCH_RUNS`, `BENCH_WAITING`, `BENCH_WAIT_SECS`
//! (default 120: the timer, longer than it takes to start the waiting runs)).
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use hearth::{
    agent::llm::ChatModel,
    app,
    clock::{SharedClock, SystemClock},
    config::Config,
    messenger::{Messenger, SendError, Sent},
    routines::{
        self,
        runner::{start_run, StartRun, Started},
        CreateRequest, RoutineEngine,
    },
    services::BotIdentity,
    store::{RoutineRow, RunSource, RunStatus, Store},
    testkit::ScriptedModel,
    types::{Button, Outbound},
};

/// A messenger that, like Telegram, keeps nothing of what it was sent (a recording test double
/// would hold every progress message and edit of the 10,000 runs and count in their RSS), hands
/// out message ids, and notes when each "resumed <run id>" message was sent.
#[derive(Clone, Default)]
struct Timing {
    next_id: Arc<std::sync::atomic::AtomicI64>,
    resumed: Arc<Mutex<HashMap<i64, DateTime<Utc>>>>,
}

impl Timing {
    fn sent(&self) -> Sent {
        Sent {
            message_id: self
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1,
            text: String::new(),
        }
    }
}

#[async_trait]
impl Messenger for Timing {
    async fn send(&self, msg: &Outbound) -> Result<Vec<Sent>, SendError> {
        if let Some(id) = msg.html.strip_prefix("resumed ") {
            if let Ok(id) = id.trim().parse() {
                self.resumed.lock().unwrap().insert(id, Utc::now());
            }
        }
        Ok(vec![self.sent()])
    }
    async fn edit(
        &self,
        chat_id: i64,
        message_id: i64,
        html: &str,
        buttons: &[Vec<Button>],
    ) -> Result<(), SendError> {
        let _ = (chat_id, message_id, html, buttons);
        Ok(())
    }
    async fn answer_callback(
        &self,
        id: &str,
        text: Option<&str>,
        alert: bool,
    ) -> Result<(), SendError> {
        let _ = (id, text, alert);
        Ok(())
    }
    async fn typing(&self, chat_id: i64) -> Result<(), SendError> {
        let _ = chat_id;
        Ok(())
    }
    async fn send_photo(
        &self,
        chat_id: i64,
        png: Vec<u8>,
        caption_html: &str,
    ) -> Result<Sent, SendError> {
        let _ = (chat_id, png, caption_html);
        Ok(self.sent())
    }
}
use serde_json::json;

const GROUP: i64 = -1001;

/// The cadence of the app's `sqlite-checkpoint` job.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);

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

/// Resident set size of this process in MB (Linux).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    hearth::app::tune_allocator();
    // RUST_LOG=hearth=debug shows the engine's own log on stderr (nothing by default)
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn routine(engine: &RoutineEngine, name: &str, def: serde_json::Value) -> RoutineRow {
    let svc = engine.services();
    let c = routines::create(
        svc,
        CreateRequest {
            chat_id: GROUP,
            chat_zone: "UTC".parse().unwrap(),
            owner_id: 1,
            name: Some(name.into()),
            prompt: "bench".into(),
            triggers: vec!["event member_joined".into()],
            quiet: false,
            max_ticks: None,
            max_runs_per_day: None,
        },
    )
    .await
    .unwrap();
    svc.store
        .set_routine_definition(c.routine.id, Some(&def.to_string()), true)
        .await
        .unwrap();
    c.routine
}

async fn start(engine: &RoutineEngine, r: &RoutineRow) -> i64 {
    match start_run(
        engine.services(),
        StartRun {
            routine_id: r.id,
            source: RunSource::Manual,
            trigger_id: None,
            started_by: 1,
            inputs: Default::default(),
            scheduled_for: None,
            catch_up: false,
            parent_run_id: None,
            depth: 0,
        },
    )
    .await
    .unwrap()
    {
        Started::Run(id) => id,
        s => panic!("{s:?}"),
    }
}

async fn run() {
    let runs = env("BENCH_RUNS", 200);
    let waiting = env("BENCH_WAITING", 10_000);
    let wait_secs = env("BENCH_WAIT_SECS", 120);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("runs.db").display());
    let mut cfg = Config::load(None, Vec::<(String, String)>::new()).unwrap();
    cfg.database.url = url.clone();
    cfg.routines.max_per_chat = 1000;
    let store = Store::connect(&url, 5, Duration::from_secs(10))
        .await
        .unwrap();
    let model = ScriptedModel::new(vec![]);
    let timing = Timing::default();
    let agent = app::agent(
        &cfg,
        Some(Arc::new(model.clone()) as Arc<dyn ChatModel>),
        std::path::Path::new("prompts"),
    )
    .unwrap();
    let hearth = app::core(
        Arc::new(cfg),
        store.clone(),
        Arc::new(SystemClock) as SharedClock,
        Arc::new(timing.clone()),
        BotIdentity {
            id: 999,
            username: "hearth_bot".into(),
            name: "Hearth".into(),
        },
        agent,
    );
    let engine = RoutineEngine::with_owner(hearth.svc.clone(), hearth.agent.clone(), "bench");
    let svc = engine.services();
    // the app's `sqlite-checkpoint` system job (src/app/jobs.rs): a PASSIVE checkpoint every
    // 30 s (automatic checkpoints are off), without which the WAL grows for the whole bench
    let wal = svc.store.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CHECKPOINT_EVERY);
        loop {
            every.tick().await;
            let _ = wal.checkpoint().await;
        }
    });
    svc.store
        .upsert_chat(GROUP, "group", "Home", "UTC", chrono::Utc::now())
        .await
        .unwrap();

    // 1. overhead per step
    for (label, kind) in [("message", "message"), ("prompt", "prompt")] {
        let steps: Vec<_> = (0..10)
            .map(|i| match kind {
                "message" => {
                    json!({"kind": "message", "text": format!("step {i} of run {{{{run.id}}}}")})
                }
                _ => json!({"kind": "prompt", "prompt": format!("step {i}: say ok")}),
            })
            .collect();
        let r = routine(
            &engine,
            &format!("steps_{label}"),
            json!({ "steps": steps }),
        )
        .await;
        let mut per_step = Vec::new();
        for _ in 0..runs {
            let id = start(&engine, &r).await;
            let t = std::time::Instant::now();
            engine.claim_runs(chrono::Utc::now()).await.unwrap();
            engine.settle().await;
            per_step.push(t.elapsed().as_secs_f64() * 1000.0 / 10.0);
            let row = svc.store.run(id).await.unwrap().unwrap();
            assert_eq!(row.status, RunStatus::Completed, "{row:?}");
        }
        println!(
            "overhead per {label} step (10-step runs × {runs}): p50 {:.3} ms, p99 {:.3} ms",
            pct(&mut per_step, 0.5),
            pct(&mut per_step, 0.99)
        );
    }

    // 2. waiting runs
    let rss0 = rss_mb();
    let r = routine(
        &engine,
        "waiter",
        json!({"steps": [
            {"kind": "wait", "duration": format!("{wait_secs}s")},
            {"kind": "message", "text": "resumed {{run.id}}"}
        ]}),
    )
    .await;
    let t = std::time::Instant::now();
    let mut ids = Vec::with_capacity(waiting as usize);
    for _ in 0..waiting {
        ids.push(start(&engine, &r).await);
    }
    loop {
        let n = engine.claim_runs(chrono::Utc::now()).await.unwrap();
        engine.settle().await;
        if n == 0 {
            break;
        }
    }
    let setup = t.elapsed().as_secs_f64();
    let mut due = HashMap::new();
    for id in &ids {
        let row = svc.store.run(*id).await.unwrap().unwrap();
        assert_eq!(row.status, RunStatus::Waiting);
        due.insert(*id, row.wake_at.unwrap());
    }
    println!("{waiting} runs started and waiting in {setup:.1} s");
    assert!(
        setup < wait_secs as f64,
        "raise BENCH_WAIT_SECS: the first timers ran out while starting"
    );
    let mut idle = Vec::new();
    for _ in 0..100 {
        let t = std::time::Instant::now();
        let rep = engine.sweep(chrono::Utc::now()).await.unwrap();
        idle.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(rep.queued_started, 0);
    }
    let rss1 = rss_mb();
    println!(
        "idle sweep with {waiting} waiting runs: p50 {:.3} ms, p99 {:.3} ms; RSS {rss0:.1} → {rss1:.1} MB (+{:.1} MB)",
        pct(&mut idle, 0.5),
        pct(&mut idle, 0.99),
        rss1 - rss0
    );
    // the scheduler's cadence: one sweep a second until every run resumed
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let deadline = std::time::Instant::now() + Duration::from_secs(wait_secs + setup as u64 + 120);
    loop {
        tick.tick().await;
        engine.sweep(chrono::Utc::now()).await.unwrap();
        engine.settle().await;
        let pending = svc
            .store
            .claimable_runs(chrono::Utc::now() + chrono::Duration::days(1), 1)
            .await
            .unwrap();
        if pending.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
    }
    let resumed = timing.resumed.lock().unwrap().clone();
    let mut late: Vec<f64> = ids
        .iter()
        .filter_map(|id| {
            Some((*resumed.get(id)? - *due.get(id)?).num_milliseconds() as f64 / 1000.0)
        })
        .collect();
    println!(
        "resume lateness ({} of {waiting} resumed): p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        late.len(),
        pct(&mut late, 0.5),
        pct(&mut late, 0.99),
        late.last().copied().unwrap_or(f64::NAN)
    );
}
