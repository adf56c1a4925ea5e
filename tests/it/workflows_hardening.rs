//! Issue 8, security and approvals: a tap never registers or re-activates anyone and only
//! current members decide (item 1, over the fake Bot API); the model never decides a
//! destructive action alone (item 2, scripted model); deciding your own request says so on
//! every path (item 14); a request past its `expires_at` is never listed or approved, even
//! before the sweep (item 22).
use std::time::Duration as StdDuration;

use chrono::Duration;
use hearth::{
    agent::llm::ChatMessage,
    store::{Eligibility, WorkflowKind, WorkflowRow},
    testkit::{Recorded, Script},
    workflow,
};

use crate::support::{
    fake_telegram::{Chat, FakeBotApi, User},
    tg::*,
    *,
};

const WAIT: StdDuration = StdDuration::from_secs(10);

fn jack() -> UserRef {
    user(10, "Jack")
}
fn lottie() -> UserRef {
    user(11, "Lottie")
}

use hearth::{clock::Clock, types::UserRef};

/// Jack (admin), Lottie and Bob write in the group.
async fn household(app: &TestApp) {
    for u in [jack(), lottie(), bob()] {
        app.say(&group(), &u, "hi").await;
    }
}

/// Every pending workflow of `chat`, expired or not (`-1`: no viewer excluded).
async fn pending_of(app: &TestApp, chat: i64) -> Vec<WorkflowRow> {
    app.store
        .pending_for_viewer(&[chat], -1, chrono::DateTime::UNIX_EPOCH)
        .await
        .unwrap()
}

async fn wf(app: &TestApp, id: i64) -> WorkflowRow {
    app.store.workflow(id).await.unwrap().unwrap()
}

