//! Webhook delivery (docs/webhooks.md): every event POSTed, signed, to each of
//! `ENVSHARE_WEBHOOK_URLS`, at least once, durably in Redis.
//!
//! Every worker process with webhooks configured runs one [`Deliverer`]:
//!
//! 1. **Intake**: read the events stream as a member of the consumer group
//!    [`WEBHOOK_GROUP`] and schedule one delivery per event and endpoint, in the same script that
//!    XACKs the event (`store/lua/webhook_intake.lua`). Entries a dead worker read and never took
//!    in are taken over with XAUTOCLAIM.
//! 2. **Delivery**, one loop per endpoint, so a slow or dead endpoint delays no other: lease due
//!    deliveries up to the endpoint's free concurrency (`store/lua/webhook_claim.lua`: score =
//!    lease deadline, one fencing token), POST each, and settle the outcomes in fenced batches
//!    (`store/lua/webhook_settle.lua`): delivered (2xx), retry at a full-jitter backoff
//!    ([`RetryPolicy`]), or dead once the next attempt would fall past
//!    `ENVSHARE_WEBHOOK_MAX_AGE_MS` (or `ENVSHARE_WEBHOOK_MAX_ATTEMPTS` is reached). A worker
//!    killed mid-attempt loses nothing: the lease expires and another worker tries again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use super::RetryPolicy;
use crate::config::{Settings, redact_url};
use crate::store::stream::RawEntry;
use crate::store::{Queue, StartFrom, StoreError, WebhookIntake, WebhookSettle};
use crate::webhook::{
    DeliveryRecord, HEADER_EVENT_ID, HEADER_EVENT_TYPE, HEADER_SIGNATURE, LastError, WEBHOOK_GROUP,
    endpoint_id, signature_header,
};

/// Stream entries read per intake call.
const READ_COUNT: usize = 500;
/// How long a loop waits after a Redis error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// The longest an attempt's outcome waits to be written with others.
const SETTLE_WAIT: Duration = Duration::from_millis(250);
/// How often a deliverer reads the backlog gauges.
const GAUGE_EVERY: Duration = Duration::from_secs(2);

/// Settings of the webhook deliverer.
#[derive(Clone)]
pub struct WebhookSettings {
    /// The endpoints.
    pub urls: Vec<reqwest::Url>,
    /// The signing secrets: the current one, then the previous one during a rotation.
    pub secrets: Vec<secrecy::SecretString>,
    /// How long after it was scheduled a delivery may still be tried.
    pub max_age: Duration,
    /// Attempts in all before a delivery is given up; 0 = no limit but the age.
    pub max_attempts: u32,
    /// Retry delays: full jitter between these bounds.
    pub backoff: RetryPolicy,
    /// One attempt's timeout.
    pub timeout: Duration,
    /// Attempts in flight per endpoint.
    pub concurrency: usize,
    /// How long a claimed delivery is held before another worker may try it.
    pub lease: Duration,
    /// How long the loops sleep when there is nothing to do.
    pub poll: Duration,
    /// Stream entries read by a consumer and not taken in for this long are taken over.
    pub claim_idle: Duration,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field(
                "urls",
                &self
                    .urls
                    .iter()
                    .map(|u| redact_url(u.as_str()))
                    .collect::<Vec<_>>(),
            )
            .field("secrets", &self.secrets.len())
            .field("max_age", &self.max_age)
            .field("max_attempts", &self.max_attempts)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl WebhookSettings {
    /// The webhook settings of `settings`; `None` when no URL is configured. The lease is the
    /// timeout plus 5 s, the poll 100 ms, the intake take-over after 10 s.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        if settings.webhook_urls.is_empty() {
            return None;
        }
        let secrets = [&settings.webhook_secret, &settings.webhook_secret_previous]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        Some(Self {
            urls: settings.webhook_urls.urls().to_vec(),
            secrets,
            max_age: settings.webhook_max_age,
            max_attempts: settings.webhook_max_attempts,
            backoff: RetryPolicy {
                base: settings.webhook_backoff_base,
                cap: settings.webhook_backoff_max,
                max_attempts: u32::MAX,
            },
            timeout: settings.webhook_timeout,
            concurrency: settings.webhook_concurrency,
            lease: settings.webhook_timeout + Duration::from_secs(5),
            poll: Duration::from_millis(100),
            claim_idle: Duration::from_secs(10),
        })
    }
}

