//! Issue 9, routine definitions: the playbook library (`/playbook_install`), TOML import/export
//! round trips (service and the real binary), `/routines <text>`, the agent's `playbook_draft`
//! with its Save / Cancel preview, and `.toml` documents sent by an admin.
use hearth::{
    routines::{
        doc::{doc_of, export_doc, parse_doc, save_doc},
        playbooks::LIBRARY,
        steps::Definition,
        validate::{validate, ValidateCtx},
        Actor,
    },
    store::Publication,
    testkit::{Recorded, Script},
};

use crate::support::*;

/// A group with Alice (admin) and Bob (member) registered.
async fn app_with_group(script: Vec<Script>) -> TestApp {
    let app = TestApp::with(|c| c.access.admin_ids = vec![alice().id], script).await;
    app.say(&group(), &alice(), "hello").await;
    app.say(&group(), &bob(), "hi").await;
    app
}

fn admin() -> Actor {
    Actor {
        user_id: alice().id,
        admin: true,
    }
}

#[tokio::test]
async fn playbook_install_lists_installs_validates_and_never_overwrites() {
    let app = app_with_group(vec![]).await;
    app.say(&group(), &bob(), "/playbook_install").await;
    let list = app.last_text(GROUP);
    for p in LIBRARY {
        assert!(list.contains(&format!("• {} — ", p.name)), "{list}");
    }
    app.say(&group(), &bob(), "/playbook_install meal_plan")
        .await;
    assert_eq!(
        app.last_text(GROUP),
        "Playbook meal_plan installed as meal_plan (5 steps). Run it with /meal_plan; see it with /routines meal_plan."
    );
    let r = app
        .store
        .routine_by_name(GROUP, "meal_plan")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.publication, Publication::Published);
    assert_eq!(r.owner_id, bob().id);
    let def: Definition = serde_json::from_str(r.definition.as_deref().unwrap()).unwrap();
    assert_eq!(def.inputs[0].name, "preferences");
    let ctx = ValidateCtx::load(&app.hearth.svc, GROUP, "meal_plan")
        .await
        .unwrap();
    validate(&def, &ctx).unwrap();

    // taken: the next free name
    app.say(&group(), &alice(), "/playbook_install meal_plan")
        .await;
    assert!(
        app.last_text(GROUP).contains("installed as meal_plan_2"),
        "{}",
        app.last_text(GROUP)
    );
    app.say(&group(), &alice(), "/playbook_install onboarding")
        .await;
    app.say(&group(), &alice(), "/playbook_install nope").await;
    assert!(app
        .last_text(GROUP)
        .starts_with("'nope' is not in the playbook library; choose one of:"));

    // /routines <text> searches names and descriptions
    app.say(&group(), &alice(), "/routines shopping").await;
    let found = app.last_text(GROUP);
    assert!(
        found.contains("• meal_plan (") && found.contains("• meal_plan_2 ("),
        "{found}"
    );
    assert!(!found.contains("onboarding"), "{found}");
    app.say(&group(), &alice(), "/routines welcome").await;
    let found = app.last_text(GROUP);
    assert!(
        found.contains("• onboarding (") && !found.contains("meal_plan"),
        "{found}"
    );
    app.say(&group(), &alice(), "/routines zebra").await;
    assert_eq!(
        app.last_text(GROUP),
        "No routine matches “zebra”; /routines lists them all."
    );
}