async fn chore_status(app: &TestApp, id: i64) -> String {
    app.store
        .chore(id)
        .await
        .unwrap()
        .unwrap()
        .status
        .to_string()
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

fn edit_of(app: &TestApp, message_id: i64) -> Option<(String, usize)> {
    app.messenger
        .calls()
        .into_iter()
        .rev()
        .find_map(|c| match c {
            Recorded::Edit {
                message_id: m,
                html,
                buttons,
                ..
            } if m == message_id => Some((html, buttons.len())),
            _ => None,
        })
}

/// The tool result of the latest model request that has one.
fn last_tool_result(app: &TestApp) -> String {
    app.model
        .requests()
        .iter()
        .rev()
        .find_map(|r| {
            r.iter().rev().find_map(|m| match m {
                ChatMessage::Tool { content, .. } => Some(content.clone()),
                _ => None,
            })
        })
        .unwrap_or_default()
}

// ---- item 1, over HTTP: the real Telegram adapter against the fake Bot API ----

const TG_GROUP: i64 = -100_300;

fn tg_group() -> Chat {
    Chat::group(TG_GROUP, "Home")
}
fn tg(id: i64, name: &str) -> User {
    User::new(id, name).with_username(&name.to_lowercase())
}

async fn say_tg(app: &TgApp, from: User, message_id: i64, text: &str) {
    app.fake.push_update(FakeBotApi::text_message(
        0,
        tg_group(),
        from,
        message_id,
        text,
    ));
    app.wait_done(TG_GROUP, message_id).await;
}

/// Tap `data` and return the toast.
async fn tap_tg(app: &TgApp, from: User, message_id: i64, data: &str) -> String {
    let before = app.fake.calls_to("answerCallbackQuery").len();
    app.fake.push_update(FakeBotApi::callback_query(
        0,
        from,
        tg_group(),
        message_id,
        data,
    ));
    let answers = app
        .fake
        .wait_for("answerCallbackQuery", before + 1, WAIT)
        .await;
    app.hearth.idle().await;
    answers[before]["text"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn a_tap_registers_nobody_and_only_current_members_decide() {
    let app = TgApp::start().await;
    let (alice, bob, carol) = (tg(1, "Alice"), tg(2, "Bob"), tg(3, "Carol"));
    say_tg(&app, alice.clone(), 1, "hi").await;
    say_tg(&app, bob.clone(), 2, "hi").await;
    say_tg(&app, carol.clone(), 3, "hi").await;
    say_tg(&app, alice.clone(), 4, "/addchore Dishes").await;
    say_tg(&app, alice.clone(), 5, "/done dishes").await;
    let req = app
        .store
        .pending_for_viewer(&[TG_GROUP], -1, chrono::DateTime::UNIX_EPOCH)
        .await
        .unwrap()
        .remove(0);
    let approve = format!("wf:a:{}", req.id);
    let msg = req.notice_message_id.expect("request message sent");

    // Mallory never wrote in the group: refused, and nothing about her is stored
    let mallory = tg(66, "Mallory");
    assert_eq!(
        tap_tg(&app, mallory, msg, &approve).await,
        "This request isn't yours to decide."
    );
    assert!(app.store.member(TG_GROUP, 66).await.unwrap().is_none());
    assert!(app.store.users(&[66]).await.unwrap().is_empty());
    assert_eq!(
        app.store.workflow(req.id).await.unwrap().unwrap().status,
        "pending"
    );

    // Bob leaves; his tap, his text and his command decide nothing and re-activate nothing
    app.fake.push_update(FakeBotApi::member_left(
        0,
        tg_group(),
        bob.clone(),
        6,
        bob.clone(),
    ));
    let deadline = std::time::Instant::now() + WAIT;
    while app.store.member(TG_GROUP, 2).await.unwrap().unwrap().active {
        assert!(std::time::Instant::now() < deadline, "leave not processed");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert_eq!(
        tap_tg(&app, bob.clone(), msg, &approve).await,
        "This request isn't yours to decide."
    );
    say_tg(&app, bob.clone(), 7, "approve 1").await;
    say_tg(&app, bob.clone(), 8, "/approve 1").await;
    say_tg(&app, bob.clone(), 9, "@hearth_bot approve all").await;
    assert!(!app.store.member(TG_GROUP, 2).await.unwrap().unwrap().active);
    assert_eq!(
        app.store.workflow(req.id).await.unwrap().unwrap().status,
        "pending"
    );
    assert!(app.store.workflow_audit(req.id).await.unwrap().is_empty());
    let to_group = app.sent_texts(TG_GROUP);
    assert!(
        to_group
            .iter()
            .any(|t| t.contains("nothing to approve or reject right now")),
        "{to_group:?}"
    );

    // a current member still decides by button
    assert_eq!(tap_tg(&app, carol, msg, &approve).await, "Approved.");
    assert_eq!(
        app.store.workflow(req.id).await.unwrap().unwrap().status,
        "approved"
    );
    // a join (and only a join) makes Bob a member again
    app.fake.push_update(FakeBotApi::member_joined(
        0,
        tg_group(),
        bob.clone(),
        10,
        vec![bob.clone()],
    ));
    let deadline = std::time::Instant::now() + WAIT;
    while !app.store.member(TG_GROUP, 2).await.unwrap().unwrap().active {
        assert!(std::time::Instant::now() < deadline, "join not processed");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    app.stop().await;
}

// ---- item 2: destructive calls of ordinary turns wait for the member ----

#[tokio::test]
async fn the_model_never_decides_a_destructive_action_alone() {
    let approve_1 = || {
        Script::Tools(vec![(
            "batch_respond_to_workflows".into(),
            r#"{"decision":"approve","numbers":[1]}"#.into(),
        )])
    };
    let app = TestApp::with(
        |_| {},
        vec![
            approve_1(),
            Script::Text("It's sunny. I've asked you to confirm approving request 1.".into()),
        ],
    )
    .await;
    household(&app).await;
    app.say(&group(), &jack(), "/addchore Dishes").await;
    app.say(&group(), &jack(), "/done dishes").await;
    let req = pending_of(&app, GROUP).await.remove(0);

    // a small model approves on an unrelated mention: nothing is approved
    app.say(
        &group(),
        &lottie(),
        "@hearth_bot what's the weather like today?",
    )
    .await;
    assert_eq!(wf(&app, req.id).await.status, "pending");
    assert_eq!(chore_status(&app, 1).await, "pending_verification");
    let conf = app
        .store
        .pending_by_requester(lottie().id, Some(GROUP), app.clock.now())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(conf.kind, WorkflowKind::Confirmation);
    assert_eq!(conf.eligibility, Eligibility::Requester);
    assert_eq!(
        conf.target_title,
        "Approve request 1 — Jack: verify “Dishes”"
    );
    assert_eq!(
        conf.expires_at,
        app.clock.now() + Duration::minutes(10),
        "agent.confirm_expiry"
    );
    // the member gets the exact action with Confirm / Cancel
    let notice = app
        .messenger
        .sent()
        .into_iter()
        .rfind(|o| !o.buttons.is_empty())
        .unwrap();
    assert_eq!(notice.chat_id, GROUP);
    assert!(
        notice
            .html
            .contains("<b>Lottie</b>, I was asked to: Approve request 1 — Jack: verify “Dishes”"),
        "{}",
        notice.html
    );
    let labels: Vec<&str> = notice.buttons[0].iter().map(|b| b.label.as_str()).collect();
    assert_eq!(labels, ["✅ Confirm", "✖️ Cancel"]);
    let (confirm, cancel) = (
        notice.buttons[0][0].data.clone(),
        notice.buttons[0][1].data.clone(),
    );
    let msg = conf.notice_message_id.unwrap();
    // the model is told it awaits the member, and says so
    let tool = last_tool_result(&app);
    assert!(tool.contains("awaiting confirmation"), "{tool}");
    assert!(tool.contains("Lottie must tap Confirm"), "{tool}");
    assert_eq!(
        app.last_text(GROUP),
        "It's sunny. I've asked you to confirm approving request 1."
    );

    // only Lottie may tap
    app.press(&group(), &bob(), msg, &confirm).await;
    app.press(&group(), &jack(), msg, &cancel).await;
    let t = toasts(&app);
    assert_eq!(
        t[t.len() - 2..],
        [
            "Only the member this was asked for can confirm it.",
            "Only the person who asked can cancel a request."
        ]
    );
    assert_eq!(wf(&app, conf.id).await.status, "pending");
    assert_eq!(wf(&app, req.id).await.status, "pending");

    // Cancel changes nothing and says so
    app.press(&group(), &lottie(), msg, &cancel).await;
    assert_eq!(wf(&app, conf.id).await.status, "cancelled");
    assert_eq!(wf(&app, req.id).await.status, "pending");
    let (html, buttons) = edit_of(&app, msg).unwrap();
    assert!(html.contains("Nothing was done."), "{html}");
    assert_eq!(buttons, 0);

    // a second proposal, confirmed: approved once, through the service
    app.model.push(approve_1());
    app.model
        .push(Script::Text("Tap Confirm to approve it.".into()));
    app.say(
        &group(),
        &lottie(),
        "@hearth_bot could you sort out what Jack asked for, thanks",
    )
    .await;
    let conf2 = pending_of_requester(&app, lottie().id).await.remove(0);
    let msg2 = conf2.notice_message_id.unwrap();
    let confirm2 = format!("wf:a:{}", conf2.id);
    app.clock.advance(Duration::minutes(3));
    app.press(&group(), &lottie(), msg2, &confirm2).await;
    assert_eq!(wf(&app, conf2.id).await.status, "approved");
    let decided = wf(&app, req.id).await;
    assert_eq!(
        (decided.status, decided.resolver_id),
        (hearth::store::WorkflowStatus::Approved, Some(lottie().id))
    );
    assert_eq!(chore_status(&app, 1).await, "completed");
    let (html, _) = edit_of(&app, msg2).unwrap();
    assert!(html.contains("→ “Dishes”: Approved."), "{html}");
    // a second tap never runs it again
    app.press(&group(), &lottie(), msg2, &confirm2).await;
    assert_eq!(toasts(&app).last().unwrap(), "Already approved by Lottie.");
    let audit = app.store.workflow_audit(req.id).await.unwrap();
    assert_eq!(audit.len(), 1, "approved once");
    assert_eq!(audit[0].via, "agent");
    let audit = app.store.workflow_audit(conf2.id).await.unwrap();
    assert_eq!(
        (audit[0].via.as_str(), audit[0].to_status.as_str()),
        ("button", "approved")
    );

    // expiry: nothing happens, the message says so, a late tap is refused
    app.say(&group(), &jack(), "/addchore Bins").await;
    app.say(&group(), &jack(), "/done bins").await;
    let bins = pending_of(&app, GROUP)
        .await
        .into_iter()
        .find(|w| w.kind == WorkflowKind::ChoreVerification)
        .unwrap();
    app.model.push(approve_1());
    app.model.push(Script::Text("Please confirm.".into()));
    app.say(&group(), &lottie(), "@hearth_bot sort the bins one out")
        .await;
    let conf3 = pending_of_requester(&app, lottie().id).await.remove(0);
    app.clock.advance(Duration::minutes(11));
    assert_eq!(workflow::sweep_expired(&app.hearth.svc).await.unwrap(), 1);
    assert_eq!(wf(&app, conf3.id).await.status, "expired");
    assert_eq!(wf(&app, bins.id).await.status, "pending");
    let (html, buttons) = edit_of(&app, conf3.notice_message_id.unwrap()).unwrap();
    assert!(
        html.contains("Expired") && html.contains("Nothing was done."),
        "{html}"
    );
    assert_eq!(buttons, 0);
    app.press(
        &group(),
        &lottie(),
        conf3.notice_message_id.unwrap(),
        &format!("wf:a:{}", conf3.id),
    )
    .await;
    assert_eq!(toasts(&app).last().unwrap(), "Already expired.");
    assert_eq!(wf(&app, bins.id).await.status, "pending");

    // deterministic paths need no confirmation
    let calls = app.model.calls();
    app.say(&group(), &lottie(), "approve 1").await;
    assert_eq!(wf(&app, bins.id).await.status, "approved");
    assert_eq!(app.model.calls(), calls);
}

async fn pending_of_requester(app: &TestApp, user_id: i64) -> Vec<WorkflowRow> {
    app.store
        .pending_by_requester(user_id, None, app.clock.now())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_call_that_would_fail_is_refused_at_once_and_confirmation_can_be_turned_off() {
    let app = TestApp::with(
        |_| {},
        vec![
            Script::Tools(vec![(
                "batch_respond_to_workflows".into(),
                r#"{"decision":"approve","numbers":[3]}"#.into(),
            )]),
            Script::Text("There is no request 3.".into()),
        ],
    )
    .await;
    household(&app).await;
    app.say(&group(), &jack(), "/addchore Dishes").await;
    app.say(&group(), &jack(), "/done dishes").await;
    app.say(
        &group(),
        &lottie(),
        "@hearth_bot what do you reckon about Jack's chore?",
    )
    .await;
    let tool = last_tool_result(&app);
    assert!(tool.contains("no request number 3"), "{tool}");
    assert!(pending_of_requester(&app, lottie().id).await.is_empty());

    // the requester asking the model to approve their own request: refused, no confirmation
    app.model.push(Script::Tools(vec![(
        "respond_to_workflow".into(),
        r#"{"decision":"approve","id":1}"#.into(),
    )]));
    app.model.push(Script::Text("I can't.".into()));
    app.say(
        &group(),
        &jack(),
        "@hearth_bot could you tick off my thing?",
    )
    .await;
    let tool = last_tool_result(&app);
    assert!(
        tool.contains("You can't decide your own request (you can /cancel it)."),
        "{tool}"
    );
    assert_eq!(pending_of_requester(&app, jack().id).await.len(), 1);

    // with agent.confirm_destructive = false the call runs at once (the old behaviour)
    let app = TestApp::with(
        |c| c.agent.confirm_destructive = false,
        vec![
            Script::Tools(vec![(
                "batch_respond_to_workflows".into(),
                r#"{"decision":"approve","numbers":[1]}"#.into(),
            )]),
            Script::Text("Approved.".into()),
        ],
    )
    .await;
    household(&app).await;
    app.say(&group(), &jack(), "/addchore Dishes").await;
    app.say(&group(), &jack(), "/done dishes").await;
    app.say(
        &group(),
        &lottie(),
        "@hearth_bot sure, go ahead with Jack's",
    )
    .await;
    assert_eq!(wf(&app, 1).await.status, "approved");
}

// ---- item 14: one message for deciding your own request ----

#[tokio::test]
async fn deciding_your_own_request_says_so_by_text_command_and_button() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &jack(), "/addchore Dishes").await;
    app.say(&group(), &jack(), "/done dishes").await;
    let req = pending_of(&app, GROUP).await.remove(0);
    let own = "You can't decide your own request (you can /cancel it).";
    for text in [
        "approve",
        "approve 1",
        "/approve 1",
        "@hearth_bot approve 1",
    ] {
        app.say(&group(), &jack(), text).await;
        assert_eq!(app.last_text(GROUP), own, "{text}");
    }
    app.press(
        &group(),
        &jack(),
        req.notice_message_id.unwrap(),
        &format!("wf:a:{}", req.id),
    )
    .await;
    assert_eq!(toasts(&app).last().unwrap(), own);
    assert_eq!(wf(&app, req.id).await.status, "pending");
    assert_eq!(app.model.calls(), 0);
}

// ---- item 22: past expires_at is never listed or approvable, even before the sweep ----

#[tokio::test]
async fn a_request_past_its_expiry_is_never_listed_or_approved_before_the_sweep() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &jack(), "/addchore Dishes").await;
    app.say(&group(), &jack(), "/addchore Bins").await;
    app.say(&group(), &jack(), "/done dishes").await;
    let req = pending_of(&app, GROUP).await.remove(0);
    app.clock.advance(Duration::hours(48));
    // 48 h later, to the second: no sweep has run
    app.say(&group(), &lottie(), "/approvals").await;
    let list = app.last_text(GROUP);
    assert!(list.contains("Nothing for you right now."), "{list}");
    assert!(!list.contains("expires in now"), "{list}");
    app.say(&group(), &jack(), "/approvals").await;
    assert!(app
        .last_text(GROUP)
        .ends_with("Your pending requests\nNone."));
    let v = workflow::Viewer {
        user_id: lottie().id,
        chat_id: GROUP,
        private: false,
    };
    assert!(workflow::actionable(&app.hearth.svc, v)
        .await
        .unwrap()
        .is_empty());
    app.say(&group(), &lottie(), "approve 1").await;
    assert_eq!(wf(&app, req.id).await.status, "pending", "nothing decided");
    // the button (still on the old message) expires it on the spot instead of approving it
    app.press(
        &group(),
        &lottie(),
        req.notice_message_id.unwrap(),
        &format!("wf:a:{}", req.id),
    )
    .await;
    assert_eq!(toasts(&app).last().unwrap(), "Already expired.");
    let after = wf(&app, req.id).await;
    assert_eq!(after.status, "expired");
    assert_eq!(chore_status(&app, 1).await, "todo", "the chore is restored");
    let audit = app.store.workflow_audit(req.id).await.unwrap();
    assert_eq!((audit.len(), audit[0].via.as_str()), (1, "scheduler"));
    assert!(app
        .last_text(GROUP)
        .contains("so it expired. The chore is back on the to-do list."));
    // the sweep finds nothing left to do
    assert_eq!(workflow::sweep_expired(&app.hearth.svc).await.unwrap(), 0);
    // the claim can be made again
    app.say(&group(), &jack(), "/done dishes").await;
    assert_eq!(chore_status(&app, 1).await, "pending_verification");
}
