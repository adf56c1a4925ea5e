//! The chores issue end to end: rotation, claims and verification, swaps, personal privacy,
//! reminders across a restart, member lifecycle, and the natural-language path.
use chrono::Duration;
use hearth::{
    chores::{self, reminders},
    store::ChoreRow,
    testkit::{Recorded, Script},
    types::InboundEvent,
};

use crate::support::*;

/// Alice (admin), Bob and Carol write in the group.
async fn household(app: &TestApp) {
    for u in [alice(), bob(), carol()] {
        app.say(&group(), &u, "hi").await;
    }
}

async fn chore(app: &TestApp, id: i64) -> ChoreRow {
    app.store.chore(id).await.unwrap().unwrap()
}

/// `who` claims `title`, `verifier` approves it.
async fn do_and_verify(app: &TestApp, who: &UserRef, verifier: &UserRef, title: &str) {
    app.say(&group(), who, &format!("/done {title}")).await;
    app.say(&group(), verifier, &format!("/approve {title}"))
        .await;
}

use hearth::types::UserRef;

#[tokio::test]
async fn round_robin_moves_on_each_approved_completion_and_least_completed_balances() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(
        &group(),
        &alice(),
        "/addchore Dishes daily at 19:00 @alice @bob @carol",
    )
    .await;
    assert!(
        app.last_text(GROUP).contains(
            "Added chore #1 “Dishes” (daily at 19:00, due Sat 21 Nov 19:00, Alice (rotating))"
        ),
        "{}",
        app.last_text(GROUP)
    );
    let mut assignees = vec![];
    let mut dues = vec![];
    for (who, verifier) in [(alice(), bob()), (bob(), carol()), (carol(), alice())] {
        do_and_verify(&app, &who, &verifier, "dishes").await;
        let c = chore(&app, 1).await;
        assert_eq!(c.status, "todo");
        assignees.push(c.assignee_id.unwrap());
        dues.push(c.next_due.unwrap());
        app.clock.advance(Duration::days(1));
    }
    assert_eq!(assignees, vec![bob().id, carol().id, alice().id]);
    assert_eq!(
        dues,
        vec![
            t0() + Duration::days(1) + Duration::hours(9),
            t0() + Duration::days(2) + Duration::hours(9),
            t0() + Duration::days(3) + Duration::hours(9),
        ],
        "each approval schedules the next day's 19:00"
    );

    // least-completed: everyone has 1; Alice does it twice more → the others come first
    app.say(
        &group(),
        &alice(),
        "/assign dishes @alice @bob @carol least",
    )
    .await;
    assert!(
        app.last_text(GROUP).contains("least done first"),
        "{}",
        app.last_text(GROUP)
    );
    do_and_verify(&app, &alice(), &bob(), "dishes").await;
    // counts: alice 2, bob 1, carol 1 → the first of the least after Alice: Bob
    assert_eq!(chore(&app, 1).await.assignee_id, Some(bob().id));
    do_and_verify(&app, &bob(), &alice(), "dishes").await;
    // alice 2, bob 2, carol 1 → Carol
    assert_eq!(chore(&app, 1).await.assignee_id, Some(carol().id));
    let done = app.store.chore_completions(1).await.unwrap();
    assert_eq!(done.len(), 5);
    assert!(done.iter().all(|c| !c.swap && c.on_time));
    assert_eq!(app.model.calls(), 0);
}

