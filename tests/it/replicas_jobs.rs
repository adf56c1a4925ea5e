//! Issue 12, items 4 and 3b: the scheduler's jobs and runs with several processes on one
//! database, and Telegram's bot-wide limit divided among them.
//!
//! In-process: two cores (`TestApp::on_store`) over one store, each with its own routine engine,
//! ticking the same job through `app::jobs::tick` (what the scheduler calls) for the same due
//! moment: every message is sent once, whichever process sends it. The real binary: three
//! `hearth run` replicas on one database (SQLite file or Postgres), an `every 30s` routine and a
//! waiting multi-step run for 3 minutes, one replica SIGKILLed in the middle.
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use hearth::{
    app::{
        self,
        jobs::{self, Job},
    },
    clock::{Clock, ManualClock},
    routines::{self, CreateRequest, RoutineEngine},
    store::Store,
};
use serde_json::json;

use crate::{
    binary::{binary_db_url, hearth as hearth_cmd, Daemon},
    support::{
        alice, bob, carol,
        fake_telegram::{Chat, FakeBotApi, User},
        group, t0, test_store, TestApp, GROUP,
    },
};

/// The engine of `app`'s process (its runs are held under the core's process id).
fn engine(app: &TestApp) -> Arc<RoutineEngine> {
    RoutineEngine::with_owner(
        app.hearth.svc.clone(),
        app.hearth.agent.clone(),
        app.hearth.owner(),
    )
}

/// Two processes on one store and one clock, the group known with Alice (admin), Bob, Carol.
async fn two_processes() -> (TestApp, TestApp, ManualClock) {
    let store = test_store().await;
    let clock = ManualClock::new(t0()); // Sat 21 Nov 10:00 UTC
    let a = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    let b = TestApp::on_store(store, clock.clone(), |_| {}, vec![]).await;
    for u in [alice(), bob(), carol()] {
        a.say(&group(), &u, "hi").await;
    }
    (a, b, clock)
}

/// Both processes tick `job` at once. Returns how many ran its body.
async fn tick_both(
    job: Job,
    (a, ea): (&TestApp, &Arc<RoutineEngine>),
    (b, eb): (&TestApp, &Arc<RoutineEngine>),
) -> usize {
    let (x, y) = tokio::join!(
        jobs::tick(job, &a.hearth, ea),
        jobs::tick(job, &b.hearth, eb)
    );
    ea.settle().await;
    eb.settle().await;
    a.hearth.idle().await;
    b.hearth.idle().await;
    usize::from(x) + usize::from(y)
}

/// Texts sent by either process to `chat` that contain `needle`.
fn sent_by_both(a: &TestApp, b: &TestApp, chat: i64, needle: &str) -> usize {
    [a.texts(chat), b.texts(chat)]
        .concat()
        .iter()
        .filter(|t| t.contains(needle))
        .count()
}

/// Texts sent by either process to `chat` that are exactly `text`.
fn exact_by_both(a: &TestApp, b: &TestApp, chat: i64, text: &str) -> usize {
    [a.texts(chat), b.texts(chat)]
        .concat()
        .iter()
        .filter(|t| *t == text)
        .count()
}

/// A message-step routine in the group with `triggers`, whose message is `text`.
async fn message_routine(app: &TestApp, name: &str, triggers: &[&str], text: &str) -> i64 {
    let svc = &app.hearth.svc;
    let c = routines::create(
        svc,
        CreateRequest {
            chat_id: GROUP,
            chat_zone: chrono_tz::Tz::UTC,
            owner_id: alice().id,
            name: Some(name.into()),
            prompt: name.into(),
            triggers: triggers.iter().map(|t| t.to_string()).collect(),
            quiet: false,
            max_ticks: None,
            max_runs_per_day: None,
        },
    )
    .await
    .expect("routine created");
    let def = json!({"steps": [{"kind": "message", "text": text}]}).to_string();
    app.store
        .put_definition_json(c.routine.id, Some(&def))
        .await
        .unwrap();
    c.routine.id
}

