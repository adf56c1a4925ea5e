//! Runs in the chat (issue 9, items 8, 10–13): the progress message (sent once, edited in place,
//! ≤ 1 edit a second, final state written), `/run_pause` `/run_resume` `/run_cancel`
//! `/run_retry` with owner-or-admin authorization, the `run:*` buttons, `/runs` `/run_show`
//! `/run_history`, asking a routine's inputs in turn, and condition triggers.
//!
//! The executor is another helper's: runs are created in the state under test directly through
//! store functions (`seed_run`, `insert_step_run`), which is exactly what control acts on.
use std::time::Duration;

use chrono::{DateTime, Utc};
use hearth::{
    clock::Clock,
    routines::{self, progress, CreateRequest},
    store::{
        NewStepRun, NewWorkflow, RoutineRow, RunRow, RunSource, RunStatus, SeedRun, StepResult,
        StepStatus, StepType, Store, WorkflowKind, WorkflowStatus,
    },
    testkit::Recorded,
    types::{ChatKind, ChatRef},
};
use serde_json::json;

use crate::support::{
    fake_telegram::{Chat, FakeBotApi, User},
    tg::TgApp,
    *,
};

/// The meal plan of the issue: four steps, one input.
fn meal_plan_definition() -> String {
    json!({
        "inputs": [{"name": "preferences", "description": "Dietary preferences?"}],
        "steps": [
            {"name": "plan", "kind": "prompt", "prompt": "Propose five dinners for {{initial.preferences}}."},
            {"name": "shopping_list", "kind": "prompt", "prompt": "Shopping list for {{steps.plan.output}}"},
            {"name": "approval", "kind": "approval", "text": "Fine?\n{{steps.shopping_list.output}}"},
            {"name": "post", "kind": "message", "text": "{{steps.shopping_list.output}}"}
        ]
    })
    .to_string()
}

async fn make_routine(
    svc: &hearth::services::Services,
    chat_id: i64,
    owner: i64,
    name: &str,
    definition: Option<&str>,
) -> RoutineRow {
    let c = routines::create(
        svc,
        CreateRequest {
            chat_id,
            chat_zone: chrono_tz::Tz::UTC,
            owner_id: owner,
            name: Some(name.into()),
            prompt: format!("{name} prompt"),
            triggers: vec!["api".into()],
            quiet: false,
            max_ticks: None,
            max_runs_per_day: None,
        },
    )
    .await
    .expect("routine");
    svc.store
        .put_definition_json(c.routine.id, definition)
        .await
        .unwrap();
    svc.store.routine(c.routine.id).await.unwrap().unwrap()
}

