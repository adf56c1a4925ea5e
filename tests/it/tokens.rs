//! The user's bill: a typical household turn must cost at most 1,500 prompt tokens (o200k),
//! counted with tiktoken on exactly what hearth sends: system prompt, current message and every
//! tool schema offered.
use hearth::agent::llm::{ChatMessage, ToolSpec};
use serde_json::json;

use crate::support::*;

/// Tokens of one request as OpenAI bills chat completions: 3 to prime the reply, 4 per message
/// plus its content, plus the tool definitions (counted as their JSON, an over-estimate of the
/// compact form the API renders them in).
pub fn prompt_tokens(messages: &[ChatMessage], tools: &[ToolSpec]) -> usize {
    let bpe = tiktoken_rs::o200k_base().expect("o200k");
    let mut n = 3;
    for m in messages {
        let content = match m {
            ChatMessage::System(s) | ChatMessage::User(s) => s.clone(),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => format!("{}{:?}", content.clone().unwrap_or_default(), tool_calls),
            ChatMessage::Tool { content, .. } => content.clone(),
        };
        n += 4 + bpe.encode_with_special_tokens(&content).len();
    }
    let tools_json: Vec<_> = tools
        .iter()
        .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
        .collect();
    if !tools.is_empty() {
        n += bpe
            .encode_with_special_tokens(&serde_json::to_string(&tools_json).unwrap())
            .len();
    }
    n
}

const CHATTER: [&str; 10] = [
    "who's picking up Mia from football today?",
    "I can do it, I finish at 5",
    "great, thanks! also we're out of milk",
    "I'll grab some on the way home",
    "don't forget the recycling goes out tonight",
    "is it the blue bin or the green one this week?",
    "blue, green was last week",
    "can someone water the tomatoes, they look sad",
    "done, gave them a good soak",
    "dinner at 7? I'm making lasagne",
];

const CHORES: [&str; 10] = [
    "Dishes daily at 8",
    "Bins every monday at 19:00",
    "Water plants every 3 days",
    "Vacuum living room weekly",
    "Clean bathroom every saturday",
    "Laundry every 2 days",
    "Mow the lawn every 2 weeks",
    "Change bed sheets every sunday",
    "Wipe kitchen counters daily",
    "Pay the electricity bill first of the month",
];

/// 4 members, 10 chores, 3 requests pending for Alice, then 20 recent messages of chatter.
pub async fn household(app: &TestApp) {
    let g = group();
    let people = [alice(), bob(), carol(), dave()];
    for p in &people {
        app.say(&g, p, "hi").await;
    }
    for c in CHORES {
        app.say(&g, &alice(), &format!("/addchore {c}")).await;
    }
    app.say(&g, &bob(), "/done dishes").await;
    app.say(&g, &carol(), "/done bins").await;
    app.say(&g, &dave(), "/deletechore water plants").await;
    let pending = app.store.open_chores(GROUP).await.unwrap().len();
    assert_eq!(pending, 10, "ten open chores");
    for (i, text) in CHATTER.iter().chain(CHATTER.iter()).enumerate().take(20) {
        app.say(&g, &people[i % 4], text).await;
    }
}

#[tokio::test]
async fn typical_household_turn_fits_the_budget() {
    let app = TestApp::with(
        |_| {},
        vec![hearth::testkit::Script::Text("Sure — Bob is on it.".into())],
    )
    .await;
    household(&app).await;
    app.say(
        &group(),
        &alice(),
        "@hearth_bot who's doing the bins tonight?",
    )
    .await;
    let req = app.model.requests().pop().expect("one model call");
    let tools = app.model.tools_seen().pop().unwrap();
    let n = prompt_tokens(&req, &tools);
    println!(
        "typical household turn: {n} prompt tokens (o200k), {} tools",
        tools.len()
    );
    let sys = match &req[0] {
        ChatMessage::System(s) => s.clone(),
        _ => String::new(),
    };
    assert!(
        sys.contains("REQUESTS YOU CAN ACTION"),
        "the 3 pending requests are in the prompt: {sys}"
    );
    assert!(n <= 1500, "{n} prompt tokens is over the 1,500 budget");
}

/// Issue 10's figure: the prompt tokens (o200k) of a replay turn of a recorded routine vs the
/// turn it was recorded from, in the same household. The replay offers only the routine's tools
/// (2 of them), so it costs less than the recording turn, which offers every tool.
#[tokio::test]
async fn a_replay_turn_costs_fewer_prompt_tokens_than_the_recording_turn() {
    use hearth::testkit::Script;
    let app = TestApp::with(
        |c| c.access.admin_ids = vec![alice().id],
        vec![
            Script::Text("Done: Bob's chores are Alice's until Sunday.".into()),
            Script::Text("Listed.".into()),
        ],
    )
    .await;
    household(&app).await;
    app.say(
        &group(),
        &alice(),
        "@hearth_bot move all of Bob's chores to Alice until Sunday and tell her",
    )
    .await;
    let recording = prompt_tokens(
        &app.model.requests().pop().expect("the recording turn"),
        &app.model.tools_seen().pop().unwrap(),
    );
    let all_tools = app.model.tools_seen().pop().unwrap().len();
    let doc = hearth::routines::doc::parse_doc(crate::recorded_replay::HANDOVER).unwrap();
    hearth::routines::doc::save_doc(
        &app.hearth.svc,
        GROUP,
        hearth::routines::Actor {
            user_id: alice().id,
            admin: true,
        },
        &doc,
    )
    .await
    .unwrap();
    app.say(&group(), &alice(), "/handover carol bob sunday")
        .await;
    let e = hearth::routines::RoutineEngine::new(app.hearth.svc.clone(), app.hearth.agent.clone());
    use hearth::clock::Clock;
    for _ in 0..5 {
        e.sweep(app.clock.now()).await.unwrap();
        e.settle().await;
    }
    assert_eq!(app.model.calls(), 2, "one recording turn, one replay turn");
    let tools = app.model.tools_seen().pop().unwrap();
    let replay = prompt_tokens(&app.model.requests().pop().unwrap(), &tools);
    println!(
        "recorded routine: recording turn {recording} prompt tokens ({all_tools} tools), replay turn {replay} prompt tokens ({} tools) (o200k)",
        tools.len()
    );
    assert_eq!(tools.len(), 2);
    assert!(
        replay < recording,
        "replay {replay} ≥ recording {recording}"
    );
}