#[test]
fn every_job_is_in_the_table_with_its_mode() {
    let names: Vec<_> = Job::ALL.iter().map(|j| (j.name(), j.leased())).collect();
    assert_eq!(
        names,
        vec![
            ("routine-sweep", false),
            ("routine-conditions", true),
            ("inbound-cleanup", true),
            ("sqlite-checkpoint", false),
            ("workflow-expiry", false),
            ("chore-reminders", true),
        ]
    );
    // held for half the period, at least cluster.lease
    let lease = Duration::from_secs(15);
    assert_eq!(
        jobs::hold(Job::ChoreReminders, lease),
        Duration::from_secs(30)
    );
    assert_eq!(
        jobs::hold(Job::InboundCleanup, lease),
        Duration::from_secs(1800)
    );
    assert_eq!(jobs::hold(Job::SqliteCheckpoint, lease), lease);
}

#[tokio::test]
async fn chore_reminders_from_two_processes_go_out_once_and_the_lease_moves_when_its_holder_dies() {
    let (a, b, clock) = two_processes().await;
    let (ea, eb) = (engine(&a), engine(&b));
    a.say(&group(), &alice(), "/addchore Bins daily at 11:00 @bob")
        .await;

    // the same due moment (10:00: Bins due soon, the daily summary due): one process runs it
    assert_eq!(
        tick_both(Job::ChoreReminders, (&a, &ea), (&b, &eb)).await,
        1,
        "one process holds job:chore-reminders"
    );
    assert_eq!(sent_by_both(&a, &b, GROUP, "“Bins” is due at 11:00"), 1);
    assert_eq!(sent_by_both(&a, &b, GROUP, "Today's chores"), 1);
    let holder = a
        .store
        .lease_holder("job:chore-reminders", clock.now())
        .await
        .unwrap()
        .expect("held");
    let (winner, loser, el) = if holder == a.hearth.owner() {
        (&a, &b, &eb)
    } else {
        (&b, &a, &ea)
    };
    assert_eq!(holder, winner.hearth.owner());

    // idempotent by construction too: both bodies at once (a lease lost mid-run) send once
    a.say(&group(), &alice(), "/addchore Plants daily at 11:30")
        .await;
    let (x, y) = tokio::join!(
        hearth::chores::reminders::run(&a.hearth.svc, clock.now()),
        hearth::chores::reminders::run(&b.hearth.svc, clock.now())
    );
    assert_eq!(x.unwrap() + y.unwrap(), 1);
    assert_eq!(sent_by_both(&a, &b, GROUP, "“Plants” is due at 11:30"), 1);

    // the holder dies (ticks no more): within the period the lease is still held ...
    clock.advance(chrono::Duration::seconds(20));
    assert!(!jobs::tick(Job::ChoreReminders, &loser.hearth, el).await);
    // ... and at the next minute the survivor takes it over and runs the job
    clock.advance(chrono::Duration::seconds(40));
    assert!(jobs::tick(Job::ChoreReminders, &loser.hearth, el).await);
    assert_eq!(
        a.store
            .lease_holder("job:chore-reminders", clock.now())
            .await
            .unwrap()
            .as_deref(),
        Some(loser.hearth.owner())
    );
    // nothing was sent twice
    assert_eq!(sent_by_both(&a, &b, GROUP, "“Bins” is due"), 1);
    assert_eq!(sent_by_both(&a, &b, GROUP, "Today's chores"), 1);
}

