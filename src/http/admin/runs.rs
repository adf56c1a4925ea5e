//! The admin run pages (issue 11, item 3 "Runs"): a chat's run list, a run's detail with live
//! progress and its controls, and starting a run of a routine from the page.
//!
//! | Method + path (under `/admin/g/{chat}`) | What |
//! |---|---|
//! | GET `/runs?routine=<rid>&status=<word>&before=<id>` | table `#runs`, newest first, 50 a page (keyset on the run id) |
//! | GET `/runs/{run}` | `#run-status`, `<ol id="steps">` of `li.step[data-status]`, controls |
//! | GET `/runs/{run}/live` | the `#run-live` fragment of the detail (polled every 1 s by the page's inline script until the run is finished) |
//! | POST `/runs/{run}/{pause,resume,cancel,retry,again,delete}` | the control, then 303 to the run (`again`: the new run; `delete`: the list); a refused control re-renders the run with the reason (409) |
//! | GET/POST `/routines/{rid}/run` | the routine's initial inputs (`input-<name>`, name `input.<name>`), `#start-run`; a real run started by the session's user, 303 to it |
//!
//! Every control goes through `routines::runs` (its authorization and its one conditional
//! update); the session's user acts as an admin of the chat (`pages::scope` checked it), so the
//! chat's own rules apply. A run of another chat is 404. Starting a run is the same path as
//! `/<name>` in the chat: typed inputs checked by `routines::typed`, then
//! `runner::start_run` (source `manual`, `started_by` = the user) and a kick of the engine.
//!
//! Uses: routines::{runs, runner, typed, steps}, store (reads for the list), chores (zone).
use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Router,
};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::{context, Value};
use serde_json::Map;

use super::{
    pages::{self, failed, render, scope, scope_post, Scope},
    AdminState,
};
use crate::{
    routines::{
        runner::{self, definition_of, StartRun, Started},
        runs::{self, fmt_duration, RunView},
        steps::InputSpec,
        typed, Actor, RoutineError,
    },
    store::{RoutineRow, RoutineStatus, RunPage, RunSource, RunStatus, StepStatus},
};

/// Runs on one page of the list.
pub const PAGE: u64 = 50;

/// The run pages' routes (merged by `pages::router`).
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/g/{chat_id}/runs", get(list).fallback(other))
        .route(
            "/admin/g/{chat_id}/runs/{run_id}",
            get(detail).fallback(other),
        )
        .route(
            "/admin/g/{chat_id}/runs/{run_id}/live",
            get(live).fallback(other),
        )
        .route(
            "/admin/g/{chat_id}/runs/{run_id}/{action}",
            post(control).fallback(other),
        )
        .route(
            "/admin/g/{chat_id}/routines/{rid}/run",
            get(start_page).post(start).fallback(other),
        )
}

/// A method a run page does not take: sign-in first (303), then a POST-like request without
/// the session's CSRF token is 403, anything else 404 (as `pages` does for unknown paths).
async fn other(
    State(st): State<AdminState>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (_, s) = match pages::require(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        let csrf = url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        if !super::auth::csrf_ok(&s, csrf.as_deref()) {
            return pages::forbidden(&s);
        }
    }
    pages::not_found(&s)
}

/// The session's user as the routine services see them: a chat admin (the scope is a group
/// they administer or their own DM, where they are the admin of their routines).
fn actor(sc: &Scope) -> Actor {
    Actor {
        user_id: sc.session.user_id,
        admin: true,
    }
}

