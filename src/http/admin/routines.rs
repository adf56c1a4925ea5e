//! The routines pages of the web admin (issue 11, item 3): the list of a chat's routines
//! (recorded, scheduled and multi-step together; filter by kind, search by name or
//! description; per routine runs, success rate, average duration, last use and cost), and a
//! routine's detail / edit page (template, parameters, tools, triggers, steps), its export as
//! TOML, the TOML import (an upload) and delete.
//!
//! Every action goes through the routine services with an [`Actor`] built from the session's
//! user, so rights and validation are the chat's own: an edit changes the routine's document
//! ([`doc::doc_of`]) and saves it with [`doc::save_doc`] (a recorded routine's recording, steps
//! and confirm list are kept: only the edited fields change); the template follows
//! `/routine_edit`'s rules ([`manage::set_template`]); delete is [`routines::delete`]; import is
//! [`doc::parse_doc`] + [`doc::save_doc`]. Validation errors are shown next to their field
//! (`<p class="error" id="error-<field id>">`, the field `aria-invalid` and `aria-describedby`).
//!
//! Routes (under `/admin/g/{chat}`): GET `/routines?q=&kind=recorded|scheduled|multi`, POST
//! `/routines/import` (multipart, field `file`, at most [`MAX_UPLOAD_BYTES`]), GET/POST
//! `/routines/{rid}`, GET `/routines/{rid}/export.toml`, POST `/routines/{rid}/delete`.
use std::collections::{BTreeMap, HashMap};

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use minijinja::{context, value::merge_maps, Value};

use super::{
    pages::{self, Scope},
    AdminState,
};
use crate::{
    routines::{
        self,
        doc::{self, SaveError},
        manage::{self, Figures, Kind},
        runs::fmt_duration,
        steps::{RoutineDoc, StepKind},
        validate::DefinitionError,
        Actor, RoutineError,
    },
    services::zone_of,
    store::{Publication, RoutineRow, RoutineStatus},
};

/// Largest TOML file the import takes, in bytes (the document itself must also be within
/// [`doc::MAX_DOC_BYTES`], checked by the parser).
pub const MAX_UPLOAD_BYTES: usize = 100 * 1024;
/// Largest import request body (the file plus the multipart envelope and the CSRF field);
/// a larger body is refused with 413 before it is read.
const MAX_IMPORT_BODY: usize = 2 * MAX_UPLOAD_BYTES + 16 * 1024;

/// The routes of this module (merged by [`pages::router`]).
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/g/{chat}/routines", get(list))
        .route(
            "/admin/g/{chat}/routines/import",
            get(import_page)
                .post(import)
                .layer(DefaultBodyLimit::max(MAX_IMPORT_BODY)),
        )
        .route("/admin/g/{chat}/routines/{rid}", get(detail).post(save))
        .route("/admin/g/{chat}/routines/{rid}/export.toml", get(export))
        .route("/admin/g/{chat}/routines/{rid}/delete", post(delete))
}

/// The actor of a chat page: the session's user; an admin of the group (scope checked it), or
/// the owner of their own DM's routines.
fn actor(sc: &Scope) -> Actor {
    Actor {
        user_id: sc.session.user_id,
        admin: !sc.own_dm,
    }
}

/// The `kind` filter's value for `k` (`recorded`, `scheduled`, `multi`).
fn kind_param(k: Kind) -> &'static str {
    match k {
        Kind::Recorded => "recorded",
        Kind::Scheduled => "scheduled",
        Kind::MultiStep => "multi",
    }
}

fn money(usd: f64) -> String {
    format!("${usd:.4}")
}

