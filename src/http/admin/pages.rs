//! The admin pages: routes, handlers and their minijinja templates (`templates/admin/*.html`,
//! embedded at build time; HTML auto-escaped). Every handler checks the session first; a group
//! page checks that the session's user administers the group before reading anything else.
use std::{collections::HashMap, sync::LazyLock};

use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{any, get, post},
    Form, Router,
};
use minijinja::{context, Environment, Value};

use super::{auth, AdminState};
use crate::store::{AdminSession, RoutineStatus, StoreError};

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, src) in [
        (
            "base.html",
            include_str!("../../../templates/admin/base.html"),
        ),
        (
            "signin.html",
            include_str!("../../../templates/admin/signin.html"),
        ),
        (
            "login.html",
            include_str!("../../../templates/admin/login.html"),
        ),
        (
            "login_failed.html",
            include_str!("../../../templates/admin/login_failed.html"),
        ),
        (
            "overview.html",
            include_str!("../../../templates/admin/overview.html"),
        ),
        (
            "group.html",
            include_str!("../../../templates/admin/group.html"),
        ),
        (
            "not_found.html",
            include_str!("../../../templates/admin/not_found.html"),
        ),
        (
            "error.html",
            include_str!("../../../templates/admin/error.html"),
        ),
    ] {
        if let Err(e) = env.add_template(name, src) {
            tracing::error!(template = name, error = %e, "admin template does not parse");
        }
    }
    env
});

/// The `/admin` routes over `state` (merged into the listener's router by `app::run`).
pub fn router(state: AdminState) -> Router {
    Router::new()
        // a method a page does not take goes to `unknown` (sign-in first, CSRF for a POST)
        .route("/admin", get(overview).fallback(unknown))
        .route("/admin/", get(overview).fallback(unknown))
        .route("/admin/signin", get(signin))
        .route("/admin/login/{token}", get(login_page).post(login))
        .route("/admin/logout", post(logout).fallback(unknown))
        .route("/admin/g/{chat_id}", get(group).fallback(unknown))
        .route("/admin/{*rest}", any(unknown))
        .with_state(state)
}

/// Render `name` with `ctx` as an HTML response with `status`.
fn render(status: StatusCode, name: &str, ctx: Value) -> Response {
    match TEMPLATES.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "admin page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "page failed to render").into_response()
        }
    }
}

fn to_signin() -> Response {
    Redirect::to("/admin/signin").into_response()
}

fn failed(e: StoreError) -> Response {
    tracing::error!(error = %e, "admin page: storage failed");
    render(
        StatusCode::INTERNAL_SERVER_ERROR,
        "error.html",
        context! { heading => "Something went wrong", text => "The database did not answer; try again." },
    )
}

fn not_found(s: &AdminSession) -> Response {
    render(
        StatusCode::NOT_FOUND,
        "not_found.html",
        context! { csrf => s.csrf },
    )
}

/// The request's live session, or the response to give instead (303 to sign-in, or 500).
async fn require(st: &AdminState, headers: &HeaderMap) -> Result<(String, AdminSession), Response> {
    match auth::session(&st.store, st.clock.now(), headers).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(to_signin()),
        Err(e) => Err(failed(e)),
    }
}

async fn signin() -> Response {
    render(StatusCode::OK, "signin.html", context! {})
}

async fn login_page(Path(token): Path<String>) -> Response {
    if !token.bytes().all(|c| c.is_ascii_hexdigit()) {
        return render(StatusCode::GONE, "login_failed.html", context! {});
    }
    render(StatusCode::OK, "login.html", context! { token })
}

async fn login(State(st): State<AdminState>, Path(token): Path<String>) -> Response {
    match auth::open_session(&st.store, st.clock.now(), &token).await {
        Ok(Some(id)) => (
            [(header::SET_COOKIE, auth::set_cookie(&id, st.secure))],
            Redirect::to("/admin"),
        )
            .into_response(),
        Ok(None) => render(StatusCode::GONE, "login_failed.html", context! {}),
        Err(e) => failed(e),
    }
}

async fn logout(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (id, s) = match require(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !auth::csrf_ok(&s, form.get("csrf").map(String::as_str)) {
        return forbidden(&s);
    }
    if let Err(e) = st.store.revoke_admin_session(&auth::hash(&id)).await {
        return failed(e);
    }
    (
        [(header::SET_COOKIE, auth::clear_cookie(st.secure))],
        Redirect::to("/admin/signin"),
    )
        .into_response()
}

fn forbidden(s: &AdminSession) -> Response {
    render(
        StatusCode::FORBIDDEN,
        "error.html",
        context! {
            csrf => s.csrf,
            heading => "Refused",
            text => "The form was not sent from this session's page (CSRF token missing or wrong); nothing was changed. Reload the page and try again.",
        },
    )
}

async fn overview(State(st): State<AdminState>, headers: HeaderMap) -> Response {
    let (_, s) = match require(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let groups = match st.store.groups_administered_by(s.user_id).await {
        Ok(g) => g,
        Err(e) => return failed(e),
    };
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|g| context! { id => g.id, title => g.title })
        .collect();
    render(
        StatusCode::OK,
        "overview.html",
        context! { csrf => s.csrf, groups },
    )
}

async fn group(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(chat_id): Path<String>,
) -> Response {
    let (_, s) = match require(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(chat_id) = chat_id.parse::<i64>() else {
        return not_found(&s);
    };
    // authorization before anything of the group is read: only an active admin's groups exist
    let admin = match st.store.member(chat_id, s.user_id).await {
        Ok(m) => m.is_some_and(|m| m.active && m.is_admin()),
        Err(e) => return failed(e),
    };
    if !admin {
        return not_found(&s);
    }
    let page = async {
        let chat = st.store.chat(chat_id).await?;
        let members = st.store.members(chat_id).await?;
        let open = st.store.open_chores(chat_id).await?.len();
        let pending = st.store.count_pending_in_chat(chat_id).await?;
        let routines = st.store.routines_of_chat(chat_id).await?;
        Ok::<_, StoreError>((chat, members, open, pending, routines))
    };
    let (chat, members, open, pending, routines) = match page.await {
        Ok((Some(c), m, o, p, r)) => (c, m, o, p, r),
        Ok((None, ..)) => return not_found(&s),
        Err(e) => return failed(e),
    };
    let members: Vec<Value> = members
        .into_iter()
        .filter(|m| m.active)
        .map(|m| context! { name => m.first_name, username => m.username, admin => m.is_admin() })
        .collect();
    let routines: Vec<Value> = routines
        .into_iter()
        .filter(|r| r.status == RoutineStatus::Active)
        .map(|r| context! { name => r.name, description => r.description })
        .collect();
    render(
        StatusCode::OK,
        "group.html",
        context! {
            csrf => s.csrf,
            title => chat.title,
            members,
            open_chores => open,
            pending,
            routines,
        },
    )
}

/// Any other `/admin/*` path: sign-in first; then 404 (a POST is CSRF-checked first: 403).
async fn unknown(
    State(st): State<AdminState>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (_, s) = match require(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        let form: HashMap<String, String> = serde_urlencoded_pairs(&body).into_iter().collect();
        if !auth::csrf_ok(&s, form.get("csrf").map(String::as_str)) {
            return forbidden(&s);
        }
    }
    not_found(&s)
}

/// `application/x-www-form-urlencoded` pairs of `body` (undecodable input gives no pairs).
fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}
