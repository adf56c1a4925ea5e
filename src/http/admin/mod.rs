//! The web admin (issue 11): server-rendered pages on the axum listener for the people who
//! administer a group.
//!
//! Sign-in comes from the bot: `/admin` in a DM answers with a one-time link
//! `<http.public_url>/admin/login/<token>` (32 random bytes, hex; only the SHA-256 is stored;
//! usable once, for 10 minutes). Opening it shows a "Sign in" button; pressing it (a POST, so a
//! chat app's link preview cannot burn the link) opens a session: a cookie `hearth_admin`
//! (`HttpOnly`, `SameSite=Strict`, `Path=/admin`, `Secure` when the public URL is https, 7
//! days), stored hashed in `admin_sessions` with the CSRF token every form carries.
//!
//! Rules: without a live session every `/admin/*` page answers 303 to `/admin/signin`; a session
//! sees only the groups where its user is an active admin, and any other group is 404 (no
//! existence leak); a POST without the session's CSRF token is 403 and changes nothing.
//!
//! Layout: [`auth`] (links, sessions, cookies, CSRF), [`pages`] (handlers and minijinja
//! templates from `templates/admin/`). Uses: services, store, axum, minijinja.

pub mod auth;
pub mod builder;
pub mod overview;
pub mod pages;
pub mod routines;
pub mod runs;
pub mod testrun;

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    clock::SharedClock,
    format::escape_html,
    router::{Command, CommandCtx, CommandSet},
    routines::RoutineEngine,
    services::Services,
    store::Store,
    types::ChatKind,
};

pub use pages::router;

/// What the admin handlers share: the store, the clock (link and session expiry), the routine
/// engine (run controls, test runs, the services behind both) and whether the session cookie is
/// `Secure` (the public URL is https).
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub clock: SharedClock,
    /// The process's routine engine: its services and agent are what chat commands use, so a
    /// page's action goes through the same authorization and validation as the chat's.
    pub engine: Arc<RoutineEngine>,
    /// Mark the session cookie `Secure` (`http.public_url` starts with `https://`).
    pub secure: bool,
}

impl AdminState {
    /// State over `engine` for `http.public_url` = `public_url`.
    pub fn new(engine: Arc<RoutineEngine>, public_url: Option<&str>) -> Self {
        let svc = engine.services();
        Self {
            store: svc.store.clone(),
            clock: svc.clock.clone(),
            secure: public_url.is_some_and(|u| u.starts_with("https://")),
            engine,
        }
    }

    /// The services of the engine (config, outbox, locks, …).
    pub fn svc(&self) -> &Services {
        self.engine.services()
    }
}

/// `/admin`: the sign-in link in a DM; in a group, a pointer to the DM (the link is a
/// credential and must not be posted where others read it).
pub struct AdminCommands;

/// The commands of [`AdminCommands`] (reserved: no routine may be named after them).
pub const COMMANDS: &[(&str, &str)] = &[("admin", "Open the web admin (link sent in a DM)")];

#[async_trait]
impl CommandSet for AdminCommands {
    fn menu(&self) -> &'static [(&'static str, &'static str)] {
        COMMANDS
    }

    async fn handle(
        &self,
        svc: &Services,
        ctx: &CommandCtx<'_>,
        cmd: &Command,
    ) -> Option<anyhow::Result<()>> {
        if cmd.name != "admin" {
            return None;
        }
        let html = match admin_reply(svc, ctx).await {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        Some(
            svc.outbox
                .send(ctx.reply(html))
                .await
                .map(|_| ())
                .map_err(Into::into),
        )
    }
}

async fn admin_reply(svc: &Services, ctx: &CommandCtx<'_>) -> anyhow::Result<String> {
    if ctx.chat_kind != ChatKind::Private {
        return Ok(
            "Send /admin to me in a direct message: the sign-in link is personal.".to_string(),
        );
    }
    let Some(base) = svc
        .config
        .http
        .public_url
        .as_deref()
        .filter(|u| !u.is_empty())
    else {
        return Ok("The web admin is not configured: the operator must set \
                   <code>http.public_url</code> (and <code>http.enabled</code>)."
            .to_string());
    };
    let token = auth::issue_link(&svc.store, svc.clock.now(), ctx.from.id).await?;
    let url = format!("{}/admin/login/{token}", base.trim_end_matches('/'));
    Ok(format!(
        "Your sign-in link (works once, for 10 minutes):\n{}\n\nThe page shows only the groups \
         you administer.",
        escape_html(&url)
    ))
}
