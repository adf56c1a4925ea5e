//! The web admin's overview and approvals pages (issue 11, item 3 "Overview" and "Approvals",
//! item 4 plots): real numbers from chores, requests, runs and turns made through the chat and
//! the store, the three inline SVG plots with their titles and the counts they draw, the audit
//! trail (button vs text), and another group's pages are 404.
use chrono::Duration;
use hearth::{
    clock::Clock,
    routines::{self, CreateRequest},
    store::{NewRun, NewTurn, RunEnd, RunSource, RunStatus},
};
use reqwest::StatusCode;

use crate::support::{admin::*, *};

/// The text of `<figure id="{id}" …>…</figure>` in `html`.
fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<figure id=\"{id}\""))
        .unwrap_or_else(|| panic!("no figure {id}"));
    let end = html[start..].find("</figure>").unwrap() + start;
    &html[start..end]
}

/// The text of `<section id="{id}" …>…</section>` in `html`.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\""))
        .unwrap_or_else(|| panic!("no section {id}"));
    let end = html[start..].find("</section>").unwrap() + start;
    &html[start..end]
}

/// Bars (and the legend swatch) of colour `hex` in an SVG.
fn fills(svg: &str, hex: &str) -> usize {
    svg.matches(&format!("fill=\"{hex}\"")).count()
}

/// Bob and Carol say they did a chore each; Alice approves Bob's by button and Carol's by
/// text; Bob's third claim stays pending (and overdue).
async fn chores_and_requests(a: &AdminSite) {
    let app = &a.app;
    for c in ["Dishes", "Bins", "Vacuum"] {
        app.say(&group(), &alice(), &format!("/addchore {c}")).await;
    }
    app.say(&group(), &bob(), "/done dishes").await;
    app.say(&group(), &carol(), "/done bins").await;
    let wf1 = app.store.workflow(1).await.unwrap().expect("request 1");
    assert_eq!(wf1.target_title, "Dishes");
    let msg = wf1.notice_message_id.expect("request message");
    app.press(&group(), &alice(), msg, "wf:a:1").await;
    app.say(&group(), &alice(), "approve").await;
    assert_eq!(
        app.store
            .workflow(2)
            .await
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "approved"
    );
    app.say(&group(), &bob(), "/done vacuum").await;
    let vacuum = app
        .store
        .open_chores(GROUP)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.title == "Vacuum")
        .unwrap();
    let edit = hearth::store::ChoreEdit {
        next_due: Some(Some(app.clock.now() - Duration::hours(3))),
        ..Default::default()
    };
    assert!(app
        .store
        .edit_chore(vacuum.id, &edit, app.clock.now())
        .await
        .unwrap());
}

