//! Multi-step runs (issue 9): the engine executes a run's snapshot step by step through the real
//! agent (scripted model), the outbox (recording messenger) and the store (real migrations);
//! waits are rows with a deadline driven by a manual clock; two engines on one database execute
//! each step once; a dead process's destructive step waits for Retry / Skip; cost warn and limit.
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use hearth::{
    agent::llm::{ChatMessage, ChatModel},
    clock::{Clock, ManualClock, SharedClock},
    events::HearthEvent,
    routines::{
        self,
        runner::{start_run, StartRun, Started},
        CreateRequest, RoutineEngine, RoutineError,
    },
    store::{
        NewStepRun, RoutineRow, RunRow, RunSource, RunStatus, StepRunRow, StepStatus, StepType,
        Store,
    },
    testkit::{RecordingMessenger, Script, ScriptedModel},
};
use serde_json::{json, Map, Value};

use crate::support::*;

fn engine(app: &TestApp) -> Arc<RoutineEngine> {
    RoutineEngine::new(app.hearth.svc.clone(), app.hearth.agent.clone())
}

fn now(app: &TestApp) -> DateTime<Utc> {
    app.clock.now()
}

/// Sweep until nothing more is claimed (a run that starts a child, a woken parent, …).
async fn drive(app: &TestApp, e: &Arc<RoutineEngine>) {
    for _ in 0..20 {
        let r = e.sweep(now(app)).await.expect("sweep");
        e.settle().await;
        if r.queued_started == 0 && r.claimed == 0 {
            return;
        }
    }
    panic!("runs never settled");
}

/// A group with Alice (admin) and Bob.
async fn app_with_group(
    tweak: impl FnOnce(&mut hearth::config::Config),
    script: Vec<Script>,
) -> TestApp {
    let app = TestApp::with(tweak, script).await;
    app.say(&group(), &alice(), "hello").await;
    app.say(&group(), &bob(), "hi").await;
    app
}

/// Save a routine named `name` owned by Alice whose definition is `def` (a `Definition` as JSON).
async fn save(app: &TestApp, name: &str, def: Value, concurrent: bool) -> RoutineRow {
    let c = routines::create(
        &app.hearth.svc,
        CreateRequest {
            chat_id: GROUP,
            chat_zone: "UTC".parse().unwrap(),
            owner_id: alice().id,
            name: Some(name.into()),
            prompt: format!("multi-step routine {name}"),
            triggers: vec!["event member_joined".into()],
            quiet: false,
            max_ticks: None,
            max_runs_per_day: None,
        },
    )
    .await
    .unwrap();
    // the definition must parse as the contract's shape
    let _: routines::steps::Definition = serde_json::from_value(def.clone()).unwrap();
    app.store
        .set_routine_definition(c.routine.id, Some(&def.to_string()), concurrent)
        .await
        .unwrap();
    app.store.routine(c.routine.id).await.unwrap().unwrap()
}

