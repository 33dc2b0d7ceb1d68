//! `envshare-bench webhooks N [CONCURRENCY] [ENDPOINTS]`: webhook deliveries per second from one
//! deliverer (the code every `envshare-worker` runs with `ENVSHARE_WEBHOOK_URLS` set) to local
//! endpoints that answer 200 at once, and Redis CPU per delivery.
//!
//! The deliverer's group is created first, then N share.accepted-sized events are appended to
//! the stream in pipelines (not timed, not counted in Redis CPU), Redis's counters are reset,
//! and the run is timed from the deliverer's start until every event is delivered to every
//! endpoint. The receivers run on a thread of their own (a current-thread runtime).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use envshare::worker::{Deliverer, RetryPolicy, WebhookCounters, WebhookSettings};
use secrecy::SecretString;
use serde_json::json;

use crate::{Bench, max_rss_mb};

/// Starts `n` receivers answering 200 on one thread; returns their URLs and the request count.
fn start_receivers(n: usize) -> anyhow::Result<(Vec<String>, Arc<AtomicU64>)> {
    let hits = Arc::new(AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<Vec<String>>>();
    let counter = hits.clone();
    std::thread::Builder::new()
        .name("receivers".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let mut urls = Vec::new();
                for i in 0..n {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let addr = listener.local_addr().expect("bound");
                    urls.push(format!("http://{addr}/hook/{i}"));
                    let counter = counter.clone();
                    let app = axum::Router::new().route(
                        "/hook/{i}",
                        axum::routing::post(move |_body: axum::body::Bytes| {
                            let counter = counter.clone();
                            async move {
                                counter.fetch_add(1, Ordering::Relaxed);
                                axum::http::StatusCode::OK
                            }
                        }),
                    );
                    tokio::spawn(async move {
                        let _ = axum::serve(listener, app).await;
                    });
                }
                let _ = tx.send(Ok(urls));
                std::future::pending::<()>().await;
            });
        })?;
    let urls = rx.recv().context("the receivers thread died")??;
    Ok((urls, hits))
}

/// An event of the size of a real share.accepted.
fn event(i: u64) -> String {
    format!(
        "{{\"v\":1,\"id\":\"01BENCHWEBHOOK0000000000.{i}.wx{i:016x}.accepted\",\
         \"type\":\"share.accepted\",\"at\":\"2026-12-03T10:00:00Z\",\
         \"job_id\":\"01BENCHWEBHOOK0000000000{i:08}\",\"batch_id\":\"b-bench\",\
         \"env\":\"bench-env\",\"appid\":\"wx{i:016x}\",\
         \"confirm_url\":\"https://open.weixin.qq.com/confirm?ticket=bench{i}\",\"attempts\":1}}"
    )
}

pub(crate) async fn run(
    n: u64,
    concurrency: usize,
    endpoints: usize,
) -> anyhow::Result<serde_json::Value> {
    if n == 0 || endpoints == 0 {
        bail!("N and ENDPOINTS must be at least 1");
    }
    let b = Bench::connect().await?;
    b.clear().await?;
    let (urls, hits) = start_receivers(endpoints)?;
    let settings = WebhookSettings {
        urls: urls
            .iter()
            .map(|u| reqwest::Url::parse(u))
            .collect::<Result<_, _>>()?,
        secrets: vec![SecretString::from("bench-webhook-secret")],
        max_age: Duration::from_secs(3600),
        max_attempts: 0,
        backoff: RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(100),
            max_attempts: u32::MAX,
        },
        timeout: Duration::from_secs(10),
        concurrency,
        lease: Duration::from_secs(15),
        poll: Duration::from_millis(20),
        claim_idle: Duration::from_secs(10),
    };
    let counters = WebhookCounters::default();
    let deliverer = Deliverer::new(b.queue.clone(), settings, "bench-1", counters.clone())?;
    deliverer.prepare().await?;

    // The events, before the clock starts.
    let stream = b.queue.keys().events();
    let mut conn = b.redis.clone();
    let mut i = 0;
    while i < n {
        let end = (i + 1000).min(n);
        let mut pipe = redis::pipe();
        for k in i..end {
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("type")
                .arg("share.accepted")
                .arg("event")
                .arg(event(k))
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await?;
        i = end;
    }

    b.reset_stats().await?;
    let before = b.info().await?;
    let started = Instant::now();
    let handle = deliverer.start();
    let want = n * endpoints as u64;
    let delivered = || -> u64 {
        urls.iter()
            .map(|u| {
                let id = envshare::webhook::endpoint_id(u);
                counters.delivered.get_or_create(&[("endpoint", id)]).get()
            })
            .sum()
    };
    let deadline = started + Duration::from_secs(600);
    while delivered() < want {
        if Instant::now() > deadline {
            bail!("only {} of {want} deliveries after 600 s", delivered());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let after = b.info().await?;
    handle.shutdown().await;
    let rate = want as f64 / elapsed.as_secs_f64();
    Ok(json!({
        "mode": "webhooks",
        "events": n,
        "endpoints": endpoints,
        "concurrency_per_endpoint": concurrency,
        "deliveries": want,
        "requests": hits.load(Ordering::Relaxed),
        "seconds": elapsed.as_secs_f64(),
        "deliveries_per_s": rate,
        "redis_cpu_us_per_delivery": (after.cpu_s - before.cpu_s) * 1e6 / want as f64,
        "redis_cmds_per_delivery": (after.calls - before.calls) as f64 / want as f64,
        "script_calls_per_delivery": (after.script_calls - before.script_calls) as f64 / want as f64,
        "max_rss_mb": max_rss_mb(),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    }))
}
