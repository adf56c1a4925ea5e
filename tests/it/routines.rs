//! Routines: commands, triggers and their next fires (DST), catch-up, two processes on one file,
//! pause, daily cap, max ticks, quiet, state, events, the api trigger, turn ordering.
//! Time is a ManualClock: every fire is driven by calling `engine.sweep(now)`.
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use hearth::{
    agent::llm::{ChatMessage, ChatModel, ModelError, ModelReply, ToolSpec},
    app,
    clock::{Clock, ManualClock, SharedClock, SystemClock},
    events::HearthEvent,
    routines::{self, CreateRequest, RoutineEngine},
    services::BotIdentity,
    store::{RoutineRow, RunRow, Store},
    testkit::{RecordingMessenger, Script},
};

use crate::support::*;

fn engine(app: &TestApp) -> Arc<RoutineEngine> {
    RoutineEngine::new(app.hearth.svc.clone(), app.hearth.agent.clone())
}

fn now(app: &TestApp) -> DateTime<Utc> {
    app.clock.now()
}

/// Sweep at the clock's current time and wait for the runs it started.
async fn tick(app: &TestApp, e: &Arc<RoutineEngine>) -> routines::engine::SweepReport {
    let r = e.sweep(now(app)).await.expect("sweep");
    e.settle().await;
    r
}

async fn routine(app: &TestApp, name: &str) -> RoutineRow {
    app.store
        .routine_by_name(GROUP, name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no routine {name}"))
}

async fn runs(app: &TestApp, name: &str) -> Vec<RunRow> {
    let r = routine(app, name).await;
    let mut v = app.store.routine_runs(r.id, 100).await.unwrap();
    v.reverse(); // oldest first
    v
}

fn user_texts(app: &TestApp) -> Vec<String> {
    app.model
        .requests()
        .iter()
        .filter_map(|req| {
            req.iter().find_map(|m| match m {
                ChatMessage::User(s) => Some(s.clone()),
                _ => None,
            })
        })
        .collect()
}

fn req(prompt: &str, triggers: &[&str], zone: &str) -> CreateRequest {
    CreateRequest {
        chat_id: GROUP,
        chat_zone: zone.parse().unwrap(),
        owner_id: alice().id,
        name: None,
        prompt: prompt.into(),
        triggers: triggers.iter().map(|s| s.to_string()).collect(),
        quiet: false,
        max_ticks: None,
        max_runs_per_day: None,
    }
}

/// A group with Alice (admin) and Bob registered.
async fn app_with_group(script: Vec<Script>) -> TestApp {
    let app = TestApp::with(|_| {}, script).await;
    app.say(&group(), &alice(), "hello").await;
    app.say(&group(), &bob(), "hi").await;
    app
}

#[tokio::test]
async fn every_command_creates_lists_and_fires_into_the_group() {
    let app = app_with_group(vec![Script::Text("Washing is done? Go check!".into())]).await;
    let e = engine(&app);
    app.say(&group(), &alice(), "/every 30m check the washing")
        .await;
    let reply = app.last_text(GROUP);
    assert!(
        reply.starts_with(
            "Routine check_the_washing created: every 30m · next Sat 21 Nov 10:30 UTC."
        ),
        "{reply}"
    );
    app.say(&group(), &alice(), "/routines").await;
    assert!(app
        .last_text(GROUP)
        .contains("check_the_washing — every 30m · next Sat 21 Nov 10:30 UTC"));

    // not due yet
    app.clock.advance(chrono::Duration::minutes(29));
    assert_eq!(tick(&app, &e).await.claimed, 0);
    assert_eq!(app.model.calls(), 0);
    app.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(tick(&app, &e).await.claimed, 1);
    assert_eq!(app.last_text(GROUP), "Washing is done? Go check!");
    let prompt = user_texts(&app).pop().unwrap();
    assert!(
        prompt.starts_with("[Routine 'check_the_washing' (every 30m), run 1]\ncheck the washing"),
        "{prompt}"
    );
    let rs = runs(&app, "check_the_washing").await;
    assert_eq!(rs.len(), 1);
    assert_eq!(
        (rs[0].status.as_str(), rs[0].source.as_str(), rs[0].catch_up),
        ("completed", "every", false)
    );
    assert_eq!((rs[0].prompt_tokens, rs[0].completion_tokens), (10, 2));
    let cost = 10.0 * 0.15 / 1e6 + 2.0 * 0.60 / 1e6;
    assert!((rs[0].cost_usd - cost).abs() < 1e-12, "{}", rs[0].cost_usd);
    assert_eq!(rs[0].output.as_deref(), Some("Washing is done? Go check!"));
    // re-anchored from the fire time
    let t = app.store.routine_triggers(rs[0].routine_id).await.unwrap();
    assert_eq!(
        t[0].next_fire_at,
        Some(now(&app) + chrono::Duration::minutes(30))
    );

    app.say(&group(), &bob(), "/routine_history check_the_washing")
        .await;
    let h = app.last_text(GROUP);
    assert!(
        h.contains("check_the_washing — last 1 runs") && h.contains("every · completed"),
        "{h}"
    );
}

#[tokio::test]
async fn bad_commands_name_the_field_and_rule_and_create_nothing() {
    let app = app_with_group(vec![]).await;
    let cases = [
        (
            "/every 10s nudge me",
            "trigger: interval: 10s is too short; the minimum is 30s",
        ),
        (
            "/every 25h nudge me",
            "trigger: interval: 25h is too long; the maximum is 24h",
        ),
        (
            "/every 30m",
            "prompt: is missing; for example /every 30m check the washing",
        ),
        (
            "/every",
            "trigger: is missing; for example /every 30m check the washing",
        ),
        ("/cron 0 8 * * post", "cron: needs 5 fields and a prompt"),
        (
            "/cron 0 25 * * * post",
            "trigger: cron: hour field '25' is invalid",
        ),
        (
            "/cron 0 8 * * 1-5 Mars/Base post",
            "trigger: zone: 'Mars/Base' is not an IANA time zone",
        ),
        (
            "/at 2020-01-01 09:00 renew",
            "trigger: at: 2020-01-01 09:00 is in the past",
        ),
        ("/at whenever renew", "trigger: at: could not understand"),
        ("/routine_pause", "name: is missing: /routine_pause <name>"),
        (
            "/routine_pause nope",
            "no routine named 'nope' in this chat",
        ),
        (
            "/routine_install nope",
            "template: 'nope' is not a built-in template",
        ),
    ];
    for (cmd, want) in cases {
        app.say(&group(), &alice(), cmd).await;
        let got = app.last_text(GROUP);
        assert!(got.starts_with(want), "{cmd}: {got}");
    }
    assert!(app.store.routines_of_chat(GROUP).await.unwrap().is_empty());
    assert_eq!(app.model.calls(), 0);
}

#[tokio::test]
async fn cron_fires_once_at_fall_back_and_after_the_spring_gap() {
    let app = app_with_group(vec![]).await;
    let e = engine(&app);
    // fall-back: 2026-11-01 01:30 happens twice in New York (05:30 and 06:30 UTC)
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 10, 31, 12, 0, 0).unwrap());
    let c = routines::create(
        &app.hearth.svc,
        req("night check", &["cron 30 1 * * * America/New_York"], "UTC"),
    )
    .await
    .unwrap();
    assert_eq!(
        c.triggers[0].next_fire_at,
        Some(Utc.with_ymd_and_hms(2026, 11, 1, 5, 30, 0).unwrap())
    );
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 11, 1, 5, 30, 0).unwrap());
    assert_eq!(tick(&app, &e).await.claimed, 1);
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 11, 1, 6, 30, 0).unwrap());
    assert_eq!(
        tick(&app, &e).await.claimed,
        0,
        "the repeated 01:30 must not fire again"
    );
    let t = app.store.routine_triggers(c.routine.id).await.unwrap();
    assert_eq!(
        t[0].next_fire_at,
        Some(Utc.with_ymd_and_hms(2026, 11, 2, 6, 30, 0).unwrap())
    );

    // spring-forward: 2027-03-14 02:30 does not exist in New York → 03:00 EDT (07:00 UTC)
    app.clock
        .set(Utc.with_ymd_and_hms(2027, 3, 13, 12, 0, 0).unwrap());
    let c = routines::create(
        &app.hearth.svc,
        req("gap check", &["cron 30 2 * * * America/New_York"], "UTC"),
    )
    .await
    .unwrap();
    assert_eq!(
        c.triggers[0].next_fire_at,
        Some(Utc.with_ymd_and_hms(2027, 3, 14, 7, 0, 0).unwrap())
    );
    app.clock
        .set(Utc.with_ymd_and_hms(2027, 3, 14, 7, 0, 0).unwrap());
    let before = runs(&app, "gap_check").await.len();
    tick(&app, &e).await;
    assert_eq!(runs(&app, "gap_check").await.len(), before + 1);
    let t = app.store.routine_triggers(c.routine.id).await.unwrap();
    assert_eq!(
        t[0].next_fire_at,
        Some(Utc.with_ymd_and_hms(2027, 3, 15, 6, 30, 0).unwrap())
    );
    // London: weekdays 08:00 local is 08:00 UTC in winter and 07:00 UTC in summer
    app.clock
        .set(Utc.with_ymd_and_hms(2027, 3, 26, 12, 0, 0).unwrap()); // Friday
    let c = routines::create(
        &app.hearth.svc,
        req("briefing", &["cron 0 8 * * 1-5"], "Europe/London"),
    )
    .await
    .unwrap();
    // Monday 2027-03-29, after the change on Sunday 28th
    assert_eq!(
        c.triggers[0].next_fire_at,
        Some(Utc.with_ymd_and_hms(2027, 3, 29, 7, 0, 0).unwrap())
    );
}

