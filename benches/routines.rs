//! Routine engine benchmark: 10,000 active routines (200 groups × 50) on a SQLite file.
//!
//! Reports (1) the sweep's cost per tick when nothing is due, (2) the sweep's cost per tick and
//! the fire lateness (run start − scheduled slot, including the 1 s tick granularity) p50/p99
//! while every routine fires once a minute (`every 60s`, slots spread evenly: ~167 fires a
//! second), with an instant scripted model and a recording messenger, on the real clock.
//!
//! Run: `cargo bench --bench routines` (env `BENCH_SECS`, default 65: how long the firing phase
//! runs in real time).
use std::{sync::Arc, time::Duration};

use chrono::Utc;
use hearth::{
    agent::llm::ChatModel,
    app,
    clock::{SharedClock, SystemClock},
    config::Config,
    routines::{self, CreateRequest, RoutineEngine},
    services::BotIdentity,
    store::Store,
    testkit::{RecordingMessenger, ScriptedModel},
};

const GROUPS: i64 = 200;
const PER_GROUP: i64 = 50;

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

async fn run() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(65);
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let mut cfg = Config::load(None, Vec::<(String, String)>::new()).unwrap();
    cfg.database.url = url.clone();
    let store = Store::connect(&url, 5, Duration::from_secs(10))
        .await
        .unwrap();
    let model = ScriptedModel::new(vec![]);
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
        Arc::new(RecordingMessenger::default()),
        BotIdentity {
            id: 999,
            username: "hearth_bot".into(),
            name: "Hearth".into(),
        },
        agent,
    );
    let engine = RoutineEngine::new(hearth.svc.clone(), hearth.agent.clone());

    let t = std::time::Instant::now();
    let now = Utc::now();
    let mut trigger_ids = Vec::new();
    for g in 0..GROUPS {
        let chat = -1_000_000 - g;
        store
            .upsert_chat(chat, "group", &format!("Home {g}"), "Europe/London", now)
            .await
            .unwrap();
        for i in 0..PER_GROUP {
            let c = routines::create(
                &hearth.svc,
                CreateRequest {
                    chat_id: chat,
                    chat_zone: "Europe/London".parse().unwrap(),
                    owner_id: 1,
                    name: Some(format!("r{i}")),
                    prompt: "Say hi ({tickCount})".into(),
                    triggers: vec!["every 60s".into()],
                    quiet: false,
                    max_ticks: None,
                    max_runs_per_day: None,
                },
            )
            .await
            .unwrap();
            trigger_ids.push(c.triggers[0].id);
        }
    }
    println!(
        "setup: {} routines in {:.1} s",
        trigger_ids.len(),
        t.elapsed().as_secs_f64()
    );

    // 1. idle: nothing due (first fires are a minute away)
    let mut idle = Vec::new();
    for _ in 0..50 {
        let t = std::time::Instant::now();
        let r = engine.sweep(Utc::now()).await.unwrap();
        assert_eq!(r.claimed, 0);
        idle.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "idle sweep (nothing due, 10,000 active): p50 {:.2} ms, p99 {:.2} ms",
        pct(&mut idle, 0.5),
        pct(&mut idle.clone(), 0.99)
    );

    // 2. busy: spread the slots evenly over the next minute
    let base = Utc::now() + chrono::Duration::seconds(2);
    for (i, id) in trigger_ids.iter().enumerate() {
        let at =
            base + chrono::Duration::milliseconds((i as i64 * 60_000) / trigger_ids.len() as i64);
        store.set_trigger_next_fire(*id, Some(at)).await.unwrap();
    }
    let mut busy = Vec::new();
    let mut claimed = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        tick.tick().await;
        let t = std::time::Instant::now();
        let r = engine.sweep(Utc::now()).await.unwrap();
        claimed += r.claimed;
        busy.push((t.elapsed().as_secs_f64() * 1000.0, r.claimed));
    }
    engine.settle().await;
    let mut costs: Vec<f64> = busy
        .iter()
        .filter(|(_, c)| *c > 0)
        .map(|(ms, _)| *ms)
        .collect();
    let per_fire: Vec<f64> = busy
        .iter()
        .filter(|(_, c)| *c > 0)
        .map(|(ms, c)| ms / *c as f64)
        .collect();
    println!(
        "busy sweep ({} ticks, {} fires claimed): per tick p50 {:.1} ms, p99 {:.1} ms; per claimed fire mean {:.2} ms",
        busy.len(),
        claimed,
        pct(&mut costs, 0.5),
        pct(&mut costs.clone(), 0.99),
        per_fire.iter().sum::<f64>() / per_fire.len().max(1) as f64
    );
    let mut late = Vec::new();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for g in 0..GROUPS {
        for r in store.routines_of_chat(-1_000_000 - g).await.unwrap() {
            for run in store.routine_runs(r.id, 100).await.unwrap() {
                *statuses.entry(run.status.to_string()).or_default() += 1;
                if let Some(s) = run.scheduled_for {
                    late.push((run.started_at - s).num_milliseconds() as f64);
                }
            }
        }
    }
    println!(
        "fire lateness over {} runs (start − slot, includes ≤1 s tick granularity): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; statuses {:?}; model calls {}",
        late.len(),
        pct(&mut late, 0.5),
        pct(&mut late.clone(), 0.99),
        late.iter().cloned().fold(0.0, f64::max),
        statuses,
        model.calls()
    );
}