fn local(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// USD with 4 decimals; a cost too small to show is "< $0.0001", not "$0.0000".
fn money(usd: f64) -> String {
    if usd > 0.0 && usd < 0.00005 {
        "< $0.0001".to_string()
    } else {
        format!("${usd:.4}")
    }
}

/// The response for a service error on a page: 404 for an unknown run/routine, 500 for storage.
fn service_failed(sc: &Scope, e: RoutineError) -> Response {
    match e {
        RoutineError::Store(e) => failed(e),
        _ => pages::not_found(&sc.session),
    }
}

async fn list(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(chat_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let sc = match scope(&st, &headers, &chat_id).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let chat = sc.chat.id;
    let routine_id = q.get("routine").and_then(|r| r.parse::<i64>().ok());
    let status = q.get("status").and_then(|s| RunStatus::parse(s));
    let before = q.get("before").and_then(|b| b.parse::<i64>().ok());
    let page = async {
        let routines = st.store.routines_of_chat(chat).await?;
        let zone = crate::chores::zone_of(st.svc(), chat).await?;
        let rows = st
            .store
            .runs_page(&RunPage {
                chat_id: chat,
                routine_id,
                status,
                before,
                limit: PAGE + 1,
            })
            .await?;
        Ok::<_, crate::store::StoreError>((routines, zone, rows))
    };
    let (routines, zone, mut rows) = match page.await {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let more = rows.len() as u64 > PAGE;
    rows.truncate(PAGE as usize);
    let now = st.clock.now();
    let name_of = |id: i64| {
        routines
            .iter()
            .find(|r| r.id == id)
            .map_or_else(|| format!("#{id}"), |r| r.name.clone())
    };
    let runs: Vec<Value> = rows
        .iter()
        .map(|r| {
            context! {
                id => r.id,
                routine => name_of(r.routine_id),
                status => r.status.as_str(),
                reason => r.reason,
                source => r.source.as_str(),
                started => local(r.started_at, zone),
                duration => fmt_duration(runs::run_duration(r, now)),
                tokens => r.prompt_tokens as i64 + r.completion_tokens as i64,
                cost => money(r.cost_usd),
            }
        })
        .collect();
    let filter_qs = {
        let mut qs = url::form_urlencoded::Serializer::new(String::new());
        if let Some(rid) = routine_id {
            qs.append_pair("routine", &rid.to_string());
        }
        if let Some(s) = status {
            qs.append_pair("status", s.as_str());
        }
        qs.finish()
    };
    let older = more.then(|| rows.last()).flatten().map(|r| {
        let sep = if filter_qs.is_empty() { "" } else { "&" };
        format!("{filter_qs}{sep}before={}", r.id)
    });
    let routine_opts: Vec<Value> = routines
        .iter()
        .map(|r| context! { id => r.id, name => r.name, selected => Some(r.id) == routine_id })
        .collect();
    let statuses: Vec<Value> = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Paused,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Skipped,
        RunStatus::Silent,
    ]
    .into_iter()
    .map(|s| context! { word => s.as_str(), selected => Some(s) == status })
    .collect();
    render(
        StatusCode::OK,
        "runs.html",
        context! {
            title => sc.title(),
            runs,
            routines => routine_opts,
            statuses,
            older,
            filter_qs,
            paged => before.is_some(),
            filtered => routine_id.is_some() || status.is_some(),
            ..sc.base()
        },
    )
}

/// The run of the path in the scope's chat: `Ok(None)` when the id is not a run of this chat.
async fn view_of(st: &AdminState, sc: &Scope, run_id: &str) -> Result<Option<RunView>, Response> {
    let Ok(id) = run_id.parse::<i64>() else {
        return Ok(None);
    };
    match runs::in_chat(st.svc(), sc.chat.id, id).await {
        Ok(v) => Ok(Some(v)),
        Err(RoutineError::Store(e)) => Err(failed(e)),
        Err(_) => Ok(None),
    }
}

/// The minijinja context of a run's `#run-live` block (status, steps, totals, controls).
fn live_context(st: &AdminState, sc: &Scope, v: &RunView) -> Value {
    let now = st.clock.now();
    let zone = runs::zone(v);
    let status = v.run.status;
    let active = status.is_active();
    let steps: Vec<Value> = (0..v.step_count())
        .map(|i| {
            let snap_kind = v
                .definition
                .as_ref()
                .and_then(|d| d.steps.get(i))
                .map(|s| s.kind.step_type().as_str());
            match v.latest(i) {
                Some(s) => context! {
                    n => i + 1,
                    label => v.step_label(i),
                    kind => s.kind.as_str(),
                    status => s.status.as_str(),
                    attempt => s.attempt,
                    input => s.input,
                    output => s.output,
                    error => s.error,
                    reason => s.reason,
                    tokens => s.prompt_tokens as i64 + s.completion_tokens as i64,
                    prompt_tokens => s.prompt_tokens,
                    completion_tokens => s.completion_tokens,
                    cost => money(s.cost_usd),
                    duration => match (s.started_at, s.finished_at) {
                        (Some(a), None) if s.status == StepStatus::Running => {
                            Some(fmt_duration(now - a))
                        }
                        _ if s.duration_ms > 0 || s.finished_at.is_some() => {
                            Some(fmt_duration(chrono::Duration::milliseconds(s.duration_ms)))
                        }
                        _ => None,
                    },
                    ran => true,
                },
                None => context! {
                    n => i + 1,
                    label => v.step_label(i),
                    kind => snap_kind.unwrap_or("step"),
                    status => "not reached",
                    ran => false,
                },
            }
        })
        .collect();
    let (p, c) = v.tokens();
    let inputs: Vec<Value> = v
        .run
        .input
        .as_deref()
        .and_then(|s| serde_json::from_str::<Map<String, serde_json::Value>>(s).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, val)| {
            let text = match val {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            context! { name => k, value => text }
        })
        .collect();
    let may = runs::may_control(v, actor(sc));
    context! {
        run => context! {
            id => v.run.id,
            status => status.as_str(),
            reason => v.run.reason,
            routine => v.routine.name,
            routine_id => v.routine.id,
            source => v.run.source.as_str(),
            started => local(v.run.started_at, zone),
            finished => v.run.finished_at.map(|t| local(t, zone)),
            elapsed => fmt_duration(v.elapsed(now)),
            prompt_tokens => p,
            completion_tokens => c,
            cost => money(v.cost()),
            waiting => v.waiting_text(zone),
            terminal => !active,
            inputs,
        },
        steps,
        can => context! {
            pause => may && matches!(status, RunStatus::Pending | RunStatus::Running | RunStatus::Waiting),
            resume => may && status == RunStatus::Paused,
            cancel => may && active,
            retry => may && status == RunStatus::Failed,
            again => may,
            delete => may && !active,
        },
    }
}

/// Render the run page (status `code`, an optional control error shown at the top).
fn detail_page(
    st: &AdminState,
    sc: &Scope,
    v: &RunView,
    code: StatusCode,
    error: Option<String>,
) -> Response {
    render(
        code,
        "run.html",
        context! {
            ..context! { title => sc.title(), error },
            ..live_context(st, sc, v),
            ..sc.base()
        },
    )
}

async fn detail(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat_id, run_id)): Path<(String, String)>,
) -> Response {
    let sc = match scope(&st, &headers, &chat_id).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    match view_of(&st, &sc, &run_id).await {
        Ok(Some(v)) => detail_page(&st, &sc, &v, StatusCode::OK, None),
        Ok(None) => pages::not_found(&sc.session),
        Err(r) => r,
    }
}

