//! Foundation: context, privacy, dedupe, recovery, commands, model faults (in-process).
use hearth::{agent::llm::ChatMessage, testkit::Script};

use crate::support::*;

fn system_text(req: &[ChatMessage]) -> String {
    match &req[0] {
        ChatMessage::System(s) => s.clone(),
        other => panic!("first message is not system: {other:?}"),
    }
}

fn user_text(req: &[ChatMessage]) -> String {
    req.iter()
        .find_map(|m| match m {
            ChatMessage::User(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn group_context_labels_members_and_bot_and_keeps_dm_private() {
    let app = TestApp::with(
        |_| {},
        vec![
            Script::Text("Alice said the bins go out tonight.".into()),
            Script::Text("Noted privately.".into()),
            Script::Text("Sure.".into()),
        ],
    )
    .await;
    let g = group();
    app.say(&g, &alice(), "the bins go out tonight").await;
    assert_eq!(
        app.model.calls(),
        0,
        "a message not addressed to the bot costs no model call"
    );
    app.say(&g, &bob(), "@hearth_bot what did Alice say?").await;
    assert_eq!(app.model.calls(), 1);
    let req = &app.model.requests()[0];
    let sys = system_text(req);
    assert!(sys.contains("Alice: the bins go out tonight"), "{sys}");
    assert!(user_text(req).starts_with("Bob: @hearth_bot what did Alice say?"));
    assert_eq!(app.last_text(GROUP), "Alice said the bins go out tonight.");

    // Alice's DM is answered in the DM and never reaches the group prompt.
    app.say(
        &dm(&alice()),
        &alice(),
        "secret: I'm planning Bob's birthday",
    )
    .await;
    assert_eq!(app.last_text(alice().id), "Noted privately.");
    app.say(&g, &carol(), "@hearth_bot anything new?").await;
    let req = app.model.requests().last().unwrap().clone();
    let all: String = req.iter().map(|m| format!("{m:?}")).collect();
    assert!(
        !all.contains("birthday"),
        "DM text leaked into a group prompt"
    );
    // the bot's own reply is in the group window, labelled as the bot
    assert!(
        system_text(&req).contains("Hearth (bot): Alice said the bins go out tonight."),
        "{}",
        system_text(&req)
    );
}

#[tokio::test]
async fn first_member_and_configured_ids_are_admins() {
    let app = TestApp::with(|c| c.access.admin_ids = vec![3], vec![]).await;
    let g = group();
    app.say(&g, &bob(), "hi all").await;
    app.say(&g, &alice(), "hello").await;
    app.say(&g, &carol(), "hey").await;
    let m = app.store.members(GROUP).await.unwrap();
    let role = |id: i64| m.iter().find(|x| x.user_id == id).unwrap().role.clone();
    assert_eq!(role(2), "admin", "first member of the group");
    assert_eq!(role(1), "member");
    assert_eq!(role(3), "admin", "listed in access.admin_ids");
}

#[tokio::test]
async fn chats_and_users_outside_allowlists_are_ignored() {
    let app = TestApp::with(
        |c| {
            c.access.allowed_chats = vec![GROUP];
            c.access.allowed_users = vec![1, 2];
        },
        vec![],
    )
    .await;
    app.say(&group(), &carol(), "@hearth_bot hi").await; // user not allowed
    let other = hearth::types::ChatRef {
        id: -42,
        kind: hearth::types::ChatKind::Group,
        title: "Other".into(),
    };
    app.say(&other, &alice(), "@hearth_bot hi").await; // chat not allowed
    assert_eq!(app.model.calls(), 0);
    assert!(app.messenger.sent().is_empty());
    assert_eq!(
        app.store.message_count(-42).await.unwrap(),
        0,
        "nothing stored for an ignored chat"
    );
    app.say(&group(), &alice(), "@hearth_bot hi").await;
    assert_eq!(app.model.calls(), 1);
}

#[tokio::test]
async fn always_mode_considers_every_message_and_may_stay_silent() {
    let app = TestApp::with(
        |c| c.group.reply_mode = hearth::config::ReplyMode::Always,
        vec![
            Script::Text("[silent]".into()),
            Script::Text("Dinner is at 7.".into()),
        ],
    )
    .await;
    let g = group();
    app.say(&g, &alice(), "nice weather").await;
    assert_eq!(app.model.calls(), 1);
    assert!(
        app.messenger.sent().is_empty(),
        "the silent token never reaches the chat"
    );
    let sys = system_text(&app.model.requests()[0]);
    assert!(
        sys.contains("[silent]"),
        "the model is told it may stay silent"
    );
    app.say(&g, &bob(), "when is dinner?").await;
    assert_eq!(app.last_text(GROUP), "Dinner is at 7.");
}

#[tokio::test]
async fn recovery_only_reruns_the_last_15_minutes() {
    use hearth::types::{Content, InboundEvent, InboundMessage};
    let app = TestApp::with(|_| {}, vec![Script::Text("recovered".into())]).await;
    let mk = |id: i64| {
        InboundEvent::Message(InboundMessage {
            update_id: None,
            chat: group(),
            from: alice(),
            message_id: id,
            content: Content::Text {
                text: format!("@hearth_bot question {id}"),
            },
            reply_to: None,
            mentions_bot: true,
            date: t0(),
        })
    };
    let now = t0();
    let old = serde_json::to_string(&mk(500)).unwrap();
    let fresh = serde_json::to_string(&mk(501)).unwrap();
    app.store
        .insert_inbound(GROUP, 500, None, &old, now - chrono::Duration::minutes(40))
        .await
        .unwrap();
    app.store
        .insert_inbound(GROUP, 501, None, &fresh, now - chrono::Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(app.hearth.recover().await.unwrap(), 1);
    app.hearth.idle().await;
    // the old one is given up and the chat told once (issue 8, item 5)
    assert_eq!(
        app.texts(GROUP),
        vec![
            "Sorry, I couldn't answer your message from 10:00 — please ask again.".to_string(),
            "recovered".to_string()
        ]
    );
    assert_eq!(
        app.store
            .inbound_by_message(GROUP, 500)
            .await
            .unwrap()
            .unwrap()
            .status,
        "abandoned"
    );
    assert_eq!(
        app.store
            .inbound_by_message(GROUP, 501)
            .await
            .unwrap()
            .unwrap()
            .status,
        "done"
    );
    // a second start finds nothing to do
    assert_eq!(app.hearth.recover().await.unwrap(), 0);
}

#[tokio::test]
async fn context_window_respects_count_and_age() {
    let app = TestApp::with(|_| {}, vec![]).await;
    let g = group();
    app.say(&g, &alice(), "ancient message").await;
    app.clock.advance(chrono::Duration::minutes(90));
    for i in 0..25 {
        app.say(&g, &bob(), &format!("line {i}")).await;
    }
    app.say(&g, &carol(), "@hearth_bot summarise").await;
    let sys = system_text(&app.model.requests()[0]);
    assert!(!sys.contains("ancient message"), "older than 60 minutes");
    assert!(!sys.contains("line 4\n"), "only the last 20 messages");
    assert!(sys.contains("line 5") && sys.contains("line 24"));
    assert!(
        !sys.contains("summarise"),
        "the current message is not repeated in the window"
    );
}

#[tokio::test]
async fn commands_work_without_a_model_and_free_text_explains_setup() {
    use hearth::{app, clock::SharedClock, services::BotIdentity, testkit::RecordingMessenger};
    let cfg = test_config();
    let store = test_store().await;
    let clock: SharedClock = std::sync::Arc::new(hearth::clock::ManualClock::new(t0()));
    let messenger = RecordingMessenger::default();
    let agent = app::agent(&cfg, None, std::path::Path::new("prompts")).unwrap();
    let bot = BotIdentity {
        id: 999,
        username: "hearth_bot".into(),
        name: "Hearth".into(),
    };
    let h = app::core(
        std::sync::Arc::new(cfg),
        store,
        clock,
        std::sync::Arc::new(messenger.clone()),
        bot,
        agent,
    );
    let send = |text: &str, id: i64| {
        hearth::types::InboundEvent::Message(hearth::types::InboundMessage {
            update_id: None,
            chat: dm(&alice()),
            from: alice(),
            message_id: id,
            content: hearth::types::Content::Text { text: text.into() },
            reply_to: None,
            mentions_bot: false,
            date: t0(),
        })
    };
    h.accept(send("/help", 1)).await.unwrap();
    h.accept(send("hello there", 2)).await.unwrap();
    h.accept(send("/timezone Mars/Olympus", 3)).await.unwrap();
    h.accept(send("/timezone Europe/London", 4)).await.unwrap();
    h.accept(send("/nosuchcommand", 5)).await.unwrap();
    h.idle().await;
    let texts = messenger.texts_to(alice().id);
    assert!(texts[0].contains("/members"), "{}", texts[0]);
    assert!(
        texts[1].contains("No model is configured") && texts[1].contains("11434"),
        "{}",
        texts[1]
    );
    assert!(texts[2].contains("not an IANA time zone"), "{}", texts[2]);
    assert!(texts[3].contains("Europe/London"));
    assert!(texts[4].contains("I don't know /nosuchcommand"));
}

#[tokio::test]
async fn wal_checkpoint_runs_off_the_hot_path() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let store = hearth::store::Store::connect(&url, 2, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    for i in 0..200 {
        store
            .append_message(hearth::store::NewMessage {
                chat_id: 1,
                sender_user_id: Some(1),
                sender_name: "Alice",
                from_bot: false,
                text: &"x".repeat(500),
                tg_message_id: Some(i),
                reply_to: None,
                created_at: t0(),
            })
            .await
            .unwrap();
    }
    let wal = dir.path().join("h.db-wal");
    let before = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(before > 0, "writes go to the WAL");
    store.checkpoint().await.unwrap();
    assert_eq!(store.message_count(1).await.unwrap(), 200);
    assert!(
        std::fs::metadata(&db).unwrap().len() > 100_000,
        "checkpoint copied the WAL into the database file"
    );
}

#[tokio::test]
async fn a_panicking_handler_does_not_stop_the_chat() {
    let app = TestApp::with(
        |_| {},
        vec![Script::Panic, Script::Text("Still here.".into())],
    )
    .await;
    let first = app
        .say(&group(), &alice(), "@hearth_bot break please")
        .await;
    assert_eq!(
        app.last_text(GROUP),
        "Sorry, something went wrong on my side with that message."
    );
    assert_eq!(
        app.store
            .inbound_by_message(GROUP, first)
            .await
            .unwrap()
            .unwrap()
            .status,
        "failed",
        "not retried in a loop"
    );
    app.say(&group(), &bob(), "@hearth_bot are you ok?").await;
    assert_eq!(
        app.last_text(GROUP),
        "Still here.",
        "the chat's worker survived"
    );
}

/// Arbitrary text — unicode, huge, command-shaped, approval-shaped — through the whole pipeline
/// in a group and a DM: every message is processed and none trips an internal error.
#[test]
fn arbitrary_input_never_breaks_the_pipeline() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(TestApp::new());
    rt.block_on(async {
        app.say(&group(), &alice(), "/addchore Dishes daily").await;
        app.say(&group(), &bob(), "/done dishes").await;
    });
    let prefixes = prop::sample::select(vec![
        "",
        "/",
        "/done ",
        "/approve ",
        "/reject ",
        "/every ",
        "/cron ",
        "/at ",
        "/addchore ",
        "/timezone ",
        "/editchore ",
        "/routine_install ",
        "approve ",
        "yes ",
        "done ",
        "@hearth_bot ",
        "reject all, ",
    ]);
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 96,
        ..Default::default()
    });
    runner
        .run(
            &(prefixes, ".{0,300}", any::<bool>()),
            |(p, body, private)| {
                let text = format!("{p}{body}");
                let chat = if private { dm(&carol()) } else { group() };
                rt.block_on(app.say(&chat, &carol(), &text));
                let broke = app.texts(chat.id).iter().any(|t| {
                    t.contains("went wrong on my side")
                        || t.contains("didn't work because of a problem")
                });
                prop_assert!(!broke, "input {text:?} broke the pipeline");
                Ok(())
            },
        )
        .unwrap();
}
