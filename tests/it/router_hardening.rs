//! Issue 8, router part: non-ASCII text never panics a handler (item 24), a recognised intent
//! never ends in silence (item 13), and domains plug into the router through registration
//! (structure: `CommandSet` / `TextHandler`), all through the real pipeline.

use std::sync::Arc;

use async_trait::async_trait;
use hearth::{
    app,
    clock::SharedClock,
    router::{Command, CommandCtx, CommandSet, TextCtx, TextHandler},
    services::{BotIdentity, Services},
    store::StoreResult,
    testkit::{RecordingMessenger, Script},
    types::{ChatRef, Content, InboundEvent, InboundMessage, UserRef},
};

use crate::support::*;

/// What the panic guard says when a handler panicked, and what a failed command says.
fn apologised(texts: &[String]) -> bool {
    texts.iter().any(|t| {
        t.contains("went wrong on my side") || t.contains("didn't work because of a problem")
    })
}

async fn household(app: &TestApp) {
    for u in [alice(), bob(), carol()] {
        app.say(&group(), &u, "hi").await;
    }
}

/// The three inputs that panicked (`@hearth_boé approve`, `/addchore ẞé by tomorrow 18:00`,
/// `/assign ẞé nobody`) are answered, without the panic guard's apology.
#[tokio::test]
async fn unicode_inputs_that_panicked_are_answered() {
    let app = TestApp::with(|_| {}, vec![Script::Text("Which one do you mean?".into())]).await;
    household(&app).await;

    app.say(&group(), &alice(), "/addchore ẞé by tomorrow 18:00")
        .await;
    let added = app.last_text(GROUP);
    assert!(
        added.starts_with("Added chore") && added.contains("ẞé") && added.contains("18:00"),
        "{added}"
    );
    let chores = app.store.open_chores(GROUP).await.unwrap();
    assert_eq!(chores.len(), 1);
    assert_eq!(
        chores[0].title, "ẞé",
        "'by …' is the due time, not the title"
    );

    app.say(&group(), &alice(), "/assign ẞé @bob").await;
    app.say(&group(), &alice(), "/assign ẞé nobody").await;
    let assigned = app.last_text(GROUP);
    assert!(
        assigned.starts_with("Updated") && assigned.contains("ẞé"),
        "{assigned}"
    );
    let c = app.store.chore(chores[0].id).await.unwrap().unwrap();
    assert_eq!(c.assignee_id, None, "nobody does it now");

    // Bob claims it, so Carol has a request to approve; in her DM (addressed), a mention
    // whose byte length ends inside "é" used to panic while being stripped.
    app.say(&group(), &bob(), "/done ẞé").await;
    app.say(&dm(&carol()), &carol(), "hi").await;
    let before = app.texts(carol().id).len();
    app.say(&dm(&carol()), &carol(), "@hearth_boé approve")
        .await;
    let texts = app.texts(carol().id);
    assert!(texts.len() > before, "answered: {texts:?}");

    for chat in [GROUP, carol().id] {
        assert!(!apologised(&app.texts(chat)), "{:?}", app.texts(chat));
    }
}

/// "done bathroom" for a chore already waiting for verification gets the `/done` answer.
#[tokio::test]
async fn done_for_a_pending_chore_is_answered() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Bathroom").await;
    app.say(&group(), &bob(), "/done bathroom").await;
    let calls = app.model.calls();

    app.say(&group(), &bob(), "/done bathroom").await;
    let by_command = app.last_text(GROUP);
    assert_eq!(
        by_command,
        "'Bathroom' is already waiting for verification."
    );
    let id = app.store.open_chores(GROUP).await.unwrap()[0].id;
    // the claimer and anyone else: the claim is recognised, so it is answered
    for who in [bob(), carol()] {
        let n = app.texts(GROUP).len();
        app.say(&group(), &who, "done bathroom").await;
        let texts = app.texts(GROUP);
        assert_eq!(texts.len(), n + 1, "one answer to {}", who.first_name);
        assert_eq!(texts.last().unwrap(), &by_command, "same answer as /done");
        assert_eq!(app.model.calls(), calls, "no model call");
        assert_eq!(app.store.pending_for_target(id).await.unwrap().len(), 1);
    }
}

