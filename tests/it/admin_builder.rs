//! The playbook builder of the web admin (issue 11, item 3): a new multi-step routine built
//! through the form's buttons (add, fill, insert a variable, reorder, remove, save), the
//! variables offered at each step, inline validation errors (nothing stored), editing the steps
//! of an installed playbook, and the page's authorization (404 for another group's routine,
//! 403 without the CSRF token). Through the real boundaries: the admin router on a real
//! listener over in-memory SQLite with the real migrations; each POST sends what a browser
//! would send for the page the server drew (every field of the form plus the pressed button).
use reqwest::StatusCode;

use hearth::routines::steps::{Definition, InputSpec, InputType, Step, StepKind};

use crate::support::{admin::*, *};

/// The form of a builder page as a browser would submit it.
struct Page {
    path: String,
    body: String,
    fields: Vec<(String, String)>,
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(unescape(&tag[at..at + tag[at..].find('"')?]))
}

/// The successful controls of the page's form (buttons excluded), in document order.
fn form_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i..];
        let end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..end];
        if tag.starts_with("<input ") {
            let ty = attr(tag, "type").unwrap_or_else(|| "text".into());
            if let Some(name) = attr(tag, "name") {
                match ty.as_str() {
                    "checkbox" if tag.contains(" checked") => {
                        out.push((name, attr(tag, "value").unwrap_or("on".into())))
                    }
                    "checkbox" => {}
                    _ => out.push((name, attr(tag, "value").unwrap_or_default())),
                }
            }
        } else if tag.starts_with("<textarea ") {
            let close = rest.find("</textarea>").unwrap();
            let name = attr(tag, "name").unwrap();
            out.push((name, unescape(&rest[end + 1..close])));
        } else if tag.starts_with("<select ") {
            let close = rest.find("</select>").unwrap();
            let name = attr(tag, "name").unwrap();
            let options: Vec<&str> = rest[end..close].split("<option ").skip(1).collect();
            let pick = options
                .iter()
                .find(|o| o.contains(" selected>"))
                .or(options.first())
                .map(|o| attr(&format!(" {o}"), "value").unwrap_or_default())
                .unwrap_or_default();
            out.push((name, pick));
        }
        rest = &rest[1..];
    }
    out
}

/// The `value`s of the options of `<select id="{id}">`.
fn options_of(html: &str, id: &str) -> Vec<String> {
    let at = html
        .find(&format!("<select id=\"{id}\""))
        .unwrap_or_else(|| panic!("no select #{id}"));
    let close = at + html[at..].find("</select>").unwrap();
    html[at..close]
        .split("<option ")
        .skip(1)
        .map(|o| attr(&format!(" {o}"), "value").unwrap())
        .collect()
}

impl Page {
    fn from(path: &str, body: String) -> Page {
        let fields = form_fields(&body);
        Page {
            path: path.to_string(),
            body,
            fields,
        }
    }

    fn value(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no field {name} in {:?}", self.fields))
    }

    fn set(&mut self, name: &str, value: &str) -> &mut Self {
        match self.fields.iter_mut().find(|(k, _)| k == name) {
            Some(f) => f.1 = value.to_string(),
            None => panic!("no field {name} in {:?}", self.fields),
        }
        self
    }

