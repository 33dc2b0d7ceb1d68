//! envshare's benchmarks. Each command prints one JSON object as its last stdout line, so
//! `../shared/peer-bench` can run it beside BullMQ, Sidekiq and arq (see BENCHMARKS.md).
//!
//! - `envshare-bench enqueue N CHUNK`: bulk-enqueue N one-appid jobs, CHUNK per call.
//! - `envshare-bench work N CONCURRENCY [JOB_MS]`: run N queued jobs through the apalis worker
//!   with a no-op handler (events included) that first waits JOB_MS (or `$JOB_MS`; default 0),
//!   as a job waiting on the WeChat API would.
//! - `envshare-bench claim BACKLOG`: time of one claim of 100 jobs at a backlog of BACKLOG.
//! - `envshare-bench suite [N]`: the whole queue benchmark on a private queue, with Redis CPU and
//!   commands per job read from `INFO`, as a table.
//! - `envshare-bench waiting [N] [JOB_MS] [CONCURRENCY]`: the regime users run: N one-appid jobs
//!   enqueued as an import does, then worked by one worker whose jobs each wait JOB_MS (default
//!   20,000 jobs, 50 ms, c = 64); Redis CPU, commands and script calls per job.
//! - `envshare-bench imports [N] [SIZE] [CONCURRENCY]`: N one-appid jobs arriving as imports of
//!   SIZE appids each (default 500), one after the other, each enqueued into the drained queue
//!   of one long-running worker whose jobs wait `$JOB_MS` (default 50 ms, c = 64): the regime of
//!   an operator's imports; Redis CPU, commands and script calls per job.
//! - `envshare-bench idle [SECONDS] [WORKERS]`: Redis CPU of WORKERS idle worker services (the
//!   code `envshare-worker` runs, every loop included) on an empty queue, per worker.
//! - `envshare-bench wake [SAMPLES]`: how long a job enqueued into an idle queue waits before its
//!   handler starts (p50, p99, max).
//! - `envshare-bench share N CONCURRENCY [LATENCY_MS]`: the full share path against the sandbox.
//! - `envshare-bench webhooks N [CONCURRENCY] [ENDPOINTS]`: webhook deliveries per second to
//!   local endpoints, and Redis CPU per delivery.
//! - `envshare-bench callback N CONCURRENCY`: the WeChat callback receiver of `envshare serve` on
//!   one core (signature, decryption, the Redis write), N verify-ticket pushes.
//! - `envshare-bench console [APPIDS] [BATCHES]`: the web console's page times with a batch of
//!   APPIDS appids and BATCHES batches on record.
//!
//! - `envshare-bench api N [ROUNDS]`: `POST /api/v1/batches` of N pairs against `envshare serve`
//!   (its time per request; target < 300 ms for 10,000 pairs).
//!
//! Redis comes from `REDIS_URL` (default `redis://127.0.0.1:6379`); the queue is `bench` unless
//! `ENVSHARE_QUEUE` says otherwise. Every command clears its queue's keys first (and only them).