#[tokio::test]
async fn reject_returns_to_todo_and_the_chore_is_claimable_again() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Vacuum every 3 days @bob")
        .await;
    app.say(&group(), &bob(), "/done vacuum").await;
    assert_eq!(chore(&app, 1).await.status, "pending_verification");
    app.say(&group(), &carol(), "/reject vacuum still dusty")
        .await;
    let c = chore(&app, 1).await;
    assert_eq!((c.status.as_str(), c.assignee_id), ("todo", Some(bob().id)));
    assert!(app.store.chore_completions(1).await.unwrap().is_empty());
    let due = c.next_due;
    // claimable again, and this time approved: the next occurrence, same fixed assignee
    app.say(&group(), &bob(), "/done vacuum").await;
    app.say(&group(), &carol(), "/approve vacuum").await;
    let c = chore(&app, 1).await;
    assert_eq!((c.status.as_str(), c.assignee_id), ("todo", Some(bob().id)));
    assert_eq!(c.next_due, due.map(|d| d + Duration::days(3)));
    // a one-off chore completes for good
    app.say(&group(), &alice(), "/addchore Fix the shed").await;
    do_and_verify(&app, &bob(), &carol(), "shed").await;
    assert_eq!(chore(&app, 2).await.status, "completed");
    app.say(&group(), &bob(), "/chores").await;
    assert!(!app.last_text(GROUP).contains("shed"), "open chores only");
}

#[tokio::test]
async fn swaps_credit_the_claimer_keep_the_turn_and_are_limited_per_week() {
    let app = TestApp::new().await;
    household(&app).await;
    for t in ["Dishes", "Bins", "Laundry", "Mop"] {
        app.say(
            &group(),
            &alice(),
            &format!("/addchore {t} daily @bob @carol"),
        )
        .await;
    }
    // Carol does Bob's dishes: a swap
    do_and_verify(&app, &carol(), &alice(), "dishes").await;
    let c = chore(&app, 1).await;
    assert_eq!(c.assignee_id, Some(bob().id), "Bob keeps his turn");
    let done = app.store.chore_completions(1).await.unwrap();
    assert_eq!(
        (done[0].user_id, done[0].assignee_id, done[0].swap),
        (carol().id, Some(bob().id), true)
    );
    // a second swap, pending, counts too; the third this week is refused and changes nothing
    app.say(&group(), &carol(), "/done bins").await;
    app.say(&group(), &carol(), "/done laundry").await;
    assert_eq!(
        app.last_text(GROUP),
        "You've already done 2 of other people's chores this week (the limit); 'Laundry' stays with its assignee. The limit resets Mon 23 Nov 00:00 (UTC); your 1 claim waiting for verification counts until decided."
    );
    assert_eq!(chore(&app, 3).await.status, "todo");
    // her own chores are never swaps; next ISO week the limit resets
    app.clock.advance(Duration::days(2)); // Monday 23 Nov
    app.say(&group(), &carol(), "/done laundry").await;
    assert_eq!(chore(&app, 3).await.status, "pending_verification");
    // stats: Carol has the points for Bob's dishes
    app.say(&group(), &alice(), "/stats all").await;
    let s = app.last_text(GROUP);
    assert!(s.contains("Carol: 1 done, 100% on time, 1 pts"), "{s}");
}