    /// Press the button `action`: the next page (status, Location, page).
    async fn press(&self, a: &AdminSite, cookie: &str, action: &str) -> (StatusCode, String, Page) {
        let mut form: Vec<(&str, &str)> = self
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert!(
            self.body
                .contains(&format!("name=\"action\" value=\"{action}\"")),
            "no button {action}"
        );
        form.push(("action", action));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        let r = a
            .client
            .post(format!("{}{}", a.base, self.path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let loc = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        (status, loc, Page::from(&self.path, text))
    }

    /// [`Self::press`] expecting the page drawn again (200).
    async fn step(&self, a: &AdminSite, cookie: &str, action: &str) -> Page {
        let (status, _, p) = self.press(a, cookie, action).await;
        assert_eq!(status, StatusCode::OK, "{action}: {}", p.body);
        p
    }
}

async fn open(a: &AdminSite, cookie: &str, path: &str) -> Page {
    let (status, _, body) = a.get(path, Some(cookie)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    Page::from(path, body)
}

fn prompt_step(name: &str, prompt: &str) -> Step {
    Step {
        name: Some(name.into()),
        timeout: 60,
        require_approval: false,
        auto_approve: false,
        kind: StepKind::Prompt {
            prompt: prompt.into(),
            tools: None,
        },
    }
}

async fn definition(
    a: &AdminSite,
    chat: i64,
    name: &str,
) -> (hearth::store::RoutineRow, Definition) {
    let r = a
        .app
        .store
        .routine_by_name(chat, name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{name} not stored"));
    let def = serde_json::from_str(r.definition.as_deref().expect("multi-step")).unwrap();
    (r, def)
}

#[tokio::test]
async fn builds_a_three_step_playbook_through_the_form() {
    let a = setup().await;
    let c = a.sign_in(&alice()).await;
    let mut p = open(&a, &c, "/admin/g/-1001/routines/new").await;
    for id in [
        "id=\"name\"",
        "id=\"description\"",
        "id=\"inputs\"",
        "<ol id=\"step-list\">",
        "<select id=\"new-step-kind\"",
        "id=\"add-step\" name=\"action\" value=\"add\"",
        "id=\"save\"",
    ] {
        assert!(p.body.contains(id), "{id} missing");
    }
    // the new page starts without steps; `add` appends one of the chosen kind (prompt first)
    assert!(!p.body.contains("<li class=\"step\""));
    assert_eq!(p.value("new-step-kind"), "prompt");
    p = p.step(&a, &c, "add").await;
    assert_eq!(p.value("step-1-kind"), "prompt");
    assert!(p.body.contains("<label for=\"step-1-prompt\">"));

    // an initial input
    p = p.step(&a, &c, "add-input").await;
    p.set("name", "dinner_plan")
        .set("description", "Dinners and a list")
        .set("input-1-name", "preferences")
        .set("input-1-description", "Any preferences?")
        .set("step-1-name", "plan")
        .set(
            "step-1-prompt",
            "Propose five dinners for {{initial.preferences}}.",
        );
    // step 2 (prompt), step 3 (a wait, removed later), step 4 (message)
    p.set("new-step-kind", "prompt");
    p = p.step(&a, &c, "add").await;
    assert_eq!(
        p.value("step-1-prompt"),
        "Propose five dinners for {{initial.preferences}}."
    );
    assert_eq!(p.value("input-1-name"), "preferences");
    p.set("step-2-name", "list")
        .set("step-2-prompt", "Turn this into a shopping list:");
    // insert a variable from the select of step 2
    assert_eq!(
        options_of(&p.body, "step-2-prompt-var"),
        [
            "initial.preferences",
            "steps.plan.output",
            "chat.name",
            "date",
            "run.id"
        ]
    );
    p.set("step-2-prompt-var", "steps.plan.output");
    p = p.step(&a, &c, "insert:step-2-prompt").await;
    assert_eq!(
        p.value("step-2-prompt"),
        "Turn this into a shopping list: {{steps.plan.output}}"
    );
    p.set("new-step-kind", "wait");
    p = p.step(&a, &c, "add").await;
    assert_eq!(p.value("step-3-kind"), "wait");
    assert_eq!(p.value("step-3-duration"), "1h");
    p.set("new-step-kind", "message");
    p = p.step(&a, &c, "add").await;
    p.set("step-4-name", "post")
        .set("step-4-text", "Shopping list: {{steps.list.output}}");

    // reorder: the message up above the wait, then the wait down (no-op at the end), remove it
    p = p.step(&a, &c, "up:4").await;
    assert_eq!(p.value("step-3-kind"), "message");
    assert_eq!(
        p.value("step-3-text"),
        "Shopping list: {{steps.list.output}}"
    );
    assert_eq!(p.value("step-3-name"), "post");
    assert_eq!(p.value("step-4-kind"), "wait");
    assert!(p.body.contains("id=\"down-4\" disabled"));
    p = p.step(&a, &c, "remove:4").await;
    assert!(!p.body.contains("step-4-kind"));
    // the order survives a round trip down and up
    p = p.step(&a, &c, "down:1").await;
    assert_eq!(p.value("step-1-name"), "list");
    p = p.step(&a, &c, "up:2").await;
    assert_eq!(p.value("step-1-name"), "plan");

    // at step 3: the inputs and the outputs of steps 1 and 2, nothing of step 3 itself
    assert_eq!(
        options_of(&p.body, "step-3-text-var"),
        [
            "initial.preferences",
            "steps.plan.output",
            "steps.list.output",
            "chat.name",
            "date",
            "run.id"
        ]
    );
    assert!(!p.body.contains("steps.post.output"));
    // the inputs the steps use, listed
    let needed = &p.body[p.body.find("id=\"needed-inputs\"").unwrap()..];
    let needed = &needed[..needed.find("</ul>").unwrap()];
    assert!(needed.contains("preferences — declared"), "{needed}");

    assert_eq!(p.body.matches("<li class=\"step\"").count(), 3);
    let (status, loc, _) = p.press(&a, &c, "save").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (r, def) = definition(&a, GROUP, "dinner_plan").await;
    assert_eq!(loc, format!("/admin/g/-1001/routines/{}", r.id));
    assert_eq!(r.owner_id, alice().id);
    assert_eq!(r.description, "Dinners and a list");
    assert_eq!(
        def,
        Definition {
            concurrent: false,
            inputs: vec![InputSpec {
                name: "preferences".into(),
                description: "Any preferences?".into(),
                required: true,
                default: None,
                kind: InputType::Text,
                example: None,
            }],
            steps: vec![
                prompt_step("plan", "Propose five dinners for {{initial.preferences}}."),
                prompt_step(
                    "list",
                    "Turn this into a shopping list: {{steps.plan.output}}"
                ),
                Step {
                    name: Some("post".into()),
                    timeout: 60,
                    require_approval: false,
                    auto_approve: false,
                    kind: StepKind::Message {
                        text: "Shopping list: {{steps.list.output}}".into(),
                        to: None,
                    },
                },
            ],
            recorded: None,
        }
    );
}

#[tokio::test]
async fn an_invalid_draft_shows_inline_errors_and_stores_nothing() {
    let a = setup().await;
    let c = a.sign_in(&alice()).await;
    // a routine "weekly" exists already
    let mut p = open(&a, &c, "/admin/g/-1001/routines/new").await;
    p = p.step(&a, &c, "add").await;
    p.set("name", "weekly")
        .set("step-1-prompt", "Plan the week.");
    let (status, _, _) = p.press(&a, &c, "save").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let before = a.app.store.routines_of_chat(GROUP).await.unwrap().len();

    // no steps at all
    let mut p = open(&a, &c, "/admin/g/-1001/routines/new").await;
    p.set("name", "empty");
    let (status, _, bad) = p.press(&a, &c, "save").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains(
            "<p class=\"error\" id=\"error-step-list\">0 given; a routine has 1 to 20 steps</p>"
        ),
        "{}",
        bad.body
    );

    let mut p = open(&a, &c, "/admin/g/-1001/routines/new").await;
    p = p.step(&a, &c, "add").await;
    p = p.step(&a, &c, "add").await;
    p.set("name", "weekly")
        .set("step-1-name", "plan")
        .set("step-1-prompt", "  ")
        .set("step-2-name", "plan")
        .set("step-2-prompt", "Use {{steps.nope.output}}.");
    let (status, _, bad) = p.press(&a, &c, "save").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = |id: &str| -> String {
        let at = bad
            .body
            .find(&format!("<p class=\"error\" id=\"error-{id}\">"))
            .unwrap_or_else(|| panic!("no inline error for {id}: {}", bad.body));
        let text = &bad.body[at..];
        text[..text.find("</p>").unwrap()].to_string()
    };
    assert!(
        error("name").contains("already used in this chat"),
        "{}",
        error("name")
    );
    assert!(error("step-1-prompt").contains("prompt is empty"));
    assert!(
        error("step-2-prompt").contains("no step named &#x27;nope&#x27;"),
        "{}",
        error("step-2-prompt")
    );
    assert!(error("step-2-name").contains("another step is already named"));
    // the field points at its error
    assert!(bad.body.contains(
        "id=\"step-2-prompt\" name=\"step-2-prompt\" rows=\"3\" aria-describedby=\"error-step-2-prompt help-step-2-prompt\" aria-invalid=\"true\""
    ), "{}", bad.body);
    assert!(bad
        .body
        .contains("aria-describedby=\"error-name help-name\" aria-invalid=\"true\""));
    // the draft is kept as typed
    assert_eq!(bad.value("step-2-prompt"), "Use {{steps.nope.output}}.");
    assert_eq!(
        a.app.store.routines_of_chat(GROUP).await.unwrap().len(),
        before
    );

    // under a free name: the same validation as the chat (save_doc) refuses, nothing stored
    let mut p = bad;
    p.set("name", "fresh");
    let (status, _, bad) = p.press(&a, &c, "save").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!bad.body.contains("id=\"error-name\""));
    assert!(bad.body.contains("id=\"error-step-1-prompt\""));
    assert!(bad.body.contains("id=\"error-step-2-prompt\""));
    assert!(a
        .app
        .store
        .routine_by_name(GROUP, "fresh")
        .await
        .unwrap()
        .is_none());
    // a timeout that is not a number is refused next to its field
    let mut p = bad;
    p.set("step-1-prompt", "Plan.")
        .set("step-2-name", "use")
        .set("step-2-prompt", "Use {{steps.plan.output}}.")
        .set("step-2-timeout", "soon");
    let (status, _, bad) = p.press(&a, &c, "save").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("<p class=\"error\" id=\"error-step-2-timeout\">&#x27;soon&#x27; is not a whole number</p>"), "{}", bad.body);
    assert!(a
        .app
        .store
        .routine_by_name(GROUP, "fresh")
        .await
        .unwrap()
        .is_none());
    let mut p = bad;
    p.set("step-2-timeout", "120");
    let (status, _, _) = p.press(&a, &c, "save").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, def) = definition(&a, GROUP, "fresh").await;
    assert_eq!(def.steps[1].timeout, 120);
}