mod api;
mod callback;
mod console;
mod idle;
mod share;
mod webhooks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apalis_core::worker::builder::WorkerBuilder;
use envshare::store::{AppResult, NewJob, Queue, QueueSettings, ShareJob, WorkerId};
use envshare::worker::{BackendHandle, BackendSettings, JobOutcome, RedisBackend};
use envshare::{AppId, BatchId, EnvId, QueueName};
use serde_json::json;
use tracing::Instrument as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Traces only when the OTEL_ variables ask for them (the "tracing on" figures); otherwise no
    // subscriber at all, as before traces existed.
    let _telemetry = if envshare::telemetry::traces_requested(|v| std::env::var(v).ok())? {
        Some(envshare::telemetry::init(
            "warn",
            envshare::telemetry::LogFormat::Text,
            "envshare-bench",
        )?)
    } else {
        None
    };
    let arg = |i: usize, default: u64| -> anyhow::Result<u64> {
        match args.get(i) {
            Some(s) => s
                .replace('_', "")
                .parse()
                .with_context(|| format!("argument {i} ({s:?}) must be a whole number")),
            None => Ok(default),
        }
    };
    let out = match args.first().map(String::as_str) {
        Some("enqueue") => {
            let b = Bench::connect().await?;
            b.clear().await?;
            b.enqueue(arg(1, 100_000)?, arg(2, 1_000)?).await?
        }
        Some("work") => {
            let b = Bench::connect().await?;
            set_job_ms(match args.get(3) {
                Some(_) => arg(3, 0)?,
                None => env_ms("JOB_MS")?.unwrap_or(0),
            });
            b.work(arg(1, 100_000)?, arg(2, 64)? as usize).await?
        }
        Some("waiting") => {
            set_job_ms(arg(2, 50)?);
            waiting(arg(1, 20_000)?, arg(3, 64)? as usize).await?
        }
        Some("imports") => {
            set_job_ms(env_ms("JOB_MS")?.unwrap_or(50));
            imports(arg(1, 20_000)?, arg(2, 500)?, arg(3, 64)? as usize).await?
        }
        Some("idle") => idle::idle(&redis_url(), arg(1, 30)?, arg(2, 4)? as usize).await?,
        Some("wake") => idle::wake(&redis_url(), arg(1, 200)? as usize).await?,
        Some("claim") => {
            let b = Bench::connect().await?;
            b.claim_latency(arg(1, 100_000)?).await?
        }
        Some("suite") => suite(arg(1, 100_000)?).await?,
        Some("share") => {
            share::run(
                &redis_url(),
                arg(1, 50_000)?,
                arg(2, 256)? as usize,
                arg(3, 0)?,
                arg(4, 10)?,
            )
            .await?
        }
        Some("webhooks") => {
            webhooks::run(arg(1, 50_000)?, arg(2, 64)? as usize, arg(3, 1)? as usize).await?
        }
        Some("api") => api::run(&redis_url(), arg(1, 10_000)?, arg(2, 5)?).await?,
        Some("console") => console::run(&redis_url(), arg(1, 100_000)?, arg(2, 1_000)?).await?,
        Some("callback") => {
            callback::run(&redis_url(), arg(1, 20_000)?, arg(2, 32)? as usize).await?
        }
        _ => bail!(
            "usage: envshare-bench enqueue N CHUNK | work N CONCURRENCY [JOB_MS] | claim BACKLOG | suite [N] | waiting [N] [JOB_MS] [CONCURRENCY] | imports [N] [SIZE] [CONCURRENCY] | idle [SECONDS] [WORKERS] | wake [SAMPLES] | share N CONCURRENCY [LATENCY_MS] [CHUNK] | callback N CONCURRENCY | api N [ROUNDS] | console [APPIDS] [BATCHES] | webhooks N [CONCURRENCY] [ENDPOINTS]"
        ),
    };
    println!("{out}");
    Ok(())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Peak resident memory of this process (VmHWM), in MB.
pub fn max_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

pub(crate) struct Bench {
    queue: Queue,
    redis: redis::aio::MultiplexedConnection,
}

impl Bench {
    async fn connect() -> anyhow::Result<Self> {
        let name = std::env::var("ENVSHARE_QUEUE").unwrap_or_else(|_| "bench".to_owned());
        let name = QueueName::parse(&name)?;
        let settings = QueueSettings {
            // Big enough that the bench never trims events it is about to count.
            events_maxlen: 2_000_000,
            ..QueueSettings::default()
        };
        let queue = Queue::connect(&redis_url(), &name, settings)
            .await
            .context("connecting to Redis (set REDIS_URL)")?;
        let client = redis::Client::open(redis_url())?;
        let redis = client.get_multiplexed_async_connection().await?;
        Ok(Self { queue, redis })
    }

    /// Deletes this queue's keys (and only them).
    async fn clear(&self) -> anyhow::Result<()> {
        let mut conn = self.redis.clone();
        let pattern = format!("{}*", self.queue.keys().prefix());
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await?;
        for chunk in keys.chunks(500) {
            let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
        }
        Ok(())
    }