#[tokio::test]
async fn oneoff_three_months_away_fires_once_then_is_spent() {
    let app = app_with_group(vec![Script::Text("Renew the car insurance today!".into())]).await;
    let e = engine(&app);
    app.say(
        &group(),
        &alice(),
        "/at 2027-02-21 09:00 remind us to renew the car insurance",
    )
    .await;
    assert!(
        app.last_text(GROUP).contains("at 2027-02-21 09:00 UTC"),
        "{}",
        app.last_text(GROUP)
    );
    let name = "remind_us_to_renew";
    for days in [1, 30, 89] {
        app.clock.set(t0() + chrono::Duration::days(days));
        assert_eq!(
            tick(&app, &e).await.claimed,
            0,
            "fired early after {days} days"
        );
    }
    app.clock
        .set(Utc.with_ymd_and_hms(2027, 2, 21, 8, 59, 59).unwrap());
    assert_eq!(tick(&app, &e).await.claimed, 0);
    app.clock
        .set(Utc.with_ymd_and_hms(2027, 2, 21, 9, 0, 0).unwrap());
    assert_eq!(tick(&app, &e).await.claimed, 1);
    assert_eq!(app.last_text(GROUP), "Renew the car insurance today!");
    let r = routine(&app, name).await;
    assert_eq!(r.status, "ended", "a spent one-off ends its routine");
    let rs = runs(&app, name).await;
    assert_eq!(
        (rs.len(), rs[0].source.as_str(), rs[0].catch_up),
        (1, "at", false)
    );
    app.clock.advance(chrono::Duration::days(1));
    assert_eq!(tick(&app, &e).await.claimed, 0);
}

