//! The overview of a chat (`GET /admin/g/{chat}`) and its approvals
//! (`GET /admin/g/{chat}/approvals?status=pending|resolved&page=n`), issue 11 item 3.
//!
//! The overview shows the members, open and overdue chores, pending approvals, active routines,
//! the ten most recent runs, and three plots drawn by [`crate::plots::svg`]: runs per UTC day by
//! status (last 30 days), tokens and cost per day (every turn of the chat: members' messages,
//! routine steps, silent and quiet runs), and chores done per member per week (last 8 weeks, weeks
//! start on Monday). Each plot is a `<figure>` with an inline `<svg role="img">` and a
//! `<figcaption>` summary; the numbers are in a `<details>` table. The aggregates are grouped in
//! SQL (`store::overview`), one query per plot.
//!
//! The approvals page lists a chat's requests, newest first, 25 a page, each with its audit
//! trail: who moved it, when, from which status to which, and how (text, button, command, tool —
//! the model's tool call —, scheduler, or hearth itself).
//!
//! Both pages authorize with [`pages::scope`] before reading anything.
use std::collections::{BTreeMap, HashMap};

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::get,
    Router,
};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use minijinja::{context, Value};

use super::{
    pages::{self, failed, render, scope},
    AdminState,
};
use crate::{
    plots::svg::{stacked_bars, BarChart, Format, Layer, Panel, Rgb, PALETTE},
    store::{
        ChoreStatus, RequestState, RoutineStatus, RunStatus, StoreError, Via, WorkflowKind,
        WorkflowStatus,
    },
};

/// Days in the runs and usage plots (today included).
pub const PLOT_DAYS: i64 = 30;
/// Weeks in the chores plot (this week included).
pub const PLOT_WEEKS: i64 = 8;
/// Runs in the "recent runs" table.
pub const RECENT_RUNS: u64 = 10;
/// Requests per approvals page.
pub const APPROVALS_PAGE: u64 = 25;
/// Pending requests listed on the overview.
const OVERVIEW_PENDING: u64 = 10;

/// The routes of this module (merged in [`pages::router`]).
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/g/{chat}", get(overview).fallback(pages::unknown))
        .route(
            "/admin/g/{chat}/approvals",
            get(approvals).fallback(pages::unknown),
        )
}

/// The run statuses of the runs plot, bottom-up, with their colours; active statuses
/// (pending, running, waiting, paused) share the last layer.
pub const RUN_LAYERS: [(&str, Rgb); 6] = [
    ("completed", Rgb(0, 158, 115)),
    ("failed", Rgb(213, 94, 0)),
    ("cancelled", Rgb(150, 150, 150)),
    ("silent", Rgb(86, 180, 233)),
    ("skipped", Rgb(240, 228, 66)),
    ("in progress", Rgb(0, 114, 178)),
];

/// The layer index of a run status in [`RUN_LAYERS`].
fn run_layer(s: RunStatus) -> usize {
    match s {
        RunStatus::Completed => 0,
        RunStatus::Failed => 1,
        RunStatus::Cancelled => 2,
        RunStatus::Silent => 3,
        RunStatus::Skipped => 4,
        RunStatus::Pending | RunStatus::Running | RunStatus::Waiting | RunStatus::Paused => 5,
    }
}

/// Colours of the usage plot: prompt tokens, completion tokens, cost.
pub const USAGE_COLORS: [Rgb; 3] = [Rgb(0, 114, 178), Rgb(230, 159, 0), Rgb(0, 158, 115)];

