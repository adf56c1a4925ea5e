//! Approval workflows end to end (in-process): numbered and batch replies without a model call,
//! buttons, commands, agent tools, races, expiry, privacy, the token budget.
use std::sync::Arc;

use chrono::Duration;
use hearth::{
    agent::llm::ChatMessage,
    app,
    clock::ManualClock,
    store::{Store, WorkflowRow},
    testkit::{Recorded, Script},
    types::{CallbackQuery, InboundEvent, UserRef},
    workflow::{self, Decide, Decision, Outcome, Via, Viewer},
};

use crate::support::*;

pub fn jack() -> UserRef {
    user(10, "Jack")
}
pub fn lottie() -> UserRef {
    user(11, "Lottie")
}

/// Jack, Lottie and Bob write in the group (Jack first: he is the admin).
async fn household(app: &TestApp) {
    for u in [jack(), lottie(), bob()] {
        app.say(&group(), &u, "hi").await;
    }
}

async fn add_chores(app: &TestApp, titles: &[&str]) -> Vec<i64> {
    for t in titles {
        app.say(&group(), &jack(), &format!("/addchore {t}")).await;
    }
    let all = app.store.open_chores(GROUP).await.unwrap();
    titles
        .iter()
        .map(|t| all.iter().find(|c| c.title == *t).expect("chore added").id)
        .collect()
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

async fn pending_of(app: &TestApp, chat: i64) -> Vec<WorkflowRow> {
    app.store
        .pending_for_viewer(&[chat], -1, chrono::DateTime::UNIX_EPOCH)
        .await
        .unwrap()
}

fn system_text(req: &[ChatMessage]) -> String {
    match &req[0] {
        ChatMessage::System(s) => s.clone(),
        other => panic!("first message is not system: {other:?}"),
    }
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

fn edits(app: &TestApp) -> Vec<(i64, String, usize)> {
    app.messenger
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Recorded::Edit {
                message_id,
                html,
                buttons,
                ..
            } => Some((message_id, html, buttons.len())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn seed_scenario_approve_both_without_a_model_call() {
    let app = TestApp::new().await;
    household(&app).await;
    let ids = add_chores(&app, &["Water plants", "Take out bins"]).await;
    app.say(&group(), &jack(), "/deletechore water plants")
        .await;
    app.say(&group(), &jack(), "/deletechore bins").await;
    // the group got both requests, with Approve / Reject buttons
    let requests: Vec<_> = app
        .messenger
        .sent()
        .into_iter()
        .filter(|o| !o.buttons.is_empty())
        .collect();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].buttons[0][0].data.starts_with("wf:a:"));
    assert!(requests[0]
        .html
        .contains("Jack</b> wants to delete “Water plants”"));

    app.say(&group(), &lottie(), "/approvals").await;
    let list = app.last_text(GROUP);
    assert!(
        list.contains("1. Jack wants to delete “Water plants”"),
        "{list}"
    );
    assert!(
        list.contains("2. Jack wants to delete “Take out bins”"),
        "{list}"
    );

    app.say(&group(), &lottie(), "approve both").await;
    let reply = app.last_text(GROUP);
    assert!(
        reply.contains("1. ✅ Approved: Jack — delete “Water plants”"),
        "{reply}"
    );
    assert!(
        reply.contains("2. ✅ Approved: Jack — delete “Take out bins”"),
        "{reply}"
    );
    for id in &ids {
        assert_eq!(chore_status(&app, *id).await, "archived");
    }
    // both request messages now show the outcome and lost their buttons
    let ed = edits(&app);
    assert_eq!(ed.len(), 2, "{ed:?}");
    assert!(ed
        .iter()
        .all(|(_, html, b)| html.contains("Approved by Lottie") && *b == 0));

    app.say(&group(), &jack(), "approve").await;
    assert_eq!(
        app.last_text(GROUP),
        "You have nothing to approve or reject right now."
    );
    assert_eq!(
        app.model.calls(),
        0,
        "the approval path made a model request"
    );
    // audit: one row per transition, by text, by Lottie
    let wf = app.store.workflow(1).await.unwrap().unwrap();
    let audit = app.store.workflow_audit(wf.id).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].via.as_str(),
            audit[0].actor_id,
            audit[0].from_status.as_str(),
            audit[0].to_status.as_str()
        ),
        ("text", Some(lottie().id), "pending", "approved")
    );
}

