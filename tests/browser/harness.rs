//! The processes behind a browser test: the real `hearth` binary (fake Bot API over HTTP, a
//! wiremock OpenAI-compatible model, a SQLite file in a temp dir, the admin on a free loopback
//! port), a `chromedriver` on another free port, and a fantoccini client driving headless
//! Chromium through it. Screenshots go to `<target dir>/screenshots/` (`CARGO_TARGET_DIR`-aware:
//! next to cargo's `CARGO_TARGET_TMPDIR`).
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use chrono::Utc;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, Request, Respond, ResponseTemplate,
};

use crate::fake_telegram::{Chat, FakeBotApi, User};

/// The group the scenario administers, and its first member (so its admin): Alice.
pub const HOME: i64 = -1001;
pub const ALICE: i64 = 1;

/// How long any one wait in the browser may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn alice() -> User {
    User::new(ALICE, "Alice").with_username("alice")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first `name` on `PATH`, or a panic that says what to install (a browser test never
/// passes by skipping).
pub fn which(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` not found on PATH: install the Debian package `{package}`")
        })
}

/// Chat completions numbered in arrival order ("Output 1: …", "Output 2: …"), each after
/// `delay` so a run's progress can be watched.
struct Numbered {
    n: AtomicUsize,
    delay: Duration,
}

impl Respond for Numbered {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200)
            .set_delay(self.delay)
            .set_body_json(json!({
                "id": format!("chatcmpl-{n}"), "object": "chat.completion", "created": 1,
                "model": "test-model",
                "choices": [{"index": 0, "message": {"role": "assistant",
                    "content": format!("Output {n}: the fake model's answer number {n}.")},
                    "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
            }))
    }
}

/// A recorded routine with three parameters, as `hearth routines import` takes it.
pub const HANDOVER: &str = include_str!("../fixtures/handover.toml");

/// The real binary serving the admin, and what it talks to.
pub struct Site {
    pub fake: FakeBotApi,
    pub llm: MockServer,
    /// `http.public_url`: `http://127.0.0.1:<port>`.
    pub base: String,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Site {
    /// Seed the database (Home with Alice its admin; the recorded routine `handover` imported
    /// with the binary's own `routines import`), start `hearth run`, wait for `/healthz`.
    pub async fn start(model_delay: Duration) -> Site {
        let fake = FakeBotApi::start().await;
        let llm = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(Numbered {
                n: AtomicUsize::new(0),
                delay: model_delay,
            })
            .mount(&llm)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let db_url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("hearth.db").display()
        );
        {
            let store = hearth::store::Store::connect(&db_url, 1, Duration::from_secs(5))
                .await
                .unwrap();
            let now = Utc::now();
            store
                .upsert_chat(HOME, "group", "Home", "UTC", now)
                .await
                .unwrap();
            store
                .upsert_user(ALICE, "Alice", Some("alice"), now)
                .await
                .unwrap();
            store.ensure_member(HOME, ALICE, true, now).await.unwrap();
        }
        let file = dir.path().join("handover.toml");
        std::fs::write(&file, HANDOVER).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["routines", "import", file.to_str().unwrap(), "--chat"])
            .arg(HOME.to_string())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HEARTH_DATABASE__URL", &db_url)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "routines import: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(screenshots().join("hearth.log")).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TELEGRAM_BOT_TOKEN", "123:BROWSER")
            .env("OPENAI_API_KEY", "sk-browser-test")
            .env("HEARTH_TELEGRAM__API_URL", fake.url())
            .env("HEARTH_TELEGRAM__POLL_TIMEOUT", "1s")
            .env("HEARTH_LLM__BASE_URL", format!("{}/v1", llm.uri()))
            .env("HEARTH_LLM__MODEL", "test-model")
            .env("HEARTH_DATABASE__URL", &db_url)
            .env("HEARTH_HTTP__ENABLED", "true")
            .env("HEARTH_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("HEARTH_HTTP__PUBLIC_URL", &base)
            .env("HEARTH_LOG__FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let site = Site {
            fake,
            llm,
            base,
            child,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", site.base)).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "hearth did not serve /healthz");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // the group is known to the fake Bot API too (its chat-scoped calls need it)
        site.fake.push_update(FakeBotApi::text_message(
            0,
            Chat::group(HOME, "Home"),
            alice(),
            1,
            "/help",
        ));
        site
    }

    /// `/admin` in Alice's DM; the one-time link the bot answered with.
    pub async fn sign_in_link(&self) -> String {
        self.fake.push_update(FakeBotApi::text_message(
            0,
            Chat::private(ALICE, "Alice"),
            alice(),
            2,
            "/admin",
        ));
        let prefix = format!("{}/admin/login/", self.base);
        let deadline = Instant::now() + WAIT;
        loop {
            let link = self
                .fake
                .calls_to("sendMessage")
                .into_iter()
                .filter(|b| b["chat_id"].as_i64() == Some(ALICE))
                .filter_map(|b| b["text"].as_str().map(str::to_string))
                .find_map(|t| {
                    let at = t.find(&prefix)?;
                    t[at..].split_whitespace().next().map(|s| {
                        s.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                            .to_string()
                    })
                });
            if let Some(l) = link {
                return l;
            }
            assert!(Instant::now() < deadline, "no sign-in link sent to Alice");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stop the binary (SIGKILL through `kill_on_drop` is enough: the database is a temp file).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// `<target dir>/screenshots/`, created.
pub fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `chromedriver` process on a free port and a session of headless Chromium.
pub struct Browser {
    pub c: Client,
    driver: tokio::process::Child,
    shots: usize,
}

impl Browser {
    /// Start chromedriver and open a headless Chromium session (1280×1024).
    pub async fn start() -> Browser {
        let chromedriver = which("chromedriver", "chromium-driver");
        let chromium = which("chromium", "chromium");
        let port = free_port();
        let driver = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = http.get(format!("{url}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,1024", "--lang=en-US"],
            }),
        );
        let c = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a WebDriver session of headless Chromium");
        Browser {
            c,
            driver,
            shots: 0,
        }
    }

    /// Save a PNG of the whole page (the window grown to the page's height, at most 4000 px,
    /// then back to 1280×1024) as `<target>/screenshots/NN-<name>.png`; its path.
    pub async fn shot(&mut self, name: &str) -> PathBuf {
        self.shots += 1;
        let h = self
            .js("return document.documentElement.scrollHeight;")
            .await
            .as_u64()
            .unwrap_or(1024)
            .clamp(1024, 4000);
        self.c.set_window_size(1280, h as u32 + 100).await.unwrap();
        let png = self.c.screenshot().await.expect("screenshot");
        self.c.set_window_size(1280, 1024).await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let file = screenshots().join(format!("{:02}-{name}.png", self.shots));
        std::fs::write(&file, png).unwrap();
        file
    }

    /// Open `url` (absolute).
    pub async fn goto(&self, url: &str) {
        self.c
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    /// Wait for the element matching `css`.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!(
                "no `{css}` on {}: {e}\n{}",
                self.path().await,
                self.c.source().await.unwrap_or_default()
            ),
        }
    }

    /// All elements matching `css` now.
    pub async fn all(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.c.find_all(Locator::Css(css)).await.unwrap()
    }

    /// Click the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Replace the value of the field matching `css` with `text` (typed, as a user would).
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// Wait until the value of the field matching `css` satisfies `ok` (a page may be
    /// re-drawn meanwhile).
    pub async fn wait_value(&self, css: &str, ok: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(e) = self.c.find(Locator::Css(css)).await {
                if let Ok(Some(v)) = e.prop("value").await {
                    if ok(&v) {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "`{css}` never got the expected value on {}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The current URL's path (and query).
    pub async fn path(&self) -> String {
        let u = self.c.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Wait until the current path satisfies `ok`; the path.
    pub async fn wait_path(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let p = self.path().await;
            if ok(&p) {
                return p;
            }
            assert!(Instant::now() < deadline, "still on {p}, expected {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the element matching `css` now, read in one script (no stale element when
    /// the page swaps it between a find and a read); empty when there is none.
    pub async fn text_now(&self, css: &str) -> String {
        let v = self
            .c
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
                vec![Value::String(css.into())],
            )
            .await
            .unwrap();
        v.as_str().unwrap_or_default().to_string()
    }

    /// Mark the current document, so [`Browser::wait_new_page`] can tell when a form's round
    /// trip has replaced it.
    pub async fn mark_page(&self) {
        self.js("window.__hearth_old_page = true; return true;")
            .await;
    }

    /// Wait until the document marked by [`Browser::mark_page`] is gone and the new one loaded.
    pub async fn wait_new_page(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let old = self
                .c
                .execute(
                    "return window.__hearth_old_page === true || document.readyState !== 'complete';",
                    vec![],
                )
                .await;
            if let Ok(Value::Bool(false)) = old {
                return;
            }
            assert!(Instant::now() < deadline, "the page was not replaced");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Run a script in the page; its value.
    pub async fn js(&self, script: &str) -> Value {
        self.c.execute(script, vec![]).await.unwrap()
    }

    /// End the session (Chromium quits) and chromedriver.
    pub async fn stop(self) {
        let Browser { c, mut driver, .. } = self;
        let _ = c.close().await;
        let _ = driver.start_kill();
        let _ = driver.wait().await;
    }
}
