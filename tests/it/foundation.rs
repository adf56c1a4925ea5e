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
