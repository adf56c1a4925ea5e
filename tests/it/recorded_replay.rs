//! Recorded routines, replay (issue 10, item 5): `/handover` imported as TOML (the contract's
//! shape), its typed parameters asked for and checked, the replay restricted in the runtime to
//! the routine's tools, every destructive call confirmed by the member who started the run (a
//! cancelled or expired confirmation ends the run `cancelled`, saying what was done), a restart
//! during the confirmation wait. Through the real router, agent (scripted model), outbox
//! (recording messenger), run engine and store (real migrations), with the manual clock.
use std::sync::Arc;

use chrono::Duration;
use hearth::{
    agent::llm::ChatMessage,
    clock::Clock,
    events::HearthEvent,
    routines::{
        doc::{parse_doc, save_doc},
        Actor, RoutineEngine,
    },
    store::{RoutineRow, RunRow, RunStatus, Store, ToolCallStatus, WorkflowStatus},
    testkit::{Recorded, Script},
};
use serde_json::Value;

use crate::support::*;

/// The issue's example as the save flow stores it: Bob's chores to Alice until Sunday.
pub const HANDOVER: &str = r#"
name = "handover"
description = "Move a member's chores to another member until a date and tell them"

[recorded]
request = "move all of Bob's chores to Alice until Sunday and tell her"
confirm = ["chore_update"]

[[recorded.calls]]
tool = "chore_list"
keys = ["of"]

[[recorded.calls]]
tool = "chore_update"
keys = ["action", "chore", "value"]

[[inputs]]
name = "from"
type = "member"
description = "Whose chores?"
example = "Bob"

[[inputs]]
name = "to"
type = "member"
description = "Who takes them over?"
example = "Alice"

[[inputs]]
name = "until"
type = "date"
description = "Until when?"
example = "Sun 6 Dec 2026"

[[steps]]
kind = "prompt"
prompt = "Move all of {{initial.from}}'s chores to {{initial.to}} until {{initial.until}} and tell them."
tools = ["chore_list", "chore_update"]
"#;

fn engine(app: &TestApp) -> Arc<RoutineEngine> {
    RoutineEngine::new(app.hearth.svc.clone(), app.hearth.agent.clone())
}

/// Sweep until nothing more is claimed.
async fn drive(app: &TestApp, e: &Arc<RoutineEngine>) {
    for _ in 0..20 {
        let r = e.sweep(app.clock.now()).await.expect("sweep");
        e.settle().await;
        if r.queued_started == 0 && r.claimed == 0 {
            return;
        }
    }
    panic!("runs never settled");
}

/// Alice (admin), Bob and Carol in the group; `handover` imported by Alice; the chore
/// "Dishes" assigned to Carol.
async fn household(app: &TestApp) -> RoutineRow {
    app.say(&group(), &alice(), "hello").await;
    app.say(&group(), &bob(), "hi").await;
    app.say(&group(), &carol(), "hey").await;
    app.say(&group(), &alice(), "/addchore Dishes @carol").await;
    import(app).await
}

async fn import(app: &TestApp) -> RoutineRow {
    let doc = parse_doc(HANDOVER).expect("the contract's TOML parses");
    save_doc(
        &app.hearth.svc,
        GROUP,
        Actor {
            user_id: alice().id,
            admin: true,
        },
        &doc,
    )
    .await
    .expect("saved")
    .routine
}

fn admin_cfg(c: &mut hearth::config::Config) {
    c.access.admin_ids = vec![alice().id];
}

