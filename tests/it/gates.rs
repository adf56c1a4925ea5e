//! Issue 9, approval gates of runs: a gate opened by `routines::gate::open` for a waiting step
//! run is resolved like every other approval — numbers and buttons with no model call, a
//! rejection's reason, no self-approval, expiry through the sweep, named resolvers filtered in
//! queries, a quorum — and its outcome lands in the step run with the run woken.
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use hearth::{
    app,
    clock::Clock,
    routines::{
        gate::{self, GateRequest},
        steps::Resolvers,
        RoutineError,
    },
    services::Services,
    store::{
        NewRoutine, NewRun, NewStepRun, RunSource, RunStatus, StepRunRow, StepStatus, StepType,
        Store, WorkflowRow,
    },
    testkit::Recorded,
    types::UserRef,
};

use crate::support::{
    fake_telegram::{Chat, FakeBotApi, User},
    tg::*,
    *,
};

fn jack() -> UserRef {
    user(10, "Jack")
}
fn lottie() -> UserRef {
    user(11, "Lottie")
}

/// Jack (admin, the run owner), Lottie and Bob write in the group.
async fn household(app: &TestApp) {
    for u in [jack(), lottie(), bob()] {
        app.say(&group(), &u, "hi").await;
    }
}

/// A `meal_plan` run of `chat` owned by `owner` at its third step, an approval step run
/// (running, as the engine leaves it before opening the gate). Returns (run id, step run id).
async fn run_at_gate(store: &Store, chat: i64, owner: i64, at: DateTime<Utc>) -> (i64, i64) {
    let routine_id = store
        .insert_routine(
            NewRoutine {
                chat_id: chat,
                name: "meal_plan".into(),
                owner_id: owner,
                prompt: String::new(),
                zone: "UTC".into(),
                quiet: false,
                api_args: false,
                api_token_hash: None,
                max_ticks: None,
                max_runs_per_day: None,
                created_at: at,
            },
            vec![],
        )
        .await
        .unwrap()
        .expect("routine inserted");
    let run_id = store
        .insert_run(NewRun {
            routine_id,
            trigger_id: None,
            source: RunSource::Manual,
            catch_up: false,
            status: RunStatus::Running,
            reason: None,
            input: None,
            scheduled_for: None,
            started_at: at,
            chat_id: Some(chat),
            started_by: Some(owner),
            snapshot: None,
            parent_run_id: None,
            depth: 0,
        })
        .await
        .unwrap();
    let step_run_id = store
        .insert_step_run(NewStepRun {
            run_id,
            position: 2,
            attempt: 1,
            name: Some("gate".into()),
            kind: StepType::Approval,
            status: StepStatus::Running,
            input: None,
            started_at: Some(at),
        })
        .await
        .unwrap();
    (run_id, step_run_id)
}

fn request(chat: i64, owner: i64, run_id: i64, step_run_id: i64, text: &str) -> GateRequest {
    GateRequest {
        chat_id: chat,
        run_id,
        step_run_id,
        owner_id: owner,
        routine_name: "meal_plan".into(),
        step_label: "step 3 'gate'".into(),
        text: text.into(),
        resolvers: Resolvers::Others,
        required: 1,
        expires: None,
    }
}

/// Open the gate as the engine does: the workflow, then the run waiting on it until the
/// expiry + 1 min.
async fn open_gate(svc: &Services, req: GateRequest) -> WorkflowRow {
    let run_id = req.run_id;
    let wf = gate::open(svc, req).await.expect("gate opened");
    assert!(svc
        .store
        .set_run_waiting(
            run_id,
            &format!("approval:{}", wf.id),
            wf.expires_at + Duration::minutes(1)
        )
        .await
        .unwrap());
    wf
}

async fn step(store: &Store, id: i64) -> StepRunRow {
    store.step_run(id).await.unwrap().unwrap()
}

fn toasts(app: &TestApp) -> Vec<String> {
    app.messenger
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Recorded::Callback { text, .. } => text,
            _ => None,
        })
        .collect()
}