/// One label.
type Label = [(&'static str, String); 1];

fn endpoint_label(id: &str) -> Label {
    [("endpoint", id.to_owned())]
}

fn latency_histogram() -> Histogram {
    // 1 ms … about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The deliverer's metrics, labelled by endpoint id (cheap clones).
#[derive(Debug, Clone)]
pub struct WebhookCounters {
    /// Deliveries answered 2xx.
    pub delivered: Family<Label, Counter>,
    /// Attempts that failed (non-2xx, timeout, connection error).
    pub failed: Family<Label, Counter>,
    /// Deliveries given up.
    pub dead: Family<Label, Counter>,
    /// Attempt latency (seconds), any outcome.
    pub latency: Family<Label, Histogram, fn() -> Histogram>,
    /// Undelivered events per endpoint, read every few seconds.
    pub backlog: Family<Label, Gauge>,
    /// Age of the oldest undelivered event per endpoint (seconds).
    pub oldest_age: Family<Label, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Default for WebhookCounters {
    fn default() -> Self {
        Self {
            delivered: Family::default(),
            failed: Family::default(),
            dead: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            backlog: Family::default(),
            oldest_age: Family::default(),
        }
    }
}

impl WebhookCounters {
    /// Registers the metrics (`webhook_delivered`, …) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "webhook_delivered",
            "Webhook deliveries answered 2xx, by endpoint id",
            self.delivered.clone(),
        );
        registry.register(
            "webhook_failed_attempts",
            "Webhook attempts that failed (non-2xx, timeout, connection error), by endpoint id",
            self.failed.clone(),
        );
        registry.register(
            "webhook_dead",
            "Webhook deliveries given up by this process, by endpoint id",
            self.dead.clone(),
        );
        registry.register(
            "webhook_attempt_duration_seconds",
            "Webhook attempt latency, any outcome, by endpoint id",
            self.latency.clone(),
        );
        registry.register(
            "webhook_backlog",
            "Undelivered webhook events (not dead), by endpoint id",
            self.backlog.clone(),
        );
        registry.register(
            "webhook_oldest_undelivered_age_seconds",
            "Age of the oldest undelivered webhook event, by endpoint id (0 when none)",
            self.oldest_age.clone(),
        );
    }
}

/// The outcome of one attempt.
enum Attempt {
    Delivered,
    Failed(String),
}

struct Endpoint {
    id: String,
    url: reqwest::Url,
}

/// The webhook deliverer of one process.
pub struct Deliverer {
    queue: Queue,
    settings: WebhookSettings,
    endpoints: Arc<[Endpoint]>,
    client: reqwest::Client,
    consumer: String,
    counters: WebhookCounters,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("consumer", &self.consumer)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A running deliverer; [`DelivererHandle::shutdown`] stops it.
#[derive(Debug)]
pub struct DelivererHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl DelivererHandle {
    /// Stops claiming, lets the attempts in flight finish (each within the timeout), settles
    /// them and waits.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

impl Deliverer {
    /// A deliverer of `queue`'s events, member `consumer` of [`WEBHOOK_GROUP`].
    pub fn new(
        queue: Queue,
        settings: WebhookSettings,
        consumer: impl Into<String>,
        counters: WebhookCounters,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("envshare-webhooks/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(settings.concurrency)
            .build()?;
        let endpoints: Arc<[Endpoint]> = settings
            .urls
            .iter()
            .map(|u| Endpoint {
                id: endpoint_id(u.as_str()),
                url: u.clone(),
            })
            .collect();
        Ok(Self {
            queue,
            settings,
            endpoints,
            client,
            consumer: consumer.into(),
            counters,
        })
    }

    /// Creates the consumer group if it does not exist (at the end of the stream: events written
    /// before webhooks were first configured are not delivered) and registers the endpoints.
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.queue
            .create_group(WEBHOOK_GROUP, StartFrom::New)
            .await?;
        let reg: Vec<(String, String)> = self
            .endpoints
            .iter()
            .map(|e| (e.id.clone(), redact_url(e.url.as_str())))
            .collect();
        self.queue.webhook_register(&reg).await
    }

    /// Starts the intake loop and one delivery loop per endpoint on the current runtime.
    pub fn start(self) -> DelivererHandle {
        let (stop, stopped) = watch::channel(false);
        let me = Arc::new(self);
        let mut tasks = Vec::new();
        info!(
            consumer = %me.consumer,
            endpoints = me.endpoints.len(),
            "webhook deliverer started"
        );
        {
            let me = me.clone();
            let stopped = stopped.clone();
            tasks.push(tokio::spawn(async move { me.intake_loop(stopped).await }));
        }
        for i in 0..me.endpoints.len() {
            let me = me.clone();
            let stopped = stopped.clone();
            tasks.push(tokio::spawn(
                async move { me.endpoint_loop(i, stopped).await },
            ));
        }
        DelivererHandle { stop, tasks }
    }

    async fn intake_loop(&self, mut stopped: watch::Receiver<bool>) {
        let mut last_autoclaim: Option<Instant> = None;
        let mut last_gauges: Option<Instant> = None;
        while !*stopped.borrow() {
            let busy = match self.intake_round(&mut last_autoclaim).await {
                Ok(n) => n >= READ_COUNT,
                Err(e) => {
                    warn!(error = %e, "webhook intake failed; retrying");
                    tokio::select! {
                        _ = stopped.changed() => {}
                        () = tokio::time::sleep(ERROR_PAUSE) => {}
                    }
                    false
                }
            };
            if last_gauges.is_none_or(|t| t.elapsed() >= GAUGE_EVERY) {
                last_gauges = Some(Instant::now());
                if let Err(e) = self.update_gauges().await {
                    debug!(error = %e, "reading the webhook backlog failed");
                }
            }
            if !busy {
                tokio::select! {
                    _ = stopped.changed() => {}
                    () = tokio::time::sleep(self.settings.poll) => {}
                }
            }
        }
        if let Err(e) = self.queue.leave_group(WEBHOOK_GROUP, &self.consumer).await {
            debug!(error = %e, "leaving the webhook group failed; its consumer entry stays");
        }
    }

    async fn intake_round(
        &self,
        last_autoclaim: &mut Option<Instant>,
    ) -> Result<usize, StoreError> {
        let entries = match self
            .queue
            .read_group(WEBHOOK_GROUP, &self.consumer, READ_COUNT)
            .await
        {
            Err(StoreError::NoGroup { .. }) => {
                // The group is gone (a Redis restart without persistence, a flush): whatever the
                // stream holds now was not delivered.
                self.queue
                    .create_group(WEBHOOK_GROUP, StartFrom::Beginning)
                    .await?;
                self.prepare().await?;
                Vec::new()
            }
            r => r?,
        };
        let n = entries.len();
        self.intake(&entries).await?;
        let idle = self.settings.claim_idle;
        if last_autoclaim.is_none_or(|t| t.elapsed() >= idle / 2) {
            *last_autoclaim = Some(Instant::now());
            let stale = self
                .queue
                .autoclaim(WEBHOOK_GROUP, &self.consumer, idle, READ_COUNT)
                .await?;
            if !stale.is_empty() {
                debug!(entries = stale.len(), "took over stale webhook events");
            }
            self.intake(&stale).await?;
        }
        Ok(n)
    }

    async fn intake(&self, entries: &[RawEntry]) -> Result<u64, StoreError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let items: Vec<WebhookIntake<'_>> = entries
            .iter()
            .map(|e| {
                let written_ms =
                    e.id.split_once('-')
                        .and_then(|(ms, _)| ms.parse().ok())
                        .unwrap_or_else(|| self.queue.now_ms());
                match raw_event(&e.fields) {
                    Some((kind, body, id)) => WebhookIntake {
                        entry_id: &e.id,
                        event_id: Some(id),
                        written_ms,
                        record: DeliveryRecord {
                            kind: kind.to_owned(),
                            first_ms: written_ms,
                            attempts: 0,
                            error: None,
                            last_ms: None,
                            body: body.to_owned(),
                        }
                        .to_json(),
                    },
                    None => {
                        warn!(entry_id = %e.id, "skipping a malformed event: no webhook delivery");
                        WebhookIntake {
                            entry_id: &e.id,
                            event_id: None,
                            written_ms,
                            record: String::new(),
                        }
                    }
                }
            })
            .collect();
        let ids: Vec<&str> = self.endpoints.iter().map(|e| e.id.as_str()).collect();
        self.queue.webhook_intake(WEBHOOK_GROUP, &ids, &items).await
    }

    async fn update_gauges(&self) -> Result<(), StoreError> {
        let now = self.queue.now_ms();
        for e in self.endpoints.iter() {
            let s = self.queue.webhook_stats(&e.id).await?;
            let label = endpoint_label(&e.id);
            self.counters
                .backlog
                .get_or_create(&label)
                .set(s.backlog.min(i64::MAX as u64) as i64);
            self.counters.oldest_age.get_or_create(&label).set(
                s.oldest_ms
                    .map_or(0.0, |ms| now.saturating_sub(ms) as f64 / 1000.0),
            );
        }
        Ok(())
    }

    async fn endpoint_loop(self: Arc<Self>, index: usize, mut stopped: watch::Receiver<bool>) {
        let ep = &self.endpoints[index];
        let cap = self.settings.concurrency;
        let lease_ms = self.settings.lease.as_millis() as u64;
        // (event id, fence, record, outcome)
        let mut running: JoinSet<(String, String, DeliveryRecord, Attempt, u64)> = JoinSet::new();
        let mut done: Vec<(String, String, DeliveryRecord, Attempt, u64)> = Vec::new();
        let mut done_since: Option<Instant> = None;
        let batch = (cap / 4).max(1);
        loop {
            let stopping = *stopped.borrow();
            // Take in what finished.
            while let Some(r) = running.try_join_next() {
                match r {
                    Ok(d) => done.push(d),
                    Err(e) => warn!(error = %e, "a webhook attempt task failed"),
                }
            }
            if done.is_empty() {
                done_since = None;
            } else if done_since.is_none() {
                done_since = Some(Instant::now());
            }
            // Outcomes are written and slots refilled in batches of a quarter of the cap, so a
            // busy endpoint costs two script calls per `batch` deliveries, not per delivery; an
            // outcome waits at most SETTLE_WAIT (its lease runs much longer).
            let free = cap.saturating_sub(running.len());
            let refill = free >= batch || running.is_empty();
            let settle_due =
                stopping || refill || done_since.is_some_and(|t| t.elapsed() >= SETTLE_WAIT);
            if !done.is_empty()
                && settle_due
                && let Err(e) = self.settle(ep, &mut done).await
            {
                if stopping && running.is_empty() {
                    // Redis is gone at shutdown: the leases expire and another worker (or this
                    // one, restarted) tries those deliveries again.
                    warn!(error = %e, endpoint = %ep.id, unsettled = done.len(),
                        "cannot record webhook attempts at shutdown; they will be retried");
                    break;
                }
                warn!(error = %e, endpoint = %ep.id, "settling webhook attempts failed; retrying");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
            if stopping {
                if running.is_empty() {
                    break;
                }
                if let Some(r) = running.join_next().await {
                    match r {
                        Ok(d) => done.push(d),
                        Err(e) => warn!(error = %e, "a webhook attempt task failed"),
                    }
                }
                continue;
            }
            let mut claimed = 0;
            if refill {
                match self.queue.webhook_claim(&ep.id, lease_ms, free).await {
                    Ok((fence, items)) => {
                        claimed = items.len();
                        for (id, raw) in items {
                            let record: DeliveryRecord = match serde_json::from_str(&raw) {
                                Ok(r) => r,
                                Err(e) => {
                                    warn!(event_id = %id, error = %e, "malformed webhook record");
                                    continue;
                                }
                            };
                            let me = self.clone();
                            let fence = fence.clone();
                            running.spawn(async move {
                                let start = Instant::now();
                                let outcome = me.attempt(index, &id, &record).await;
                                let elapsed = start.elapsed();
                                let label = endpoint_label(&me.endpoints[index].id);
                                me.counters
                                    .latency
                                    .get_or_create(&label)
                                    .observe(elapsed.as_secs_f64());
                                (id, fence, record, outcome, me.queue.now_ms())
                            });
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, endpoint = %ep.id, "claiming webhook deliveries failed");
                        tokio::select! {
                            _ = stopped.changed() => {}
                            () = tokio::time::sleep(ERROR_PAUSE) => {}
                        }
                        continue;
                    }
                }
            }
            if claimed >= 1000 {
                // A full slice: more may be due right away.
                continue;
            }
            tokio::select! {
                r = running.join_next(), if !running.is_empty() => {
                    if let Some(r) = r {
                        match r {
                            Ok(d) => done.push(d),
                            Err(e) => warn!(error = %e, "a webhook attempt task failed"),
                        }
                    }
                }
                _ = stopped.changed() => {}
                () = tokio::time::sleep(self.settings.poll), if running.len() < cap => {}
            }
        }
    }

    /// One POST. Only a 2xx answer delivers; redirects are not followed.
    async fn attempt(&self, index: usize, id: &str, record: &DeliveryRecord) -> Attempt {
        let ep = &self.endpoints[index];
        let t = self.queue.now_ms() / 1000;
        let secrets: Vec<&[u8]> = self
            .settings
            .secrets
            .iter()
            .map(|s| s.expose_secret().as_bytes())
            .collect();
        let signature = signature_header(&secrets, t, record.body.as_bytes());
        let sent = self
            .client
            .post(ep.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_EVENT_ID, id)
            .header(HEADER_EVENT_TYPE, &record.kind)
            .header(HEADER_SIGNATURE, signature)
            .body(record.body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    // Read the answer so the connection can be reused; its content is ignored.
                    let _ = resp.bytes().await;
                    return Attempt::Delivered;
                }
                if status.is_redirection() {
                    let to = resp
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .map(redact_url)
                        .unwrap_or_default();
                    return Attempt::Failed(format!(
                        "HTTP {} redirect to {to:?} (redirects are not followed)",
                        status.as_u16()
                    ));
                }
                Attempt::Failed(format!("HTTP {}", status.as_u16()))
            }
            Err(e) if e.is_timeout() => Attempt::Failed(format!(
                "timeout after {} ms",
                self.settings.timeout.as_millis()
            )),
            Err(e) if e.is_connect() => Attempt::Failed(format!("connect failed: {}", cause(&e))),
            Err(e) => Attempt::Failed(format!("request failed: {}", cause(&e))),
        }
    }

    /// Writes the outcomes of finished attempts (one fenced script) and counts them.
    async fn settle(
        &self,
        ep: &Endpoint,
        done: &mut Vec<(String, String, DeliveryRecord, Attempt, u64)>,
    ) -> Result<(), StoreError> {
        let label = endpoint_label(&ep.id);
        let mut last_error: Option<LastError> = None;
        let (mut delivered, mut failed, mut dead) = (0u64, 0u64, 0u64);
        let outcomes: Vec<(String, String, WebhookSettle)> = done
            .iter()
            .map(|(id, fence, record, attempt, at)| {
                let outcome = match attempt {
                    Attempt::Delivered => {
                        delivered += 1;
                        WebhookSettle::Delivered
                    }
                    Attempt::Failed(error) => {
                        failed += 1;
                        if last_error.as_ref().is_none_or(|l| l.at_ms <= *at) {
                            last_error = Some(LastError {
                                at_ms: *at,
                                error: error.clone(),
                            });
                        }
                        let attempts = record.attempts + 1;
                        let next = at + self.settings.backoff.delay(attempts).as_millis() as u64;
                        let updated = DeliveryRecord {
                            attempts,
                            error: Some(error.clone()),
                            last_ms: Some(*at),
                            ..record.clone()
                        };
                        let out_of_attempts = self.settings.max_attempts > 0
                            && attempts >= self.settings.max_attempts;
                        let too_old = next
                            > updated
                                .first_ms
                                .saturating_add(self.settings.max_age.as_millis() as u64);
                        if out_of_attempts || too_old {
                            dead += 1;
                            warn!(
                                endpoint = %ep.id,
                                event_id = %id,
                                attempts,
                                error = %error,
                                "webhook delivery given up"
                            );
                            WebhookSettle::Dead {
                                record: updated.to_json(),
                            }
                        } else {
                            WebhookSettle::Retry {
                                at_ms: next,
                                record: updated.to_json(),
                            }
                        }
                    }
                };
                (id.clone(), fence.clone(), outcome)
            })
            .collect();
        let last = last_error.map(|l| serde_json::to_string(&l).expect("serializes"));
        let (_applied, stale) = self
            .queue
            .webhook_settle(&ep.id, last.as_deref(), &outcomes)
            .await?;
        done.clear();
        self.counters
            .delivered
            .get_or_create(&label)
            .inc_by(delivered);
        self.counters.failed.get_or_create(&label).inc_by(failed);
        self.counters.dead.get_or_create(&label).inc_by(dead);
        if stale > 0 {
            warn!(
                stale,
                endpoint = %ep.id,
                "webhook leases expired mid-attempt; another worker tries those deliveries again"
            );
        }
        Ok(())
    }
}

/// The innermost cause of a request error, which says what happened (`Connection refused`,
/// `connection reset`), without the URL.
fn cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(s) = source.source() {
        source = s;
    }
    source.to_string()
}

/// The type, the event JSON and its `id` of a stream entry (`type`, T, `event`, JSON), without
/// re-encoding the JSON; `None` for a malformed entry.
fn raw_event(fields: &[String]) -> Option<(&str, &str, &str)> {
    let mut kind = None;
    let mut body = None;
    for pair in fields.chunks(2) {
        match pair {
            [k, v] if k == "type" => kind = Some(v.as_str()),
            [k, v] if k == "event" => body = Some(v.as_str()),
            _ => {}
        }
    }
    let body = body?;
    let id = event_id(body)?;
    Some((kind?, body, id))
}

/// The `id` of an event JSON, borrowed from it.
fn event_id(body: &str) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: &'a str,
    }
    serde_json::from_str::<Id<'_>>(body).ok().map(|i| i.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_entry_gives_its_type_body_and_id_untouched() {
        let body = r#"{"v":1,"id":"j1.wx0123456789abcdef.accepted","type":"share.accepted"}"#;
        let fields = vec![
            "type".to_owned(),
            "share.accepted".to_owned(),
            "event".to_owned(),
            body.to_owned(),
        ];
        let (kind, b, id) = raw_event(&fields).unwrap();
        assert_eq!(kind, "share.accepted");
        assert_eq!(b, body);
        assert_eq!(id, "j1.wx0123456789abcdef.accepted");
        assert!(raw_event(&["type".to_owned(), "x".to_owned()]).is_none());
        assert!(raw_event(&["event".to_owned(), "{}".to_owned()]).is_none());
    }
}