#[tokio::test]
async fn import_then_export_is_identical_for_every_playbook_and_a_single_prompt() {
    let app = app_with_group(vec![]).await;
    let svc = &app.hearth.svc;
    for p in LIBRARY {
        let exported = export_doc(&parse_doc(p.toml).unwrap());
        let saved = save_doc(svc, GROUP, admin(), &parse_doc(&exported).unwrap())
            .await
            .unwrap();
        assert!(!saved.updated);
        let again = export_doc(&doc_of(svc, &saved.routine).await.unwrap());
        assert_eq!(again, exported, "{}", p.name);
        // importing the export updates the same routine; the export stays the same bytes
        let saved2 = save_doc(svc, GROUP, admin(), &parse_doc(&again).unwrap())
            .await
            .unwrap();
        assert!(saved2.updated);
        assert_eq!(saved2.routine.id, saved.routine.id);
        let third = export_doc(&doc_of(svc, &saved2.routine).await.unwrap());
        assert_eq!(third, exported, "{}", p.name);
    }
    // a single-prompt routine exports as a one-step document and imports back unchanged
    app.say(&group(), &alice(), "/every 2h check the {date} washing")
        .await;
    assert!(
        app.last_text(GROUP)
            .starts_with("Routine check_the_date_washing created"),
        "{}",
        app.last_text(GROUP)
    );
    let r = app
        .store
        .routine_by_name(GROUP, "check_the_date_washing")
        .await
        .unwrap()
        .unwrap();
    let text = export_doc(&doc_of(svc, &r).await.unwrap());
    assert_eq!(
        text,
        "name = \"check_the_date_washing\"\ntriggers = [\"every 2h\"]\n\n[[steps]]\nkind = \"prompt\"\nprompt = \"check the {{ date }} washing\"\n"
    );
    let saved = save_doc(svc, GROUP, admin(), &parse_doc(&text).unwrap())
        .await
        .unwrap();
    assert!(saved.updated);
    assert_eq!(saved.routine.definition, None);
    assert_eq!(saved.routine.prompt, r.prompt);
    assert_eq!(
        export_doc(&doc_of(svc, &saved.routine).await.unwrap()),
        text
    );

    // a member who does not own it cannot overwrite it; nothing changes
    let bob_actor = Actor {
        user_id: bob().id,
        admin: false,
    };
    let err = save_doc(svc, GROUP, bob_actor, &parse_doc(&text).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "not allowed: 'check_the_date_washing' exists and only its owner or a group admin can change it"
    );
}

const TYPO: &str = r#"name = "shopping"
description = "weekly list"

[[steps]]
name = "plan"
kind = "prompt"
prompt = "Plan dinners"

[[steps]]
name = "list"
kind = "prompt"
prompt = "List for {{steps.plan.output}}"

[[steps]]
name = "post"
kind = "message"
text = "{{steps.lsit.output}}"
"#;

