//! `/healthz` (the process answers), `/readyz` (Redis answers `PING`) and `/metrics`.
//!
//! `/readyz` answers JSON like the worker's: `{"ready":bool,"checks":{"redis":{"ok","detail"}}}`,
//! HTTP 200 or 503, so a load balancer sends no push to a replica that could not store it.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::ServeParts;

pub(super) fn routes() -> Router<ServeParts> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(parts): State<ServeParts>) -> Response {
    let (ok, detail) = match parts.queue.ping().await {
        Ok(()) => (true, "PING answered".to_owned()),
        Err(e) => (false, format!("Redis unreachable: {e}")),
    };
    let body = json!({
        "ready": ok,
        "checks": {"redis": {"ok": ok, "detail": detail}},
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(parts): State<ServeParts>) -> Response {
    crate::worker::http::openmetrics(&parts.metrics.registry)
}
