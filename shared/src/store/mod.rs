//! The storage layer (the protocol: docs/queue.md): Redis keys, Lua scripts, producer, worker side, admin.
//!
//! Every state change is one Lua script under `lua/`, run with EVALSHA. Each script is joined
//! at build time from the shared `lua/prelude.lua` (common ARGV, event stream writes, fencing,
//! batch keys), its family's lib (`lua/lib.lua` for the queue, `lua/confirm_lib.lua` for the
//! confirmation schedule, `lua/webhook_lib.lua` for webhook deliveries) and its body: the `lua!` macro below. Every script is batched: it
//! takes many jobs per call, and the Rust side slices big inputs, so the number of script calls
//! per job stays far below one and no script's cost grows with the size of the queue.
//!
//! Job life: [`Queue::enqueue`] → `ready` (or `scheduled`) → [`Queue::claim`] → `running`
//! (leased, with a fencing token) → [`Queue::complete`] → removed (done), `scheduled` (retry) or
//! `dead`. A lease past its deadline is reaped back to `ready`, or to `dead` with
//! `lease_expired` at max attempts.
//!
//! # Batches
//!
//! Enqueue adds to the batch's `jobs` and `appids` totals; every job ending (done, dead, or dead
//! by reap) adds to `done_jobs`, `accepted`, `failed`. `batch.completed` is emitted exactly once,
//! the first time a *sealed* batch has `done_jobs >= jobs`. Sealing (the default of
//! [`EnqueueOptions`], or [`Queue::seal_batch`]) says the producer has added every job, so a
//! batch enqueued in several calls cannot complete while workers finish its first jobs. An
//! admin retry of a dead job takes it out of `done_jobs` and `failed` again; when the batch had
//! already completed, it never emits a second `batch.completed`.

/// A Lua script of the queue (`lua!(queue "claim.lua")`) or of the confirmation schedule
/// (`lua!(confirm "confirm_claim.lua")`): `lua/prelude.lua`, then the family's lib, then the
/// body, joined at build time.
macro_rules! lua {
    (queue $body:literal) => {
        lua!(@ "lua/lib.lua", $body)
    };
    (confirm $body:literal) => {
        lua!(@ "lua/confirm_lib.lua", $body)
    };
    (webhook $body:literal) => {
        lua!(@ "lua/webhook_lib.lua", $body)
    };
    (@ $lib:literal, $body:literal) => {
        ::redis::Script::new(concat!(
            include_str!("lua/prelude.lua"),
            include_str!($lib),
            include_str!(concat!("lua/", $body))
        ))
    };
}

mod admin;
mod callback;
pub(crate) mod confirm;
pub mod conn;
mod error;
mod feed;
mod finished;
mod health;
mod idempotency;
mod keys;
mod lease;
mod producer;
mod rate;
mod results;
pub(crate) mod stream;
mod token;
mod types;
mod webhook;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::{FromRedisValue, Script, ScriptInvocation};

pub use admin::{
    BatchProgress, DeadInfo, DeadJob, DeadSelection, JobInfo, JobState, Pause, QueueStats,
};
pub use callback::{Applied, CallbackWrite, Replay};
pub use error::StoreError;
pub use feed::{EventRate, FeedEntry};
pub use finished::FinishedJob;
pub use health::{BatchConfirmation, ServerCheck};
pub use idempotency::{IdempotencyClaim, StoredAnswer};
pub use keys::Keys;
pub use lease::MAX_CLAIM;
pub use rate::RateStore;
pub use results::{
    CancelReport, MAX_PAGE as MAX_RESULTS_PAGE, ResultRow, ResultsPage, RowState, UnknownState,
};
pub(crate) use results::{render_row, row_field};
pub use stream::{EventError, EventReader, StartFrom, StreamEvent, read_all};
pub use token::{ExternalTokenKey, ExternalTokenValue, StoredTicket, TokenMeta, TokenStore};
pub use types::{
    Ack, AckReport, AppResult, Claim, ClaimReply, EnqueueOptions, EnqueueReport, JobOp, Lease,
    LeaseRef, NewJob, Outcome, ReapReport, ShareJob, WorkerId,
};
pub use webhook::{WebhookEndpointStats, WebhookIntake, WebhookSettle};

