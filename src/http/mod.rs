//! HTTP listener (axum): `/healthz` (the process answers), `/readyz` (the database answers and
//! the chat adapter is connected), plus routes merged in by other adapters (the Telegram webhook,
//! routine api triggers, the web admin in [`admin`]). Uses: store, axum.

pub mod admin;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use axum::{extract::State, http::StatusCode, routing::get, Router};
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
