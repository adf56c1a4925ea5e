//! The minimum chores that drive approvals: commands, fuzzy lookup, personal chores.
use crate::support::*;
use crate::workflows::{jack, lottie};

async fn household(app: &TestApp) {
    for u in [jack(), lottie()] {
        app.say(&group(), &u, "hi").await;
    }
}

#[tokio::test]
async fn add_list_and_claim_with_fuzzy_titles() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&group(), &jack(), "/addchore").await;
    assert_eq!(
        app.last_text(GROUP),
        "Give the chore a title, e.g. /addchore Water plants."
    );
    app.say(&group(), &jack(), &format!("/addchore {}", "x".repeat(101)))
        .await;
    assert!(app.last_text(GROUP).contains("too long"));
    app.say(&group(), &jack(), "/addchore Wash dishes").await;
    assert_eq!(app.last_text(GROUP), "Added chore #1 “Wash dishes”.");
    app.say(&group(), &jack(), "/addchore Dry dishes").await;
    app.say(&group(), &jack(), "/addchore Bins weekly").await;
    assert_eq!(
        app.last_text(GROUP),
        "Added chore #3 “Bins” (weekly, due Sat 28 Nov 20:00)."
    );
    app.say(&group(), &lottie(), "/chores").await;
    let list = app.last_text(GROUP);
    assert!(
        list.contains("#1 Wash dishes") && list.contains("#3 Bins · weekly · due Sat 28 Nov 20:00"),
        "{list}"
    );

    // ambiguous: asked, nothing claimed
    app.say(&group(), &lottie(), "/done dishes").await;
    assert_eq!(
        app.last_text(GROUP),
        "'dishes' could mean #1 Wash dishes, #2 Dry dishes. Say which, e.g. #1."
    );
    app.say(&group(), &lottie(), "/done vacuum").await;
    assert_eq!(
        app.last_text(GROUP),
        "No chore matches 'vacuum'. /chores lists them."
    );
    app.say(&group(), &lottie(), "/done").await;
    assert_eq!(app.last_text(GROUP), "Say which chore, e.g. /done dishes.");
    assert!(app
        .store
        .pending_for_viewer(&[GROUP], -1, chrono::DateTime::UNIX_EPOCH)
        .await
        .unwrap()
        .is_empty());

    // a typo still finds the one chore; the request goes to the group with buttons
    app.say(&group(), &lottie(), "/done wash dishs").await;
    // then the claimer is told who may verify
    assert_eq!(
        app.last_text(GROUP),
        "Sent “Wash dishes” to the group for verification — anyone but you can approve."
    );
    let mut sent = app.messenger.sent();
    sent.pop();
    let last = sent.pop().unwrap();
    assert!(
        last.html.contains("Lottie</b> says “Wash dishes” is done"),
        "{}",
        last.html
    );
    assert_eq!(last.buttons[0].len(), 2);
    app.say(&group(), &lottie(), "/done #2").await;
    app.say(&group(), &lottie(), "/chores").await;
    assert!(app
        .last_text(GROUP)
        .contains("#2 Dry dishes · ⏳ waiting for verification"));
    assert_eq!(app.model.calls(), 0);
}

#[tokio::test]
async fn group_and_private_commands_stay_in_their_place() {
    let app = TestApp::new().await;
    household(&app).await;
    app.say(&dm(&jack()), &jack(), "/addchore Dishes").await;
    assert!(app
        .last_text(jack().id)
        .starts_with("Group chores live in a group"));
    app.say(&group(), &jack(), "/addpersonal Run").await;
    assert!(app
        .last_text(GROUP)
        .starts_with("Personal chores are kept in our private chat"));
    app.say(&dm(&jack()), &jack(), "/addpersonal Run partner @nobody")
        .await;
    assert!(app
        .last_text(jack().id)
        .starts_with("I don't know @nobody yet"));
    app.say(&dm(&jack()), &jack(), "/addpersonal Run partner @jack")
        .await;
    assert_eq!(
        app.last_text(jack().id),
        "Your accountability partner must be someone else."
    );
    assert!(app.store.open_chores(jack().id).await.unwrap().is_empty());

    // no partner: /done completes at once; /deletechore archives it at once
    app.say(&dm(&jack()), &jack(), "/addpersonal Stretch daily")
        .await;
    app.say(&dm(&jack()), &jack(), "/done stretch").await;
    assert_eq!(app.last_text(jack().id), "✅ “Stretch” done.");
    let c = app.store.open_chores(jack().id).await.unwrap().remove(0);
    assert_eq!(c.status, "todo", "a daily chore comes back");
    assert_eq!(c.completed_by, Some(jack().id));
    app.say(&dm(&jack()), &jack(), "/deletechore stretch").await;
    assert_eq!(app.last_text(jack().id), "🗑 Deleted “Stretch”.");
    // personal chores never show in the group's list, nor group chores in the private one
    app.say(&dm(&jack()), &jack(), "/addpersonal Journal").await;
    app.say(&group(), &jack(), "/addchore Dishes").await;
    app.say(&group(), &lottie(), "/chores").await;
    assert!(!app.last_text(GROUP).contains("Journal"));
    app.say(&dm(&jack()), &jack(), "/chores").await;
    let mine = app.last_text(jack().id);
    assert!(
        mine.contains("Journal") && !mine.contains("Dishes"),
        "{mine}"
    );
    // someone else's private chat can't reach Jack's personal chores
    app.say(&dm(&lottie()), &lottie(), "/done journal").await;
    assert!(app.last_text(lottie().id).starts_with("No chore matches"));
}

#[tokio::test]
async fn help_lists_the_new_commands() {
    let app = TestApp::new().await;
    app.say(&group(), &jack(), "/help").await;
    let help = app.last_text(GROUP);
    for c in [
        "/addchore",
        "/chores",
        "/done",
        "/deletechore",
        "/approvals",
        "/approve",
        "/reject",
        "/cancel",
        "/addpersonal",
    ] {
        assert!(help.contains(c), "{c} missing from /help");
    }
}
