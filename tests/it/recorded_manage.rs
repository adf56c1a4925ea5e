//! Issue 10, managing recorded routines through the fake Bot API over HTTP: each chat's own
//! command menu (`setMyCommands` with a chat scope, sent only when it changed, kept over a
//! restart), visibility and rights (item 6), and `/routines`, `/routine_show`, `/routine_edit`,
//! `/routine_delete`, TOML export → import (item 7). Recorded routines are imported as TOML in
//! the contract's shape, not made through the save flow.
use std::{sync::Arc, time::Duration};

use chrono::{TimeZone, Utc};
use hearth::{
    app,
    clock::SystemClock,
    routines::{
        doc::{doc_of, export_doc, parse_doc, save_doc, SaveError},
        menu::{self, Synced},
        Actor,
    },
    services::Services,
    store::{DefinitionFields, NewRoutine, NewTurn, Publication, RunSource, RunStatus, SeedRun},
    telegram,
};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::support::{
    fake_telegram::{Chat, FakeBotApi, User},
    test_config,
    tg::{completion, mount_default, TgApp},
};

const G: i64 = -100_510;
const OTHER: i64 = -100_520;

/// The contract's recorded routine: three typed parameters, two tools, one confirmed.
const HANDOVER: &str = include_str!("../fixtures/handover.toml");

/// A recorded routine without parameters.
const TIDY: &str = r#"name = "tidy"
description = "List the open chores and post a short summary"

[recorded]
request = "list the open chores and sum them up"

[[recorded.calls]]
tool = "chore_list"

[[steps]]
kind = "prompt"
prompt = "List the open chores and post a short summary."
tools = ["chore_list"]
"#;

fn alice() -> User {
    User::new(1, "Alice").with_username("alice")
}
fn bob() -> User {
    User::new(2, "Bob").with_username("bob")
}
fn carol() -> User {
    User::new(3, "Carol").with_username("carol")
}

fn actor(user_id: i64, admin: bool) -> Actor {
    Actor { user_id, admin }
}

/// Alice (admin by config), Bob and Carol (members) registered in group `G` by a plain message
/// each; a model that answers "ok".
async fn start() -> TgApp {
    let app = TgApp::start_with(|c| c.access.admin_ids = vec![1]).await;
    mount_default(&app.llm, completion("ok")).await;
    let g = Chat::group(G, "Home");
    for (i, u) in [alice(), bob(), carol()].into_iter().enumerate() {
        let id = 10 + i as i64;
        app.fake
            .push_update(FakeBotApi::text_message(0, g.clone(), u, id, "hello"));
        app.wait_done(G, id).await;
    }
    app
}

/// Send `text` from `from` in `chat` as message `id` and wait until it was handled; returns
/// the plain text of the bot's last message in that chat.
async fn say(app: &TgApp, chat: &Chat, chat_id: i64, from: User, id: i64, text: &str) -> String {
    app.fake
        .push_update(FakeBotApi::text_message(0, chat.clone(), from, id, text));
    app.wait_done(chat_id, id).await;
    app.sent_texts(chat_id)
        .last()
        .map(|t| hearth::format::html_to_plain(t))
        .unwrap_or_default()
}

async fn import(svc: &Services, chat_id: i64, who: Actor, toml: &str) -> Result<i64, SaveError> {
    let doc = parse_doc(toml).expect("valid TOML shape");
    save_doc(svc, chat_id, who, &doc)
        .await
        .map(|s| s.routine.id)
}