fn day_label(d: NaiveDate) -> String {
    d.format("%-d %b").to_string()
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn plot_svg(id: &str, chart: &BarChart) -> String {
    stacked_bars(id, chart).unwrap_or_else(|e| {
        tracing::error!(plot = id, error = %e, "admin plot failed to draw");
        String::new()
    })
}

/// Cost in US dollars of `prompt` / `completion` tokens of `model`: `llm.prices."<model>"`, else
/// `llm.prompt_price_per_mtok` / `llm.completion_price_per_mtok` (USD per million tokens) — the
/// rule of `routines::run_cost`, per the model each turn used.
fn model_cost(cfg: &crate::config::Config, model: &str, prompt: u64, completion: u64) -> f64 {
    let (p, c) = match cfg.llm.prices.get(model) {
        Some(m) => (m.prompt, m.completion),
        None => (
            cfg.llm.prompt_price_per_mtok,
            cfg.llm.completion_price_per_mtok,
        ),
    };
    prompt as f64 * p / 1e6 + completion as f64 * c / 1e6
}

async fn overview(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(chat): Path<String>,
) -> Response {
    let sc = match scope(&st, &headers, &chat).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let chat_id = sc.chat.id;
    let now = st.clock.now();
    let today = now.date_naive();
    let first_day = today - Duration::days(PLOT_DAYS - 1);
    let this_monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let first_week = this_monday - Duration::weeks(PLOT_WEEKS - 1);
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();

    // independent reads, concurrently (SQLite readers run in parallel under WAL)
    let s = &st.store;
    let small = async {
        Ok::<_, StoreError>((
            s.members(chat_id).await?,
            s.open_chores(chat_id).await?,
            s.requests_of_chat(chat_id, RequestState::Pending, 0, OVERVIEW_PENDING + 1)
                .await?,
            s.count_pending_in_chat(chat_id).await?,
            s.routines_of_chat(chat_id).await?,
            s.recent_runs(chat_id, RECENT_RUNS).await?,
        ))
    };
    let data = futures::future::try_join4(
        small,
        s.runs_per_day(chat_id, midnight(first_day)),
        s.usage_per_day(chat_id, midnight(first_day)),
        s.chores_done_per_day(chat_id, midnight(first_week)),
    );
    let ((members, chores, pending, pending_n, routines, recent), runs, usage, done) =
        match data.await {
            Ok(d) => d,
            Err(e) => return failed(e),
        };

    // names of everyone the page mentions (members first; others by one lookup)
    let mut names: HashMap<i64, String> = members
        .iter()
        .map(|m| (m.user_id, m.first_name.clone()))
        .collect();
    let mut unknown: Vec<i64> = chores
        .iter()
        .filter_map(|c| c.assignee_id)
        .chain(pending.iter().map(|w| w.requester_id))
        .chain(recent.iter().filter_map(|r| r.started_by))
        .chain(done.iter().map(|d| d.user_id))
        .filter(|id| !names.contains_key(id))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    if !unknown.is_empty() {
        match st.store.users(&unknown).await {
            Ok(us) => names.extend(us.into_iter().map(|u| (u.id, u.first_name))),
            Err(e) => return failed(e),
        }
    }
    let name = |id: i64| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));

    let members_v: Vec<Value> = members
        .iter()
        .filter(|m| m.active)
        .map(|m| context! { name => m.first_name, username => m.username, admin => m.is_admin() })
        .collect();

    let open: Vec<_> = chores
        .iter()
        .filter(|c| matches!(c.status, ChoreStatus::Todo | ChoreStatus::Pending))
        .collect();
    let overdue = open
        .iter()
        .filter(|c| c.next_due.is_some_and(|d| d < now))
        .count();
    let chores_v: Vec<Value> = open
        .iter()
        .map(|c| {
            context! {
                title => c.title,
                assignee => c.assignee_id.map(name),
                due => c.next_due.map(when),
                overdue => c.next_due.is_some_and(|d| d < now),
                waiting => c.status == ChoreStatus::Pending,
            }
        })
        .collect();

    let pending_v: Vec<Value> = pending
        .iter()
        .take(OVERVIEW_PENDING as usize)
        .map(|w| {
            context! {
                id => w.id,
                kind => kind_label(w.kind),
                target => w.target_title,
                requester => name(w.requester_id),
                created => when(w.created_at),
                expires => when(w.expires_at),
            }
        })
        .collect();

    let routine_names: HashMap<i64, String> =
        routines.iter().map(|r| (r.id, r.name.clone())).collect();
    let routines_v: Vec<Value> = routines
        .iter()
        .filter(|r| r.status == RoutineStatus::Active)
        .map(|r| context! { id => r.id, name => r.name, description => r.description })
        .collect();
    let recent_v: Vec<Value> = recent
        .iter()
        .map(|r| {
            context! {
                id => r.id,
                routine => routine_names.get(&r.routine_id).cloned().unwrap_or_else(|| format!("#{}", r.routine_id)),
                status => r.status.as_str(),
                started => when(r.started_at),
                by => r.started_by.map(name),
                duration_s => format!("{:.1}", r.duration_ms as f64 / 1000.0),
                cost => format!("${:.4}", r.cost_usd),
            }
        })
        .collect();

    let days: Vec<NaiveDate> = (0..PLOT_DAYS)
        .map(|i| first_day + Duration::days(i))
        .collect();
    let plots = vec![
        runs_plot(&days, &runs),
        usage_plot(&days, &usage, &st.svc().config),
        chores_plot(first_week, &done, &name),
    ];

    render(
        StatusCode::OK,
        "group.html",
        context! {
            title => sc.title(),
            members => members_v,
            chores => chores_v,
            open_chores => open.len(),
            overdue,
            pending => pending_v,
            pending_count => pending_n,
            routines => routines_v,
            runs => recent_v,
            plots,
            ..sc.base()
        },
    )
}