#[tokio::test]
async fn the_agent_drafts_hearth_validates_and_the_preview_saves_or_cancels() {
    let draft = |toml: &str| {
        Script::Tools(vec![(
            "playbook_draft".into(),
            serde_json::json!({ "toml": toml }).to_string(),
        )])
    };
    let fixed = TYPO.replace("lsit", "list");
    let app = app_with_group(vec![
        draft(TYPO),
        draft(&fixed),
        Script::Text("Here is the draft: tap Save to keep it.".into()),
        draft(&fixed.replace("shopping", "other")),
        Script::Text("Another draft.".into()),
    ])
    .await;
    app.say(
        &group(),
        &alice(),
        "@hearth_bot make a playbook that plans dinners and posts a shopping list",
    )
    .await;
    // the validation error went back to the model, naming the step and the variable
    let second = format!("{:?}", app.model.requests()[1]);
    assert!(
        second.contains(
            "step 3 'post': {{steps.lsit.output}} — no step named 'lsit'; did you mean 'list'?"
        ),
        "{second}"
    );
    assert_eq!(
        app.last_text(GROUP),
        "Here is the draft: tap Save to keep it."
    );
    let r = app
        .store
        .routine_by_name(GROUP, "shopping")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.publication, Publication::Draft);
    let preview = app
        .messenger
        .sent()
        .into_iter()
        .find(|o| o.html.contains("Draft playbook: shopping"))
        .expect("a preview");
    assert!(
        preview
            .html
            .contains("3. post (message): {{steps.list.output}}"),
        "{}",
        preview.html
    );
    assert!(
        preview.html.contains("Triggers: manual only"),
        "{}",
        preview.html
    );
    let data: Vec<&str> = preview.buttons[0].iter().map(|b| b.data.as_str()).collect();
    assert_eq!(data, [format!("pb:s:{}", r.id), format!("pb:c:{}", r.id)]);
    app.say(&group(), &alice(), "/routines").await;
    assert!(
        app.last_text(GROUP)
            .contains("• shopping (weekly list) — manual · draft"),
        "{}",
        app.last_text(GROUP)
    );

    // Bob neither asked nor administers: refused, still a draft
    app.press(&group(), &bob(), 100_001, data[0]).await;
    let toast = app
        .messenger
        .calls()
        .into_iter()
        .rev()
        .find_map(|c| match c {
            Recorded::Callback { text, .. } => text,
            _ => None,
        });
    assert_eq!(
        toast.as_deref(),
        Some("Only the member who asked for this draft or an admin can decide.")
    );
    let still = app.store.routine(r.id).await.unwrap().unwrap();
    assert_eq!(still.publication, Publication::Draft);

    // Alice saves: published; a second tap finds nothing pending
    app.press(&group(), &alice(), 100_001, data[0]).await;
    let saved = app.store.routine(r.id).await.unwrap().unwrap();
    assert_eq!(saved.publication, Publication::Published);
    assert!(app.messenger.calls().iter().any(|c| matches!(c,
        Recorded::Edit { html, .. } if html.contains("Saved: <b>shopping</b> is published"))));
    app.press(&group(), &alice(), 100_001, data[1]).await;
    assert!(app.store.routine(r.id).await.unwrap().is_some());

    // another draft, cancelled: gone
    app.say(&group(), &alice(), "@hearth_bot another one").await;
    let other = app
        .store
        .routine_by_name(GROUP, "other")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.publication, Publication::Draft);
    app.press(&group(), &alice(), 100_009, &format!("pb:c:{}", other.id))
        .await;
    assert!(app.store.routine(other.id).await.unwrap().is_none());
}

#[test]
fn cli_import_then_export_round_trips_through_the_binary() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("hearth.db").display()
    );
    rt.block_on(async {
        let store = hearth::store::Store::connect(&url, 1, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        store
            .upsert_chat(GROUP, "group", "Home", "UTC", t0())
            .await
            .unwrap();
        store
            .upsert_user(alice().id, "Alice", None, t0())
            .await
            .unwrap();
        store
            .ensure_member(GROUP, alice().id, true, t0())
            .await
            .unwrap();
    });
    let bin = env!("CARGO_BIN_EXE_hearth");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HEARTH_DATABASE__URL", &url)
            .output()
            .unwrap()
    };
    let chat = GROUP.to_string();
    for p in LIBRARY {
        let file = dir.path().join(format!("{}.toml", p.name));
        std::fs::write(&file, p.toml).unwrap();
        let out = run(&[
            "routines",
            "import",
            file.to_str().unwrap(),
            "--chat",
            &chat,
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.starts_with(&format!("routine {} created in chat {chat}", p.name)),
            "{said}"
        );
        let out = run(&["routines", "export", p.name, "--chat", &chat]);
        assert_eq!(out.status.code(), Some(0));
        let exported = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            exported,
            export_doc(&parse_doc(p.toml).unwrap()),
            "{}",
            p.name
        );
        // the export imports back and exports the same bytes
        std::fs::write(&file, &exported).unwrap();
        let out = run(&[
            "routines",
            "import",
            file.to_str().unwrap(),
            "--chat",
            &chat,
        ]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("updated"));
        let out = run(&["routines", "export", p.name, "--chat", &chat]);
        assert_eq!(String::from_utf8(out.stdout).unwrap(), exported);
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, TYPO.replace("prompt = \"Plan", "promt = \"Plan")).unwrap();
    let out = run(&["routines", "import", bad.to_str().unwrap(), "--chat", &chat]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("steps[1]: unknown key 'promt' — did you mean 'prompt'?"),
        "{err}"
    );
    std::fs::write(&bad, TYPO).unwrap();
    let out = run(&["routines", "import", bad.to_str().unwrap(), "--chat", &chat]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "step 3 'post': {{steps.lsit.output}} — no step named 'lsit'; did you mean 'list'?"
        ),
        "{err}"
    );
}

