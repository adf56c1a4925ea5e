//! Approval replies: parse + resolve of "approve both" (2 requests) and "approve all"
//! (20 requests) through the real service path (actionable list query, parser, one
//! conditional transition + audit row + chore archive per request, the reply and the message
//! edits) on in-memory SQLite with a recording messenger. Setup (opening the requests) is not
//! timed. Prints p50 / p99 in µs from its own timing loop, then runs criterion (mean/median).
//!
//! Run: `cargo bench --bench workflows`

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use hearth::{
    agent::{prompt::Prompt, Agent, ToolRegistry},
    app,
    clock::{ManualClock, SharedClock},
    config::Config,
    core::Hearth,
    services::{BotIdentity, Services},
    store::Store,
    testkit::RecordingMessenger,
    workflow::{self, parse, Viewer},
};
use tokio::runtime::Runtime;

const GROUP: i64 = -1001;
const JACK: i64 = 10;
const LOTTIE: i64 = 11;

struct Bench {
    rt: Runtime,
    hearth: Arc<Hearth>,
    messenger: RecordingMessenger,
    round: std::cell::Cell<u64>,
}

fn setup() -> Bench {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let messenger = RecordingMessenger::default();
    let hearth = rt.block_on(async {
        let mut cfg = Config::load(None, Vec::<(String, String)>::new()).expect("config");
        cfg.database.url = "sqlite::memory:".into();
        let store = Store::memory().await.expect("store");
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        let clock: SharedClock = Arc::new(ManualClock::new(now));
        store
            .upsert_chat(GROUP, "group", "Home", "UTC", now)
            .await
            .unwrap();
        for (id, name) in [(JACK, "Jack"), (LOTTIE, "Lottie")] {
            store
                .upsert_user(id, name, Some(&name.to_lowercase()), now)
                .await
                .unwrap();
            store.ensure_member(GROUP, id, false, now).await.unwrap();
        }
        let agent = Agent::new(None, ToolRegistry::foundation(), Prompt::builtin());
        app::core(
            Arc::new(cfg),
            store,
            clock,
            Arc::new(messenger.clone()),
            BotIdentity {
                id: 999,
                username: "hearth_bot".into(),
                name: "Hearth".into(),
            },
            agent,
        )
    });
    Bench {
        rt,
        hearth,
        messenger,
        round: 0.into(),
    }
}

impl Bench {
    fn svc(&self) -> &Services {
        &self.hearth.svc
    }

    /// Open `n` fresh deletion requests by Jack (untimed).
    fn prepare(&self, n: usize) {
        let r = self.round.get() + 1;
        self.round.set(r);
        self.rt.block_on(async {
            for i in 0..n {
                let c = hearth::chores::add(self.svc(), GROUP, JACK, &format!("Chore {r}-{i}"))
                    .await
                    .unwrap();
                match hearth::chores::request_deletion(
                    self.svc(),
                    GROUP,
                    JACK,
                    &format!("#{}", c.id),
                )
                .await
                .unwrap()
                {
                    hearth::chores::Deletion::Requested { .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        });
        self.messenger.clear();
    }

    /// Time Lottie's reply `text` (parse + resolve + reply); asserts everything got approved.
    fn resolve(&self, text: &str, n: usize) -> Duration {
        let v = Viewer {
            user_id: LOTTIE,
            chat_id: GROUP,
            private: false,
        };
        let t = Instant::now();
        let handled = self.rt.block_on(workflow::handle_reply(
            self.svc(),
            v,
            text,
            false,
            None,
            None,
        ));
        let d = t.elapsed();
        assert!(handled.unwrap(), "not handled as an approval");
        let reply = self.messenger.texts_to(GROUP).pop().unwrap_or_default();
        assert_eq!(reply.matches("✅ Approved").count(), n, "{reply}");
        d
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn report(b: &Bench, name: &str, text: &str, n: usize, iters: usize) {
    let mut v: Vec<Duration> = (0..iters)
        .map(|_| {
            b.prepare(n);
            b.resolve(text, n)
        })
        .collect();
    v.sort();
    println!(
        "{name}: n={iters} p50={:.0} µs p99={:.0} µs max={:.0} µs",
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        percentile(&v, 1.0)
    );
}

fn parse_only() {
    let titles: Vec<String> = (0..20).map(|i| format!("Chore {i}")).collect();
    let items: Vec<parse::ActionableItem<'_>> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| parse::ActionableItem {
            number: i + 1,
            title: t,
        })
        .collect();
    for (name, text, k) in [
        ("approve both", "approve both", 2),
        ("approve all", "approve all", 20),
    ] {
        let mut v: Vec<Duration> = (0..2000)
            .map(|_| {
                let t = Instant::now();
                let o = parse::parse_reply(std::hint::black_box(text), &items[..k], false);
                let d = t.elapsed();
                assert!(matches!(o, parse::ParseOutcome::Resolve(_)));
                d
            })
            .collect();
        v.sort();
        println!(
            "parse only, {name}: p50={:.2} µs p99={:.2} µs",
            percentile(&v, 0.5),
            percentile(&v, 0.99)
        );
    }
}

fn bench(c: &mut Criterion) {
    let b = setup();
    // warm-up, then the p99 loops
    for _ in 0..20 {
        b.prepare(2);
        b.resolve("approve both", 2);
    }
    report(
        &b,
        "parse+resolve 'approve both' (2 requests)",
        "approve both",
        2,
        500,
    );
    report(
        &b,
        "parse+resolve 'approve all' (20 requests)",
        "approve all",
        20,
        200,
    );
    parse_only();

    let mut g = c.benchmark_group("workflows");
    g.sample_size(30).measurement_time(Duration::from_secs(5));
    g.bench_function("approve_both", |bn| {
        bn.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    b.prepare(2);
                    b.resolve("approve both", 2)
                })
                .sum()
        })
    });
    g.bench_function("approve_all_20", |bn| {
        bn.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    b.prepare(20);
                    b.resolve("approve all", 20)
                })
                .sum()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