/// The run id in "Started run N of …".
fn started(text: &str) -> i64 {
    let rest = text
        .split("Started run ")
        .nth(1)
        .unwrap_or_else(|| panic!("not started: {text}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

async fn run(store: &Store, id: i64) -> RunRow {
    store.run(id).await.unwrap().unwrap()
}

fn input(r: &RunRow) -> Value {
    serde_json::from_str(r.input.as_deref().unwrap()).unwrap()
}

async fn dishes(app: &TestApp) -> hearth::store::ChoreRow {
    app.store
        .open_chores(GROUP)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.title == "Dishes")
        .expect("Dishes")
}

/// The run's progress message as it renders from the rows now (what the paced message shows
/// once its ≤ 1 edit a second catches up).
async fn progress_text(app: &TestApp, run_id: i64) -> String {
    let v = hearth::routines::runs::load(&app.hearth.svc, run_id)
        .await
        .unwrap()
        .unwrap();
    hearth::routines::progress::render(&v)
}

/// The confirmation request message of workflow `wf` (HTML).
fn confirmation_text(app: &TestApp, wf: i64) -> String {
    let data = format!("wf:a:{wf}");
    app.messenger
        .sent()
        .into_iter()
        .find(|o| o.buttons.iter().flatten().any(|b| b.data == data))
        .map(|o| o.html)
        .unwrap_or_default()
}

fn last_toast(app: &TestApp) -> Option<String> {
    app.messenger
        .calls()
        .into_iter()
        .rev()
        .find_map(|c| match c {
            Recorded::Callback { text, .. } => Some(text.unwrap_or_default()),
            _ => None,
        })
}

fn tools(name: &str, args: &str) -> Script {
    Script::Tools(vec![(name.into(), args.into())])
}

/// The model's script for a replay Carol → Bob: list Carol's chores, try a tool outside the
/// routine's set, reassign Dishes to Bob (held for confirmation), then the final text.
fn carol_to_bob() -> Vec<Script> {
    vec![
        tools("chore_list", r#"{"of":"Carol"}"#),
        tools("chore_create", r#"{"title":"Party"}"#),
        tools(
            "chore_update",
            r#"{"chore":"Dishes","action":"assign","value":"@bob"}"#,
        ),
        Script::Text("Bob needs to confirm moving Dishes.".into()),
    ]
}

/// `/handover carol bob sunday` by Alice, driven until the run waits for her confirmation.
/// Returns (run id, confirmation workflow id).
async fn replay_waiting(app: &TestApp, e: &Arc<RoutineEngine>) -> (i64, i64) {
    app.say(&group(), &alice(), "/handover carol bob sunday")
        .await;
    let id = started(&app.last_text(GROUP));
    drive(app, e).await;
    let r = run(&app.store, id).await;
    assert_eq!(r.status, RunStatus::Waiting, "{r:?}");
    let w = r.waiting_for.clone().unwrap();
    let wf: i64 = w
        .strip_prefix("confirm:")
        .unwrap_or_else(|| panic!("{w}"))
        .parse()
        .unwrap();
    (id, wf)
}

#[tokio::test]
async fn typed_parameters_are_checked_asked_again_with_why_and_cancel_stops() {
    let app = TestApp::with(admin_cfg, vec![]).await;
    let r = household(&app).await;

    // a wrong member inline: asked again, with why and the example
    app.say(&group(), &alice(), "/handover bobby").await;
    let q = app.last_text(GROUP);
    assert!(
        q.contains("I don't know a member called 'bobby' here — whose chores? (e.g. Bob)"),
        "{q}"
    );
    // collected over several messages: @username, then a first name in any case
    app.say(&group(), &alice(), "@bob").await;
    let q = app.last_text(GROUP);
    assert!(q.contains("Who takes them over? (e.g. Alice)"), "{q}");
    app.say(&group(), &alice(), "CAROL").await;
    let q = app.last_text(GROUP);
    assert!(q.contains("Until when? (e.g. Sun 6 Dec 2026)"), "{q}");
    app.say(&group(), &alice(), "someday").await;
    let q = app.last_text(GROUP);
    assert!(
        q.contains("I can't read 'someday' as a date") && q.contains("— until when?"),
        "{q}"
    );
    app.say(&group(), &alice(), "/cancel").await;
    assert!(
        app.last_text(GROUP).contains("handover was not started"),
        "{}",
        app.last_text(GROUP)
    );
    assert!(app
        .store
        .active_runs_of(r.id, GROUP)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        app.model.calls(),
        0,
        "questions and answers never reach the model"
    );

    // key=value, the rest asked; the date in the chat's zone, stored readable
    app.say(&group(), &alice(), "/handover from=bob to=carol")
        .await;
    assert!(app.last_text(GROUP).contains("Until when?"));
    app.say(&group(), &alice(), "6 Dec").await;
    let id = started(&app.last_text(GROUP));
    let v = input(&run(&app.store, id).await);
    assert_eq!(
        (&v["from"], &v["to"], &v["until"]),
        (
            &Value::from("Bob"),
            &Value::from("Carol"),
            &Value::from("Sun 6 Dec 2026")
        )
    );
    app.say(&group(), &alice(), &format!("/run_cancel {id}"))
        .await;

    // positional, one word each: a Telegram id, an @username, a weekday (today is Sat 21 Nov)
    app.say(
        &group(),
        &alice(),
        &format!("/handover {} @alice sunday", bob().id),
    )
    .await;
    let id = started(&app.last_text(GROUP));
    let v = input(&run(&app.store, id).await);
    assert_eq!(
        (&v["from"], &v["to"], &v["until"]),
        (
            &Value::from("Bob"),
            &Value::from("Alice"),
            &Value::from("Sun 22 Nov 2026")
        )
    );
    assert_eq!(app.model.calls(), 0);
}

#[tokio::test]
async fn a_replay_offers_only_its_tools_refuses_others_and_carries_the_new_values() {
    let app = TestApp::with(admin_cfg, carol_to_bob()).await;
    let e = engine(&app);
    household(&app).await;
    let chores_before = app.store.open_chores(GROUP).await.unwrap();
    let (id, wf) = replay_waiting(&app, &e).await;

    // only the routine's tools are offered
    let seen = app.model.tools_seen();
    let mut names: Vec<&str> = seen[0].iter().map(|t| t.name).collect();
    names.sort();
    assert_eq!(names, ["chore_list", "chore_update"]);
    // the prompt carries the new values, not the recorded ones
    let first = app.model.requests()[0].clone();
    let user = first
        .iter()
        .rev()
        .find_map(|m| match m {
            ChatMessage::User(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        user.contains("Move all of Carol's chores to Bob until Sun 22 Nov 2026"),
        "{user}"
    );
    assert!(!user.contains("Alice"), "{user}");

    // the turn's calls: ran with Carol, the other tool refused, the update held with Bob
    let turn = app.store.turns(GROUP).await.unwrap()[0].clone();
    let calls = app.store.tool_calls(turn.id).await.unwrap();
    let got: Vec<(&str, ToolCallStatus)> =
        calls.iter().map(|c| (c.name.as_str(), c.status)).collect();
    assert_eq!(
        got,
        [
            ("chore_list", ToolCallStatus::Ran),
            ("chore_create", ToolCallStatus::Refused),
            ("chore_update", ToolCallStatus::Held),
        ]
    );
    assert!(calls[0].arguments.contains("Carol"));
    assert!(
        calls[1].result.contains("not allowed"),
        "{}",
        calls[1].result
    );
    assert!(calls[2].arguments.contains("@bob"));
    assert!(!calls.iter().any(|c| c.arguments.contains("Alice")));
    // nothing happened: no new chore, Dishes still Carol's
    assert_eq!(app.store.open_chores(GROUP).await.unwrap(), chores_before);
    assert_eq!(dishes(&app).await.assignee_id, Some(carol().id));

    // the confirmation says exactly what will happen; the run message shows the wait
    let c = confirmation_text(&app, wf);
    assert!(c.contains("Dishes") && c.contains("Confirm"), "{c}");
    assert!(!c.contains("differs"), "same shape as recorded: {c}");
    let p = progress_text(&app, id).await;
    assert!(
        p.contains("waiting for the run owner's confirmation"),
        "{p}"
    );
}

#[tokio::test]
async fn confirm_by_another_is_refused_and_cancel_ends_the_run_saying_what_was_done() {
    let app = TestApp::with(admin_cfg, carol_to_bob()).await;
    let e = engine(&app);
    household(&app).await;
    let (id, wf) = replay_waiting(&app, &e).await;
    let mut events = app.hearth.svc.events.subscribe();

    // Bob may not confirm Alice's call: a toast, nothing changes
    app.press(&group(), &bob(), 0, &format!("wf:a:{wf}")).await;
    assert_eq!(
        last_toast(&app).as_deref(),
        Some("Only the member this was asked for can confirm it.")
    );
    let w = app.store.workflow(wf).await.unwrap().unwrap();
    assert_eq!(w.status, WorkflowStatus::Pending);
    assert_eq!(dishes(&app).await.assignee_id, Some(carol().id));

    // Alice cancels: nothing changes, the run ends cancelled and says what was done
    let calls_before = app.model.calls();
    app.press(&group(), &alice(), 0, &format!("wf:c:{wf}"))
        .await;
    drive(&app, &e).await;
    let r = run(&app.store, id).await;
    assert_eq!(r.status, RunStatus::Cancelled, "{r:?}");
    assert_eq!(r.reason.as_deref(), Some("not confirmed"));
    assert_eq!(dishes(&app).await.assignee_id, Some(carol().id));
    assert_eq!(
        app.model.calls(),
        calls_before,
        "no model call after Cancel"
    );
    let notice = app
        .texts(GROUP)
        .into_iter()
        .rev()
        .find(|t| t.contains("stopped: not confirmed"))
        .expect("the cancel notice");
    assert!(
        notice.contains("Done before it: chore_list(of=Carol).")
            && notice.contains("Not done: ")
            && notice.contains("Dishes")
            && notice.contains("(cancelled)"),
        "{notice}"
    );
    let p = progress_text(&app, id).await;
    assert!(p.contains("cancelled"), "{p}");
    // never reported completed
    while let Ok(ev) = events.try_recv() {
        assert!(
            !matches!(ev, HearthEvent::RunCompleted { run_id, .. } if run_id == id),
            "a cancelled replay is not completed"
        );
    }
}

#[tokio::test]
async fn an_expired_confirmation_counts_as_not_confirmed() {
    let app = TestApp::with(admin_cfg, carol_to_bob()).await;
    let e = engine(&app);
    household(&app).await;
    let (id, wf) = replay_waiting(&app, &e).await;
    let expiry = Duration::from_std(app.hearth.svc.config.agent.confirm_expiry).unwrap();
    app.clock.advance(expiry + Duration::minutes(1));
    hearth::workflow::sweep_expired(&app.hearth.svc)
        .await
        .unwrap();
    app.hearth.idle().await;
    assert_eq!(
        app.store.workflow(wf).await.unwrap().unwrap().status,
        WorkflowStatus::Expired
    );
    drive(&app, &e).await;
    let r = run(&app.store, id).await;
    assert_eq!(r.status, RunStatus::Cancelled, "{r:?}");
    assert_eq!(dishes(&app).await.assignee_id, Some(carol().id));
    assert!(app
        .texts(GROUP)
        .iter()
        .any(|t| t.contains("(not confirmed in time)")));
}

#[tokio::test]
async fn confirm_runs_the_call_once_and_the_run_completes_once() {
    let app = TestApp::with(admin_cfg, carol_to_bob()).await;
    let e = engine(&app);
    household(&app).await;
    let (id, wf) = replay_waiting(&app, &e).await;
    let mut events = app.hearth.svc.events.subscribe();
    app.press(&group(), &alice(), 0, &format!("wf:a:{wf}"))
        .await;
    // a second tap changes nothing
    app.press(&group(), &alice(), 0, &format!("wf:a:{wf}"))
        .await;
    drive(&app, &e).await;
    assert_eq!(dishes(&app).await.assignee_id, Some(bob().id));
    let r = run(&app.store, id).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:?}");
    let steps = app.store.step_runs_of(id).await.unwrap();
    assert_eq!(steps.len(), 1, "{steps:?}");
    let mut completed = 0;
    while let Ok(ev) = events.try_recv() {
        if matches!(ev, HearthEvent::RunCompleted { run_id, .. } if run_id == id) {
            completed += 1;
        }
    }
    assert_eq!(completed, 1);
    assert!(progress_text(&app, id).await.contains("completed"));
}

#[tokio::test]
async fn a_destructive_call_of_another_shape_says_it_differs_from_the_recording() {
    let app = TestApp::with(
        admin_cfg,
        vec![
            tools("chore_list", r#"{"of":"Carol"}"#),
            // no `value`: recorded as action, chore, value
            tools("chore_update", r#"{"chore":"Dishes","action":"skip"}"#),
            Script::Text("Confirm to skip Dishes.".into()),
        ],
    )
    .await;
    let e = engine(&app);
    household(&app).await;
    let due_before = dishes(&app).await;
    let (_, wf) = replay_waiting(&app, &e).await;
    let c = confirmation_text(&app, wf);
    assert!(c.contains("This differs from when you recorded it"), "{c}");
    assert_eq!(
        dishes(&app).await,
        due_before,
        "nothing done before Confirm"
    );
}

#[tokio::test]
async fn a_replay_failing_part_way_says_what_was_done_and_what_was_not() {
    let app = TestApp::with(
        admin_cfg,
        vec![
            tools("chore_list", r#"{"of":"Carol"}"#),
            Script::Fail(|| hearth::agent::llm::ModelError::Server {
                status: 500,
                message: "boom".into(),
            }),
        ],
    )
    .await;
    let e = engine(&app);
    household(&app).await;
    app.say(&group(), &alice(), "/handover carol bob sunday")
        .await;
    let id = started(&app.last_text(GROUP));
    drive(&app, &e).await;
    let r = run(&app.store, id).await;
    assert_eq!(r.status, RunStatus::Failed, "{r:?}");
    let reason = r.reason.unwrap_or_default();
    assert!(
        reason.contains("Done: chore_list(of=Carol).")
            && reason.contains("Not done: the rest of the task."),
        "{reason}"
    );
    let p = progress_text(&app, id).await;
    assert!(p.contains("Done: chore_list(of=Carol)"), "{p}");
    assert_eq!(dishes(&app).await.assignee_id, Some(carol().id));
}

/// A restart while the replay waits for Confirm: a second app (a new process's core, engine and
/// store connection) over the same SQLite file; Confirm there runs the call once and the run
/// completes once.
#[tokio::test]
async fn a_restart_during_the_confirmation_wait_then_confirm_completes_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("h.db").display());
    let postgres =
        std::env::var("HEARTH_TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"));
    let first_store = if postgres {
        test_store().await
    } else {
        Store::connect(&url, 5, std::time::Duration::from_secs(5))
            .await
            .unwrap()
    };
    let clock = hearth::clock::ManualClock::new(t0());
    let a = TestApp::on_store(
        first_store.clone(),
        clock.clone(),
        admin_cfg,
        carol_to_bob(),
    )
    .await;
    let ea = engine(&a);
    household(&a).await;
    let (id, wf) = replay_waiting(&a, &ea).await;
    a.hearth.shutdown(std::time::Duration::from_secs(1)).await;
    drop(ea);
    drop(a);

    let second_store = if postgres {
        first_store
    } else {
        drop(first_store);
        Store::connect(&url, 5, std::time::Duration::from_secs(5))
            .await
            .unwrap()
    };
    clock.advance(Duration::seconds(30));
    let b = TestApp::on_store(second_store, clock.clone(), admin_cfg, vec![]).await;
    b.continue_ids_from(1_000);
    let eb = engine(&b);
    // still waiting after the restart (a sweep finds nothing to do)
    drive(&b, &eb).await;
    assert_eq!(run(&b.store, id).await.status, RunStatus::Waiting);
    let mut events = b.hearth.svc.events.subscribe();
    b.press(&group(), &alice(), 0, &format!("wf:a:{wf}")).await;
    drive(&b, &eb).await;
    assert_eq!(dishes(&b).await.assignee_id, Some(bob().id));
    let r = run(&b.store, id).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:?}");
    assert_eq!(b.store.step_runs_of(id).await.unwrap().len(), 1);
    let mut completed = 0;
    while let Ok(ev) = events.try_recv() {
        if matches!(ev, HearthEvent::RunCompleted { run_id, .. } if run_id == id) {
            completed += 1;
        }
    }
    assert_eq!(completed, 1);
    assert_eq!(b.model.calls(), 0, "the replay's turn is not run again");
}

/// The same over the real binary: the routine imported with `hearth routines import`, the replay
/// started by `/handover carol bob sunday` over the webhook, the model a fake OpenAI-compatible
/// server over HTTP. SIGKILL while the run waits for Confirm; a new process on the same
/// database; Confirm there runs the held call once and the run completes once (the replay's
/// turn is not run again).
#[tokio::test]
async fn the_binary_killed_during_the_confirmation_wait_completes_once_after_confirm() {
    use crate::binary::{binary_db_url, hearth as hearth_cmd, Daemon};
    use crate::support::{
        fake_telegram::{Chat, FakeBotApi, User},
        tg::{completion, mount_default, mount_next, tool_call},
    };
    use std::time::Duration as StdDuration;

    let fake = FakeBotApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = binary_db_url(dir.path()).await;
    let log = dir.path().join("hearth.log");
    let llm = wiremock::MockServer::start().await;
    mount_next(&llm, tool_call("chore_list", r#"{"of":"Carol"}"#), 1, 1).await;
    mount_next(
        &llm,
        tool_call(
            "chore_update",
            r#"{"chore":"Dishes","action":"assign","value":"@bob"}"#,
        ),
        1,
        2,
    )
    .await;
    mount_default(&llm, completion("Tap Confirm to move Dishes to Bob.")).await;
    let g = Chat::group(-710, "Flat");
    let ann = User::new(80, "Ann").with_username("ann");
    let bob = User::new(81, "Bob").with_username("bob");
    let carol = User::new(82, "Carol").with_username("carol");
    let a = Daemon::start(&fake, &llm.uri(), &db, &log).await;
    let mut update = 8_000;
    let mut mid = 1;
    for (who, text) in [
        (&ann, "hello"),
        (&bob, "hi"),
        (&carol, "hey"),
        (&ann, "/addchore Dishes @carol"),
    ] {
        a.post(&FakeBotApi::text_message(
            update,
            g.clone(),
            who.clone(),
            mid,
            text,
        ))
        .await;
        update += 1;
        mid += 1;
    }
    let file = dir.path().join("handover.toml");
    std::fs::write(&file, HANDOVER).unwrap();
    // the chore and members are written before the import's checks and the replay need them
    let deadline = std::time::Instant::now() + StdDuration::from_secs(20);
    while !fake
        .calls_to("sendMessage")
        .iter()
        .any(|b| b["text"].as_str().is_some_and(|t| t.contains("Dishes")))
    {
        assert!(std::time::Instant::now() < deadline, "no chore added");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let out = hearth_cmd()
        .args(["routines", "import", file.to_str().unwrap()])
        .args(["--chat", "-710", "--as", "80"])
        .env("HEARTH_DATABASE__URL", &db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.post(&FakeBotApi::text_message(
        update,
        g.clone(),
        ann.clone(),
        mid,
        "/handover carol bob sunday",
    ))
    .await;
    update += 1;
    // the confirmation request, with its buttons
    let deadline = std::time::Instant::now() + StdDuration::from_secs(30);
    let (msg_id, data) = loop {
        let found = fake.calls_to("sendMessage").into_iter().find_map(|b| {
            let markup = match &b["reply_markup"] {
                serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or_default(),
                v => v.clone(),
            };
            let data = markup["inline_keyboard"][0][0]["callback_data"]
                .as_str()?
                .to_string();
            data.starts_with("wf:a:").then_some(data)
        });
        if let Some(data) = found {
            let sent = fake.bot_messages();
            let m = sent
                .iter()
                .rev()
                .find(|m| m["text"].as_str().is_some_and(|t| t.contains("Confirm")))
                .and_then(|m| m["message_id"].as_i64())
                .unwrap_or(0);
            break (m, data);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no confirmation request"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    };
    let wf: i64 = data["wf:a:".len()..].parse().unwrap();
    // the run is waiting on it (the step's commit is written after the turn)
    let store = Store::connect(&db, 2, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let run_id = loop {
        let w = format!("confirm:{wf}");
        if let Some(r) = store
            .runs_waiting_for(-710, "confirm:")
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.waiting_for.as_deref() == Some(w.as_str()))
        {
            break r.id;
        }
        assert!(std::time::Instant::now() < deadline, "run not waiting");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    };
    a.kill9();
    let requests_before = llm.received_requests().await.unwrap_or_default().len();

    let b = Daemon::start(&fake, &llm.uri(), &db, &log).await;
    tokio::time::sleep(StdDuration::from_millis(2500)).await; // past the 2 s leases
    assert_eq!(
        run(&store, run_id).await.status,
        RunStatus::Waiting,
        "still waiting after the restart"
    );
    b.post(&FakeBotApi::callback_query(
        update,
        ann.clone(),
        g.clone(),
        msg_id,
        &data,
    ))
    .await;
    let deadline = std::time::Instant::now() + StdDuration::from_secs(30);
    loop {
        let r = run(&store, run_id).await;
        if r.status == RunStatus::Completed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run not completed: {r:?}"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    tokio::time::sleep(StdDuration::from_millis(1500)).await; // nothing more happens
    let r = run(&store, run_id).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(store.step_runs_of(run_id).await.unwrap().len(), 1);
    let dishes = store
        .open_chores(-710)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.title == "Dishes")
        .unwrap();
    assert_eq!(dishes.assignee_id, Some(81), "assigned to Bob once");
    assert_eq!(
        store.workflow(wf).await.unwrap().unwrap().status,
        WorkflowStatus::Approved
    );
    assert_eq!(
        llm.received_requests().await.unwrap_or_default().len(),
        requests_before,
        "the replay's turn is not run again after the restart"
    );
    b.stop().await;
}

/// Two destructive calls held in one replay: cancelling the first cancels the second at once
/// (a later Confirm could otherwise run a call of a run that ended), the run ends cancelled and
/// neither chore changes.
#[tokio::test]
async fn cancelling_one_of_two_held_calls_cancels_the_other_and_changes_nothing() {
    let script = vec![
        tools("chore_list", r#"{"of":"Carol"}"#),
        Script::Tools(vec![
            (
                "chore_update".into(),
                r#"{"chore":"Dishes","action":"assign","value":"@bob"}"#.into(),
            ),
            (
                "chore_update".into(),
                r#"{"chore":"Bins","action":"assign","value":"@bob"}"#.into(),
            ),
        ]),
        Script::Text("Bob needs to confirm moving Dishes and Bins.".into()),
    ];
    let app = TestApp::with(admin_cfg, script).await;
    let e = engine(&app);
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Bins @carol").await;
    app.say(&group(), &alice(), "/handover carol bob sunday")
        .await;
    let id = started(&app.last_text(GROUP));
    drive(&app, &e).await;
    let r = run(&app.store, id).await;
    let w = r.waiting_for.clone().unwrap_or_default();
    let ids: Vec<i64> = w
        .strip_prefix("confirm:")
        .unwrap_or_else(|| panic!("{w}"))
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{w}");

    app.press(&group(), &alice(), 0, &format!("wf:c:{}", ids[0]))
        .await;
    drive(&app, &e).await;
    for wf in &ids {
        assert_eq!(
            app.store.workflow(*wf).await.unwrap().unwrap().status,
            WorkflowStatus::Cancelled
        );
    }
    // a late Confirm of the second changes nothing
    app.press(&group(), &alice(), 0, &format!("wf:a:{}", ids[1]))
        .await;
    drive(&app, &e).await;
    let r = run(&app.store, id).await;
    assert_eq!(r.status, RunStatus::Cancelled, "{r:?}");
    let chores = app.store.open_chores(GROUP).await.unwrap();
    for c in chores
        .iter()
        .filter(|c| c.title == "Dishes" || c.title == "Bins")
    {
        assert_eq!(c.assignee_id, Some(carol().id), "{} moved", c.title);
    }
}
