//! The web admin over a real listener for integration tests (issue 11): the core over the
//! test store and manual clock, the admin router (with a routine engine) on 127.0.0.1:0, and
//! reqwest without redirects, the session cookie sent by hand.
//!
//! Groups: Home (-1001): Alice admin (first member), Bob and Carol members. Cabin (-1002): Bob
//! admin. [`AdminSite::sign_in`] goes through `/admin` in the member's DM and the link's POST.
use std::sync::Arc;

use hearth::{
    http::{self, admin::AdminState},
    routines::RoutineEngine,
    types::{ChatKind, ChatRef},
};
use reqwest::{redirect::Policy, Client, StatusCode};
use tokio_util::sync::CancellationToken;

use super::*;

/// `http.public_url` of the test site.
pub const PUBLIC: &str = "https://hearth.test";

/// The second group (Bob admin).
pub fn cabin() -> ChatRef {
    ChatRef {
        id: -1002,
        kind: ChatKind::Group,
        title: "Cabin".into(),
    }
}

pub struct AdminSite {
    pub app: TestApp,
    /// The routine engine behind the pages (drive it to run what a page started).
    pub engine: Arc<RoutineEngine>,
    pub base: String,
    pub client: Client,
    stop: CancellationToken,
}

impl Drop for AdminSite {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The site over a fresh app. Home (-1001): Alice admin (first member), Bob and Carol members. Cabin (-1002): Bob admin.
pub async fn setup() -> AdminSite {
    setup_with(vec![]).await
}

/// [`setup`] with a model script.
pub async fn setup_with(script: Vec<Script>) -> AdminSite {
    let app = TestApp::with(|c| c.http.public_url = Some(PUBLIC.into()), script).await;
    app.say(&group(), &alice(), "/help").await;
    app.say(&group(), &bob(), "/help").await;
    app.say(&group(), &carol(), "/help").await;
    app.say(&cabin(), &bob(), "/help").await;
    let engine = RoutineEngine::new(app.hearth.svc.clone(), app.hearth.agent.clone());
    let state = AdminState::new(engine.clone(), Some(PUBLIC));
    let stop = CancellationToken::new();
    let (addr, _task) = http::serve(
        "127.0.0.1:0".parse().unwrap(),
        http::admin::router(state),
        stop.clone(),
    )
    .await
    .expect("bind");
    AdminSite {
        app,
        engine,
        base: format!("http://{addr}"),
        client: Client::builder().redirect(Policy::none()).build().unwrap(),
        stop,
    }
}

impl AdminSite {
    /// `/admin` in `who`'s DM; the link's path (`/admin/login/<token>`).
    pub async fn link(&self, who: &hearth::types::UserRef) -> String {
        self.app.say(&dm(who), who, "/admin").await;
        let text = self.app.last_text(who.id);
        let at = text
            .find(&format!("{PUBLIC}/admin/login/"))
            .unwrap_or_else(|| panic!("no link in {text:?}"));
        text[at + PUBLIC.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    /// Open the link (the confirm page, then the POST that uses it); the session cookie.
    pub async fn sign_in(&self, who: &hearth::types::UserRef) -> String {
        let path = self.link(who).await;
        let page = self.get(&path, None).await;
        assert_eq!(page.0, StatusCode::OK);
        assert!(page.2.contains(&format!("action=\"{path}\"")), "{}", page.2);
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/admin");
        let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
        for attr in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/admin",
            "Secure",
            "Max-Age=604800",
        ] {
            assert!(set.contains(attr), "{attr} missing in {set}");
        }
        set.split(';').next().unwrap().to_string()
    }

    /// GET `path` with an optional cookie: (status, Location, body).
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> (StatusCode, String, String) {
        let mut rq = self.client.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            rq = rq.header("cookie", c);
        }
        let r = rq.send().await.unwrap();
        let status = r.status();
        let loc = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, loc, r.text().await.unwrap())
    }

    /// POST a form to `path`: (status, Location).
    pub async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        form: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut rq = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = cookie {
            rq = rq.header("cookie", c);
        }
        let r = rq.send().await.unwrap();
        let loc = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status(), loc)
    }
}

/// The CSRF token in a page's hidden field.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    html[at..at + 64].to_string()
}
