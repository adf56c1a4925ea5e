//! Issue 8, chores and routines UX: the claimer hears who verifies (15), chore tools return the
//! chore in words (16), `/stats` (17), the swap limit's reset time (18), one greeting per new
//! member (19), command-safe routine names and their migration (25), prompts rendered once by
//! minijinja (26), and the leaderboard chart drawn on the blocking pool.
use std::time::Duration;

use chrono::{DateTime, Utc};
use hearth::{
    agent::llm::ChatMessage,
    clock::Clock,
    routines::{self, CreateRequest, RoutineEngine},
    testkit::Script,
    types::InboundEvent,
};
use serde_json::{json, Value};

use crate::support::{
    fake_telegram::{Chat, FakeBotApi, User},
    tg::{completion, mount_default, TgApp},
    *,
};

/// Alice (admin), Bob and Carol write in the group.
async fn household(app: &TestApp) {
    for u in [alice(), bob(), carol()] {
        app.say(&group(), &u, "hi").await;
    }
}

/// The tool results (JSON) the model was given, in order.
fn tool_results(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    for req in app.model.requests() {
        for m in req {
            if let ChatMessage::Tool { content, .. } = m {
                let v: Value = serde_json::from_str(&content).unwrap_or(Value::String(content));
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn the_claimer_is_told_who_may_verify_in_the_group_and_in_private() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Dishes daily @bob")
        .await;
    app.say(&group(), &alice(), "/addchore Bins daily @carol")
        .await;
    app.say(&group(), &bob(), "/done dishes").await;
    let sent = app.messenger.sent();
    let (request, told) = (&sent[sent.len() - 2], &sent[sent.len() - 1]);
    assert!(
        !request.buttons.is_empty(),
        "the request with its buttons comes first"
    );
    assert_eq!(
        told.html,
        "Sent “Dishes” to the group for verification — anyone but you can approve."
    );
    // the text path says the same
    app.say(&group(), &carol(), "done bins").await;
    assert_eq!(
        app.last_text(GROUP),
        "Sent “Bins” to the group for verification — anyone but you can approve."
    );
    // a personal chore names the partner
    app.say(
        &dm(&alice()),
        &alice(),
        "/addpersonal Stretch daily partner @bob",
    )
    .await;
    app.say(&dm(&alice()), &alice(), "/done stretch").await;
    assert_eq!(
        app.last_text(alice().id),
        "Sent “Stretch” to Bob, your accountability partner — only Bob can verify it."
    );
    assert_eq!(app.model.calls(), 0);
}

#[tokio::test]
async fn chore_tools_return_due_time_recurrence_assignee_and_rotation_in_words() {
    let app = TestApp::with(
        |_| {},
        vec![
            Script::Tools(vec![(
                "chore_create".into(),
                r#"{"title":"Bins every monday at 19:00 @bob @carol"}"#.into(),
            )]),
            Script::Text("Added.".into()),
            Script::Tools(vec![("chore_claim".into(), r#"{"chore":"bins"}"#.into())]),
            Script::Text("Sent.".into()),
            Script::Tools(vec![(
                "chore_update".into(),
                r#"{"chore":"bins","action":"edit","value":"points 3"}"#.into(),
            )]),
            Script::Text("Updated.".into()),
        ],
    )
    .await;
    household(&app).await;
    app.say(&group(), &alice(), "/timezone Europe/London").await;
    app.say(
        &group(),
        &alice(),
        "@hearth_bot bins every monday at 7pm, bob and carol take turns",
    )
    .await;
    let created = tool_results(&app).pop().expect("a tool result");
    assert_eq!(
        created,
        json!({
            "id": 1, "title": "Bins", "status": "todo",
            "due": "Mon 23 Nov 19:00 (Europe/London)",
            "repeats": "Mon at 19:00",
            "assignee": "Bob",
            "rotation": "rotating: Bob, Carol",
            "points": 1,
        })
    );
    // a claim by someone else says who may verify
    app.say(&group(), &carol(), "@hearth_bot I did the bins")
        .await;
    let claimed = tool_results(&app).pop().unwrap();
    assert_eq!(claimed["who_may_verify"], "anyone in the group but you");
    app.say(&group(), &bob(), "/reject bins not yet").await;
    app.say(&group(), &alice(), "@hearth_bot bins are worth 3 points")
        .await;
    let updated = tool_results(&app).pop().unwrap();
    assert_eq!(
        (&updated["points"], &updated["due"], &updated["assignee"]),
        (
            &json!(3),
            &json!("Mon 23 Nov 19:00 (Europe/London)"),
            &json!("Bob")
        )
    );
}

#[tokio::test]
async fn stats_rate_is_over_completions_and_overdue_chores_are_named() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Bins daily at 09:00 @bob")
        .await;
    app.say(&group(), &alice(), "/addchore Shed by today 11:00")
        .await;
    // 2026-11-21 10:00 now; Bins is due tomorrow 09:00, the shed at 11:00 today
    app.clock.advance(chrono::Duration::hours(2));
    app.say(&group(), &alice(), "/stats").await;
    assert_eq!(
        app.last_text(GROUP),
        "Chore stats, this week\nNo chores done this week yet.\n⚠️ Overdue now: #2 Shed (unassigned)"
    );
    app.clock.advance(chrono::Duration::hours(22)); // Bins overdue too
    app.say(&group(), &alice(), "/stats").await;
    let s = app.last_text(GROUP);
    assert!(s.contains("Bob: nothing done, 1 overdue"), "{s}");
    assert!(!s.contains("100% on time") && !s.contains("0 done"), "{s}");
    assert!(s.contains("No chores done this week yet."), "{s}");
    assert!(
        s.ends_with("⚠️ Overdue now: #1 Bins (Bob), #2 Shed (unassigned)"),
        "{s}"
    );
    // one late completion: the rate is over completions only
    app.say(&group(), &bob(), "/done bins").await;
    app.say(&group(), &carol(), "/approve bins").await;
    app.say(&group(), &alice(), "/stats").await;
    let s = app.last_text(GROUP);
    assert!(s.contains("Bob: 1 done, 0% on time, 1 pts"), "{s}");
    assert!(!s.contains("No chores done"), "{s}");
    assert!(s.ends_with("⚠️ Overdue now: #2 Shed (unassigned)"), "{s}");
    // nothing done and nothing overdue: one line
    app.clock.advance(chrono::Duration::days(7));
    app.say(&group(), &alice(), "/editchore shed due in 2 days")
        .await;
    app.say(&group(), &alice(), "/editchore bins due in 2 days")
        .await;
    app.say(&group(), &alice(), "/stats").await;
    assert_eq!(app.last_text(GROUP), "No chores done this week yet.");
}

#[tokio::test]
async fn the_swap_limit_refusal_says_when_it_resets_in_the_group_zone() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &alice(), "/timezone America/New_York")
        .await;
    for t in ["Dishes", "Bins", "Laundry"] {
        app.say(&group(), &alice(), &format!("/addchore {t} daily @bob"))
            .await;
    }
    app.say(&group(), &carol(), "/done dishes").await;
    app.say(&group(), &alice(), "/approve dishes").await;
    app.say(&group(), &carol(), "/done bins").await;
    app.say(&group(), &carol(), "/done laundry").await;
    assert_eq!(
        app.last_text(GROUP),
        "You've already done 2 of other people's chores this week (the limit); 'Laundry' stays with its assignee. The limit resets Mon 23 Nov 00:00 (America/New_York); your 1 claim waiting for verification counts until decided."
    );
    // and it does: Monday 00:00 New York is 05:00 UTC
    app.clock
        .set("2026-11-23T05:00:00Z".parse::<DateTime<Utc>>().unwrap());
    app.say(&group(), &carol(), "/done laundry").await;
    assert!(app.last_text(GROUP).starts_with("Sent “Laundry”"));
}

/// A `chat_member` update: `user` went from `old` to `new` status in `chat`.
fn chat_member_update(chat: &Chat, user: &User, old: &str, new: &str) -> Value {
    let date = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "chat_member": {
            "chat": chat.to_json(),
            "from": user.to_json(),
            "date": date,
            "old_chat_member": {"status": old, "user": user.to_json()},
            "new_chat_member": {"status": new, "user": user.to_json()},
        }
    })
}

const TG_GROUP: i64 = -100_300;

#[tokio::test]
async fn a_new_member_is_greeted_once_over_the_bot_api() {
    let app = TgApp::start().await;
    mount_default(&app.llm, completion("ok")).await;
    let chat = Chat::group(TG_GROUP, "Home");
    let alice = User::new(1, "Alice").with_username("alice");
    let dave = User::new(4, "<Dave & co>").with_username("dave");
    app.fake.push_update(FakeBotApi::text_message(
        0,
        chat.clone(),
        alice.clone(),
        1010,
        "hi",
    ));
    app.wait_done(TG_GROUP, 1010).await;
    // Telegram sends both a service message and a chat_member update for one join
    app.fake.push_update(FakeBotApi::member_joined(
        0,
        chat.clone(),
        dave.clone(),
        1011,
        vec![dave.clone()],
    ));
    app.fake
        .push_update(chat_member_update(&chat, &dave, "left", "member"));
    // the same chat_member update redelivered, then Dave leaves and comes back at once
    app.fake
        .push_update(chat_member_update(&chat, &dave, "left", "member"));
    app.fake.push_update(FakeBotApi::member_left(
        0,
        chat.clone(),
        dave.clone(),
        1012,
        dave.clone(),
    ));
    app.fake
        .push_update(chat_member_update(&chat, &dave, "left", "member"));
    // Erin joins by a chat_member update alone
    let erin = User::new(5, "Erin");
    app.fake
        .push_update(chat_member_update(&chat, &erin, "left", "member"));
    // a marker message: the chat's events are processed in order
    app.fake.push_update(FakeBotApi::text_message(
        0,
        chat.clone(),
        alice.clone(),
        1013,
        "ok",
    ));
    app.wait_done(TG_GROUP, 1013).await;
    let welcome = |m: &Value| {
        m["chat"]["id"].as_i64() == Some(TG_GROUP)
            && m["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("👋 Welcome"))
    };
    let greetings: Vec<Value> = app
        .fake
        .bot_messages()
        .into_iter()
        .filter(welcome)
        .collect();
    assert_eq!(greetings.len(), 2, "{greetings:?}");
    assert!(greetings[1]["text"]
        .as_str()
        .is_some_and(|t| t.starts_with("👋 Welcome, Erin!")));
    assert_eq!(
        greetings[0]["text"],
        "👋 Welcome, <Dave & co>! I keep this group's chores and approvals. /chores shows what needs doing; /done <chore> when you've done one. Mention me for anything else."
    );
    // sent as HTML with the name escaped
    let raw = app
        .sent_texts(TG_GROUP)
        .into_iter()
        .find(|t| t.starts_with("👋 Welcome"))
        .unwrap();
    assert!(raw.contains("Welcome, &lt;Dave &amp; co&gt;!"), "{raw}");
    // Dave writes: nobody is greeted again
    app.fake.push_update(FakeBotApi::text_message(
        0,
        chat.clone(),
        dave.clone(),
        1014,
        "hello",
    ));
    app.wait_done(TG_GROUP, 1014).await;
    let sends = app.sent_texts(TG_GROUP);
    assert_eq!(
        sends.iter().filter(|t| t.starts_with("👋 Welcome")).count(),
        2,
        "{sends:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn greeting_rule_again_after_30_days_never_for_bots_and_off_by_config() {
    let join = |u: hearth::types::UserRef| InboundEvent::MemberJoined {
        chat: group(),
        user: u,
    };
    let welcomes = |app: &TestApp| {
        app.texts(GROUP)
            .iter()
            .filter(|t| t.starts_with("👋 Welcome"))
            .count()
    };
    let app = TestApp::new().await;
    app.send_event(join(dave())).await;
    app.send_event(join(dave())).await;
    assert_eq!(welcomes(&app), 1);
    app.clock.advance(chrono::Duration::days(29));
    app.send_event(join(dave())).await;
    assert_eq!(welcomes(&app), 1, "a rejoin within 30 days is not greeted");
    app.clock.advance(chrono::Duration::days(2));
    app.send_event(join(dave())).await;
    assert_eq!(
        welcomes(&app),
        2,
        "31 days after the last greeting: greeted again"
    );
    let mut bot = user(77, "Helper");
    bot.is_bot = true;
    app.send_event(join(bot)).await;
    assert_eq!(welcomes(&app), 2);

    let off = TestApp::with(|c| c.group.greet_new_members = false, vec![]).await;
    off.send_event(join(dave())).await;
    assert_eq!(welcomes(&off), 0);
    assert!(
        off.store.member(GROUP, dave().id).await.unwrap().is_some(),
        "the member is registered either way"
    );
}

fn routine_req(name: Option<&str>, prompt: &str, trigger: &str) -> CreateRequest {
    CreateRequest {
        chat_id: GROUP,
        chat_zone: chrono_tz::UTC,
        owner_id: alice().id,
        name: name.map(str::to_string),
        prompt: prompt.into(),
        triggers: vec![trigger.into()],
        quiet: false,
        max_ticks: None,
        max_runs_per_day: None,
    }
}

/// The user message of the model's last request (a routine's rendered prompt is in it).
fn last_user_text(app: &TestApp) -> String {
    app.model
        .requests()
        .last()
        .and_then(|req| {
            req.iter().rev().find_map(|m| match m {
                ChatMessage::User(s) => Some(s.clone()),
                _ => None,
            })
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn routine_names_are_telegram_commands_and_slash_name_runs_one() {
    let app = TestApp::new().await;
    household(&app).await;
    let svc = &app.hearth.svc;
    let err = routines::create(
        svc,
        routine_req(Some("morning-briefing"), "hello", "every 1h"),
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "name: 'morning-briefing' can't be a Telegram command: use 1-32 characters of a-z, 0-9 and _, e.g. 'morning_briefing'"
    );
    // names made from the prompt are commands too
    let c = routines::create(svc, routine_req(None, "Check the washing", "every 1h"))
        .await
        .unwrap();
    assert_eq!(c.routine.name, "check_the_washing");
    let c = routines::create(svc, routine_req(None, "Check the washing!", "every 1h"))
        .await
        .unwrap();
    assert_eq!(c.routine.name, "check_the_washing_2");
    // installing by the old hyphenated name installs the command-safe one
    app.say(&group(), &alice(), "/routine_install morning-briefing")
        .await;
    let created = app.last_text(GROUP);
    assert!(
        created.starts_with("Routine morning_briefing created")
            && created.contains("run it now with /morning_briefing."),
        "{created}"
    );
    let e = RoutineEngine::new(app.hearth.svc.clone(), app.hearth.agent.clone());
    app.say(&group(), &bob(), "/morning_briefing").await;
    assert_eq!(
        app.last_text(GROUP),
        "not allowed: only the owner of 'morning_briefing' or a group admin can change it"
    );
    app.say(&group(), &alice(), "/morning_briefing").await;
    assert_eq!(app.last_text(GROUP), "Running morning_briefing now.");
    e.sweep(app.clock.now()).await.unwrap();
    e.settle().await;
    assert!(
        last_user_text(&app).contains("Morning briefing for Sat 2026-11-21"),
        "{}",
        last_user_text(&app)
    );
    // the old name still finds it in the routine commands; unknown commands are still unknown
    app.say(&group(), &alice(), "/routine_pause morning-briefing")
        .await;
    assert!(app
        .last_text(GROUP)
        .starts_with("Routine morning_briefing paused"));
    app.say(&group(), &alice(), "/evening_briefing").await;
    assert_eq!(
        app.last_text(GROUP),
        "I don't know /evening_briefing. Try /help."
    );
}

#[tokio::test]
async fn routine_state_and_events_are_inserted_once_never_expanded_again() {
    let app = TestApp::new().await;
    household(&app).await;
    let svc = &app.hearth.svc;
    // written in the first syntax: still works
    routines::create(
        svc,
        routine_req(
            Some("bins"),
            "Bins: {state} | event: {{ event }} | {date} | {other} | run {tickCount}",
            "every 1h",
        ),
    )
    .await
    .unwrap();
    let admin = routines::Actor {
        user_id: alice().id,
        admin: true,
    };
    routines::set_state(
        svc,
        GROUP,
        "bins",
        admin,
        &json!({"note": "{event} {{ date }} {% for x in range(3) %}x{% endfor %} {tickCount}"}),
    )
    .await
    .unwrap();
    let e = RoutineEngine::new(app.hearth.svc.clone(), app.hearth.agent.clone());
    app.clock.advance(chrono::Duration::hours(1));
    e.sweep(app.clock.now()).await.unwrap();
    e.settle().await;
    let text = last_user_text(&app);
    assert!(
        text.contains(
            r#"Bins: {"note":"{event} {{ date }} {% for x in range(3) %}x{% endfor %} {tickCount}"} | event:  | Sat 2026-11-21 | {other} | run 1"#
        ),
        "{text}"
    );
    // a template error is named at creation, nothing is created
    let err = routines::create(svc, routine_req(Some("typo"), "Hi {{ dat }}", "every 1h"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("prompt: 'dat' is not a placeholder"),
        "{err}"
    );
    assert!(app
        .store
        .routine_by_name(GROUP, "typo")
        .await
        .unwrap()
        .is_none());
    // a reminder's words are literal even when they look like a template
    app.say(
        &group(),
        &alice(),
        "/routine_install oneoff-reminder in 1h pay {{ rent }} {% now %}",
    )
    .await;
    assert!(
        app.last_text(GROUP).starts_with("Routine "),
        "{}",
        app.last_text(GROUP)
    );
    app.clock.advance(chrono::Duration::hours(1));
    e.sweep(app.clock.now()).await.unwrap();
    e.settle().await;
    // "bins" fires in the same sweep: the two runs execute concurrently, in either order
    let asked: Vec<String> = app
        .model
        .requests()
        .iter()
        .rev()
        .take(2)
        .filter_map(|req| {
            req.iter().rev().find_map(|m| match m {
                ChatMessage::User(s) => Some(s.clone()),
                _ => None,
            })
        })
        .collect();
    assert!(
        asked
            .iter()
            .any(|t| t.contains("Remind the chat, in one line: pay {{ rent }} {% now %}")),
        "{asked:?}"
    );
}

#[tokio::test]
async fn the_migration_makes_stored_names_commands_and_keeps_old_prompts_rendering() {
    use migration::{
        sea_orm::{ConnectionTrait, Database},
        Alias, Expr, MigratorTrait, Query,
    };
    let dir = tempfile::tempdir().unwrap();
    // a SQLite file, or a fresh Postgres database when the suite runs against Postgres
    let url = match std::env::var("HEARTH_TEST_DATABASE_URL") {
        Ok(admin) if admin.starts_with("postgres") => {
            let name = format!("hearth_mig_{}", std::process::id());
            hearth::store::Store::create_postgres_database(&admin, &name)
                .await
                .unwrap();
            let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
            format!("{base}/{name}")
        }
        _ => format!("sqlite://{}?mode=rwc", dir.path().join("h.db").display()),
    };
    let db = Database::connect(&url).await.unwrap();
    let all = migration::Migrator::migrations();
    let before = all
        .iter()
        .position(|m| m.name() == "m20261130_000008_routine_names")
        .expect("the migration is registered");
    migration::Migrator::up(&db, Some(before as u32))
        .await
        .unwrap();
    // routines as the previous version stored them
    for (id, chat, name, prompt) in [
        (1, GROUP, "morning_briefing", "Hi {date}"),
        (
            2,
            GROUP,
            "morning-briefing",
            "Briefing for {date}: {{ not a tag }}",
        ),
        (3, GROUP, "Morning Briefing", "{state}"),
        (4, -2002, "morning-briefing", "{event}"),
        (5, GROUP, "日本", "x"),
    ] {
        let ins = Query::insert()
            .into_table(Alias::new("routines"))
            .columns(
                [
                    "id",
                    "chat_id",
                    "name",
                    "owner_id",
                    "prompt",
                    "zone",
                    "quiet",
                    "paused",
                    "api_args",
                    "state",
                    "tick_count",
                    "runs_today",
                    "runs_day",
                    "status",
                    "created_at",
                ]
                .map(Alias::new),
            )
            .values_panic([
                Expr::val(id as i64),
                Expr::val(chat),
                Expr::val(name),
                Expr::val(1i64),
                Expr::val(prompt),
                Expr::val("UTC"),
                Expr::val(false),
                Expr::val(false),
                Expr::val(false),
                Expr::val("{}"),
                Expr::val(0i32),
                Expr::val(0i32),
                Expr::val(""),
                Expr::val("active"),
                Expr::val(t0()),
            ])
            .to_owned();
        db.execute(&ins).await.unwrap();
    }
    migration::Migrator::up(&db, None).await.unwrap();
    db.close().await.unwrap();

    let store = hearth::store::Store::connect(&url, 1, Duration::from_secs(5))
        .await
        .unwrap();
    let mut names = Vec::new();
    for chat in [GROUP, -2002] {
        for r in store.routines_of_chat(chat).await.unwrap() {
            names.push((r.id, r.name.clone(), r.prompt.clone()));
        }
    }
    names.sort();
    assert_eq!(
        names,
        vec![
            (1, "morning_briefing".into(), "Hi {{ date }}".into()),
            (
                2,
                "morning_briefing_2".into(),
                "Briefing for {{ date }}: {{ \"{\" }}{ not a tag }}".into()
            ),
            (3, "morning_briefing_3".into(), "{{ state }}".into()),
            (4, "morning_briefing".into(), "{{ event }}".into()),
            (5, "routine".into(), "x".into()),
        ]
    );
    // the old prompt renders exactly as the replaces did
    let vars = routines::model::PromptVars {
        date: "Mon 2026-11-23".into(),
        ..Default::default()
    };
    assert_eq!(
        routines::model::render_prompt(&names[1].2, &vars).unwrap(),
        "Briefing for Mon 2026-11-23: {{ not a tag }}"
    );
    // and /morning_briefing_2 is a command in that group
    let app = TestApp::on_store(store, hearth::clock::ManualClock::new(t0()), |_| {}, vec![]).await;
    app.say(&group(), &alice(), "hi").await;
    app.say(&group(), &alice(), "/morning_briefing_2").await;
    assert_eq!(app.last_text(GROUP), "Running morning_briefing_2 now.");
}

#[tokio::test(flavor = "current_thread")]
async fn the_leaderboard_chart_is_drawn_off_the_runtime_and_sent_as_a_photo() {
    // a current-thread runtime: spawn_blocking still draws (on the blocking pool) and the
    // photo goes out with the leaderboard as its caption
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Dishes daily @bob")
        .await;
    app.say(&group(), &bob(), "/done dishes").await;
    app.say(&group(), &carol(), "/approve dishes").await;
    app.say(&group(), &alice(), "/leaderboard").await;
    let photo = app.messenger.calls().into_iter().find_map(|c| match c {
        hearth::testkit::Recorded::Photo {
            chat_id,
            caption,
            bytes,
        } => Some((chat_id, caption, bytes)),
        _ => None,
    });
    let (chat_id, caption, bytes) = photo.expect("a photo");
    assert_eq!(chat_id, GROUP);
    assert!(caption.contains("Bob: 1 pts"), "{caption}");
    assert!(bytes > 1000, "a real PNG: {bytes} bytes");
}