#[tokio::test]
async fn edits_the_steps_of_an_installed_playbook() {
    let a = setup().await;
    a.app
        .say(&group(), &bob(), "/playbook_install meal_plan")
        .await;
    let (r, before) = definition(&a, GROUP, "meal_plan").await;
    let triggers = a.app.store.routine_triggers(r.id).await.unwrap().len();
    let c = a.sign_in(&alice()).await;
    let path = format!("/admin/g/-1001/routines/{}/steps", r.id);
    let p = open(&a, &c, &path).await;
    assert!(
        !p.body.contains("id=\"name\""),
        "the name is not edited here"
    );
    assert_eq!(p.value("step-1-name"), "plan");
    assert_eq!(p.value("step-3-kind"), "approval");
    assert_eq!(p.value("step-3-on_reject"), "list");
    assert_eq!(p.value("step-5-tool"), "chore_create");
    assert_eq!(p.value("step-5-arg-title"), "Do the shopping rotate");
    assert_eq!(
        p.value("input-1-default"),
        before.inputs[0].default.clone().unwrap()
    );
    // the approval's reason is offered to the steps after it
    assert!(options_of(&p.body, "step-4-text-var").contains(&"steps.approve.reason".to_string()));

    // unchanged: saving gives back the same definition
    let (status, loc, _) = p.press(&a, &c, "save").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{loc}");
    assert_eq!(loc, format!("/admin/g/-1001/routines/{}", r.id));
    let (_, same) = definition(&a, GROUP, "meal_plan").await;
    assert_eq!(same, before);

    let mut p = open(&a, &c, &path).await;
    p.set(
        "step-1-prompt",
        "Propose three dinners. Preferences: {{initial.preferences}}.",
    );
    let (status, _, _) = p.press(&a, &c, "save").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (after_row, after) = definition(&a, GROUP, "meal_plan").await;
    let mut want = before.clone();
    want.steps[0].kind = StepKind::Prompt {
        prompt: "Propose three dinners. Preferences: {{initial.preferences}}.".into(),
        tools: None,
    };
    assert_eq!(after, want);
    assert_eq!(after_row.id, r.id);
    assert_eq!(after_row.owner_id, bob().id, "the owner stays");
    assert_eq!(
        a.app.store.routine_triggers(r.id).await.unwrap().len(),
        triggers
    );

    // removing the step the approval branches to is refused next to that branch
    let p = open(&a, &c, &path).await;
    let (status, _, bad) = p.press(&a, &c, "remove:2").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, bad) = bad.press(&a, &c, "save").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains("id=\"error-step-2-on_reject\""),
        "{}",
        bad.body
    );
    let (_, unchanged) = definition(&a, GROUP, "meal_plan").await;
    assert_eq!(unchanged, after);
}