/// The runs plot: per day, one layer per [`RUN_LAYERS`] entry.
fn runs_plot(days: &[NaiveDate], rows: &[crate::store::RunsOnDay]) -> Value {
    let index: HashMap<String, usize> = days
        .iter()
        .enumerate()
        .map(|(i, d)| (d.format("%Y-%m-%d").to_string(), i))
        .collect();
    let mut grid = vec![[0u64; RUN_LAYERS.len()]; days.len()];
    for r in rows {
        if let Some(&i) = index.get(&r.day) {
            grid[i][run_layer(r.status)] += r.runs;
        }
    }
    let totals: Vec<u64> = (0..RUN_LAYERS.len())
        .map(|l| grid.iter().map(|d| d[l]).sum())
        .collect();
    let total: u64 = totals.iter().sum();
    let chart = BarChart {
        title: format!("Runs per day by status, last {PLOT_DAYS} days (UTC)"),
        x_labels: days.iter().map(|d| day_label(*d)).collect(),
        panels: vec![Panel {
            axis: "runs".into(),
            format: Format::Count,
            layers: RUN_LAYERS
                .iter()
                .enumerate()
                .map(|(l, (n, c))| Layer {
                    name: (*n).into(),
                    color: *c,
                    values: grid.iter().map(|d| d[l] as f64).collect(),
                })
                .collect(),
        }],
        width: 720,
        height: 260,
    };
    let runs_word = |n: u64| {
        if n == 1 {
            "1 run".to_string()
        } else {
            format!("{n} runs")
        }
    };
    let summary = if total == 0 {
        format!("No runs in the last {PLOT_DAYS} days.")
    } else {
        let parts: Vec<String> = RUN_LAYERS
            .iter()
            .zip(&totals)
            .filter(|(_, n)| **n > 0)
            .map(|((s, _), n)| format!("{n} {s}"))
            .collect();
        let (busy, most) = grid
            .iter()
            .enumerate()
            .map(|(i, d)| (i, d.iter().sum::<u64>()))
            .max_by_key(|(i, n)| (*n, std::cmp::Reverse(*i)))
            .unwrap_or((0, 0));
        format!(
            "{} in the last {PLOT_DAYS} days: {}. Busiest day: {} ({}).",
            runs_word(total),
            parts.join(", "),
            day_label(days[busy]),
            runs_word(most)
        )
    };
    let rows: Vec<Value> = grid
        .iter()
        .enumerate()
        .filter(|(_, d)| d.iter().any(|n| *n > 0))
        .map(|(i, d)| {
            context! { label => day_label(days[i]), cells => d.to_vec(), total => d.iter().sum::<u64>() }
        })
        .collect();
    context! {
        id => "plot-runs",
        heading => "Runs per day",
        svg => plot_svg("plot-runs", &chart),
        summary,
        columns => RUN_LAYERS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        rows,
        total_label => "total",
    }
}

