//! `envshare-bench share N CONCURRENCY [LATENCY_MS] [CHUNK]`: the full share path.
//!
//! An in-process sandbox (the given latency, no faults, a static token) and a private queue;
//! N appids are enqueued in jobs of CHUNK (default 10; N/CHUNK jobs, one sealed batch), then the
//! worker service
//! (`envshare::worker::Application`, the code `envshare-worker` runs) works them off with
//! events, and the run is timed from the worker's start to the last outcome written.
//!
//! The sandbox runs on a thread of its own (a current-thread runtime), so its CPU time can be
//! read from that thread's `/proc` entry and left out of the worker's: `worker_cpu_us_per_call`
//! is the process's CPU time minus the sandbox thread's, per WeChat call. Redis runs in its own
//! process: its CPU time (`INFO cpu`) is read around the enqueue and around the work, so
//! `redis_cpu_us_per_job` covers the whole path (enqueue, claims, outcomes, events, result
//! rows, confirmation scheduling) of the worker `envshare-worker` runs; the sandbox accepts
//! every appid, and the run fails unless the acks scheduled each one's confirmation check.
//! `CONFIRM=0` keeps the confirmation watcher asleep for the run (no rounds; the acks still
//! schedule): the difference is what the watcher's rounds cost.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use envshare::config::Settings;
use envshare::sandbox::{Latency, Sandbox, SandboxConfig};
use envshare::store::{EnqueueOptions, NewJob, Queue, QueueSettings};
use envshare::wechat::Endpoint;
use envshare::worker::{Application, WorkerOptions};
use envshare::{BatchId, EnvId, QueueName};
use secrecy::SecretString;
use serde_json::json;

use crate::{appid, max_rss_mb};

const TOKEN: &str = "bench-static-token";

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// utime + stime (seconds) from a `/proc/…/stat` file.
pub(crate) fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / TICKS_PER_S
}

/// The sandbox on its own thread; stopping it returns the number of share calls it answered.
struct SandboxThread {
    url: String,
    stat_path: String,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<u64>,
}

fn start_sandbox(latency_ms: u64) -> anyhow::Result<SandboxThread> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<(String, String)>>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("sandbox".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return 0;
                }
            };
            rt.block_on(async move {
                let config = SandboxConfig {
                    latency: if latency_ms == 0 {
                        Latency::None
                    } else {
                        Latency::Fixed(Duration::from_millis(latency_ms))
                    },
                    static_tokens: vec![TOKEN.into()],
                    record_share_log: false,
                    ..SandboxConfig::default()
                };
                let sandbox = match Sandbox::start(config).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return 0;
                    }
                };
                let me = std::fs::read_link("/proc/thread-self")
                    .map(|p| format!("/proc/{}/stat", p.display()))
                    .unwrap_or_default();
                let _ = ready_tx.send(Ok((sandbox.url().to_owned(), me)));
                let _ = stopped.await;
                let calls = sandbox.calls(Endpoint::ShareEnv);
                let _ = sandbox.shutdown().await;
                calls
            })
        })
        .context("starting the sandbox thread")?;
    let (url, stat_path) = ready_rx
        .recv()
        .context("the sandbox thread stopped before it started")??;
    Ok(SandboxThread {
        url,
        stat_path,
        stop,
        thread,
    })
}

/// Deletes the keys of `queue` (and only them).
pub(crate) async fn clear(queue: &Queue) -> anyhow::Result<()> {
    let mut conn = queue.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", queue.keys().prefix()))
        .query_async(&mut conn)
        .await?;
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
    }
    Ok(())
}