/// The requester's own "approve bathroom" is answered, with the message every path uses, and
/// changes nothing; another member's "approve bathroom" still approves.
#[tokio::test]
async fn own_approve_by_text_is_answered() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &alice(), "/addchore Bathroom").await;
    app.say(&group(), &bob(), "/done bathroom").await;
    let id = app.store.open_chores(GROUP).await.unwrap()[0].id;
    let calls = app.model.calls();
    let n = app.texts(GROUP).len();

    app.say(&group(), &bob(), "approve bathroom").await;
    let texts = app.texts(GROUP);
    assert_eq!(texts.len(), n + 1, "{texts:?}");
    assert_eq!(
        texts.last().unwrap(),
        &hearth::workflow::Denial::OwnRequest.to_string()
    );
    assert_eq!(app.model.calls(), calls, "no model call");
    assert_eq!(app.store.pending_for_target(id).await.unwrap().len(), 1);

    // an unrelated message from the requester is not an approval: still context only
    app.say(&group(), &bob(), "the bathroom looks great").await;
    assert_eq!(app.texts(GROUP).len(), n + 1);

    app.say(&group(), &carol(), "approve bathroom").await;
    assert!(app.store.pending_for_target(id).await.unwrap().is_empty());
}

/// A domain the core has never heard of: a "/ping" command with a menu entry, and a text
/// step answering "ping?" — registered in a test wiring, next to the real domains.
struct PingCommands;

#[async_trait]
impl CommandSet for PingCommands {
    fn menu(&self) -> &'static [(&'static str, &'static str)] {
        &[("ping", "Check that I am awake")]
    }
    async fn handle(
        &self,
        svc: &Services,
        ctx: &CommandCtx<'_>,
        cmd: &Command,
    ) -> Option<anyhow::Result<()>> {
        if cmd.name != "ping" {
            return None;
        }
        let html = format!("pong {}", hearth::format::escape_html(&cmd.args));
        Some(
            svc.outbox
                .send(ctx.reply(html))
                .await
                .map(|_| ())
                .map_err(Into::into),
        )
    }
}

struct PingText;

#[async_trait]
impl TextHandler for PingText {
    fn name(&self) -> &'static str {
        "ping"
    }
    async fn handle(&self, svc: &Services, msg: &TextCtx<'_>) -> StoreResult<bool> {
        if !msg.text.eq_ignore_ascii_case("ping?") {
            return Ok(false);
        }
        let _ = svc.outbox.send(msg.reply("pong (text)")).await;
        Ok(true)
    }
}

#[tokio::test]
async fn a_new_domain_plugs_in_by_registration() {
    let cfg = test_config();
    let store = test_store().await;
    let clock: SharedClock = Arc::new(hearth::clock::ManualClock::new(t0()));
    let messenger = RecordingMessenger::default();
    let agent = app::agent(&cfg, None, std::path::Path::new("prompts")).unwrap();
    let bot = BotIdentity {
        id: 999,
        username: "hearth_bot".into(),
        name: "Hearth".into(),
    };
    let router = app::router().commands(PingCommands).text(PingText);
    let h = app::core_with(
        Arc::new(cfg),
        store,
        clock,
        Arc::new(messenger.clone()),
        bot,
        agent,
        router,
    );
    let menu = h.menu();
    assert!(
        menu.contains(&("ping", "Check that I am awake")),
        "{menu:?}"
    );
    assert!(
        menu.iter().any(|(c, _)| *c == "addchore"),
        "real domains still registered"
    );

    let chat = group();
    let said = |text: &str, id: i64, from: &UserRef, chat: &ChatRef| {
        InboundEvent::Message(InboundMessage {
            update_id: None,
            chat: chat.clone(),
            from: from.clone(),
            message_id: id,
            content: Content::Text { text: text.into() },
            reply_to: None,
            mentions_bot: false,
            date: t0(),
        })
    };
    for (i, text) in [
        "/ping now",
        "ping?",
        "/help",
        "/addchore Bins",
        "done bins",
        "ping",
    ]
    .iter()
    .enumerate()
    {
        h.accept(said(text, i as i64 + 1, &alice(), &chat))
            .await
            .unwrap();
    }
    // members take turns inside a chat: let Alice's batch finish before Bob speaks
    h.idle().await;
    h.accept(said("done bins", 20, &bob(), &chat))
        .await
        .unwrap();
    h.idle().await;
    let texts = messenger.texts_to(GROUP);
    assert_eq!(texts[0], "pong now");
    assert_eq!(texts[1], "pong (text)");
    assert!(
        texts[2].contains("/ping — Check that I am awake"),
        "{}",
        texts[2]
    );
    assert!(texts[3].starts_with("Added chore"), "{}", texts[3]);
    // the real text steps still run after registration: Alice's "done bins" opened a
    // verification request, so Bob's "done bins" is told it is already waiting
    assert_eq!(
        texts.last().unwrap(),
        "'Bins' is already waiting for verification.",
        "{texts:?}"
    );
    // "ping" without the question mark is not the new domain's: context only (no model)
    assert_eq!(
        texts.iter().filter(|t| t.as_str() == "pong (text)").count(),
        1,
        "{texts:?}"
    );
}

