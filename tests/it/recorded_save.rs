//! Saving recorded routines (issue 10, items 2, 3, 4 and 8), end to end over HTTP: the real
//! Telegram adapter against the fake Bot API, the real OpenAI-compatible client against a
//! scripted wiremock model, real migrations. A member's task with two tool calls gets the
//! "💾 Save as routine" button; only that member may save it; the name is asked and checked,
//! sharing is asked in a group, the extraction is previewed, Save stores the routine once; a
//! bad extraction twice stores nothing; the suggestion comes after the third matching task, once.

use std::time::Duration;

use hearth::routines::steps::{Definition, InputType, StepKind};
use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path},
    Mock, ResponseTemplate,
};

use crate::support::{
    fake_telegram::{Chat, FakeBotApi, User},
    tg::*,
};

const GROUP: i64 = -100_910;
const WAIT: Duration = Duration::from_secs(10);

fn alice() -> User {
    User::new(1, "Alice").with_username("alice")
}

fn bob() -> User {
    User::new(2, "Bob").with_username("bob")
}

fn home() -> Chat {
    Chat::group(GROUP, "Home")
}

/// Answer the next chat completions with `answers`, in order (one each).
async fn script(app: &TgApp, answers: Vec<ResponseTemplate>) {
    for a in answers {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(a)
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&app.llm)
            .await;
    }
}

/// A task of two tool calls (`chore_list`, then `chore_create` of `title`) and its answer.
fn task(title: &str) -> Vec<ResponseTemplate> {
    vec![
        tool_call("chore_list", "{}"),
        tool_call("chore_create", &json!({ "title": title }).to_string()),
        completion(&format!("Added {title}.")),
    ]
}

/// The extraction the scripted model returns for [`task`].
fn extraction() -> String {
    json!({
        "name_suggestion": "add_chore",
        "description": "Add a chore after checking the list",
        "prompt": "Look at the open chores, then add the chore {{ title }} unless it is there.",
        "params": [{"name": "title", "type": "text", "description": "Which chore?", "required": true, "example": "Water the plants"}],
        "tools": ["chore_list", "chore_create"],
        "destructive": ["chore_create"]
    })
    .to_string()
}

static NEXT_ID: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(5000);