use crate::clock::{Clock, SystemClock, iso8601};
use crate::ids::QueueName;
use conn::RedisConn;

/// Queue settings. `Default` gives the documented defaults (docs/configuration.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Tries in all, the first included; a lease expiring at this count buries the job.
    pub max_attempts: u32,
    /// How long a claim holds a job before it may be reaped (renewed by heartbeats).
    pub lease: Duration,
    /// Approximate maximum length of the events stream (`XADD MAXLEN ~`).
    pub events_maxlen: usize,
    /// How long an enqueued (env, appid) pair blocks the same pair from being enqueued again.
    pub dedupe_window: Duration,
    /// Due scheduled jobs moved to ready per claim call (at most 1,000).
    pub promote_slice: usize,
    /// Expired leases reaped per claim or reap call (at most 1,000).
    pub reap_slice: usize,
    /// How long a batch's record and per-appid result rows are kept once it completes (set on
    /// the batch when it is enqueued).
    pub results_ttl: Duration,
    /// After each acknowledged write batch (an enqueue, a batch of outcomes), `WAIT` up to
    /// [`WAIT_TIMEOUT`] for this many replicas to have it; 0 = don't. Ignored on Redis Cluster.
    pub wait_replicas: u32,
    /// How long after a share is accepted its binding is first checked: the accepted appids
    /// enter the confirmation schedule due then, in the step that accepts them (the worker sets
    /// it). `None` leaves them to a confirmation watcher's stream intake, which reads the
    /// `share.accepted` events back (`envshare::confirm`).
    pub confirm_first: Option<Duration>,
}

/// How long one `WAIT` for replicas may take (`ENVSHARE_REDIS_WAIT_REPLICAS`). A shortfall is
/// logged and counted, not an error: the write is done either way.
pub const WAIT_TIMEOUT: Duration = Duration::from_millis(1_000);

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            lease: Duration::from_millis(30_000),
            events_maxlen: 100_000,
            dedupe_window: Duration::from_secs(24 * 3600),
            promote_slice: 1000,
            reap_slice: 500,
            results_ttl: Duration::from_secs(30 * 24 * 3600),
            wait_replicas: 0,
            confirm_first: None,
        }
    }
}

impl From<&crate::config::Settings> for QueueSettings {
    /// `ENVSHARE_MAX_ATTEMPTS`, `ENVSHARE_LEASE_MS`, `ENVSHARE_EVENTS_MAXLEN` and
    /// `ENVSHARE_DEDUPE_WINDOW_MS`, `ENVSHARE_RESULTS_TTL`, `ENVSHARE_REDIS_WAIT_REPLICAS`, and
    /// the first offset of `ENVSHARE_CONFIRM_SCHEDULE` (at most `ENVSHARE_CONFIRM_WINDOW`); the
    /// slices keep their defaults.
    fn from(settings: &crate::config::Settings) -> Self {
        Self {
            max_attempts: settings.max_attempts,
            lease: settings.lease,
            events_maxlen: usize::try_from(settings.events_maxlen).unwrap_or(usize::MAX),
            dedupe_window: settings.dedupe_window,
            results_ttl: settings.results_ttl,
            wait_replicas: settings.redis_wait_replicas,
            confirm_first: Some(
                settings
                    .confirm_schedule
                    .first_within(settings.confirm_window),
            ),
            ..Self::default()
        }
    }
}

/// Jobs per ack / enqueue script call; bigger inputs are sliced.
pub(crate) const SLICE: usize = 500;
/// Ids per admin script call (dead retry / purge).
pub(crate) const ADMIN_SLICE: usize = 1000;
/// Script calls in flight at once when a big input is sliced.
pub(crate) const IN_FLIGHT: usize = 8;