#[tokio::test]
async fn personal_chores_stay_private_in_a_three_member_group() {
    let app = TestApp::with(|_| {}, vec![Script::Text("Here you go.".into())]).await;
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Dishes daily @alice")
        .await;
    app.say(
        &dm(&alice()),
        &alice(),
        "/addpersonal Therapy homework daily partner @bob",
    )
    .await;
    assert!(
        app.last_text(alice().id).contains("Bob will verify it"),
        "{}",
        app.last_text(alice().id)
    );
    // the partner must be someone else and share a group
    app.say(&dm(&alice()), &alice(), "/addpersonal Run partner @alice")
        .await;
    assert_eq!(
        app.last_text(alice().id),
        "Your accountability partner must be someone else."
    );
    app.say(&dm(&alice()), &alice(), "/done therapy").await;
    let to_bob = app
        .messenger
        .sent()
        .into_iter()
        .rfind(|o| o.chat_id == bob().id)
        .unwrap();
    assert!(to_bob.html.contains("Therapy homework") && !to_bob.buttons.is_empty());
    app.press(&dm(&bob()), &bob(), 0, &to_bob.buttons[0][0].data)
        .await;
    let done = app.store.completions(alice().id, None).await.unwrap();
    assert_eq!(
        done.len(),
        1,
        "the personal completion is recorded in Alice's chat"
    );
    do_and_verify(&app, &alice(), &bob(), "dishes").await;

    // Carol sees nothing of it: lists, stats, leaderboard, prompt
    for cmd in [
        "/chores",
        "/chores @alice",
        "/stats all",
        "/leaderboard all",
    ] {
        app.say(&group(), &carol(), cmd).await;
    }
    for call in app.messenger.calls() {
        let text = match call {
            Recorded::Send(o) if o.chat_id == GROUP => o.html,
            Recorded::Photo {
                chat_id, caption, ..
            } if chat_id == GROUP => caption,
            _ => continue,
        };
        assert!(!text.contains("Therapy"), "leaked to the group: {text}");
    }
    app.say(&group(), &carol(), "/stats all").await;
    assert!(
        app.last_text(GROUP).contains("Alice: 1 done"),
        "only the group chore counts"
    );
    app.say(&group(), &carol(), "@hearth_bot what is everyone doing?")
        .await;
    let req = app.model.requests().pop().unwrap();
    assert!(!format!("{req:?}").contains("Therapy"));
    let photo = app.messenger.calls().into_iter().any(
        |c| matches!(c, Recorded::Photo { chat_id, bytes, .. } if chat_id == GROUP && bytes > 1000),
    );
    assert!(photo, "the leaderboard comes with a chart");
}

#[tokio::test]
async fn reminders_are_sent_once_across_a_restart_and_never_for_archived_chores() {
    let store = test_store().await;
    let clock = hearth::clock::ManualClock::new(t0()); // Sat 21 Nov 10:00 UTC
    let app = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Bins daily at 11:00 @bob")
        .await;
    app.say(&group(), &alice(), "/addchore Plants daily at 11:30")
        .await;
    app.say(&group(), &alice(), "/deletechore plants").await;
    app.say(&group(), &bob(), "/approve plants").await;
    assert_eq!(chore(&app, 2).await.status, "archived");
    let before = app.messenger.sent().len();

    // Sat 10:00 UTC: Bins (11:00) is due soon; the daily summary (08:00–12:00) is due too
    let svc = &app.hearth.svc;
    let n = reminders::run(svc, t0()).await.unwrap();
    assert_eq!(n, 2, "due soon + daily summary");
    let texts: Vec<String> = app.texts(GROUP).into_iter().skip(before).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("⏰ “Bins” is due at 11:00 — Bob")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("Today's chores")),
        "{texts:?}"
    );
    assert!(
        !texts.iter().any(|t| t.contains("Plants")),
        "archived: {texts:?}"
    );
    assert_eq!(reminders::run(svc, t0()).await.unwrap(), 0, "once");

    // a restart over the same database: nothing again; then overdue once
    app.continue_ids_from(1);
    let app2 = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    let svc2 = &app2.hearth.svc;
    assert_eq!(reminders::run(svc2, t0()).await.unwrap(), 0);
    assert!(app2.messenger.sent().is_empty());
    let late = t0() + Duration::hours(2);
    assert_eq!(reminders::run(svc2, late).await.unwrap(), 1);
    assert!(app2.last_text(GROUP).contains("⚠️ “Bins” is overdue"));
    assert_eq!(
        reminders::run(&app.hearth.svc, late).await.unwrap(),
        0,
        "a second process"
    );

    // Sunday 09:30: that day's summary (the overdue occurrence is not reminded again)
    let sunday_morning = t0() + Duration::hours(24) - Duration::minutes(30);
    assert_eq!(reminders::run(svc2, sunday_morning).await.unwrap(), 1);
    let summary = app2.last_text(GROUP);
    assert!(summary.contains("Overdue\n• Bins — Bob"), "{summary}");
    // Sunday 18:00: the weekly leaderboard, once
    let sunday_evening = t0() + Duration::hours(32);
    assert_eq!(reminders::run(svc2, sunday_evening).await.unwrap(), 1);
    assert_eq!(app2.last_text(GROUP), "🏆 No chores done this week yet.");
    assert_eq!(
        reminders::run(svc2, sunday_evening + Duration::hours(1))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn dm_reminders_go_to_the_assignee() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &bob(), "/reminders dm").await;
    assert_eq!(
        app.last_text(GROUP),
        "Only a group admin can change where reminders go."
    );
    app.say(&group(), &alice(), "/reminders dm").await;
    app.say(&group(), &alice(), "/addchore Bins daily at 11:00 @bob")
        .await;
    // a personal chore reminds its owner in private, never the group
    app.say(
        &dm(&carol()),
        &carol(),
        "/addpersonal Stretch daily at 11:30",
    )
    .await;
    let group_before = app.texts(GROUP).len();
    reminders::run(&app.hearth.svc, t0()).await.unwrap();
    assert!(app
        .last_text(bob().id)
        .contains("⏰ “Bins” is due at 11:00"));
    assert_eq!(app.last_text(carol().id), "⏰ “Stretch” is due at 11:30.");
    let group_texts = app.texts(GROUP);
    assert!(group_texts[group_before..]
        .iter()
        .all(|t| !t.contains("Stretch")));
}

