//! Web admin, the routines pages (issue 11, item 3): the list with every kind, filters, search
//! and figures; a routine's detail / edit through the chat's own save (inline errors, nothing
//! changed on an invalid edit, a recorded routine's recording kept); export → import; a broken
//! import; delete; who may see what; CSRF. Through the real boundaries: the admin router on a
//! real listener, reqwest (cookies by hand), the core over the test database with the real
//! migrations and the manual clock.
use chrono::{TimeZone, Utc};
use hearth::{
    routines::{
        doc::{doc_of, export_doc, parse_doc, save_doc},
        steps::StepKind,
        Actor,
    },
    store::{RunEnd, RunSource, RunStatus, SeedRun},
};
use reqwest::{
    multipart::{Form, Part},
    StatusCode,
};

use crate::support::{admin::*, *};

/// The contract's recorded routine (issue 10): three typed parameters, two tools, one confirmed.
const HANDOVER: &str = include_str!("../fixtures/handover.toml");

/// A two-step routine with one input.
const DIGEST: &str = r#"name = "digest"
description = "Weekly digest of the chores"
triggers = ["cron 0 18 * * 0"]

[[inputs]]
name = "focus"
description = "What to look at?"
required = false
default = "everything"

[[steps]]
name = "gather"
kind = "prompt"
prompt = "List the open chores about {{initial.focus}}."

[[steps]]
kind = "message"
text = "Digest: {{steps.gather.output}}"
"#;

/// Save a TOML document in Home as Alice (admin), through the chat's own save.
async fn import_doc(a: &AdminSite, toml: &str) -> i64 {
    let doc = parse_doc(toml).expect("valid TOML");
    save_doc(
        &a.app.hearth.svc,
        GROUP,
        Actor {
            user_id: alice().id,
            admin: true,
        },
        &doc,
    )
    .await
    .expect("saved")
    .routine
    .id
}

/// The routine's exported document (what must stay the same after a refused edit).
async fn export_of(a: &AdminSite, id: i64) -> String {
    let r = a.app.store.routine(id).await.unwrap().expect("routine");
    export_doc(&doc_of(&a.app.hearth.svc, &r).await.unwrap())
}

/// POST a form; (status, Location, body).
async fn post_form(
    a: &AdminSite,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let r = a
        .client
        .post(format!("{}{path}", a.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(body)
        .send()
        .await
        .unwrap();
    let loc = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status(), loc, r.text().await.unwrap())
}

/// Upload `file` to the import form (with `csrf` when given); (status, Location, body).
async fn upload(
    a: &AdminSite,
    chat: i64,
    cookie: &str,
    csrf: Option<&str>,
    file: Vec<u8>,
) -> (StatusCode, String, String) {
    let mut form = Form::new();
    if let Some(c) = csrf {
        form = form.text("csrf", c.to_string());
    }
    form = form.part(
        "file",
        Part::bytes(file)
            .file_name("routine.toml")
            .mime_str("application/toml")
            .unwrap(),
    );
    let r = a
        .client
        .post(format!("{}/admin/g/{chat}/routines/import", a.base))
        .header("cookie", cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let loc = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status(), loc, r.text().await.unwrap())
}

/// The `<tr>` of routine `name` in the list page.
fn row<'a>(html: &'a str, name: &str) -> &'a str {
    let at = html
        .find(&format!("<tr data-routine=\"{name}\">"))
        .unwrap_or_else(|| panic!("{name} not listed:\n{html}"));
    let end = html[at..].find("</tr>").unwrap() + at;
    &html[at..end]
}