/// A routine with six runs (3 completed and 1 failed today, 2 silent yesterday) and two turns.
async fn runs_and_turns(a: &AdminSite) {
    let app = &a.app;
    let c = routines::create(
        &app.hearth.svc,
        CreateRequest {
            chat_id: GROUP,
            chat_zone: "UTC".parse().unwrap(),
            owner_id: alice().id,
            name: Some("plants".into()),
            prompt: "remind us to water the plants".into(),
            triggers: vec!["event member_joined".into()],
            quiet: true,
            max_ticks: None,
            max_runs_per_day: None,
        },
    )
    .await
    .unwrap();
    let now = app.clock.now();
    let runs = [
        (RunStatus::Completed, 0),
        (RunStatus::Completed, 0),
        (RunStatus::Completed, 0),
        (RunStatus::Failed, 0),
        (RunStatus::Silent, 1),
        (RunStatus::Silent, 1),
    ];
    for (status, days_ago) in runs {
        let at = now - Duration::days(days_ago) - Duration::minutes(5);
        let id = app
            .store
            .insert_run(NewRun {
                routine_id: c.routine.id,
                trigger_id: None,
                source: RunSource::Manual,
                catch_up: false,
                status: RunStatus::Pending,
                reason: None,
                input: None,
                scheduled_for: None,
                started_at: at,
                chat_id: Some(GROUP),
                started_by: Some(alice().id),
                snapshot: None,
                parent_run_id: None,
                depth: 0,
            })
            .await
            .unwrap();
        app.store
            .finish_run(
                id,
                RunEnd {
                    status,
                    reason: None,
                    started_at: at,
                    duration_ms: 1500,
                    prompt_tokens: 10,
                    completion_tokens: 5,
                    cost_usd: 0.001,
                    output: None,
                },
            )
            .await
            .unwrap();
    }
    for (source, days_ago, p, c) in [("message", 0, 1000, 200), ("routine", 1, 500, 100)] {
        app.store
            .record_turn(NewTurn {
                chat_id: GROUP,
                source,
                model: "test-model",
                prompt_tokens: p,
                completion_tokens: c,
                steps: 1,
                outcome: "ok",
                started_at: now - Duration::days(days_ago),
                duration_ms: 900,
                reply_text: None,
                actor_id: None,
                request: None,
                calls: &[],
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_overview_shows_the_groups_real_numbers_and_plots() {
    let a = setup().await;
    chores_and_requests(&a).await;
    runs_and_turns(&a).await;
    let c = a.sign_in(&alice()).await;
    let (status, _, html) = a.get("/admin/g/-1001", Some(&c)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.len() < 100 * 1024,
        "page weight {} bytes (HTML + SVG, no script)",
        html.len()
    );

    // the cards and sections
    assert!(html.contains("<dt>Open chores</dt><dd>1</dd>"), "{html}");
    assert!(html.contains("<dt>Overdue</dt><dd>1</dd>"));
    assert!(html.contains("<dt>Pending approvals</dt><dd>1</dd>"));
    let members = section(&html, "members");
    for n in ["Alice", "Bob", "Carol"] {
        assert!(members.contains(n), "{members}");
    }
    let chores = section(&html, "chores");
    assert!(
        chores.contains("Vacuum") && chores.contains("overdue"),
        "{chores}"
    );
    assert!(
        !chores.contains("Dishes"),
        "done chores are not open: {chores}"
    );
    let pending = section(&html, "approvals-pending");
    assert!(
        pending.contains("Vacuum") && pending.contains("Bob"),
        "{pending}"
    );
    assert!(section(&html, "routines-active").contains("plants"));
    assert_eq!(
        section(&html, "runs-recent")
            .matches("class=\"run\"")
            .count(),
        6
    );

    // runs per day by status: today 3 completed + 1 failed, yesterday 2 silent
    let runs = figure(&html, "plot-runs");
    assert!(runs.contains("<svg ") && runs.contains("role=\"img\""));
    assert!(runs.contains("<title id=\"plot-runs-title\">Runs per day by status"));
    assert!(
        runs.contains("6 runs in the last 30 days: 3 completed, 1 failed, 2 silent."),
        "{runs}"
    );
    // one bar per day and status with runs, plus its legend swatch
    assert_eq!(fills(runs, "#009E73"), 2, "completed");
    assert_eq!(fills(runs, "#D55E00"), 2, "failed");
    assert_eq!(fills(runs, "#56B4E9"), 2, "silent");
    assert_eq!(
        fills(runs, "#969696"),
        1,
        "cancelled: the legend swatch only"
    );
    assert!(
        runs.contains("<td>3</td><td>1</td>"),
        "table of numbers: {runs}"
    );

    // tokens and cost per day: every turn, the silent run's included
    let usage = figure(&html, "plot-usage");
    assert!(usage.contains("<title id=\"plot-usage-title\">"));
    assert!(
        usage.contains("1800 tokens (1500 prompt, 300 completion) in 2 turns"),
        "{usage}"
    );
    assert_eq!(fills(usage, "#0072B2"), 2 + 1, "prompt bars on two days");

    // chores done per member per week
    let chores_plot = figure(&html, "plot-chores");
    assert!(chores_plot.contains("<title id=\"plot-chores-title\">"));
    assert!(
        chores_plot.contains("2 chores done in the last 8 weeks: Bob 1, Carol 1."),
        "{chores_plot}"
    );
    for p in [runs, usage, chores_plot] {
        assert!(p.contains("<figcaption"));
        assert!(!p.contains("No data in this period"));
    }
}

#[tokio::test]
async fn an_empty_group_still_draws_its_plots() {
    let a = setup().await;
    let c = a.sign_in(&alice()).await;
    let (status, _, html) = a.get("/admin/g/-1001", Some(&c)).await;
    assert_eq!(status, StatusCode::OK);
    for id in ["plot-runs", "plot-usage", "plot-chores"] {
        let f = figure(&html, id);
        assert!(f.contains(&format!("<title id=\"{id}-title\">")), "{f}");
        assert!(f.contains("No data in this period"), "{f}");
        assert!(!f.contains("<details>"), "no table without numbers");
    }
    assert!(html.contains("No runs in the last 30 days."));
}

#[tokio::test]
async fn the_approvals_page_shows_requests_with_their_audit_trail() {
    let a = setup().await;
    chores_and_requests(&a).await;
    let c = a.sign_in(&alice()).await;

    let (status, _, html) = a
        .get("/admin/g/-1001/approvals?status=resolved", Some(&c))
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("<table id=\"approvals\""));
    assert_eq!(html.matches("<tr id=\"request-").count(), 2, "{html}");
    let row = |id: i64| {
        let s = html.find(&format!("<tr id=\"request-{id}\"")).unwrap();
        &html[s..s + html[s..].find("</tr>").unwrap()]
    };
    let dishes = row(1);
    assert!(
        dishes.contains("Dishes") && dishes.contains("Bob"),
        "{dishes}"
    );
    assert!(
        dishes.contains("data-via=\"button\"")
            && dishes.contains("Alice — pending → approved, via button"),
        "{dishes}"
    );
    let bins = row(2);
    assert!(
        bins.contains("data-via=\"text\"") && bins.contains("Alice — pending → approved, via text"),
        "{bins}"
    );
    assert!(
        !html.contains("request-3"),
        "pending requests are on the other tab"
    );

    let (_, _, html) = a.get("/admin/g/-1001/approvals", Some(&c)).await;
    assert_eq!(html.matches("<tr id=\"request-").count(), 1);
    assert!(
        html.contains("<tr id=\"request-3\" data-status=\"pending\""),
        "{html}"
    );
    assert!(!html.contains("rel=\"next\""), "one page");

    // another group's approvals and overview: 404, like a group that does not exist
    for path in [
        "/admin/g/-1002/approvals",
        "/admin/g/-1002",
        "/admin/g/-5/approvals",
    ] {
        let (status, _, body) = a.get(path, Some(&c)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!body.contains("Cabin"));
    }
    // without a session: to sign-in
    let (status, loc, _) = a.get("/admin/g/-1001/approvals", None).await;
    assert_eq!(
        (status, loc.as_str()),
        (StatusCode::SEE_OTHER, "/admin/signin")
    );
}

#[tokio::test]
async fn the_plot_aggregates_group_by_utc_day_in_sql() {
    let a = setup().await;
    runs_and_turns(&a).await;
    let now = a.app.clock.now();
    let since = now - Duration::days(29);
    let raw = a.app.store.recent_runs(GROUP, 1).await.unwrap();
    let mut runs = a.app.store.runs_per_day(GROUP, since).await.unwrap();
    runs.sort_by(|x, y| (&x.day, x.status.as_str()).cmp(&(&y.day, y.status.as_str())));
    let got: Vec<(String, &str, u64)> = runs
        .iter()
        .map(|r| (r.day.clone(), r.status.as_str(), r.runs))
        .collect();
    assert_eq!(
        got,
        [
            ("2026-11-20".to_string(), "silent", 2),
            ("2026-11-21".to_string(), "completed", 3),
            ("2026-11-21".to_string(), "failed", 1),
        ],
        "{raw:?}"
    );
    let mut usage = a.app.store.usage_per_day(GROUP, since).await.unwrap();
    usage.sort_by(|x, y| x.day.cmp(&y.day));
    let got: Vec<(&str, u64, u64, u64)> = usage
        .iter()
        .map(|u| {
            (
                u.day.as_str(),
                u.prompt_tokens,
                u.completion_tokens,
                u.turns,
            )
        })
        .collect();
    assert_eq!(
        got,
        [("2026-11-20", 500, 100, 1), ("2026-11-21", 1000, 200, 1)]
    );
    // a run before the window is not counted
    assert!(a
        .app
        .store
        .runs_per_day(GROUP, now + Duration::days(1))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_approvals_page_is_paginated_newest_first() {
    let a = setup().await;
    for i in 1..=27 {
        a.app
            .say(&group(), &alice(), &format!("/addchore Task {i}"))
            .await;
        a.app
            .say(&group(), &bob(), &format!("/done task {i}"))
            .await;
    }
    let c = a.sign_in(&alice()).await;
    let (_, _, first) = a
        .get("/admin/g/-1001/approvals?status=pending", Some(&c))
        .await;
    assert_eq!(first.matches("<tr id=\"request-").count(), 25, "{first}");
    // newest first: request 27 on top, 3 last
    let top = first.find("request-27").unwrap();
    assert!(top < first.find("request-3\"").unwrap());
    assert!(!first.contains("request-2\""));
    assert!(first.contains("rel=\"next\" href=\"?status=pending&amp;page=2\""));
    assert!(!first.contains("rel=\"prev\""));
    let (_, _, second) = a
        .get("/admin/g/-1001/approvals?status=pending&page=2", Some(&c))
        .await;
    assert_eq!(second.matches("<tr id=\"request-").count(), 2);
    assert!(second.contains("request-2\"") && second.contains("request-1\""));
    assert!(second.contains("rel=\"prev\"") && !second.contains("rel=\"next\""));
    // a page that is not a number is the first page
    let (status, _, junk) = a
        .get("/admin/g/-1001/approvals?page=x&status=pending", Some(&c))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(junk.matches("<tr id=\"request-").count(), 25);
}