#[allow(clippy::too_many_arguments)]
/// A run of `r` by `owner` in `status` at step `current` (0-based) waiting for `waiting_for`.
async fn seed(
    store: &Store,
    r: &RoutineRow,
    owner: i64,
    status: RunStatus,
    current: i32,
    waiting_for: Option<&str>,
    wake_at: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> i64 {
    store
        .seed_run(SeedRun {
            routine_id: r.id,
            chat_id: r.chat_id,
            started_by: owner,
            status,
            source: RunSource::Manual,
            input: Some(json!({"preferences": "vegetarian, no fish"}).to_string()),
            snapshot: r.definition.clone(),
            current_step: current,
            waiting_for: waiting_for.map(str::to_string),
            wake_at,
            reason: (status == RunStatus::Failed).then(|| "step 2 failed".to_string()),
            started_at: at,
            finished_at: None,
        })
        .await
        .unwrap()
}

/// A step run at `position` in `status`; completed / failed ones get an output, tokens and cost.
async fn step(store: &Store, run: i64, position: i32, status: StepStatus, output: &str) -> i64 {
    let names = ["plan", "shopping_list", "approval", "post"];
    let kinds = [
        StepType::Prompt,
        StepType::Prompt,
        StepType::Approval,
        StepType::Message,
    ];
    let id = store
        .insert_step_run(NewStepRun {
            run_id: run,
            position,
            attempt: 1,
            name: Some(names[position as usize].into()),
            kind: kinds[position as usize],
            status,
            input: None,
            started_at: Some(t0()),
        })
        .await
        .unwrap();
    if matches!(status, StepStatus::Completed | StepStatus::Failed) {
        store
            .set_step_result(
                id,
                StepResult {
                    status: Some(status),
                    output: (status == StepStatus::Completed).then(|| output.to_string()),
                    error: (status == StepStatus::Failed).then(|| output.to_string()),
                    prompt_tokens: 800,
                    completion_tokens: 12,
                    cost_usd: 0.0021,
                    duration_ms: 4200,
                    finished_at: Some(t0()),
                },
            )
            .await
            .unwrap();
    }
    id
}

async fn run(store: &Store, id: i64) -> RunRow {
    store.run(id).await.unwrap().unwrap()
}

/// A group with Alice (admin: she speaks first), Bob and Carol registered, and Alice's
/// `meal_plan` routine.
async fn group_app() -> (TestApp, RoutineRow) {
    let app = TestApp::new().await;
    app.say(&group(), &alice(), "hello").await;
    app.say(&group(), &bob(), "hi").await;
    app.say(&group(), &carol(), "hey").await;
    let def = meal_plan_definition();
    let r = make_routine(&app.hearth.svc, GROUP, 1, "meal_plan", Some(&def)).await;
    (app, r)
}

/// The text of a Bot API call as members see it (tags dropped, entities decoded).
fn plain(call: &serde_json::Value) -> String {
    hearth::format::html_to_plain(call["text"].as_str().unwrap_or(""))
}

fn callbacks(app: &TestApp) -> Vec<String> {
    app.messenger
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Recorded::Callback { text, .. } => text,
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn progress_message_is_sent_once_then_edited_at_most_once_a_second_over_the_bot_api() {
    let app = TgApp::start().await;
    let svc = &app.hearth.svc;
    let chat_id = -4242;
    app.fake.push_update(FakeBotApi::text_message(
        1,
        Chat::group(chat_id, "Flat"),
        User::new(1, "Alice"),
        1,
        "hello",
    ));
    app.wait_done(chat_id, 1).await;
    let def = meal_plan_definition();
    let r = make_routine(svc, chat_id, 1, "meal_plan", Some(&def)).await;
    let id = seed(
        &app.store,
        &r,
        1,
        RunStatus::Running,
        0,
        None,
        None,
        Utc::now(),
    )
    .await;
    let s0 = step(&app.store, id, 0, StepStatus::Running, "").await;
    app.fake.clear_calls();

    progress::refresh(svc, id).await;
    let sent = app.fake.calls_to("sendMessage");
    assert_eq!(sent.len(), 1, "one progress message");
    let first = plain(&sent[0]);
    assert!(first.contains("meal_plan · run"), "{first}");
    assert!(first.contains("◉ 1 Plan…"), "{first}");
    assert!(first.contains("○ 2 Shopping list"), "{first}");
    assert!(first.contains("○ 3 Approval"), "{first}");
    let mid = run(&app.store, id).await.progress_message_id;
    assert!(mid.is_some(), "the message id is stored");

    // a burst of step changes within a second: coalesced into ONE edit with the final state
    app.store
        .set_step_result(
            s0,
            StepResult {
                status: Some(StepStatus::Completed),
                output: Some("Monday: lentil curry <spicy> & rice".into()),
                prompt_tokens: 800,
                completion_tokens: 12,
                duration_ms: 4000,
                cost_usd: 0.0021,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    progress::refresh(svc, id).await;
    let s1 = step(&app.store, id, 1, StepStatus::Running, "").await;
    progress::refresh(svc, id).await;
    app.store
        .set_step_result(
            s1,
            StepResult {
                status: Some(StepStatus::Completed),
                output: Some("x".repeat(1000)),
                duration_ms: 2000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    progress::refresh(svc, id).await;
    step(&app.store, id, 2, StepStatus::Waiting, "").await;
    progress::refresh(svc, id).await;
    assert_eq!(app.fake.calls_to("editMessageText").len(), 0, "too soon");
    let edits = app
        .fake
        .wait_for("editMessageText", 1, Duration::from_secs(3))
        .await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let edits_after = app.fake.calls_to("editMessageText");
    assert_eq!(edits_after.len(), 1, "coalesced: {edits:?}");
    assert_eq!(app.fake.calls_to("sendMessage").len(), 1, "never re-sent");
    let text = &plain(&edits_after[0]);
    assert_eq!(edits_after[0]["message_id"].as_i64(), mid);
    assert!(text.contains("✓ 1 Plan · 4 s · 812 tok"), "{text}");
    assert!(
        text.contains("Monday: lentil curry <spicy> & rice"),
        "escaped and shown: {text}"
    );
    assert!(text.contains("✓ 2 Shopping list · 2 s"), "{text}");
    assert!(text.contains("…"), "long output clipped: {text}");
    assert!(!text.contains(&"x".repeat(400)), "clipped to 300: {text}");
    assert!(text.contains("⏸ 3 Approval"), "{text}");
    assert!(text.contains("○ 4 Post"), "{text}");
    assert!(text.contains("812 tok · $0.0021"), "totals: {text}");
    assert!(text.contains("/run_show"), "{text}");

    // the run ends more than a second later: the final state is written at once
    app.store
        .set_run_totals(
            id,
            RunStatus::Completed,
            (800, 12),
            0.0021,
            Some(Utc::now()),
        )
        .await
        .unwrap();
    progress::refresh(svc, id).await;
    let edits_final = app.fake.calls_to("editMessageText");
    assert_eq!(edits_final.len(), 2);
    let times = app.fake.call_times("editMessageText");
    assert!(times[1].1 - times[0].1 >= Duration::from_millis(990));
    let text = &plain(&edits_final[1]);
    assert!(
        text.contains("run ") && text.contains("· completed"),
        "{text}"
    );
    assert!(
        text.contains("↷ 4 Post"),
        "unreached step shown skipped: {text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn single_prompt_runs_get_no_progress_message() {
    let (app, _) = group_app().await;
    let r = make_routine(&app.hearth.svc, GROUP, 1, "tidy", None).await;
    let id = seed(&app.store, &r, 1, RunStatus::Running, 0, None, None, t0()).await;
    app.messenger.clear();
    progress::refresh(&app.hearth.svc, id).await;
    assert!(
        app.messenger.calls().is_empty(),
        "{:?}",
        app.messenger.calls()
    );
}

#[tokio::test]
async fn pause_and_resume_keep_a_waiting_runs_wait() {
    let (app, r) = group_app().await;
    let wake = t0() + chrono::Duration::hours(1);
    let id = seed(
        &app.store,
        &r,
        1,
        RunStatus::Waiting,
        1,
        Some("timer"),
        Some(wake),
        t0(),
    )
    .await;
    step(&app.store, id, 0, StepStatus::Completed, "five dinners").await;
    step(&app.store, id, 1, StepStatus::Waiting, "").await;

    app.say(&group(), &alice(), &format!("/run_pause {id}"))
        .await;
    assert_eq!(
        app.last_text(GROUP),
        format!("Run {id} of meal_plan paused; /run_resume {id} continues it.")
    );
    let row = run(&app.store, id).await;
    assert_eq!(row.status, RunStatus::Paused);
    assert_eq!(row.wake_at, Some(wake));
    assert_eq!(row.waiting_for.as_deref(), Some("timer"));
    assert_eq!(row.current_step, 1);

    app.say(&group(), &alice(), &format!("/run_pause {id}"))
        .await;
    assert_eq!(
        app.last_text(GROUP),
        format!("run {id} is already paused; /run_resume {id} continues it")
    );

    app.say(&group(), &alice(), &format!("/run_resume {id}"))
        .await;
    assert_eq!(
        app.last_text(GROUP),
        format!("Run {id} of meal_plan resumed — waiting until Sat 21 Nov 11:00.")
    );
    let row = run(&app.store, id).await;
    assert_eq!(row.status, RunStatus::Waiting);
    assert_eq!(row.wake_at, Some(wake), "its timer is kept");

    app.say(&group(), &alice(), &format!("/run_resume {id}"))
        .await;
    assert_eq!(
        app.last_text(GROUP),
        format!("run {id} is waiting, not paused")
    );

    // a gate decided while the run was paused: resuming wakes it at once, not at the safety net
    let safety = t0() + chrono::Duration::days(2);
    let id3 = seed(
        &app.store,
        &r,
        1,
        RunStatus::Waiting,
        2,
        Some("approval:9"),
        Some(safety),
        t0(),
    )
    .await;
    let gate = step(&app.store, id3, 2, StepStatus::Waiting, "").await;
    app.say(&group(), &alice(), &format!("/run_pause {id3}"))
        .await;
    app.store
        .set_step_result(
            gate,
            StepResult {
                status: Some(StepStatus::Completed),
                output: Some("approved".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    app.say(&group(), &alice(), &format!("/run_resume {id3}"))
        .await;
    let row = run(&app.store, id3).await;
    assert_eq!(row.status, RunStatus::Waiting);
    assert_eq!(row.wake_at, Some(app.clock.now()));

    // a pending run (waits for nothing) resumes to pending
    let id2 = seed(&app.store, &r, 1, RunStatus::Pending, 0, None, None, t0()).await;
    app.say(&group(), &alice(), &format!("/run_pause {id2}"))
        .await;
    app.say(&group(), &alice(), &format!("/run_resume {id2}"))
        .await;
    assert_eq!(run(&app.store, id2).await.status, RunStatus::Pending);
}

#[tokio::test]
async fn cancel_skips_the_remaining_steps_and_cancels_the_pending_gate_and_others_are_refused() {
    let (app, r) = group_app().await;
    let id = seed(&app.store, &r, 1, RunStatus::Waiting, 2, None, None, t0()).await;
    step(&app.store, id, 0, StepStatus::Completed, "five dinners").await;
    step(&app.store, id, 1, StepStatus::Completed, "shopping list").await;
    let gate = step(&app.store, id, 2, StepStatus::Waiting, "").await;
    let wf = app
        .store
        .create_workflow(
            NewWorkflow {
                chat_id: GROUP,
                kind: WorkflowKind::Confirmation,
                requester_id: 1,
                target_id: Some(id),
                target_title: "meal_plan step 3",
                eligibility: hearth::store::Eligibility::Requester,
                partner_id: None,
                created_at: t0(),
                expires_at: t0() + chrono::Duration::days(1),
                metadata: None,
                required: 1,
                resolvers: vec![],
            },
            hearth::store::CreateGuard::None,
        )
        .await
        .unwrap()
        .expect("workflow");
    app.store
        .set_step_run_waiting(gate, Some(wf.id))
        .await
        .unwrap();

    // Bob neither started it nor administers the group: refused, nothing changes
    app.say(&group(), &bob(), &format!("/run_cancel {id}"))
        .await;
    assert_eq!(
        app.last_text(GROUP),
        format!("not allowed: only the member who started run {id} or a group admin can change it")
    );
    assert_eq!(run(&app.store, id).await.status, RunStatus::Waiting);
    let w = app.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(w.status, WorkflowStatus::Pending);
    app.say(&group(), &bob(), &format!("/run_pause {id}")).await;
    assert!(app.last_text(GROUP).starts_with("not allowed"));

    app.say(&group(), &alice(), &format!("/run_cancel {id}"))
        .await;
    assert_eq!(
        app.last_text(GROUP),
        format!("Run {id} of meal_plan cancelled; its remaining steps are skipped. Its pending request was cancelled.")
    );
    let row = run(&app.store, id).await;
    assert_eq!(row.status, RunStatus::Cancelled);
    assert!(row.finished_at.is_some());
    let steps = app.store.step_runs_of(id).await.unwrap();
    let st: Vec<(i32, StepStatus)> = steps.iter().map(|s| (s.position, s.status)).collect();
    assert_eq!(
        st,
        vec![
            (0, StepStatus::Completed),
            (1, StepStatus::Completed),
            (2, StepStatus::Skipped),
            (3, StepStatus::Skipped),
        ]
    );
    let w = app.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(w.status, WorkflowStatus::Cancelled);

    app.say(&group(), &alice(), &format!("/run_cancel {id}"))
        .await;
    assert_eq!(
        app.last_text(GROUP),
        format!("run {id} was cancelled; /run_again {id} starts a new one")
    );
}

#[tokio::test]
async fn retry_a_failed_run_from_its_failed_step() {
    let (app, r) = group_app().await;
    let id = seed(&app.store, &r, 2, RunStatus::Failed, 1, None, None, t0()).await;
    step(&app.store, id, 0, StepStatus::Completed, "five dinners").await;
    step(&app.store, id, 1, StepStatus::Failed, "model timed out").await;

    // Alice administers the group: she may retry Bob's run
    app.say(&group(), &alice(), &format!("/run_retry {id}"))
        .await;
    assert_eq!(
        app.last_text(GROUP),
        format!("Retrying run {id} of meal_plan from step 2 (Shopping list).")
    );
    let row = run(&app.store, id).await;
    assert_eq!(row.status, RunStatus::Pending);
    assert_eq!(row.current_step, 1);
    assert_eq!(row.reason, None);
    assert_eq!(
        row.input.as_deref(),
        Some(r#"{"preferences":"vegetarian, no fish"}"#)
    );

    app.say(&group(), &bob(), &format!("/run_retry {id}")).await;
    assert_eq!(
        app.last_text(GROUP),
        format!("run {id} is pending, not failed; only a failed run can be retried")
    );

    let done = seed(&app.store, &r, 2, RunStatus::Completed, 3, None, None, t0()).await;
    app.say(&group(), &bob(), &format!("/run_retry {done}"))
        .await;
    assert_eq!(
        app.last_text(GROUP),
        format!("run {done} is completed; /run_again {done} starts a new one")
    );
    app.say(&group(), &bob(), "/run_retry").await;
    assert_eq!(
        app.last_text(GROUP),
        "which run? /run_retry <id> (/runs lists them)"
    );
}

#[tokio::test]
async fn runs_of_another_chat_are_invisible() {
    let (app, r) = group_app().await;
    let id = seed(
        &app.store,
        &r,
        1,
        RunStatus::Waiting,
        1,
        Some("timer"),
        None,
        t0(),
    )
    .await;
    let other = ChatRef {
        id: -2002,
        kind: ChatKind::Group,
        title: "Office".into(),
    };
    app.say(&other, &alice(), "hello").await;
    for cmd in ["run_show", "run_cancel", "run_pause", "run_again"] {
        app.say(&other, &alice(), &format!("/{cmd} {id}")).await;
        assert_eq!(
            app.last_text(-2002),
            format!("no run {id} in this chat; /runs lists the active ones"),
            "{cmd}"
        );
    }
    app.say(&other, &alice(), "/runs").await;
    assert!(app.last_text(-2002).starts_with("No active runs."));
    assert_eq!(run(&app.store, id).await.status, RunStatus::Waiting);
}

#[tokio::test]
async fn run_buttons_act_for_the_owner_or_an_admin_and_refuse_others() {
    let (app, r) = group_app().await;
    // Bob's run waits on the cost question
    let id = seed(
        &app.store,
        &r,
        2,
        RunStatus::Waiting,
        1,
        Some("cost"),
        Some(t0()),
        t0(),
    )
    .await;
    step(&app.store, id, 0, StepStatus::Completed, "five dinners").await;
    progress::refresh(&app.hearth.svc, id).await;
    let sent = app.messenger.sent();
    let progress_msg = sent.last().unwrap();
    assert_eq!(
        progress_msg.buttons[0]
            .iter()
            .map(|b| b.data.clone())
            .collect::<Vec<_>>(),
        vec![format!("run:go:{id}"), format!("run:stop:{id}")],
        "the cost question's buttons ride on the progress message"
    );
    let mid = run(&app.store, id).await.progress_message_id.unwrap();

    // Carol is neither the owner nor an admin
    app.press(&group(), &carol(), mid, &format!("run:go:{id}"))
        .await;
    assert_eq!(
        callbacks(&app).last().unwrap(),
        "Only the member who started this run or an admin can decide."
    );
    let row = run(&app.store, id).await;
    assert_eq!((row.status, row.cost_warned), (RunStatus::Waiting, false));

    // the owner continues
    app.press(&group(), &bob(), mid, &format!("run:go:{id}"))
        .await;
    assert_eq!(callbacks(&app).last().unwrap(), "Continuing the run.");
    let row = run(&app.store, id).await;
    assert_eq!(row.status, RunStatus::Pending);
    assert!(row.cost_warned);
    assert_eq!((row.waiting_for, row.wake_at), (None, None));
    // a second tap is stale
    app.press(&group(), &bob(), mid, &format!("run:stop:{id}"))
        .await;
    assert_eq!(
        callbacks(&app).last().unwrap(),
        "This button is no longer active."
    );
    assert_eq!(run(&app.store, id).await.status, RunStatus::Pending);

    // Stop at the cost question: an admin may answer for the owner
    let id2 = seed(
        &app.store,
        &r,
        2,
        RunStatus::Waiting,
        1,
        Some("cost"),
        None,
        t0(),
    )
    .await;
    app.press(&group(), &alice(), 1, &format!("run:stop:{id2}"))
        .await;
    assert_eq!(callbacks(&app).last().unwrap(), "Run stopped.");
    let row = run(&app.store, id2).await;
    assert_eq!(row.status, RunStatus::Failed);
    assert_eq!(row.reason.as_deref(), Some("stopped at the cost question"));

    // an interrupted step: Skip moves on, Retry re-runs
    let id3 = seed(
        &app.store,
        &r,
        2,
        RunStatus::Waiting,
        1,
        Some("interrupted"),
        None,
        t0(),
    )
    .await;
    let s = step(&app.store, id3, 1, StepStatus::Interrupted, "").await;
    app.press(&group(), &carol(), 1, &format!("run:skip:{id3}"))
        .await;
    assert_eq!(run(&app.store, id3).await.status, RunStatus::Waiting);
    app.press(&group(), &bob(), 1, &format!("run:skip:{id3}"))
        .await;
    assert_eq!(callbacks(&app).last().unwrap(), "Step skipped.");
    let row = run(&app.store, id3).await;
    assert_eq!((row.status, row.current_step), (RunStatus::Pending, 2));
    assert_eq!(
        app.store.step_run(s).await.unwrap().unwrap().status,
        StepStatus::Skipped
    );
    let id4 = seed(
        &app.store,
        &r,
        2,
        RunStatus::Waiting,
        1,
        Some("interrupted"),
        None,
        t0(),
    )
    .await;
    app.press(&group(), &bob(), 1, &format!("run:retry:{id4}"))
        .await;
    assert_eq!(callbacks(&app).last().unwrap(), "Retrying the step.");
    let row = run(&app.store, id4).await;
    assert_eq!((row.status, row.current_step), (RunStatus::Pending, 1));
    // the last step skipped completes the run
    let id5 = seed(
        &app.store,
        &r,
        2,
        RunStatus::Waiting,
        3,
        Some("interrupted"),
        None,
        t0(),
    )
    .await;
    app.press(&group(), &bob(), 1, &format!("run:skip:{id5}"))
        .await;
    assert_eq!(run(&app.store, id5).await.status, RunStatus::Completed);
}

#[tokio::test]
async fn runs_show_and_history_say_what_happened() {
    let (app, r) = group_app().await;
    // a completed run, a failed one, an active one waiting for approval
    let done = seed(&app.store, &r, 1, RunStatus::Completed, 3, None, None, t0()).await;
    for p in 0..4 {
        step(
            &app.store,
            done,
            p,
            StepStatus::Completed,
            &format!("output {p} <b>"),
        )
        .await;
    }
    app.store
        .set_run_totals(
            done,
            RunStatus::Completed,
            (3200, 48),
            0.0084,
            Some(t0() + chrono::Duration::seconds(95)),
        )
        .await
        .unwrap();
    let failed = seed(&app.store, &r, 2, RunStatus::Failed, 1, None, None, t0()).await;
    step(&app.store, failed, 0, StepStatus::Completed, "five dinners").await;
    step(&app.store, failed, 1, StepStatus::Failed, "model timed out").await;
    app.store
        .set_run_totals(
            failed,
            RunStatus::Failed,
            (1600, 24),
            0.0042,
            Some(t0() + chrono::Duration::seconds(25)),
        )
        .await
        .unwrap();
    let active = seed(
        &app.store,
        &r,
        1,
        RunStatus::Waiting,
        2,
        Some("approval:7"),
        None,
        t0(),
    )
    .await;
    step(&app.store, active, 0, StepStatus::Completed, "five dinners").await;
    step(&app.store, active, 1, StepStatus::Completed, "a list").await;
    step(&app.store, active, 2, StepStatus::Waiting, "").await;
    app.clock.advance(chrono::Duration::minutes(3));

    app.say(&group(), &bob(), "/runs").await;
    assert_eq!(
        app.last_text(GROUP),
        format!("Active runs (1)\n• meal_plan run {active} · waiting · step 3/4 Approval · 3 min · waiting for approval (request #7; /approvals)\n/run_show <id> for details.")
    );

    app.say(&group(), &bob(), &format!("/run_show {done}"))
        .await;
    let html = app.messenger.sent().last().unwrap().html.clone();
    assert!(
        html.contains("<b>Inputs</b>\npreferences: <code>vegetarian, no fish</code>"),
        "{html}"
    );
    assert!(html.contains("<pre>output 0 &lt;b&gt;</pre>"), "{html}");
    assert!(
        html.contains("<b>2 Shopping list</b> — completed · 4 s · 812 tok · $0.0021"),
        "{html}"
    );
    assert!(html.contains("3248 tok · $0.0084"), "{html}");

    app.say(&group(), &bob(), "/run_history meal_plan").await;
    let text = app.last_text(GROUP);
    assert!(text.starts_with("meal_plan — last 3 runs"), "{text}");
    assert!(
        text.contains(&format!(
            "• run {done} · Sat 21 Nov 10:00 · completed · 1 min 35 s · 3248 tok · $0.0084"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "• run {failed} · Sat 21 Nov 10:00 · failed: step 2 failed · 25 s"
        )),
        "{text}"
    );
    assert!(
        text.contains("3 runs · 50% completed (1 of 2 finished) · average 1 min · fails most at step 2 Shopping list (1 time)"),
        "{text}"
    );
    app.say(&group(), &bob(), "/run_history nothing_here").await;
    assert!(app
        .last_text(GROUP)
        .starts_with("no routine named 'nothing_here'"));
}

/// `/run_again` asks the run executor for a new run with the same inputs; on a build without the
/// executor it says so (it is another helper's branch), never pretends.
#[tokio::test]
async fn run_again_starts_a_new_run_with_the_same_inputs() {
    let (app, r) = group_app().await;
    let id = seed(&app.store, &r, 1, RunStatus::Completed, 3, None, None, t0()).await;
    app.say(&group(), &carol(), &format!("/run_again {id}"))
        .await;
    assert!(app.last_text(GROUP).starts_with("not allowed"));
    app.say(&group(), &alice(), &format!("/run_again {id}"))
        .await;
    let text = app.last_text(GROUP);
    let runs = app.store.routine_runs(r.id, 10).await.unwrap();
    assert_eq!(runs.len(), 2, "{text}");
    {
        assert_eq!(
            text,
            format!(
                "Started run {} of meal_plan with the inputs of run {id}.",
                runs[0].id
            )
        );
        assert_eq!(runs[0].input, runs[1].input);
        assert_eq!(runs[0].started_by, Some(1));
    }
}

fn bills_definition() -> String {
    json!({
        "inputs": [
            {"name": "bills", "description": "Which bills this month?"},
            {"name": "note", "description": "Anything to add?"},
            {"name": "currency", "required": false, "default": "EUR"}
        ],
        "steps": [{"name": "split", "kind": "prompt", "prompt": "Split {{initial.bills}}"}]
    })
    .to_string()
}

/// After the inputs are complete the run is started through the executor (`runner::start_run`):
/// a pending run with exactly these inputs exists, started by the member.
async fn assert_started(app: &TestApp, r: &RoutineRow, reply: &str, inputs: serde_json::Value) {
    let runs = app.store.routine_runs(r.id, 10).await.unwrap();
    match runs.first() {
        Some(run) => {
            assert_eq!(
                reply,
                format!(
                    "Started run {} of {}. /run_show {} shows it; /run_cancel {} stops it.",
                    run.id, r.name, run.id, run.id
                )
            );
            let got: serde_json::Value =
                serde_json::from_str(run.input.as_deref().unwrap()).unwrap();
            for (k, v) in inputs.as_object().unwrap() {
                assert_eq!(&got[k], v, "{got}");
            }
            assert_eq!(run.started_by, Some(1));
        }
        None => panic!("no run was started: {reply}"),
    }
}

#[tokio::test]
async fn missing_inputs_are_asked_in_turn_and_cancel_stops_the_questions() {
    let (app, _) = group_app().await;
    let def = bills_definition();
    let r = make_routine(&app.hearth.svc, GROUP, 1, "bills_split", Some(&def)).await;
    app.say(&group(), &alice(), "/bills_split").await;
    assert_eq!(
        app.last_text(GROUP),
        "bills_split · bills (1/2): Which bills this month?\nAnswer with your next message, or /cancel."
    );
    let key = format!("run_ask:{GROUP}:1");
    assert!(app.store.kv_get(&key).await.unwrap().is_some(), "durable");
    let n = app.texts(GROUP).len();
    // someone else's message is not an answer
    app.say(&group(), &bob(), "rent is 900").await;
    assert_eq!(app.texts(GROUP).len(), n, "Bob's message is only context");
    app.say(&group(), &alice(), "rent 900, power 80").await;
    assert_eq!(
        app.last_text(GROUP),
        "bills_split · note (2/2): Anything to add?\nAnswer with your next message, or /cancel."
    );
    app.say(&group(), &alice(), "/cancel").await;
    assert_eq!(
        app.last_text(GROUP),
        "Stopped: bills_split was not started."
    );
    assert!(app.store.kv_get(&key).await.unwrap().is_none());
    let n = app.texts(GROUP).len();
    app.say(&group(), &alice(), "split evenly").await;
    assert_eq!(
        app.texts(GROUP).len(),
        n,
        "no question pending: context only"
    );
    assert!(app.store.routine_runs(r.id, 10).await.unwrap().is_empty());
    // /cancel without questions is the workflow command again
    app.say(&group(), &alice(), "/cancel").await;
    assert!(
        !app.last_text(GROUP).starts_with("Stopped"),
        "{}",
        app.last_text(GROUP)
    );

    // answered in turn: the run starts with the answers (and the default)
    app.say(&group(), &alice(), "/bills_split").await;
    app.say(&group(), &alice(), "rent 900, power 80").await;
    app.say(&group(), &alice(), "split evenly").await;
    let reply = app.last_text(GROUP);
    assert_started(
        &app,
        &r,
        &reply,
        json!({"bills": "rent 900, power 80", "note": "split evenly"}),
    )
    .await;
    assert!(app.store.kv_get(&key).await.unwrap().is_none());
}

#[tokio::test]
async fn an_unanswered_question_expires_after_ten_minutes() {
    let (app, r) = group_app().await;
    app.say(&group(), &alice(), "/meal_plan").await;
    assert_eq!(
        app.last_text(GROUP),
        "meal_plan · preferences (1/1): Dietary preferences?\nAnswer with your next message, or /cancel."
    );
    app.clock.advance(chrono::Duration::minutes(11));
    let n = app.texts(GROUP).len();
    app.say(&group(), &alice(), "vegan").await;
    assert_eq!(
        app.texts(GROUP).len(),
        n,
        "expired: the message is only context"
    );
    assert!(app
        .store
        .kv_get(&format!("run_ask:{GROUP}:1"))
        .await
        .unwrap()
        .is_none());
    assert!(app.store.routine_runs(r.id, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn inline_inputs_start_at_once() {
    let (app, r) = group_app().await;
    app.say(&group(), &alice(), "/meal_plan vegetarian, no fish")
        .await;
    let reply = app.last_text(GROUP);
    assert_started(
        &app,
        &r,
        &reply,
        json!({"preferences": "vegetarian, no fish"}),
    )
    .await;

    let def = bills_definition();
    let b = make_routine(&app.hearth.svc, GROUP, 1, "bills_split", Some(&def)).await;
    app.say(&group(), &alice(), "/bills_split budget=3").await;
    assert_eq!(
        app.last_text(GROUP),
        "input: 'budget' is not an input of bills_split; its inputs are bills, note, currency"
    );
    app.say(
        &group(),
        &alice(),
        r#"/bills_split bills="rent 900" note=none"#,
    )
    .await;
    let reply = app.last_text(GROUP);
    assert_started(
        &app,
        &b,
        &reply,
        json!({"bills": "rent 900", "note": "none"}),
    )
    .await;
    // one input given, the other asked
    app.say(&group(), &alice(), "/bills_split rent 900").await;
    assert!(app.last_text(GROUP).starts_with("bills_split · note (2/2)"));
    app.say(&group(), &alice(), "/cancel").await;

    // a draft asks nothing
    app.store
        .put_publication(b.id, hearth::store::Publication::Draft)
        .await
        .unwrap();
    app.say(&group(), &alice(), "/bills_split").await;
    assert_eq!(
        app.last_text(GROUP),
        "name: 'bills_split' is a draft; it runs once it is published"
    );
    assert!(app
        .store
        .kv_get(&format!("run_ask:{GROUP}:1"))
        .await
        .unwrap()
        .is_none());
}

async fn overdue_chore(app: &TestApp, title: &str, due: DateTime<Utc>) -> i64 {
    app.store
        .insert_chore(hearth::store::NewChore {
            chat_id: GROUP,
            title,
            description: None,
            personal: false,
            owner_id: None,
            partner_id: None,
            assignee_id: Some(2),
            recurrence: None,
            next_due: Some(due),
            points: 1,
            created_by: 1,
            created_at: t0(),
            anchor: hearth::store::Anchor::Due,
            rotation: hearth::store::Rotation::Fixed,
            rotation_members: None,
        })
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn condition_triggers_fire_once_per_crossing() {
    use hearth::routines::conditions::evaluate;
    let (app, _) = group_app().await;
    let svc = &app.hearth.svc;
    // the facts arrive as initial inputs
    let def = json!({
        "inputs": [{"name": "overdue", "required": false, "default": "0"}],
        "steps": [{"kind": "message", "text": "{{initial.overdue}} chores are overdue"}]
    })
    .to_string();
    let c = routines::create(
        svc,
        CreateRequest {
            chat_id: GROUP,
            chat_zone: chrono_tz::Tz::UTC,
            owner_id: 1,
            name: Some("nag".into()),
            prompt: "nag".into(),
            triggers: vec!["when overdue > 1".into(), "when a chore overdue 4h".into()],
            quiet: false,
            max_ticks: None,
            max_runs_per_day: None,
        },
    )
    .await
    .expect("condition triggers parse");
    app.store
        .put_definition_json(c.routine.id, Some(&def))
        .await
        .unwrap();
    app.say(&group(), &alice(), "/routines").await;
    assert!(
        app.last_text(GROUP)
            .contains("nag — when overdue > 1, when a chore overdue 4h"),
        "{}",
        app.last_text(GROUP)
    );
    let (more, old) = (c.triggers[0].id, c.triggers[1].id);
    let err = routines::create(
        svc,
        CreateRequest {
            chat_id: GROUP,
            chat_zone: chrono_tz::Tz::UTC,
            owner_id: 1,
            name: Some("bad".into()),
            prompt: "x".into(),
            triggers: vec!["when overdue >= 3".into()],
            quiet: false,
            max_ticks: None,
            max_runs_per_day: None,
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("'when overdue > 3'") && err.contains("'when a chore overdue 4h'"),
        "{err}"
    );

    let fires = |v: &[hearth::routines::conditions::Fired]| -> Vec<i64> {
        v.iter().map(|f| f.trigger_id).collect()
    };
    assert!(evaluate(svc, app.clock.now()).await.unwrap().is_empty());
    let a = overdue_chore(&app, "Bins", t0() + chrono::Duration::minutes(30)).await;
    overdue_chore(&app, "Dishes", t0() + chrono::Duration::minutes(45)).await;
    app.clock.advance(chrono::Duration::hours(1));
    // two processes evaluating at once: one fire
    let (x, y) = tokio::join!(
        evaluate(svc, app.clock.now()),
        evaluate(svc, app.clock.now())
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!([fires(&x), fires(&y)].concat(), vec![more], "{x:?} {y:?}");
    let f = x.first().or(y.first()).unwrap();
    assert_eq!(f.facts.overdue, 2);
    assert_eq!(
        f.facts.titles,
        vec!["Bins".to_string(), "Dishes".to_string()]
    );
    assert_eq!(f.facts.inputs()["overdue"], 2);
    match &f.started {
        Ok(hearth::routines::runner::Started::Run(id)) => {
            let run = app.store.run(*id).await.unwrap().unwrap();
            assert_eq!(run.source, RunSource::Condition);
            assert!(run.input.unwrap().contains("\"overdue\":2"));
        }
        other => panic!("the crossing starts a run: {other:?}"),
    }
    // still true a minute later: no new fire
    app.clock.advance(chrono::Duration::minutes(1));
    assert!(evaluate(svc, app.clock.now()).await.unwrap().is_empty());
    // the oldest has been overdue for 4 h: the second trigger crosses
    app.clock
        .set(t0() + chrono::Duration::minutes(30) + chrono::Duration::hours(4));
    assert_eq!(
        fires(&evaluate(svc, app.clock.now()).await.unwrap()),
        vec![old]
    );
    assert!(evaluate(svc, app.clock.now()).await.unwrap().is_empty());

    // one chore done (due again next week): both conditions false, re-armed, no fire
    let edit = hearth::store::ChoreEdit {
        next_due: Some(Some(t0() + chrono::Duration::days(7))),
        ..Default::default()
    };
    app.store
        .edit_chore(a, &edit, app.clock.now())
        .await
        .unwrap();
    assert!(evaluate(svc, app.clock.now()).await.unwrap().is_empty());
    let armed = app.store.routine_triggers(c.routine.id).await.unwrap();
    assert!(armed.iter().all(|t| !t.condition_met));
    // overdue again: the next crossing fires again, once
    overdue_chore(
        &app,
        "Laundry",
        app.clock.now() - chrono::Duration::minutes(5),
    )
    .await;
    assert_eq!(
        fires(&evaluate(svc, app.clock.now()).await.unwrap()),
        vec![more]
    );
    assert!(evaluate(svc, app.clock.now()).await.unwrap().is_empty());
}

#[tokio::test]
async fn cli_lists_and_shows_runs_as_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("hearth.db").display()
    );
    let store = Store::connect(&url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    let rid = store
        .insert_routine(
            hearth::store::NewRoutine {
                chat_id: GROUP,
                name: "meal_plan".into(),
                owner_id: 1,
                prompt: "p".into(),
                zone: "UTC".into(),
                quiet: false,
                api_args: false,
                api_token_hash: None,
                max_ticks: None,
                max_runs_per_day: None,
                created_at: t0(),
            },
            vec![],
        )
        .await
        .unwrap()
        .unwrap();
    store
        .put_definition_json(rid, Some(&meal_plan_definition()))
        .await
        .unwrap();
    let r = store.routine(rid).await.unwrap().unwrap();
    let id = seed(&store, &r, 1, RunStatus::Failed, 1, None, None, t0()).await;
    step(
        &store,
        id,
        0,
        StepStatus::Completed,
        "Monday: curry\nTuesday: soup",
    )
    .await;
    step(&store, id, 1, StepStatus::Failed, "model timed out").await;
    drop(store);

    let bin = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HEARTH_DATABASE__URL", &url)
            .args(args)
            .output()
            .unwrap()
    };
    let out = bin(&["runs", "list", "--routine", "meal_plan", "--chat", "-1001"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "{id}\tmeal_plan\t-1001\tfailed: step 2 failed\t2026-11-21 10:00:00"
        )),
        "{text}"
    );
    assert!(text.contains("1624\t$0.0042\t2/4 Shopping list"), "{text}");
    assert!(
        text.contains("meal_plan in chat -1001: 1 run · 0% completed (0 of 1 finished) · average 0.0 s · fails most at step 2 Shopping list (1 time)"),
        "{text}"
    );
    let out = bin(&["runs", "show", &id.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("inputs: {\"preferences\":\"vegetarian, no fish\"}"),
        "{text}"
    );
    assert!(
        text.contains("output:\nMonday: curry\nTuesday: soup\n"),
        "full text: {text}"
    );
    assert!(
        text.contains("== step 2 Shopping list (attempt 1) — failed"),
        "{text}"
    );
    assert!(text.contains("error: model timed out"), "{text}");
    let out = bin(&["runs", "show", "999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run 999"));
    let out = bin(&["runs", "list", "--routine", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no routine named 'nope'"));
}

#[tokio::test]
async fn an_unchanged_progress_message_is_not_edited_again() {
    let (app, r) = group_app().await;
    let id = seed(&app.store, &r, 1, RunStatus::Running, 0, None, None, t0()).await;
    let s0 = step(&app.store, id, 0, StepStatus::Running, "").await;
    app.messenger.clear();
    progress::refresh(&app.hearth.svc, id).await;
    assert_eq!(app.messenger.sent().len(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    progress::refresh(&app.hearth.svc, id).await;
    let edits = |app: &TestApp| {
        app.messenger
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Recorded::Edit { .. }))
            .count()
    };
    assert_eq!(
        edits(&app),
        0,
        "nothing changed: Telegram would refuse the edit"
    );
    app.store
        .set_step_result(
            s0,
            StepResult {
                status: Some(StepStatus::Completed),
                output: Some("five dinners".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    progress::refresh(&app.hearth.svc, id).await;
    assert_eq!(edits(&app), 1);
    assert_eq!(app.messenger.sent().len(), 1, "edited, not re-sent");
}
