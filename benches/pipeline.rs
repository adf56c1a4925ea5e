//! Inbound pipeline benchmark: an update persisted, chat and member resolved, the message logged,
//! the context window built, an instant fake model answering, the reply handed to the messenger
//! and recorded — with 1,000 chats and 100,000 stored messages. Includes the durability work of
//! issue 8: the lease taken at accept, the turn start (attempt + lease, one statement), the reply
//! stored before sending and confirmed after; the heartbeat and periodic recovery run beside it.
//! Also the window query alone at two history sizes, to show it does not grow with history.
//!
//! Run: `cargo bench --bench pipeline`. Prints p50/p99 of hearth's own time per message.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use hearth::{
    agent::llm::ChatModel,
    app,
    clock::{ManualClock, SharedClock},
    config::Config,
    core::Hearth,
    services::BotIdentity,
    store::{NewMessage, Store},
    testkit::{RecordingMessenger, Script, ScriptedModel},
    types::{ChatKind, ChatRef, Content, InboundEvent, InboundMessage, UserRef},
};

const CHATS: i64 = 1_000;
const PER_CHAT: i64 = 100;

struct Bench {
    rt: tokio::runtime::Runtime,
    hearth: Arc<Hearth>,
    store: Store,
    clock: ManualClock,
    next_id: std::sync::atomic::AtomicI64,
}

fn setup(dir: &std::path::Path) -> Bench {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let (hearth, store, clock) = rt.block_on(async {
        let store = Store::connect(&url, 4, Duration::from_secs(5))
            .await
            .unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap();
        let mut rows = Vec::new();
        let names: Vec<String> = (0..4).map(|i| format!("Member{i}")).collect();
        let text = "a typical household message about bins, dinner and who is picking up the kids";
        for c in 0..CHATS {
            for i in 0..PER_CHAT {
                rows.push(NewMessage {
                    chat_id: -(10_000 + c),
                    sender_user_id: Some(i % 4 + 1),
                    sender_name: &names[(i % 4) as usize],
                    from_bot: false,
                    text,
                    tg_message_id: Some(i + 1),
                    reply_to: None,
                    created_at: t0 + chrono::Duration::seconds(i * 20),
                });
            }
        }
        store.append_messages_bulk(&rows).await.unwrap();
        let clock = ManualClock::new(t0 + chrono::Duration::minutes(40));
        let shared: SharedClock = Arc::new(clock.clone());
        let mut cfg = Config::load(None, Vec::<(String, String)>::new()).unwrap();
        cfg.database.url = url.clone();
        let model = ScriptedModel::new(vec![]);
        model.set_fallback(Script::Text("Sure, noted.".into()));
        let agent = app::agent(
            &cfg,
            Some(Arc::new(model) as Arc<dyn ChatModel>),
            std::path::Path::new("prompts"),
        )
        .unwrap();
        let bot = BotIdentity {
            id: 999,
            username: "hearth_bot".into(),
            name: "Hearth".into(),
        };
        let hearth = app::core(
            Arc::new(cfg),
            store.clone(),
            shared,
            Arc::new(RecordingMessenger::default()),
            bot,
            agent,
        );
        // the lease heartbeat and periodic recovery, as `hearth run` starts them
        hearth.spawn_lease_tasks(tokio_util::sync::CancellationToken::new());
        // production checkpoints the WAL every 30 s from the scheduler; do the same here
        let ck = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let _ = ck.checkpoint().await;
            }
        });
        (hearth, store, clock)
    });
    Bench {
        rt,
        hearth,
        store,
        clock,
        next_id: 1_000_000.into(),
    }
}

impl Bench {
    /// One addressed group message through the whole pipeline; returns hearth's time.
    fn one(&self, chat: i64) -> Duration {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ev = InboundEvent::Message(InboundMessage {
            update_id: Some(id),
            chat: ChatRef {
                id: chat,
                kind: ChatKind::Group,
                title: "Home".into(),
            },
            from: UserRef {
                id: 1,
                first_name: "Member0".into(),
                username: None,
                is_bot: false,
            },
            message_id: id,
            content: Content::Text {
                text: "@hearth_bot what's for dinner?".into(),
            },
            reply_to: None,
            mentions_bot: true,
            date: hearth::clock::Clock::now(&self.clock),
        });
        self.rt.block_on(async {
            let t = Instant::now();
            self.hearth.accept(ev).await.unwrap();
            self.hearth.idle().await;
            t.elapsed()
        })
    }
}

fn pipeline(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let b = setup(dir.path());
    let mut chat = 0i64;
    c.bench_function(
        "pipeline: addressed group message (1k chats, 100k messages)",
        |bn| {
            bn.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    chat = (chat + 7) % CHATS;
                    total += b.one(-(10_000 + chat));
                }
                total
            })
        },
    );
    // p50 / p99 over a fixed sample
    let mut samples: Vec<Duration> = (0..2_000)
        .map(|i| b.one(-(10_000 + (i * 13) % CHATS)))
        .collect();
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "pipeline latency over {} messages: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        p(0.50),
        p(0.99),
        samples[samples.len() - 1]
    );

    // the window query alone: a chat with 100 messages vs one with 20,000
    let big_chat = -1i64;
    b.rt.block_on(async {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let rows: Vec<NewMessage> = (0..20_000)
            .map(|i| NewMessage {
                chat_id: big_chat,
                sender_user_id: Some(1),
                sender_name: "Member0",
                from_bot: false,
                text: "old history",
                tg_message_id: Some(i + 1),
                reply_to: None,
                created_at: t0 + chrono::Duration::seconds(i * 60),
            })
            .collect();
        b.store.append_messages_bulk(&rows).await.unwrap();
    });
    let since = Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap();
    let mut g = c.benchmark_group("window query");
    g.bench_function("chat with 100 messages", |bn| {
        bn.iter(|| {
            b.rt.block_on(b.store.window(-10_001, since, 20, None))
                .unwrap()
        })
    });
    g.bench_function("chat with 20,000 messages", |bn| {
        bn.iter(|| {
            b.rt.block_on(b.store.window(
                big_chat,
                Utc.with_ymd_and_hms(2026, 11, 14, 0, 0, 0).unwrap(),
                20,
                None,
            ))
            .unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(8));
    targets = pipeline
}
criterion_main!(benches);