#[tokio::test]
async fn a_member_who_leaves_hands_on_chores_and_loses_pending_requests() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Bins weekly @bob @carol")
        .await;
    app.say(&group(), &alice(), "/addchore Hoover @bob").await;
    app.say(&group(), &bob(), "/done hoover").await;
    app.say(&dm(&alice()), &alice(), "/addpersonal Gym partner @bob")
        .await;
    app.send_event(InboundEvent::MemberLeft {
        chat: group(),
        user: bob(),
    })
    .await;
    let bins = chore(&app, 1).await;
    assert_eq!(bins.assignee_id, Some(carol().id));
    assert_eq!(chores::rotation_members(&bins), vec![carol().id]);
    let hoover = chore(&app, 2).await;
    assert_eq!((hoover.status.as_str(), hoover.assignee_id), ("todo", None));
    let notice = app.last_text(GROUP);
    assert!(notice.contains("Bob left the group."), "{notice}");
    assert!(notice.contains("“Bins” now goes to Carol"), "{notice}");
    assert!(
        notice.contains("request about “Hoover” was cancelled"),
        "{notice}"
    );
    // Alice's partner is gone: self-verified, and she is told
    assert!(app.last_text(alice().id).contains("now self-verified"));
    app.say(&dm(&alice()), &alice(), "/done gym").await;
    assert_eq!(app.last_text(alice().id), "✅ “Gym” done.");
}

#[tokio::test]
async fn done_dishes_is_routed_without_the_model_only_when_clear() {
    let app = TestApp::with(
        |c| c.group.reply_mode = hearth::config::ReplyMode::Always,
        vec![Script::Text("[silent]".into())],
    )
    .await;
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Wash dishes").await;
    app.say(&group(), &alice(), "/addchore Dry dishes").await;
    app.say(&group(), &alice(), "/addchore Water plants").await;
    let calls = app.model.calls();
    app.say(&group(), &bob(), "done watr plants").await;
    assert_eq!(chore(&app, 3).await.status, "pending_verification");
    assert_eq!(app.model.calls(), calls, "no model call");
    // a question is not a claim
    app.say(&group(), &bob(), "did wash dishes?").await;
    assert_eq!(app.model.calls(), calls + 1);
    assert_eq!(chore(&app, 1).await.status, "todo");
    // ambiguous: the agent gets it, nothing is claimed
    app.say(&group(), &bob(), "done dishes").await;
    assert_eq!(app.model.calls(), calls + 2);
    assert_eq!(chore(&app, 1).await.status, "todo");
}

