//! `/metrics`, `/healthz` and `/readyz`.
//!
//! `/readyz` is ready when all three hold:
//!
//! - Redis answers `PING`;
//! - a token can be had, or the queue is paused with a reason (a token misconfiguration or a
//!   spent quota: the worker is waiting correctly, and a restart would not help);
//! - Redis's `maxmemory-policy` is `noeviction`: any other policy lets Redis silently drop
//!   queue keys (jobs, leases, events) under memory pressure. It is read from `INFO memory`,
//!   which managed Redis services allow even where `CONFIG GET` is disabled.
//!
//! A pause never makes a worker not ready. A pause is shared by every worker through Redis, so
//! in Kubernetes a not-ready answer would hold up every rollout for as long as the pause lasts
//! (a new pod would never become ready, and `maxUnavailable: 0` keeps the old ones), including
//! the rollout that fixes a bad secret, and would count every pod as disrupted. The pause is
//! reported instead: the `pause` check is always ok and its detail is `paused: REASON (…)` or
//! `not paused`; `envshare_queue_paused` and the alerts built on it are what page.
//! A pause set by `envshare pause` without `--for` reads `paused until resumed: REASON`.
//!
//! The answer is JSON: `{"ready":bool,"checks":{"redis":{"ok","detail"},…}}`, HTTP 200 or 503.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tracing::warn;

use super::handler::ShareContext;
use super::metrics::MetricsRegistry;
use crate::schedule::PAUSE_UNTIL_RESUMED_MS;
use crate::store::{Queue, ServerCheck};

#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) queue: Queue,
    pub(crate) ctx: Arc<ShareContext>,
    pub(crate) registry: Arc<MetricsRegistry>,
}

pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(s): State<HttpState>) -> Response {
    // Queue depth is read now, in one round trip, so a scrape shows the current state; if Redis
    // is down the gauges keep their last values and the error is counted by the loops.
    match s.queue.stats().await {
        Ok(stats) => s.registry.metrics.set_queue(&stats, s.queue.now_ms()),
        Err(e) => warn!(error = %e, "reading queue stats for /metrics failed"),
    }
    openmetrics(&s.registry.registry)
}

/// A registry's text exposition (OpenMetrics) as a `/metrics` answer; also serves `envshare
/// serve`'s `/metrics`.
pub(crate) fn openmetrics(registry: &prometheus_client::registry::Registry) -> Response {
    let mut body = String::with_capacity(8 * 1024);
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn check(ok: bool, detail: impl Into<String>) -> Value {
    json!({"ok": ok, "detail": detail.into()})
}

async fn readyz(State(s): State<HttpState>) -> Response {
    let ping = s.queue.ping().await;
    let redis = match &ping {
        Ok(()) => check(true, "PING answered"),
        Err(e) => check(false, format!("Redis unreachable: {e}")),
    };

    let policy = if ping.is_ok() {
        match s.queue.eviction_policy().await {
            Ok(ServerCheck::NoEviction) => check(true, "maxmemory-policy is noeviction"),
            Ok(ServerCheck::Evicting(p)) => check(
                false,
                format!(
                    "maxmemory-policy is {p}: an evicting Redis silently drops jobs, leases and \
                     events under memory pressure. Set `maxmemory-policy noeviction` \
                     (redis.conf or CONFIG SET)"
                ),
            ),
            Ok(ServerCheck::Unknown) => check(false, "INFO memory has no maxmemory_policy field"),
            Err(e) => check(false, format!("cannot read INFO memory: {e}")),
        }
    } else {
        check(false, "Redis unreachable")
    };

    let token = if ping.is_ok() {
        token_check(&s).await
    } else {
        check(false, "Redis unreachable")
    };

    let pause = if ping.is_ok() {
        pause_check(&s).await
    } else {
        check(true, "unknown: Redis unreachable")
    };

    let ready = [&redis, &policy, &token]
        .iter()
        .all(|c| c["ok"].as_bool() == Some(true));
    let body = json!({
        "ready": ready,
        "checks": {"redis": redis, "maxmemory_policy": policy, "token": token, "pause": pause},
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The pause in force, whoever set it (`envshare pause`, a spent quota, a token
/// misconfiguration): informational, always ok (see the module documentation).
async fn pause_check(s: &HttpState) -> Value {
    let now = s.queue.now_ms();
    match s.queue.pause_in_force().await {
        Ok(None) => check(true, "not paused"),
        Ok(Some(p)) if p.until_ms >= PAUSE_UNTIL_RESUMED_MS => {
            check(true, format!("paused until resumed: {}", p.reason))
        }
        Ok(Some(p)) => check(
            true,
            format!(
                "paused: {} (for {} s more)",
                p.reason,
                p.until_ms.saturating_sub(now).div_ceil(1000)
            ),
        ),
        Err(e) => check(true, format!("unknown: cannot read the pause: {e}")),
    }
}

/// A token is obtainable (cached, fixed, or fetched now), or the queue is paused with a reason.
async fn token_check(s: &HttpState) -> Value {
    let paused = match s.queue.stats().await {
        Ok(stats) => stats
            .paused
            .filter(|p| p.until_ms > s.queue.now_ms() && !p.reason.is_empty()),
        Err(_) => None,
    };
    // While a misconfiguration pause is in force, asking WeChat on every probe would only
    // repeat the refused fetch: report the pause instead.
    if let Some(p) = &paused
        && s.ctx.is_misconfigured()
    {
        return check(true, format!("paused: {}", p.reason));
    }
    match s.ctx.tokens.status().await {
        Ok(st) if st.cached => return check(true, "token available"),
        Ok(_) | Err(_) => {}
    }
    match s.ctx.tokens.token().await {
        Ok(_) => check(true, "token obtained"),
        Err(e) => match paused {
            Some(p) => check(true, format!("paused: {}", p.reason)),
            None => check(false, e.to_string()),
        },
    }
}