#[tokio::test]
async fn three_items_numbers_then_all_and_out_of_range() {
    let app = TestApp::new().await;
    household(&app).await;
    let ids = add_chores(&app, &["Dishes", "Laundry", "Hoover"]).await;
    for t in ["dishes", "laundry", "hoover"] {
        app.say(&group(), &jack(), &format!("/deletechore {t}"))
            .await;
    }
    app.say(&group(), &lottie(), "approve 7").await;
    assert_eq!(
        app.last_text(GROUP),
        "There is no request 7: you have 3 (1–3)."
    );
    assert_eq!(
        pending_of(&app, GROUP).await.len(),
        3,
        "approve 7 changed something"
    );

    app.say(&group(), &lottie(), "approve 1 and 3").await;
    let r = app.last_text(GROUP);
    assert!(r.contains("1. ✅ Approved: Jack — delete “Dishes”"), "{r}");
    assert!(r.contains("3. ✅ Approved: Jack — delete “Hoover”"), "{r}");
    assert_eq!(chore_status(&app, ids[0]).await, "archived");
    assert_eq!(chore_status(&app, ids[1]).await, "todo");
    assert_eq!(chore_status(&app, ids[2]).await, "archived");

    app.say(&group(), &lottie(), "reject all because we still need it")
        .await;
    let r = app.last_text(GROUP);
    assert!(
        r.contains("1. ❌ Rejected: Jack — delete “Laundry” (we still need it)"),
        "{r}"
    );
    assert_eq!(
        chore_status(&app, ids[1]).await,
        "todo",
        "a rejected deletion keeps the chore"
    );
    assert!(pending_of(&app, GROUP).await.is_empty());
    let wf = app.store.workflow(2).await.unwrap().unwrap();
    assert_eq!(wf.status, "rejected");
    assert_eq!(wf.reason.as_deref(), Some("we still need it"));
    assert_eq!(app.model.calls(), 0);
}

#[tokio::test]
async fn bare_yes_resolves_the_only_item_and_asks_with_two() {
    let app = TestApp::new().await;
    household(&app).await;
    let ids = add_chores(&app, &["Dishes", "Laundry"]).await;
    app.say(&group(), &jack(), "/done dishes").await;
    let wf = pending_of(&app, GROUP).await.remove(0);
    assert_eq!(chore_status(&app, ids[0]).await, "pending_verification");

    // unaddressed weak "yes" in a group is chat, not a decision
    app.say(&group(), &lottie(), "yes").await;
    assert_eq!(pending_of(&app, GROUP).await.len(), 1);

    // replying "yes" to the request message resolves the only item
    let notice = wf.notice_message_id.expect("request message stored");
    app.reply_to_bot(&group(), &lottie(), notice, "yes").await;
    assert!(app
        .last_text(GROUP)
        .contains("1. ✅ Approved: Jack — verify “Dishes”"));
    assert_eq!(chore_status(&app, ids[0]).await, "completed");
    let done = app.store.chore(ids[0]).await.unwrap().unwrap();
    assert_eq!(done.completed_by, Some(jack().id));

    // two items: a bare "yes" asks which
    app.say(&group(), &jack(), "/done laundry").await;
    app.say(&group(), &bob(), "/deletechore dishes").await;
    app.say(&group(), &lottie(), "@hearth_bot yes").await;
    assert_eq!(
        app.last_text(GROUP),
        "You have 2 requests: which? For example 'approve 1' or 'approve all'."
    );
    assert_eq!(pending_of(&app, GROUP).await.len(), 2);
    assert_eq!(app.model.calls(), 0);
}