/// See the module documentation.
pub async fn run(
    redis_url: &str,
    n: u64,
    concurrency: usize,
    latency_ms: u64,
    chunk: u64,
) -> anyhow::Result<serde_json::Value> {
    if !(1..=100).contains(&chunk) {
        bail!("CHUNK must be 1 to 100 (appids per WeChat call)");
    }
    if n < chunk {
        bail!("N must be at least CHUNK ({chunk}): appids are sent {chunk} per call");
    }
    let client = redis::Client::open(redis_url)?;
    let mut info_conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis (set REDIS_URL)")?;
    let sandbox = start_sandbox(latency_ms)?;
    let name = QueueName::parse(&format!("bench-share-{:08x}", rand_u32()))?;
    let queue = Queue::connect(redis_url, &name, QueueSettings::default())
        .await
        .context("connecting to Redis (set REDIS_URL)")?;

    // Enqueue N appids, CHUNK per job, 1,000 jobs per call.
    let batch = BatchId::generate();
    let env = EnvId::parse("bench-env")?;
    let jobs = n / chunk;
    let redis_start = crate::RedisInfo::read(&mut info_conn).await?;
    let started = Instant::now();
    let mut next = 0u64;
    while next < jobs {
        let end = (next + 1_000).min(jobs);
        let new: Vec<NewJob> = (next..end)
            .map(|j| NewJob {
                op: envshare::store::JobOp::Share,
                env: env.clone(),
                appids: (j * chunk..(j + 1) * chunk).map(appid).collect(),
                batch: batch.clone(),
                run_at_ms: None,
            })
            .collect();
        queue
            .enqueue(
                new,
                EnqueueOptions {
                    force: true,
                    seal: end == jobs,
                },
            )
            .await?;
        next = end;
    }
    let enqueue_s = started.elapsed().as_secs_f64();
    let redis_enqueued = crate::RedisInfo::read(&mut info_conn).await?;

    let mut settings = Settings::defaults();
    settings.redis_url = redis_url.to_owned();
    settings.queue = name.clone();
    settings.wechat_base_url = sandbox.url.clone();
    settings.access_token = Some(SecretString::from(TOKEN));
    settings.concurrency = concurrency.max(1);
    settings.http_addr = "127.0.0.1:0".parse()?;
    settings.events_maxlen = n + 1_000;
    // The worker's own defaults, as `envshare-worker` runs; `CONFIRM=0` leaves the
    // confirmation watcher asleep (its first round finds nothing), to show what its rounds cost.
    let confirm = std::env::var("CONFIRM").map_or(true, |v| v != "0");
    let mut options = WorkerOptions::default();
    if !confirm {
        options.confirm_poll = Duration::from_secs(86_400);
    }
    let app = Application::build_with(settings, options)
        .await
        .context("starting the worker")?;
    let handle = app.handle();

    let cpu_before = cpu_seconds("/proc/self/stat");
    let sandbox_cpu_before = cpu_seconds(&sandbox.stat_path);
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    while handle.counters().acked.load(Ordering::Relaxed) < jobs {
        if worker.is_finished() {
            bail!("the worker stopped early");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    // The acks scheduled every accepted appid's confirmation check (part of the cost read
    // below); a shortfall means tracking was not measured.
    let scheduled: u64 = redis::cmd("ZCARD")
        .arg(queue.keys().confirm())
        .query_async(&mut info_conn)
        .await?;
    if scheduled < jobs * chunk {
        bail!(
            "only {scheduled} of the {} appids the sandbox accepted are in the confirmation schedule",
            jobs * chunk
        );
    }
    let redis_worked = crate::RedisInfo::read(&mut info_conn).await?;
    let cpu = cpu_seconds("/proc/self/stat") - cpu_before;
    let sandbox_cpu = cpu_seconds(&sandbox.stat_path) - sandbox_cpu_before;
    let _ = stop.send(());
    worker.await??;

    let _ = sandbox.stop.send(());
    let calls = sandbox
        .thread
        .join()
        .map_err(|_| anyhow::anyhow!("the sandbox thread panicked"))?;
    let stats = queue.stats().await?;
    let events = stats.events;
    let counts = queue.results_counts(&batch).await?;
    let rows: u64 = counts.values().sum();
    let results_bytes = queue.results_memory(&batch).await?;
    clear(&queue).await?;

    let worker_cpu = (cpu - sandbox_cpu).max(0.0);
    let redis = |a, z| crate::RedisInfo::per_job(a, z, jobs);
    Ok(json!({
        "command": "share", "n_appids": jobs * chunk, "jobs": jobs, "chunk": chunk,
        "redis_enqueue": redis(&redis_start, &redis_enqueued),
        "redis_work": redis(&redis_enqueued, &redis_worked),
        "redis_end_to_end": redis(&redis_start, &redis_worked),
        "redis_cpu_us_per_job": (redis_worked.cpu_s() - redis_start.cpu_s()) * 1e6 / jobs as f64,
        "concurrency": concurrency, "latency_ms": latency_ms,
        "confirmation_watcher": confirm, "confirm_scheduled": scheduled,
        "seconds": secs, "enqueue_seconds": enqueue_s,
        "appids_per_s": (jobs * chunk) as f64 / secs,
        "jobs_per_s": jobs as f64 / secs,
        "calls_per_s": calls as f64 / secs,
        "api_calls": calls,
        "events": events,
        "dead": stats.dead,
        "process_cpu_us_per_call": cpu * 1e6 / calls.max(1) as f64,
        "sandbox_cpu_us_per_call": sandbox_cpu * 1e6 / calls.max(1) as f64,
        "worker_cpu_us_per_call": worker_cpu * 1e6 / calls.max(1) as f64,
        "max_rss_mb": max_rss_mb(),
        "result_rows": rows,
        "result_rows_accepted": counts.get(&envshare::store::RowState::Accepted).copied().unwrap_or(0),
        "results_bytes_per_row": results_bytes as f64 / rows.max(1) as f64,
    }))
}

fn rand_u32() -> u32 {
    // Process id and time are enough to keep two runs' queues apart.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}
