//! HTTP listener (axum): `/healthz` (the process answers), `/readyz` (the database answers and
//! the chat adapter is connected), plus routes merged in by other adapters (the Telegram webhook,
//! routine api triggers, the web admin in [`admin`]), and `/metrics` ([`metrics_router`]).
//! Uses: store, metrics, axum.

pub mod admin;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use axum::{extract::State, http::StatusCode, routing::get, Router};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Readiness shared with the adapters.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Mark the chat adapter connected (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    /// Current value.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct HealthState {
    store: Store,
    ready: Readiness,
}

/// The base router: health and readiness.
pub fn router(store: Store, ready: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(HealthState { store, ready })
}

async fn readyz(State(st): State<HealthState>) -> (StatusCode, &'static str) {
    if st.store.ping().await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    }
    if !st.ready.get() {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting");
    }
    (StatusCode::OK, "ready")
}

/// `app` with `/metrics` merged in when `cfg` puts it on the main listener (enabled, no
/// `metrics.listen`; then `metrics.token` is required, see [`metrics_router`]). Otherwise `app`
/// unchanged: `/metrics` answers 404 there.
pub fn with_metrics(app: Router, cfg: &crate::config::MetricsConfig, store: Store) -> Router {
    if cfg.enabled && cfg.listen.is_none() {
        app.merge(metrics_router(store, cfg.token.clone()))
    } else {
        app
    }
}

#[derive(Clone)]
struct MetricsState {
    store: Store,
    token: Option<secrecy::SecretString>,
}

/// `GET /metrics`: the Prometheus exposition ([`crate::metrics::render`]), with the inbound
/// queue depth read from `store` at each scrape. With `token`, a request without
/// `Authorization: Bearer <token>` gets 401 (use on the main listener); without, it is open
/// (use only on its own `metrics.listen` address).
pub fn metrics_router(store: Store, token: Option<secrecy::SecretString>) -> Router {
    crate::metrics::install();
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(MetricsState { store, token })
}

async fn metrics(
    State(st): State<MetricsState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(token) = &st.token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_secret(given.as_bytes(), token.expose_secret().as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                "bearer token required",
            )
                .into_response();
        }
    }
    match st.store.pending_inbound_count().await {
        Ok(n) => crate::metrics::set_inbound_depth(n),
        Err(e) => tracing::warn!(error = %e, "inbound queue depth not read"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        crate::metrics::render(),
    )
        .into_response()
}

/// Compare two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Bind `addr` and serve `app` until `stop` is cancelled. Returns the bound address (port 0 picks
/// a free one) and the server task.
///
/// Errors: the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "http server failed");
        }
    });
    tracing::info!(%local, "http listening");
    Ok((local, task))
}