#[tokio::test]
async fn buttons_authorize_edit_and_never_resolve_twice() {
    let app = TestApp::new().await;
    household(&app).await;
    let ids = add_chores(&app, &["Dishes"]).await;
    app.say(&group(), &jack(), "/done dishes").await;
    let wf = pending_of(&app, GROUP).await.remove(0);
    let msg = wf.notice_message_id.unwrap();
    let approve = format!("wf:a:{}", wf.id);

    app.press(&group(), &jack(), msg, &approve).await;
    assert_eq!(
        callbacks(&app).last().unwrap(),
        "You can't decide your own request (you can /cancel it)."
    );
    assert_eq!(
        app.store.workflow(wf.id).await.unwrap().unwrap().status,
        "pending"
    );

    app.messenger.clear();
    app.press(&group(), &lottie(), msg, &approve).await;
    assert_eq!(callbacks(&app), vec!["Approved.".to_string()]);
    let ed = edits(&app);
    assert_eq!(ed.len(), 1);
    assert_eq!(ed[0].0, msg);
    assert!(ed[0].1.contains("✅ Approved by Lottie"), "{}", ed[0].1);
    assert_eq!(ed[0].2, 0, "buttons removed");
    assert_eq!(chore_status(&app, ids[0]).await, "completed");
    // the requester is told (an edit alone notifies nobody)
    assert!(app
        .last_text(GROUP)
        .contains("Jack: Lottie approved your request to verify “Dishes”."));

    // a second tap, and a redelivered first tap, say so and change nothing
    app.press(&group(), &bob(), msg, &format!("wf:r:{}", wf.id))
        .await;
    assert_eq!(
        callbacks(&app).last().unwrap(),
        "Already approved by Lottie."
    );
    let redelivered = CallbackQuery {
        id: "cb-redelivered".into(),
        from: lottie(),
        chat: group(),
        message_id: msg,
        data: approve.clone(),
    };
    app.send_event(InboundEvent::Callback(redelivered.clone()))
        .await;
    app.send_event(InboundEvent::Callback(redelivered)).await;
    assert_eq!(
        callbacks(&app).last().unwrap(),
        "Already approved by Lottie."
    );
    assert_eq!(app.store.workflow_audit(wf.id).await.unwrap().len(), 1);
    assert_eq!(edits(&app).len(), 1);
    // a stranger's forged data is refused
    app.press(&group(), &bob(), msg, "wf:a:999").await;
    assert_eq!(
        callbacks(&app).last().unwrap(),
        "This request no longer exists."
    );
    assert_eq!(app.model.calls(), 0);
}

/// Register `n` extra members and return them.
async fn crowd(app: &TestApp, n: i64) -> Vec<UserRef> {
    let mut v = Vec::new();
    for i in 0..n {
        let u = user(1000 + i, &format!("M{i}"));
        app.say(&group(), &u, "hi").await;
        v.push(u);
    }
    v
}