fn edits_of(app: &TestApp, message_id: i64) -> Vec<(String, usize)> {
    app.messenger
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Recorded::Edit {
                message_id: m,
                html,
                buttons,
                ..
            } if m == message_id => Some((html, buttons.len())),
            _ => None,
        })
        .collect()
}

/// A shopping list longer than any list line.
fn shopping_list() -> String {
    (1..=40)
        .map(|i| format!("- item number {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn approve_1_from_another_member_completes_the_step_and_wakes_the_run_without_a_model_call() {
    let app = TestApp::new().await;
    household(&app).await;
    let svc = &app.hearth.svc;
    let (run_id, step_id) = run_at_gate(&app.store, GROUP, 10, app.clock.now()).await;
    let list = shopping_list();
    let wf = open_gate(svc, request(GROUP, 10, run_id, step_id, &list)).await;
    assert_eq!(
        (wf.kind.as_str(), wf.status.as_str()),
        ("routine_gate", "pending")
    );
    assert_eq!((wf.requester_id, wf.target_id), (10, Some(step_id)));
    let s = step(&app.store, step_id).await;
    assert_eq!(
        (s.status, s.workflow_id),
        (StepStatus::Waiting, Some(wf.id))
    );

    // the request message: the whole list, Approve / Reject
    let req = app
        .messenger
        .sent()
        .into_iter()
        .find(|o| !o.buttons.is_empty())
        .expect("request message");
    assert!(
        req.html
            .starts_with("🙋 Run <b>meal_plan</b> (step 3 'gate') asks: - item number 1\n"),
        "{}",
        req.html
    );
    assert!(
        req.html.contains("- item number 40 — Approve?"),
        "{}",
        req.html
    );
    assert!(req.html.contains("Started by Jack."), "{}", req.html);
    assert_eq!(req.buttons[0][0].data, format!("wf:a:{}", wf.id));
    assert_eq!(req.buttons[0][1].data, format!("wf:r:{}", wf.id));

    // lists clip it
    app.say(&group(), &lottie(), "/approvals").await;
    let shown = app.last_text(GROUP);
    assert!(
        shown.contains("1. Run meal_plan (step 3 'gate') asks: - item number 1 - item number 2"),
        "{shown}"
    );
    assert!(!shown.contains("item number 40"), "{shown}");
    assert!(shown.contains('…'), "{shown}");

    let model_calls = app.model.requests().len();
    app.clock.advance(Duration::minutes(5));
    app.say(&group(), &lottie(), "approve 1").await;
    assert_eq!(app.model.requests().len(), model_calls, "no model call");
    let reply = app.last_text(GROUP);
    assert!(
        reply.starts_with("1. ✅ Approved: Jack — approve run meal_plan (step 3 'gate'):"),
        "{reply}"
    );
    let s = step(&app.store, step_id).await;
    assert_eq!(s.status, StepStatus::Completed);
    assert_eq!(s.output.as_deref(), Some("approved"));
    assert_eq!(s.finished_at, Some(app.clock.now()));
    let run = app.store.run(run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Waiting);
    assert_eq!(run.wake_at, Some(app.clock.now()), "the run is woken");
    let row = app.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.resolver_id),
        ("approved", Some(11))
    );
    // the request message keeps the whole question, shows the outcome, loses its buttons
    let msg = wf_message(&app, wf.id).await;
    let (html, buttons) = edits_of(&app, msg).pop().expect("edited");
    assert!(html.contains("- item number 40"), "{html}");
    assert!(html.contains("✅ Approved by Lottie"), "{html}");
    assert_eq!(buttons, 0);
}

async fn wf_message(app: &TestApp, id: i64) -> i64 {
    app.store
        .workflow(id)
        .await
        .unwrap()
        .unwrap()
        .notice_message_id
        .expect("request message sent")
}

