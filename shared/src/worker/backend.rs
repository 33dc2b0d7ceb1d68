//! The queue as an apalis backend: `WorkerBuilder::new(..).backend(RedisBackend::new(..))`.
//!
//! Three background loops serve one worker process, each with the same shape (settings, `run`,
//! stopped through the shared shutdown signal):
//!
//! - the **fetcher** claims jobs in batches, never more than there are free slots
//!   (`concurrency`), so a claimed job starts at once and its lease clock is honest. While jobs
//!   run, a claim lingers a few milliseconds for more slots to free (a claim's cost is mostly
//!   per call, not per job); the housekeeping (worker liveness, reaping expired leases,
//!   promoting due retries) rides along at most every `housekeep_every`. On an empty queue it
//!   sleeps until a message on the queue's wake channel (published whenever jobs become
//!   ready), the next due retry or lease deadline, or `idle_max`, whichever comes first;
//! - the **waker** holds the subscription to the wake channel (reconnecting after errors; while
//!   it is down, and on Redis Cluster, the fetcher polls every `idle_poll` instead);
//! - the **acker** collects handler outcomes and writes them with the batched, fenced ack
//!   scripts, one call for many jobs, lingering a few milliseconds for more outcomes;
//! - the **heartbeat** extends the leases of the jobs still held.
//!
//! A Redis error never stops a loop: it logs, backs off and tries again. Outcomes wait in the
//! acker until Redis answers; a lease that expired meanwhile is re-run elsewhere and the late
//! ack is rejected by its fencing token, so events stay exactly once.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::error::BoxDynError;
use apalis_core::layers::{Layer, Service};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::into_response::IntoResponse;
use apalis_core::task::task_id::TaskId;
use apalis_core::worker::context::WorkerContext;
use backon::BackoffBuilder;
use futures::StreamExt as _;
use rand::Rng;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::config::Settings;
use crate::events::FailReason;
use crate::ids::JobId;
use crate::store::{
    Ack, AppResult, Claim, Lease, LeaseRef, Outcome, Queue, ShareJob, StoreError, WorkerId,
};

/// What a job handler reports; the backend turns it into a queue state change and events.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// WeChat answered errcode 0: one result per appid.
    Done(Vec<AppResult>),
    /// Worth another try later (a transient error, as the handler classifies them): retried with
    /// backoff until `max_attempts`, then dead with reason `retries_exhausted`.
    Transient {
        /// WeChat's errcode, if WeChat answered.
        errcode: Option<i64>,
        /// What went wrong.
        errmsg: String,
    },
    /// Never worth retrying: dead at once with reason `permanent_error`.
    Permanent {
        /// WeChat's errcode, if WeChat answered.
        errcode: Option<i64>,
        /// What went wrong.
        errmsg: String,
    },
    /// The job was not run (quota pause, token misconfiguration): it waits until `until_ms` and
    /// keeps its attempts.
    Defer {
        /// When to try again (ms since the epoch).
        until_ms: u64,
    },
}

impl IntoResponse for JobOutcome {
    type Output = JobOutcome;
    fn into_response(self) -> Result<JobOutcome, BoxDynError> {
        Ok(self)
    }
}

/// The lease a running job holds; handlers extract it with `apalis_core::task::data::Data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The fencing token of this run.
    pub fence: u64,
    /// The attempt this run is (1-based; crash recoveries count).
    pub attempt: u32,
}

/// Retry schedule: exponential with full jitter, `random(0, min(cap, base · 2^(attempt-1)))`.
///
/// The exponential part comes from backon's schedule; backon's own jitter only adds up to one
/// base delay, so the full jitter (which spreads a thundering herd of retries evenly) is applied
/// here on top.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The first retry's upper bound.
    pub base: Duration,
    /// The largest upper bound.
    pub cap: Duration,
    /// Tries in all, the first included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(600),
            max_attempts: 10,
        }
    }
}