async fn race(app: &TestApp, members: &[UserRef], wf_id: i64) -> Vec<Outcome> {
    let svc = Arc::new(app.hearth.svc.clone());
    let mut tasks = Vec::new();
    for m in members {
        let svc = svc.clone();
        let uid = m.id;
        tasks.push(tokio::spawn(async move {
            workflow::decide(
                &svc,
                Decide {
                    workflow_id: wf_id,
                    actor_id: uid,
                    decision: Decision::Approve,
                    reason: None,
                    via: Via::Button,
                    origin_chat: GROUP,
                },
            )
            .await
            .expect("decide")
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn check_race(outcomes: &[Outcome]) -> String {
    let done: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Done(w) => Some(w.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 1, "exactly one transition");
    let winner = done[0].resolver_id.unwrap();
    let winner_name = format!("M{}", winner - 1000);
    for o in outcomes {
        match o {
            Outcome::Done(_) => {}
            Outcome::Already { workflow, by } => {
                assert_eq!(workflow.status, "approved");
                assert_eq!(by.as_deref(), Some(winner_name.as_str()));
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    winner_name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_approvals_in_memory_give_one_transition() {
    let app = TestApp::new().await;
    household(&app).await;
    let ids = add_chores(&app, &["Dishes"]).await;
    app.say(&group(), &jack(), "/done dishes").await;
    let members = crowd(&app, 50).await;
    let wf = pending_of(&app, GROUP).await.remove(0);
    let outcomes = race(&app, &members, wf.id).await;
    check_race(&outcomes);
    assert_eq!(app.store.workflow_audit(wf.id).await.unwrap().len(), 1);
    assert_eq!(chore_status(&app, ids[0]).await, "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_approvals_on_a_sqlite_file_with_five_connections() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("race.db").display());
    let store = Store::connect(&url, 5, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let app = TestApp::on_store(store, ManualClock::new(t0()), |_| {}, vec![]).await;
    household(&app).await;
    let ids = add_chores(&app, &["Dishes"]).await;
    app.say(&group(), &jack(), "/done dishes").await;
    let members = crowd(&app, 50).await;
    let wf = pending_of(&app, GROUP).await.remove(0);
    let outcomes = race(&app, &members, wf.id).await;
    let winner = check_race(&outcomes);
    let audit = app.store.workflow_audit(wf.id).await.unwrap();
    assert_eq!(audit.len(), 1, "exactly one audit row");
    assert_eq!(audit[0].to_status, "approved");
    assert_eq!(chore_status(&app, ids[0]).await, "completed");
    let row = app.store.workflow(wf.id).await.unwrap().unwrap();
    assert_eq!(format!("M{}", row.resolver_id.unwrap() - 1000), winner);
}

#[tokio::test]
async fn expiry_restores_the_chore_notifies_once_and_is_idempotent() {
    let app = TestApp::new().await;
    household(&app).await;
    let ids = add_chores(&app, &["Dishes", "Bins"]).await;
    app.say(&group(), &jack(), "/done dishes").await;
    app.clock.advance(Duration::hours(47));
    app.say(&group(), &jack(), "/deletechore bins").await; // expires later
    app::sweep_expired(&app.hearth).await;
    assert_eq!(pending_of(&app, GROUP).await.len(), 2, "nothing is due yet");

    app.clock.advance(Duration::hours(1) + Duration::seconds(1));
    let before = app.texts(GROUP).len();
    let n = workflow::sweep_expired(&app.hearth.svc).await.unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        chore_status(&app, ids[0]).await,
        "todo",
        "an expired verification restores the chore"
    );
    let texts = app.texts(GROUP);
    assert_eq!(texts.len(), before + 1, "one notification");
    assert!(texts
        .last()
        .unwrap()
        .contains("Nobody decided on Jack's request to verify “Dishes” in time"));
    let wf = app.store.workflow(1).await.unwrap().unwrap();
    assert_eq!(wf.status, "expired");
    let audit = app.store.workflow_audit(1).await.unwrap();
    assert_eq!((audit.len(), audit[0].via.as_str()), (1, "scheduler"));
    assert!(edits(&app)
        .iter()
        .any(|(_, h, b)| h.contains("Expired") && *b == 0));

    // twice changes nothing
    assert_eq!(workflow::sweep_expired(&app.hearth.svc).await.unwrap(), 0);
    assert_eq!(app.texts(GROUP).len(), before + 1);
    // the restored chore can be claimed again
    app.say(&group(), &jack(), "/done dishes").await;
    assert_eq!(chore_status(&app, ids[0]).await, "pending_verification");
}

#[tokio::test]
async fn expired_while_down_is_expired_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("down.db").display());
    let clock = ManualClock::new(t0());
    let chore_id;
    {
        let store = Store::connect(&url, 2, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let app = TestApp::on_store(store, clock.clone(), |_| {}, vec![]).await;
        household(&app).await;
        chore_id = add_chores(&app, &["Dishes"]).await[0];
        app.say(&group(), &jack(), "/done dishes").await;
        app.hearth.shutdown(std::time::Duration::from_secs(1)).await;
    }
    // hearth is down for three days
    clock.advance(Duration::days(3));
    let store = Store::connect(&url, 2, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let app = TestApp::on_store(store, clock, |_| {}, vec![]).await;
    app.continue_ids_from(10_000);
    app.hearth.recover().await.unwrap();
    app::sweep_expired(&app.hearth).await; // what `run` and `console` do at start-up
    assert_eq!(
        app.store.workflow(1).await.unwrap().unwrap().status,
        "expired"
    );
    assert_eq!(chore_status(&app, chore_id).await, "todo");
    let texts = app.texts(GROUP);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("expired"));
}

#[tokio::test]
async fn personal_verification_is_private_to_the_partner() {
    let app = TestApp::with(|_| {}, vec![]).await;
    household(&app).await;
    app.say(&group(), &carol(), "hi").await;
    let bob_dm = dm(&bob());
    app.say(&bob_dm, &bob(), "/addpersonal Run 5k partner @lottie")
        .await;
    assert!(app.last_text(bob().id).contains("Lottie will verify it"));
    app.say(&bob_dm, &bob(), "/done run").await;
    assert_eq!(
        app.last_text(bob().id),
        "Sent “Run 5k” to Lottie, your accountability partner — only Lottie can verify it."
    );
    // the partner got a private message with buttons
    let to_lottie: Vec<_> = app
        .messenger
        .sent()
        .into_iter()
        .filter(|o| o.chat_id == lottie().id)
        .collect();
    assert_eq!(to_lottie.len(), 1);
    assert!(!to_lottie[0].buttons.is_empty());
    // never in the group, never listed to anyone else
    assert!(!app.texts(GROUP).iter().any(|t| t.contains("Run 5k")));
    for u in [carol(), jack()] {
        app.say(&group(), &u, "/approvals").await;
        assert!(!app.last_text(GROUP).contains("Run 5k"));
        app.say(&dm(&u), &u, "/approvals").await;
        assert!(!app.last_text(u.id).contains("Run 5k"));
    }
    app.say(&group(), &lottie(), "/approvals").await;
    assert!(
        !app.last_text(GROUP).contains("Run 5k"),
        "the partner's group list stays clean"
    );
    // nobody's prompt but the partner's (Lottie's private chat)
    app.say(&group(), &carol(), "@hearth_bot anything pending?")
        .await;
    app.say(&group(), &lottie(), "@hearth_bot anything pending?")
        .await;
    app.say(&dm(&carol()), &carol(), "what is pending for me?")
        .await;
    for req in app.model.requests() {
        assert!(
            !format!("{req:?}").contains("Run 5k"),
            "leaked into a prompt"
        );
    }
    app.say(&dm(&lottie()), &lottie(), "what do I need to check?")
        .await;
    let sys = system_text(app.model.requests().last().unwrap());
    assert!(
        sys.contains("REQUESTS YOU CAN ACTION:\n1. Bob: verify personal chore “Run 5k”"),
        "{sys}"
    );
    // another member's tap on the private button is refused
    let wf = app.store.workflow(1).await.unwrap().unwrap();
    app.press(&dm(&carol()), &carol(), 1, &format!("wf:a:{}", wf.id))
        .await;
    assert_eq!(
        callbacks(&app).last().unwrap(),
        "This request isn't yours to decide."
    );
    // the partner approves in her private chat; the owner is told in his
    let calls = app.model.calls();
    app.say(&dm(&lottie()), &lottie(), "approve").await;
    assert_eq!(app.model.calls(), calls);
    assert!(app
        .last_text(lottie().id)
        .contains("✅ Approved: Bob — verify personal chore “Run 5k”"));
    assert!(app
        .last_text(bob().id)
        .contains("Bob: Lottie approved your request to verify personal chore “Run 5k”."));
    let chore = app.store.open_chores(bob().id).await.unwrap().remove(0);
    assert_eq!(chore.status, "completed");
}

#[tokio::test]
async fn rules_duplicates_claims_cancel_and_recurrence() {
    let app = TestApp::new().await;
    household(&app).await;
    let ids = add_chores(&app, &["Dishes", "Bins"]).await;
    app.say(&group(), &jack(), "/addchore Water plants every 3 days")
        .await;
    let plants = app.store.open_chores(GROUP).await.unwrap()[2].clone();
    // due at the default time of day (20:00) in the group's zone (UTC by default)
    assert_eq!(
        plants.next_due,
        Some(t0() + Duration::days(3) + Duration::hours(10))
    );

    // a second pending deletion of the same chore is refused
    app.say(&group(), &jack(), "/deletechore bins").await;
    app.say(&group(), &bob(), "/deletechore bins").await;
    assert_eq!(
        app.last_text(GROUP),
        "A request to delete 'Bins' is already pending."
    );
    // a chore pending verification can't be claimed again
    app.say(&group(), &jack(), "/done dishes").await;
    app.say(&group(), &bob(), "/done dishes").await;
    assert_eq!(
        app.last_text(GROUP),
        "'Dishes' is already waiting for verification."
    );
    assert_eq!(pending_of(&app, GROUP).await.len(), 2);

    // the requester can't approve their own request, but may cancel it (one message for the
    // button, the command and text: issue 8 item 14)
    app.say(&group(), &jack(), "/approve 1").await;
    assert_eq!(
        app.last_text(GROUP),
        "You can't decide your own request (you can /cancel it)."
    );
    app.say(&group(), &jack(), "/cancel dishes").await;
    assert_eq!(
        app.last_text(GROUP),
        "🚫 Cancelled your request to verify “Dishes”."
    );
    assert_eq!(
        chore_status(&app, ids[0]).await,
        "todo",
        "cancel restores the chore"
    );

    // rejecting a verification puts the chore back to to-do
    app.say(&group(), &bob(), "/done dishes").await;
    app.say(&group(), &lottie(), "/reject dishes not clean yet")
        .await;
    assert!(app
        .last_text(GROUP)
        .contains("❌ Rejected: Bob — verify “Dishes” (not clean yet)"));
    assert_eq!(chore_status(&app, ids[0]).await, "todo");

    // approving a recurring chore's verification schedules its next occurrence
    app.clock.advance(Duration::days(1));
    app.say(&group(), &bob(), "/done plants").await;
    app.say(&group(), &lottie(), "/approve plants").await;
    let after = app.store.chore(plants.id).await.unwrap().unwrap();
    assert_eq!(after.status, "todo");
    assert_eq!(
        after.next_due,
        Some(t0() + Duration::days(6) + Duration::hours(10))
    );
    assert_eq!(after.completed_by, Some(bob().id));

    // approving a deletion cancels the chore's other pending request and archives it
    app.say(&group(), &jack(), "/done bins").await;
    let before = pending_of(&app, GROUP).await;
    assert_eq!(before.len(), 2, "deletion + verification of Bins");
    app.say(&group(), &lottie(), "/approve 1").await;
    assert_eq!(chore_status(&app, ids[1]).await, "archived");
    assert!(pending_of(&app, GROUP).await.is_empty());
    let sibling = app.store.workflow(before[1].id).await.unwrap().unwrap();
    assert_eq!(sibling.status, "cancelled");
    let audit = app.store.workflow_audit(sibling.id).await.unwrap();
    assert_eq!((audit[0].via.as_str(), audit[0].actor_id), ("system", None));
    assert_eq!(app.model.calls(), 0);
}

#[tokio::test]
async fn agent_tools_resolve_through_the_same_service() {
    // with confirmations off (on by default: see workflows_hardening) the call runs at once
    let app = TestApp::with(
        |c| c.agent.confirm_destructive = false,
        vec![
            Script::Tools(vec![(
                "batch_respond_to_workflows".into(),
                r#"{"decision":"approve","numbers":[1,2]}"#.into(),
            )]),
            Script::Text("Approved both of Jack's requests.".into()),
        ],
    )
    .await;
    household(&app).await;
    let ids = add_chores(&app, &["Dishes", "Bins"]).await;
    app.say(&group(), &jack(), "/deletechore dishes").await;
    app.say(&group(), &jack(), "/deletechore bins").await;
    // prose the parser does not fully understand goes to the agent
    app.say(
        &group(),
        &lottie(),
        "@hearth_bot sure, Jack's two deletion requests look fine to me, go ahead with them",
    )
    .await;
    assert_eq!(app.model.calls(), 2);
    let sys = system_text(&app.model.requests()[0]);
    assert!(sys.contains("REQUESTS YOU CAN ACTION:\n1. Jack: delete “Dishes” [id 1]\n2. Jack: delete “Bins” [id 2]"), "{sys}");
    for id in ids {
        assert_eq!(chore_status(&app, id).await, "archived");
    }
    let audit = app.store.workflow_audit(2).await.unwrap();
    assert_eq!(audit[0].via, "agent");
    assert_eq!(app.last_text(GROUP), "Approved both of Jack's requests.");
    // the tool result went back to the model
    let tool_msg = app.model.requests()[1]
        .iter()
        .find_map(|m| match m {
            ChatMessage::Tool { content, .. } => Some(content.clone()),
            _ => None,
        })
        .unwrap();
    assert!(tool_msg.contains("\"ok\":true"), "{tool_msg}");

    // Jack's own prompt lists his requests as his, never as actionable
    app.model.push(Script::Tools(vec![(
        "respond_to_workflow".into(),
        r#"{"decision":"approve","id":3}"#.into(),
    )]));
    app.say(&group(), &lottie(), "/addchore Hoover").await;
    app.say(&group(), &lottie(), "/deletechore hoover").await;
    app.say(
        &group(),
        &lottie(),
        "@hearth_bot please approve my own hoover thing, thanks!",
    )
    .await;
    let last_tool = app
        .model
        .requests()
        .last()
        .unwrap()
        .iter()
        .find_map(|m| match m {
            ChatMessage::Tool { content, .. } => Some(content.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        last_tool.contains("You can't decide your own request"),
        "{last_tool}"
    );
    assert_eq!(
        app.store.workflow(3).await.unwrap().unwrap().status,
        "pending"
    );
}

#[tokio::test]
async fn context_only_and_agent_routing_are_untouched_by_non_approvals() {
    let app = TestApp::new().await;
    household(&app).await;
    add_chores(&app, &["Dishes"]).await;
    let before = app.texts(GROUP).len();
    // nothing actionable: chatter that merely contains approval words is context only
    for t in [
        "I approve of the new sofa",
        "yes, but later",
        "ok",
        "no",
        "approved by the council, finally",
    ] {
        app.say(&group(), &lottie(), t).await;
    }
    assert_eq!(app.texts(GROUP).len(), before, "the bot butted into chat");
    // with something actionable, hedged replies still change nothing
    app.say(&group(), &jack(), "/deletechore dishes").await;
    let before = app.texts(GROUP).len();
    for t in [
        "yes, but later",
        "approve 1 tomorrow",
        "should I approve 1?",
        "maybe approve",
    ] {
        app.say(&group(), &lottie(), t).await;
    }
    assert_eq!(app.texts(GROUP).len(), before);
    assert_eq!(pending_of(&app, GROUP).await.len(), 1);
    assert_eq!(app.model.calls(), 0);
    // addressed and not understood: the agent answers
    app.say(
        &group(),
        &lottie(),
        "@hearth_bot what do you think, should I approve it?",
    )
    .await;
    assert_eq!(app.model.calls(), 1);
}

#[tokio::test]
async fn dm_viewer_acts_on_group_requests_and_the_group_hears_of_it() {
    let app = TestApp::new().await;
    household(&app).await;
    let ids = add_chores(&app, &["Dishes"]).await;
    app.say(&group(), &jack(), "/done dishes").await;
    app.say(&dm(&lottie()), &lottie(), "/approvals").await;
    assert!(app
        .last_text(lottie().id)
        .contains("1. Jack says “Dishes” is done"));
    app.say(&dm(&lottie()), &lottie(), "yes").await;
    assert!(app
        .last_text(lottie().id)
        .contains("1. ✅ Approved: Jack — verify “Dishes”"));
    assert_eq!(chore_status(&app, ids[0]).await, "completed");
    // resolved elsewhere: the requester is told in the group
    assert!(app
        .last_text(GROUP)
        .contains("Jack: Lottie approved your request to verify “Dishes”."));
    assert_eq!(app.model.calls(), 0);
    // a viewer outside the group sees nothing of it
    let v = Viewer {
        user_id: dave().id,
        chat_id: dave().id,
        private: true,
    };
    assert!(workflow::actionable(&app.hearth.svc, v)
        .await
        .unwrap()
        .is_empty());
}

/// A typical household turn (3 members, two requests, a short conversation) stays under the
/// 1,500 prompt-token budget, tool schemas included.
#[tokio::test]
async fn household_turn_fits_the_token_budget() {
    let app = TestApp::new().await;
    household(&app).await;
    add_chores(&app, &["Water plants", "Take out bins", "Dishes"]).await;
    app.say(&group(), &jack(), "/deletechore water plants")
        .await;
    app.say(&group(), &bob(), "/done dishes").await;
    for (u, t) in [
        (jack(), "who's cooking tonight?"),
        (bob(), "me, pasta again"),
        (lottie(), "the bins go out tomorrow morning btw"),
    ] {
        app.say(&group(), &u, t).await;
    }
    app.say(
        &group(),
        &lottie(),
        "@hearth_bot what's left for me to check?",
    )
    .await;
    assert_eq!(app.model.calls(), 1);
    let req = &app.model.requests()[0];
    let tools = &app.model.tools_seen()[0];
    let bpe = tiktoken_rs::o200k_base().unwrap();
    let mut text: String = req.iter().map(|m| format!("{m:?}\n")).collect();
    for t in tools {
        text.push_str(&format!("{} {} {}\n", t.name, t.description, t.parameters));
    }
    let n = bpe.encode_with_special_tokens(&text).len();
    if std::env::var_os("SHOW_PROMPT").is_some() {
        eprintln!("{}", system_text(req));
    }
    eprintln!("household turn: {n} prompt tokens (tools included)");
    assert!(n < 1500, "prompt + tools = {n} tokens");
    assert!(tools.iter().any(|t| t.name == "batch_respond_to_workflows"));
}

#[tokio::test]
async fn mixed_decisions_in_one_message_and_commands() {
    let app = TestApp::new().await;
    household(&app).await;
    let ids = add_chores(&app, &["Dishes", "Laundry", "Hoover"]).await;
    for t in ["dishes", "laundry", "hoover"] {
        app.say(&group(), &bob(), &format!("/done {t}")).await;
    }
    app.say(
        &group(),
        &lottie(),
        "approve 1, reject 2 because it's still wet",
    )
    .await;
    let r = app.last_text(GROUP);
    assert!(r.contains("1. ✅ Approved: Bob — verify “Dishes”"), "{r}");
    assert!(
        r.contains("2. ❌ Rejected: Bob — verify “Laundry” (it's still wet)"),
        "{r}"
    );
    assert_eq!(chore_status(&app, ids[0]).await, "completed");
    assert_eq!(chore_status(&app, ids[1]).await, "todo");
    // a conflict or a bad command target changes nothing
    app.say(&group(), &lottie(), "/approve 5").await;
    assert_eq!(
        app.last_text(GROUP),
        "There is no request 5: you only have request 1."
    );
    app.say(&group(), &lottie(), "/reject").await;
    assert!(app
        .last_text(GROUP)
        .contains("❌ Rejected: Bob — verify “Hoover”"));
    assert_eq!(chore_status(&app, ids[2]).await, "todo");
    let audit = app.store.workflow_audit(3).await.unwrap();
    assert_eq!(audit[0].via, "command");
    assert_eq!(app.model.calls(), 0);
}

#[tokio::test]
async fn only_current_members_decide_and_user_text_is_escaped() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &jack(), "/addchore Fix <b>sink</b> & taps")
        .await;
    assert_eq!(
        app.messenger.sent().last().unwrap().html,
        "Added chore #1 “Fix &lt;b&gt;sink&lt;/b&gt; &amp; taps”."
    );
    app.say(&group(), &jack(), "/done sink").await;
    let wf = pending_of(&app, GROUP).await.remove(0);
    let notice = app
        .messenger
        .sent()
        .into_iter()
        .rfind(|o| !o.buttons.is_empty())
        .unwrap();
    assert!(
        notice
            .html
            .contains("“Fix &lt;b&gt;sink&lt;/b&gt; &amp; taps”"),
        "{}",
        notice.html
    );
    // Bob leaves the group: his tap no longer counts
    app.send_event(InboundEvent::MemberLeft {
        chat: group(),
        user: bob(),
    })
    .await;
    let v = Viewer {
        user_id: bob().id,
        chat_id: bob().id,
        private: true,
    };
    // from his private chat he neither sees nor decides it
    let o = workflow::decide(
        &app.hearth.svc,
        Decide {
            workflow_id: wf.id,
            actor_id: bob().id,
            decision: Decision::Approve,
            reason: None,
            via: Via::Text,
            origin_chat: bob().id,
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(o, Outcome::Denied(_, workflow::Denial::NotEligible)),
        "{o:?}"
    );
    assert!(workflow::actionable(&app.hearth.svc, v)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_yes_to_the_agents_question_is_not_an_approval() {
    let app = TestApp::with(
        |_| {},
        vec![
            Script::Text("Shall I put pizza on the shopping list?".into()),
            Script::Text("Added pizza.".into()),
        ],
    )
    .await;
    household(&app).await;
    let ids = add_chores(&app, &["Dishes"]).await;
    app.say(&group(), &jack(), "/done dishes").await;
    let wf = pending_of(&app, GROUP).await.remove(0);

    // Lottie talks to the agent; its question becomes the bot's latest message
    app.say(
        &group(),
        &lottie(),
        "@hearth_bot should we get pizza tonight?",
    )
    .await;
    let question = app.store.last_bot_message_id(GROUP).await.unwrap().unwrap();
    assert_eq!(app.model.calls(), 1);
    // "yes" answers the agent, not Jack's request
    app.reply_to_bot(&group(), &lottie(), question, "yes").await;
    assert_eq!(app.model.calls(), 2, "the agent got the 'yes'");
    assert_eq!(
        pending_of(&app, GROUP).await.len(),
        1,
        "the request is still pending"
    );
    assert_eq!(chore_status(&app, ids[0]).await, "pending_verification");
    // the same word as a reply to the request message decides it, with no model call
    app.reply_to_bot(&group(), &lottie(), wf.notice_message_id.unwrap(), "yes")
        .await;
    assert!(pending_of(&app, GROUP).await.is_empty());
    assert_eq!(app.model.calls(), 2);
    // explicit forms never need that context
    app.say(&group(), &jack(), "/done dishes").await;
    app.say(
        &group(),
        &lottie(),
        "@hearth_bot should we get pizza again?",
    )
    .await;
    app.say(&group(), &lottie(), "@hearth_bot approve 1").await;
    assert!(
        pending_of(&app, GROUP).await.is_empty(),
        "'approve 1' is explicit"
    );
}