/// The form of the handover detail page as a browser sends it unchanged, with `over` replacing
/// (or adding) fields.
fn handover_form<'a>(csrf: &'a str, over: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        ("csrf", csrf),
        (
            "description",
            "Move a member's chores to another member until a date and tell them",
        ),
        (
            "template",
            "Move all of {{from}}'s chores to {{to}} until {{until}} and tell them.",
        ),
        ("input.from.description", "Whose chores?"),
        ("input.from.required", "on"),
        ("input.from.default", ""),
        ("input.to.description", "Who takes them?"),
        ("input.to.required", "on"),
        ("input.to.default", ""),
        ("input.until.description", "Until when?"),
        ("input.until.required", "on"),
        ("input.until.default", ""),
        ("tool.chore_list", "on"),
        ("tool.chore_update", "on"),
        ("trigger.new", ""),
    ];
    for (k, v) in over {
        match f.iter_mut().find(|(fk, _)| fk == k) {
            Some(slot) => slot.1 = v,
            None => f.push((k, v)),
        }
    }
    f
}

#[tokio::test]
async fn the_list_shows_every_kind_with_figures_and_filters_and_searches() {
    let a = setup().await;
    a.app
        .say(&group(), &alice(), "/every 2h check the washing")
        .await;
    let handover = import_doc(&a, HANDOVER).await;
    let digest = import_doc(&a, DIGEST).await;
    // handover: 2 completed, 1 failed, a skipped and a silent fire (not counted as runs; the
    // silent one cost money); digest: one cancelled run (no recorded duration)
    let at = |h: u32| Utc.with_ymd_and_hms(2026, 11, 21, h, 30, 0).unwrap();
    let runs = [
        (handover, RunStatus::Completed, 8, 2_000, 0.01),
        (handover, RunStatus::Failed, 9, 4_000, 0.02),
        (handover, RunStatus::Completed, 10, 3_000, 0.005),
        (handover, RunStatus::Skipped, 11, 0, 0.0),
        (handover, RunStatus::Silent, 12, 500, 0.001),
        (digest, RunStatus::Cancelled, 7, 0, 0.25),
    ];
    for (routine_id, status, h, ms, cost) in runs {
        let id = a
            .app
            .store
            .seed_run(SeedRun {
                routine_id,
                chat_id: GROUP,
                started_by: alice().id,
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
        a.app
            .store
            .finish_run(
                id,
                RunEnd {
                    status,
                    reason: None,
                    started_at: at(h),
                    duration_ms: ms,
                    prompt_tokens: 10,
                    completion_tokens: 5,
                    cost_usd: cost,
                    output: None,
                },
            )
            .await
            .unwrap();
    }
    let c = a.sign_in(&alice()).await;
    let (status, _, page) = a.get("/admin/g/-1001/routines", Some(&c)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<table id=\"routines\">"), "{page}");
    assert!(page.contains("id=\"new-playbook\" href=\"/admin/g/-1001/routines/new\""));
    assert!(page.contains(
        "<form id=\"import\" method=\"post\" action=\"/admin/g/-1001/routines/import\" enctype=\"multipart/form-data\">"
    ));
    assert!(page.contains("<input type=\"file\" id=\"file\" name=\"file\""));
    let h = row(&page, "handover");
    assert!(
        h.contains(&format!(
            "<a class=\"routine\" href=\"/admin/g/-1001/routines/{handover}\">handover</a>"
        )),
        "{h}"
    );
    assert!(h.contains("<td class=\"kind\">recorded</td>"), "{h}");
    assert!(h.contains("<td class=\"num runs\">3</td>"), "{h}");
    assert!(h.contains("<td class=\"num success\">67%</td>"), "{h}");
    assert!(h.contains("<td class=\"num average\">3 s</td>"), "{h}");
    assert!(h.contains(">2026-11-21 10:30 UTC</time>"), "{h}");
    assert!(h.contains("<td class=\"num cost\">$0.0360</td>"), "{h}");
    let d = row(&page, "digest");
    assert!(d.contains("<td class=\"kind\">multi-step</td>"), "{d}");
    assert!(d.contains("<td class=\"num runs\">1</td>"), "{d}");
    assert!(d.contains("<td class=\"num success\">0%</td>"), "{d}");
    assert!(d.contains("<td class=\"num average\">—</td>"), "{d}");
    assert!(d.contains("<td class=\"num cost\">$0.2500</td>"), "{d}");
    let w = row(&page, "check_the_washing");
    assert!(w.contains("<td class=\"kind\">scheduled</td>"), "{w}");
    assert!(w.contains("<td class=\"num runs\">0</td>"), "{w}");
    assert!(w.contains("never"), "{w}");
    // filter by kind, search by name or description (any case)
    for (query, shown) in [
        ("?kind=recorded", vec!["handover"]),
        ("?kind=scheduled", vec!["check_the_washing"]),
        ("?kind=multi", vec!["digest"]),
        ("?q=washing", vec!["check_the_washing"]),
        ("?q=WEEKLY", vec!["digest"]),
        ("?q=chores&kind=recorded", vec!["handover"]),
        ("?q=chores", vec!["handover", "digest"]),
        (
            "?kind=bogus",
            vec!["handover", "digest", "check_the_washing"],
        ),
    ] {
        let (status, _, page) = a
            .get(&format!("/admin/g/-1001/routines{query}"), Some(&c))
            .await;
        assert_eq!(status, StatusCode::OK, "{query}");
        for name in ["handover", "digest", "check_the_washing"] {
            assert_eq!(
                page.contains(&format!("<tr data-routine=\"{name}\">")),
                shown.contains(&name),
                "{query}: {name}"
            );
        }
    }
    let (_, _, page) = a.get("/admin/g/-1001/routines?q=nothing", Some(&c)).await;
    assert!(
        page.contains("id=\"no-routines\">No routine matches."),
        "{page}"
    );
    // the detail page shows the same figures
    let (status, _, page) = a
        .get(&format!("/admin/g/-1001/routines/{handover}"), Some(&c))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<dd id=\"fig-runs\">3</dd>"), "{page}");
    assert!(page.contains("<dd id=\"fig-cost\">$0.0360</dd>"), "{page}");
}

