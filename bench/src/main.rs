//! envshare's benchmarks. Each command prints one JSON object as its last stdout line, so
//! `../shared/peer-bench` can run it beside BullMQ, Sidekiq and arq (see BENCHMARKS.md).
//!
//! - `envshare-bench enqueue N CHUNK`: bulk-enqueue N one-appid jobs, CHUNK per call.
//! - `envshare-bench work N CONCURRENCY`: run N queued jobs through the apalis worker with a
//!   no-op handler (events included).
//! - `envshare-bench claim BACKLOG`: time of one claim of 100 jobs at a backlog of BACKLOG.
//! - `envshare-bench suite [N]`: the whole queue benchmark on a private queue, with Redis CPU and
//!   commands per job read from `INFO`, as a table.
//! - `envshare-bench share N CONCURRENCY [LATENCY_MS]`: the full share path against the sandbox.
//! - `envshare-bench webhooks N [CONCURRENCY] [ENDPOINTS]`: webhook deliveries per second to
//!   local endpoints, and Redis CPU per delivery.
//! - `envshare-bench callback N CONCURRENCY`: the WeChat callback receiver of `envshare serve` on
//!   one core (signature, decryption, the Redis write), N verify-ticket pushes.
//! - `envshare-bench console [APPIDS] [BATCHES]`: the web console's page times with a batch of
//!   APPIDS appids and BATCHES batches on record.
//!
//! Redis comes from `REDIS_URL` (default `redis://127.0.0.1:6379`); the queue is `bench` unless
//! `ENVSHARE_QUEUE` says otherwise. Every command clears its queue's keys first (and only them).

mod callback;
mod console;
mod share;
mod webhooks;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apalis_core::worker::builder::WorkerBuilder;
use envshare::store::{AppResult, NewJob, Queue, QueueSettings, ShareJob, WorkerId};
use envshare::worker::{BackendSettings, JobOutcome, RedisBackend};
use envshare::{AppId, BatchId, EnvId, QueueName};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
            b.work(arg(1, 100_000)?, arg(2, 64)? as usize).await?
        }
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
            )
            .await?
        }
        Some("webhooks") => {
            webhooks::run(arg(1, 50_000)?, arg(2, 64)? as usize, arg(3, 1)? as usize).await?
        }
        Some("console") => console::run(&redis_url(), arg(1, 100_000)?, arg(2, 1_000)?).await?,
        Some("callback") => {
            callback::run(&redis_url(), arg(1, 20_000)?, arg(2, 32)? as usize).await?
        }
        _ => bail!(
            "usage: envshare-bench enqueue N CHUNK | work N CONCURRENCY | claim BACKLOG | suite [N] | share N CONCURRENCY [LATENCY_MS] | callback N CONCURRENCY | console [APPIDS] [BATCHES] | webhooks N [CONCURRENCY] [ENDPOINTS]"
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

struct Bench {
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
                    appids: vec![appid(k)],
                    batch: batch.clone(),
                    run_at_ms: None,
                })
                .collect();
            let report = self
                .queue
                .enqueue(
                    jobs,
                    envshare::store::EnqueueOptions {
                        force: true,
                        seal: end == n,
                    },
                )
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

    async fn work(&self, n: u64, concurrency: usize) -> anyhow::Result<serde_json::Value> {
        let started = Instant::now();
        let settings = BackendSettings {
            concurrency,
            fetch_batch: concurrency.clamp(1, 512),
            ..BackendSettings::default()
        };
        let backend = RedisBackend::new(self.queue.clone(), WorkerId::generate(), settings);
        let handle = backend.handle();
        let worker = WorkerBuilder::new("envshare-bench")
            .backend(backend)
            .build(noop);
        let watcher = handle.clone();
        let done = async move {
            loop {
                let c = watcher.counters();
                if c.acked.load(Ordering::Relaxed) + c.stale_acks.load(Ordering::Relaxed) >= n {
                    return Ok::<(), std::io::Error>(());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        worker.run_until(done).await.context("running the worker")?;
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
        let mut conn = self.redis.clone();
        let cpu: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await?;
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await?;
        Ok(RedisInfo::parse(&cpu, &stats))
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

/// Redis CPU seconds (user + sys) and commands executed, from `INFO`.
#[derive(Debug, Default, Clone, Copy)]
struct RedisInfo {
    cpu_s: f64,
    calls: u64,
    script_calls: u64,
}

impl RedisInfo {
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
    let per_job = |a: RedisInfo, z: RedisInfo| {
        json!({
            "redis_cpu_us_per_job": (z.cpu_s - a.cpu_s) * 1e6 / n as f64,
            "redis_cmds_per_job": (z.calls - a.calls) as f64 / n as f64,
            "script_calls_per_job": (z.script_calls - a.script_calls) as f64 / n as f64,
        })
    };
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
        "redis_enqueue": per_job(before, mid),
        "redis_work": per_job(mid, after),
        "redis_end_to_end": per_job(before, after),
        "by_concurrency": concurrency,
        "claim_1k": small, "claim_100k": big,
        "jobs_per_s": work["jobs_per_s"], "max_rss_mb": max_rss_mb(),
    }))
}

/// `wx` + 16 hex digits from `k`.
pub fn appid(k: u64) -> AppId {
    AppId::parse(&format!("wx{k:016x}")).expect("16 hex digits")
}

fn accept_all(job: &ShareJob) -> Vec<AppResult> {
    job.appids
        .iter()
        .map(|a| AppResult::Accepted {
            appid: a.clone(),
            confirm_url: None,
        })
        .collect()
}

async fn noop(job: ShareJob) -> JobOutcome {
    JobOutcome::Done(accept_all(&job))
}