#[tokio::test]
async fn workflow_expiry_from_two_processes_expires_and_notifies_once() {
    let (a, b, clock) = two_processes().await;
    let (ea, eb) = (engine(&a), engine(&b));
    a.say(&group(), &alice(), "/addchore Dishes").await;
    a.say(&group(), &bob(), "/done dishes").await;
    let wf = a
        .store
        .pending_for_viewer(&[GROUP], -1, DateTime::UNIX_EPOCH)
        .await
        .unwrap();
    assert_eq!(wf.len(), 1, "a verification request");
    clock.advance(chrono::Duration::hours(49));
    // every replica runs it (not leased): both bodies run, one expires and notifies
    assert_eq!(
        tick_both(Job::WorkflowExpiry, (&a, &ea), (&b, &eb)).await,
        2
    );
    assert_eq!(
        sent_by_both(&a, &b, GROUP, "Nobody decided on Bob's request"),
        1
    );
    let audit = a.store.workflow_audit(wf[0].id).await.unwrap();
    assert_eq!(audit.len(), 1, "one transition");
    assert_eq!(audit[0].to_status, "expired");
    // a minute later: nothing more
    clock.advance(chrono::Duration::minutes(1));
    tick_both(Job::WorkflowExpiry, (&a, &ea), (&b, &eb)).await;
    assert_eq!(
        sent_by_both(&a, &b, GROUP, "Nobody decided on Bob's request"),
        1
    );
}

#[tokio::test]
async fn the_routine_sweep_on_two_processes_fires_each_slot_once() {
    let (a, b, clock) = two_processes().await;
    let (ea, eb) = (engine(&a), engine(&b));
    let id = message_routine(&a, "tick", &["every 30s"], "tick {{run.id}}").await;
    for _ in 0..8 {
        clock.advance(chrono::Duration::seconds(30));
        assert_eq!(tick_both(Job::RoutineSweep, (&a, &ea), (&b, &eb)).await, 2);
    }
    let runs = a.store.routine_runs(id, 100).await.unwrap();
    assert_eq!(runs.len(), 8, "one run per slot");
    let mut slots: Vec<_> = runs.iter().map(|r| r.scheduled_for).collect();
    slots.dedup();
    assert_eq!(slots.len(), 8, "no slot twice");
    for r in &runs {
        assert_eq!(r.status.as_str(), "completed");
        assert_eq!(
            exact_by_both(&a, &b, GROUP, &format!("tick {}", r.id)),
            1,
            "run {} sent once",
            r.id
        );
    }
}