/// The queue's scripts, compiled into the binary.
pub(crate) struct Scripts {
    pub enqueue: Script,
    pub seal: Script,
    pub claim: Script,
    pub heartbeat: Script,
    pub complete: Script,
    pub retry: Script,
    pub bury: Script,
    pub release: Script,
    pub drop: Script,
    pub reap: Script,
    pub pause: Script,
    pub dead_retry: Script,
    pub dead_purge: Script,
    pub cancel: Script,
    pub results_page: Script,
    pub results_find: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    enqueue: lua!(queue "enqueue.lua"),
    seal: lua!(queue "seal.lua"),
    claim: lua!(queue "claim.lua"),
    heartbeat: lua!(queue "heartbeat.lua"),
    complete: lua!(queue "complete.lua"),
    retry: lua!(queue "retry.lua"),
    bury: lua!(queue "bury.lua"),
    release: lua!(queue "release.lua"),
    drop: lua!(queue "drop.lua"),
    reap: lua!(queue "reap.lua"),
    pause: lua!(queue "pause.lua"),
    dead_retry: lua!(queue "dead_retry.lua"),
    dead_purge: lua!(queue "dead_purge.lua"),
    cancel: lua!(queue "cancel.lua"),
    results_page: lua!(queue "results_page.lua"),
    results_find: lua!(queue "results_find.lua"),
});

/// A handle on one queue. Cheap to clone; clones share one multiplexed connection, so
/// concurrent calls are pipelined on it. Works on a single server and on Redis Cluster (see
/// [`store::conn`](crate::store::conn)): every key of the queue is in one slot.
#[derive(Clone)]
pub struct Queue {
    /// `None` on a cluster, where no single-server client exists.
    client: Option<redis::Client>,
    conn: RedisConn,
    keys: Arc<Keys>,
    script_keys: Arc<[String; 17]>,
    settings: QueueSettings,
    clock: Arc<dyn Clock>,
    /// `WAIT`s that fell short, shared by clones.
    wait_shortfalls: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print the client.
        f.debug_struct("Queue")
            .field("prefix", &self.keys.prefix())
            .field("settings", &self.settings)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Connects to Redis and loads the scripts. The connection reconnects by itself after
    /// errors (each failed call returns a retryable [`StoreError::Redis`]).
    ///
    /// A `redis+cluster://` URL connects to Redis Cluster; [`Queue::connect_with`] also takes
    /// the cluster flag (`ENVSHARE_REDIS_CLUSTER`).
    pub async fn connect(
        redis_url: &str,
        queue: &QueueName,
        settings: QueueSettings,
    ) -> Result<Self, StoreError> {
        Self::connect_with(redis_url, false, queue, settings).await
    }

    /// [`Queue::connect`], in cluster mode when `cluster` is set or the URL's scheme is
    /// `redis+cluster://` (see [`parse_target`](crate::redis_url::parse_target)).
    pub async fn connect_with(
        redis_url: &str,
        cluster: bool,
        queue: &QueueName,
        settings: QueueSettings,
    ) -> Result<Self, StoreError> {
        let op = "connect";
        let cluster = cluster || crate::redis_url::is_cluster_url(redis_url);
        let client = if cluster || crate::redis_url::is_sentinel_url(redis_url) {
            None
        } else {
            Some(redis::Client::open(redis_url).map_err(StoreError::redis(op))?)
        };
        // The timeouts of conn::ConnectOptions::default: 2 s to connect, 5 s per reply. The PING
        // proves Redis answers before anything else is tried.
        let conn = conn::connect_and_ping(redis_url, cluster, conn::ConnectOptions::default())
            .await
            .map_err(StoreError::redis(op))?;
        // Scripts are not loaded up front: each one's first EVALSHA in a process loads it on
        // NOSCRIPT (redis::Script does), so a process makes Redis hash and compile only the
        // scripts it runs (a CLI command one or two of sixteen), and after a Redis restart the
        // same path reloads them.
        let keys = Keys::new(queue);
        Ok(Self {
            client,
            conn,
            script_keys: Arc::new(keys.script_keys()),
            keys: Arc::new(keys),
            settings,
            clock: Arc::new(SystemClock),
            wait_shortfalls: Arc::default(),
        })
    }

