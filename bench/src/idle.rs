//! What an idle fleet costs Redis, and how fast an idle worker notices new work.
//!
//! - `idle SECONDS WORKERS`: Redis CPU over SECONDS with no worker (Redis's own timers), then
//!   with WORKERS worker services (`envshare::worker::Application`, what `envshare-worker` runs:
//!   the fetcher, heartbeats, confirmation tracking and the HTTP endpoint) on an empty queue. The
//!   difference per worker is the cost of an idle worker, as µs of Redis CPU per second and as a
//!   share of one core.
//! - `wake SAMPLES`: one worker on an empty queue; a job is enqueued at a random moment, and the
//!   time from just before the enqueue call to its handler starting is recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apalis_core::worker::builder::WorkerBuilder;
use envshare::config::Settings;
use envshare::store::{EnqueueOptions, JobOp, NewJob, Queue, QueueSettings, ShareJob, WorkerId};
use envshare::worker::{Application, BackendSettings, JobOutcome, RedisBackend, WorkerOptions};
use envshare::{BatchId, EnvId, QueueName};
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::mpsc;

use crate::{RedisInfo, accept_all, appid, max_rss_mb};

/// A queue name of its own for this run.
fn private_queue(kind: &str) -> anyhow::Result<QueueName> {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    Ok(QueueName::parse(&format!(
        "bench-{kind}-{:08x}",
        t ^ std::process::id()
    ))?)
}

/// Redis CPU seconds used while `span` passes.
async fn redis_cpu_over(
    conn: &mut redis::aio::MultiplexedConnection,
    span: Duration,
) -> anyhow::Result<f64> {
    let a = RedisInfo::read(conn).await?;
    tokio::time::sleep(span).await;
    let z = RedisInfo::read(conn).await?;
    Ok(z.cpu_s() - a.cpu_s())
}

/// See the module documentation.
pub async fn idle(url: &str, seconds: u64, workers: usize) -> anyhow::Result<serde_json::Value> {
    if workers == 0 || seconds == 0 {
        bail!("SECONDS and WORKERS must be at least 1");
    }
    let span = Duration::from_secs(seconds);
    let client = redis::Client::open(url)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis (set REDIS_URL)")?;
    let name = private_queue("idle")?;
    let baseline = redis_cpu_over(&mut conn, span).await?;

    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let mut settings = Settings::defaults();
        settings.redis_url = url.to_owned();
        settings.queue = name.clone();
        // Never called: the queue stays empty.
        settings.wechat_base_url = "http://127.0.0.1:9".to_owned();
        settings.access_token = Some(SecretString::from("bench-idle-token"));
        settings.http_addr = "127.0.0.1:0".parse()?;
        let app = Application::build_with(settings, WorkerOptions::default())
            .await
            .context("starting a worker")?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        })));
    }
    // Let start-up (script loading, group creation, first claims) pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = redis_cpu_over(&mut conn, span).await?;
    for stop in stops {
        let _ = stop.send(());
    }
    for t in tasks {
        t.await??;
    }
    let queue = Queue::connect(url, &name, QueueSettings::default()).await?;
    crate::share::clear(&queue).await?;

    let per_worker_us_per_s = ((busy - baseline).max(0.0) * 1e6) / seconds as f64 / workers as f64;
    Ok(json!({
        "command": "idle", "seconds": seconds, "workers": workers,
        "redis_cpu_us_per_s_no_workers": baseline * 1e6 / seconds as f64,
        "redis_cpu_us_per_s_with_workers": busy * 1e6 / seconds as f64,
        "redis_cpu_us_per_s_per_worker": per_worker_us_per_s,
        "redis_core_pct_per_worker": per_worker_us_per_s / 1e4,
        "max_rss_mb": max_rss_mb(),
    }))
}

/// See the module documentation.
pub async fn wake(url: &str, samples: usize) -> anyhow::Result<serde_json::Value> {
    if samples == 0 {
        bail!("SAMPLES must be at least 1");
    }
    let name = private_queue("wake")?;
    let queue = Queue::connect(url, &name, QueueSettings::default())
        .await
        .context("connecting to Redis (set REDIS_URL)")?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let tx = Arc::new(tx);
    let backend = RedisBackend::new(
        queue.clone(),
        WorkerId::generate(),
        BackendSettings::default(),
    );
    let worker = WorkerBuilder::new("envshare-bench-wake")
        .backend(backend)
        .build(move |job: ShareJob| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Instant::now());
                JobOutcome::Done(accept_all(&job))
            }
        });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        worker
            .run_until(async move {
                let _ = stopped.await;
                Ok::<(), std::io::Error>(())
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let env = EnvId::parse("bench")?;
    let batch = BatchId::generate();
    let mut waits = Vec::with_capacity(samples);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    for k in 0..samples {
        // A random moment, so the enqueue is not in step with any poll.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(20 + seed % 80)).await;
        let t0 = Instant::now();
        queue
            .enqueue(
                vec![NewJob {
                    op: JobOp::Share,
                    env: env.clone(),
                    appids: vec![appid(k as u64)],
                    batch: batch.clone(),
                    run_at_ms: None,
                }],
                EnqueueOptions {
                    force: true,
                    seal: false,
                },
            )
            .await?;
        let started = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .context("a job enqueued into an idle queue did not start within 10 s")?
            .context("the worker stopped")?;
        waits.push(started.saturating_duration_since(t0).as_secs_f64() * 1e3);
    }
    let _ = stop.send(());
    run.await?.context("running the worker")?;
    crate::share::clear(&queue).await?;
    waits.sort_by(f64::total_cmp);
    let at = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize];
    Ok(json!({
        "command": "wake", "samples": samples,
        "wake_ms_p50": at(0.5), "wake_ms_p99": at(0.99), "wake_ms_max": waits[waits.len() - 1],
        "max_rss_mb": max_rss_mb(),
    }))
}