#[tokio::test]
async fn oneoff_due_during_downtime_fires_once_at_start_up_as_catch_up() {
    let app = app_with_group(vec![]).await;
    app.say(&group(), &alice(), "/at in 20m take the cake out")
        .await;
    // hearth is down from 10:05 to 13:00
    app.clock.set(t0() + chrono::Duration::hours(3));
    let e = engine(&app); // the new process
    e.start_up().await.unwrap();
    assert_eq!(tick(&app, &e).await.claimed, 1);
    let rs = runs(&app, "take_the_cake_out").await;
    assert_eq!(
        (rs.len(), rs[0].catch_up, rs[0].status.as_str()),
        (1, true, "completed")
    );
    assert!(user_texts(&app)
        .pop()
        .unwrap()
        .contains("[Catch-up: I was offline at the scheduled time (Sat 21 Nov 10:20)"));
    assert_eq!(tick(&app, &e).await.claimed, 0);
}

#[tokio::test]
async fn catch_up_runs_exactly_once_after_downtime_and_not_again() {
    let app = app_with_group(vec![]).await;
    let e1 = engine(&app);
    app.say(&group(), &alice(), "/every 30m water the plants")
        .await;
    app.say(&group(), &alice(), "/cron 0 8 * * * morning post")
        .await; // created 10:00: next is tomorrow
                // down for 5 h: 10 `every` slots and no cron slot passed
    app.clock.set(t0() + chrono::Duration::hours(5));
    let e2 = engine(&app);
    e2.start_up().await.unwrap();
    let rep = tick(&app, &e2).await;
    assert_eq!(rep.claimed, 1, "one run, not one per missed slot");
    let rs = runs(&app, "water_the_plants").await;
    assert_eq!((rs.len(), rs[0].catch_up), (1, true));
    assert!(user_texts(&app)
        .last()
        .unwrap()
        .contains("[Catch-up: I was offline at the scheduled time (Sat 21 Nov 10:30)"));
    assert!(
        runs(&app, "morning_post").await.is_empty(),
        "created after the last slot: no catch-up"
    );
    // a second restart shortly after does not catch up again
    app.clock.advance(chrono::Duration::minutes(1));
    let e3 = engine(&app);
    assert_eq!(tick(&app, &e3).await.claimed, 0);
    drop(e1);
    // the cron routine: down over three 08:00 slots → one catch-up run, then on schedule
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap());
    let e4 = engine(&app);
    tick(&app, &e4).await;
    let rs = runs(&app, "morning_post").await;
    assert_eq!((rs.len(), rs[0].catch_up), (1, true));
    let r = routine(&app, "morning_post").await;
    let t = app.store.routine_triggers(r.id).await.unwrap();
    assert_eq!(
        t[0].next_fire_at,
        Some(Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap())
    );
}

/// A hearth process over a shared SQLite file.
struct Proc {
    engine: Arc<RoutineEngine>,
    clock: ManualClock,
    messenger: RecordingMessenger,
}

async fn process(url: &str, model: hearth::testkit::ScriptedModel) -> Proc {
    let cfg = test_config();
    let store = Store::connect(url, 5, Duration::from_secs(10))
        .await
        .unwrap();
    let clock = ManualClock::new(t0());
    let messenger = RecordingMessenger::default();
    let agent = app::agent(
        &cfg,
        Some(Arc::new(model) as Arc<dyn ChatModel>),
        std::path::Path::new("prompts"),
    )
    .unwrap();
    let hearth = app::core(
        Arc::new(cfg),
        store,
        Arc::new(clock.clone()) as SharedClock,
        Arc::new(messenger.clone()),
        BotIdentity {
            id: 999,
            username: "hearth_bot".into(),
            name: "Hearth".into(),
        },
        agent,
    );
    // heartbeat, claims and idle chat leases going back, as in `hearth run`
    hearth.spawn_lease_tasks(tokio_util::sync::CancellationToken::new());
    Proc {
        engine: RoutineEngine::new(hearth.svc.clone(), hearth.agent.clone()),
        clock,
        messenger,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_sqlite_file_fire_each_slot_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("hearth.db").display()
    );
    let model = hearth::testkit::ScriptedModel::new(vec![]);
    let a = process(&url, model.clone()).await;
    let b = process(&url, model.clone()).await;
    let svc = a.engine.services();
    svc.store
        .upsert_chat(GROUP, "group", "Home", "UTC", t0())
        .await
        .unwrap();
    routines::create(svc, req("ping", &["every 30s"], "UTC"))
        .await
        .unwrap();
    routines::create(svc, req("pong", &["every 1m"], "UTC"))
        .await
        .unwrap();
    let slots = 20;
    for _ in 0..slots {
        a.clock.advance(chrono::Duration::seconds(30));
        b.clock.advance(chrono::Duration::seconds(30));
        let (ra, rb) = tokio::join!(a.engine.sweep(a.clock.now()), b.engine.sweep(b.clock.now()));
        ra.unwrap();
        rb.unwrap();
        a.engine.settle().await;
        b.engine.settle().await;
    }
    let sent = a.messenger.sent().len() + b.messenger.sent().len();
    assert_eq!(sent, 20 + 10, "each slot delivered exactly once");
    assert_eq!(model.calls(), 30);
    assert!(!a.messenger.sent().is_empty() || !b.messenger.sent().is_empty());
    for name in ["ping", "pong"] {
        let r = svc
            .store
            .routine_by_name(GROUP, name)
            .await
            .unwrap()
            .unwrap();
        let rs = svc.store.routine_runs(r.id, 100).await.unwrap();
        let mut slots_seen: Vec<_> = rs.iter().map(|x| x.scheduled_for).collect();
        slots_seen.sort();
        slots_seen.dedup();
        assert_eq!(slots_seen.len(), rs.len(), "{name}: a slot fired twice");
        assert!(rs.iter().all(|x| x.status == "completed"), "{name}: {rs:?}");
    }
}