async fn live(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat_id, run_id)): Path<(String, String)>,
) -> Response {
    let sc = match scope(&st, &headers, &chat_id).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    match view_of(&st, &sc, &run_id).await {
        Ok(Some(v)) => {
            let mut r = render(
                StatusCode::OK,
                "run_live.html",
                context! { ..live_context(&st, &sc, &v), ..sc.base() },
            );
            r.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Ok(None) => pages::not_found(&sc.session),
        Err(r) => r,
    }
}

async fn control(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat_id, run_id, action)): Path<(String, String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let sc = match scope_post(
        &st,
        &headers,
        &chat_id,
        form.get("csrf").map(String::as_str),
    )
    .await
    {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let v = match view_of(&st, &sc, &run_id).await {
        Ok(Some(v)) => v,
        Ok(None) => return pages::not_found(&sc.session),
        Err(r) => return r,
    };
    let (svc, chat, id, who) = (st.svc(), sc.chat.id, v.run.id, actor(&sc));
    let to_run = |id: i64| Redirect::to(&format!("/admin/g/{chat}/runs/{id}")).into_response();
    let outcome: Result<Response, RoutineError> = match action.as_str() {
        "pause" => runs::pause(svc, chat, id, who).await.map(|_| to_run(id)),
        "resume" => runs::resume(svc, chat, id, who).await.map(|_| {
            svc.run_started.notify_one();
            to_run(id)
        }),
        "cancel" => runs::cancel(svc, chat, id, who).await.map(|_| to_run(id)),
        "retry" => runs::retry(svc, chat, id, who).await.map(|_| {
            svc.run_started.notify_one();
            to_run(id)
        }),
        "again" => runs::again(svc, chat, id, who)
            .await
            .map(|(_, started)| match started {
                Started::Run(new) => {
                    svc.run_started.notify_one();
                    to_run(new)
                }
                Started::Skipped(new, _) => to_run(new),
            }),
        "delete" => runs::delete(svc, chat, id, who)
            .await
            .map(|_| Redirect::to(&format!("/admin/g/{chat}/runs")).into_response()),
        _ => return pages::not_found(&sc.session),
    };
    match outcome {
        Ok(r) => {
            tracing::info!(run_id = id, action = action.as_str(), "admin run control");
            r
        }
        Err(RoutineError::Store(e)) => failed(e),
        Err(e) => {
            let code = match e {
                RoutineError::Denied(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::CONFLICT,
            };
            let msg = runs::user_message(&e);
            match runs::in_chat(svc, chat, id).await {
                Ok(v) => detail_page(&st, &sc, &v, code, Some(msg)),
                Err(e) => service_failed(&sc, e),
            }
        }
    }
}

/// The start form's fields: one per initial input, with the value and the error shown.
fn input_fields(
    specs: &[InputSpec],
    values: &HashMap<String, String>,
    errors: &HashMap<String, String>,
) -> Vec<Value> {
    specs
        .iter()
        .map(|s| {
            context! {
                name => s.name,
                description => s.description,
                required => s.required && s.default.is_none(),
                default => s.default,
                example => s.example,
                kind => s.kind.as_str(),
                value => values.get(&s.name).cloned().unwrap_or_default(),
                error => errors.get(&s.name),
            }
        })
        .collect()
}

fn start_form(
    sc: &Scope,
    r: &RoutineRow,
    specs: &[InputSpec],
    values: &HashMap<String, String>,
    errors: &HashMap<String, String>,
    error: Option<String>,
    code: StatusCode,
) -> Response {
    render(
        code,
        "run_start.html",
        context! {
            title => sc.title(),
            routine => context! { id => r.id, name => r.name, description => r.description },
            inputs => input_fields(specs, values, errors),
            error,
            ..sc.base()
        },
    )
}

/// The routine's initial inputs (none for a single-prompt routine), or the page's error.
fn specs_of(r: &RoutineRow) -> Result<Vec<InputSpec>, String> {
    definition_of(r)
        .map(|(d, _)| d.inputs)
        .map_err(|e| runs::user_message(&e))
}

async fn start_page(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat_id, rid)): Path<(String, String)>,
) -> Response {
    let sc = match scope(&st, &headers, &chat_id).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let r = match pages::routine_in(&st, &sc, &rid).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let (specs, error) = match specs_of(&r) {
        Ok(s) => (s, None),
        Err(e) => (vec![], Some(e)),
    };
    let values = specs
        .iter()
        .filter_map(|s| s.default.clone().map(|d| (s.name.clone(), d)))
        .collect();
    start_form(
        &sc,
        &r,
        &specs,
        &values,
        &HashMap::new(),
        error,
        StatusCode::OK,
    )
}