    /// Reads time from `clock` instead of the system clock (tests move a
    /// [`ManualClock`](crate::clock::ManualClock)).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The queue's keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The settings.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// The clock the queue reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The clock's current time (ms).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The single-server Redis client, for connections of their own (pub/sub on
    /// [`Keys::wake`], blocking reads); `None` on Redis Cluster, where
    /// [`conn::connect_with`] makes such connections.
    pub fn client(&self) -> Option<&redis::Client> {
        self.client.as_ref()
    }

    /// A client for a connection of its own to the server this queue writes to (the master,
    /// under Sentinel), for the subscription to [`Keys::wake`]; `None` on Redis Cluster, where
    /// workers poll instead.
    pub fn wake_client(&self) -> Option<redis::Client> {
        match &self.conn {
            RedisConn::Single(_) => self.client.clone(),
            RedisConn::Sentinel(s) => s.master_client().ok(),
            RedisConn::Cluster(_) => None,
        }
    }

    /// After an acknowledged write batch: `WAIT` for [`QueueSettings::wait_replicas`] replicas
    /// (at most [`WAIT_TIMEOUT`]). Returns how many replicas acknowledged, `None` when not
    /// asked to wait. `WAIT` covers every earlier write of this connection, which all of this
    /// queue's writes share. A shortfall is logged and counted in
    /// [`Queue::wait_shortfalls`]; it is not an error, since the write itself is done.
    pub async fn wait_for_replicas(&self, op: &'static str) -> Option<u64> {
        let want = self.settings.wait_replicas;
        if want == 0 || self.conn.is_cluster() {
            return None;
        }
        let mut conn = self.conn.clone();
        let got: Result<u64, _> = redis::cmd("WAIT")
            .arg(want)
            .arg(WAIT_TIMEOUT.as_millis() as u64)
            .query_async(&mut conn)
            .await;
        match got {
            Ok(n) if n >= u64::from(want) => Some(n),
            Ok(n) => {
                self.wait_shortfalls
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    op,
                    replicas = n,
                    wanted = want,
                    "WAIT: fewer replicas than \
                    ENVSHARE_REDIS_WAIT_REPLICAS acknowledged the write within 1 s"
                );
                Some(n)
            }
            Err(e) => {
                self.wait_shortfalls
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(op, error = %e, "WAIT for replicas failed");
                Some(0)
            }
        }
    }

    /// How many `WAIT`s for replicas fell short or failed (see [`Queue::wait_for_replicas`]).
    pub fn wait_shortfalls(&self) -> u64 {
        self.wait_shortfalls
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A clone of the shared multiplexed connection.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// An invocation of `script` with the queue's KEYS and the common ARGV[1..4].
    fn invocation(&self, script: &'static Script, now: u64) -> ScriptInvocation<'static> {
        let mut inv = script.prepare_invoke();
        for k in self.script_keys.iter() {
            inv.key(k);
        }
        inv.arg(now)
            .arg(iso8601(now))
            .arg(self.keys.prefix())
            .arg(self.settings.events_maxlen.max(1));
        inv
    }

    async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn)
            .await
            .map_err(StoreError::redis(op))
    }
}

fn parse_ids<T: TryFrom<String>>(op: &'static str, ids: Vec<String>) -> Result<Vec<T>, StoreError>
where
    T::Error: std::fmt::Display,
{
    ids.into_iter()
        .map(|s| T::try_from(s).map_err(|e| StoreError::reply(op, e)))
        .collect()
}
