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
use crate::{
    store::{AdminSession, StoreError},
    types::ChatKind,
};

/// The templates of `templates/admin/`, embedded at build time (a new page's template is a new
/// file there, nothing to register).
static TEMPLATE_DIR: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/templates/admin");

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_loader(|name| {
        Ok(TEMPLATE_DIR
            .get_file(name)
            .and_then(|f| f.contents_utf8())
            .map(str::to_string))
    });
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
        // each page module merges its routes here (one line each; `Router<AdminState>`)
        .merge(super::routines::routes())
        .merge(super::builder::routes())
        .merge(super::testrun::routes())
        .merge(super::runs::routes())
        .merge(super::overview::routes())
        .route("/admin/{*rest}", any(unknown))
        .with_state(state)
}

/// Render `name` with `ctx` as an HTML response with `status`.
pub fn render(status: StatusCode, name: &str, ctx: Value) -> Response {
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

/// 500 with a short page; the error is logged (never conversation text).
pub fn failed(e: StoreError) -> Response {
    tracing::error!(error = %e, "admin page: storage failed");
    render(
        StatusCode::INTERNAL_SERVER_ERROR,
        "error.html",
        context! { heading => "Something went wrong", text => "The database did not answer; try again." },
    )
}

/// 404 inside the signed-in layout (also for a group the session may not see: no existence leak).
pub fn not_found(s: &AdminSession) -> Response {
    render(
        StatusCode::NOT_FOUND,
        "not_found.html",
        context! { csrf => s.csrf },
    )
}

/// The request's live session, or the response to give instead (303 to sign-in, or 500).
pub async fn require(
    st: &AdminState,
    headers: &HeaderMap,
) -> Result<(String, AdminSession), Response> {
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

/// 403: a POST without the session's CSRF token; nothing was changed.
pub fn forbidden(s: &AdminSession) -> Response {
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
    // the user's DM with hearth (their personal routines), once it exists
    let dm = match st.store.chat(s.user_id).await {
        Ok(c) => c.is_some_and(|c| c.kind == ChatKind::Private.as_str()),
        Err(e) => return failed(e),
    };
    render(
        StatusCode::OK,
        "overview.html",
        context! { csrf => s.csrf, groups, dm => dm.then_some(s.user_id) },
    )
}

/// A signed-in request's view of one chat: the session and the chat it may see.
pub struct Scope {
    pub session: AdminSession,
    /// The chat (a group the user administers, or the user's own DM).
    pub chat: crate::store::entity::chat::Model,
    /// The chat is the user's DM (their personal routines), not a group.
    pub own_dm: bool,
}

impl Scope {
    /// The minijinja context every chat page extends: `csrf`, `chat` (`id`, `title`, `own_dm`)
    /// for the layout's chat navigation.
    pub fn base(&self) -> Value {
        context! {
            csrf => self.session.csrf,
            chat => context! { id => self.chat.id, title => self.title(), own_dm => self.own_dm },
        }
    }

    /// The chat's title for headings ("Your direct messages" for the user's DM).
    pub fn title(&self) -> String {
        if self.own_dm {
            "Your direct messages".to_string()
        } else {
            self.chat.title.clone()
        }
    }
}

/// Authorize a chat page BEFORE anything of the chat is read: the session (else 303 to
/// sign-in), then the chat id from the path, which must be a group where the session's user is
/// an active admin, or the user's own DM (Telegram: a private chat's id is the user's id). Any
/// other id, well-formed or not, is the 404 page (no existence leak). Issue 11, item 2.
pub async fn scope(st: &AdminState, headers: &HeaderMap, chat_id: &str) -> Result<Scope, Response> {
    let (_, s) = require(st, headers).await?;
    let Ok(chat_id) = chat_id.parse::<i64>() else {
        return Err(not_found(&s));
    };
    let own_dm = chat_id == s.user_id;
    if !own_dm {
        let admin = match st.store.member(chat_id, s.user_id).await {
            Ok(m) => m.is_some_and(|m| m.active && m.is_admin()),
            Err(e) => return Err(failed(e)),
        };
        if !admin {
            return Err(not_found(&s));
        }
    }
    match st.store.chat(chat_id).await {
        Ok(Some(chat)) if !own_dm || chat.kind == ChatKind::Private.as_str() => Ok(Scope {
            session: s,
            chat,
            own_dm,
        }),
        Ok(_) => Err(not_found(&s)),
        Err(e) => Err(failed(e)),
    }
}

/// The routine `rid` (the path's text) of the scope's chat, or the response to give instead: the
/// 404 page for an id that does not parse, does not exist or belongs to another chat (no
/// existence leak), 500 when storage fails.
pub async fn routine_in(
    st: &AdminState,
    sc: &Scope,
    rid: &str,
) -> Result<crate::store::RoutineRow, Response> {
    let Ok(id) = rid.parse::<i64>() else {
        return Err(not_found(&sc.session));
    };
    match st.store.routine(id).await {
        Ok(Some(r)) if r.chat_id == sc.chat.id => Ok(r),
        Ok(_) => Err(not_found(&sc.session)),
        Err(e) => Err(failed(e)),
    }
}

/// [`scope`] for a POST: also checks the form's `csrf` field (else 403, nothing changed).
pub async fn scope_post(
    st: &AdminState,
    headers: &HeaderMap,
    chat_id: &str,
    csrf: Option<&str>,
) -> Result<Scope, Response> {
    let sc = scope(st, headers, chat_id).await?;
    if !auth::csrf_ok(&sc.session, csrf) {
        return Err(forbidden(&sc.session));
    }
    Ok(sc)
}

/// Any other `/admin/*` path: sign-in first; then 404 (a POST is CSRF-checked first: 403).
pub async fn unknown(
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