impl From<&Settings> for RetryPolicy {
    /// `ENVSHARE_BACKOFF_BASE_MS`, `ENVSHARE_BACKOFF_MAX_MS` and `ENVSHARE_MAX_ATTEMPTS`.
    fn from(settings: &Settings) -> Self {
        Self {
            base: settings.backoff_base,
            cap: settings.backoff_max,
            max_attempts: settings.max_attempts,
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the delay after failed attempt `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let steps = attempt.max(1) as usize;
        backon::ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.cap)
            .with_factor(2.0)
            .with_max_times(steps)
            .build()
            .nth(steps - 1)
            .unwrap_or(self.cap)
    }

    /// A random delay in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ceiling))
    }

    /// The queue outcome for a handler's outcome after attempt `attempt`.
    pub fn decide(&self, outcome: JobOutcome, attempt: u32, now_ms: u64) -> Outcome {
        match outcome {
            JobOutcome::Done(results) => Outcome::Done(results),
            JobOutcome::Transient { errcode, errmsg } if attempt >= self.max_attempts => {
                Outcome::Dead {
                    reason: FailReason::RetriesExhausted,
                    errcode,
                    errmsg,
                }
            }
            JobOutcome::Transient { errcode, errmsg } => Outcome::RetryAt {
                at_ms: now_ms + self.delay(attempt).as_millis() as u64,
                errcode,
                errmsg,
            },
            JobOutcome::Permanent { errcode, errmsg } => Outcome::Dead {
                reason: FailReason::PermanentError,
                errcode,
                errmsg,
            },
            JobOutcome::Defer { until_ms } => Outcome::Defer { at_ms: until_ms },
        }
    }
}

/// How the backend fetches, acks and heartbeats.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// Jobs run at once in this process.
    pub concurrency: usize,
    /// Most jobs claimed in one call.
    pub fetch_batch: usize,
    /// How long to wait before asking again when the queue was empty and no wake subscription
    /// is up (Redis Cluster, or while it reconnects).
    pub idle_poll: Duration,
    /// With the wake subscription up: the longest an idle fetcher sleeps without a message
    /// (a safety net; wake messages and due times end the sleep sooner).
    pub idle_max: Duration,
    /// How often claims also record the worker as alive, reap expired leases and promote due
    /// jobs.
    pub housekeep_every: Duration,
    /// While jobs run: how long a claim waits for more slots to free before it asks for fewer
    /// than `concurrency / 4` jobs. Zero: claim at once.
    pub claim_linger: Duration,
    /// How long the acker waits for more outcomes before it writes fewer than `ack_batch`.
    /// Zero: write at once.
    pub ack_linger: Duration,
    /// How often leases are extended (keep well under the lease).
    pub heartbeat_every: Duration,
    /// Most outcomes written in one call.
    pub ack_batch: usize,
    /// The retry schedule.
    pub retry: RetryPolicy,
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            concurrency: 32,
            fetch_batch: 256,
            idle_poll: Duration::from_millis(50),
            idle_max: Duration::from_secs(5),
            housekeep_every: Duration::from_millis(250),
            claim_linger: Duration::from_millis(20),
            ack_linger: Duration::from_millis(20),
            heartbeat_every: Duration::from_secs(10),
            ack_batch: 500,
            retry: RetryPolicy::default(),
        }
    }
}

impl From<&Settings> for BackendSettings {
    /// `ENVSHARE_CONCURRENCY` (also the most jobs claimed at once, up to 256), heartbeats three
    /// times per `ENVSHARE_LEASE_MS`, and the retry policy; the rest keeps its defaults.
    fn from(settings: &Settings) -> Self {
        Self {
            concurrency: settings.concurrency.max(1),
            fetch_batch: settings.concurrency.clamp(1, 256),
            // Three beats per lease: one lost beat never loses a lease.
            heartbeat_every: (settings.lease / 3).max(Duration::from_millis(100)),
            retry: RetryPolicy::from(settings),
            ..Self::default()
        }
    }
}

/// Counters of one backend, for metrics and tests.
#[derive(Debug, Default)]
pub struct BackendCounters {
    /// Jobs claimed.
    pub claimed: AtomicU64,
    /// Outcomes written.
    pub acked: AtomicU64,
    /// Outcomes rejected because the lease had moved on (a stale fencing token).
    pub stale_acks: AtomicU64,
    /// Leases found lost at a heartbeat.
    pub lost_leases: AtomicU64,
    /// Redis errors seen by the background loops.
    pub redis_errors: AtomicU64,
}

// Acks outnumber flushes by far: boxing each ack to shrink the rare variant would cost more.
#[allow(clippy::large_enum_variant)]
enum AckMsg {
    Ack(Ack),
    Flush(oneshot::Sender<()>),
}

struct Shared {
    queue: Queue,
    worker: WorkerId,
    settings: BackendSettings,
    /// Free job slots; the fetcher claims at most this many.
    slots: Semaphore,
    /// Leases held by this process (claimed and not yet acked), for heartbeats and shutdown.
    held: Mutex<HashMap<JobId, u64>>,
    counters: BackendCounters,
    /// Stops the fetcher: no new claims.
    shutdown: watch::Sender<bool>,
    /// Stops the heartbeat, once every held lease is acked or released: leases of jobs still
    /// running during a graceful shutdown keep being extended.
    closed: watch::Sender<bool>,
    /// Signalled by the waker when jobs may have become ready.
    wake: Notify,
    /// Whether the wake subscription is up (else the fetcher polls).
    wake_live: AtomicBool,
    /// How long handlers take, a moving average (µs): lingering pays only for jobs that wait
    /// (on the API); fast jobs batch by themselves.
    run_avg_us: AtomicU64,
}

/// Jobs faster than this on average (µs) make the fetcher and the acker skip their lingering:
/// slots and outcomes then come back faster than a linger would wait.
const LINGER_FROM_US: u64 = 5_000;

impl Shared {
    /// Whether jobs take long enough for lingering to pay.
    fn slow_jobs(&self) -> bool {
        self.run_avg_us.load(Ordering::Relaxed) >= LINGER_FROM_US
    }

    /// Folds one handler's run time into the moving average (weight 1/8).
    fn record_run(&self, took: Duration) {
        let us = took.as_micros().min(u128::from(u64::MAX / 8)) as u64;
        let old = self.run_avg_us.load(Ordering::Relaxed);
        self.run_avg_us
            .store(old - old / 8 + us / 8, Ordering::Relaxed);
    }
}

impl Shared {
    fn hold(&self, lease: &Lease) {
        self.held
            .lock()
            .expect("held leases lock")
            .insert(lease.job.id.clone(), lease.fence);
    }

    fn held_refs(&self) -> Vec<LeaseRef> {
        self.held
            .lock()
            .expect("held leases lock")
            .iter()
            .map(|(job, fence)| LeaseRef {
                job: job.clone(),
                fence: *fence,
            })
            .collect()
    }

    fn drop_held(&self, jobs: impl IntoIterator<Item = JobId>) {
        let mut held = self.held.lock().expect("held leases lock");
        for job in jobs {
            held.remove(&job);
        }
    }
}

/// A handle to a running backend: counters and the shutdown-time release of leases.
#[derive(Clone)]
pub struct BackendHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BackendHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendHandle")
            .field("worker", &self.shared.worker)
            .finish_non_exhaustive()
    }
}

impl BackendHandle {
    /// This process's worker id.
    pub fn worker_id(&self) -> &WorkerId {
        &self.shared.worker
    }

    /// The backend's counters.
    pub fn counters(&self) -> &BackendCounters {
        &self.shared.counters
    }

    /// Jobs this process holds a lease on right now.
    pub fn held(&self) -> usize {
        self.shared.held.lock().expect("held leases lock").len()
    }

    /// Stops claiming new jobs.
    pub fn stop_fetching(&self) {
        let _ = self.shared.shutdown.send(true);
    }

    /// Gives back every lease still held (when the shutdown timeout ran out): the jobs go back
    /// to ready with their attempt refunded, for another worker to run.
    pub async fn release_held(&self) -> Result<usize, StoreError> {
        self.stop_fetching();
        let refs = self.shared.held_refs();
        if refs.is_empty() {
            return Ok(0);
        }
        let n = self.shared.queue.release(&refs).await?;
        self.shared.drop_held(refs.into_iter().map(|r| r.job));
        let _ = self.shared.closed.send(true);
        Ok(n)
    }
}

type CloseFuture = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// envshare's Redis queue as an apalis [`Backend`].
pub struct RedisBackend {
    shared: Arc<Shared>,
    tasks_tx: Option<mpsc::Sender<Lease>>,
    tasks_rx: mpsc::Receiver<Lease>,
    ack_tx: mpsc::Sender<AckMsg>,
    ack_rx: Option<mpsc::Receiver<AckMsg>>,
    started: bool,
    closing: Option<CloseFuture>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("worker", &self.shared.worker)
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A backend that runs jobs of `queue` as worker `worker`.
    pub fn new(queue: Queue, worker: WorkerId, settings: BackendSettings) -> Self {
        let concurrency = settings.concurrency.max(1);
        let (tasks_tx, tasks_rx) = mpsc::channel(concurrency);
        let (ack_tx, ack_rx) = mpsc::channel(concurrency.max(settings.ack_batch) * 2);
        let (shutdown, _) = watch::channel(false);
        let (closed, _) = watch::channel(false);
        Self {
            shared: Arc::new(Shared {
                queue,
                worker,
                slots: Semaphore::new(concurrency),
                settings,
                held: Mutex::new(HashMap::new()),
                counters: BackendCounters::default(),
                shutdown,
                closed,
                wake: Notify::new(),
                wake_live: AtomicBool::new(false),
                run_avg_us: AtomicU64::new(0),
            }),
            tasks_tx: Some(tasks_tx),
            tasks_rx,
            ack_tx,
            ack_rx: Some(ack_rx),
            started: false,
            closing: None,
        }
    }

    /// A handle for counters and shutdown, usable while the worker runs.
    pub fn handle(&self) -> BackendHandle {
        BackendHandle {
            shared: self.shared.clone(),
        }
    }

    fn start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        let tx = self.tasks_tx.take().expect("started once");
        tokio::spawn(fetch_loop(self.shared.clone(), tx));
        tokio::spawn(wake_loop(self.shared.clone()));
        let rx = self.ack_rx.take().expect("started once");
        tokio::spawn(ack_loop(self.shared.clone(), rx));
        tokio::spawn(heartbeat_loop(self.shared.clone()));
    }
}

/// Waits `d` or until shutdown; returns true when shutting down.
async fn pause_or_shutdown(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

/// Backoff for the loops' own Redis errors: 50 ms doubling to 1 s. Kept short because held
/// leases run out while Redis is away: the sooner outcomes are written after it returns, the
/// fewer jobs are reaped and run twice.
fn redis_backoff(failures: u32) -> Duration {
    Duration::from_millis((50u64 << failures.min(5)).min(1_000))
}

/// Waits `d`, a wake signal or shutdown; returns true when shutting down.
async fn idle_wait(shared: &Shared, shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shared.wake.notified() => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

/// How long an idle fetcher sleeps: until the next due time the claim reported, at most
/// `idle_max` with the wake subscription up (a message ends the sleep sooner), `idle_poll`
/// without it.
fn idle_sleep(shared: &Shared, next_due_ms: Option<u64>) -> Duration {
    let s = &shared.settings;
    let cap = if shared.wake_live.load(Ordering::Acquire) {
        s.idle_max.max(s.idle_poll)
    } else {
        s.idle_poll
    };
    match next_due_ms {
        Some(due) => {
            let now = shared.queue.now_ms();
            // A due time already passed (clock skew between hosts): look again soon, not at once.
            Duration::from_millis(due.saturating_sub(now).max(5)).min(cap)
        }
        None => cap,
    }
}

async fn fetch_loop(shared: Arc<Shared>, tx: mpsc::Sender<Lease>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut failures = 0u32;
    let concurrency = shared.settings.concurrency.max(1);
    // A claim of at least this many jobs goes at once; a smaller one lingers while jobs run.
    let enough = (concurrency / 4).max(1);
    let mut last_housekeep: Option<Instant> = None;
    loop {
        // Wait for at least one free slot, then claim as many as are free.
        let first = tokio::select! {
            permit = shared.slots.acquire() => permit.expect("slots never close"),
            _ = shutdown.changed() => break,
        };
        if *shutdown.borrow() {
            break;
        }
        first.forget();
        let linger = shared.settings.claim_linger;
        let free = 1 + shared.slots.available_permits();
        if !linger.is_zero() && free < enough && shared.slow_jobs() {
            // Jobs still run and few slots are free: more free within milliseconds, and one
            // claim for several jobs costs Redis about what one for a single job does. Wait
            // until `enough` are free (given straight back: counted below) or the linger ends.
            let more = shared.slots.acquire_many((enough - free) as u32);
            tokio::select! {
                permits = tokio::time::timeout(linger, more) => drop(permits),
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                shared.slots.add_permits(1);
                break;
            }
        }
        let free = 1 + shared.slots.available_permits();
        let want = free.min(shared.settings.fetch_batch.max(1));
        if want > 1 {
            // Take the extra slots now; what is not claimed is given back below.
            let extra = shared
                .slots
                .try_acquire_many((want - 1) as u32)
                .expect("permits were available");
            extra.forget();
        }
        let housekeep =
            last_housekeep.is_none_or(|t| t.elapsed() >= shared.settings.housekeep_every);
        match shared
            .queue
            .claim_with(&shared.worker, want, housekeep)
            .await
        {
            Ok(reply) => match reply.claim {
                Claim::Jobs(leases) => {
                    failures = 0;
                    if housekeep {
                        last_housekeep = Some(Instant::now());
                    }
                    let got = leases.len();
                    shared.slots.add_permits(want - got);
                    shared
                        .counters
                        .claimed
                        .fetch_add(got as u64, Ordering::Relaxed);
                    for lease in leases {
                        shared.hold(&lease);
                        if tx.send(lease).await.is_err() {
                            return;
                        }
                    }
                    // Fewer than asked for: the queue is drained for now. Sleep until a wake
                    // message, the next due time or the cap; the claim after it housekeeps.
                    if got < want {
                        let wait = idle_sleep(&shared, reply.next_due_ms);
                        if idle_wait(&shared, &mut shutdown, wait).await {
                            break;
                        }
                        last_housekeep = None;
                    }
                }
                Claim::Paused { until_ms, reason } => {
                    failures = 0;
                    shared.slots.add_permits(want);
                    let now = shared.queue.now_ms();
                    let wait = Duration::from_millis(until_ms.saturating_sub(now).clamp(50, 1_000));
                    debug!(%reason, until_ms, "queue paused");
                    // A resume publishes on the wake channel.
                    if idle_wait(&shared, &mut shutdown, wait).await {
                        break;
                    }
                }
            },
            Err(e) => {
                shared.slots.add_permits(want);
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                let wait = redis_backoff(failures);
                failures += 1;
                warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "claiming jobs failed; retrying");
                if pause_or_shutdown(&mut shutdown, wait).await {
                    break;
                }
            }
        }
    }
    debug!("fetcher stopped");
}

/// Keeps a subscription to the queue's wake channel and signals the fetcher on every message,
/// and each time the subscription comes up (what was published while it was down is not
/// replayed, so the fetcher looks once). Returns at once on Redis Cluster (the fetcher polls).
async fn wake_loop(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let channel = shared.queue.keys().wake();
    let mut failures = 0u32;
    loop {
        let Some(client) = shared.queue.wake_client() else {
            return;
        };
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            r = subscribed => r,
            _ = shutdown.changed() => return,
        };
        match pubsub {
            Ok(pubsub) => {
                failures = 0;
                shared.wake_live.store(true, Ordering::Release);
                shared.wake.notify_one();
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        m = messages.next() => match m {
                            Some(_) => shared.wake.notify_one(),
                            None => break,
                        },
                        _ = shutdown.changed() => {
                            shared.wake_live.store(false, Ordering::Release);
                            return;
                        }
                    }
                }
                shared.wake_live.store(false, Ordering::Release);
                // Back to polling at once, not after the sleep the fetcher is in.
                shared.wake.notify_one();
                debug!("wake subscription lost; polling until it is back");
            }
            Err(e) => {
                let wait = redis_backoff(failures);
                failures += 1;
                debug!(error = %e, retry_in_ms = wait.as_millis() as u64, "subscribing to the wake channel failed; polling meanwhile");
                if pause_or_shutdown(&mut shutdown, wait).await {
                    return;
                }
            }
        }
    }
}

async fn ack_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<AckMsg>) {
    let max = shared.settings.ack_batch.max(1);
    let linger = shared.settings.ack_linger;
    let mut batch: Vec<Ack> = Vec::with_capacity(max);
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(msg) = rx.recv().await {
        // Outcomes that arrive within `linger` of the first go in the same call; a flush
        // request (shutdown, tests) writes at once.
        let deadline = tokio::time::Instant::now() + linger;
        let mut next = Some(msg);
        loop {
            while let Some(msg) = next.take() {
                match msg {
                    AckMsg::Ack(a) => batch.push(a),
                    AckMsg::Flush(w) => waiters.push(w),
                }
                if batch.len() < max {
                    next = rx.try_recv().ok();
                }
            }
            if !waiters.is_empty() || batch.len() >= max || linger.is_zero() || !shared.slow_jobs()
            {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(msg)) => next = Some(msg),
                Ok(None) | Err(_) => break,
            }
        }
        if !batch.is_empty() {
            write_acks(&shared, std::mem::take(&mut batch)).await;
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

/// Writes outcomes, retrying on Redis errors until Redis answers; a lease that expires meanwhile
/// makes its ack stale, which the script rejects without writing anything.
async fn write_acks(shared: &Shared, acks: Vec<Ack>) {
    let jobs: Vec<JobId> = acks.iter().map(|a| a.lease.job.id.clone()).collect();
    let n = acks.len() as u64;
    let mut failures = 0u32;
    loop {
        match shared.queue.complete(acks.clone()).await {
            Ok(report) => {
                let stale = report.stale.len() as u64;
                if stale > 0 {
                    warn!(
                        stale,
                        "outcomes rejected: their leases had expired and moved on"
                    );
                }
                shared
                    .counters
                    .stale_acks
                    .fetch_add(stale, Ordering::Relaxed);
                shared
                    .counters
                    .acked
                    .fetch_add(n - stale, Ordering::Relaxed);
                for batch in &report.batches_completed {
                    info!(batch_id = %batch, "batch completed");
                }
                break;
            }
            Err(e) => {
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                let wait = redis_backoff(failures);
                failures += 1;
                warn!(error = %e, jobs = n, retry_in_ms = wait.as_millis() as u64, "writing outcomes failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
    shared.drop_held(jobs);
}

async fn heartbeat_loop(shared: Arc<Shared>) {
    let mut closed = shared.closed.subscribe();
    loop {
        if pause_or_shutdown(&mut closed, shared.settings.heartbeat_every).await {
            break;
        }
        let held = shared.held_refs();
        match shared.queue.heartbeat(&shared.worker, &held).await {
            Ok(lost) => {
                if !lost.is_empty() {
                    shared
                        .counters
                        .lost_leases
                        .fetch_add(lost.len() as u64, Ordering::Relaxed);
                    warn!(
                        lost = lost.len(),
                        "leases lost (expired and reaped); those jobs may run twice"
                    );
                }
            }
            Err(e) => {
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "heartbeat failed; retrying at the next beat");
            }
        }
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        // A worker dropped without a graceful close (e.g. cancelled after its shutdown timeout)
        // must not leave its loops claiming or heartbeating.
        let _ = self.shared.shutdown.send(true);
        let _ = self.shared.closed.send(true);
    }
}

impl Backend for RedisBackend {
    type Task = Task<ShareJob>;
    type Error = StoreError;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        self.start();
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        self.start();
        match self.tasks_rx.poll_recv(cx) {
            Poll::Ready(Some(lease)) => Poll::Ready(Some(Ok(into_task(lease)))),
            // The fetcher stopped (shutdown): nothing more will come.
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        if self.closing.is_none() {
            let _ = self.shared.shutdown.send(true);
            // Claimed jobs that were never handed to the handler go back, attempt refunded.
            let mut unstarted = Vec::new();
            self.tasks_rx.close();
            while let Ok(lease) = self.tasks_rx.try_recv() {
                unstarted.push(LeaseRef {
                    job: lease.job.id,
                    fence: lease.fence,
                });
            }
            let shared = self.shared.clone();
            let ack_tx = self.ack_tx.clone();
            self.closing = Some(Box::pin(async move {
                if !unstarted.is_empty() {
                    let n = shared.queue.release(&unstarted).await?;
                    shared.drop_held(unstarted.into_iter().map(|r| r.job));
                    info!(released = n, "gave back jobs that had not started");
                }
                let (done, wait) = oneshot::channel();
                if ack_tx.send(AckMsg::Flush(done)).await.is_ok() {
                    let _ = wait.await;
                }
                let _ = shared.closed.send(true);
                shared.queue.deregister_worker(&shared.worker).await?;
                Ok(())
            }));
        }
        self.closing.as_mut().expect("set above").as_mut().poll(cx)
    }
}

fn into_task(lease: Lease) -> Task<ShareJob> {
    let info = LeaseInfo {
        fence: lease.fence,
        attempt: lease.attempt,
    };
    TaskBuilder::new(lease.job.clone())
        .task_id(TaskId::from_string(lease.job.id.to_string()))
        .attempt(lease.attempt.saturating_sub(1) as usize)
        .data(info)
        .build()
}

impl BackendConfig for RedisBackend {
    type Args = ShareJob;
    type Id = JobId;
    type Kind = Ephemeral;
    type Config = BackendSettings;
    type Layer = AckLayer;

    fn config(&self) -> &Self::Config {
        &self.shared.settings
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        AckLayer {
            shared: self.shared.clone(),
            ack_tx: self.ack_tx.clone(),
        }
    }
}

/// The backend's middleware: after a handler finishes, frees its slot and hands its outcome to
/// the acker.
#[derive(Clone)]
pub struct AckLayer {
    shared: Arc<Shared>,
    ack_tx: mpsc::Sender<AckMsg>,
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;
    fn layer(&self, inner: S) -> AckService<S> {
        AckService {
            inner,
            shared: self.shared.clone(),
            ack_tx: self.ack_tx.clone(),
        }
    }
}

/// See [`AckLayer`].
#[derive(Clone)]
pub struct AckService<S> {
    inner: S,
    shared: Arc<Shared>,
    ack_tx: mpsc::Sender<AckMsg>,
}

impl<S> Service<Task<ShareJob>> for AckService<S>
where
    S: Service<Task<ShareJob>, Response = JobOutcome>,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError> + Send + 'static,
{
    type Response = ();
    type Error = BoxDynError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxDynError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<ShareJob>) -> Self::Future {
        let info: Option<LeaseInfo> = task.data().get_checked::<LeaseInfo>().ok().cloned();
        let job = task.args.clone();
        let fut = self.inner.call(task);
        let shared = self.shared.clone();
        let ack_tx = self.ack_tx.clone();
        Box::pin(async move {
            let started = Instant::now();
            let result = fut.await;
            shared.record_run(started.elapsed());
            let info = info.ok_or("task without a lease: not from RedisBackend")?;
            let outcome = match result {
                Ok(outcome) => outcome,
                // A handler error is not classified: treat it as worth another try.
                Err(e) => JobOutcome::Transient {
                    errcode: None,
                    errmsg: e.into().to_string(),
                },
            };
            let now = shared.queue.now_ms();
            let outcome = shared.settings.retry.decide(outcome, info.attempt, now);
            shared.slots.add_permits(1);
            let lease = Lease {
                job,
                fence: info.fence,
                attempt: info.attempt,
            };
            let ack = Ack::new(lease, outcome);
            ack_tx
                .send(AckMsg::Ack(ack))
                .await
                .map_err(|_| "the acker stopped before the outcome was written")?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_ceiling_doubles_from_base_up_to_the_cap() {
        let p = RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(600),
            max_attempts: 10,
        };
        assert_eq!(p.ceiling(1), Duration::from_secs(1));
        assert_eq!(p.ceiling(2), Duration::from_secs(2));
        assert_eq!(p.ceiling(4), Duration::from_secs(8));
        assert_eq!(p.ceiling(30), Duration::from_secs(600));
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_ceiling() {
        let p = RetryPolicy::default();
        let mut seen_low = false;
        for _ in 0..1000 {
            let d = p.delay(3);
            assert!(d <= Duration::from_secs(4));
            seen_low |= d < Duration::from_secs(1);
        }
        assert!(seen_low, "full jitter reaches below one base delay");
    }

    #[test]
    fn a_transient_error_on_the_last_attempt_is_dead_with_retries_exhausted() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let t = || JobOutcome::Transient {
            errcode: Some(-1),
            errmsg: "system busy".into(),
        };
        assert!(matches!(p.decide(t(), 2, 0), Outcome::RetryAt { .. }));
        assert!(matches!(
            p.decide(t(), 3, 0),
            Outcome::Dead {
                reason: FailReason::RetriesExhausted,
                ..
            }
        ));
        assert!(matches!(
            p.decide(
                JobOutcome::Permanent {
                    errcode: Some(47001),
                    errmsg: "x".into()
                },
                1,
                0
            ),
            Outcome::Dead {
                reason: FailReason::PermanentError,
                ..
            }
        ));
    }
}