#[tokio::test]
async fn another_groups_routine_is_404_and_a_post_without_csrf_is_403() {
    let a = setup().await;
    // Bob's playbook in Cabin, where he is the admin
    a.app
        .say(&cabin(), &bob(), "/playbook_install onboarding")
        .await;
    let (cabin_r, _) = definition(&a, -1002, "onboarding").await;
    let alice_c = a.sign_in(&alice()).await;
    for path in [
        format!("/admin/g/-1002/routines/{}/steps", cabin_r.id),
        format!("/admin/g/-1001/routines/{}/steps", cabin_r.id),
        "/admin/g/-1002/routines/new".to_string(),
        "/admin/g/-1001/routines/999999/steps".to_string(),
        "/admin/g/-1001/routines/x/steps".to_string(),
    ] {
        let (status, _, _) = a.get(&path, Some(&alice_c)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let page = open(&a, &alice_c, "/admin/g/-1001/routines/new").await;
    let page = page.step(&a, &alice_c, "add").await;
    let csrf = csrf_of(&page.body);
    let (status, _) = a
        .post(
            &format!("/admin/g/-1001/routines/{}/steps", cabin_r.id),
            Some(&alice_c),
            &[("csrf", &csrf), ("action", "save")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // a member who is not an admin sees nothing of the group's builder
    let carol_c = a.sign_in(&carol()).await;
    let (status, _, _) = a.get("/admin/g/-1001/routines/new", Some(&carol_c)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // without a session: sign in first
    let (status, loc, _) = a.get("/admin/g/-1001/routines/new", None).await;
    assert_eq!(
        (status, loc.as_str()),
        (StatusCode::SEE_OTHER, "/admin/signin")
    );

    // without (or with a wrong) CSRF token: 403 and nothing stored
    let mut p = page;
    p.set("name", "sneaky").set("step-1-prompt", "Hello.");
    for token in [None, Some("0".repeat(64))] {
        let mut form: Vec<(&str, &str)> = p
            .fields
            .iter()
            .filter(|(k, _)| k != "csrf")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(t) = &token {
            form.push(("csrf", t));
        }
        form.push(("action", "save"));
        let (status, _) = a
            .post("/admin/g/-1001/routines/new", Some(&alice_c), &form)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = a
        .post(
            &format!("/admin/g/-1002/routines/{}/steps", cabin_r.id),
            Some(&alice_c),
            &[("action", "save")],
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another group: 404 before the CSRF check"
    );
    assert!(a
        .app
        .store
        .routine_by_name(GROUP, "sneaky")
        .await
        .unwrap()
        .is_none());
    // with the token it saves
    let (status, _, _) = p.press(&a, &alice_c, "save").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(a
        .app
        .store
        .routine_by_name(GROUP, "sneaky")
        .await
        .unwrap()
        .is_some());
}

/// Every visible control of the page has a `<label for>`.
fn assert_labelled(html: &str) {
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i..];
        let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
        let control = tag.starts_with("<input ")
            || tag.starts_with("<select ")
            || tag.starts_with("<textarea ");
        if control && attr(tag, "type").as_deref() != Some("hidden") {
            let id = attr(tag, "id").unwrap_or_else(|| panic!("no id: {tag}"));
            assert!(
                html.contains(&format!("<label for=\"{id}\">")),
                "no label for #{id}"
            );
        }
        rest = &rest[1..];
    }
}

#[tokio::test]
async fn every_step_kind_is_built_with_labelled_fields() {
    let a = setup().await;
    a.app
        .say(&group(), &alice(), "/playbook_install meal_plan")
        .await;
    let c = a.sign_in(&alice()).await;
    let mut p = open(&a, &c, "/admin/g/-1001/routines/new").await;
    p = p.step(&a, &c, "add-input").await;
    for kind in [
        "prompt",
        "tool",
        "routine",
        "wait",
        "condition",
        "approval",
        "message",
    ] {
        p.set("new-step-kind", kind);
        p = p.step(&a, &c, "add").await;
    }
    assert_labelled(&p.body);
    p.set("name", "all_kinds")
        .set("input-1-name", "who")
        .set("input-1-type", "member")
        .set("step-1-name", "plan")
        .set("step-1-prompt", "Plan for {{initial.who}}")
        .set("step-2-tool", "chore_create")
        .set("step-3-routine", "meal_plan");
    // choosing a tool or a routine shows its arguments / inputs
    p = p.step(&a, &c, "refresh").await;
    assert_labelled(&p.body);
    assert_eq!(p.value("step-2-arg-title"), "");
    assert_eq!(p.value("step-3-input-preferences"), "");
    p.set("step-2-arg-title", "Shop for {{initial.who}}")
        .set("step-3-input-preferences", "{{steps.plan.output}}")
        .set("step-4-duration", "2h")
        .set("step-5-if_value", "{{steps.plan.output}}")
        .set("step-5-test", "contains")
        .set("step-5-test_value", "fish")
        .set("step-5-then", "end")
        .set("step-6-name", "gate")
        .set("step-6-text", "OK?")
        .set("step-6-on_reject", "plan")
        .set("step-6-max_loops", "2")
        .set("step-6-expires", "1d")
        .set("step-7-text", "Done {{steps.gate.reason}}")
        .set("step-7-to", "owner");
    p.fields
        .push(("step-7-require_approval".into(), "on".into()));
    let (status, _, page) = p.press(&a, &c, "save").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{}", page.body);
    let (_, def) = definition(&a, GROUP, "all_kinds").await;
    let toml = hearth::routines::doc::export_doc(&hearth::routines::steps::RoutineDoc {
        name: "all_kinds".into(),
        description: String::new(),
        status: "published".into(),
        triggers: vec![],
        quiet: false,
        definition: def,
    });
    assert_eq!(
        toml,
        r#"name = "all_kinds"

[[inputs]]
name = "who"
type = "member"

[[steps]]
name = "plan"
kind = "prompt"
prompt = "Plan for {{initial.who}}"

[[steps]]
kind = "tool"
tool = "chore_create"

[steps.args]
title = "Shop for {{initial.who}}"

[[steps]]
kind = "routine"
routine = "meal_plan"

[steps.inputs]
preferences = "{{steps.plan.output}}"

[[steps]]
kind = "wait"
duration = "2h"

[[steps]]
kind = "condition"
then = "end"

[steps.if]
value = "{{steps.plan.output}}"
contains = "fish"

[[steps]]
name = "gate"
kind = "approval"
text = "OK?"
on_reject = "plan"
max_loops = 2
expires = "1d"

[[steps]]
require_approval = true
kind = "message"
text = "Done {{steps.gate.reason}}"
to = "owner"
"#
    );
}

#[tokio::test]
async fn builds_a_personal_playbook_in_the_users_own_dm() {
    let a = setup().await;
    let c = a.sign_in(&alice()).await;
    let path = format!("/admin/g/{}/routines/new", alice().id);
    let mut p = open(&a, &c, &path).await;
    p = p.step(&a, &c, "add").await;
    p = p.step(&a, &c, "add").await;
    p.set("name", "my_day")
        .set("step-1-name", "plan")
        .set("step-1-prompt", "Plan my day.")
        .set("step-2-prompt", "Shorten: {{steps.plan.output}}");
    let (status, loc, _) = p.press(&a, &c, "save").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (r, def) = definition(&a, alice().id, "my_day").await;
    assert_eq!(loc, format!("/admin/g/{}/routines/{}", alice().id, r.id));
    assert_eq!(def.steps.len(), 2);
    // Alice's DM is not a page for Bob
    let (status, _, _) = a
        .get(
            &format!("/admin/g/{}/routines/{}/steps", alice().id, r.id),
            Some(&a.sign_in(&bob()).await),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
