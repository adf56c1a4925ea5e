//! The api trigger: `POST /routines/{id}/trigger` on hearth's HTTP listener.
//!
//! Owns the route and its answers: 202 `{"run_id": n, "status": "pending"}` (or
//! `"status": "skipped", "reason": "already running"`); 400 for a missing required input; 401 without the
//! routine's bearer token (compared as SHA-256 hashes in constant time; tokens are never logged);
//! 404 for an unknown routine or one without an api trigger; 400 for a body that is not JSON;
//! 413 for a body over 4 KB; 423 while paused; 429 over 60 calls a minute (per routine).
//! A JSON object body is the run's initial inputs (another JSON value is kept under `body`); a
//! single-prompt routine sees it as `{apiArgs}` only when it was created with `api args`.
//! Uses: axum, routines::engine, store (through the engine's services).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{runner::Started, token_hash, RoutineEngine, RoutineError};
use crate::store::{RoutineStatus, RunSource, RunStatus, TriggerKind};

/// Largest accepted body, in bytes.
pub const MAX_BODY_BYTES: usize = 4096;

/// The route, to merge into the HTTP router.
pub fn router(engine: Arc<RoutineEngine>) -> Router {
    Router::new()
        .route("/routines/{id}/trigger", post(trigger))
        // axum answers 413 itself above this; the handler checks the exact 4 KB limit
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(engine)
}

fn answer(code: StatusCode, msg: &str) -> Response {
    (code, Json(json!({ "error": msg }))).into_response()
}

/// True when `presented` hashes to `stored_hash` (constant-time comparison of the hex digests).
pub fn token_matches(presented: &str, stored_hash: &str) -> bool {
    let h = token_hash(presented);
    h.len() == stored_hash.len() && bool::from(h.as_bytes().ct_eq(stored_hash.as_bytes()))
}

async fn trigger(
    State(engine): State<Arc<RoutineEngine>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let svc = engine.services();
    let not_found = || answer(StatusCode::NOT_FOUND, "no such routine with an api trigger");
    let Ok(id) = id.parse::<i64>() else {
        return not_found();
    };
    let routine = match svc.store.routine(id).await {
        Ok(Some(r)) if r.status == RoutineStatus::Active => r,
        Ok(_) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "api trigger: storage");
            return answer(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable");
        }
    };
    let trigger = match svc.store.routine_triggers(id).await {
        Ok(ts) => ts.into_iter().find(|t| t.kind == TriggerKind::Api),
        Err(e) => {
            tracing::error!(error = %e, "api trigger: storage");
            return answer(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable");
        }
    };
    let (Some(trigger), Some(hash)) = (trigger, routine.api_token_hash.as_deref()) else {
        return not_found();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if !presented.is_some_and(|p| token_matches(p, hash)) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "missing or wrong bearer token" })),
        )
            .into_response();
    }
    if body.len() > MAX_BODY_BYTES {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body: at most 4096 bytes of JSON",
        );
    }
    if routine.paused {
        return answer(StatusCode::LOCKED, "routine is paused");
    }
    let now = svc.clock.now();
    if !engine.api_call_allowed(id, now) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "60")],
            Json(json!({ "error": "over 60 calls a minute for this routine" })),
        )
            .into_response();
    }
    let inputs = if body.iter().all(|b| b.is_ascii_whitespace()) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(v) => {
                let mut m = serde_json::Map::new();
                m.insert("body".into(), v);
                m
            }
            Err(_) => return answer(StatusCode::BAD_REQUEST, "body: must be JSON"),
        }
    };
    match engine
        .queue(id, Some(trigger.id), RunSource::Api, inputs)
        .await
    {
        Ok(Started::Run(run_id)) => (
            StatusCode::ACCEPTED,
            Json(json!({ "run_id": run_id, "status": RunStatus::Pending.as_str() })),
        )
            .into_response(),
        Ok(Started::Skipped(run_id, reason)) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "run_id": run_id,
                "status": RunStatus::Skipped.as_str(),
                "reason": reason,
            })),
        )
            .into_response(),
        Err(RoutineError::Store(e)) => {
            tracing::error!(routine = id, error = %e, "api trigger: storage");
            answer(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
        }
        Err(e) => answer(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}