    async fn enqueue(&self, n: u64, chunk: u64) -> anyhow::Result<serde_json::Value> {
        enqueue_on(&self.queue, 0, n, chunk).await
    }

    async fn work(&self, n: u64, concurrency: usize) -> anyhow::Result<serde_json::Value> {
        let started = Instant::now();
        let handle = run_worker(&self.queue, concurrency, |h| async move {
            processed(&h, n).await;
            Ok(())
        })
        .await?;
        let secs = started.elapsed().as_secs_f64();
        let acked = handle.counters().acked.load(Ordering::Relaxed);
        Ok(json!({
            "command": "work", "version": env!("CARGO_PKG_VERSION"), "n": n, "concurrency": concurrency, "processed_ok": acked,
            "seconds": secs, "jobs_per_s": acked as f64 / secs, "max_rss_mb": max_rss_mb(),
        }))
    }

    /// Median time of claiming (and completing) 100 jobs at a backlog of `backlog` ready jobs.
    async fn claim_latency(&self, backlog: u64) -> anyhow::Result<serde_json::Value> {
        self.clear().await?;
        self.enqueue(backlog + 2_000, 1_000).await?;
        let worker = WorkerId::generate();
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let claim = self.queue.claim(&worker, 100).await?;
            times.push(t.elapsed().as_secs_f64() * 1e6);
            if let envshare::store::Claim::Jobs(leases) = claim {
                let acks = leases
                    .into_iter()
                    .map(|l| {
                        let outcome = envshare::store::Outcome::Done(accept_all(&l.job));
                        envshare::store::Ack::new(l, outcome)
                    })
                    .collect();
                self.queue.complete(acks).await?;
            }
        }
        times.sort_by(f64::total_cmp);
        Ok(json!({
            "command": "claim", "backlog": backlog, "claim_100_us_p50": times[times.len() / 2],
            "claim_100_us_min": times[0], "max_rss_mb": max_rss_mb(),
        }))
    }

    async fn info(&self) -> anyhow::Result<RedisInfo> {
        RedisInfo::read(&mut self.redis.clone()).await
    }

    async fn reset_stats(&self) -> anyhow::Result<()> {
        let mut conn = self.redis.clone();
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// Enqueues `n` one-appid jobs (appids from number `first` on) as one batch, `chunk` per call.
async fn enqueue_on(
    queue: &Queue,
    first: u64,
    n: u64,
    chunk: u64,
) -> anyhow::Result<serde_json::Value> {
    let batch = BatchId::generate();
    let env = EnvId::parse("bench")?;
    let started = Instant::now();
    let mut i = 0u64;
    let mut enqueued = 0usize;
    while i < n {
        let end = (i + chunk.max(1)).min(n);
        let jobs: Vec<NewJob> = (i..end)
            .map(|k| NewJob {
                op: envshare::store::JobOp::Share,
                env: env.clone(),
                appids: vec![appid(first + k)],
                batch: batch.clone(),
                run_at_ms: None,
            })
            .collect();
        // Traced like an import when OTEL_EXPORTER_OTLP_ENDPOINT is set (the jobs then
        // carry a traceparent and their events a trace id); without it, no subscriber is
        // installed and the span costs nothing.
        let report = queue
            .enqueue(
                jobs,
                envshare::store::EnqueueOptions {
                    force: true,
                    seal: end == n,
                },
            )
            .instrument(tracing::info_span!("envshare.import", batch_id = %batch))
            .await?;
        enqueued += report.jobs;
        i = end;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "command": "enqueue", "version": env!("CARGO_PKG_VERSION"), "n": n, "chunk": chunk, "enqueued": enqueued,
        "seconds": secs, "jobs_per_s": enqueued as f64 / secs, "max_rss_mb": max_rss_mb(),
        "batch_id": batch.to_string(),
    }))
}