#[tokio::test]
async fn a_rejection_carries_the_members_reason_into_the_step_run() {
    let app = TestApp::new().await;
    household(&app).await;
    let (run_id, step_id) = run_at_gate(&app.store, GROUP, 10, app.clock.now()).await;
    let wf = open_gate(
        &app.hearth.svc,
        request(GROUP, 10, run_id, step_id, "Pasta, rice, fish tacos"),
    )
    .await;
    app.say(&group(), &bob(), "reject 1, too expensive").await;
    let s = step(&app.store, step_id).await;
    assert_eq!(s.status, StepStatus::Completed);
    assert_eq!(s.output.as_deref(), Some("rejected"));
    assert_eq!(s.reason.as_deref(), Some("too expensive"));
    let row = app.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.reason.as_deref()),
        ("rejected", Some("too expensive"))
    );
    let run = app.store.run(run_id).await.unwrap().unwrap();
    assert_eq!(run.wake_at, Some(app.clock.now()));
    assert!(app.model.requests().is_empty(), "no model call");
}

#[tokio::test]
async fn the_run_owner_can_not_approve_their_own_gate() {
    let app = TestApp::new().await;
    household(&app).await;
    let (run_id, step_id) = run_at_gate(&app.store, GROUP, 10, app.clock.now()).await;
    let wf = open_gate(
        &app.hearth.svc,
        request(GROUP, 10, run_id, step_id, "Pasta"),
    )
    .await;
    app.say(&group(), &jack(), "approve 1").await;
    assert_eq!(
        app.last_text(GROUP),
        "You can't decide your own request (you can /cancel it)."
    );
    let msg = wf_message(&app, wf.id).await;
    app.press(&group(), &jack(), msg, &format!("wf:a:{}", wf.id))
        .await;
    assert_eq!(
        toasts(&app).last().map(String::as_str),
        Some("You can't decide your own request (you can /cancel it).")
    );
    assert_eq!(
        app.store.workflow(wf.id).await.unwrap().unwrap().status,
        "pending"
    );
    assert_eq!(step(&app.store, step_id).await.status, StepStatus::Waiting);
    assert!(app.store.workflow_audit(wf.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unanswered_gate_expires_through_the_sweep() {
    let app = TestApp::new().await;
    household(&app).await;
    let (run_id, step_id) = run_at_gate(&app.store, GROUP, 10, app.clock.now()).await;
    let mut req = request(GROUP, 10, run_id, step_id, "Pasta");
    req.expires = Some(Duration::hours(6));
    let wf = open_gate(&app.hearth.svc, req).await;
    assert_eq!(wf.expires_at, app.clock.now() + Duration::hours(6));

    app.clock.advance(Duration::hours(5));
    app::sweep_expired(&app.hearth).await;
    assert_eq!(step(&app.store, step_id).await.status, StepStatus::Waiting);

    app.clock.advance(Duration::hours(1));
    app::sweep_expired(&app.hearth).await;
    let s = step(&app.store, step_id).await;
    assert_eq!(
        (s.status, s.output.as_deref()),
        (StepStatus::Completed, Some("expired"))
    );
    let run = app.store.run(run_id).await.unwrap().unwrap();
    assert_eq!(run.wake_at, Some(app.clock.now()));
    assert_eq!(
        app.store.workflow(wf.id).await.unwrap().unwrap().status,
        "expired"
    );
    assert!(app
        .last_text(GROUP)
        .contains("Nobody decided on Jack's request to approve run meal_plan"));
    // too late to approve
    app.say(&group(), &lottie(), "approve 1").await;
    assert_eq!(
        step(&app.store, step_id).await.output.as_deref(),
        Some("expired")
    );
}

#[tokio::test]
async fn named_resolvers_only_see_and_decide_their_gate() {
    let app = TestApp::new().await;
    household(&app).await;
    let svc = &app.hearth.svc;
    let (run_id, step_id) = run_at_gate(&app.store, GROUP, 10, app.clock.now()).await;

    // unknown names are refused, named; naming only the owner leaves nobody
    let mut bad = request(GROUP, 10, run_id, step_id, "Pasta");
    bad.resolvers = Resolvers::Named(vec!["bob".into(), "Zed".into(), "@nobody".into()]);
    match gate::open(svc, bad).await {
        Err(RoutineError::Invalid { field, rule }) => {
            assert_eq!(field, "resolvers");
            assert!(rule.contains("Zed, @nobody"), "{rule}");
        }
        other => panic!("{other:?}"),
    }
    let mut owner_only = request(GROUP, 10, run_id, step_id, "Pasta");
    owner_only.resolvers = Resolvers::Named(vec!["Jack".into()]);
    assert!(matches!(
        gate::open(svc, owner_only).await,
        Err(RoutineError::Invalid { .. })
    ));
    assert!(app
        .store
        .pending_for_viewer(&[GROUP], -1, chrono::DateTime::UNIX_EPOCH)
        .await
        .unwrap()
        .is_empty());

    // Bob (by username) and the owner (never eligible) are named
    let mut req = request(GROUP, 10, run_id, step_id, "Pasta");
    req.resolvers = Resolvers::Named(vec!["@BOB".into(), "jack".into()]);
    let wf = open_gate(svc, req).await;
    assert_eq!(wf.eligibility.as_str(), "named");
    assert_eq!(app.store.named_resolvers(wf.id).await.unwrap(), vec![2]);
    let html = app
        .messenger
        .sent()
        .into_iter()
        .find(|o| !o.buttons.is_empty())
        .unwrap()
        .html;
    assert!(html.contains("Only Bob can decide."), "{html}");

    // Lottie is not named: not in her list (filtered in the query), no number, no button
    let now = app.clock.now();
    assert!(app
        .store
        .pending_for_viewer(&[GROUP], 11, now)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        app.store
            .pending_for_viewer(&[GROUP], 2, now)
            .await
            .unwrap()
            .len(),
        1
    );
    app.say(&group(), &lottie(), "/approvals").await;
    assert!(
        app.last_text(GROUP).contains("Nothing for you right now."),
        "{}",
        app.last_text(GROUP)
    );
    app.say(&group(), &lottie(), "approve 1").await;
    assert_eq!(
        app.last_text(GROUP),
        "You have nothing to approve or reject right now."
    );
    let msg = wf_message(&app, wf.id).await;
    app.press(&group(), &lottie(), msg, &format!("wf:a:{}", wf.id))
        .await;
    assert_eq!(
        toasts(&app).last().map(String::as_str),
        Some("This request isn't yours to decide.")
    );
    assert_eq!(step(&app.store, step_id).await.status, StepStatus::Waiting);

    // Bob decides
    app.say(&group(), &bob(), "approve 1").await;
    assert_eq!(
        step(&app.store, step_id).await.output.as_deref(),
        Some("approved")
    );
    assert!(app.model.requests().is_empty(), "no model call");
}

#[tokio::test]
async fn a_quorum_of_two_counts_distinct_approvals_and_one_rejection_decides() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &carol(), "hi").await;
    let svc = &app.hearth.svc;

    // more approvals than eligible members is refused
    let (run_id, step_id) = run_at_gate(&app.store, GROUP, 10, app.clock.now()).await;
    let mut too_many = request(GROUP, 10, run_id, step_id, "Pasta");
    too_many.required = 4;
    assert!(matches!(
        gate::open(svc, too_many).await,
        Err(RoutineError::Invalid { .. })
    ));

    let mut req = request(GROUP, 10, run_id, step_id, "Pasta");
    req.required = 2;
    let wf = open_gate(svc, req).await;
    assert_eq!(wf.required, 2);
    let msg = wf_message(&app, wf.id).await;

    // first approval: counted, still pending, the message shows it (buttons kept)
    app.say(&group(), &lottie(), "approve 1").await;
    assert!(
        app.last_text(GROUP)
            .starts_with("1. ☑️ Approval recorded, 1 of 2 approvals: Jack"),
        "{}",
        app.last_text(GROUP)
    );
    assert_eq!(
        app.store.workflow(wf.id).await.unwrap().unwrap().status,
        "pending"
    );
    assert_eq!(step(&app.store, step_id).await.status, StepStatus::Waiting);
    let (html, buttons) = edits_of(&app, msg).pop().expect("edited");
    assert!(html.contains("⏳ 1 of 2 approvals: Lottie"), "{html}");
    assert_eq!(buttons, 1, "still decidable");
    let audit = app.store.workflow_audit(wf.id).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].to_status.as_str(), audit[0].actor_id),
        ("pending", Some(11))
    );

    // the same member again (a button this time) counts once
    app.press(&group(), &lottie(), msg, &format!("wf:a:{}", wf.id))
        .await;
    assert_eq!(
        toasts(&app).last().map(String::as_str),
        Some("You already approved: 1 of 2.")
    );
    assert_eq!(app.store.workflow_audit(wf.id).await.unwrap().len(), 1);
    assert_eq!(app.store.quorum_approvers(wf.id).await.unwrap(), vec![11]);

    // the second distinct approval approves
    app.say(&group(), &bob(), "approve 1").await;
    let row = app.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.resolver_id),
        ("approved", Some(2))
    );
    assert_eq!(
        step(&app.store, step_id).await.output.as_deref(),
        Some("approved")
    );
    let (html, buttons) = edits_of(&app, msg).pop().unwrap();
    assert!(html.contains("Approvals: Lottie, Bob"), "{html}");
    assert_eq!(buttons, 0);

    // a second gate: one approval, then one rejection decides at once
    let (run2, step2) = run_at_gate_again(&app, run_id).await;
    let mut req = request(GROUP, 10, run2, step2, "Fish");
    req.required = 2;
    let wf2 = open_gate(svc, req).await;
    app.say(&group(), &carol(), "approve 1").await;
    app.say(&group(), &bob(), "reject 1, no fish please").await;
    let s = step(&app.store, step2).await;
    assert_eq!(
        (s.output.as_deref(), s.reason.as_deref()),
        (Some("rejected"), Some("no fish please"))
    );
    assert_eq!(
        app.store.workflow(wf2.id).await.unwrap().unwrap().status,
        "rejected"
    );
    assert!(app.model.requests().is_empty(), "no model call");
}

