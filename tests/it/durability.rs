//! Durability (issue 8, items 4, 5, 6, 20) in-process: leases and their lapse on the manual
//! clock, attempts counted only for started turns, the give-up notice, replies decided once,
//! and fair per-member queueing with a flood budget. The process boundary (SIGKILL, two real
//! processes, crash loops) is in `binary.rs`.
use chrono::Duration;
use hearth::{
    clock::ManualClock,
    store::Store,
    testkit::Script,
    types::{ChatRef, Content, InboundEvent, InboundMessage, UserRef},
};

use crate::support::{alice, bob, carol, dm, group, t0, test_store, TestApp, GROUP};

fn msg(
    chat: ChatRef,
    from: UserRef,
    id: i64,
    text: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> InboundEvent {
    InboundEvent::Message(InboundMessage {
        update_id: None,
        chat,
        from,
        message_id: id,
        content: Content::Text { text: text.into() },
        reply_to: None,
        mentions_bot: text.contains("@hearth_bot"),
        date: at,
    })
}

/// Persist `ev` as if a process `owner` accepted it at `at` and (for each attempt) started a
/// turn on it, then died. Returns the inbound id.
async fn left_by_dead_process(
    store: &Store,
    ev: &InboundEvent,
    at: chrono::DateTime<chrono::Utc>,
    attempts: usize,
) -> i64 {
    let InboundEvent::Message(m) = ev else {
        unreachable!()
    };
    let lease = at + Duration::seconds(30);
    let id = store
        .insert_inbound_leased(
            m.chat.id,
            m.message_id,
            None,
            &serde_json::to_string(ev).unwrap(),
            at,
            Some(("dead-process", lease)),
        )
        .await
        .unwrap()
        .unwrap();
    for _ in 0..attempts {
        assert!(store
            .start_turn(id, "dead-process", at, lease)
            .await
            .unwrap());
    }
    id
}

async fn status(store: &Store, chat: i64, message_id: i64) -> (String, i32) {
    let r = store
        .inbound_by_message(chat, message_id)
        .await
        .unwrap()
        .unwrap();
    (r.status, r.attempts)
}

#[tokio::test]
async fn recovery_takes_a_message_only_after_its_lease_lapsed() {
    let store = test_store().await;
    let clock = ManualClock::new(t0());
    let a = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    let b = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    assert_ne!(
        a.hearth.owner(),
        b.hearth.owner(),
        "each process has its own id"
    );

    // A holds a message (lease 30 s by default) while its turn runs
    let ev = msg(group(), alice(), 700, "@hearth_bot question", t0());
    let InboundEvent::Message(m) = &ev else {
        unreachable!()
    };
    store
        .insert_inbound_leased(
            GROUP,
            700,
            None,
            &serde_json::to_string(&ev).unwrap(),
            t0(),
            Some((a.hearth.owner(), t0() + Duration::seconds(30))),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.message_id, 700);
    // ... and the chat (cluster.lease, 15 s by default), as its accept path does
    assert!(a.hearth.svc.locks.try_hold(GROUP).await.unwrap());
    assert_eq!(b.hearth.recover().await.unwrap(), 0, "A's lease is live");

    // A's heartbeat renews both (one statement per kind, whatever it holds)
    clock.advance(Duration::seconds(10));
    assert_eq!(a.hearth.heartbeat().await.unwrap(), 2);
    clock.advance(Duration::seconds(14)); // 24 s after accept, chat lease renewed to 25 s
    assert_eq!(
        b.hearth.recover().await.unwrap(),
        0,
        "renewed lease still live"
    );

    // A dies: no more heartbeats; the chat lease lapses and B takes the chat and the message
    // (whoever holds the chat works all its messages), once
    clock.advance(Duration::seconds(2));
    assert_eq!(b.hearth.recover().await.unwrap(), 1);
    b.hearth.idle().await;
    assert_eq!(
        a.hearth.recover().await.unwrap(),
        0,
        "B holds or finished it"
    );
    a.hearth.idle().await;
    assert_eq!(b.texts(GROUP), vec!["ok".to_string()]);
    assert!(a.texts(GROUP).is_empty());
    assert_eq!(b.model.calls() + a.model.calls(), 1);
    assert_eq!(status(&store, GROUP, 700).await, ("done".into(), 1));
}

#[tokio::test]
async fn two_processes_on_one_database_answer_every_message_once() {
    let store = test_store().await;
    let clock = ManualClock::new(t0());
    let a = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    let b = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    // 10 DMs arrive at A; B starts (recovery) while A answers, and Telegram redelivers all of
    // them to B as well
    let users: Vec<UserRef> = (0..10)
        .map(|i| crate::support::user(100 + i, &format!("U{i}")))
        .collect();
    for (i, u) in users.iter().enumerate() {
        let ev = msg(dm(u), u.clone(), 10 + i as i64, "hello?", t0());
        a.hearth.accept(ev).await.unwrap();
    }
    assert_eq!(b.hearth.recover().await.unwrap(), 0);
    for (i, u) in users.iter().enumerate() {
        let ev = msg(dm(u), u.clone(), 10 + i as i64, "hello?", t0());
        assert_eq!(
            b.hearth.accept(ev).await.unwrap(),
            hearth::core::Accepted::Duplicate
        );
    }
    a.hearth.idle().await;
    b.hearth.idle().await;
    for u in &users {
        assert_eq!(
            a.texts(u.id).len() + b.texts(u.id).len(),
            1,
            "answered once"
        );
    }
    assert_eq!(a.model.calls() + b.model.calls(), 10);
    // a later recovery pass (periodic) finds nothing
    clock.advance(Duration::minutes(2));
    assert_eq!(b.hearth.recover().await.unwrap(), 0);
    assert_eq!(a.hearth.recover().await.unwrap(), 0);
}

#[tokio::test]
async fn only_started_turns_count_and_a_given_up_message_is_told_once() {
    let store = test_store().await;
    let clock = ManualClock::new(t0());
    let tz = |c: &mut hearth::config::Config| c.group.timezone = chrono_tz::Europe::Berlin;
    {
        // the group exists (zone Europe/Berlin)
        let setup = TestApp::on_store(store.clone(), clock.clone(), tz, vec![]).await;
        setup.say(&group(), &alice(), "morning all").await;
    }
    let at = t0() + Duration::minutes(42); // 10:42 UTC = 11:42 in Berlin
    clock.set(at);
    // a poison message: three turns started on it, each time the process died
    let poison = msg(group(), alice(), 801, "@hearth_bot poison", at);
    left_by_dead_process(&store, &poison, at, 3).await;
    // 5 queued messages nobody ever started, through the same three crashes
    for i in 0..5 {
        let ev = msg(group(), bob(), 810 + i, "@hearth_bot queued", at);
        left_by_dead_process(&store, &ev, at, 0).await;
    }
    // one started twice: it still gets its third try
    let twice = msg(group(), carol(), 820, "@hearth_bot twice", at);
    left_by_dead_process(&store, &twice, at, 2).await;

    clock.advance(Duration::seconds(31)); // the dead process's leases lapse
    let app = TestApp::on_store(store.clone(), clock.clone(), tz, vec![]).await;
    assert_eq!(app.hearth.recover().await.unwrap(), 6);
    app.hearth.idle().await;
    assert_eq!(status(&store, GROUP, 801).await, ("failed".into(), 3));
    for i in 0..5 {
        assert_eq!(
            status(&store, GROUP, 810 + i).await,
            ("done".into(), 1),
            "a queued message's first attempt is its first turn"
        );
    }
    assert_eq!(status(&store, GROUP, 820).await, ("done".into(), 3));
    let texts = app.texts(GROUP);
    let notice = "Sorry, I couldn't answer your message from 11:42 — please ask again.";
    assert_eq!(
        texts.iter().filter(|t| *t == notice).count(),
        1,
        "{texts:?}"
    );
    assert_eq!(texts.len(), 7, "{texts:?}");
    let sent = app.messenger.sent();
    let n = sent
        .iter()
        .find(|o| o.html.contains("couldn't answer"))
        .unwrap();
    assert_eq!(
        n.reply_to,
        Some(801),
        "the notice replies to the lost message"
    );

    // told once: later passes say nothing more
    clock.advance(Duration::minutes(1));
    assert_eq!(app.hearth.recover().await.unwrap(), 0);
    app.hearth.idle().await;
    assert_eq!(app.texts(GROUP).len(), 7);
}

#[tokio::test]
async fn a_message_too_old_to_answer_is_given_up_with_one_notice() {
    let store = test_store().await;
    let clock = ManualClock::new(t0());
    let old = msg(group(), alice(), 900, "@hearth_bot old one", t0());
    left_by_dead_process(&store, &old, t0(), 0).await;
    let old2 = msg(
        group(),
        bob(),
        901,
        "@hearth_bot old two",
        t0() + Duration::minutes(1),
    );
    left_by_dead_process(&store, &old2, t0() + Duration::minutes(1), 1).await;
    clock.advance(Duration::minutes(40));
    let app = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    assert_eq!(app.hearth.recover().await.unwrap(), 0);
    app.hearth.idle().await;
    assert_eq!(status(&store, GROUP, 900).await.0, "abandoned");
    assert_eq!(status(&store, GROUP, 901).await.0, "abandoned");
    assert_eq!(
        app.texts(GROUP),
        vec!["Sorry, I couldn't answer your messages from 10:00 and 10:01 — please ask again."]
    );
    assert_eq!(app.model.calls(), 0);
}

#[tokio::test]
async fn a_reply_is_stored_before_sending_and_confirmed_after() {
    let app = TestApp::with(|_| {}, vec![Script::Text("Dinner is at 7.".into())]).await;
    let id = app.say(&group(), &alice(), "@hearth_bot dinner?").await;
    let row = app
        .store
        .inbound_by_message(GROUP, id)
        .await
        .unwrap()
        .unwrap();
    let reply = app.store.reply_for(row.id).await.unwrap().expect("stored");
    assert_eq!(reply.html, "Dinner is at 7.");
    assert_eq!(reply.reply_to, Some(id));
    assert!(reply.sent_at.is_some(), "confirmed after sending");
    assert!(reply.tg_message_ids.is_some());
}

#[tokio::test]
async fn a_stored_unsent_reply_is_resent_without_calling_the_model() {
    let store = test_store().await;
    let clock = ManualClock::new(t0());
    let ev = msg(group(), alice(), 950, "@hearth_bot costly question", t0());
    let id = left_by_dead_process(&store, &ev, t0(), 1).await;
    // the dead process decided the reply and was killed while sending it
    store
        .save_reply(id, GROUP, "<b>The</b> answer", "[]", Some(950), t0())
        .await
        .unwrap();
    clock.advance(Duration::seconds(31));
    let app = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    assert_eq!(app.hearth.recover().await.unwrap(), 1);
    app.hearth.idle().await;
    assert_eq!(app.model.calls(), 0, "no second model call");
    assert_eq!(app.texts(GROUP), vec!["The answer".to_string()]);
    assert_eq!(app.messenger.sent()[0].reply_to, Some(950));
    assert_eq!(status(&store, GROUP, 950).await.0, "done");
    assert!(store
        .reply_for(id)
        .await
        .unwrap()
        .unwrap()
        .sent_at
        .is_some());
}

#[tokio::test]
async fn a_confirmed_reply_is_never_sent_again() {
    let store = test_store().await;
    let clock = ManualClock::new(t0());
    let ev = msg(group(), alice(), 960, "@hearth_bot question", t0());
    let id = left_by_dead_process(&store, &ev, t0(), 1).await;
    // sent and confirmed; the process died before marking the message done
    store
        .save_reply(id, GROUP, "The answer", "[]", Some(960), t0())
        .await
        .unwrap();
    store.confirm_reply(id, &[5001], t0()).await.unwrap();
    clock.advance(Duration::seconds(31));
    let app = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    assert_eq!(app.hearth.recover().await.unwrap(), 1);
    app.hearth.idle().await;
    assert_eq!(app.model.calls(), 0);
    assert!(app.texts(GROUP).is_empty(), "{:?}", app.texts(GROUP));
    assert_eq!(status(&store, GROUP, 960).await.0, "done");
}

#[tokio::test]
async fn a_flooding_member_gets_one_slow_down_and_the_others_their_turn() {
    let app = TestApp::with(
        |c| {
            c.group.flood_budget = 3;
        },
        vec![],
    )
    .await;
    app.say(&group(), &bob(), "hi all").await; // Bob and the group exist
    app.model.set_fallback(Script::Text("answer".into()));
    // Alice sends 30 mentions within a minute, then Bob one, then Carol a DM; the group's turn
    // lock is held meanwhile (as by a long turn) so they all wait in the queue
    let busy = app.hearth.svc.locks.lock(GROUP).await;
    for i in 0..30 {
        let ev = msg(
            group(),
            alice(),
            1000 + i,
            &format!("@hearth_bot q{i}"),
            t0(),
        );
        app.hearth.accept(ev).await.unwrap();
    }
    app.hearth
        .accept(msg(group(), bob(), 2000, "@hearth_bot my turn?", t0()))
        .await
        .unwrap();
    app.hearth
        .accept(msg(dm(&carol()), carol(), 3000, "hello", t0()))
        .await
        .unwrap();
    drop(busy);
    app.hearth.idle().await;

    assert_eq!(
        app.model.calls(),
        3 + 1 + 1,
        "the excess never reaches the model"
    );
    let sent: Vec<_> = app
        .messenger
        .sent()
        .into_iter()
        .filter(|o| o.chat_id == GROUP)
        .collect();
    let slow: Vec<_> = sent
        .iter()
        .filter(|o| o.html.contains("slow down"))
        .collect();
    assert_eq!(slow.len(), 1, "one polite slow down");
    assert_eq!(
        slow[0].reply_to,
        Some(1003),
        "on the first message past the budget"
    );
    let answered: Vec<i64> = sent
        .iter()
        .filter(|o| o.html == "answer")
        .filter_map(|o| o.reply_to)
        .collect();
    assert_eq!(answered.len(), 4);
    let bob_at = answered
        .iter()
        .position(|id| *id == 2000)
        .expect("Bob answered");
    assert!(
        bob_at <= 2,
        "Bob answered in his turn, not after Alice's queue: {answered:?}"
    );
    let alices: Vec<i64> = answered.iter().copied().filter(|id| *id < 2000).collect();
    assert_eq!(
        alices,
        vec![1000, 1001, 1002],
        "one member's messages stay in order"
    );
    assert_eq!(
        app.texts(carol().id),
        vec!["answer".to_string()],
        "other chats unaffected"
    );
    // the excess is kept as context: all 30 of Alice's messages are in the log
    let window = app
        .store
        .window(GROUP, t0() - Duration::hours(1), 100, None)
        .await
        .unwrap();
    let from_alice = window
        .iter()
        .filter(|m| m.sender_user_id == Some(1))
        .count();
    assert_eq!(from_alice, 30);

    // a minute later her budget is back
    app.clock.advance(Duration::seconds(61));
    app.say(&group(), &alice(), "@hearth_bot and now?").await;
    assert_eq!(app.last_text(GROUP), "answer");
}

/// Issue 12: a process whose leases lapsed mid-turn (a stalled database, a paused VM) while
/// another process took the chat over and answered: its own reply is not sent a second time —
/// one reply per message, whoever decided first.
#[tokio::test]
async fn a_turn_whose_lease_lapsed_does_not_send_a_second_reply() {
    let store = test_store().await;
    let clock = ManualClock::new(t0());
    let ev = msg(group(), alice(), 970, "@hearth_bot question", t0());
    let id = left_by_dead_process(&store, &ev, t0(), 1).await;
    // the other process answered it (decided and sent)
    assert!(store
        .save_reply(id, GROUP, "first answer", "[]", Some(970), t0())
        .await
        .unwrap());
    let app = TestApp::on_store(store.clone(), clock.clone(), |_| {}, vec![]).await;
    // the late turn's reply goes through the same one-reply-per-message door
    let late = hearth::types::Outbound {
        chat_id: GROUP,
        html: "second answer".into(),
        buttons: vec![],
        reply_to: Some(970),
    };
    let sent = app.hearth.svc.outbox.send_for(id, late).await.unwrap();
    assert!(sent.is_empty(), "not sent twice");
    assert!(app.texts(GROUP).is_empty(), "{:?}", app.texts(GROUP));
    assert!(!store
        .save_reply(id, GROUP, "third", "[]", Some(970), t0())
        .await
        .unwrap());
    assert_eq!(
        store.reply_for(id).await.unwrap().unwrap().html,
        "first answer"
    );
}
