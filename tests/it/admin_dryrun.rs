//! The web admin's test runner (issue 11): `GET|POST /admin/g/{chat}/routines/{rid}/test` dry-runs
//! a routine through the real agent and a scripted model over a real listener: read-only tools
//! run, every other call is listed with its exact arguments and never made, nothing is posted
//! (the recording messenger sees nothing), no run row is written, the model's tokens are recorded
//! as a `dry_run` turn.
use hearth::{
    routines::{self, dryrun::NOT_EXECUTED, CreateRequest},
    store::{RoutineRow, ToolCallStatus},
    testkit::Script,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{admin::*, *};

/// Save a routine `name` in `chat` owned by `owner` whose definition is `def` (`None`: a
/// single-prompt routine over `prompt`).
async fn save(
    a: &AdminSite,
    chat: i64,
    owner: i64,
    name: &str,
    prompt: &str,
    def: Option<Value>,
) -> RoutineRow {
    let c = routines::create(
        &a.app.hearth.svc,
        CreateRequest {
            chat_id: chat,
            chat_zone: "UTC".parse().unwrap(),
            owner_id: owner,
            name: Some(name.into()),
            prompt: prompt.into(),
            triggers: vec!["event member_joined".into()],
            quiet: false,
            max_ticks: None,
            max_runs_per_day: None,
        },
    )
    .await
    .unwrap();
    if let Some(def) = def {
        let _: routines::steps::Definition = serde_json::from_value(def.clone()).unwrap();
        a.app
            .store
            .set_routine_definition(c.routine.id, Some(&def.to_string()), false)
            .await
            .unwrap();
    }
    a.app.store.routine(c.routine.id).await.unwrap().unwrap()
}

/// The text of a page as a browser shows it (minijinja escapes `& < > " ' /`).
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The part of `html` from the element with `id` to the end of its first `</table>` / `</ol>`.
fn section<'h>(html: &'h str, id: &str, end: &str) -> &'h str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let to = html[at..].find(end).map_or(html.len(), |e| at + e);
    &html[at..to]
}