/// The figures of one routine as the templates show them.
fn figures_ctx(f: Option<&Figures>, zone: chrono_tz::Tz) -> Value {
    let f = f.cloned().unwrap_or_default();
    context! {
        runs => f.usage.runs,
        success => f.success_rate().map(|r| format!("{:.0}%", r * 100.0)),
        average => f.average.map(fmt_duration),
        last_used => f.usage.last_used.map(|t| t.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z").to_string()),
        last_used_iso => f.usage.last_used.map(|t| t.to_rfc3339()),
        cost => money(f.cost_usd),
    }
}

/// The list page's context for `query` (also re-rendered by a failed import).
async fn list_ctx(
    st: &AdminState,
    sc: &Scope,
    query: &HashMap<String, String>,
) -> Result<Value, RoutineError> {
    let q = query.get("q").map(|s| s.trim()).unwrap_or("").to_string();
    let kind = query
        .get("kind")
        .map(String::as_str)
        .filter(|k| ["recorded", "scheduled", "multi"].contains(k))
        .unwrap_or("")
        .to_string();
    let needle = q.to_lowercase();
    let rows: Vec<RoutineRow> = st
        .store
        .routines_of_chat(sc.chat.id)
        .await?
        .into_iter()
        .filter(|r| kind.is_empty() || kind_param(manage::kind_of(r)) == kind)
        .filter(|r| {
            needle.is_empty()
                || r.name.to_lowercase().contains(&needle)
                || r.description.to_lowercase().contains(&needle)
        })
        .collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let figures = manage::figures(st.svc(), &ids).await?;
    let zone = zone_of(&sc.chat);
    let routines: Vec<Value> = rows
        .iter()
        .map(|r| {
            context! {
                id => r.id,
                name => r.name,
                description => r.description,
                kind => manage::kind_of(r).as_str(),
                state => state_word(r),
                figures => figures_ctx(figures.get(&r.id), zone),
            }
        })
        .collect();
    Ok(context! { q, kind, routines, total => rows.len() })
}

/// "active", "paused", "draft" or "ended".
fn state_word(r: &RoutineRow) -> &'static str {
    if r.status == RoutineStatus::Ended {
        "ended"
    } else if r.publication == Publication::Draft {
        "draft"
    } else if r.paused {
        "paused"
    } else {
        "active"
    }
}

/// GET `/routines`: the chat's routines with their figures.
async fn list(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(chat): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let sc = match pages::scope(&st, &headers, &chat).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    render_list(
        &st,
        &sc,
        &query,
        StatusCode::OK,
        Vec::new(),
        query.get("deleted").cloned(),
    )
    .await
}

async fn render_list(
    st: &AdminState,
    sc: &Scope,
    query: &HashMap<String, String>,
    status: StatusCode,
    import_errors: Vec<String>,
    deleted: Option<String>,
) -> Response {
    let page = match list_ctx(st, sc, query).await {
        Ok(p) => p,
        Err(e) => return routine_failed(sc, e),
    };
    pages::render(
        status,
        "routines.html",
        context! {
            title => sc.title(),
            import_errors,
            max_upload_kb => MAX_UPLOAD_BYTES / 1024,
            deleted,
            ..merge_maps([page, sc.base()])
        },
    )
}

/// A service error on a page: not found → 404, denied → 403, storage → 500, invalid → 422.
fn routine_failed(sc: &Scope, e: RoutineError) -> Response {
    match e {
        RoutineError::NotFound(_) => pages::not_found(&sc.session),
        RoutineError::Denied(text) => pages::render(
            StatusCode::FORBIDDEN,
            "error.html",
            context! { heading => "Not allowed", text, ..sc.base() },
        ),
        RoutineError::Store(e) => pages::failed(e),
        e @ RoutineError::Invalid { .. } => pages::render(
            StatusCode::UNPROCESSABLE_ENTITY,
            "error.html",
            context! { heading => "Not done", text => e.to_string(), ..sc.base() },
        ),
    }
}

/// Field id → the error messages shown next to it; `""` holds those of no field.
type FieldErrors = BTreeMap<String, Vec<String>>;