fn inputs(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Start a manual run of `r` by Alice.
async fn start(app: &TestApp, r: &RoutineRow, inp: Value) -> Result<Started, RoutineError> {
    start_run(
        &app.hearth.svc,
        StartRun {
            routine_id: r.id,
            source: RunSource::Manual,
            trigger_id: None,
            started_by: alice().id,
            inputs: inputs(inp),
            scheduled_for: None,
            catch_up: false,
            parent_run_id: None,
            depth: 0,
        },
    )
    .await
}

async fn start_ok(app: &TestApp, r: &RoutineRow, inp: Value) -> i64 {
    match start(app, r, inp).await.unwrap() {
        Started::Run(id) => id,
        other => panic!("not started: {other:?}"),
    }
}

async fn run(store: &Store, id: i64) -> RunRow {
    store.run(id).await.unwrap().unwrap()
}

async fn steps(store: &Store, id: i64) -> Vec<StepRunRow> {
    store.step_runs_of(id).await.unwrap()
}

fn user_texts(model: &ScriptedModel) -> Vec<String> {
    model
        .requests()
        .iter()
        .map(|req| {
            req.iter()
                .filter_map(|m| match m {
                    ChatMessage::User(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

#[tokio::test]
async fn a_three_step_chain_passes_outputs_on_verbatim_and_completes() {
    let app = app_with_group(
        |_| {},
        vec![
            Script::Text("Mon: lentil soup; Tue: risotto (PLAN-7f3a)".into()),
            Script::Text("lentils, rice, parmesan".into()),
        ],
    )
    .await;
    let e = engine(&app);
    let mut events = app.hearth.svc.events.subscribe();
    let r = save(
        &app,
        "meal_chain",
        json!({
            "inputs": [{"name": "preferences"}],
            "steps": [
                {"name": "plan", "kind": "prompt", "prompt": "Propose dinners for {{initial.preferences}}."},
                {"name": "list", "kind": "prompt", "prompt": "Make a shopping list from:\n{{steps.plan.output}}"},
                {"kind": "message", "text": "Shopping ({{date}}, run {{run.id}}): {{steps.2.output}}"}
            ]
        }),
        false,
    )
    .await;
    // a required input is named when missing
    let err = start(&app, &r, json!({})).await.unwrap_err();
    assert!(
        err.to_string().starts_with("preferences: is required"),
        "{err}"
    );

    let id = start_ok(&app, &r, json!({"preferences": "vegetarian"})).await;
    assert_eq!(run(&app.store, id).await.status, RunStatus::Pending);
    drive(&app, &e).await;

    let texts = user_texts(&app.model);
    assert_eq!(texts.len(), 2);
    assert!(
        texts[0].contains("Propose dinners for vegetarian."),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].contains("Mon: lentil soup; Tue: risotto (PLAN-7f3a)"),
        "step 2's request carries step 1's output verbatim: {}",
        texts[1]
    );
    assert_eq!(
        app.last_text(GROUP),
        format!("Shopping (2026-11-21, run {id}): lentils, rice, parmesan")
    );
    let rr = run(&app.store, id).await;
    assert_eq!(rr.status, RunStatus::Completed);
    assert_eq!((rr.prompt_tokens, rr.completion_tokens), (20, 4));
    assert!(rr.finished_at.is_some() && rr.owner.is_none());
    let ss = steps(&app.store, id).await;
    assert_eq!(ss.len(), 3);
    assert!(ss.iter().all(|s| s.status == StepStatus::Completed));
    assert_eq!(
        ss.iter().map(|s| s.position).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(ss[1].output.as_deref(), Some("lentils, rice, parmesan"));
    assert_eq!((ss[0].prompt_tokens, ss[0].completion_tokens), (10, 2));
    // the run's end is an event other routines can react to
    let mut got = None;
    while let Ok(ev) = events.try_recv() {
        if let HearthEvent::RunCompleted {
            run_id, routine, ..
        } = ev
        {
            got = Some((run_id, routine));
        }
    }
    assert_eq!(got, Some((id, "meal_chain".to_string())));
}

#[tokio::test]
async fn a_failing_step_fails_the_run_with_its_error_and_later_steps_do_not_run() {
    let app = app_with_group(|_| {}, vec![]).await;
    let e = engine(&app);
    let mut events = app.hearth.svc.events.subscribe();
    let r = save(
        &app,
        "claim_chain",
        json!({"steps": [
            {"kind": "message", "text": "starting"},
            {"kind": "tool", "tool": "chore_claim", "args": {"chore": "no such chore"}},
            {"kind": "message", "text": "never said"}
        ]}),
        false,
    )
    .await;
    let id = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    let rr = run(&app.store, id).await;
    assert_eq!(rr.status, RunStatus::Failed);
    let reason = rr.reason.clone().unwrap();
    assert!(reason.starts_with("chore_claim: "), "{reason}");
    let ss = steps(&app.store, id).await;
    assert_eq!(ss.len(), 2);
    assert_eq!(ss[1].status, StepStatus::Failed);
    assert_eq!(ss[1].error.as_deref(), Some(reason.as_str()));
    assert!(!app.texts(GROUP).iter().any(|t| t == "never said"));
    let mut failed = None;
    while let Ok(ev) = events.try_recv() {
        if let HearthEvent::RunFailed { run_id, reason, .. } = ev {
            failed = Some((run_id, reason));
        }
    }
    assert_eq!(failed, Some((id, reason)));

    // a template naming an unknown step fails the step (strict rendering), naming it
    let r2 = save(
        &app,
        "typo",
        json!({"steps": [{"kind": "message", "text": "{{steps.lsit.output}}"}]}),
        false,
    )
    .await;
    let id2 = start_ok(&app, &r2, json!({})).await;
    drive(&app, &e).await;
    let rr = run(&app.store, id2).await;
    assert_eq!(rr.status, RunStatus::Failed);
    assert!(rr.reason.unwrap().starts_with("template: "));
    assert_eq!(app.model.calls(), 0);
}

#[tokio::test]
async fn a_run_waiting_on_a_timer_resumes_once_at_the_right_time_after_a_restart() {
    let store = test_store().await;
    let clock = ManualClock::new(t0());
    let first = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    first.say(&group(), &alice(), "hello").await;
    let e1 = engine(&first);
    let r = save(
        &first,
        "timer",
        json!({"steps": [
            {"kind": "message", "text": "before"},
            {"kind": "wait", "duration": "2h"},
            {"kind": "message", "text": "after"}
        ]}),
        false,
    )
    .await;
    let id = start_ok(&first, &r, json!({})).await;
    drive(&first, &e1).await;
    let rr = run(&store, id).await;
    assert_eq!(rr.status, RunStatus::Waiting);
    assert_eq!(rr.waiting_for.as_deref(), Some("timer"));
    assert_eq!(rr.wake_at, Some(t0() + chrono::Duration::hours(2)));
    assert!(rr.owner.is_none(), "a waiting run holds nothing");
    drop(e1);
    drop(first);

    // a new process over the same database
    let second = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    second.continue_ids_from(100);
    let e2 = engine(&second);
    clock.advance(chrono::Duration::minutes(119));
    drive(&second, &e2).await;
    assert!(second.texts(GROUP).is_empty(), "not yet");
    assert_eq!(run(&store, id).await.status, RunStatus::Waiting);
    clock.advance(chrono::Duration::minutes(1));
    drive(&second, &e2).await;
    clock.advance(chrono::Duration::minutes(10));
    drive(&second, &e2).await;
    assert_eq!(
        second.texts(GROUP),
        vec!["after".to_string()],
        "resumed once"
    );
    let rr = run(&store, id).await;
    assert_eq!(rr.status, RunStatus::Completed);
    let ss = steps(&store, id).await;
    assert_eq!(ss.len(), 3, "{ss:?}");
    assert_eq!(ss[1].kind, StepType::Wait);
    assert_eq!(ss[1].status, StepStatus::Completed);
}

/// A process over `store` with its own messenger and clock.
struct Proc {
    engine: Arc<RoutineEngine>,
    clock: ManualClock,
    messenger: RecordingMessenger,
}

fn process(store: Store) -> Proc {
    let clock = ManualClock::new(t0());
    let messenger = RecordingMessenger::default();
    let hearth = build_core(
        test_config(),
        store,
        Arc::new(clock.clone()) as SharedClock,
        Arc::new(messenger.clone()),
        Some(Arc::new(ScriptedModel::new(vec![])) as Arc<dyn ChatModel>),
    );
    Proc {
        engine: RoutineEngine::with_owner(hearth.svc.clone(), hearth.agent.clone(), hearth.owner()),
        clock,
        messenger,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_database_run_every_step_exactly_once() {
    // SQLite: two connection pools on one file; Postgres (CI): the test database
    let dir = tempfile::tempdir().unwrap();
    let (sa, sb) = match std::env::var("HEARTH_TEST_DATABASE_URL") {
        Ok(u) if u.starts_with("postgres") => {
            let s = test_store().await;
            (s.clone(), s)
        }
        _ => {
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("runs.db").display());
            let a = Store::connect(&url, 5, Duration::from_secs(10))
                .await
                .unwrap();
            let b = Store::connect(&url, 5, Duration::from_secs(10))
                .await
                .unwrap();
            (a, b)
        }
    };
    let a = process(sa.clone());
    let b = process(sb);
    let svc = a.engine.services();
    svc.store
        .upsert_chat(GROUP, "group", "Home", "UTC", t0())
        .await
        .unwrap();
    let c = routines::create(
        svc,
        CreateRequest {
            chat_id: GROUP,
            chat_zone: "UTC".parse().unwrap(),
            owner_id: alice().id,
            name: Some("fanout".into()),
            prompt: "fan out".into(),
            triggers: vec!["event member_joined".into()],
            quiet: false,
            max_ticks: None,
            max_runs_per_day: None,
        },
    )
    .await
    .unwrap();
    let def = json!({"steps": [
        {"kind": "message", "text": "one {{run.id}}"},
        {"kind": "wait", "duration": "30s"},
        {"kind": "condition", "if": {"value": "{{steps.1.output}}", "contains": "one"}},
        {"kind": "message", "text": "two {{run.id}}"}
    ]});
    sa.set_routine_definition(c.routine.id, Some(&def.to_string()), true)
        .await
        .unwrap();
    let n = 30;
    let mut ids = vec![];
    for _ in 0..n {
        match start_run(
            svc,
            StartRun {
                routine_id: c.routine.id,
                source: RunSource::Manual,
                trigger_id: None,
                started_by: alice().id,
                inputs: Map::new(),
                scheduled_for: None,
                catch_up: false,
                parent_run_id: None,
                depth: 0,
            },
        )
        .await
        .unwrap()
        {
            Started::Run(id) => ids.push(id),
            s => panic!("{s:?}"),
        }
    }
    for _ in 0..8 {
        let (ra, rb) = tokio::join!(a.engine.sweep(a.clock.now()), b.engine.sweep(b.clock.now()));
        ra.unwrap();
        rb.unwrap();
        a.engine.settle().await;
        b.engine.settle().await;
        a.clock.advance(chrono::Duration::seconds(30));
        b.clock.advance(chrono::Duration::seconds(30));
    }
    // the steps' own messages (each run also has its one progress message, "fanout · run N · …")
    let progress = |t: &String| t.starts_with("fanout · run ");
    let mut all = a.messenger.texts_to(GROUP);
    all.extend(b.messenger.texts_to(GROUP));
    let (shown, mut texts): (Vec<String>, Vec<String>) = all.into_iter().partition(progress);
    let mut runs_shown: Vec<&str> = shown.iter().filter_map(|t| t.split(" · ").nth(1)).collect();
    runs_shown.sort();
    runs_shown.dedup();
    assert_eq!(
        (runs_shown.len(), shown.len()),
        (n, n),
        "one progress message per run: {shown:?}"
    );
    assert_eq!(texts.len(), 2 * n, "{texts:?}");
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 2 * n, "a message was sent twice");
    assert!(
        !a.messenger.texts_to(GROUP).is_empty() && !b.messenger.texts_to(GROUP).is_empty(),
        "both processes worked"
    );
    for id in ids {
        let rr = run(&sa, id).await;
        assert_eq!(rr.status, RunStatus::Completed, "{rr:?}");
        let ss = steps(&sa, id).await;
        assert_eq!(
            ss.iter().map(|s| s.position).collect::<Vec<_>>(),
            vec![0, 1, 2, 3],
            "run {id}: every step exactly once"
        );
        assert!(ss.iter().all(|s| s.status == StepStatus::Completed));
    }
}

/// Make run `id` look held by a process that died in the middle of step `position`.
async fn die_mid_step(app: &TestApp, id: i64, position: i32, kind: StepType) {
    let rr = run(&app.store, id).await;
    assert!(app
        .store
        .claim_run(
            &rr,
            "dead-process",
            now(app),
            now(app) + chrono::Duration::seconds(30)
        )
        .await
        .unwrap());
    app.store
        .insert_step_run(NewStepRun {
            run_id: id,
            position,
            attempt: 1,
            name: None,
            kind,
            status: StepStatus::Running,
            input: None,
            started_at: Some(now(app)),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_dead_process_destructive_step_waits_for_retry_or_skip_and_a_safe_one_reruns() {
    let app = app_with_group(|_| {}, vec![]).await;
    let e = engine(&app);
    let r = save(
        &app,
        "cleanup",
        json!({"steps": [
            {"kind": "prompt", "prompt": "Delete the chores nobody did."},
            {"kind": "message", "text": "cleaned"}
        ]}),
        true,
    )
    .await;
    let id = start_ok(&app, &r, json!({})).await;
    die_mid_step(&app, id, 0, StepType::Prompt).await;
    // the lease has not lapsed: nobody takes it
    app.clock.advance(chrono::Duration::seconds(29));
    drive(&app, &e).await;
    assert_eq!(
        run(&app.store, id).await.owner.as_deref(),
        Some("dead-process")
    );
    app.clock.advance(chrono::Duration::seconds(2));
    drive(&app, &e).await;
    let rr = run(&app.store, id).await;
    assert_eq!(
        (rr.status, rr.waiting_for.as_deref()),
        (RunStatus::Waiting, Some("interrupted"))
    );
    assert_eq!(app.model.calls(), 0, "never re-executed blindly");
    assert_eq!(
        steps(&app.store, id).await[0].status,
        StepStatus::Interrupted
    );
    let ask = app
        .messenger
        .sent()
        .into_iter()
        .rfind(|o| o.chat_id == GROUP && o.html.contains("was cut off"))
        .expect("the Retry / Skip question");
    let data: Vec<&str> = ask.buttons[0].iter().map(|b| b.data.as_str()).collect();
    assert_eq!(
        data,
        vec![format!("run:retry:{id}"), format!("run:skip:{id}")]
    );
    // it stays waiting for a member's choice
    app.clock.advance(chrono::Duration::hours(1));
    drive(&app, &e).await;
    assert_eq!(run(&app.store, id).await.status, RunStatus::Waiting);

    // a message step (no destructive tool) is simply run again
    let r3 = save(
        &app,
        "hello",
        json!({"steps": [{"kind": "message", "text": "hello there"}]}),
        false,
    )
    .await;
    let id3 = start_ok(&app, &r3, json!({})).await;
    die_mid_step(&app, id3, 0, StepType::Message).await;
    app.clock.advance(chrono::Duration::seconds(31));
    drive(&app, &e).await;
    assert_eq!(run(&app.store, id3).await.status, RunStatus::Completed);
    let ss = steps(&app.store, id3).await;
    assert_eq!(
        ss.iter().map(|s| s.status).collect::<Vec<_>>(),
        vec![StepStatus::Failed, StepStatus::Completed]
    );
    assert_eq!(
        app.texts(GROUP)
            .iter()
            .filter(|t| *t == "hello there")
            .count(),
        1
    );
}

fn pricey(c: &mut hearth::config::Config) {
    // 10 prompt tokens a call (the scripted model) at $60,000 per million: $0.60 a call
    c.llm.prompt_price_per_mtok = 60_000.0;
    c.llm.completion_price_per_mtok = 0.0;
}

fn three_prompts() -> Value {
    json!({"steps": [
        {"kind": "prompt", "prompt": "one"},
        {"kind": "prompt", "prompt": "two"},
        {"kind": "prompt", "prompt": "three"}
    ]})
}

#[tokio::test]
async fn cost_warn_asks_and_waits() {
    let app = app_with_group(pricey, vec![]).await;
    let e = engine(&app);
    let r = save(&app, "spender", three_prompts(), false).await;
    let id = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    assert_eq!(
        app.model.calls(),
        2,
        "stopped after the step that crossed $1"
    );
    let rr = run(&app.store, id).await;
    assert_eq!(
        (rr.status, rr.waiting_for.as_deref(), rr.current_step),
        (RunStatus::Waiting, Some("cost"), 2)
    );
    assert!((rr.cost_usd - 1.2).abs() < 1e-9, "{}", rr.cost_usd);
    let ask = app
        .messenger
        .sent()
        .into_iter()
        .rfind(|o| o.chat_id == GROUP)
        .unwrap();
    assert!(
        ask.html
            .contains("this run has spent $1.20 so far — continue?"),
        "{}",
        ask.html
    );
    let data: Vec<&str> = ask.buttons[0].iter().map(|b| b.data.as_str()).collect();
    assert_eq!(data, vec![format!("run:go:{id}"), format!("run:stop:{id}")]);
    app.clock.advance(chrono::Duration::days(1));
    drive(&app, &e).await;
    assert_eq!(app.model.calls(), 2, "it waits for an answer");
}

#[tokio::test]
async fn cost_limit_stops_the_run_and_says_so() {
    let app = app_with_group(
        |c| {
            pricey(c);
            c.routines.cost_warn = 100.0;
            c.routines.cost_limit = 1.0;
        },
        vec![],
    )
    .await;
    let e = engine(&app);
    let r = save(&app, "spender", three_prompts(), false).await;
    let id = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    assert_eq!(app.model.calls(), 2);
    let rr = run(&app.store, id).await;
    assert_eq!(
        (rr.status, rr.reason.as_deref()),
        (RunStatus::Failed, Some("cost limit"))
    );
    assert!(
        app.last_text(GROUP)
            .contains("stopped: it reached the cost limit of $1.00 (spent $1.20)"),
        "{}",
        app.last_text(GROUP)
    );
}

#[tokio::test]
async fn a_repeated_identical_tool_call_stops_the_step_as_a_loop() {
    let call = || Script::Tools(vec![("list_members".into(), "{}".into())]);
    let app = app_with_group(|_| {}, vec![call(), call(), call(), call(), call()]).await;
    let e = engine(&app);
    let r = save(
        &app,
        "looper",
        json!({"steps": [{"kind": "prompt", "prompt": "Who lives here?"}, {"kind": "message", "text": "x"}]}),
        false,
    )
    .await;
    let id = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    let rr = run(&app.store, id).await;
    assert_eq!(
        (rr.status, rr.reason.as_deref()),
        (
            RunStatus::Failed,
            Some("loop: the same tool call three times")
        )
    );
    assert!(app.model.calls() <= 3, "{}", app.model.calls());
}

#[tokio::test]
async fn editing_a_routine_during_a_run_does_not_change_that_run_and_members_are_answered_meanwhile(
) {
    let app = app_with_group(|_| {}, vec![Script::Text("Hi Bob, sure.".into())]).await;
    let e = engine(&app);
    let r = save(
        &app,
        "later",
        json!({"steps": [{"kind": "wait", "duration": "1h"}, {"kind": "message", "text": "old text"}]}),
        false,
    )
    .await;
    let id = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    assert_eq!(run(&app.store, id).await.status, RunStatus::Waiting);
    // a member talks to hearth while the run waits: no lock is held
    app.say(&group(), &bob(), "@hearth_bot can you hear me?")
        .await;
    assert_eq!(app.last_text(GROUP), "Hi Bob, sure.");
    // the routine is edited meanwhile
    let new_def = json!({"steps": [{"kind": "message", "text": "new text"}]});
    app.store
        .set_routine_definition(r.id, Some(&new_def.to_string()), false)
        .await
        .unwrap();
    app.clock.advance(chrono::Duration::hours(1));
    drive(&app, &e).await;
    assert_eq!(run(&app.store, id).await.status, RunStatus::Completed);
    assert_eq!(app.last_text(GROUP), "old text");
    // the next run takes the new definition
    let id2 = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    assert_eq!(run(&app.store, id2).await.status, RunStatus::Completed);
    assert_eq!(app.last_text(GROUP), "new text");
}

#[tokio::test]
async fn one_active_run_per_routine_unless_concurrent() {
    let app = app_with_group(|_| {}, vec![]).await;
    let e = engine(&app);
    let def =
        json!({"steps": [{"kind": "wait", "duration": "1h"}, {"kind": "message", "text": "x"}]});
    let r = save(&app, "single", def.clone(), false).await;
    let first = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    let Started::Skipped(skipped, reason) = start(&app, &r, json!({})).await.unwrap() else {
        panic!("a second run started");
    };
    assert_eq!(reason, "already running");
    let sr = run(&app.store, skipped).await;
    assert_eq!(
        (sr.status, sr.reason.as_deref()),
        (RunStatus::Skipped, Some("already running"))
    );
    // a fire through the engine is skipped the same way
    let started = e
        .queue(r.id, None, RunSource::Api, Map::new())
        .await
        .unwrap();
    assert!(matches!(started, Started::Skipped(_, ref why) if why == "already running"));
    // a concurrent routine runs twice at once
    app.store
        .set_routine_definition(r.id, Some(&def.to_string()), true)
        .await
        .unwrap();
    let second = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    for id in [first, second] {
        assert_eq!(run(&app.store, id).await.status, RunStatus::Waiting);
    }
}

#[tokio::test]
async fn an_event_wait_takes_the_event_fields_or_times_out() {
    let app = app_with_group(|_| {}, vec![]).await;
    let e = engine(&app);
    let r = save(
        &app,
        "watch",
        json!({"steps": [
            {"kind": "wait", "event": "chore_overdue", "filters": {"assignee_id": "2"}, "event_timeout": "1h"},
            {"kind": "message", "text": "got: {{steps.1.output}}"}
        ]}),
        true,
    )
    .await;
    let id = start_ok(&app, &r, json!({})).await;
    let id2 = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    assert_eq!(
        run(&app.store, id).await.waiting_for.as_deref(),
        Some("event:chore_overdue")
    );
    let ev = |assignee| HearthEvent::ChoreOverdue {
        chat_id: GROUP,
        chore_id: 7,
        title: "Dishes".into(),
        assignee_id: Some(assignee),
    };
    e.on_event(&ev(1)).await.unwrap();
    e.settle().await;
    assert_eq!(
        run(&app.store, id).await.status,
        RunStatus::Waiting,
        "filter"
    );
    e.on_event(&ev(2)).await.unwrap();
    e.settle().await;
    drive(&app, &e).await;
    let done: Vec<String> = app
        .texts(GROUP)
        .into_iter()
        .filter(|t| t.starts_with("got:"))
        .collect();
    assert_eq!(done.len(), 2, "one event wakes both waiting runs: {done:?}");
    assert!(done[0].contains("\"title\":\"Dishes\""), "{}", done[0]);
    // a third run gets no event: after its timeout the output is "timeout"
    let id3 = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    app.clock.advance(chrono::Duration::hours(1));
    drive(&app, &e).await;
    assert_eq!(run(&app.store, id3).await.status, RunStatus::Completed);
    assert_eq!(app.last_text(GROUP), "got: timeout");
    assert_eq!(run(&app.store, id2).await.status, RunStatus::Completed);
}

#[tokio::test]
async fn a_routine_step_runs_a_child_and_a_loop_back_is_bounded() {
    let app = app_with_group(|_| {}, vec![]).await;
    let e = engine(&app);
    save(
        &app,
        "child_r",
        json!({"inputs": [{"name": "x"}], "steps": [{"kind": "message", "text": "child says {{initial.x}}"}]}),
        false,
    )
    .await;
    let parent = save(
        &app,
        "parent_r",
        json!({"inputs": [{"name": "y", "required": false, "default": "hi"}], "steps": [
            {"kind": "routine", "routine": "child_r", "inputs": {"x": "{{initial.y}}"}},
            {"kind": "message", "text": "parent got: {{steps.1.output}}"}
        ]}),
        false,
    )
    .await;
    let id = start_ok(&app, &parent, json!({})).await;
    drive(&app, &e).await;
    assert_eq!(run(&app.store, id).await.status, RunStatus::Completed);
    let texts = app.texts(GROUP);
    let n = texts.len();
    assert_eq!(
        texts[n - 2..],
        [
            "child says hi".to_string(),
            "parent got: child says hi".to_string()
        ]
    );

    let looper = save(
        &app,
        "loop_r",
        json!({"steps": [
            {"name": "again", "kind": "message", "text": "pass {{retry.count}}"},
            {"kind": "condition", "if": {"value": "{{steps.again.output}}", "contains": "pass"}, "then": "again", "max_loops": 2}
        ]}),
        false,
    )
    .await;
    let id = start_ok(&app, &looper, json!({})).await;
    drive(&app, &e).await;
    let rr = run(&app.store, id).await;
    assert_eq!(
        (rr.status, rr.reason.as_deref()),
        (RunStatus::Failed, Some("loop limit"))
    );
    let passes: Vec<String> = app
        .texts(GROUP)
        .into_iter()
        .filter(|t| t.starts_with("pass "))
        .collect();
    assert_eq!(passes, vec!["pass 0", "pass 1", "pass 2"]);
}

#[tokio::test]
async fn a_destructive_call_in_a_prompt_step_waits_for_the_owners_confirmation() {
    let app = app_with_group(
        |_| {},
        vec![
            Script::Tools(vec![(
                "chore_request_deletion".into(),
                r#"{"chore":"Dishes"}"#.into(),
            )]),
            Script::Text("I asked Alice to confirm.".into()),
        ],
    )
    .await;
    let e = engine(&app);
    app.say(&group(), &alice(), "/chore_add Dishes").await;
    let r = save(
        &app,
        "tidy",
        json!({"steps": [
            {"kind": "prompt", "prompt": "Remove the Dishes chore."},
            {"kind": "message", "text": "after: {{steps.1.output}}"}
        ]}),
        false,
    )
    .await;
    let id = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    let rr = run(&app.store, id).await;
    assert_eq!(rr.status, RunStatus::Waiting, "{rr:?}");
    let w = rr.waiting_for.clone().unwrap();
    assert!(w.starts_with("confirm:"), "{w}");
    let wf: i64 = w["confirm:".len()..].parse().unwrap();
    app.press(&group(), &alice(), 0, &format!("wf:a:{wf}"))
        .await;
    drive(&app, &e).await;
    assert_eq!(run(&app.store, id).await.status, RunStatus::Completed);
    assert_eq!(app.last_text(GROUP), "after: I asked Alice to confirm.");
}

#[tokio::test]
async fn a_routine_reacts_to_another_routines_run_completed_event() {
    let app = app_with_group(|_| {}, vec![Script::Text("Well done, team.".into())]).await;
    let e = engine(&app);
    let mut events = app.hearth.svc.events.subscribe();
    let first = save(
        &app,
        "first_r",
        json!({"steps": [{"kind": "message", "text": "first done"}]}),
        false,
    )
    .await;
    routines::create(
        &app.hearth.svc,
        CreateRequest {
            chat_id: GROUP,
            chat_zone: "UTC".parse().unwrap(),
            owner_id: alice().id,
            name: Some("cheer".into()),
            prompt: "Congratulate the group: {event}".into(),
            triggers: vec!["event run_completed routine=first_r".into()],
            quiet: false,
            max_ticks: None,
            max_runs_per_day: None,
        },
    )
    .await
    .unwrap();
    let id = start_ok(&app, &first, json!({})).await;
    drive(&app, &e).await;
    let mut fired = 0;
    while let Ok(ev) = events.try_recv() {
        fired += e.on_event(&ev).await.unwrap();
    }
    e.settle().await;
    assert_eq!(fired, 1, "the completion of first_r starts cheer once");
    assert_eq!(app.last_text(GROUP), "Well done, team.");
    let prompt = user_texts(&app.model).pop().unwrap();
    assert!(
        prompt.contains(&format!(
            r#""kind":"run_completed","chat_id":-1001,"routine":"first_r","run_id":{id}"#
        )),
        "{prompt}"
    );
}

#[tokio::test]
async fn direct_messages_a_local_time_wait_and_a_fact_condition() {
    let app = app_with_group(|_| {}, vec![]).await;
    let e = engine(&app);
    let r = save(
        &app,
        "mixed",
        json!({"steps": [
            {"kind": "message", "text": "psst, owner", "to": "owner"},
            {"kind": "message", "text": "hi Bob", "to": "bob"},
            {"kind": "wait", "until": "12:30"},
            {"kind": "condition", "if": {"value": "fact:overdue_count", "compare": "== 0"}, "then": "end"},
            {"kind": "message", "text": "unreachable"}
        ]}),
        false,
    )
    .await;
    let id = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    assert_eq!(app.texts(alice().id).last().unwrap(), "psst, owner");
    assert_eq!(app.texts(bob().id).last().unwrap(), "hi Bob");
    let rr = run(&app.store, id).await;
    assert_eq!(
        (rr.waiting_for.as_deref(), rr.wake_at),
        (Some("until"), Some(t0() + chrono::Duration::minutes(150)))
    );
    app.clock.advance(chrono::Duration::minutes(150));
    drive(&app, &e).await;
    let rr = run(&app.store, id).await;
    assert_eq!(rr.status, RunStatus::Completed);
    let ss = steps(&app.store, id).await;
    assert_eq!(ss.len(), 4, "the condition ended the run");
    assert_eq!(ss[3].output.as_deref(), Some("then"));
    assert_eq!(ss[3].reason.as_deref(), Some("0"));
    assert!(!app.texts(GROUP).iter().any(|t| t == "unreachable"));
}

#[tokio::test]
async fn per_model_prices_cost_the_steps() {
    let app = app_with_group(
        |c| {
            let model = c.llm.model.clone();
            c.llm.prices.insert(
                model,
                hearth::config::ModelPrice {
                    prompt: 1000.0,
                    completion: 5000.0,
                },
            );
        },
        vec![],
    )
    .await;
    let e = engine(&app);
    let r = save(
        &app,
        "priced",
        json!({"steps": [{"kind": "prompt", "prompt": "hi"}]}),
        false,
    )
    .await;
    let id = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    // 10 prompt + 2 completion tokens at $1,000 / $5,000 per million
    let want = 10.0 * 1000.0 / 1e6 + 2.0 * 5000.0 / 1e6;
    let rr = run(&app.store, id).await;
    assert!((rr.cost_usd - want).abs() < 1e-12, "{}", rr.cost_usd);
    assert!((steps(&app.store, id).await[0].cost_usd - want).abs() < 1e-12);
}

/// A member pauses a run while this process executes its step (a model turn that may have
/// called a destructive tool): the step's result is still recorded, the run stays paused at the
/// next step, and a resume continues there — the step is never run twice.
#[tokio::test]
async fn a_pause_during_a_step_records_the_step_and_resume_continues_after_it() {
    use hearth::store::{RunChange, StepChange};
    let app = app_with_group(|_| {}, vec![]).await;
    let r = save(
        &app,
        "pausable",
        json!({"steps": [
            {"name": "one", "kind": "prompt", "prompt": "first"},
            {"name": "two", "kind": "message", "text": "after {{steps.one.output}}"}
        ]}),
        false,
    )
    .await;
    let id = start_ok(&app, &r, json!({})).await;
    let seen = run(&app.store, id).await;
    let lease = now(&app) + chrono::Duration::seconds(30);
    assert!(app
        .store
        .claim_run(&seen, "proc-a", now(&app), lease)
        .await
        .unwrap());
    let step = app
        .store
        .insert_step_run(hearth::store::NewStepRun {
            run_id: id,
            position: 0,
            attempt: 1,
            name: Some("one".into()),
            kind: hearth::store::StepType::Prompt,
            status: StepStatus::Running,
            input: Some("first".into()),
            started_at: Some(now(&app)),
        })
        .await
        .unwrap();
    // the member's pause lands while the turn runs
    assert!(app.store.pause_run(id).await.unwrap());
    let done = StepChange {
        id: step,
        status: StepStatus::Completed,
        output: Some("did it".into()),
        reason: None,
        error: None,
        prompt_tokens: 10,
        completion_tokens: 2,
        cost_usd: 0.001,
        duration_ms: 5,
        workflow_id: None,
        finished_at: Some(now(&app)),
        counted: false,
    };
    let mut change = RunChange::running(1, lease);
    change.add_prompt_tokens = 10;
    change.add_completion_tokens = 2;
    let going_on = app
        .store
        .advance_run(id, "proc-a", &change, Some(&done))
        .await
        .unwrap();
    assert!(!going_on, "the executor stops at a pause");
    let rr = run(&app.store, id).await;
    assert_eq!((rr.status, rr.current_step), (RunStatus::Paused, 1));
    assert_eq!(rr.prompt_tokens, 10);
    assert_eq!(steps(&app.store, id).await[0].status, StepStatus::Completed);
    // another process's commit for a run it does not hold writes nothing
    assert!(!app
        .store
        .advance_run(id, "proc-b", &change, Some(&done))
        .await
        .unwrap());
    // resume: the next step runs, the first is not repeated
    assert_eq!(
        app.store.resume_run(id).await.unwrap(),
        Some(RunStatus::Pending)
    );
    let e = engine(&app);
    drive(&app, &e).await;
    let rr = run(&app.store, id).await;
    assert_eq!(rr.status, RunStatus::Completed);
    assert_eq!(app.model.calls(), 0, "the paused step never ran again");
    assert!(app
        .messenger
        .texts_to(GROUP)
        .iter()
        .any(|t| t == "after did it"));
}

/// The approval step end to end: the gate's request is answered by "approve 1" from another
/// member with no model call and the run goes on; a rejection with a reason takes the
/// `on_reject` branch back to the step, which sees the reason as `{{retry.reason}}`; the owner
/// cannot approve their own gate.
#[tokio::test]
async fn an_approval_step_is_decided_in_the_chat_and_a_rejection_loops_back_with_its_reason() {
    let app = app_with_group(
        |_| {},
        vec![
            Script::Text("Pasta, curry, fish pie".into()),
            Script::Text("Pasta, curry, tacos".into()),
        ],
    )
    .await;
    let r = save(
        &app,
        "dinners",
        json!({"steps": [
            {"name": "plan", "kind": "prompt",
             "prompt": "Propose dinners. {% if retry.reason %}Rejected because: {{retry.reason}}{% endif %}"},
            {"name": "gate", "kind": "approval", "text": "Dinners OK?\n{{steps.plan.output}}",
             "on_reject": "plan", "max_loops": 2},
            {"name": "post", "kind": "message", "text": "Approved: {{steps.plan.output}}"}
        ]}),
        false,
    )
    .await;
    let e = engine(&app);
    let id = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    let rr = run(&app.store, id).await;
    assert_eq!(rr.status, RunStatus::Waiting, "{rr:?}");
    assert!(rr.waiting_for.as_deref().unwrap().starts_with("approval:"));
    assert_eq!(app.model.calls(), 1);

    // the run owner (Alice) cannot approve her own gate
    app.say(&group(), &alice(), "approve 1").await;
    drive(&app, &e).await;
    assert_eq!(run(&app.store, id).await.status, RunStatus::Waiting);

    // Bob rejects with a reason: back to the plan, which sees the reason
    app.say(&group(), &bob(), "reject 1, no fish please").await;
    drive(&app, &e).await;
    assert_eq!(
        app.model.calls(),
        2,
        "the rejection itself made no model call"
    );
    let texts = user_texts(&app.model);
    assert!(
        texts[1].contains("Rejected because: no fish please"),
        "{}",
        texts[1]
    );
    assert_eq!(run(&app.store, id).await.status, RunStatus::Waiting);

    // Bob approves the new plan: the run posts it and completes, with no model call
    app.say(&group(), &bob(), "approve 1").await;
    drive(&app, &e).await;
    assert_eq!(app.model.calls(), 2);
    let rr = run(&app.store, id).await;
    assert_eq!(rr.status, RunStatus::Completed, "{rr:?}");
    assert!(app
        .messenger
        .texts_to(GROUP)
        .iter()
        .any(|t| t == "Approved: Pasta, curry, tacos"));
    let gates: Vec<_> = steps(&app.store, id)
        .await
        .into_iter()
        .filter(|s| s.position == 1)
        .map(|s| (s.output.unwrap_or_default(), s.reason.unwrap_or_default()))
        .collect();
    assert_eq!(
        gates,
        vec![
            ("rejected".to_string(), "no fish please".to_string()),
            ("approved".to_string(), String::new())
        ]
    );
}

/// A run waiting on an approval gate survives a restart: the new process's member says
/// "approve 1", and the run continues once, from the gate, with no model call.
#[tokio::test]
async fn a_run_waiting_on_an_approval_resumes_once_after_a_restart() {
    let store = test_store().await;
    let clock = ManualClock::new(t0());
    let first = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    first.say(&group(), &alice(), "hello").await;
    first.say(&group(), &bob(), "hi").await;
    let e1 = engine(&first);
    let r = save(
        &first,
        "gated",
        json!({"steps": [
            {"kind": "message", "text": "before"},
            {"name": "gate", "kind": "approval", "text": "Go ahead?"},
            {"kind": "message", "text": "after"}
        ]}),
        false,
    )
    .await;
    let id = start_ok(&first, &r, json!({})).await;
    drive(&first, &e1).await;
    let rr = run(&store, id).await;
    assert_eq!(rr.status, RunStatus::Waiting);
    assert!(rr.waiting_for.as_deref().unwrap().starts_with("approval:"));
    assert!(rr.owner.is_none(), "a waiting run holds nothing");
    drop(e1);
    drop(first);

    let second = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    second.continue_ids_from(100);
    let e2 = engine(&second);
    clock.advance(chrono::Duration::hours(1));
    drive(&second, &e2).await;
    assert_eq!(
        run(&store, id).await.status,
        RunStatus::Waiting,
        "still waiting"
    );
    second.say(&group(), &bob(), "approve 1").await;
    drive(&second, &e2).await;
    drive(&second, &e2).await;
    let after: Vec<String> = second
        .texts(GROUP)
        .into_iter()
        .filter(|t| t == "after")
        .collect();
    assert_eq!(after, vec!["after".to_string()], "resumed once");
    assert_eq!(run(&store, id).await.status, RunStatus::Completed);
    assert_eq!(second.model.calls(), 0);
}

/// The engine's saved statements keep what they saved: every prompt step's turn is recorded
/// (with the step's commit) with its tokens; each step run is written once, attempt 1, also
/// when it was inserted with the previous step's commit (a prompt rendered with the step just
/// finished, a message) or by the claim of a lapsed timer (a message after a wait).
#[tokio::test]
async fn prompt_turns_are_recorded_and_each_step_run_is_written_once() {
    let app = app_with_group(|_| {}, vec![]).await;
    let e = engine(&app);
    let r = save(
        &app,
        "folded",
        json!({"steps": [
            {"kind": "prompt", "prompt": "one"},
            {"kind": "prompt", "prompt": "two after {{steps.1.output}}"},
            {"kind": "message", "text": "said {{steps.2.output}}"},
            {"kind": "wait", "duration": "1m"},
            {"kind": "message", "text": "after the wait {{run.id}}"},
            {"kind": "prompt", "prompt": "three"}
        ]}),
        false,
    )
    .await;
    let id = start_ok(&app, &r, json!({})).await;
    drive(&app, &e).await;
    assert_eq!(run(&app.store, id).await.status, RunStatus::Waiting);
    app.clock.advance(chrono::Duration::minutes(2));
    drive(&app, &e).await;
    let rr = run(&app.store, id).await;
    assert_eq!(rr.status, RunStatus::Completed, "{rr:?}");
    let ss = steps(&app.store, id).await;
    assert_eq!(
        ss.iter()
            .map(|s| (s.position, s.attempt, s.status))
            .collect::<Vec<_>>(),
        (0..6)
            .map(|p| (p, 1, StepStatus::Completed))
            .collect::<Vec<_>>(),
        "{ss:?}"
    );
    assert_eq!(
        ss[1].input.as_deref(),
        Some(format!("two after {}", ss[0].output.clone().unwrap()).as_str()),
        "the prompt inserted with step 1's commit carries step 1's output"
    );
    let texts = user_texts(&app.model);
    assert_eq!(texts.len(), 3);
    assert!(
        texts[1].ends_with(ss[1].input.as_deref().unwrap()),
        "{}",
        texts[1]
    );
    let after = format!("after the wait {id}");
    assert_eq!(
        app.texts(GROUP).iter().filter(|t| **t == after).count(),
        1,
        "the message after the timer was sent once"
    );
    // one turn record per prompt step, its tokens the run's totals
    let turns: Vec<_> = app
        .store
        .turns(GROUP)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.source == "routine")
        .collect();
    assert_eq!(turns.len(), 3, "{turns:?}");
    assert_eq!(
        (
            turns.iter().map(|t| t.prompt_tokens).sum::<i32>(),
            turns.iter().map(|t| t.completion_tokens).sum::<i32>()
        ),
        (rr.prompt_tokens, rr.completion_tokens)
    );
    assert_eq!((rr.prompt_tokens, rr.completion_tokens), (30, 6));
    assert!(turns.iter().all(|t| t.outcome == "ok"));
}