/// Another approval step run (attempt 2) of run `run_id`.
async fn run_at_gate_again(app: &TestApp, run_id: i64) -> (i64, i64) {
    let id = app
        .store
        .insert_step_run(NewStepRun {
            run_id,
            position: 2,
            attempt: 2,
            name: Some("gate".into()),
            kind: StepType::Approval,
            status: StepStatus::Running,
            input: None,
            started_at: Some(app.clock.now()),
        })
        .await
        .unwrap();
    (run_id, id)
}

// ---- over HTTP: the real Telegram adapter against the fake Bot API ----

const TG_GROUP: i64 = -100_900;
const WAIT: StdDuration = StdDuration::from_secs(10);

fn tg(id: i64, name: &str) -> User {
    User::new(id, name).with_username(&name.to_lowercase())
}

async fn say_tg(app: &TgApp, from: User, message_id: i64, text: &str) {
    app.fake.push_update(FakeBotApi::text_message(
        0,
        Chat::group(TG_GROUP, "Home"),
        from,
        message_id,
        text,
    ));
    app.wait_done(TG_GROUP, message_id).await;
}

#[tokio::test]
async fn over_telegram_a_named_gate_refuses_other_taps_and_resolves_by_number_without_the_model() {
    let app = TgApp::start().await;
    let (jack, lottie, bob) = (tg(10, "Jack"), tg(11, "Lottie"), tg(2, "Bob"));
    say_tg(&app, jack.clone(), 1, "hi").await;
    say_tg(&app, lottie.clone(), 2, "hi").await;
    say_tg(&app, bob.clone(), 3, "hi").await;
    let svc = &app.hearth.svc;
    let (run_id, step_id) = run_at_gate(&app.store, TG_GROUP, 10, svc.clock.now()).await;
    let mut req = request(TG_GROUP, 10, run_id, step_id, "Pasta, rice");
    req.resolvers = Resolvers::Named(vec!["Bob".into()]);
    let wf = open_gate(svc, req).await;
    let sent = app.fake.calls_to("sendMessage");
    let request_msg = sent
        .iter()
        .find(|b| b["reply_markup"].is_object())
        .expect("request message with buttons");
    let text = request_msg["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Run <b>meal_plan</b> (step 3 'gate') asks: Pasta, rice — Approve?"),
        "{text}"
    );
    let msg = wf.notice_message_id.expect("request message id");

    // Lottie is not named: her tap is refused with a toast and changes nothing
    let before = app.fake.calls_to("answerCallbackQuery").len();
    app.fake.push_update(FakeBotApi::callback_query(
        0,
        lottie,
        Chat::group(TG_GROUP, "Home"),
        msg,
        &format!("wf:a:{}", wf.id),
    ));
    let answers = app
        .fake
        .wait_for("answerCallbackQuery", before + 1, WAIT)
        .await;
    app.hearth.idle().await;
    assert_eq!(
        answers[before]["text"].as_str(),
        Some("This request isn't yours to decide.")
    );
    assert_eq!(
        app.store.workflow(wf.id).await.unwrap().unwrap().status,
        "pending"
    );

    // Bob's "approve 1" resolves it with no model request
    say_tg(&app, bob, 4, "approve 1").await;
    assert!(app.model_requests().await.is_empty(), "no model call");
    let s = step(&app.store, step_id).await;
    assert_eq!(
        (s.status, s.output.as_deref()),
        (StepStatus::Completed, Some("approved"))
    );
    assert!(app
        .store
        .run(run_id)
        .await
        .unwrap()
        .unwrap()
        .wake_at
        .is_some());
    app.stop().await;
}

