//! Across domains: a chore going overdue fires the `overdue-nudge` routine through the event bus;
//! the leaderboard chart reaches Telegram as a real multipart sendPhoto.
use std::{sync::Arc, time::Duration};

use hearth::{chores, routines::engine::RoutineEngine, testkit::Script};

use crate::support::*;

#[tokio::test]
async fn an_overdue_chore_fires_the_overdue_nudge_routine() {
    let app = TestApp::with(
        |_| {},
        vec![Script::Text("Bob, the dishes are waiting!".into())],
    )
    .await;
    let g = group();
    app.say(&g, &alice(), "hello").await;
    app.say(&g, &bob(), "hi").await;
    app.say(&g, &alice(), "/routine_install overdue-nudge")
        .await;
    app.say(&g, &alice(), "/addchore Dishes daily at 8 @bob")
        .await;
    let engine = RoutineEngine::new(app.hearth.svc.clone(), app.hearth.agent.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let listener = engine.listen(stop.clone());

    app.clock.advance(chrono::Duration::hours(30)); // past tomorrow's 08:00
    let sent = chores::reminders::run(&app.hearth.svc, hearth::clock::Clock::now(&app.clock))
        .await
        .unwrap();
    assert!(sent >= 1, "the overdue reminder went out");
    let mut fired = false;
    for _ in 0..1000 {
        engine.settle().await;
        if app
            .texts(GROUP)
            .iter()
            .any(|t| t == "Bob, the dishes are waiting!")
        {
            fired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        fired,
        "overdue-nudge answered in the group: {:?}",
        app.texts(GROUP)
    );
    let prompt = format!("{:?}", app.model.requests().last().unwrap());
    assert!(
        prompt.contains("Dishes") && prompt.contains("chore_overdue"),
        "{prompt}"
    );
    // the same overdue occurrence never fires twice
    let again = chores::reminders::run(&app.hearth.svc, hearth::clock::Clock::now(&app.clock))
        .await
        .unwrap();
    assert_eq!(again, 0);
    stop.cancel();
    listener.await.unwrap();
}

#[tokio::test]
async fn leaderboard_chart_is_sent_as_a_photo_over_the_bot_api() {
    use hearth::messenger::Messenger;
    let fake = crate::support::fake_telegram::FakeBotApi::start().await;
    let bot = hearth::telegram::bot(&secrecy::SecretString::from("123:TEST"), &fake.url()).unwrap();
    let m: Arc<dyn Messenger> = Arc::new(hearth::telegram::TelegramMessenger::new(bot));
    let png = chores::chart::leaderboard_png(
        "Leaderboard",
        &[
            chores::chart::Bar {
                label: "Zoë",
                value: 7,
            },
            chores::chart::Bar {
                label: "Bob",
                value: 3,
            },
        ],
        640,
        360,
    )
    .unwrap();
    let sent = m
        .send_photo(-100, png.clone(), "<b>Leaderboard</b> — week")
        .await
        .unwrap();
    assert!(sent.message_id > 0);
    let calls = fake.calls_to("sendPhoto");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["caption"], "<b>Leaderboard</b> — week");
    let file = calls[0]
        .as_object()
        .unwrap()
        .values()
        .find(|v| v.get("size").is_some())
        .expect("a file part");
    assert_eq!(file["size"].as_u64(), Some(png.len() as u64));
}