/// POST the test form with `inputs`: (status, page).
async fn post_test(
    a: &AdminSite,
    path: &str,
    cookie: &str,
    csrf: &str,
    inputs: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut form: Vec<(String, String)> = vec![("csrf".into(), csrf.into())];
    for (k, v) in inputs {
        form.push((format!("input.{k}"), v.to_string()));
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let r = a
        .client
        .post(format!("{}{path}", a.base))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

fn playbook() -> Value {
    json!({
        "inputs": [{"name": "who", "description": "whose chores", "type": "member"}],
        "steps": [
            {"name": "plan", "kind": "prompt", "prompt": "Give {{initial.who}} a dishes chore."},
            {"kind": "wait", "duration": "2h"},
            {"name": "gate", "kind": "approval", "text": "Fine? {{steps.plan.output}}"},
            {"kind": "condition", "if": {"value": "{{steps.plan.output}}", "contains": "dishes"}, "then": "tell", "else": "end"},
            {"name": "skipped", "kind": "message", "text": "never"},
            {"name": "tell", "kind": "message", "text": "Done: {{steps.plan.output}}"},
            {"kind": "tool", "tool": "chore_create", "args": {"title": "Check on {{initial.who}}"}}
        ]
    })
}

#[tokio::test]
async fn a_dry_run_runs_read_only_calls_lists_the_others_and_changes_nothing() {
    let a = setup_with(vec![
        Script::Tools(vec![
            ("chore_list".into(), "{}".into()),
            (
                "chore_create".into(),
                r#"{"title":"Dishes","assignee":"Bob","due":"tomorrow"}"#.into(),
            ),
        ]),
        Script::Text("Bob got the dishes chore.".into()),
    ])
    .await;
    let r = save(&a, GROUP, alice().id, "dishes", "multi", Some(playbook())).await;
    let c = a.sign_in(&alice()).await;
    let path = format!("/admin/g/{GROUP}/routines/{}/test", r.id);

    // the form: one field per input, the button
    let (status, _, html) = a.get(&path, Some(&c)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(r#"<label for="input-who">"#), "{html}");
    assert!(
        html.contains(r#"id="input-who" name="input.who""#),
        "{html}"
    );
    assert!(html.contains(r#"id="start-test""#), "{html}");
    assert!(!html.contains(r#"id="dry-run""#));
    let csrf = csrf_of(&html);

    let sent_before = a.app.messenger.calls().len();
    let chores_before = a.app.store.open_chores(GROUP).await.unwrap().len();
    let (status, html) = post_test(&a, &path, &c, &csrf, &[("who", "Bob")]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let page = unescape(&html);

    // the destructive (writing) call is listed with its exact arguments, and was not made
    let would = section(&page, "would-call", "</table>");
    assert!(would.contains("<code>chore_create</code>"), "{would}");
    assert!(
        would.contains("\"title\": \"Dishes\"")
            && would.contains("\"assignee\": \"Bob\"")
            && would.contains("\"due\": \"tomorrow\""),
        "pretty JSON arguments: {would}"
    );
    // the tool step's call too, with its rendered argument
    assert!(
        would.contains("\"title\": \"Check on Bob\""),
        "the tool step's call: {would}"
    );
    assert!(!would.contains("chore_list"), "{would}");
    // the read-only call ran and its result is shown
    let read = section(&page, "read-calls", "</table>");
    assert!(read.contains("<code>chore_list</code>"), "{read}");
    assert!(read.contains("\"chores\""), "its result: {read}");
    // the model was told the call was not made, and answered on
    let reqs = a.app.model.requests();
    assert_eq!(reqs.len(), 2, "one turn, two model calls");
    assert!(
        format!("{:?}", reqs[1]).contains(NOT_EXECUTED),
        "{:?}",
        reqs[1]
    );
    // nothing happened: no chore, no message, no run
    assert_eq!(
        a.app.store.open_chores(GROUP).await.unwrap().len(),
        chores_before,
        "no chore was created"
    );
    assert_eq!(
        a.app.messenger.calls().len(),
        sent_before,
        "nothing was sent: {:?}",
        &a.app.messenger.calls()[sent_before..]
    );
    assert!(
        a.app.store.routine_runs(r.id, 10).await.unwrap().is_empty(),
        "no run row"
    );
    // the tokens count: a turn recorded as a dry run, the withheld call `held`
    let turns = a.app.store.turns(GROUP).await.unwrap();
    let turn = turns
        .iter()
        .find(|t| t.source == "dry_run")
        .expect("the dry run's turn is recorded");
    assert!(turn.prompt_tokens > 0 && turn.completion_tokens > 0);
    // … and is no task of Alice's that /save or a suggestion could pick up
    assert!(a
        .app
        .store
        .tool_turns_of(GROUP, alice().id, 10)
        .await
        .unwrap()
        .is_empty());
    let calls = a.app.store.tool_calls(turn.id).await.unwrap();
    let statuses: Vec<(&str, ToolCallStatus)> =
        calls.iter().map(|c| (c.name.as_str(), c.status)).collect();
    assert_eq!(
        statuses,
        [
            ("chore_list", ToolCallStatus::Ran),
            ("chore_create", ToolCallStatus::Held)
        ]
    );

    // every step, outputs flowing: the wait not waited, the gate not asked, the condition
    // evaluated, the message shown and not sent
    let steps = section(&page, "dry-steps", "</ol>");
    assert_eq!(steps.matches("<li class=\"step\"").count(), 7, "{steps}");
    assert!(steps.contains("would wait 2h (not waited)"), "{steps}");
    assert!(
        steps.contains("would ask any member other than Alice (taken as approved)"),
        "{steps}"
    );
    assert!(steps.contains("then → step 6 'tell'"), "{steps}");
    assert!(
        steps.contains("<pre class=\"output\">Done: Bob got the dishes chore.</pre>"),
        "step 1's output reached the message: {steps}"
    );
    assert!(
        steps.contains("would post to the chat (not sent)"),
        "{steps}"
    );
    assert!(
        steps.contains("data-status=\"not_reached\""),
        "the branch skipped step 5: {steps}"
    );
    assert!(page.contains("It would go through to the end."), "{page}");
}

#[tokio::test]
async fn the_test_page_is_only_for_the_chat_s_admins_and_posts_need_the_csrf_token() {
    let a = setup().await;
    let home = save(&a, GROUP, alice().id, "home_one", "say hi", None).await;
    let cabin = save(&a, -1002, bob().id, "cabin_one", "say hi", None).await;
    let c = a.sign_in(&alice()).await;
    // another group's page, and another group's routine under this group's path: 404
    for path in [
        format!("/admin/g/-1002/routines/{}/test", cabin.id),
        format!("/admin/g/{GROUP}/routines/{}/test", cabin.id),
        format!("/admin/g/{GROUP}/routines/999999/test"),
        format!("/admin/g/{GROUP}/routines/x/test"),
    ] {
        let (status, _, _) = a.get(&path, Some(&c)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let path = format!("/admin/g/{GROUP}/routines/{}/test", home.id);
    // without a session: to sign-in
    let (status, loc, _) = a.get(&path, None).await;
    assert_eq!(
        (status, loc.as_str()),
        (StatusCode::SEE_OTHER, "/admin/signin")
    );
    // a POST without (or with a wrong) CSRF token: 403, no model call, nothing sent
    let sent = a.app.messenger.calls().len();
    let (status, _) = a.post(&path, Some(&c), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = a.post(&path, Some(&c), &[("csrf", &"0".repeat(64))]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // and another group's routine with a valid token: 404
    let (_, _, html) = a.get(&path, Some(&c)).await;
    let csrf = csrf_of(&html);
    let (status, _) = a
        .post(
            &format!("/admin/g/{GROUP}/routines/{}/test", cabin.id),
            Some(&c),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(a.app.model.calls(), 0, "no model call");
    assert_eq!(a.app.messenger.calls().len(), sent);
}

#[tokio::test]
async fn a_single_prompt_routine_shows_the_answer_it_would_post_and_bad_inputs_are_shown_inline() {
    let a = setup_with(vec![Script::Text("Good morning, Home!".into())]).await;
    let single = save(&a, GROUP, alice().id, "morning", "Say good morning", None).await;
    let multi = save(&a, GROUP, alice().id, "dishes", "multi", Some(playbook())).await;
    let c = a.sign_in(&alice()).await;
    let sent = a.app.messenger.calls().len();

    let path = format!("/admin/g/{GROUP}/routines/{}/test", single.id);
    let (_, _, html) = a.get(&path, Some(&c)).await;
    assert!(html.contains("This routine takes no inputs."), "{html}");
    let csrf = csrf_of(&html);
    let (status, html) = post_test(&a, &path, &c, &csrf, &[]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let page = unescape(&html);
    assert!(
        page.contains("<pre class=\"output\">Good morning, Home!</pre>"),
        "{page}"
    );
    assert!(page.contains("would post the answer to the chat"), "{page}");
    assert!(
        section(&page, "would-call", "</table>").contains("None: no step would change anything"),
        "{page}"
    );
    assert_eq!(a.app.messenger.calls().len(), sent, "nothing was posted");
    assert!(a
        .app
        .store
        .routine_runs(single.id, 10)
        .await
        .unwrap()
        .is_empty());

    // a member input that is no member: shown next to its field, nothing run
    let path = format!("/admin/g/{GROUP}/routines/{}/test", multi.id);
    let calls = a.app.model.calls();
    let (status, html) = post_test(&a, &path, &c, &csrf, &[("who", "Zed")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains(r#"id="error-input-who""#), "{html}");
    assert!(html.contains(r#"aria-invalid="true""#), "{html}");
    assert!(
        html.contains(r#"aria-describedby="error-input-who"#),
        "{html}"
    );
    assert!(html.contains(r#"value="Zed""#), "the value is kept: {html}");
    assert!(!html.contains(r#"id="dry-run""#));
    // a missing required input likewise
    let (status, html) = post_test(&a, &path, &c, &csrf, &[("who", " ")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("who is required"), "{html}");
    assert_eq!(a.app.model.calls(), calls, "no model call for bad inputs");
}

#[tokio::test]
async fn a_recorded_routine_s_dry_run_offers_only_its_tools_and_a_child_routine_runs_dry_too() {
    let a = setup_with(vec![
        Script::Tools(vec![
            ("chore_create".into(), r#"{"title":"Sneaky"}"#.into()),
            (
                "chore_update".into(),
                r#"{"chore":"Dishes","action":"assign","value":"@bob"}"#.into(),
            ),
        ]),
        Script::Text("Moved the dishes to Bob.".into()),
        Script::Text("Hello from the helper.".into()),
    ])
    .await;
    let helper = save(&a, GROUP, alice().id, "helper", "Say hello", None).await;
    let def = json!({
        "steps": [
            {"name": "move", "kind": "prompt", "prompt": "Move the dishes to Bob.", "tools": ["chore_list", "chore_update"]},
            {"name": "hello", "kind": "routine", "routine": "helper"},
            {"kind": "message", "to": "owner", "text": "{{steps.move.output}} / {{steps.hello.output}}"}
        ],
        "recorded": {"request": "move the dishes to Bob", "confirm": ["chore_update"],
                     "calls": [{"tool": "chore_update", "keys": ["action", "chore", "value"]}]}
    });
    let r = save(&a, GROUP, alice().id, "handover", "recorded", Some(def)).await;
    let c = a.sign_in(&alice()).await;
    let path = format!("/admin/g/{GROUP}/routines/{}/test", r.id);
    let (_, _, html) = a.get(&path, Some(&c)).await;
    let csrf = csrf_of(&html);
    let sent = a.app.messenger.calls().len();
    let (status, html) = post_test(&a, &path, &c, &csrf, &[]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let page = unescape(&html);

    // the replay's limits hold in the dry run: only its tools are offered, another is refused
    let mut offered: Vec<&str> = a.app.model.tools_seen()[0].iter().map(|t| t.name).collect();
    offered.sort();
    assert_eq!(offered, ["chore_list", "chore_update"]);
    let would = section(&page, "would-call", "</table>");
    assert!(would.contains("<code>chore_update</code>"), "{would}");
    assert!(would.contains("\"value\": \"@bob\""), "{would}");
    assert!(!would.contains("chore_create"), "{would}");
    let read = section(&page, "read-calls", "</table>");
    assert!(
        read.contains("<code>chore_create</code>") && read.contains("<td>refused</td>"),
        "{read}"
    );
    assert!(
        read.contains("not allowed: this routine may only use"),
        "{read}"
    );

    // the child routine dry-runs nested; its answer flows back as the step's output
    let steps = section(&page, "dry-steps", "</ol>");
    assert!(
        steps.contains("step 2 'hello' › 'helper' step 1"),
        "{steps}"
    );
    assert!(
        steps.contains("would post the answer to the chat"),
        "{steps}"
    );
    assert!(
        steps.contains(
            "<pre class=\"output\">Moved the dishes to Bob. / Hello from the helper.</pre>"
        ),
        "{steps}"
    );
    assert!(
        steps.contains("would post to Alice's direct messages (not sent)"),
        "{steps}"
    );
    assert_eq!(a.app.messenger.calls().len(), sent, "nothing was sent");
    for id in [r.id, helper.id] {
        assert!(a.app.store.routine_runs(id, 10).await.unwrap().is_empty());
    }
    assert!(a.app.store.open_chores(GROUP).await.unwrap().is_empty());
}