#[tokio::test]
async fn pause_skips_fires_and_manual_run_still_works() {
    let app = app_with_group(vec![]).await;
    let e = engine(&app);
    app.say(&group(), &alice(), "/every 1h stretch break").await;
    app.say(&group(), &bob(), "/routine_pause stretch_break")
        .await;
    assert!(app
        .last_text(GROUP)
        .starts_with("not allowed: only the owner of 'stretch_break' or a group admin"));
    app.say(&group(), &alice(), "/routine_pause stretch_break")
        .await;
    assert!(app
        .last_text(GROUP)
        .starts_with("Routine stretch_break paused"));
    app.clock.advance(chrono::Duration::hours(1));
    assert_eq!(tick(&app, &e).await.claimed, 1);
    assert_eq!(app.model.calls(), 0);
    let rs = runs(&app, "stretch_break").await;
    assert_eq!(
        (rs[0].status.as_str(), rs[0].reason.as_deref()),
        ("skipped", Some("paused"))
    );
    // a manual run works while paused
    app.say(&group(), &alice(), "/routine_run stretch_break")
        .await;
    assert_eq!(app.last_text(GROUP), "Running stretch_break now.");
    assert_eq!(tick(&app, &e).await.queued_started, 1);
    assert_eq!(app.model.calls(), 1);
    let rs = runs(&app, "stretch_break").await;
    assert_eq!(
        (rs[1].status.as_str(), rs[1].source.as_str()),
        ("completed", "manual")
    );
    app.say(&group(), &alice(), "/routine_resume stretch_break")
        .await;
    app.clock.advance(chrono::Duration::hours(1));
    tick(&app, &e).await;
    assert_eq!(app.model.calls(), 2);
    app.say(&group(), &alice(), "/routine_delete stretch_break")
        .await;
    assert_eq!(app.last_text(GROUP), "Routine stretch_break deleted.");
    assert!(app.store.routines_of_chat(GROUP).await.unwrap().is_empty());
}

