//! The worker's Prometheus metrics (`/metrics`), with prometheus-client.
//!
//! Two kinds of values:
//!
//! - counters and the latency histogram the handler updates as it goes ([`Metrics`]);
//! - values read at scrape time from their owners: the token provider's, rate limiter's and
//!   backend's own atomic counters ([`Snapshot`], a prometheus-client `Collector`), and the queue
//!   depth from one `Queue::stats()` round trip (set into gauges by the `/metrics` handler), so
//!   nothing polls Redis between scrapes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::BackendHandle;
use crate::store::QueueStats;
use crate::throttle::RateLimiter;
use crate::token::TokenProvider;
use crate::wechat::WechatError;

/// One label.
pub(crate) type Label = [(&'static str, String); 1];

pub(crate) fn label(name: &'static str, value: impl Into<String>) -> Label {
    [(name, value.into())]
}

/// The metrics the handler and the service update.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Handler outcomes: `done`, `transient`, `permanent`, `deferred`.
    jobs: Family<Label, Counter>,
    /// Per-appid results of answered calls: `accepted`, `rejected`.
    appids: Family<Label, Counter>,
    /// `batchshareenv` calls by errcode (`0`, `-1`, …, or `http_502`, `timeout`, `transport`,
    /// `decode`).
    calls: Family<Label, Counter>,
    /// `batchshareenv` latency.
    latency: Histogram,
    /// Transient outcomes that will be retried (not the last attempt).
    retries: Counter,
    /// Second calls in the same attempt after a token error.
    token_retries: Counter,
    /// Pauses this process started: `quota` (45009), `token_config` (misconfiguration).
    pauses: Family<Label, Counter>,
    /// Jobs per state, from `Queue::stats()` at scrape time.
    queue_jobs: Family<Label, Gauge>,
    /// Age of the oldest ready job (seconds), 0 when none.
    oldest_ready: Gauge<f64, AtomicU64>,
    /// 1 while the queue is paused.
    paused: Gauge,
    /// Unix seconds when the pause in force ends, 0 when none.
    paused_until: Gauge<f64, AtomicU64>,
    /// Confirmation checks and their results (the watcher and the handler's re-send checks).
    pub(crate) confirm: crate::confirm::ConfirmCounters,
    /// Webhook deliveries (registered whether or not webhooks are configured).
    pub(crate) webhooks: super::WebhookCounters,
}

impl Metrics {
    fn new(registry: &mut Registry) -> Self {
        let m = Self {
            jobs: Family::default(),
            appids: Family::default(),
            calls: Family::default(),
            // 1 ms … about 16 s.
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            retries: Counter::default(),
            token_retries: Counter::default(),
            pauses: Family::default(),
            queue_jobs: Family::default(),
            oldest_ready: Gauge::default(),
            paused: Gauge::default(),
            paused_until: Gauge::default(),
            confirm: crate::confirm::ConfirmCounters::default(),
            webhooks: super::WebhookCounters::default(),
        };
        m.confirm.register(registry);
        m.webhooks.register(registry);
        registry.register(
            "jobs",
            "Share jobs run by this process, by outcome (done, transient, permanent, deferred)",
            m.jobs.clone(),
        );
        registry.register(
            "appids",
            "Appids in answered share calls, by result (accepted, rejected)",
            m.appids.clone(),
        );
        registry.register(
            "wechat_calls",
            "batchshareenv calls by errcode (or http_STATUS, timeout, transport, decode)",
            m.calls.clone(),
        );
        registry.register(
            "wechat_call_duration_seconds",
            "batchshareenv call latency",
            m.latency.clone(),
        );
        registry.register(
            "retries",
            "Transient failures scheduled for another try",
            m.retries.clone(),
        );
        registry.register(
            "token_retries",
            "Calls made again in the same attempt after a token error and a refresh",
            m.token_retries.clone(),
        );
        registry.register(
            "pauses",
            "Queue pauses started by this process, by reason (quota, token_config)",
            m.pauses.clone(),
        );
        registry.register(
            "queue_jobs",
            "Jobs in the queue by state (ready, scheduled, running, dead), read at scrape time",
            m.queue_jobs.clone(),
        );
        registry.register(
            "queue_oldest_ready_age_seconds",
            "Age of the oldest ready job, read at scrape time (0 when none)",
            m.oldest_ready.clone(),
        );
        registry.register(
            "queue_paused",
            "1 while claims are paused (quota spent, token misconfiguration)",
            m.paused.clone(),
        );
        registry.register(
            "queue_paused_until_seconds",
            "Unix time the pause in force ends (0 when not paused)",
            m.paused_until.clone(),
        );
        m
    }

    pub(crate) fn job(&self, outcome: &'static str) {
        self.jobs.get_or_create(&label("outcome", outcome)).inc();
    }

    pub(crate) fn appids(&self, accepted: u64, rejected: u64) {
        if accepted > 0 {
            self.appids
                .get_or_create(&label("result", "accepted"))
                .inc_by(accepted);
        }
        if rejected > 0 {
            self.appids
                .get_or_create(&label("result", "rejected"))
                .inc_by(rejected);
        }
    }

    /// Counts one call and its latency; `result` is `Ok` or the error it ended with.
    pub(crate) fn call<T>(&self, result: &Result<T, WechatError>, elapsed: Duration) {
        let code = match result {
            Ok(_) => "0".to_owned(),
            Err(WechatError::Api { errcode, .. }) => errcode.to_string(),
            Err(WechatError::HttpStatus { status, .. }) => format!("http_{status}"),
            Err(WechatError::Timeout { .. }) => "timeout".to_owned(),
            Err(WechatError::Decode { .. } | WechatError::TooLarge { .. }) => "decode".to_owned(),
            Err(_) => "transport".to_owned(),
        };
        self.calls.get_or_create(&label("errcode", code)).inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn retry(&self) {
        self.retries.inc();
    }

    pub(crate) fn token_retry(&self) {
        self.token_retries.inc();
    }

    pub(crate) fn pause(&self, reason: &'static str) {
        self.pauses.get_or_create(&label("reason", reason)).inc();
    }

    /// Sets the queue gauges from a `Queue::stats()` answer.
    pub(crate) fn set_queue(&self, stats: &QueueStats, now_ms: u64) {
        for (state, n) in [
            ("ready", stats.ready),
            ("scheduled", stats.scheduled),
            ("running", stats.running),
            ("dead", stats.dead),
        ] {
            self.queue_jobs
                .get_or_create(&label("state", state))
                .set(n as i64);
        }
        self.oldest_ready
            .set(stats.oldest_ready_age_ms.unwrap_or(0) as f64 / 1000.0);
        match &stats.paused {
            Some(p) if p.until_ms > now_ms => {
                self.paused.set(1);
                self.paused_until.set(p.until_ms as f64 / 1000.0);
            }
            _ => {
                self.paused.set(0);
                self.paused_until.set(0.0);
            }
        }
    }
}

/// Counters owned by other parts, read at each scrape.
struct Snapshot {
    tokens: Arc<dyn TokenProvider>,
    limiter: Arc<RateLimiter>,
    backend: BackendHandle,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let c = ConstCounter::new(value);
    let metric = encoder.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(metric)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let t = self.tokens.counters();
        let r = self.limiter.counters();
        let b = self.backend.counters();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let e = &mut encoder;
        counter(
            e,
            "token_refreshes",
            "Component tokens this process fetched from WeChat",
            t.refreshes,
        )?;
        counter(
            e,
            "token_waits",
            "Token requests that waited for another process's fetch",
            t.waits,
        )?;
        counter(
            e,
            "token_fetch_errors",
            "Failed token fetches (any cause)",
            t.fetch_errors,
        )?;
        counter(
            e,
            "token_misconfigured",
            "Token fetches refused for misconfiguration (IP whitelist, ticket, secret)",
            t.misconfigured,
        )?;
        counter(
            e,
            "token_invalidations",
            "Cached tokens dropped after a token error",
            t.invalidations,
        )?;
        counter(
            e,
            "ticket_push_requests",
            "api_start_push_ticket calls this process made (no ticket, or one older than 12 h)",
            t.ticket_requests,
        )?;
        counter(
            e,
            "rate_limit_acquired",
            "Rate limit slots taken",
            r.acquired,
        )?;
        counter(
            e,
            "rate_limit_throttled",
            "Calls that waited for a rate limit slot",
            r.throttled,
        )?;
        counter(
            e,
            "rate_limit_waited_seconds",
            "Time calls spent waiting for rate limit slots (whole seconds)",
            r.waited_ms / 1000,
        )?;
        counter(
            e,
            "jobs_claimed",
            "Jobs this process claimed",
            load(&b.claimed),
        )?;
        counter(
            e,
            "jobs_acked",
            "Job outcomes this process wrote",
            load(&b.acked),
        )?;
        counter(
            e,
            "stale_acks",
            "Outcomes rejected because the lease had moved on (fencing token)",
            load(&b.stale_acks),
        )?;
        counter(
            e,
            "lost_leases",
            "Leases found lost at a heartbeat",
            load(&b.lost_leases),
        )?;
        counter(
            e,
            "redis_errors",
            "Redis errors in the queue's background loops",
            load(&b.redis_errors),
        )?;
        Ok(())
    }
}

/// The registry and the metrics in it.
pub(crate) struct MetricsRegistry {
    pub(crate) registry: Registry,
    pub(crate) metrics: Arc<Metrics>,
}

impl MetricsRegistry {
    pub(crate) fn new(
        tokens: Arc<dyn TokenProvider>,
        limiter: Arc<RateLimiter>,
        backend: BackendHandle,
    ) -> Self {
        let mut registry = Registry::with_prefix("envshare");
        let metrics = Arc::new(Metrics::new(&mut registry));
        registry.register_collector(Box::new(Snapshot {
            tokens,
            limiter,
            backend,
        }));
        Self { registry, metrics }
    }
}