/// Condition triggers are leased: an evaluator whose clock is behind another's would re-arm the
/// crossing the other just fired (true → false) and the next minute fire it again. Two
/// processes 2 s apart (clock skew), shown both ways.
#[tokio::test]
async fn condition_triggers_on_skewed_processes_fire_once_per_crossing_under_the_lease() {
    let store = test_store().await;
    let (ca, cb) = (ManualClock::new(t0()), ManualClock::new(t0()));
    let a = TestApp::on_store(store.clone(), ca.clone(), |_| {}, vec![]).await;
    let b = TestApp::on_store(store.clone(), cb.clone(), |_| {}, vec![]).await;
    for u in [alice(), bob(), carol()] {
        a.say(&group(), &u, "hi").await;
    }
    let (ea, eb) = (engine(&a), engine(&b));
    let due = t0() + chrono::Duration::hours(1);
    store
        .insert_chore(hearth::store::NewChore {
            chat_id: GROUP,
            title: "Bins",
            description: None,
            personal: false,
            owner_id: None,
            partner_id: None,
            assignee_id: Some(bob().id),
            recurrence: None,
            next_due: Some(due),
            points: 1,
            created_by: alice().id,
            created_at: t0(),
            anchor: hearth::store::Anchor::Due,
            rotation: hearth::store::Rotation::Fixed,
            rotation_members: None,
        })
        .await
        .unwrap();
    // A's clock 1 s past the due time, B's 1 s before it
    ca.set(due + chrono::Duration::seconds(1));
    cb.set(due - chrono::Duration::seconds(1));
    let runs_of = |id: i64| {
        let store = store.clone();
        async move { store.routine_runs(id, 100).await.unwrap().len() }
    };

    // without the lease (the bodies themselves, A then B, then A a minute later): two fires
    let raw = message_routine(&a, "raw", &["when overdue > 0"], "raw {{run.id}}").await;
    hearth::routines::conditions::evaluate(&a.hearth.svc, ca.now())
        .await
        .unwrap();
    hearth::routines::conditions::evaluate(&b.hearth.svc, cb.now())
        .await
        .unwrap();
    ca.advance(chrono::Duration::minutes(1));
    hearth::routines::conditions::evaluate(&a.hearth.svc, ca.now())
        .await
        .unwrap();
    assert_eq!(runs_of(raw).await, 2, "the hazard the lease removes");
    store.delete_routine(raw).await.unwrap();

    // through the job (the lease): A fires, B finds the lease held; a minute later either
    // process finds the condition already met
    ca.set(due + chrono::Duration::seconds(1));
    let leased = message_routine(&a, "nag", &["when overdue > 0"], "nag {{run.id}}").await;
    let ran = usize::from(jobs::tick(Job::RoutineConditions, &a.hearth, &ea).await)
        + usize::from(jobs::tick(Job::RoutineConditions, &b.hearth, &eb).await);
    assert_eq!(ran, 1, "one evaluator per minute");
    for c in [&ca, &cb] {
        c.advance(chrono::Duration::minutes(1));
    }
    let ran = usize::from(jobs::tick(Job::RoutineConditions, &b.hearth, &eb).await)
        + usize::from(jobs::tick(Job::RoutineConditions, &a.hearth, &ea).await);
    assert_eq!(ran, 1);
    assert_eq!(runs_of(leased).await, 1, "one fire for one crossing");
    // the run's message goes out once, whichever process sweeps
    tokio::join!(
        jobs::tick(Job::RoutineSweep, &a.hearth, &ea),
        jobs::tick(Job::RoutineSweep, &b.hearth, &eb)
    );
    ea.settle().await;
    eb.settle().await;
    let id = a.store.routine_runs(leased, 10).await.unwrap()[0].id;
    assert_eq!(exact_by_both(&a, &b, GROUP, &format!("nag {id}")), 1);
}

/// Item 3b: each process paces its bot-wide sends at floor(limit / live processes), live =
/// processes whose heartbeat is within `cluster.lease`.
#[tokio::test]
async fn the_bot_wide_rate_is_divided_among_live_processes() {
    let (a, b, clock) = two_processes().await;
    let token = secrecy::SecretString::from("123:TEST".to_string());
    let bot = hearth::telegram::bot(&token, "http://127.0.0.1:9").unwrap();
    assert_eq!(bot.rate_per_second(), 30, "the default limit, alone");
    a.hearth.heartbeat().await.unwrap();
    assert_eq!(app::share_rate(&bot, &a.hearth).await.unwrap(), 30);
    b.hearth.heartbeat().await.unwrap();
    assert_eq!(app::share_rate(&bot, &a.hearth).await.unwrap(), 15);
    assert_eq!(bot.rate_per_second(), 15, "halved with two process rows");
    // B dies: once its last beat is older than cluster.lease (15 s), its share comes back
    clock.advance(chrono::Duration::seconds(10));
    a.hearth.heartbeat().await.unwrap();
    assert_eq!(app::share_rate(&bot, &a.hearth).await.unwrap(), 15);
    clock.advance(chrono::Duration::seconds(6));
    a.hearth.heartbeat().await.unwrap();
    assert_eq!(app::share_rate(&bot, &a.hearth).await.unwrap(), 30);
    assert_eq!(bot.rate_per_second(), 30);
}

// ---- the real binary: three replicas, 3 minutes ----

