//! `envshare serve`'s Prometheus metrics: requests by route, method and status with their
//! latency by route, and the callback's outcomes. Encoded by the worker's `/metrics` helper.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::ServeParts;
use crate::worker::metrics::{Label, label};

type RequestLabels = [(&'static str, String); 3];
type CallbackLabels = [(&'static str, String); 2];

fn duration_histogram() -> Histogram {
    // 0.25 ms … about 4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// The registry and the metrics in it.
pub(crate) struct ServeMetrics {
    pub(crate) registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<Label, Histogram, fn() -> Histogram>,
    /// Verified pushes by `info_type` and `result` (`applied`, `repeat`, `not_newer`, `ignored`).
    callback_messages: Family<CallbackLabels, Counter>,
    /// Refused pushes by `reason`.
    callback_rejections: Family<Label, Counter>,
    /// Pushes answered 503 because Redis or the enqueue failed (WeChat sends them again).
    callback_errors: Counter,
    /// Pairs of automatic shares by `result` (`enqueued`, `skipped_duplicate`).
    auto_share_pairs: Family<Label, Counter>,
}

impl std::fmt::Debug for ServeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeMetrics").finish_non_exhaustive()
    }
}

impl ServeMetrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("envshare");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: Family<Label, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let callback_messages = Family::<CallbackLabels, Counter>::default();
        let callback_rejections = Family::<Label, Counter>::default();
        let callback_errors = Counter::default();
        let auto_share_pairs = Family::<Label, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests of envshare serve, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency of envshare serve, by route",
            durations.clone(),
        );
        registry.register(
            "callback_messages",
            "Verified WeChat callback pushes by info_type and result (applied, repeat, \
             not_newer, ignored)",
            callback_messages.clone(),
        );
        registry.register(
            "callback_rejections",
            "WeChat callback pushes refused with a 4xx, by reason",
            callback_rejections.clone(),
        );
        registry.register(
            "callback_errors",
            "WeChat callback pushes answered 503 because Redis or the enqueue failed",
            callback_errors.clone(),
        );
        registry.register(
            "auto_share_pairs",
            "Pairs of automatic shares after an authorization, by result (enqueued, \
             skipped_duplicate)",
            auto_share_pairs.clone(),
        );
        Self {
            registry,
            requests,
            durations,
            callback_messages,
            callback_rejections,
            callback_errors,
            auto_share_pairs,
        }
    }

    pub(crate) fn message(&self, info_type: &str, result: &'static str) {
        self.callback_messages
            .get_or_create(&[
                ("info_type", info_type.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    pub(crate) fn rejection(&self, reason: &'static str) {
        self.callback_rejections
            .get_or_create(&label("reason", reason))
            .inc();
    }

    pub(crate) fn error(&self) {
        self.callback_errors.inc();
    }

    pub(crate) fn auto_share(&self, enqueued: u64, skipped: u64) {
        for (result, n) in [("enqueued", enqueued), ("skipped_duplicate", skipped)] {
            if n > 0 {
                self.auto_share_pairs
                    .get_or_create(&label("result", result))
                    .inc_by(n);
            }
        }
    }
}

/// Counts and times every request by its route (the matched path, so ids in paths never make
/// new series; `unmatched` for a 404 without a route).
pub(crate) async fn track(State(parts): State<ServeParts>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let m = &parts.metrics;
    m.durations
        .get_or_create(&label("route", route.clone()))
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&[
            ("route", route),
            ("method", method),
            ("status", response.status().as_u16().to_string()),
        ])
        .inc();
    response
}