fn next_id() -> i64 {
    NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

async fn say(app: &TgApp, chat: Chat, from: User, text: &str) -> i64 {
    let id = next_id();
    let chat_id = chat_id(&chat);
    app.fake
        .push_update(FakeBotApi::text_message(0, chat, from, id, text));
    app.wait_done(chat_id, id).await;
    id
}

fn chat_id(chat: &Chat) -> i64 {
    chat.to_json()["id"].as_i64().unwrap()
}

/// Tap `data` on message `msg`; returns the toast text (None: answered silently).
async fn tap(app: &TgApp, chat: Chat, from: User, msg: i64, data: &str) -> Option<String> {
    let before = app.fake.calls_to("answerCallbackQuery").len();
    app.fake
        .push_update(FakeBotApi::callback_query(0, from, chat, msg, data));
    let answers = app
        .fake
        .wait_for("answerCallbackQuery", before + 1, WAIT)
        .await;
    app.hearth.idle().await;
    answers[before]["text"].as_str().map(str::to_string)
}

/// The bot's messages to `chat` (the sendMessage bodies), in order.
fn sent(app: &TgApp, chat: i64) -> Vec<Value> {
    app.fake
        .calls_to("sendMessage")
        .into_iter()
        .filter(|b| b["chat_id"].as_i64() == Some(chat))
        .collect()
}

/// Every button's callback data on a sendMessage body.
fn buttons(body: &Value) -> Vec<String> {
    body["reply_markup"]["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["callback_data"].as_str().map(str::to_string))
        .collect()
}

fn text(body: &Value) -> String {
    body["text"].as_str().unwrap_or_default().to_string()
}

/// The message id the fake gave the last message the bot sent to `chat`.
fn last_bot_message_id(app: &TgApp, chat: i64) -> i64 {
    app.fake
        .bot_messages()
        .into_iter()
        .rev()
        .find(|m| m["chat"]["id"].as_i64() == Some(chat))
        .and_then(|m| m["message_id"].as_i64())
        .expect("a bot message")
}

#[tokio::test]
async fn a_recorded_task_is_saved_by_its_member_only_with_a_checked_name_share_choice_and_preview()
{
    let app = TgApp::start().await;
    say(&app, home(), alice(), "hi").await;
    say(&app, home(), bob(), "hi").await;
    let mut answers = task("Water the plants");
    answers.push(completion(&extraction()));
    script(&app, answers).await;

    // the task: two tool calls that ran → the reply carries the Save button
    say(
        &app,
        home(),
        alice(),
        "@hearth_bot add a chore to water the plants unless we have it",
    )
    .await;
    let reply = sent(&app, GROUP).pop().expect("reply");
    assert_eq!(text(&reply), "Added Water the plants.");
    let data = buttons(&reply);
    assert_eq!(data.len(), 1, "{reply}");
    assert!(data[0].starts_with("rsave:"), "{data:?}");
    let turn_id: i64 = data[0]["rsave:".len()..].parse().unwrap();
    let reply_msg = last_bot_message_id(&app, GROUP);
    assert_eq!(app.model_requests().await.len(), 3);

    // Bob may not save Alice's task; a forged turn id is refused too; nothing is asked
    let n = sent(&app, GROUP).len();
    assert_eq!(
        tap(&app, home(), bob(), reply_msg, &data[0])
            .await
            .as_deref(),
        Some("Only the member who asked for this can save it as a routine.")
    );
    assert_eq!(
        tap(&app, home(), alice(), reply_msg, "rsave:987654")
            .await
            .as_deref(),
        Some("I can't find that task in this chat; nothing to save.")
    );
    assert_eq!(sent(&app, GROUP).len(), n, "no message for refused taps");
    assert_eq!(app.model_requests().await.len(), 3, "no extraction yet");

    // Alice taps: the extraction runs (no tools offered) and the name is asked with a suggestion
    assert_eq!(tap(&app, home(), alice(), reply_msg, &data[0]).await, None);
    let reqs = app.model_requests().await;
    assert_eq!(reqs.len(), 4);
    assert!(reqs[3].get("tools").is_none(), "{}", reqs[3]);
    let user_msg = reqs[3]["messages"][1]["content"].as_str().unwrap_or("");
    assert!(
        user_msg.contains("Alice: @hearth_bot add a chore to water the plants")
            && user_msg.contains("chore_create {\"title\":\"Water the plants\"}"),
        "{user_msg}"
    );
    // the extraction's prompt size (o200k), system and user message together
    let bpe = tiktoken_rs::o200k_base().expect("o200k");
    let ex_tokens: usize = reqs[3]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            bpe.encode_with_special_tokens(m["content"].as_str().unwrap_or(""))
                .len()
        })
        .sum();
    println!("extraction request: {ex_tokens} prompt tokens (o200k, message text only)");
    assert!(ex_tokens < 1000, "{ex_tokens}");
    let ask = sent(&app, GROUP).pop().unwrap();
    assert!(
        text(&ask).starts_with("What should I call this routine?")
            && text(&ask).contains("Suggestion: /add_chore"),
        "{}",
        text(&ask)
    );
    assert_eq!(buttons(&ask), vec![format!("rsave:n:{turn_id}")]);

    // Bob's messages are not Alice's answers (context only); wrong names are refused and asked again
    say(&app, home(), bob(), "lol").await;
    say(&app, home(), alice(), "Plants-Weekly").await;
    let t = text(&sent(&app, GROUP).pop().unwrap());
    assert!(
        t.starts_with("That name won't work: 'Plants-Weekly' can't be a Telegram command: use 1-32 characters of a-z, 0-9 and _, e.g. 'plants_weekly'.")
            && t.contains("What should I call this routine?"),
        "{t}"
    );
    say(&app, home(), alice(), "chores").await;
    let t = text(&sent(&app, GROUP).pop().unwrap());
    assert!(
        t.starts_with("That name won't work: /chores is one of my own commands."),
        "{t}"
    );
    say(&app, home(), alice(), "plants").await;

    // in a group: share or keep it personal
    let share = sent(&app, GROUP).pop().unwrap();
    assert!(
        text(&share).starts_with("Share /plants with the group"),
        "{}",
        text(&share)
    );
    assert_eq!(
        buttons(&share),
        vec![format!("rsave:g:{turn_id}"), format!("rsave:m:{turn_id}")]
    );
    let share_msg = last_bot_message_id(&app, GROUP);
    assert_eq!(
        tap(
            &app,
            home(),
            bob(),
            share_msg,
            &format!("rsave:g:{turn_id}")
        )
        .await
        .as_deref(),
        Some("Only the member who asked for this can save it as a routine.")
    );
    tap(
        &app,
        home(),
        alice(),
        share_msg,
        &format!("rsave:g:{turn_id}"),
    )
    .await;

    // the preview, then Save (tapped twice): stored once
    let preview = sent(&app, GROUP).pop().unwrap();
    assert_eq!(
        text(&preview),
        "<b>/plants</b> — Look at the open chores, then add the chore {{title}} unless it is there. Asks for: title (text). Confirms before: chore_create.\nShared with the group: every member can run it here.\nSave it?"
    );
    assert_eq!(
        buttons(&preview),
        vec![format!("rsave:s:{turn_id}"), format!("rsave:x:{turn_id}")]
    );
    assert!(app.store.routines_of_chat(GROUP).await.unwrap().is_empty());
    let preview_msg = last_bot_message_id(&app, GROUP);
    assert_eq!(
        tap(
            &app,
            home(),
            alice(),
            preview_msg,
            &format!("rsave:s:{turn_id}")
        )
        .await,
        None
    );
    assert_eq!(
        tap(
            &app,
            home(),
            alice(),
            preview_msg,
            &format!("rsave:s:{turn_id}")
        )
        .await
        .as_deref(),
        Some("This button is no longer active.")
    );
    assert_eq!(
        text(&sent(&app, GROUP).pop().unwrap()),
        "Saved: /plants Every member can run it here."
    );

    let all = app.store.routines_of_chat(GROUP).await.unwrap();
    assert_eq!(all.len(), 1, "stored once");
    let r = &all[0];
    assert_eq!(
        (r.name.as_str(), r.owner_id, r.source_turn_id),
        ("plants", 1, Some(turn_id))
    );
    let def: Definition = serde_json::from_str(r.definition.as_deref().unwrap()).unwrap();
    assert_eq!(def.inputs.len(), 1);
    let input = &def.inputs[0];
    assert_eq!(
        (
            input.name.as_str(),
            input.kind,
            input.description.as_str(),
            input.example.as_deref()
        ),
        (
            "title",
            InputType::Text,
            "Which chore?",
            Some("Water the plants")
        )
    );
    assert_eq!(def.steps.len(), 1);
    match &def.steps[0].kind {
        StepKind::Prompt { prompt, tools } => {
            assert_eq!(
                prompt,
                "Look at the open chores, then add the chore {{initial.title}} unless it is there."
            );
            assert_eq!(
                tools.as_deref(),
                Some(&["chore_list".to_string(), "chore_create".to_string()][..])
            );
        }
        other => panic!("not a prompt step: {other:?}"),
    }
    let rec = def.recorded.expect("recorded");
    assert_eq!(
        rec.request,
        "Alice: @hearth_bot add a chore to water the plants unless we have it"
    );
    assert_eq!(rec.confirm, vec!["chore_create".to_string()]);
    let shapes: Vec<(String, Vec<String>)> =
        rec.calls.into_iter().map(|c| (c.tool, c.keys)).collect();
    assert_eq!(
        shapes,
        vec![
            ("chore_list".to_string(), vec![]),
            ("chore_create".to_string(), vec!["title".to_string()])
        ]
    );
    // the extraction's tokens are counted as a turn of its own
    let turns = app.store.turns(GROUP).await.unwrap();
    let ex: Vec<_> = turns.iter().filter(|t| t.source == "extraction").collect();
    assert_eq!(ex.len(), 1);
    assert_eq!(
        (ex[0].prompt_tokens, ex[0].completion_tokens, ex[0].actor_id),
        (42, 7, Some(1))
    );
    assert_eq!(app.model_requests().await.len(), 4, "one extraction call");

    // replay by another member with another value: the replay's calls carry the new value, the
    // model is offered only the recorded tools, and the destructive call waits for Bob
    script(
        &app,
        vec![
            tool_call("chore_list", "{}"),
            tool_call(
                "chore_create",
                &json!({ "title": "Mop the floor" }).to_string(),
            ),
            completion("I asked Bob to confirm adding Mop the floor."),
        ],
    )
    .await;
    say(&app, home(), bob(), "/plants Mop the floor").await;
    let engine =
        hearth::routines::RoutineEngine::new(app.hearth.svc.clone(), app.hearth.agent.clone());
    let deadline = std::time::Instant::now() + WAIT;
    let wf = loop {
        engine.sweep(chrono::Utc::now()).await.expect("sweep");
        engine.settle().await;
        let confirm = sent(&app, GROUP)
            .iter()
            .flat_map(buttons)
            .find_map(|d| d.strip_prefix("wf:a:").map(str::to_string));
        if let Some(wf) = confirm {
            break wf;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no confirmation asked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reqs = app.model_requests().await;
    let replay_req = &reqs[4];
    let offered: Vec<&str> = replay_req["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert_eq!(offered.len(), 2, "{offered:?}");
    assert!(offered.contains(&"chore_list") && offered.contains(&"chore_create"));
    let replay_turn = app
        .store
        .turns(GROUP)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.source == "routine")
        .expect("the replay's turn");
    assert_eq!(replay_turn.actor_id, Some(2), "the replay acts for Bob");
    let calls = app.store.tool_calls(replay_turn.id).await.unwrap();
    assert_eq!(calls.len(), 2);
    assert!(
        calls[1].arguments.contains("Mop the floor")
            && !calls[1].arguments.contains("Water the plants"),
        "{}",
        calls[1].arguments
    );
    assert_eq!(calls[1].status, hearth::store::ToolCallStatus::Held);
    let titles = |chores: Vec<hearth::store::ChoreRow>| -> Vec<String> {
        chores.into_iter().map(|c| c.title).collect()
    };
    assert!(
        !titles(app.store.open_chores(GROUP).await.unwrap()).contains(&"Mop the floor".to_string()),
        "nothing done before Confirm"
    );
    let confirm_msg = last_bot_message_id(&app, GROUP);
    tap(&app, home(), bob(), confirm_msg, &format!("wf:a:{wf}")).await;
    let done = titles(app.store.open_chores(GROUP).await.unwrap());
    assert_eq!(
        done.iter().filter(|t| *t == "Mop the floor").count(),
        1,
        "{done:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_extraction_twice_says_so_and_stores_nothing() {
    let app = TgApp::start().await;
    let dm = Chat::private(1, "Alice");
    let mut answers = task("Bins");
    // not JSON, then a placeholder with no parameter
    answers.push(completion("Sure! The routine adds a chore."));
    answers.push(completion(
        &json!({"prompt": "Add {{chore}} and {{when}}", "params": [{"name": "chore"}], "tools": ["chore_create"]})
            .to_string(),
    ));
    script(&app, answers).await;
    say(&app, dm.clone(), alice(), "add the bins chore").await;
    let reply = sent(&app, 1).pop().unwrap();
    assert!(buttons(&reply)[0].starts_with("rsave:"));

    // /save in the DM takes the last multi-step task
    say(&app, dm.clone(), alice(), "/save bins").await;
    let reqs = app.model_requests().await;
    assert_eq!(reqs.len(), 5, "one retry, then no more");
    // the retry tells the model what was wrong
    let retry = reqs[4]["messages"].as_array().unwrap();
    let told = retry.last().unwrap()["content"].as_str().unwrap_or("");
    assert!(
        told.starts_with("That answer is not valid: the answer is not a JSON object."),
        "{told}"
    );
    assert_eq!(
        text(&sent(&app, 1).pop().unwrap()),
        "I couldn't turn that into a routine: the model's answer was not usable twice (the prompt uses {{when}} but no parameter has that name); nothing was saved."
    );
    assert!(app.store.routines_of_chat(1).await.unwrap().is_empty());
    assert_eq!(
        app.store.kv_get("rsave_dialogue:1:1").await.unwrap(),
        None,
        "no dialogue left open"
    );
    let turns = app.store.turns(1).await.unwrap();
    let ex: Vec<_> = turns.iter().filter(|t| t.source == "extraction").collect();
    assert_eq!(
        (ex.len(), ex[0].outcome.as_str(), ex[0].steps),
        (1, "invalid", 2)
    );
    app.stop().await;
}

#[tokio::test]
async fn the_suggestion_comes_after_the_third_matching_task_in_the_same_chat_once() {
    let app = TgApp::start().await;
    let dm = Chat::private(1, "Alice");
    say(&app, home(), alice(), "hi").await;
    let mut answers = Vec::new();
    for i in 0..6 {
        answers.extend(task(&format!("Chore {i}")));
    }
    script(&app, answers).await;
    let suggestions = |chat: i64| {
        sent(&app, chat)
            .into_iter()
            .filter(|b| text(b).starts_with("You've had me do this"))
            .collect::<Vec<_>>()
    };
    // two in the DM, two in the group: never counted across chats
    say(&app, dm.clone(), alice(), "add chore 0").await;
    say(&app, dm.clone(), alice(), "add chore 1").await;
    say(&app, home(), alice(), "@hearth_bot add chore 2").await;
    say(&app, home(), alice(), "@hearth_bot add chore 3").await;
    assert!(suggestions(1).is_empty() && suggestions(GROUP).is_empty());
    // the third in the group: offered once, with the Save button of that task
    say(&app, home(), alice(), "@hearth_bot add chore 4").await;
    let offered = suggestions(GROUP);
    assert_eq!(offered.len(), 1);
    assert_eq!(
        text(&offered[0]),
        "You've had me do this 3 times lately (chore_list → chore_create). Save it as a routine, so next time it is one command?"
    );
    let latest = app
        .store
        .tool_turns_of(GROUP, 1, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(buttons(&offered[0]), vec![format!("rsave:{}", latest.id)]);
    // a fourth: never twice for one fingerprint; the suggestion made no model call
    say(&app, home(), alice(), "@hearth_bot add chore 5").await;
    assert_eq!(suggestions(GROUP).len(), 1);
    assert!(suggestions(1).is_empty());
    assert_eq!(app.model_requests().await.len(), 18);
    app.stop().await;
}

mod in_process {
    //! The same flows through the in-process harness (recording messenger, scripted model):
    //! a restart between two answers, a personal routine saved from a group, `/cancel`, and the
    //! one-open-suggestion rule.
    use hearth::testkit::Script;
    use serde_json::json;

    use crate::support::*;

    fn task(title: &str, list_args: &str) -> Vec<Script> {
        vec![
            Script::Tools(vec![("chore_list".into(), list_args.into())]),
            Script::Tools(vec![(
                "chore_create".into(),
                json!({ "title": title }).to_string(),
            )]),
            Script::Text(format!("Added {title}.")),
        ]
    }

    fn extraction() -> Script {
        Script::Text(super::extraction())
    }

    fn last_buttons(app: &TestApp, chat: i64) -> Vec<String> {
        app.messenger
            .sent()
            .into_iter()
            .rev()
            .find(|o| o.chat_id == chat)
            .map(|o| o.buttons.into_iter().flatten().map(|b| b.data).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_restart_between_two_answers_loses_nothing_and_just_for_me_saves_in_the_dm() {
        let mut script = task("Water the plants", "{}");
        script.push(extraction());
        let app = TestApp::with(|_| {}, script).await;
        app.say(&group(), &bob(), "hi").await;
        let msg = app
            .say(&group(), &alice(), "@hearth_bot add water the plants")
            .await;
        let data = last_buttons(&app, GROUP);
        assert_eq!(data.len(), 1);
        let turn_id: i64 = data[0]["rsave:".len()..].parse().unwrap();
        app.press(&group(), &alice(), msg, &data[0]).await;
        assert!(app
            .last_text(GROUP)
            .starts_with("What should I call this routine?"));
        // a second tap asks again without a second extraction
        app.press(&group(), &alice(), msg, &data[0]).await;
        assert!(app
            .last_text(GROUP)
            .starts_with("What should I call this routine?"));
        assert_eq!(app.model.calls(), 4, "three for the task, one extraction");
        app.hearth.shutdown(std::time::Duration::from_secs(5)).await;

        // a new process over the same database: the dialogue goes on where it was
        let app2 = TestApp::on_store(app.store.clone(), app.clock.clone(), |_| {}, vec![]).await;
        app2.continue_ids_from(1000);
        app2.say(&group(), &alice(), "plants").await;
        assert!(
            app2.last_text(GROUP)
                .starts_with("Share /plants with the group"),
            "{}",
            app2.last_text(GROUP)
        );
        app2.press(&group(), &alice(), msg, &format!("rsave:m:{turn_id}"))
            .await;
        assert!(
            app2.last_text(GROUP)
                .contains("Personal: only you can run it, in our private chat."),
            "{}",
            app2.last_text(GROUP)
        );
        app2.press(&group(), &alice(), msg, &format!("rsave:s:{turn_id}"))
            .await;
        assert_eq!(
            app2.last_text(GROUP),
            "Saved: /plants It is personal: run it in our private chat."
        );
        // personal: stored in Alice's DM chat (created for it), not in the group
        assert!(app2.store.routines_of_chat(GROUP).await.unwrap().is_empty());
        let mine = app2.store.routines_of_chat(alice().id).await.unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(
            (
                mine[0].name.as_str(),
                mine[0].owner_id,
                mine[0].source_turn_id
            ),
            ("plants", alice().id, Some(turn_id))
        );
        let dm = app2
            .store
            .chat(alice().id)
            .await
            .unwrap()
            .expect("DM chat row");
        assert_eq!(dm.kind, "private");
        assert_eq!(app2.model.calls(), 0, "no model call after the restart");
    }

    #[tokio::test]
    async fn cancel_stops_the_dialogue_and_the_next_message_is_not_a_name() {
        let mut script = task("Bins", "{}");
        script.push(extraction());
        script.push(Script::Text("Hello!".into()));
        let app = TestApp::with(|_| {}, script).await;
        let dm = dm(&alice());
        app.say(&dm, &alice(), "add bins").await;
        app.say(&dm, &alice(), "/save").await;
        assert!(app
            .last_text(alice().id)
            .starts_with("What should I call this routine?"));
        app.say(&dm, &alice(), "/cancel").await;
        assert_eq!(
            app.last_text(alice().id),
            "Stopped: the routine was not saved."
        );
        app.say(&dm, &alice(), "bins").await;
        assert_eq!(app.last_text(alice().id), "Hello!", "went to the agent");
        assert!(app
            .store
            .routines_of_chat(alice().id)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn at_most_one_open_suggestion_per_member() {
        let mut script = Vec::new();
        for i in 0..3 {
            script.extend(task(&format!("A{i}"), "{}"));
        }
        for i in 0..3 {
            script.extend(task(&format!("B{i}"), r#"{"of":"mine"}"#));
        }
        script.push(extraction());
        script.extend(task("B3", r#"{"of":"mine"}"#));
        let app = TestApp::with(|_| {}, script).await;
        let offers = |app: &TestApp| {
            app.texts(GROUP)
                .into_iter()
                .filter(|t| t.starts_with("You've had me do this"))
                .count()
        };
        for i in 0..3 {
            app.say(&group(), &alice(), &format!("@hearth_bot add A{i}"))
                .await;
        }
        assert_eq!(offers(&app), 1);
        let suggestion = app
            .messenger
            .sent()
            .into_iter()
            .rev()
            .find(|o| o.html.starts_with("You've had"))
            .unwrap();
        // three of another kind while the first offer is open: no second offer
        for i in 0..3 {
            app.say(&group(), &alice(), &format!("@hearth_bot add B{i}"))
                .await;
        }
        assert_eq!(offers(&app), 1);
        // Alice takes up the first offer (and cancels): the next B task is offered
        app.press(&group(), &alice(), 1, &suggestion.buttons[0][0].data)
            .await;
        app.say(&group(), &alice(), "/cancel").await;
        app.say(&group(), &alice(), "@hearth_bot add B3").await;
        assert_eq!(offers(&app), 2);
        assert!(
            app.last_text(GROUP).contains("4 times lately"),
            "{}",
            app.last_text(GROUP)
        );
    }

    #[tokio::test]
    async fn in_a_dm_the_name_given_with_save_goes_straight_to_the_preview_and_cancel_stores_nothing(
    ) {
        let mut script = task("Bins", "{}");
        script.push(extraction());
        script.push(extraction());
        let app = TestApp::with(|_| {}, script).await;
        let dm = dm(&alice());
        let me = alice().id;
        app.say(&dm, &alice(), "add bins").await;
        let turn_id: i64 = last_buttons(&app, me)[0]["rsave:".len()..].parse().unwrap();
        // a DM routine is personal: no share question
        app.say(&dm, &alice(), "/save bins_weekly").await;
        let preview = app.last_text(me);
        assert!(
            preview.starts_with("/bins_weekly — ")
                && preview.contains("Personal: only you can run it, in our private chat."),
            "{preview}"
        );
        app.press(&dm, &alice(), 1, &format!("rsave:x:{turn_id}"))
            .await;
        assert_eq!(app.last_text(me), "Not saved; nothing was stored.");
        assert!(app.store.routines_of_chat(me).await.unwrap().is_empty());
        // /save again (a new extraction), then Save stores it
        app.say(&dm, &alice(), "/save bins_weekly").await;
        app.press(&dm, &alice(), 1, &format!("rsave:s:{turn_id}"))
            .await;
        assert_eq!(
            app.last_text(me),
            "Saved: /bins_weekly It is personal: only you can run it, here."
        );
        let saved = app.store.routines_of_chat(me).await.unwrap();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].source_turn_id, Some(turn_id));
    }
}