/// The tool result of the latest model request that has one.
fn last_tool_result(app: &TestApp) -> String {
    app.model
        .requests()
        .iter()
        .rev()
        .find_map(|r| {
            r.iter().rev().find_map(|m| match m {
                hearth::agent::llm::ChatMessage::Tool { content, .. } => Some(content.clone()),
                _ => None,
            })
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_agents_approval_tools_go_through_the_same_named_and_quorum_rules() {
    use hearth::testkit::Script;
    let approve = |args: String| Script::Tools(vec![("respond_to_workflow".into(), args)]);
    let app = TestApp::with(|_| {}, vec![]).await;
    household(&app).await;
    app.say(&group(), &carol(), "hi").await;
    let (run_id, step_id) = run_at_gate(&app.store, GROUP, 10, app.clock.now()).await;
    let mut req = request(GROUP, 10, run_id, step_id, "Pasta");
    req.resolvers = Resolvers::Named(vec!["Lottie".into(), "Bob".into()]);
    req.required = 2;
    let wf = open_gate(&app.hearth.svc, req).await;
    for s in [
        approve(format!(r#"{{"decision":"approve","id":{}}}"#, wf.id)),
        Script::Text("I can't approve that for you.".into()),
        approve(r#"{"decision":"approve","number":1}"#.into()),
        Script::Text("Tap Confirm to approve.".into()),
    ] {
        app.model.push(s);
    }

    // Carol is not named: the tool refuses her before anything is asked or written
    app.say(&group(), &carol(), "@hearth_bot approve the meal plan")
        .await;
    let tool = last_tool_result(&app);
    assert!(tool.contains("isn't yours to decide"), "{tool}");
    assert!(app
        .store
        .pending_by_requester(3, Some(GROUP), app.clock.now())
        .await
        .unwrap()
        .is_empty());
    assert!(app.store.workflow_audit(wf.id).await.unwrap().is_empty());

    // Lottie: her confirmed call is one approval of two, like her "approve 1" would be
    app.say(
        &group(),
        &lottie(),
        "@hearth_bot could you sign off on the dinners for me?",
    )
    .await;
    let mine = app
        .store
        .pending_by_requester(11, Some(GROUP), app.clock.now())
        .await
        .unwrap();
    assert_eq!(
        mine.len(),
        1,
        "{:?} {}",
        app.texts(GROUP),
        last_tool_result(&app)
    );
    let conf = mine[0].clone();
    app.press(
        &group(),
        &lottie(),
        conf.notice_message_id.unwrap(),
        &format!("wf:a:{}", conf.id),
    )
    .await;
    let row = app.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(row.status, "pending");
    let audit = app.store.workflow_audit(wf.id).await.unwrap();
    assert_eq!(
        (audit.len(), audit[0].via.as_str(), audit[0].actor_id),
        (1, "agent", Some(11))
    );
    assert_eq!(step(&app.store, step_id).await.status, StepStatus::Waiting);

    app.say(&group(), &bob(), "approve 1").await;
    assert_eq!(
        step(&app.store, step_id).await.output.as_deref(),
        Some("approved")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_approvals_on_a_sqlite_file_reach_a_quorum_of_three_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("quorum.db").display()
    );
    let store = Store::connect(&url, 5, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let app = TestApp::on_store(store, hearth::clock::ManualClock::new(t0()), |_| {}, vec![]).await;
    quorum_race(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_approvals_on_the_test_store_reach_a_quorum_of_three_exactly_once() {
    // in-memory SQLite, or Postgres (row lock) under `HEARTH_TEST_DATABASE_URL`
    quorum_race(&TestApp::new().await).await;
}

/// Ten members approve a quorum-of-three gate at once: two partial approvals, one transition,
/// seven "already approved".
async fn quorum_race(app: &TestApp) {
    use hearth::workflow::{self, Decide, Decision, Outcome, Via};
    household(app).await;
    let mut crowd = Vec::new();
    for i in 0..10 {
        let u = user(1000 + i, &format!("M{i}"));
        app.say(&group(), &u, "hi").await;
        crowd.push(u.id);
    }
    let (run_id, step_id) = run_at_gate(&app.store, GROUP, 10, app.clock.now()).await;
    let mut req = request(GROUP, 10, run_id, step_id, "Pasta");
    req.required = 3;
    let wf = open_gate(&app.hearth.svc, req).await;
    let svc = std::sync::Arc::new(app.hearth.svc.clone());
    let tasks: Vec<_> = crowd
        .iter()
        .map(|&uid| {
            let svc = svc.clone();
            tokio::spawn(async move {
                workflow::decide(
                    &svc,
                    Decide {
                        workflow_id: wf.id,
                        actor_id: uid,
                        decision: Decision::Approve,
                        reason: None,
                        via: Via::Button,
                        origin_chat: GROUP,
                    },
                )
                .await
                .expect("decide")
            })
        })
        .collect();
    let (mut done, mut counted, mut already) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Outcome::Done(w) => {
                assert_eq!(w.status, "approved");
                done += 1;
            }
            Outcome::Counted { new: true, .. } => counted += 1,
            Outcome::Already { workflow, .. } => {
                assert_eq!(workflow.status, "approved");
                already += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((done, counted, already), (1, 2, 7));
    let audit = app.store.workflow_audit(wf.id).await.unwrap();
    let to: Vec<&str> = audit.iter().map(|a| a.to_status.as_str()).collect();
    assert_eq!(to, ["pending", "pending", "pending", "approved"]);
    assert_eq!(app.store.quorum_approvers(wf.id).await.unwrap().len(), 3);
    let s = step(&app.store, step_id).await;
    assert_eq!(s.output.as_deref(), Some("approved"));
}

#[tokio::test]
async fn approve_both_decides_a_gate_and_counts_toward_another_gates_quorum() {
    let app = TestApp::new().await;
    household(&app).await;
    let svc = &app.hearth.svc;
    let (run1, step1) = run_at_gate(&app.store, GROUP, 10, app.clock.now()).await;
    open_gate(svc, request(GROUP, 10, run1, step1, "Pasta")).await;
    let (run2, step2) = run_at_gate_again(&app, run1).await;
    let mut req = request(GROUP, 10, run2, step2, "Fish");
    req.required = 2;
    let wf2 = open_gate(svc, req).await;

    app.say(&group(), &lottie(), "approve both").await;
    let reply = app.last_text(GROUP);
    assert!(
        reply.contains("1. ✅ Approved: Jack — approve run meal_plan (step 3 'gate'): Pasta"),
        "{reply}"
    );
    assert!(
        reply.contains("2. ☑️ Approval recorded, 1 of 2 approvals: Jack — approve run meal_plan (step 3 'gate'): Fish"),
        "{reply}"
    );
    assert_eq!(
        step(&app.store, step1).await.output.as_deref(),
        Some("approved")
    );
    assert_eq!(step(&app.store, step2).await.status, StepStatus::Waiting);
    assert_eq!(
        app.store.workflow(wf2.id).await.unwrap().unwrap().status,
        "pending"
    );
    assert!(app.model.requests().is_empty(), "no model call");
}
