//! The test runner page (issue 11): `GET|POST /admin/g/{chat}/routines/{rid}/test` — a dry run
//! of a routine with sample inputs ([`crate::routines::dryrun`]).
//!
//! GET shows a field per initial input (`input-<name>`, name `input.<name>`, the default filled
//! in) and `#start-test`. POST (CSRF-checked) dry-runs the routine as the session's user and
//! shows, in `#dry-run`, each step (status, input, output, notes such as "would wait 2h" or
//! "would post to the chat", tokens, cost), the calls NOT made in `<table id="would-call">`
//! (tool, pretty JSON arguments, what it would do) and the read-only calls made with their
//! results in `<table id="read-calls">`. Input errors are shown next to their field (422).
//! Nothing is posted to the chat and no run is recorded; the model's tokens are recorded like
//! any turn's (source `dry_run`).
//!
//! Rules: the chat page's own rule first ([`pages::scope`] / [`pages::scope_post`]: an admin's
//! group or the user's DM, else 404; a POST without the CSRF token 403); then the routine must
//! belong to that chat and the user must be allowed to run it ([`dryrun::runnable`], the rule
//! of `/name`), else 404.
use std::collections::{BTreeMap, HashMap};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::get,
    Form, Router,
};
use minijinja::{context, Value};
use serde_json::Map;

use super::{
    pages::{self, Scope},
    AdminState,
};
use crate::routines::{
    dryrun::{self, DryRun, DryRunError, DryRunRequest},
    runner::definition_of,
    steps::InputSpec,
    RoutineError,
};
use crate::store::RoutineRow;

/// The test runner's routes.
pub fn routes() -> Router<AdminState> {
    Router::new().route("/admin/g/{chat}/routines/{rid}/test", get(page).post(run))
}

/// The routine the page is about, or the response to give instead (404 for a routine of another
/// chat, a malformed id, or one the user may not run; the page's error for an ended one).
async fn routine(st: &AdminState, sc: &Scope, rid: &str) -> Result<RoutineRow, Response> {
    let Ok(rid) = rid.parse::<i64>() else {
        return Err(pages::not_found(&sc.session));
    };
    match dryrun::runnable(st.svc(), sc.chat.id, sc.session.user_id, rid).await {
        Ok(r) => Ok(r),
        Err(RoutineError::Store(e)) => Err(pages::failed(e)),
        Err(RoutineError::NotFound(_) | RoutineError::Denied(_)) => {
            Err(pages::not_found(&sc.session))
        }
        Err(e) => Err(pages::render(
            StatusCode::CONFLICT,
            "error.html",
            context! { heading => "Cannot test this routine", text => e.to_string(), ..sc.base() },
        )),
    }
}

async fn page(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat, rid)): Path<(String, String)>,
) -> Response {
    let sc = match pages::scope(&st, &headers, &chat).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let r = match routine(&st, &sc, &rid).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let specs = specs_of(&r);
    let given = BTreeMap::new();
    render(
        &sc,
        &r,
        StatusCode::OK,
        fields(&specs, &given, &BTreeMap::new()),
        None,
        None,
    )
}

async fn run(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat, rid)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let sc =
        match pages::scope_post(&st, &headers, &chat, form.get("csrf").map(String::as_str)).await {
            Ok(sc) => sc,
            Err(r) => return r,
        };
    let r = match routine(&st, &sc, &rid).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let specs = specs_of(&r);
    let given: BTreeMap<String, String> = form
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("input.")?.to_string(), v.clone())))
        .filter(|(k, _)| specs.iter().any(|s| &s.name == k))
        .collect();
    let inputs: Map<String, serde_json::Value> = given
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let req = DryRunRequest {
        chat_id: sc.chat.id,
        user_id: sc.session.user_id,
        routine_id: r.id,
        inputs,
    };
    match dryrun::dry_run(st.svc(), st.engine.agent(), req).await {
        Ok(result) => render(
            &sc,
            &r,
            StatusCode::OK,
            fields(&specs, &given, &BTreeMap::new()),
            Some(&result),
            None,
        ),
        Err(DryRunError::Inputs(errors)) => render(
            &sc,
            &r,
            StatusCode::UNPROCESSABLE_ENTITY,
            fields(&specs, &given, &errors),
            None,
            Some("Some inputs need fixing; nothing was run."),
        ),
        Err(DryRunError::Routine(RoutineError::Store(e))) => pages::failed(e),
        Err(DryRunError::Routine(RoutineError::NotFound(_) | RoutineError::Denied(_))) => {
            pages::not_found(&sc.session)
        }
        Err(DryRunError::Routine(e)) => render(
            &sc,
            &r,
            StatusCode::CONFLICT,
            fields(&specs, &given, &BTreeMap::new()),
            None,
            Some(&e.to_string()),
        ),
    }
}

/// The routine's initial inputs (none for a single-prompt routine or an unreadable definition).
fn specs_of(r: &RoutineRow) -> Vec<InputSpec> {
    definition_of(r).map(|(d, _)| d.inputs).unwrap_or_default()
}

/// The form's fields: per input its name, description, whether required, the value (as given,
/// else the default) and its error.
fn fields(
    specs: &[InputSpec],
    given: &BTreeMap<String, String>,
    errors: &BTreeMap<String, String>,
) -> Vec<Value> {
    specs
        .iter()
        .map(|s| {
            let value = given
                .get(&s.name)
                .cloned()
                .or_else(|| s.default.clone())
                .unwrap_or_default();
            context! {
                name => s.name,
                description => s.description,
                required => s.required && s.default.is_none(),
                kind => s.kind.as_str(),
                example => s.example,
                value,
                error => errors.get(&s.name),
            }
        })
        .collect()
}

fn render(
    sc: &Scope,
    r: &RoutineRow,
    status: StatusCode,
    inputs: Vec<Value>,
    result: Option<&DryRun>,
    problem: Option<&str>,
) -> Response {
    let result = result.map(|d| {
        let (p, c) = d.tokens();
        let steps: Vec<Value> = d
            .steps
            .iter()
            .map(|s| {
                context! {
                    label => s.label,
                    kind => s.kind.as_str(),
                    status => s.status.as_str(),
                    input => s.input,
                    output => s.output,
                    notes => s.notes,
                    error => s.error,
                    prompt_tokens => s.prompt_tokens,
                    completion_tokens => s.completion_tokens,
                    cost => format!("{:.4}", s.cost_usd),
                    model => s.prompt_tokens + s.completion_tokens > 0,
                }
            })
            .collect();
        let call = |(s, c): (&dryrun::DryStep, &dryrun::DryCall)| {
            context! {
                step => s.label,
                tool => c.tool,
                arguments => c.arguments,
                status => c.status.as_str(),
                result => c.result,
                description => c.description,
            }
        };
        context! {
            steps,
            would_call => d.would_call().into_iter().map(call).collect::<Vec<_>>(),
            made => d.made_calls().into_iter().map(call).collect::<Vec<_>>(),
            failure => d.failure,
            inputs => d.inputs.iter().map(|(k, v)| context! { name => k, value => v }).collect::<Vec<_>>(),
            prompt_tokens => p,
            completion_tokens => c,
            cost => format!("{:.4}", d.cost_usd()),
        }
    });
    pages::render(
        status,
        "testrun.html",
        context! {
            title => sc.title(),
            routine => context! { id => r.id, name => r.name, description => r.description },
            inputs,
            result,
            problem,
            ..sc.base()
        },
    )
}