/// The tools a recorded routine's replay may be restricted to: those its recording called and
/// those its prompt step allows now (in that order, once each). Empty for another routine.
fn recorded_tools(doc: &RoutineDoc) -> Vec<String> {
    let Some(rec) = &doc.definition.recorded else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    let allowed = prompt_tools(doc).cloned().unwrap_or_default();
    for t in rec.calls.iter().map(|c| &c.tool).chain(allowed.iter()) {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

/// The `tools` list of the routine's first prompt step that has one.
fn prompt_tools(doc: &RoutineDoc) -> Option<&Vec<String>> {
    doc.definition.steps.iter().find_map(|s| match &s.kind {
        StepKind::Prompt { tools: Some(t), .. } => Some(t),
        _ => None,
    })
}

/// What the edit form shows: the stored document, or the edited one a failed save re-shows
/// with the template as typed and the errors by field.
struct Shown {
    doc: RoutineDoc,
    /// `None`: the routine has no template field (several steps).
    template: Option<String>,
    errors: FieldErrors,
}

/// The detail page's context for routine `r` shown as `shown`.
async fn detail_ctx(
    st: &AdminState,
    sc: &Scope,
    r: &RoutineRow,
    shown: &Shown,
) -> Result<Value, RoutineError> {
    let Shown {
        doc,
        template,
        errors,
    } = shown;
    let figures = manage::figures(st.svc(), &[r.id]).await?;
    let zone = zone_of(&sc.chat);
    let kind = manage::kind_of(r);
    let inputs: Vec<Value> = doc
        .definition
        .inputs
        .iter()
        .map(|i| {
            context! {
                name => i.name,
                description => i.description,
                required => i.required,
                default => i.default.clone().unwrap_or_default(),
                kind => i.kind.as_str(),
                example => i.example,
            }
        })
        .collect();
    let allowed = prompt_tools(doc).cloned().unwrap_or_default();
    let registry = doc::hearth_tools();
    let confirm = doc
        .definition
        .recorded
        .as_ref()
        .map(|r| r.confirm.clone())
        .unwrap_or_default();
    let tool_ctx = |t: &String| {
        context! {
            name => t,
            checked => allowed.contains(t),
            confirmed => confirm.contains(t) || registry.get(t).is_some_and(|x| x.destructive()),
        }
    };
    let editable_tools: Vec<Value> = recorded_tools(doc).iter().map(tool_ctx).collect();
    let fixed_tools: Vec<Value> = if kind == Kind::Recorded {
        Vec::new()
    } else {
        allowed.iter().map(tool_ctx).collect()
    };
    let triggers: Vec<Value> = doc
        .triggers
        .iter()
        .enumerate()
        .map(|(i, t)| context! { id => format!("trigger-{}", i + 1), name => format!("trigger.{}", i + 1), value => t })
        .collect();
    let next_fire = st
        .store
        .routine_triggers(r.id)
        .await?
        .iter()
        .filter_map(|t| t.next_fire_at)
        .min()
        .map(|t| {
            t.with_timezone(&zone)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string()
        });
    let steps: Vec<String> = routines::playbooks::step_lines(doc)
        .iter()
        .map(|l| manage::shown_template(l))
        .collect();
    let general = errors.get("").cloned().unwrap_or_default();
    Ok(context! {
        routine => context! {
            id => r.id,
            name => r.name,
            kind => kind.as_str(),
            state => state_word(r),
            personal => r.chat_id > 0,
            owner_id => r.owner_id,
            recorded_request => doc.definition.recorded.as_ref().map(|x| x.request.clone()).filter(|x| !x.is_empty()),
            multi => kind == Kind::MultiStep,
        },
        description => doc.description,
        template,
        inputs,
        editable_tools,
        fixed_tools,
        triggers,
        next_fire,
        steps,
        figures => figures_ctx(figures.get(&r.id), zone),
        errors,
        general,
    })
}

async fn render_detail(
    st: &AdminState,
    sc: &Scope,
    r: &RoutineRow,
    shown: &Shown,
    status: StatusCode,
    saved: bool,
) -> Response {
    match detail_ctx(st, sc, r, shown).await {
        Ok(page) => pages::render(
            status,
            "routines_detail.html",
            context! { title => sc.title(), saved, ..merge_maps([page, sc.base()]) },
        ),
        Err(e) => routine_failed(sc, e),
    }
}

/// GET `/routines/{rid}`: the routine's detail and edit form.
async fn detail(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat, rid)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let sc = match pages::scope(&st, &headers, &chat).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let r = match pages::routine_in(&st, &sc, &rid).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let doc = match doc::doc_of(st.svc(), &r).await {
        Ok(d) => d,
        Err(e) => return routine_failed(&sc, e),
    };
    let shown = Shown {
        template: manage::template_of(&doc),
        doc,
        errors: FieldErrors::new(),
    };
    render_detail(
        &st,
        &sc,
        &r,
        &shown,
        StatusCode::OK,
        query.contains_key("saved"),
    )
    .await
}

/// The pairs of an `application/x-www-form-urlencoded` body, in order.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn first<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Apply the edit form to `doc`: description, template (`None`: no template field), each
/// input's description / required / default, a recorded routine's tools (a subset of
/// [`recorded_tools`]) and the trigger strings. Returns the template as typed and the errors of
/// the template's own rules (the rest is validated by the save).
fn apply_form(
    r: &RoutineRow,
    doc: &mut RoutineDoc,
    form: &[(String, String)],
) -> (Option<String>, FieldErrors) {
    let mut errors = FieldErrors::new();
    if let Some(d) = first(form, "description") {
        doc.description = d.replace("\r\n", "\n").trim().to_string();
    }
    let had_template = manage::template_of(doc).is_some();
    let template = if had_template {
        first(form, "template").map(|t| t.replace("\r\n", "\n"))
    } else {
        None
    };
    for i in doc.definition.inputs.iter_mut() {
        let key = |f: &str| format!("input.{}.{f}", i.name);
        if let Some(d) = first(form, &key("description")) {
            i.description = d.trim().to_string();
        }
        i.required = first(form, &key("required")).is_some();
        if let Some(d) = first(form, &key("default")) {
            let d = d.trim();
            i.default = (!d.is_empty()).then(|| d.to_string());
        }
    }
    let offered = recorded_tools(doc);
    if !offered.is_empty() {
        let chosen: Vec<String> = offered
            .iter()
            .filter(|t| first(form, &format!("tool.{t}")).is_some())
            .cloned()
            .collect();
        for s in doc.definition.steps.iter_mut() {
            if let StepKind::Prompt { tools: Some(t), .. } = &mut s.kind {
                *t = chosen;
                break;
            }
        }
    }
    doc.triggers = form
        .iter()
        .filter(|(k, _)| k.starts_with("trigger."))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if let Some(t) = &template {
        if let Err(e) = manage::set_template(r, doc, t.trim()) {
            errors
                .entry("template".into())
                .or_default()
                .push(rule_of(&e));
        }
    }
    (template, errors)
}

/// The rule of an input error without its field ("template: x" → "x").
fn rule_of(e: &RoutineError) -> String {
    match e {
        RoutineError::Invalid { rule, .. } => rule.clone(),
        e => e.to_string(),
    }
}

/// The field id a validation error belongs to (`""`: none; shown above the form).
fn field_of(e: &DefinitionError, doc: &RoutineDoc, has_template: bool) -> String {
    let at = e.at.as_str();
    match at {
        "description" => "description".into(),
        "triggers" => doc
            .triggers
            .iter()
            .position(|t| e.message.starts_with(&format!("'{t}':")))
            .map(|i| format!("trigger-{}", i + 1))
            .unwrap_or_else(|| "triggers".into()),
        "template" | "prompt" if has_template => "template".into(),
        _ if at.starts_with("step") && e.message.starts_with("tools:") => "tools".into(),
        _ if at.starts_with("step") && has_template && doc.definition.steps.len() == 1 => {
            "template".into()
        }
        _ => String::new(),
    }
}

/// POST `/routines/{rid}`: save the edit form through the chat's own save (validation, rights,
/// menu sync); 303 back to the page, or the form again with the errors next to their fields
/// (422, nothing changed).
async fn save(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat, rid)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let sc = match pages::scope_post(&st, &headers, &chat, first(&form, "csrf")).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let r = match pages::routine_in(&st, &sc, &rid).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut doc = match doc::doc_of(st.svc(), &r).await {
        Ok(d) => d,
        Err(e) => return routine_failed(&sc, e),
    };
    let (template, mut errors) = apply_form(&r, &mut doc, &form);
    if errors.is_empty() {
        match doc::save_doc(st.svc(), sc.chat.id, actor(&sc), &doc).await {
            Ok(saved) => {
                return Redirect::to(&format!(
                    "/admin/g/{}/routines/{}?saved=1",
                    sc.chat.id, saved.routine.id
                ))
                .into_response()
            }
            Err(SaveError::Invalid(v)) => {
                for e in &v {
                    let field = field_of(e, &doc, template.is_some());
                    let text = if field.is_empty() {
                        e.to_string()
                    } else {
                        e.message.clone()
                    };
                    errors.entry(field).or_default().push(text);
                }
            }
            Err(SaveError::Routine(RoutineError::Invalid { field, rule })) => {
                let e = DefinitionError {
                    at: field,
                    message: rule,
                };
                let f = field_of(&e, &doc, template.is_some());
                errors.entry(f).or_default().push(e.to_string());
            }
            Err(SaveError::Routine(e)) => return routine_failed(&sc, e),
        }
    }
    let shown = Shown {
        doc,
        template,
        errors,
    };
    render_detail(
        &st,
        &sc,
        &r,
        &shown,
        StatusCode::UNPROCESSABLE_ENTITY,
        false,
    )
    .await
}