#[tokio::test]
async fn daily_cap_skips_without_a_model_call_and_resets_at_local_midnight() {
    let app = app_with_group(vec![]).await;
    let e = engine(&app);
    let mut r = req("hydrate", &["every 1h"], "Asia/Tokyo");
    r.max_runs_per_day = Some(2);
    routines::create(&app.hearth.svc, r).await.unwrap();
    // t0 is 19:00 in Tokyo: slots at 20:00, 21:00, 22:00 local
    for _ in 0..3 {
        app.clock.advance(chrono::Duration::hours(1));
        tick(&app, &e).await;
    }
    assert_eq!(app.model.calls(), 2, "a capped fire makes no model call");
    let rs = runs(&app, "hydrate").await;
    let st: Vec<_> = rs
        .iter()
        .map(|x| (x.status.as_str(), x.reason.as_deref()))
        .collect();
    assert_eq!(
        st,
        vec![
            ("completed", None),
            ("completed", None),
            ("skipped", Some("daily cap"))
        ]
    );
    // 23:00 still capped; 00:00 Tokyo (15:00 UTC) is a new day
    app.clock.advance(chrono::Duration::hours(1));
    tick(&app, &e).await;
    assert_eq!(app.model.calls(), 2);
    app.clock.advance(chrono::Duration::hours(1));
    tick(&app, &e).await;
    assert_eq!(app.model.calls(), 3);
    let bad = routines::create(
        &app.hearth.svc,
        CreateRequest {
            max_runs_per_day: Some(0),
            ..req("x", &["every 1h"], "UTC")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        bad.to_string(),
        "max_runs_per_day: 0 is out of range; it must be 1 to 2880"
    );
}

#[tokio::test]
async fn max_ticks_ends_the_routine() {
    let app = app_with_group(vec![]).await;
    let e = engine(&app);
    let mut r = req("nudge", &["every 30m"], "UTC");
    r.max_ticks = Some(2);
    routines::create(&app.hearth.svc, r).await.unwrap();
    for _ in 0..4 {
        app.clock.advance(chrono::Duration::minutes(30));
        tick(&app, &e).await;
    }
    assert_eq!(app.model.calls(), 2);
    let r = routine(&app, "nudge").await;
    assert_eq!((r.status.as_str(), r.tick_count), ("ended", 2));
    app.say(&group(), &alice(), "/routines").await;
    assert!(
        app.last_text(GROUP).contains("nudge — every 30m · ended"),
        "{}",
        app.last_text(GROUP)
    );
}

#[tokio::test]
async fn quiet_token_is_silent_only_for_quiet_routines() {
    let app = app_with_group(vec![Script::Text("[~]".into()), Script::Text("[~]".into())]).await;
    let e = engine(&app);
    let mut q = req("watch the oven", &["every 30m"], "UTC");
    q.quiet = true;
    routines::create(&app.hearth.svc, q).await.unwrap();
    app.clock.advance(chrono::Duration::minutes(30));
    let before = app.texts(GROUP).len();
    tick(&app, &e).await;
    assert_eq!(app.texts(GROUP).len(), before, "a quiet [~] sends nothing");
    let rs = runs(&app, "watch_the_oven").await;
    assert_eq!(rs[0].status, "silent");
    assert!(user_texts(&app)[0]
        .contains("[Quiet: if there is nothing worth saying, reply exactly [~]]"));
    app.say(&group(), &alice(), "/routine_delete watch_the_oven")
        .await;
    routines::create(&app.hearth.svc, req("loud oven", &["every 30m"], "UTC"))
        .await
        .unwrap();
    app.clock.advance(chrono::Duration::minutes(30));
    tick(&app, &e).await;
    assert_eq!(
        app.last_text(GROUP),
        "[~]",
        "a non-quiet routine's [~] is sent as is"
    );
    assert_eq!(runs(&app, "loud_oven").await[0].status, "completed");
}

#[tokio::test]
async fn state_merges_deeply_placeholders_fill_and_over_2kb_is_refused_whole() {
    let app = app_with_group(vec![]).await;
    let e = engine(&app);
    routines::create(
        &app.hearth.svc,
        CreateRequest {
            name: Some("bins".into()),
            ..req(
                "Bins: {state} on {date} at {time}, run {tickCount}.",
                &["every 1h"],
                "Europe/London",
            )
        },
    )
    .await
    .unwrap();
    let admin = routines::Actor {
        user_id: alice().id,
        admin: true,
    };
    let s = routines::set_state(
        &app.hearth.svc,
        GROUP,
        "bins",
        admin,
        &serde_json::json!({"bins": {"blue": true, "green": false}}),
    )
    .await
    .unwrap();
    assert_eq!(s, r#"{"bins":{"blue":true,"green":false}}"#);
    let s = routines::set_state(
        &app.hearth.svc,
        GROUP,
        "bins",
        admin,
        &serde_json::json!({"bins": {"green": true}, "note": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(s, r#"{"bins":{"blue":true,"green":true},"note":"x"}"#);
    let err = routines::set_state(
        &app.hearth.svc,
        GROUP,
        "bins",
        admin,
        &serde_json::json!({"big": "y".repeat(2100)}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("state: would be") && err.ends_with("nothing was changed"),
        "{err}"
    );
    assert_eq!(
        routine(&app, "bins").await.state,
        r#"{"bins":{"blue":true,"green":true},"note":"x"}"#
    );
    app.clock.advance(chrono::Duration::hours(1));
    tick(&app, &e).await;
    let p = user_texts(&app).pop().unwrap();
    assert!(p.ends_with(r#"Bins: {"bins":{"blue":true,"green":true},"note":"x"} on Sat 2026-11-21 at 11:00, run 1."#), "{p}");
}

#[tokio::test]
async fn agent_tools_create_from_natural_language_and_a_routine_deletes_itself() {
    let app = app_with_group(vec![
        Script::Tools(vec![(
            "routine_create".into(),
            r#"{"prompt":"Post today's chores","triggers":["cron 0 8 * * 1-5"],"name":"chores"}"#
                .into(),
        )]),
        Script::Text("Done: weekdays at 08:00.".into()),
    ])
    .await;
    let e = engine(&app);
    app.say(
        &group(),
        &alice(),
        "@hearth_bot every weekday at 8 post the chores",
    )
    .await;
    assert_eq!(app.last_text(GROUP), "Done: weekdays at 08:00.");
    let tool_result = format!("{:?}", app.model.requests()[1]);
    assert!(
        tool_result.contains("cron 0 8 * * 1-5 (UTC)") && tool_result.contains("Mon 23 Nov 08:00"),
        "{tool_result}"
    );
    let r = routine(&app, "chores").await;
    assert_eq!(r.owner_id, alice().id);
    // the tools are small: one short line each
    let specs = &app.model.tools_seen()[0];
    for s in specs.iter().filter(|s| s.name.starts_with("routine_")) {
        assert!(s.description.len() <= 160, "{}: {}", s.name, s.description);
    }
    assert_eq!(
        specs
            .iter()
            .filter(|s| s.name.starts_with("routine_"))
            .count(),
        7
    );

    // invalid input comes back to the model naming the field and rule
    app.model.push(Script::Tools(vec![(
        "routine_create".into(),
        r#"{"prompt":"x","triggers":["every 5s"]}"#.into(),
    )]));
    app.model.push(Script::Text("That is too often.".into()));
    app.say(&group(), &alice(), "@hearth_bot remind me every 5 seconds")
        .await;
    let last = format!("{:?}", app.model.requests().last().unwrap());
    assert!(
        last.contains("invalid arguments: trigger: interval: 5s is too short; the minimum is 30s"),
        "{last}"
    );

    // "when the deploy is done, delete yourself": the routine's own turn deletes it
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap());
    app.model.push(Script::Tools(vec![(
        "routine_delete".into(),
        r#"{"name":"chores"}"#.into(),
    )]));
    app.model
        .push(Script::Text("All done, removing myself.".into()));
    tick(&app, &e).await;
    assert_eq!(app.last_text(GROUP), "All done, removing myself.");
    assert!(app
        .store
        .routine_by_name(GROUP, "chores")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn event_trigger_fires_with_filters_and_the_event_in_the_prompt() {
    let app = app_with_group(vec![]).await;
    let e = engine(&app);
    app.say(&group(), &alice(), "/routine_install overdue_nudge")
        .await;
    assert!(
        app.last_text(GROUP)
            .starts_with("Routine overdue_nudge created: event chore_overdue"),
        "{}",
        app.last_text(GROUP)
    );
    routines::create(
        &app.hearth.svc,
        req("only bob's", &["event chore_overdue assignee_id=2"], "UTC"),
    )
    .await
    .unwrap();
    let ev = HearthEvent::ChoreOverdue {
        chat_id: GROUP,
        chore_id: 7,
        title: "Dishes".into(),
        assignee_id: Some(1),
    };
    assert_eq!(
        e.on_event(&ev).await.unwrap(),
        1,
        "the filter keeps bob's routine out"
    );
    e.settle().await;
    let p = user_texts(&app).pop().unwrap();
    assert!(p.contains(r#"A chore just went overdue: {"kind":"chore_overdue","chat_id":-1001,"chore_id":7,"title":"Dishes","assignee_id":1}"#), "{p}");
    assert_eq!(runs(&app, "overdue_nudge").await[0].source, "event");
    // another chat's event fires nothing here
    let other = HearthEvent::ChoreOverdue {
        chat_id: -5,
        chore_id: 7,
        title: "Dishes".into(),
        assignee_id: Some(2),
    };
    assert_eq!(e.on_event(&other).await.unwrap(), 0);
    // through the bus
    let stop = tokio_util::sync::CancellationToken::new();
    let listener = e.listen(stop.clone());
    app.hearth.svc.events.publish(HearthEvent::ChoreOverdue {
        chat_id: GROUP,
        chore_id: 8,
        title: "Bins".into(),
        assignee_id: Some(2),
    });
    for _ in 0..1000 {
        if runs(&app, "only_bobs").await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    e.settle().await;
    assert_eq!(runs(&app, "only_bobs").await.len(), 1);
    assert_eq!(runs(&app, "overdue_nudge").await.len(), 2);
    stop.cancel();
    listener.await.unwrap();
}

#[tokio::test]
async fn templates_install_and_the_chat_limit_holds() {
    let app = TestApp::with(|c| c.routines.max_per_chat = 2, vec![]).await;
    app.say(&group(), &alice(), "hello").await;
    app.say(&group(), &alice(), "/routine_install").await;
    let list = app.last_text(GROUP);
    for t in [
        "morning_briefing",
        "weekly_leaderboard",
        "bin_night",
        "overdue_nudge",
        "oneoff_reminder",
    ] {
        assert!(list.contains(t), "{list}");
    }
    app.say(&group(), &alice(), "/routine_install morning_briefing")
        .await;
    assert!(app.last_text(GROUP).starts_with(
        "Routine morning_briefing created: cron 0 8 * * 1-5 (UTC) · next Mon 23 Nov 08:00 UTC."
    ));
    app.say(
        &group(),
        &alice(),
        "/routine_install bin_night cron 0 20 * * 2",
    )
    .await;
    assert!(
        app.last_text(GROUP)
            .starts_with("Routine bin_night created: cron 0 20 * * 2 (UTC)"),
        "{}",
        app.last_text(GROUP)
    );
    app.say(
        &group(),
        &alice(),
        "/routine_install oneoff_reminder tomorrow 09:00 call the plumber",
    )
    .await;
    assert!(
        app.last_text(GROUP)
            .starts_with("routines: this chat already has 2 active routines"),
        "{}",
        app.last_text(GROUP)
    );
    app.say(&group(), &alice(), "/routine_delete bin_night")
        .await;
    app.say(
        &group(),
        &alice(),
        "/routine_install oneoff_reminder tomorrow 09:00 call the plumber",
    )
    .await;
    assert!(
        app.last_text(GROUP).contains("at 2026-11-22 09:00 UTC"),
        "{}",
        app.last_text(GROUP)
    );
    app.say(&group(), &alice(), "/routine_install morning_briefing")
        .await;
    assert!(
        app.last_text(GROUP)
            .starts_with("name: 'morning_briefing' is already used in this chat"),
        "{}",
        app.last_text(GROUP)
    );
}

#[tokio::test]
async fn history_keeps_the_last_50_runs() {
    let app = app_with_group(vec![]).await;
    let e = engine(&app);
    routines::create(&app.hearth.svc, req("tick", &["every 30s"], "UTC"))
        .await
        .unwrap();
    for _ in 0..55 {
        app.clock.advance(chrono::Duration::seconds(30));
        tick(&app, &e).await;
    }
    assert_eq!(runs(&app, "tick").await.len(), 50);
    assert_eq!(routine(&app, "tick").await.tick_count, 55);
}

async fn http_app(app: &TestApp, e: &Arc<RoutineEngine>) -> String {
    let (addr, _task) = hearth::http::serve(
        "127.0.0.1:0".parse().unwrap(),
        routines::api::router(e.clone()),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    let _ = app;
    format!("http://{addr}")
}

#[tokio::test]
async fn api_trigger_answers_202_401_404_413_423_429() {
    let app = app_with_group(vec![]).await;
    let e = engine(&app);
    let base = http_app(&app, &e).await;
    let c = routines::create(
        &app.hearth.svc,
        req("Deploy finished: {apiArgs}", &["api args"], "UTC"),
    )
    .await
    .unwrap();
    let token = c.api_token.clone().unwrap();
    assert!(token.starts_with("hrt_") && token.len() == 68);
    assert_ne!(
        c.routine.api_token_hash.as_deref(),
        Some(token.as_str()),
        "only the hash is stored"
    );
    // the token reaches the owner's DM only, never the group
    assert!(app.texts(alice().id).last().unwrap().contains(&token));
    assert!(app.texts(GROUP).iter().all(|t| !t.contains(&token)));
    // ... and is never kept in the DM's context log, so no prompt can carry it to the model
    let log = app.store.recall(alice().id, None, None, 50).await.unwrap();
    assert!(
        log.iter().all(|m| !m.text.contains(&token)),
        "token kept in the context log"
    );
    assert!(log.iter().any(|m| m.text.contains("one-time secret")));
    app.say(&group(), &bob(), "/routine_install bin_night api")
        .await;
    assert!(
        app.last_text(GROUP)
            .contains("the token was sent to you privately"),
        "{}",
        app.last_text(GROUP)
    );
    assert!(app
        .texts(bob().id)
        .last()
        .unwrap()
        .starts_with("Api token for routine bin_night (shown once):"));
    let plain = routines::create(&app.hearth.svc, req("no api here", &["every 1h"], "UTC"))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = |id: i64| format!("{base}/routines/{id}/trigger");
    let post = |id: i64, tok: Option<&str>, body: String| {
        let mut r = http
            .post(url(id))
            .body(body)
            .header("content-type", "application/json");
        if let Some(t) = tok {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let id = c.routine.id;
    assert_eq!(
        post(9999, Some(&token), "{}".into())
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        post(plain.routine.id, Some(&token), "{}".into())
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.post(format!("{base}/routines/abc/trigger"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(post(id, None, "{}".into()).await.unwrap().status(), 401);
    assert_eq!(
        post(id, Some("hrt_wrong"), "{}".into())
            .await
            .unwrap()
            .status(),
        401
    );
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(4100));
    assert_eq!(post(id, Some(&token), big).await.unwrap().status(), 413);
    assert_eq!(
        post(id, Some(&token), "not json".into())
            .await
            .unwrap()
            .status(),
        400
    );
    let ok = post(id, Some(&token), r#"{"version":"1.2.3"}"#.into())
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    let v: serde_json::Value = ok.json().await.unwrap();
    let run_id = v["run_id"].as_i64().unwrap();
    e.settle().await;
    let run = app.store.run(run_id).await.unwrap().unwrap();
    assert_eq!(
        (run.status.as_str(), run.source.as_str()),
        ("completed", "api")
    );
    assert!(user_texts(&app)
        .pop()
        .unwrap()
        .ends_with(r#"Deploy finished: {"version":"1.2.3"}"#));
    let admin = routines::Actor {
        user_id: alice().id,
        admin: true,
    };
    routines::set_paused(&app.hearth.svc, GROUP, &c.routine.name, admin, true)
        .await
        .unwrap();
    assert_eq!(
        post(id, Some(&token), "{}".into()).await.unwrap().status(),
        423
    );
    routines::set_paused(&app.hearth.svc, GROUP, &c.routine.name, admin, false)
        .await
        .unwrap();
    // 60 calls a minute: two were used above (the 400 and the 202; refusals before the
    // rate check — 401, 413, 423 — do not count)
    let mut codes = Vec::new();
    for _ in 0..59 {
        codes.push(
            post(id, Some(&token), String::new())
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(codes[..58].iter().all(|c| *c == 202), "{codes:?}");
    assert_eq!(codes[58], 429);
    app.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(
        post(id, Some(&token), String::new())
            .await
            .unwrap()
            .status(),
        202
    );
    e.settle().await;
    tick(&app, &e).await; // drain the queue: one run at a time per routine
    while !app.store.queued_runs(10).await.unwrap().is_empty() {
        tick(&app, &e).await;
    }
    // a routine without `api args` does not see the body
    let c2 = routines::create(&app.hearth.svc, req("Hook: [{apiArgs}]", &["api"], "UTC"))
        .await
        .unwrap();
    let r = post(
        c2.routine.id,
        c2.api_token.as_deref(),
        r#"{"secret":1}"#.into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    e.settle().await;
    assert!(user_texts(&app).pop().unwrap().ends_with("Hook: []"));
}

/// A model that takes 50 ms per call and records how many calls overlap.
#[derive(Clone, Default)]
struct SlowModel {
    active: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
    calls: Arc<std::sync::Mutex<Vec<String>>>,
}

#[async_trait]
impl ChatModel for SlowModel {
    async fn complete(
        &self,
        messages: &[ChatMessage],
        _tools: &[ToolSpec],
    ) -> Result<ModelReply, ModelError> {
        let n = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(n, Ordering::SeqCst);
        let who = messages
            .iter()
            .find_map(|m| match m {
                ChatMessage::User(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.calls.lock().unwrap().push(who.clone());
        self.active.fetch_sub(1, Ordering::SeqCst);
        Ok(ModelReply {
            content: Some(if who.starts_with("[Routine") {
                "routine reply".into()
            } else {
                "member reply".into()
            }),
            tool_calls: vec![],
            prompt_tokens: 1,
            completion_tokens: 1,
            truncated: false,
        })
    }
    fn name(&self) -> &str {
        "slow"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routine_turn_and_a_member_turn_in_one_chat_do_not_interleave() {
    let cfg = test_config();
    let store = Store::memory().await.unwrap();
    let clock = ManualClock::new(t0());
    let messenger = RecordingMessenger::default();
    let model = SlowModel::default();
    let agent = app::agent(
        &cfg,
        Some(Arc::new(model.clone()) as Arc<dyn ChatModel>),
        std::path::Path::new("prompts"),
    )
    .unwrap();
    let hearth = app::core(
        Arc::new(cfg),
        store.clone(),
        Arc::new(clock.clone()) as SharedClock,
        Arc::new(messenger.clone()),
        BotIdentity {
            id: 999,
            username: "hearth_bot".into(),
            name: "Hearth".into(),
        },
        agent,
    );
    let e = RoutineEngine::new(hearth.svc.clone(), hearth.agent.clone());
    store
        .upsert_chat(GROUP, "group", "Home", "UTC", t0())
        .await
        .unwrap();
    routines::create(&hearth.svc, req("status", &["every 30s"], "UTC"))
        .await
        .unwrap();
    let msg = |id: i64| {
        hearth::types::InboundEvent::Message(hearth::types::InboundMessage {
            update_id: None,
            chat: group(),
            from: bob(),
            message_id: id,
            content: hearth::types::Content::Text {
                text: "@hearth_bot how are things?".into(),
            },
            reply_to: None,
            mentions_bot: true,
            date: t0(),
        })
    };
    for round in 0..3 {
        clock.advance(chrono::Duration::seconds(30));
        let (s, a) = tokio::join!(e.sweep(clock.now()), hearth.accept(msg(round + 1)));
        s.unwrap();
        a.unwrap();
        e.settle().await;
        hearth.idle().await;
    }
    assert_eq!(model.calls.lock().unwrap().len(), 6);
    assert_eq!(
        model.max_active.load(Ordering::SeqCst),
        1,
        "turns in one chat overlapped"
    );
    let texts = messenger.texts_to(GROUP);
    assert_eq!(texts.iter().filter(|t| *t == "routine reply").count(), 3);
    assert_eq!(texts.iter().filter(|t| *t == "member reply").count(), 3);
}

#[test]
fn routine_tools_cost_few_prompt_tokens() {
    // every tool schema is paid on every turn: the seven routine tools stay small
    // (measured as the JSON sent in `tools`, o200k: 381 tokens; most is per-tool wrapper)
    let mut reg = hearth::agent::ToolRegistry::default();
    routines::tools::register(&mut reg);
    let bpe = tiktoken_rs::o200k_base().unwrap();
    let text: String = reg
        .specs(true, None)
        .iter()
        .map(|s| {
            serde_json::json!({"type": "function", "function": {"name": s.name, "description": s.description, "parameters": s.parameters}})
                .to_string()
        })
        .collect();
    let n = bpe.encode_with_special_tokens(&text).len();
    println!("routine tools: {n} tokens");
    assert!(n <= 390, "routine tools cost {n} tokens");
}

/// The real binary: a pre-seeded `every 30s` routine that is due fires through the sweep
/// (tokio-cron-scheduler tick → claim → agent turn against an OpenAI-compatible fake) and its
/// reply reaches the group through the fake Bot API.
#[tokio::test]
async fn real_binary_fires_a_due_every_30s_routine_into_the_group() {
    use crate::support::{
        fake_telegram::FakeBotApi,
        tg::{completion, mount_default},
    };
    let fake = FakeBotApi::start().await;
    let llm = wiremock::MockServer::start().await;
    mount_default(&llm, completion("not the routine")).await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/chat/completions"))
        .and(wiremock::matchers::body_string_contains(
            "[Routine 'laundry_check' (every 30s)",
        ))
        .respond_with(completion("Time to move the laundry to the dryer."))
        .with_priority(1)
        .mount(&llm)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("hearth.db").display()
    );
    // seed: the group, and a routine due now
    let routine_id = {
        let store = Store::connect(&url, 2, Duration::from_secs(5))
            .await
            .unwrap();
        let cfg = test_config();
        let agent = app::agent(&cfg, None, std::path::Path::new("prompts")).unwrap();
        let hearth = app::core(
            Arc::new(cfg),
            store.clone(),
            Arc::new(SystemClock) as SharedClock,
            Arc::new(RecordingMessenger::default()),
            BotIdentity {
                id: 1,
                username: "hearth_bot".into(),
                name: "hearth".into(),
            },
            agent,
        );
        store
            .upsert_chat(-500, "group", "Flat", "UTC", Utc::now())
            .await
            .unwrap();
        let c = routines::create(
            &hearth.svc,
            CreateRequest {
                chat_id: -500,
                name: Some("laundry_check".into()),
                ..req("Check the laundry", &["every 30s"], "UTC")
            },
        )
        .await
        .unwrap();
        store
            .set_trigger_next_fire(c.triggers[0].id, Some(Utc::now()))
            .await
            .unwrap();
        c.routine.id
    };
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TELEGRAM_BOT_TOKEN", "123:TEST")
        .env("OPENAI_API_KEY", "sk-test")
        .env("HEARTH_TELEGRAM__API_URL", fake.url())
        .env("HEARTH_TELEGRAM__POLL_TIMEOUT", "1s")
        .env("HEARTH_LLM__BASE_URL", format!("{}/v1", llm.uri()))
        .env("HEARTH_DATABASE__URL", &url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let sent = fake
        .wait_for("sendMessage", 1, Duration::from_secs(30))
        .await;
    assert_eq!(sent[0]["chat_id"].as_i64(), Some(-500));
    assert_eq!(sent[0]["text"], "Time to move the laundry to the dryer.");

    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::connect(&url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    let runs = store.routine_runs(routine_id, 10).await.unwrap();
    let last = runs.last().expect("a run record");
    assert_eq!(
        (last.status.as_str(), last.source.as_str()),
        ("completed", "every")
    );
    assert_eq!((last.prompt_tokens, last.completion_tokens), (42, 7));
}

#[tokio::test]
async fn a_time_zone_change_moves_routines_that_followed_the_chat() {
    let app = app_with_group(vec![]).await; // UTC group, alice is its admin
    app.say(&group(), &alice(), "/cron 0 8 * * * post the chores")
        .await;
    app.say(
        &group(),
        &alice(),
        "/cron 0 9 * * * Europe/Paris call grandma",
    )
    .await;
    let local = routine(
        &app,
        &app.store.routines_of_chat(GROUP).await.unwrap()[0].name,
    )
    .await;
    let fixed = routine(
        &app,
        &app.store.routines_of_chat(GROUP).await.unwrap()[1].name,
    )
    .await;
    app.say(&group(), &alice(), "/timezone America/New_York")
        .await;
    assert!(app.last_text(GROUP).contains("America/New_York"));

    let t = app
        .store
        .routine_triggers(local.id)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(t.zone, "America/New_York");
    let next = t.next_fire_at.unwrap();
    assert_eq!(
        next.format("%H:%M").to_string(),
        "13:00",
        "08:00 in New York is 13:00 UTC"
    );
    assert_eq!(
        next.with_timezone(&chrono_tz::America::New_York)
            .format("%H:%M")
            .to_string(),
        "08:00"
    );
    assert_eq!(
        app.store.routine(local.id).await.unwrap().unwrap().zone,
        "America/New_York"
    );

    let t = app
        .store
        .routine_triggers(fixed.id)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(t.zone, "Europe/Paris", "an explicit zone stays");
}