async fn start(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat_id, rid)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let sc = match scope_post(
        &st,
        &headers,
        &chat_id,
        form.get("csrf").map(String::as_str),
    )
    .await
    {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let r = match pages::routine_in(&st, &sc, &rid).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let svc = st.svc();
    let specs = match specs_of(&r) {
        Ok(s) => s,
        Err(e) => {
            return start_form(
                &sc,
                &r,
                &[],
                &HashMap::new(),
                &HashMap::new(),
                Some(e),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    };
    let values: HashMap<String, String> = specs
        .iter()
        .filter_map(|s| {
            form.get(&format!("input.{}", s.name))
                .map(|v| (s.name.clone(), v.clone()))
        })
        .collect();
    let unprocessable = |errors: &HashMap<String, String>, error: Option<String>| {
        start_form(
            &sc,
            &r,
            &specs,
            &values,
            errors,
            error,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    };
    if r.status == RoutineStatus::Ended {
        return unprocessable(
            &HashMap::new(),
            Some(format!("'{}' has ended; create it again to run it", r.name)),
        );
    }
    // typed inputs are checked as in the chat; every wrong one is shown next to its field
    let mut inputs = Map::new();
    let mut errors = HashMap::new();
    for spec in &specs {
        let raw = values.get(&spec.name).map(String::as_str).unwrap_or("");
        if raw.trim().is_empty() {
            continue; // a default applies, or start_run names the missing required input
        }
        if raw.chars().count() > crate::routines::ask::MAX_ANSWER {
            errors.insert(
                spec.name.clone(),
                format!("at most {} characters", crate::routines::ask::MAX_ANSWER),
            );
            continue;
        }
        match typed::check(svc, sc.chat.id, spec, raw).await {
            Ok(Ok(v)) => {
                inputs.insert(spec.name.clone(), serde_json::Value::String(v));
            }
            Ok(Err(why)) => {
                errors.insert(spec.name.clone(), why);
            }
            Err(e) => return failed(e),
        }
    }
    // a required input left empty (and without a default) is named before starting
    for spec in &specs {
        let given = values.get(&spec.name).is_some_and(|v| !v.trim().is_empty());
        if spec.required && spec.default.is_none() && !given && !errors.contains_key(&spec.name) {
            errors.insert(spec.name.clone(), "is required".to_string());
        }
    }
    if !errors.is_empty() {
        return unprocessable(&errors, None);
    }
    let started = runner::start_run(
        svc,
        StartRun {
            routine_id: r.id,
            source: RunSource::Manual,
            trigger_id: None,
            started_by: sc.session.user_id,
            inputs,
            scheduled_for: None,
            catch_up: false,
            parent_run_id: None,
            depth: 0,
        },
    )
    .await;
    match started {
        Ok(Started::Run(id)) => {
            tracing::info!(
                routine_id = r.id,
                run_id = id,
                "run started from the admin page"
            );
            svc.run_started.notify_one(); // the engine sweeps now, not at its next tick
            Redirect::to(&format!("/admin/g/{}/runs/{id}", sc.chat.id)).into_response()
        }
        Ok(Started::Skipped(id, _)) => {
            Redirect::to(&format!("/admin/g/{}/runs/{id}", sc.chat.id)).into_response()
        }
        Err(RoutineError::Store(e)) => failed(e),
        Err(RoutineError::Invalid { field, rule }) if specs.iter().any(|s| s.name == field) => {
            unprocessable(&HashMap::from([(field, rule)]), None)
        }
        Err(e) => unprocessable(&HashMap::new(), Some(runs::user_message(&e))),
    }
}