mod upload {
    //! `.toml` documents sent to the bot through the fake Bot API over HTTP (getFile and the
    //! file endpoint included).
    use std::time::Duration;

    use hearth::store::Publication;

    use super::TYPO;
    use crate::support::{
        fake_telegram::{Chat, FakeBotApi, User},
        tg::TgApp,
    };

    const GROUP_ID: i64 = -100_300;
    const WAIT: Duration = Duration::from_secs(10);

    fn alice() -> User {
        User::new(1, "Alice").with_username("alice")
    }
    fn bob() -> User {
        User::new(2, "Bob").with_username("bob")
    }

    async fn next_text(app: &TgApp, n: usize) -> String {
        let sent = app.fake.wait_for("sendMessage", n, WAIT).await;
        hearth::format::html_to_plain(sent[n - 1]["text"].as_str().unwrap_or_default())
    }

    #[tokio::test]
    async fn an_admin_document_is_saved_a_member_and_a_large_file_are_refused() {
        let app = TgApp::start_with(|c| c.access.admin_ids = vec![1]).await;
        let g = Chat::group(GROUP_ID, "Home");
        let good = TYPO.replace("lsit", "list");
        app.fake.add_file("f-good", good.as_bytes());
        app.fake.add_file("f-bad", TYPO.as_bytes());

        // Alice is the first member (an admin); Bob a member
        app.fake
            .push_update(FakeBotApi::text_message(0, g.clone(), alice(), 9, "hello"));
        // a member: refused, nothing downloaded
        app.fake.push_update(FakeBotApi::document_message(
            0,
            g.clone(),
            bob(),
            10,
            "f-good",
            "shopping.toml",
            good.len() as u64,
        ));
        assert_eq!(
            next_text(&app, 1).await,
            "Only a group admin can import a playbook document."
        );
        // an invalid document: every error, nothing saved
        app.fake.push_update(FakeBotApi::document_message(
            0,
            g.clone(),
            alice(),
            11,
            "f-bad",
            "shopping.toml",
            TYPO.len() as u64,
        ));
        assert_eq!(
            next_text(&app, 2).await,
            "Nothing was saved:\n• step 3 'post': {{steps.lsit.output}} — no step named 'lsit'; did you mean 'list'?"
        );
        assert!(app
            .store
            .routine_by_name(GROUP_ID, "shopping")
            .await
            .unwrap()
            .is_none());
        // over 64 KB: refused before any download
        app.fake.push_update(FakeBotApi::document_message(
            0,
            g.clone(),
            alice(),
            12,
            "f-huge",
            "huge.toml",
            70_000,
        ));
        assert_eq!(
            next_text(&app, 3).await,
            "huge.toml is 69 KB; a playbook document is at most 64 KB. Nothing was saved."
        );
        assert_eq!(
            app.fake.calls_to("getFile").len(),
            1,
            "only the invalid document was fetched"
        );
        // the admin's valid document
        app.fake.push_update(FakeBotApi::document_message(
            0,
            g.clone(),
            alice(),
            13,
            "f-good",
            "shopping.toml",
            good.len() as u64,
        ));
        assert_eq!(
            next_text(&app, 4).await,
            "Routine shopping saved (3 steps, published). Run it with /shopping."
        );
        let r = app
            .store
            .routine_by_name(GROUP_ID, "shopping")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.publication, Publication::Published);
        assert_eq!(r.owner_id, 1);
        assert_eq!(r.description, "weekly list");
        app.stop().await;
    }
}