/// Runs a worker of `queue` with the no-op handler until `until` (given a handle on the
/// worker's counters) ends; returns that handle. `CLAIM_LINGER_MS` and `ACK_LINGER_MS` set the
/// fetcher's and acker's lingering (ms), for experiments (e.g. `CLAIM_LINGER_MS=0`).
async fn run_worker<F, Fut>(
    queue: &Queue,
    concurrency: usize,
    until: F,
) -> anyhow::Result<BackendHandle>
where
    F: FnOnce(BackendHandle) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let mut settings = BackendSettings {
        concurrency,
        fetch_batch: concurrency.clamp(1, 512),
        ..BackendSettings::default()
    };
    if let Some(ms) = env_ms("CLAIM_LINGER_MS")? {
        settings.claim_linger = Duration::from_millis(ms);
    }
    if let Some(ms) = env_ms("ACK_LINGER_MS")? {
        settings.ack_linger = Duration::from_millis(ms);
    }
    let backend = RedisBackend::new(queue.clone(), WorkerId::generate(), settings);
    let handle = backend.handle();
    let worker = WorkerBuilder::new("envshare-bench")
        .backend(backend)
        .build(noop);
    worker
        .run_until(until(handle.clone()))
        .await
        .context("running the worker")?;
    Ok(handle)
}