/// Texts of every sendMessage to `chat` at the fake Bot API.
fn texts_to(fake: &FakeBotApi, chat: i64) -> Vec<String> {
    fake.calls_to("sendMessage")
        .into_iter()
        .filter(|b| b["chat_id"].as_i64() == Some(chat))
        .map(|b| b["text"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Import a routine document into chat -700 as member 70 with `hearth routines import`.
fn import(dir: &std::path::Path, db: &str, name: &str, doc: &str) {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, doc).unwrap();
    let out = hearth_cmd()
        .args(["routines", "import", file.to_str().unwrap()])
        .args(["--chat", "-700", "--as", "70"])
        .env("HEARTH_DATABASE__URL", db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(d) = (at - Utc::now()).to_std() {
        tokio::time::sleep(d).await;
    }
}

/// Three `hearth run` replicas (webhook mode, leases 2 s) on one database for 3 minutes: an
/// `every 30s` routine (6 slots) and a multi-step run waiting 100 s between two messages. One
/// replica is SIGKILLed between two slots while the run waits. Every slot fires once (one run
/// row per slot, one message per run), every step runs once (one step run per step, each
/// message once), and the slots after the kill still fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_fire_every_slot_once_and_run_every_step_once_across_a_sigkill() {
    let fake = FakeBotApi::start().await;
    let llm = wiremock::MockServer::start().await; // no model call is expected
    let dir = tempfile::tempdir().unwrap();
    let db = binary_db_url(dir.path()).await;
    let log = dir.path().join("hearth.log");
    let group = Chat::group(-700, "Flat");
    let ann = User::new(70, "Ann");
    let first = Daemon::start(&fake, &llm.uri(), &db, &log).await;
    first
        .post(&FakeBotApi::text_message(
            7_000,
            group.clone(),
            ann.clone(),
            1,
            "hello",
        ))
        .await;
    let store = Store::connect(&db, 2, Duration::from_secs(10))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.chat(-700).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "group not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    import(
        dir.path(),
        &db,
        "tick",
        "name = \"tick\"\ntriggers = [\"every 30s\"]\n\n[[steps]]\nkind = \"message\"\n\
         text = \"tick {{ run.id }}\"\n",
    );
    import(
        dir.path(),
        &db,
        "timer",
        "name = \"timer\"\n\n[[steps]]\nkind = \"message\"\ntext = \"before the wait\"\n\n\
         [[steps]]\nkind = \"wait\"\nduration = \"100s\"\n\n\
         [[steps]]\nkind = \"message\"\ntext = \"after the wait\"\n",
    );
    let tick = store.routine_by_name(-700, "tick").await.unwrap().unwrap();
    let timer = store.routine_by_name(-700, "timer").await.unwrap().unwrap();
    let slot0 = store.routine_triggers(tick.id).await.unwrap()[0]
        .next_fire_at
        .expect("scheduled");
    let mut replicas = vec![
        first,
        Daemon::start(&fake, &llm.uri(), &db, &log).await,
        Daemon::start(&fake, &llm.uri(), &db, &log).await,
    ];
    // the waiting run, started by a member over the second replica's webhook
    replicas[1]
        .post(&FakeBotApi::text_message(
            7_001,
            group.clone(),
            ann.clone(),
            2,
            "/timer",
        ))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !texts_to(&fake, -700).iter().any(|t| t == "before the wait") {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Utc::now();

    // SIGKILL one replica between the 2nd and the 3rd slot, while the run waits: the holder of
    // a leased job when one is held at that moment, else the first replica
    let slot = |k: i64| slot0 + chrono::Duration::seconds(30 * k);
    sleep_until(slot(1) + chrono::Duration::seconds(15)).await;
    let mut holder = None;
    for job in [Job::ChoreReminders, Job::RoutineConditions] {
        if let Some(o) = store
            .lease_holder(&job.lease_name(), Utc::now())
            .await
            .unwrap()
        {
            holder = holder.or(Some(o));
        }
    }
    let victim = holder
        .as_ref()
        .and_then(|o| {
            replicas
                .iter()
                .position(|d| o.starts_with(&format!("{}-", d.pid())))
        })
        .unwrap_or(0);
    let killed_at = Utc::now();
    replicas.remove(victim).kill9();
    assert!(
        !texts_to(&fake, -700).iter().any(|t| t == "after the wait"),
        "killed while the run waits"
    );

    // 6 slots: an `every` trigger's next slot is 30 s after the one that fired (`next_after`
    // the fire), so slot k is slot 0 + 30 s × k plus the sweeps' lateness
    let deadline = slot(5) + chrono::Duration::seconds(20);
    while store.routine_runs(tick.id, 100).await.unwrap().len() < 6 {
        assert!(Utc::now() < deadline, "the 6th slot did not fire");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // the 6th run's message and end (a few seconds under the load of the whole suite); the 7th
    // slot is 30 s away
    let fired = std::time::Instant::now();
    while fired.elapsed() < Duration::from_secs(15)
        && store
            .routine_runs(tick.id, 100)
            .await
            .unwrap()
            .iter()
            .any(|r| r.status.as_str() != "completed")
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // nothing more arrives
    let texts = texts_to(&fake, -700);
    let runs = store.routine_runs(tick.id, 100).await.unwrap();
    let mut slots: Vec<DateTime<Utc>> = runs.iter().filter_map(|r| r.scheduled_for).collect();
    slots.sort();
    let gaps: Vec<i64> = slots
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    println!(
        "3 replicas, every 30s: slots {slots:?}, gaps {gaps:?} ms; killed replica {victim} (job lease holder: {holder:?}) at {killed_at} (run waiting since {started})"
    );
    assert_eq!(runs.len(), 6, "one run row per slot: {runs:?}");
    assert_eq!(slots.len(), 6, "every run is for a slot");
    assert_eq!(slots[0], slot0);
    assert!(
        gaps.iter().all(|g| (30_000..36_000).contains(g)),
        "each slot fired once, 30 s after the one before: {gaps:?}"
    );
    assert!(slots[5] > killed_at, "slots still fire after the kill");
    let next = store.routine_triggers(tick.id).await.unwrap()[0]
        .next_fire_at
        .expect("still scheduled");
    assert!(
        (30_000..36_000).contains(&(next - slots[5]).num_milliseconds()),
        "the trigger moved on once from the last slot: {next}"
    );
    for r in &runs {
        assert_eq!(r.status.as_str(), "completed", "{r:?}");
        let n = texts
            .iter()
            .filter(|t| **t == format!("tick {}", r.id))
            .count();
        assert_eq!(
            n, 1,
            "slot {:?}: run {} sent {n} times",
            r.scheduled_for, r.id
        );
    }
    assert_eq!(
        texts.iter().filter(|t| t.starts_with("tick ")).count(),
        6,
        "no other tick message"
    );

    // the waiting run resumed once, after the kill, when its 100 s ended
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !texts_to(&fake, -700).iter().any(|t| t == "after the wait") {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never resumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // longer than a lease: nothing more
    let texts = texts_to(&fake, -700);
    for t in ["before the wait", "after the wait"] {
        assert_eq!(texts.iter().filter(|x| *x == t).count(), 1, "{t}");
    }
    let timer_runs = store.routine_runs(timer.id, 10).await.unwrap();
    assert_eq!(timer_runs.len(), 1);
    assert_eq!(timer_runs[0].status.as_str(), "completed");
    let steps = store.step_runs_of_runs(&[timer_runs[0].id]).await.unwrap();
    let positions: Vec<i32> = steps.iter().map(|s| s.position).collect();
    assert_eq!(steps.len(), 3, "one step run per step: {steps:?}");
    assert_eq!(
        {
            let mut p = positions.clone();
            p.sort();
            p
        },
        vec![0, 1, 2],
        "{steps:?}"
    );
    for r in replicas {
        r.stop().await;
    }
}