/// The usage plot: tokens (prompt and completion stacked) over cost, per day.
fn usage_plot(
    days: &[NaiveDate],
    rows: &[crate::store::UsageOnDay],
    cfg: &crate::config::Config,
) -> Value {
    let index: HashMap<String, usize> = days
        .iter()
        .enumerate()
        .map(|(i, d)| (d.format("%Y-%m-%d").to_string(), i))
        .collect();
    // per day: prompt, completion, turns, cost
    let mut grid = vec![(0u64, 0u64, 0u64, 0f64); days.len()];
    for r in rows {
        if let Some(&i) = index.get(&r.day) {
            let g = &mut grid[i];
            g.0 += r.prompt_tokens;
            g.1 += r.completion_tokens;
            g.2 += r.turns;
            g.3 += model_cost(cfg, &r.model, r.prompt_tokens, r.completion_tokens);
        }
    }
    let (p, c, t, cost) = grid.iter().fold((0, 0, 0, 0.0), |a, g| {
        (a.0 + g.0, a.1 + g.1, a.2 + g.2, a.3 + g.3)
    });
    let chart = BarChart {
        title: format!("Model tokens and cost per day, last {PLOT_DAYS} days (UTC)"),
        x_labels: days.iter().map(|d| day_label(*d)).collect(),
        panels: vec![
            Panel {
                axis: "tokens".into(),
                format: Format::Count,
                layers: vec![
                    Layer {
                        name: "prompt tokens".into(),
                        color: USAGE_COLORS[0],
                        values: grid.iter().map(|g| g.0 as f64).collect(),
                    },
                    Layer {
                        name: "completion tokens".into(),
                        color: USAGE_COLORS[1],
                        values: grid.iter().map(|g| g.1 as f64).collect(),
                    },
                ],
            },
            Panel {
                axis: "USD".into(),
                format: Format::Usd,
                layers: vec![Layer {
                    name: "cost".into(),
                    color: USAGE_COLORS[2],
                    values: grid.iter().map(|g| g.3).collect(),
                }],
            },
        ],
        width: 720,
        height: 340,
    };
    let summary = if t == 0 {
        format!("No model turns in the last {PLOT_DAYS} days.")
    } else {
        format!(
            "{} tokens ({p} prompt, {c} completion) in {t} turns, ${cost:.4}, in the last \
             {PLOT_DAYS} days; every turn counts, silent and quiet runs included.",
            p + c
        )
    };
    let rows: Vec<Value> = grid
        .iter()
        .enumerate()
        .filter(|(_, g)| g.2 > 0)
        .map(|(i, g)| {
            context! {
                label => day_label(days[i]),
                cells => vec![g.0.to_string(), g.1.to_string(), g.2.to_string(), format!("${:.4}", g.3)],
            }
        })
        .collect();
    context! {
        id => "plot-usage",
        heading => "Tokens and cost per day",
        svg => plot_svg("plot-usage", &chart),
        summary,
        columns => vec!["prompt tokens", "completion tokens", "turns", "cost"],
        rows,
    }
}

/// The chores plot: per week (Monday start), one layer per member who did a chore.
fn chores_plot(
    first_week: NaiveDate,
    rows: &[crate::store::DoneOnDay],
    name: &dyn Fn(i64) -> String,
) -> Value {
    let weeks: Vec<NaiveDate> = (0..PLOT_WEEKS)
        .map(|i| first_week + Duration::weeks(i))
        .collect();
    // user → per week count (BTreeMap: a stable member order)
    let mut per: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for r in rows {
        let Ok(day) = NaiveDate::parse_from_str(&r.day, "%Y-%m-%d") else {
            continue;
        };
        let w = (day - first_week).num_days().div_euclid(7);
        if (0..PLOT_WEEKS).contains(&w) {
            per.entry(r.user_id).or_insert_with(|| vec![0; weeks.len()])[w as usize] += r.done;
        }
    }
    let people: Vec<(String, Vec<u64>)> = per.into_iter().map(|(u, v)| (name(u), v)).collect();
    let chart = BarChart {
        title: format!("Chores done per member per week, last {PLOT_WEEKS} weeks"),
        x_labels: weeks
            .iter()
            .map(|w| format!("w/c {}", day_label(*w)))
            .collect(),
        panels: vec![Panel {
            axis: "chores".into(),
            format: Format::Count,
            layers: people
                .iter()
                .enumerate()
                .map(|(i, (n, v))| Layer {
                    name: n.clone(),
                    color: PALETTE[i % PALETTE.len()],
                    values: v.iter().map(|x| *x as f64).collect(),
                })
                .collect(),
        }],
        width: 720,
        height: 260,
    };
    let total: u64 = people.iter().flat_map(|(_, v)| v).sum();
    let summary = if total == 0 {
        format!("No chores done in the last {PLOT_WEEKS} weeks.")
    } else {
        let parts: Vec<String> = people
            .iter()
            .map(|(n, v)| format!("{n} {}", v.iter().sum::<u64>()))
            .collect();
        format!(
            "{total} chores done in the last {PLOT_WEEKS} weeks: {}.",
            parts.join(", ")
        )
    };
    let rows: Vec<Value> = weeks
        .iter()
        .enumerate()
        .filter(|(i, _)| people.iter().any(|(_, v)| v[*i] > 0))
        .map(|(i, w)| {
            context! {
                label => format!("w/c {}", day_label(*w)),
                cells => people.iter().map(|(_, v)| v[i]).collect::<Vec<_>>(),
            }
        })
        .collect();
    context! {
        id => "plot-chores",
        heading => "Chores done per member per week",
        svg => plot_svg("plot-chores", &chart),
        summary,
        columns => people.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        rows,
    }
}