/// Waits until the worker behind `handle` has written `n` outcomes (stale ones included).
async fn processed(handle: &BackendHandle, n: u64) {
    loop {
        let c = handle.counters();
        if c.acked.load(Ordering::Relaxed) + c.stale_acks.load(Ordering::Relaxed) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `imports N SIZE CONCURRENCY` (the wait set by the caller): one worker runs throughout, and
/// imports of SIZE one-appid jobs arrive one after the other, each once the queue has drained,
/// as an operator's imports do; Redis CPU, commands and script calls per job of the whole run.
async fn imports(n: u64, size: u64, concurrency: usize) -> anyhow::Result<serde_json::Value> {
    let b = Bench::connect().await?;
    b.clear().await?;
    b.reset_stats().await?;
    let before = b.info().await?;
    let started = Instant::now();
    let (queue, size) = (b.queue.clone(), size.max(1));
    let handle = run_worker(&b.queue, concurrency, |h| async move {
        let mut sent = 0;
        while sent < n {
            let k = size.min(n - sent);
            enqueue_on(&queue, sent, k, 500)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            sent += k;
            processed(&h, sent).await;
        }
        Ok(())
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let after = b.info().await?;
    let acked = handle.counters().acked.load(Ordering::Relaxed);
    b.clear().await?;
    Ok(json!({
        "command": "imports", "n": n, "size": size, "job_ms": JOB_MS.load(Ordering::Relaxed),
        "concurrency": concurrency, "processed_ok": acked, "seconds": secs,
        "jobs_per_s": acked as f64 / secs,
        "redis_end_to_end": RedisInfo::per_job(&before, &after, n),
        "max_rss_mb": max_rss_mb(),
    }))
}

/// Redis CPU seconds (user + sys) and commands executed, from `INFO`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RedisInfo {
    cpu_s: f64,
    calls: u64,
    script_calls: u64,
}

impl RedisInfo {
    /// Reads Redis's CPU time and command counts over `conn`.
    pub(crate) async fn read(
        conn: &mut (impl redis::aio::ConnectionLike + Send),
    ) -> anyhow::Result<Self> {
        let cpu: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(conn)
            .await?;
        Ok(Self::parse(&cpu, &stats))
    }

    /// Redis CPU µs, commands and script calls per job between `a` and `z`, for `n` jobs.
    pub(crate) fn per_job(a: &Self, z: &Self, n: u64) -> serde_json::Value {
        let n = n.max(1) as f64;
        json!({
            "redis_cpu_us_per_job": (z.cpu_s - a.cpu_s) * 1e6 / n,
            "redis_cmds_per_job": (z.calls - a.calls) as f64 / n,
            "script_calls_per_job": (z.script_calls - a.script_calls) as f64 / n,
        })
    }

    /// Redis CPU seconds (user + sys) since it started.
    pub(crate) fn cpu_s(&self) -> f64 {
        self.cpu_s
    }

    fn parse(cpu: &str, stats: &str) -> Self {
        let mut info = Self::default();
        for line in cpu.lines() {
            if let Some(v) = line
                .strip_prefix("used_cpu_sys:")
                .or_else(|| line.strip_prefix("used_cpu_user:"))
            {
                info.cpu_s += v.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
        for line in stats.lines() {
            let Some(rest) = line.strip_prefix("cmdstat_") else {
                continue;
            };
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            // The harness's own INFO/CONFIG calls are not the queue's work.
            if matches!(name, "info" | "config") {
                continue;
            }
            info.calls += calls;
            if matches!(name, "evalsha" | "eval" | "fcall") {
                info.script_calls += calls;
            }
        }
        info
    }
}

async fn suite(n: u64) -> anyhow::Result<serde_json::Value> {
    let b = Bench::connect().await?;
    b.clear().await?;
    b.reset_stats().await?;
    let before = b.info().await?;
    let enq = b.enqueue(n, 1_000).await?;
    let mid = b.info().await?;
    let work = b.work(n, 256).await?;
    let after = b.info().await?;
    let mut concurrency = Vec::new();
    for c in [1usize, 32, 256] {
        let jobs = if c == 1 { n / 10 } else { n };
        b.clear().await?;
        b.enqueue(jobs, 1_000).await?;
        concurrency.push(b.work(jobs, c).await?);
    }
    let small = b.claim_latency(1_000).await?;
    let big = b.claim_latency(100_000).await?;
    b.clear().await?;
    Ok(json!({
        "command": "suite", "n": n,
        "enqueue": enq, "work": work,
        "redis_enqueue": RedisInfo::per_job(&before, &mid, n),
        "redis_work": RedisInfo::per_job(&mid, &after, n),
        "redis_end_to_end": RedisInfo::per_job(&before, &after, n),
        "by_concurrency": concurrency,
        "claim_1k": small, "claim_100k": big,
        "jobs_per_s": work["jobs_per_s"], "max_rss_mb": max_rss_mb(),
    }))
}

/// `wx` + 16 hex digits from `k`.
pub fn appid(k: u64) -> AppId {
    AppId::parse(&format!("wx{k:016x}")).expect("16 hex digits")
}

pub(crate) fn accept_all(job: &ShareJob) -> Vec<AppResult> {
    job.appids
        .iter()
        .map(|a| AppResult::Accepted {
            appid: a.clone(),
            confirm_url: None,
        })
        .collect()
}

/// How long every job of `work` waits before it answers (ms).
static JOB_MS: AtomicU64 = AtomicU64::new(0);

fn set_job_ms(ms: u64) {
    JOB_MS.store(ms, Ordering::Relaxed);
}

/// A whole number of milliseconds from the environment variable `name`, if set.
fn env_ms(name: &str) -> anyhow::Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => {
            Ok(Some(v.parse().with_context(|| {
                format!("{name}={v:?} must be a whole number of milliseconds")
            })?))
        }
        _ => Ok(None),
    }
}

async fn noop(job: ShareJob) -> JobOutcome {
    let ms = JOB_MS.load(Ordering::Relaxed);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    JobOutcome::Done(accept_all(&job))
}

/// `waiting N CONCURRENCY` (the wait set by the caller): enqueue as an import does (one call per
/// 500 jobs, each job one appid), then work with one worker; Redis CPU per job of each phase.
async fn waiting(n: u64, concurrency: usize) -> anyhow::Result<serde_json::Value> {
    let b = Bench::connect().await?;
    b.clear().await?;
    b.reset_stats().await?;
    let before = b.info().await?;
    let enq = b.enqueue(n, 500).await?;
    let mid = b.info().await?;
    let work = b.work(n, concurrency).await?;
    let after = b.info().await?;
    b.clear().await?;
    Ok(json!({
        "command": "waiting", "n": n, "job_ms": JOB_MS.load(Ordering::Relaxed),
        "concurrency": concurrency,
        "enqueue": enq, "work": work,
        "redis_enqueue": RedisInfo::per_job(&before, &mid, n),
        "redis_work": RedisInfo::per_job(&mid, &after, n),
        "redis_end_to_end": RedisInfo::per_job(&before, &after, n),
        "jobs_per_s": work["jobs_per_s"], "max_rss_mb": max_rss_mb(),
    }))
}