#[tokio::test]
async fn bad_input_is_named_and_changes_nothing() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Bins every 0 days")
        .await;
    assert!(
        app.last_text(GROUP)
            .starts_with("I can't read the schedule: recurrence:"),
        "{}",
        app.last_text(GROUP)
    );
    app.say(&group(), &alice(), "/addchore Bins weekly @zed")
        .await;
    assert_eq!(
        app.last_text(GROUP),
        "'zed' isn't a member of this group I know. They need to write here first."
    );
    assert!(app.store.open_chores(GROUP).await.unwrap().is_empty());
    app.say(&group(), &alice(), "/addchore Fix shed").await;
    app.say(&group(), &alice(), "/skip shed").await;
    assert_eq!(
        app.last_text(GROUP),
        "'Fix shed' doesn't repeat, so there is no occurrence to skip."
    );
    app.say(&group(), &alice(), "/editchore shed points 500")
        .await;
    assert_eq!(
        app.last_text(GROUP),
        "Points must be a whole number from 0 to 100."
    );
    app.say(&group(), &alice(), "/editchore shed").await;
    assert!(app
        .last_text(GROUP)
        .starts_with("Say which chore and what to change"));
    app.say(&group(), &alice(), "/stats fortnight").await;
    assert_eq!(
        app.last_text(GROUP),
        "'fortnight' isn't a period: say week, month or all."
    );
    app.say(&group(), &alice(), "/editchore shed repeat every blue moon")
        .await;
    assert!(
        app.last_text(GROUP).contains("could not understand"),
        "{}",
        app.last_text(GROUP)
    );
    let c = chore(&app, 1).await;
    assert_eq!((c.points, c.recurrence.as_deref()), (1, None));
    // valid edits and a skip
    app.say(&group(), &alice(), "/editchore shed repeat every 2 weeks")
        .await;
    app.say(&group(), &alice(), "/editchore shed points 3")
        .await;
    let before = chore(&app, 1).await.next_due.unwrap();
    app.say(&group(), &alice(), "/skip shed").await;
    let c = chore(&app, 1).await;
    assert_eq!(c.points, 3);
    assert_eq!(c.next_due, Some(before + Duration::days(14)));
}

#[tokio::test]
async fn natural_language_creates_the_same_chore_as_the_command() {
    let app = TestApp::with(
        |_| {},
        vec![
            Script::Tools(vec![(
                "chore_create".into(),
                r#"{"title":"Bins every monday at 7pm @alice"}"#.into(),
            )]),
            Script::Text("Added bins for Alice.".into()),
        ],
    )
    .await;
    household(&app).await;
    app.say(
        &group(),
        &bob(),
        "@hearth_bot create chore bins every monday at 7pm for Alice",
    )
    .await;
    app.say(
        &group(),
        &bob(),
        "/addchore Bins every monday at 7pm @alice",
    )
    .await;
    let cs = app.store.open_chores(GROUP).await.unwrap();
    assert_eq!(cs.len(), 2);
    let (a, b) = (&cs[0], &cs[1]);
    assert_eq!(
        (
            &a.title,
            &a.recurrence,
            a.next_due,
            a.assignee_id,
            &a.rotation
        ),
        (
            &b.title,
            &b.recurrence,
            b.next_due,
            b.assignee_id,
            &b.rotation
        )
    );
    assert_eq!(a.assignee_id, Some(alice().id));
    assert_eq!(
        a.next_due,
        Some(t0() + Duration::days(2) + Duration::hours(9))
    );
}

#[tokio::test]
async fn changing_the_time_zone_keeps_local_due_times() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Bins every monday at 19:00")
        .await;
    // UTC by default: Mon 23 Nov 19:00 UTC
    assert_eq!(
        chore(&app, 1).await.next_due,
        Some(t0() + Duration::days(2) + Duration::hours(9))
    );
    app.say(&group(), &alice(), "/timezone America/New_York")
        .await;
    // 19:00 in New York (EST, UTC-5)
    assert_eq!(
        chore(&app, 1).await.next_due,
        Some(t0() + Duration::days(2) + Duration::hours(14))
    );
    app.say(&group(), &alice(), "/chores").await;
    assert!(app.last_text(GROUP).contains("due Mon 23 Nov 19:00"));
}