/// The menu (foundation + registered sets) is valid for Telegram's `setMyCommands`.
#[test]
fn menu_is_valid_for_telegram() {
    let m = hearth::core::commands::menu(&app::router());
    let mut names: Vec<&str> = m.iter().map(|(c, _)| *c).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), m.len(), "a command name is listed twice");
    assert!(m.len() <= 100, "Telegram allows at most 100 commands");
    for (c, d) in &m {
        assert!(
            (1..=32).contains(&c.len())
                && c.chars()
                    .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == '_'),
            "/{c} is not a valid Telegram command name"
        );
        assert!(
            (1..=256).contains(&d.chars().count()),
            "/{c}: description length"
        );
    }
    for must in [
        "help",
        "addchore",
        "chores",
        "done",
        "deletechore",
        "approvals",
        "approve",
        "reject",
        "every",
        "cron",
        "at",
        "routines",
        "routine_install",
    ] {
        assert!(names.contains(&must), "/{must} missing from the menu");
    }
}

/// Arbitrary Unicode — weighted towards characters whose lower case changes byte length (ẞ, İ,
/// Σ, the Kelvin sign, ﬀ) and composed / decomposed é — after command, approval, claim and mention
/// prefixes, through the whole pipeline in a group and a DM: no handler panics (the panic
/// guard's apology never appears).
#[test]
fn case_changing_unicode_never_panics_a_handler() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(TestApp::new());
    rt.block_on(async {
        household(&app).await;
        app.say(&group(), &alice(), "/addchore Dishes daily").await;
        app.say(&group(), &alice(), "/addchore ẞé Σ plants").await;
        app.say(&group(), &bob(), "/done dishes").await;
        app.say(&dm(&carol()), &carol(), "hi").await;
    });
    let prefixes = prop::sample::select(vec![
        "",
        "/addchore ",
        "/assign ",
        "/editchore ",
        "/done ",
        "/approve ",
        "/reject ",
        "/cancel ",
        "/chores ",
        "/every ",
        "/cron ",
        "/at ",
        "/timezone ",
        "/routine_install ",
        "approve ",
        "done ",
        "did ",
        "@hearth_bot ",
        "@hearth_bo",
        "@HEARTH_BOT, ",
    ]);
    let piece = prop_oneof![
        3 => prop::sample::select(vec![
            "ẞ", "ß", "İ", "ı", "Σ", "ς", "σ", "é", "e\u{301}", "\u{301}", "\u{212A}", "ﬀ", "Å", "ǅ",
            "ΐ", " ", " by ", " by tomorrow 18:00", " nobody", " every day", " @bob", "1", "#",
        ])
        .prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ];
    let body = prop::collection::vec(piece, 0..10).prop_map(|v| v.concat());
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 512,
        ..Default::default()
    });
    runner
        .run(&(prefixes, body, any::<bool>()), |(p, body, private)| {
            let text = format!("{p}{body}");
            let chat = if private { dm(&carol()) } else { group() };
            let before = app.texts(chat.id).len();
            rt.block_on(app.say(&chat, &carol(), &text));
            prop_assert!(
                !apologised(&app.texts(chat.id)[before..]),
                "input {text:?} broke the pipeline"
            );
            Ok(())
        })
        .unwrap();
}