/// The `setMyCommands` bodies scoped to chat `chat_id`, in order.
fn menus_of(app: &TgApp, chat_id: i64) -> Vec<Vec<(String, String)>> {
    app.fake
        .calls_to("setMyCommands")
        .into_iter()
        .filter(|b| b["scope"] == json!({"type": "chat", "chat_id": chat_id}))
        .map(|b| {
            b["commands"]
                .as_array()
                .expect("commands")
                .iter()
                .map(|c| {
                    (
                        c["command"].as_str().unwrap_or_default().to_string(),
                        c["description"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

fn names(menu: &[(String, String)]) -> Vec<&str> {
    menu.iter().map(|(c, _)| c.as_str()).collect()
}

/// The core a restarted process builds over the same database and the same Bot API.
async fn restarted(app: &TgApp) -> Arc<hearth::core::Hearth> {
    let mut cfg = test_config();
    cfg.telegram.api_url = app.fake.url();
    let bot = telegram::bot_with(&SecretString::from("123:TEST"), &cfg.telegram).expect("bot");
    let me = telegram::identity(&bot).await.expect("getMe");
    let agent = app::agent(&cfg, None, std::path::Path::new("prompts")).expect("agent");
    app::core(
        Arc::new(cfg),
        app.store.clone(),
        Arc::new(SystemClock),
        Arc::new(telegram::TelegramMessenger::new(bot)),
        me,
        agent,
    )
}

#[tokio::test]
async fn the_chat_menu_is_set_once_and_changes_only_when_its_routines_change() {
    let app = start().await;
    let svc = &app.hearth.svc;
    let builtins: Vec<&str> = svc.menu.iter().map(|(c, _)| *c).collect();
    assert!(
        app.fake.calls_to("setMyCommands").is_empty(),
        "no routine, no chat menu"
    );

    // a shared routine: the group's menu is the built-ins, then /handover with its description
    import(svc, G, actor(2, false), HANDOVER).await.unwrap();
    let menus = menus_of(&app, G);
    assert_eq!(menus.len(), 1);
    let mut expected = builtins.clone();
    expected.push("handover");
    assert_eq!(names(&menus[0]), expected);
    assert_eq!(
        menus[0].last().unwrap().1,
        "Move a member's chores to another member until a date and tell them"
    );
    assert!(menus[0].len() <= menu::MAX_COMMANDS);

    // the same document saved again (an update, same list): nothing sent
    import(svc, G, actor(2, false), HANDOVER).await.unwrap();
    assert_eq!(menus_of(&app, G).len(), 1);

    // a restart: the start-up sync finds every chat's menu as Telegram has it
    let again = restarted(&app).await;
    assert_eq!(menu::sync_all(&again.svc).await, 0);
    assert_eq!(menu::sync(&again.svc, G).await, Synced::Unchanged);
    assert_eq!(app.fake.calls_to("setMyCommands").len(), 1);

    // a second routine: sent again with both, built-ins first
    import(svc, G, actor(2, false), TIDY).await.unwrap();
    let menus = menus_of(&app, G);
    assert_eq!(menus.len(), 2);
    assert_eq!(names(&menus[1])[..builtins.len()], builtins[..]);
    assert_eq!(names(&menus[1])[builtins.len()..], ["handover", "tidy"]);

    // a failed send is not remembered: the next change or start sends it
    app.fake
        .fail_next("setMyCommands", 400, "Bad Request: chat not found", None);
    let g = Chat::group(G, "Home");
    let reply = say(&app, &g, G, bob(), 20, "/routine_delete tidy").await;
    assert_eq!(reply, "Routine tidy deleted.");
    app.fake.clear_failures();
    assert!(menus_of(&app, G).len() > 2, "the delete tried to send it");
    assert_eq!(menu::sync_all(&again.svc).await, 1, "retried at start-up");
    let menus = menus_of(&app, G);
    assert_eq!(names(menus.last().unwrap())[builtins.len()..], ["handover"]);
    assert_eq!(menu::sync(svc, G).await, Synced::Unchanged);

    // the last routine deleted: the chat's own menu is removed (the default shows again)
    let reply = say(&app, &g, G, bob(), 21, "/routine_delete handover").await;
    assert_eq!(reply, "Routine handover deleted.");
    let removed: Vec<Value> = app
        .fake
        .calls_to("deleteMyCommands")
        .into_iter()
        .filter(|b| b["scope"] == json!({"type": "chat", "chat_id": G}))
        .collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(menu::sync_all(&again.svc).await, 0, "nothing left to send");
    app.stop().await;
}

#[tokio::test]
async fn a_personal_routine_is_in_its_owners_dm_menu_only_and_unknown_in_the_group() {
    let app = start().await;
    let svc = &app.hearth.svc;
    let bob_dm = Chat::private(2, "Bob");
    // Bob's DM becomes known to hearth by a message there
    say(&app, &bob_dm, 2, bob(), 30, "hi").await;
    import(svc, 2, actor(2, true), HANDOVER).await.unwrap();
    let dm_menus = menus_of(&app, 2);
    assert_eq!(dm_menus.len(), 1);
    assert_eq!(names(&dm_menus[0]).last(), Some(&"handover"));
    assert!(menus_of(&app, G).is_empty(), "not in the group's menu");
    assert_eq!(
        app.fake.calls_to("setMyCommands").len(),
        1,
        "no other scope was touched"
    );

    // in the group it is an unknown command, as any other name: no run, nothing leaked
    let g = Chat::group(G, "Home");
    let reply = say(&app, &g, G, bob(), 31, "/handover carol alice sunday").await;
    assert_eq!(reply, "I don't know /handover. Try /help.");
    let reply = say(&app, &g, G, bob(), 32, "/routine_show handover").await;
    assert_eq!(
        reply,
        "no routine named 'handover' in this chat; /routines lists them"
    );
    let r = app
        .store
        .routine_by_name(2, "handover")
        .await
        .unwrap()
        .unwrap();
    assert!(app.store.routine_runs(r.id, 10).await.unwrap().is_empty());
    // in the DM it is there
    let reply = say(&app, &bob_dm, 2, bob(), 33, "/routine_show handover").await;
    assert!(
        reply.starts_with("handover — recorded routine, personal (only here)"),
        "{reply}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_shared_routine_runs_for_every_member_there_only_and_only_its_creator_or_an_admin_changes_it(
) {
    let app = start().await;
    let svc = &app.hearth.svc;
    let g = Chat::group(G, "Home");
    // Bob (a member) shares it with the group
    let id = import(svc, G, actor(2, false), TIDY).await.unwrap();

    // Carol, a member who did not make it, runs it
    say(&app, &g, G, carol(), 40, "/tidy").await;
    let runs = app.store.routine_runs(id, 10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].started_by, Some(3));

    // not in Carol's DM, nor in another group she is in
    let carol_dm = Chat::private(3, "Carol");
    let reply = say(&app, &carol_dm, 3, carol(), 41, "/tidy").await;
    assert_eq!(reply, "I don't know /tidy. Try /help.");
    let other = Chat::group(OTHER, "Office");
    let reply = say(&app, &other, OTHER, carol(), 42, "/tidy").await;
    assert_eq!(reply, "I don't know /tidy. Try /help.");
    assert_eq!(app.store.routine_runs(id, 10).await.unwrap().len(), 1);

    // Carol may not change or delete it: a clear refusal, nothing changes
    let before = app.store.routine(id).await.unwrap().unwrap();
    let menus = menus_of(&app, G).len();
    let reply = say(
        &app,
        &g,
        G,
        carol(),
        43,
        "/routine_edit tidy prompt Delete every chore.",
    )
    .await;
    assert_eq!(
        reply,
        "not allowed: only the owner of 'tidy' or a group admin can change it"
    );
    let reply = say(&app, &g, G, carol(), 44, "/routine_delete tidy").await;
    assert_eq!(
        reply,
        "not allowed: only the owner of 'tidy' or a group admin can change it"
    );
    // nor by importing a document of that name
    let err = import(svc, G, actor(3, false), TIDY).await.unwrap_err();
    assert!(err.to_string().starts_with("not allowed:"), "{err}");
    assert_eq!(app.store.routine(id).await.unwrap().unwrap(), before);
    assert_eq!(menus_of(&app, G).len(), menus);

    // the creator and a group admin may
    let reply = say(
        &app,
        &g,
        G,
        bob(),
        45,
        "/routine_edit tidy prompt List the open chores, oldest first.",
    )
    .await;
    assert_eq!(
        reply,
        "Routine tidy: template changed. See it with /routine_show tidy."
    );
    let reply = say(&app, &g, G, alice(), 46, "/routine_delete tidy").await;
    assert_eq!(reply, "Routine tidy deleted.");
    assert!(app.store.routine(id).await.unwrap().is_none());
    app.stop().await;
}

#[tokio::test]
async fn routines_lists_every_kind_with_parameters_runs_success_and_last_use() {
    let app = start().await;
    let svc = &app.hearth.svc;
    let g = Chat::group(G, "Home");
    say(&app, &g, G, alice(), 50, "/every 2h check the washing").await;
    say(&app, &g, G, alice(), 51, "/playbook_install onboarding").await;
    let handover = import(svc, G, actor(1, true), HANDOVER).await.unwrap();
    // three counted runs (two completed, one failed) and a skipped fire that does not count
    let at = |h: u32| Utc.with_ymd_and_hms(2026, 11, 21, h, 30, 0).unwrap();
    for (status, h) in [
        (RunStatus::Completed, 8),
        (RunStatus::Failed, 9),
        (RunStatus::Completed, 10),
        (RunStatus::Skipped, 11),
    ] {
        app.store
            .seed_run(SeedRun {
                routine_id: handover,
                chat_id: G,
                started_by: 1,
                status,
                source: RunSource::Manual,
                input: None,
                snapshot: None,
                current_step: 0,
                waiting_for: None,
                wake_at: None,
                reason: None,
                started_at: at(h),
                finished_at: Some(at(h)),
            })
            .await
            .unwrap();
    }
    let list = say(&app, &g, G, bob(), 52, "/routines").await;
    let lines: Vec<&str> = list.lines().collect();
    let after = |name: &str| {
        let i = lines
            .iter()
            .position(|l| l.starts_with(&format!("• {name}")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{list}"));
        lines[i + 1].trim().to_string()
    };
    assert_eq!(after("check_the_washing"), "scheduled · never run");
    assert!(
        after("onboarding").starts_with("multi-step · asks for "),
        "{list}"
    );
    assert_eq!(
        after("handover"),
        "recorded · asks for from (member), to (member), until (date) · 3 runs, 67% succeeded · last used Sat 21 Nov 10:30"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("• handover (") && l.contains(" — manual")),
        "{list}"
    );
    // a multi-step routine shows its steps, with bare parameters
    let show = say(&app, &g, G, bob(), 53, "/routine_show onboarding").await;
    assert!(
        show.starts_with("onboarding — multi-step routine, shared with this group")
            && show.contains("\nSteps:\n1. ")
            && !show.contains("{{initial."),
        "{show}"
    );
    app.stop().await;
}

#[tokio::test]
async fn routine_show_and_routine_edit_speak_bare_parameters_and_validate_like_a_save() {
    let app = start().await;
    let svc = &app.hearth.svc;
    let g = Chat::group(G, "Home");
    let id = import(svc, G, actor(2, false), HANDOVER).await.unwrap();
    let sent = menus_of(&app, G).len();

    let show = say(&app, &g, G, carol(), 60, "/routine_show handover").await;
    assert_eq!(
        show,
        "handover — recorded routine, shared with this group\n\
         Move a member's chores to another member until a date and tell them\n\
         Template: Move all of {{from}}'s chores to {{to}} until {{until}} and tell them.\n\
         Parameters:\n\
         • from (member) — Whose chores?, e.g. Bob\n\
         • to (member) — Who takes them?, e.g. Alice\n\
         • until (date) — Until when?, e.g. Sunday\n\
         Tools: chore_list, chore_update (confirmed before each call)\n\
         Triggers: manual (/handover)\n\
         Change it with /routine_edit handover prompt … or /routine_edit handover param <name> description …"
    );

    // an unknown placeholder is refused, named; nothing changes
    let before = app.store.routine(id).await.unwrap().unwrap();
    let reply = say(
        &app,
        &g,
        G,
        bob(),
        61,
        "/routine_edit handover prompt Give {{form}}'s chores to {{to}} until {{until}}.",
    )
    .await;
    assert_eq!(
        reply,
        "template: {{form}} is not a parameter of this routine; its parameters are from, to, until"
    );
    // a parameter left unused is refused too
    let reply = say(
        &app,
        &g,
        G,
        bob(),
        62,
        "/routine_edit handover prompt Give {{from}}'s chores to {{to}}.",
    )
    .await;
    assert_eq!(
        reply,
        "template: the parameter until is no longer used; keep {{until}} in it"
    );
    // a variable the validator does not know is refused by the save's validator
    let reply = say(
        &app,
        &g,
        G,
        bob(),
        63,
        "/routine_edit handover prompt Give {{from}}'s chores to {{to}} until {{until}} {{chat.nam}}.",
    )
    .await;
    assert!(reply.starts_with("Nothing was changed:\n• "), "{reply}");
    assert!(reply.contains("chat.nam"), "{reply}");
    assert_eq!(app.store.routine(id).await.unwrap().unwrap(), before);

    // a good template is stored with {{initial.x}} and shown with {{x}}
    let reply = say(
        &app,
        &g,
        G,
        bob(),
        64,
        "/routine_edit handover prompt Hand {{from}}'s chores to {{to}} until {{until}}; tell them both.",
    )
    .await;
    assert_eq!(
        reply,
        "Routine handover: template changed. See it with /routine_show handover."
    );
    let r = app.store.routine(id).await.unwrap().unwrap();
    let def: Value = serde_json::from_str(r.definition.as_deref().unwrap()).unwrap();
    assert_eq!(
        def["steps"][0]["prompt"],
        "Hand {{initial.from}}'s chores to {{initial.to}} until {{initial.until}}; tell them both."
    );
    assert_eq!(
        def["steps"][0]["tools"],
        json!(["chore_list", "chore_update"])
    );
    assert_eq!(def["recorded"]["confirm"], json!(["chore_update"]));

    // a parameter's description
    let reply = say(
        &app,
        &g,
        G,
        bob(),
        65,
        "/routine_edit handover param until description Until which day?",
    )
    .await;
    assert_eq!(
        reply,
        "Routine handover: the description of until changed. See it with /routine_show handover."
    );
    let reply = say(
        &app,
        &g,
        G,
        bob(),
        66,
        "/routine_edit handover param when description x",
    )
    .await;
    assert_eq!(
        reply,
        "param: 'when' is not a parameter of handover; its parameters are from, to, until"
    );
    let show = say(&app, &g, G, bob(), 67, "/routine_show handover").await;
    assert!(
        show.contains(
            "Template: Hand {{from}}'s chores to {{to}} until {{until}}; tell them both."
        ) && show.contains("• until (date) — Until which day?, e.g. Sunday"),
        "{show}"
    );
    // a scheduled (single-prompt) routine keeps its own placeholders
    say(&app, &g, G, bob(), 68, "/every 2h check the {date} washing").await;
    let reply = say(
        &app,
        &g,
        G,
        bob(),
        69,
        "/routine_edit check_the_date_washing prompt check the {{ date }} laundry",
    )
    .await;
    assert_eq!(
        reply,
        "Routine check_the_date_washing: template changed. See it with /routine_show check_the_date_washing."
    );
    let r = app
        .store
        .routine_by_name(G, "check_the_date_washing")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.prompt.as_str(), r.definition.as_deref()),
        ("check the {{ date }} laundry", None)
    );
    // the menu did not change (same names and descriptions): nothing sent
    assert_eq!(menus_of(&app, G).len(), sent);
    app.stop().await;
}

#[tokio::test]
async fn export_then_import_gives_an_identical_recorded_routine_without_its_source_turn() {
    let app = start().await;
    let svc = &app.hearth.svc;
    // a routine as the save flow stores it: tied to the turn it was recorded from
    let turn = app
        .store
        .record_turn(NewTurn {
            chat_id: G,
            source: "message",
            model: "test-model",
            prompt_tokens: 10,
            completion_tokens: 2,
            steps: 3,
            outcome: "ok",
            started_at: Utc::now(),
            duration_ms: 5,
            reply_text: Some("done"),
            actor_id: Some(2),
            request: Some("Bob: move all of Bob's chores to Alice until Sunday and tell her"),
            calls: &[],
        })
        .await
        .unwrap();
    let doc = parse_doc(HANDOVER).unwrap();
    let definition = serde_json::to_string(&doc.definition).unwrap();
    let id = app
        .store
        .insert_routine_doc(
            NewRoutine {
                chat_id: G,
                name: doc.name.clone(),
                owner_id: 2,
                prompt: doc.description.clone(),
                zone: "UTC".into(),
                quiet: false,
                api_args: false,
                api_token_hash: None,
                max_ticks: None,
                max_runs_per_day: None,
                created_at: Utc::now(),
            },
            DefinitionFields {
                description: doc.description.clone(),
                publication: Publication::Published,
                definition: Some(definition.clone()),
                concurrent: false,
                source_turn_id: Some(turn),
            },
            vec![],
        )
        .await
        .unwrap()
        .expect("inserted");
    let original = app.store.routine(id).await.unwrap().unwrap();
    assert_eq!(original.source_turn_id, Some(turn));

    let exported = export_doc(&doc_of(svc, &original).await.unwrap());
    assert_eq!(
        parse_doc(&exported).unwrap(),
        doc,
        "the export reads back as the imported document"
    );
    assert!(!exported.contains("source_turn") && !exported.contains(&format!("= {turn}")));

    // imported into another group (as a `.toml` file or `hearth routines import` does)
    let other = Chat::group(OTHER, "Office");
    say(&app, &other, OTHER, alice(), 70, "hello").await;
    let copy = import(svc, OTHER, actor(1, true), &exported).await.unwrap();
    let copy = app.store.routine(copy).await.unwrap().unwrap();
    assert_eq!(copy.definition.as_deref(), Some(definition.as_str()));
    assert_eq!(copy.description, original.description);
    assert_eq!(copy.publication, Publication::Published);
    assert_eq!(
        copy.source_turn_id, None,
        "the source turn stays where it was"
    );
    assert_eq!(
        export_doc(&doc_of(svc, &copy).await.unwrap()),
        exported,
        "same TOML bytes"
    );
    // and it is in that group's menu
    assert_eq!(
        names(menus_of(&app, OTHER).last().unwrap()).last(),
        Some(&"handover")
    );

    // the same export sent to the bot as a `.toml` file in Carol's DM: her personal copy
    app.fake.add_file("f-handover", exported.as_bytes());
    app.fake.push_update(FakeBotApi::document_message(
        0,
        Chat::private(3, "Carol"),
        carol(),
        71,
        "f-handover",
        "handover.toml",
        exported.len() as u64,
    ));
    app.wait_done(3, 71).await;
    let reply = hearth::format::html_to_plain(app.sent_texts(3).last().unwrap());
    assert!(reply.starts_with("Routine handover saved"), "{reply}");
    let mine = app
        .store
        .routine_by_name(3, "handover")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mine.owner_id, 3);
    assert_eq!(mine.definition.as_deref(), Some(definition.as_str()));
    assert_eq!(
        names(menus_of(&app, 3).last().unwrap()).last(),
        Some(&"handover")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_full_menu_keeps_the_built_ins_first_within_telegrams_limits() {
    let app = TgApp::start_with(|c| {
        c.access.admin_ids = vec![1];
        c.routines.max_per_chat = 150;
    })
    .await;
    let g = Chat::group(G, "Home");
    say(&app, &g, G, alice(), 80, "hello").await;
    let svc = &app.hearth.svc;
    let builtins: Vec<&str> = svc.menu.iter().map(|(c, _)| *c).collect();
    let long = format!("Tidy up {}", "and sweep ".repeat(40));
    let first = TIDY.replace(
        "description = \"List the open chores and post a short summary\"",
        &format!("description = \"{}\"", long.trim()),
    );
    import(svc, G, actor(1, true), &first).await.unwrap();
    let menu = menus_of(&app, G).pop().unwrap();
    let (_, d) = menu.last().unwrap();
    assert_eq!(d.chars().count(), menu::MAX_DESCRIPTION_CHARS);
    assert!(
        d.starts_with("Tidy up and sweep") && d.ends_with('…'),
        "{d}"
    );
    // more routines than the menu holds: the built-ins stay, routines fill up to 100
    let extra = 101 - builtins.len();
    for i in 0..extra {
        import(
            svc,
            G,
            actor(1, true),
            &TIDY.replace("\"tidy\"", &format!("\"tidy_{i}\"")),
        )
        .await
        .unwrap();
    }
    let menu = menus_of(&app, G).pop().unwrap();
    assert_eq!(menu.len(), menu::MAX_COMMANDS);
    assert_eq!(names(&menu)[..builtins.len()], builtins[..]);
    assert_eq!(names(&menu)[builtins.len()], "tidy");
    // the routines past the limit change nothing Telegram shows: not sent
    assert_eq!(
        menus_of(&app, G).len(),
        menu::MAX_COMMANDS - builtins.len(),
        "one send per routine that fit, none for those that did not"
    );
    app.stop().await;
}

/// The real binary: `hearth routines import` has no Telegram (nothing sent, nothing stored as
/// sent), so the next `hearth run` publishes the chat's menu at start-up; a restart sends
/// nothing again.
#[tokio::test]
async fn a_cli_import_reaches_the_chat_menu_at_the_next_start_and_a_restart_sends_nothing() {
    use std::process::Stdio;
    const BIN: &str = env!("CARGO_BIN_EXE_hearth");
    let fake = FakeBotApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("hearth.db").display()
    );
    {
        let store = hearth::store::Store::connect(&url, 1, Duration::from_secs(5))
            .await
            .unwrap();
        let now = Utc::now();
        store
            .upsert_chat(G, "group", "Home", "UTC", now)
            .await
            .unwrap();
        store.upsert_user(1, "Alice", None, now).await.unwrap();
        store.ensure_member(G, 1, true, now).await.unwrap();
    }
    let file = dir.path().join("handover.toml");
    std::fs::write(&file, HANDOVER).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["routines", "import", file.to_str().unwrap(), "--chat"])
        .arg(G.to_string())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HEARTH_DATABASE__URL", &url)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fake.calls().is_empty(), "the CLI never calls Telegram");
    // the bot is in the group (the fake's chat scope needs a chat it knows)
    fake.push_update(FakeBotApi::text_message(
        0,
        Chat::group(G, "Home"),
        alice(),
        1,
        "hello",
    ));

    let run = || {
        tokio::process::Command::new(BIN)
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TELEGRAM_BOT_TOKEN", "123:TEST")
            .env("HEARTH_TELEGRAM__API_URL", fake.url())
            .env("HEARTH_TELEGRAM__POLL_TIMEOUT", "1s")
            .env("HEARTH_DATABASE__URL", &url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let stop = |child: tokio::process::Child| async move {
        let pid = child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
    };
    // polling starts after the start-up syncs: a getUpdates after a start means they are done
    let started = |polls: usize| {
        let fake = &fake;
        async move {
            fake.wait_for("getUpdates", polls + 1, Duration::from_secs(20))
                .await
        }
    };
    let child = run();
    started(0).await;
    let menus = menus_of_fake(&fake, G);
    assert_eq!(menus.len(), 1, "published at start-up");
    assert_eq!(menus[0].last().map(String::as_str), Some("handover"));
    stop(child).await;

    let polls = fake.calls_to("getUpdates").len();
    let global = fake.calls_to("setMyCommands").len();
    let child = run();
    started(polls).await;
    assert_eq!(menus_of_fake(&fake, G).len(), 1, "a restart sends nothing");
    assert_eq!(fake.calls_to("setMyCommands").len(), global);
    stop(child).await;
}

/// The command names of each chat-scoped `setMyCommands` to `chat_id` the fake received.
fn menus_of_fake(fake: &FakeBotApi, chat_id: i64) -> Vec<Vec<String>> {
    fake.calls_to("setMyCommands")
        .into_iter()
        .filter(|b| b["scope"] == json!({"type": "chat", "chat_id": chat_id}))
        .map(|b| {
            b["commands"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["command"].as_str().map(str::to_string))
                .collect()
        })
        .collect()
}