#[tokio::test]
async fn the_detail_page_has_every_field_and_link() {
    let a = setup().await;
    let handover = import_doc(&a, HANDOVER).await;
    let digest = import_doc(&a, DIGEST).await;
    let c = a.sign_in(&alice()).await;
    let (status, _, page) = a
        .get(&format!("/admin/g/-1001/routines/{handover}"), Some(&c))
        .await;
    assert_eq!(status, StatusCode::OK);
    let base = format!("/admin/g/-1001/routines/{handover}");
    for needle in [
        format!("<form id=\"routine-form\" method=\"post\" action=\"{base}\">"),
        "<textarea id=\"description\" name=\"description\"".to_string(),
        // the template as members write it: bare parameters
        "Move all of {{from}}&#x27;s chores to {{to}} until {{until}} and tell them.</textarea>"
            .to_string(),
        "id=\"input-from-description\" name=\"input.from.description\" value=\"Whose chores?\""
            .to_string(),
        "id=\"input-from-required\" name=\"input.from.required\" value=\"on\" checked".to_string(),
        "id=\"input-until-default\" name=\"input.until.default\"".to_string(),
        "id=\"tool-chore_list\" name=\"tool.chore_list\" value=\"on\" checked".to_string(),
        "chore_update <span class=\"muted\">(confirmed before each call)</span>".to_string(),
        "id=\"trigger-new\" name=\"trigger.new\"".to_string(),
        "<button type=\"submit\" id=\"save\">".to_string(),
        format!("id=\"run-link\" href=\"{base}/run\""),
        format!("id=\"test-link\" href=\"{base}/test\""),
        format!("id=\"export\" href=\"{base}/export.toml\""),
        format!("<form method=\"post\" action=\"{base}/delete\">"),
        "<button type=\"submit\" id=\"delete\">".to_string(),
    ] {
        assert!(page.contains(&needle), "{needle} missing:\n{page}");
    }
    // every field has its label
    for id in [
        "description",
        "template",
        "input-from-description",
        "input-from-required",
        "input-from-default",
        "tool-chore_list",
        "trigger-new",
    ] {
        assert!(page.contains(&format!("<label for=\"{id}\"")), "{id}");
    }
    // a recorded routine has no step builder
    assert!(!page.contains("id=\"steps-link\""));
    // a multi-step routine: steps read-only with the builder link, triggers as fields, no template
    let (_, _, page) = a
        .get(&format!("/admin/g/-1001/routines/{digest}"), Some(&c))
        .await;
    assert!(
        page.contains(&format!(
            "id=\"steps-link\" href=\"/admin/g/-1001/routines/{digest}/steps\""
        )),
        "{page}"
    );
    assert!(!page.contains("id=\"template\""));
    assert!(page.contains("<ol id=\"steps-summary\""));
    assert!(
        page.contains("List the open chores about {{focus}}."),
        "{page}"
    );
    assert!(
        page.contains("id=\"trigger-1\" name=\"trigger.1\" value=\"cron 0 18 * * 0\""),
        "{page}"
    );
    assert!(
        page.contains(
            "id=\"input-focus-default\" name=\"input.focus.default\" value=\"everything\""
        ),
        "{page}"
    );
    assert!(!page.contains(
        "id=\"input-focus-required\" name=\"input.focus.required\" value=\"on\" checked"
    ));
}