/// GET `/routines/{rid}/export.toml`: the routine's document as a download.
async fn export(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat, rid)): Path<(String, String)>,
) -> Response {
    let sc = match pages::scope(&st, &headers, &chat).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let r = match pages::routine_in(&st, &sc, &rid).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match doc::doc_of(st.svc(), &r).await {
        Ok(d) => (
            [
                (
                    header::CONTENT_TYPE,
                    "application/toml; charset=utf-8".to_string(),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    // names are [a-z0-9_] (an older one may hold '-'); keep only those
                    format!(
                        "attachment; filename=\"{}.toml\"",
                        r.name
                            .chars()
                            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                            .collect::<String>()
                    ),
                ),
            ],
            doc::export_doc(&d),
        )
            .into_response(),
        Err(e) => routine_failed(&sc, e),
    }
}

/// POST `/routines/{rid}/delete`: delete the routine (with its triggers and history) through
/// [`routines::delete`]; 303 to the list.
async fn delete(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path((chat, rid)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let sc = match pages::scope_post(&st, &headers, &chat, first(&form, "csrf")).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let r = match pages::routine_in(&st, &sc, &rid).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match routines::delete(st.svc(), sc.chat.id, &r.name, actor(&sc)).await {
        Ok(gone) => Redirect::to(&format!(
            "/admin/g/{}/routines?deleted={}",
            sc.chat.id, gone.name
        ))
        .into_response(),
        Err(e) => routine_failed(&sc, e),
    }
}

/// GET `/routines/import`: the form lives on the list page.
async fn import_page(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(chat): Path<String>,
) -> Response {
    match pages::scope(&st, &headers, &chat).await {
        Ok(sc) => Redirect::to(&format!("/admin/g/{}/routines#import", sc.chat.id)).into_response(),
        Err(r) => r,
    }
}

/// POST `/routines/import` (multipart: `csrf`, `file`): parse the TOML document and save it
/// as a routine of the chat (a new one, or the routine of that name updated, as the chat's
/// import does). 303 to the routine; errors are shown on the list page next to the upload
/// field (422, nothing stored).
async fn import(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(chat): Path<String>,
    body: Bytes,
) -> Response {
    // the chat first (session, rights), then the CSRF field inside the multipart body
    let sc = match pages::scope(&st, &headers, &chat).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parts = multipart_fields(content_type, body)
        .await
        .unwrap_or_default();
    let field = |name: &str| {
        parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    };
    let csrf = field("csrf").and_then(|v| std::str::from_utf8(v).ok());
    if !super::auth::csrf_ok(&sc.session, csrf) {
        return pages::forbidden(&sc.session);
    }
    let errors = match field("file") {
        None | Some([]) => vec!["choose a .toml file to import".to_string()],
        Some(f) if f.len() > MAX_UPLOAD_BYTES => vec![format!(
            "the file is {} KB; the limit is {} KB",
            f.len().div_ceil(1024),
            MAX_UPLOAD_BYTES / 1024
        )],
        Some(f) => match std::str::from_utf8(f) {
            Err(_) => vec!["the file is not UTF-8 text (a TOML document is)".to_string()],
            Ok(text) => match doc::parse_doc(text) {
                Err(v) => v.iter().map(ToString::to_string).collect(),
                Ok(d) => match doc::save_doc(st.svc(), sc.chat.id, actor(&sc), &d).await {
                    Ok(saved) => {
                        return Redirect::to(&format!(
                            "/admin/g/{}/routines/{}",
                            sc.chat.id, saved.routine.id
                        ))
                        .into_response()
                    }
                    Err(SaveError::Invalid(v)) => v.iter().map(ToString::to_string).collect(),
                    Err(SaveError::Routine(RoutineError::Store(e))) => return pages::failed(e),
                    Err(SaveError::Routine(e)) => vec![e.to_string()],
                },
            },
        },
    };
    render_list(
        &st,
        &sc,
        &HashMap::new(),
        StatusCode::UNPROCESSABLE_ENTITY,
        errors,
        None,
    )
    .await
}

/// The fields of a `multipart/form-data` body (RFC 7578, parsed by `multer`, the parser behind
/// axum's own `Multipart`): (name, content) in order; `None` when the content type is not
/// multipart with a boundary or the body does not parse.
async fn multipart_fields(content_type: &str, body: Bytes) -> Option<Vec<(String, Vec<u8>)>> {
    let boundary = multer::parse_boundary(content_type).ok()?;
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut parts = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = parts.next_field().await.ok()? {
        let name = field.name().unwrap_or_default().to_string();
        out.push((name, field.bytes().await.ok()?.to_vec()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multipart_fields_of_a_browser_upload() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.toml\"\r\nContent-Type: application/toml\r\n\r\nname = \"x\"\r\n\r\n--XyZ--\r\n";
        let body = Bytes::from_static(body);
        let f = multipart_fields("multipart/form-data; boundary=XyZ", body.clone())
            .await
            .unwrap();
        assert_eq!(
            f,
            vec![
                ("csrf".to_string(), b"abc".to_vec()),
                ("file".to_string(), b"name = \"x\"\r\n".to_vec()),
            ]
        );
        assert!(multipart_fields("text/plain", body).await.is_none());
        let broken = Bytes::from_static(b"--XyZ\r\nbroken");
        assert!(
            multipart_fields("multipart/form-data; boundary=\"XyZ\"", broken)
                .await
                .is_none()
        );
    }
}