/// A request kind for people.
fn kind_label(k: WorkflowKind) -> &'static str {
    match k {
        WorkflowKind::ChoreVerification => "chore done?",
        WorkflowKind::ChoreDeletion => "delete chore?",
        WorkflowKind::PersonalVerification => "personal chore done?",
        WorkflowKind::Confirmation => "confirm a tool call",
        WorkflowKind::RoutineGate => "routine approval",
    }
}

/// How a transition came about, in the page's words (`agent`: the model's tool call).
fn via_label(v: Via) -> &'static str {
    match v {
        Via::Text => "text",
        Via::Button => "button",
        Via::Command => "command",
        Via::Agent => "tool",
        Via::Scheduler => "scheduler",
        Via::System => "hearth",
    }
}

async fn approvals(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(chat): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let sc = match scope(&st, &headers, &chat).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let chat_id = sc.chat.id;
    let resolved = q.get("status").is_some_and(|s| s == "resolved");
    let state = if resolved {
        RequestState::Resolved
    } else {
        RequestState::Pending
    };
    let page: u64 = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1 && *p <= 100_000)
        .unwrap_or(1);
    let data = async {
        let s = &st.store;
        let mut reqs = s
            .requests_of_chat(
                chat_id,
                state,
                (page - 1) * APPROVALS_PAGE,
                APPROVALS_PAGE + 1,
            )
            .await?;
        let more = reqs.len() as u64 > APPROVALS_PAGE;
        reqs.truncate(APPROVALS_PAGE as usize);
        let ids: Vec<i64> = reqs.iter().map(|w| w.id).collect();
        let audit = s.audit_of_workflows(&ids).await?;
        let mut people: Vec<i64> = reqs
            .iter()
            .flat_map(|w| [Some(w.requester_id), w.resolver_id])
            .chain(audit.iter().map(|a| a.actor_id))
            .flatten()
            .collect();
        people.sort_unstable();
        people.dedup();
        let users = s.users(&people).await?;
        Ok::<_, StoreError>((reqs, more, audit, users))
    };
    let (reqs, more, audit, users) = match data.await {
        Ok(d) => d,
        Err(e) => return failed(e),
    };
    let names: HashMap<i64, String> = users.into_iter().map(|u| (u.id, u.first_name)).collect();
    let name = |id: i64| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
    let mut trail: HashMap<i64, Vec<Value>> = HashMap::new();
    for a in &audit {
        let partial =
            a.from_status == WorkflowStatus::Pending && a.to_status == WorkflowStatus::Pending;
        trail.entry(a.workflow_id).or_default().push(context! {
            at => when(a.at),
            who => a.actor_id.map(name).unwrap_or_else(|| "hearth".to_string()),
            from => a.from_status.as_str(),
            to => if partial { "approved (toward quorum)" } else { a.to_status.as_str() },
            via => via_label(a.via),
            reason => a.reason,
        });
    }
    let rows: Vec<Value> = reqs
        .iter()
        .map(|w| {
            context! {
                id => w.id,
                kind => kind_label(w.kind),
                target => w.target_title,
                requester => name(w.requester_id),
                status => w.status.as_str(),
                created => when(w.created_at),
                expires => when(w.expires_at),
                resolved => w.resolved_at.map(when),
                required => w.required,
                trail => trail.remove(&w.id).unwrap_or_default(),
            }
        })
        .collect();
    let status = if resolved { "resolved" } else { "pending" };
    render(
        StatusCode::OK,
        "approvals.html",
        context! {
            title => sc.title(),
            status,
            rows,
            page,
            prev => (page > 1).then(|| page - 1),
            next => more.then_some(page + 1),
            ..sc.base()
        },
    )
}