#[tokio::test]
async fn editing_a_parameter_description_persists_and_keeps_the_recording() {
    let a = setup().await;
    let id = import_doc(&a, HANDOVER).await;
    let before = a.app.store.routine(id).await.unwrap().unwrap();
    let c = a.sign_in(&alice()).await;
    let path = format!("/admin/g/-1001/routines/{id}");
    let (_, _, page) = a.get(&path, Some(&c)).await;
    let csrf = csrf_of(&page);
    let form = handover_form(
        &csrf,
        &[("input.from.description", "Whose chores do we move?")],
    );
    let (status, loc, _) = post_form(&a, &path, &c, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(loc, format!("{path}?saved=1"));
    let (_, _, page) = a.get(&loc, Some(&c)).await;
    assert!(page.contains("id=\"saved\""), "{page}");
    assert!(
        page.contains("name=\"input.from.description\" value=\"Whose chores do we move?\""),
        "{page}"
    );
    // exactly that changed: the document is the original with the one description
    let mut expected = parse_doc(HANDOVER).unwrap();
    expected.definition.inputs[0].description = "Whose chores do we move?".into();
    let after = a.app.store.routine(id).await.unwrap().unwrap();
    assert_eq!(doc_of(&a.app.hearth.svc, &after).await.unwrap(), expected);
    assert_eq!(after.owner_id, before.owner_id);
    assert_eq!(after.source_turn_id, before.source_turn_id);
    // dropping a recorded tool, making `until` optional with a default, adding a trigger
    let form = handover_form(
        &csrf,
        &[
            ("input.from.description", "Whose chores do we move?"),
            ("input.until.default", "sunday"),
            ("trigger.new", "every 2h"),
        ],
    );
    // an unchecked box is not sent
    let form: Vec<(&str, &str)> = form
        .into_iter()
        .filter(|(k, _)| !["tool.chore_update", "input.until.required"].contains(k))
        .collect();
    let (status, _, body) = post_form(&a, &path, &c, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let doc = doc_of(
        &a.app.hearth.svc,
        &a.app.store.routine(id).await.unwrap().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(doc.triggers, vec!["every 2h".to_string()]);
    let until = &doc.definition.inputs[2];
    assert!(!until.required);
    assert_eq!(until.default.as_deref(), Some("sunday"));
    match &doc.definition.steps[0].kind {
        StepKind::Prompt { tools, .. } => {
            assert_eq!(tools.as_deref(), Some(&["chore_list".to_string()][..]))
        }
        k => panic!("{k:?}"),
    }
    // the recording (request, calls, confirm list) is untouched
    assert_eq!(
        doc.definition.recorded,
        parse_doc(HANDOVER).unwrap().definition.recorded
    );
    // a tool outside the recording cannot be added by the form
    let form = handover_form(&csrf, &[("tool.routine_delete", "on")]);
    let (status, _, _) = post_form(&a, &path, &c, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let doc = doc_of(
        &a.app.hearth.svc,
        &a.app.store.routine(id).await.unwrap().unwrap(),
    )
    .await
    .unwrap();
    match &doc.definition.steps[0].kind {
        StepKind::Prompt { tools, .. } => assert_eq!(
            tools.as_deref(),
            Some(&["chore_list".to_string(), "chore_update".to_string()][..])
        ),
        k => panic!("{k:?}"),
    }
}

#[tokio::test]
async fn an_invalid_edit_shows_the_errors_inline_and_changes_nothing() {
    let a = setup().await;
    let id = import_doc(&a, HANDOVER).await;
    let before = export_of(&a, id).await;
    let c = a.sign_in(&alice()).await;
    let path = format!("/admin/g/-1001/routines/{id}");
    let (_, _, page) = a.get(&path, Some(&c)).await;
    let csrf = csrf_of(&page);
    // the save's own rules: description length, a trigger that does not parse
    let long = "x".repeat(501);
    let form = handover_form(
        &csrf,
        &[("description", &long), ("trigger.new", "every banana")],
    );
    let (status, _, page) = post_form(&a, &path, &c, &form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(
        page.contains(
            "<p class=\"error\" id=\"error-description\">is 501 characters; the limit is 500</p>"
        ),
        "{page}"
    );
    assert!(
        page.contains("id=\"description\" name=\"description\" rows=\"2\" aria-invalid=\"true\" aria-describedby=\"error-description\""),
        "{page}"
    );
    assert!(
        page.contains(
            "value=\"every banana\" aria-invalid=\"true\" aria-describedby=\"error-trigger-1\""
        ),
        "{page}"
    );
    assert!(
        page.contains("<p class=\"error\" id=\"error-trigger-1\">&#x27;every banana&#x27;:"),
        "{page}"
    );
    // what was typed is kept in the form
    assert!(page.contains(&long));
    // `/routine_edit`'s template rules: an unknown placeholder
    let form = handover_form(
        &csrf,
        &[(
            "template",
            "Move all of {{form}}'s chores to {{to}} until {{until}}.",
        )],
    );
    let (status, _, page) = post_form(&a, &path, &c, &form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("<p class=\"error\" id=\"error-template\">{{form}} is not a parameter of this routine; its parameters are from, to, until</p>"),
        "{page}"
    );
    assert!(
        page.contains("id=\"template\" name=\"template\" rows=\"6\" aria-invalid=\"true\" aria-describedby=\"error-template\""),
        "{page}"
    );
    // … and a parameter no longer used
    let form = handover_form(
        &csrf,
        &[("template", "Move all chores to {{to}} until {{until}}.")],
    );
    let (status, _, page) = post_form(&a, &path, &c, &form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains(
            "id=\"error-template\">the parameter from is no longer used; keep {{from}} in it</p>"
        ),
        "{page}"
    );
    assert_eq!(export_of(&a, id).await, before);
}

#[tokio::test]
async fn export_then_import_round_trips_and_delete_removes() {
    let a = setup().await;
    let id = import_doc(&a, DIGEST).await;
    let c = a.sign_in(&alice()).await;
    let r = a
        .client
        .get(format!(
            "{}/admin/g/-1001/routines/{id}/export.toml",
            a.base
        ))
        .header("cookie", &c)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"digest.toml\""
    );
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/toml"));
    let exported = r.text().await.unwrap();
    assert_eq!(exported, export_of(&a, id).await);
    assert_eq!(parse_doc(&exported).unwrap(), parse_doc(DIGEST).unwrap());
    // delete (a POST with the CSRF token) through the routine service
    let (_, _, page) = a
        .get(&format!("/admin/g/-1001/routines/{id}"), Some(&c))
        .await;
    let csrf = csrf_of(&page);
    let (status, loc, _) = post_form(
        &a,
        &format!("/admin/g/-1001/routines/{id}/delete"),
        &c,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(loc, "/admin/g/-1001/routines?deleted=digest");
    assert!(a.app.store.routine(id).await.unwrap().is_none());
    let (_, _, page) = a.get(&loc, Some(&c)).await;
    assert!(page.contains("id=\"deleted\">Routine digest was deleted."));
    assert!(!page.contains("data-routine=\"digest\""));
    let (status, _, _) = a
        .get(&format!("/admin/g/-1001/routines/{id}"), Some(&c))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // import the export: the same document again
    let (status, loc, body) =
        upload(&a, GROUP, &c, Some(&csrf), exported.clone().into_bytes()).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let new_id: i64 = loc
        .strip_prefix("/admin/g/-1001/routines/")
        .expect("to the routine")
        .parse()
        .unwrap();
    assert_ne!(new_id, id);
    assert_eq!(export_of(&a, new_id).await, exported);
}

#[tokio::test]
async fn a_broken_import_shows_the_error_and_stores_nothing() {
    let a = setup().await;
    let c = a.sign_in(&alice()).await;
    let (_, _, page) = a.get("/admin/g/-1001/routines", Some(&c)).await;
    let csrf = csrf_of(&page);
    let big = format!(
        "name = \"big\"\ndescription = \"{}\"\n",
        "x".repeat(110 * 1024)
    );
    for (file, error) in [
        (
            "name = 'x\n".as_bytes().to_vec(),
            "document: TOML parse error at line 1",
        ),
        (
            b"name = \"x\"\n[[steps]]\nkind = \"prompt\"\npromt = \"hi\"\n".to_vec(),
            "steps[1]: unknown key &#x27;promt&#x27; — did you mean &#x27;prompt&#x27;?",
        ),
        (
            b"name = \"Bad Name\"\n[[steps]]\nkind = \"message\"\ntext = \"hi\"\n".to_vec(),
            "name: ",
        ),
        (big.into_bytes(), "the file is 111 KB; the limit is 100 KB"),
        (vec![0xff, 0xfe, 0x00], "the file is not UTF-8 text"),
        (Vec::new(), "choose a .toml file to import"),
    ] {
        let (status, _, body) = upload(&a, GROUP, &c, Some(&csrf), file).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}: {body}");
        assert!(
            body.contains("<p class=\"error\" id=\"error-file\">Nothing was imported:<br>"),
            "{body}"
        );
        assert!(body.contains(error), "{error} missing:\n{body}");
        assert!(
            body.contains("name=\"file\" accept=\".toml,application/toml,text/plain\" aria-invalid=\"true\" aria-describedby=\"error-file\""),
            "{body}"
        );
    }
    assert!(a
        .app
        .store
        .routines_of_chat(GROUP)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn other_groups_and_members_get_404_on_every_route() {
    let a = setup().await;
    let id = import_doc(&a, HANDOVER).await;
    let before = export_of(&a, id).await;
    // Bob administers Cabin but is only a member of Home; Carol is a member of Home
    for who in [bob(), carol()] {
        let c = a.sign_in(&who).await;
        let (_, _, page) = a.get("/admin", Some(&c)).await;
        let csrf = csrf_of(&page);
        for path in [
            "/admin/g/-1001/routines".to_string(),
            "/admin/g/-1001/routines?kind=recorded".to_string(),
            format!("/admin/g/-1001/routines/{id}"),
            format!("/admin/g/-1001/routines/{id}/export.toml"),
            "/admin/g/-1001/routines/import".to_string(),
            // the routine through a group Bob does administer
            format!("/admin/g/-1002/routines/{id}"),
            format!("/admin/g/-1002/routines/{id}/export.toml"),
        ] {
            let (status, _, body) = a.get(&path, Some(&c)).await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{path} for {}",
                who.first_name
            );
            assert!(!body.contains("handover"), "{path}");
        }
        for path in [
            format!("/admin/g/-1001/routines/{id}"),
            format!("/admin/g/-1001/routines/{id}/delete"),
            format!("/admin/g/-1002/routines/{id}"),
            format!("/admin/g/-1002/routines/{id}/delete"),
        ] {
            let form = handover_form(&csrf, &[("description", "hijacked")]);
            let (status, _, body) = post_form(&a, &path, &c, &form).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(!body.contains("handover"));
        }
        let (status, _, _) = upload(&a, GROUP, &c, Some(&csrf), HANDOVER.as_bytes().to_vec()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // Alice does not see Cabin
    let c = a.sign_in(&alice()).await;
    let (status, _, _) = a.get("/admin/g/-1002/routines", Some(&c)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(export_of(&a, id).await, before);
    assert_eq!(a.app.store.routines_of_chat(-1002).await.unwrap().len(), 0);
    // without a session: to sign-in
    for path in [
        "/admin/g/-1001/routines".to_string(),
        format!("/admin/g/-1001/routines/{id}"),
        format!("/admin/g/-1001/routines/{id}/export.toml"),
    ] {
        let (status, loc, _) = a.get(&path, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(loc, "/admin/signin");
    }
}

#[tokio::test]
async fn posts_without_the_csrf_token_are_refused() {
    let a = setup().await;
    let id = import_doc(&a, HANDOVER).await;
    let before = export_of(&a, id).await;
    let c = a.sign_in(&alice()).await;
    let path = format!("/admin/g/-1001/routines/{id}");
    for token in [
        "",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let form = handover_form(token, &[("description", "changed")]);
        let (status, _, _) = post_form(&a, &path, &c, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = post_form(&a, &format!("{path}/delete"), &c, &[("csrf", token)]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let form: Vec<(&str, &str)> = handover_form("x", &[("description", "changed")])
        .into_iter()
        .filter(|(k, _)| *k != "csrf")
        .collect();
    let (status, _, _) = post_form(&a, &path, &c, &form).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = upload(&a, GROUP, &c, None, DIGEST.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = upload(&a, GROUP, &c, Some("nope"), DIGEST.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(export_of(&a, id).await, before);
    assert_eq!(a.app.store.routines_of_chat(GROUP).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_single_prompt_routine_in_the_own_dm_is_edited_and_stays_single_prompt() {
    let a = setup().await;
    let me = alice();
    a.app.say(&dm(&me), &me, "/every 2h drink some water").await;
    let r = a
        .app
        .store
        .routines_of_chat(me.id)
        .await
        .unwrap()
        .pop()
        .expect("a routine in the DM");
    assert!(r.definition.is_none());
    let c = a.sign_in(&me).await;
    let list = format!("/admin/g/{}/routines", me.id);
    let (status, _, page) = a.get(&list, Some(&c)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(row(&page, &r.name).contains("<td class=\"kind\">scheduled</td>"));
    let path = format!("/admin/g/{}/routines/{}", me.id, r.id);
    let (_, _, page) = a.get(&path, Some(&c)).await;
    assert!(
        page.contains("name=\"template\" rows=\"6\">drink some water</textarea>"),
        "{page}"
    );
    assert!(
        page.contains("id=\"trigger-1\" name=\"trigger.1\" value=\"every 2h\""),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let (status, loc, body) = post_form(
        &a,
        &path,
        &c,
        &[
            ("csrf", &csrf),
            ("description", "Hydration"),
            ("template", "drink a glass of water"),
            ("trigger.1", "every 2h"),
            ("trigger.new", ""),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(loc, format!("{path}?saved=1"));
    let after = a.app.store.routine(r.id).await.unwrap().unwrap();
    assert_eq!(after.prompt, "drink a glass of water");
    assert_eq!(after.description, "Hydration");
    assert!(after.definition.is_none(), "still a single-prompt routine");
    // another member's session does not see Alice's DM
    let b = a.sign_in(&bob()).await;
    for p in [list.clone(), path.clone()] {
        let (status, _, _) = a.get(&p, Some(&b)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{p}");
    }
}
