//! `envshare-bench api N [ROUNDS]`: `POST /api/v1/batches` of N pairs against `envshare serve`.
//!
//! `envshare::serve::Application` (the code `envshare serve` runs) runs on a thread of its own
//! with a current-thread runtime, with an API token set. Each round clears the queue, then
//! posts one body of N distinct pairs (one env, chunk size 10: N / 10 jobs) and times the whole
//! request on the client: the body sent, parsed and checked pair by pair, the import (validate,
//! plan, enqueue in pipelined slices with the dedupe window, seal) and the 201 with the summary.
//! The body is serialized before the clock starts.
//!
//! Reported: each round's time, the median and the best, and the serve runtime thread's CPU time
//! per request (from its `/proc` entry; the import's validating pass runs on tokio's blocking
//! pool and is not in it).

use std::time::Instant;

use anyhow::{Context, bail};
use envshare::QueueName;
use envshare::config::Settings;
use envshare::store::{Queue, QueueSettings};
use secrecy::SecretString;
use serde_json::json;

use crate::callback::start_serve;
use crate::share::cpu_seconds;

const TOKEN: &str = "bench-api-token";

pub(crate) async fn run(redis_url: &str, n: u64, rounds: u64) -> anyhow::Result<serde_json::Value> {
    let queue_name = QueueName::parse("bench-api")?;
    let queue = Queue::connect(redis_url, &queue_name, QueueSettings::default())
        .await
        .context("connecting to Redis (set REDIS_URL)")?;
    queue.delete_all().await?;

    let mut settings = Settings::defaults();
    settings.redis_url = redis_url.to_owned();
    settings.queue = queue_name;
    settings.api_token = Some(SecretString::from(TOKEN));
    settings.serve_addr = "127.0.0.1:0".parse()?;
    settings.log = "warn".into();
    let serve = start_serve(settings)?;
    let url = format!("http://{}/api/v1/batches", serve.addr);
    let http = reqwest::Client::new();

    let mut times_ms = Vec::new();
    let mut cpu_s = Vec::new();
    for round in 0..rounds.max(1) {
        queue.delete_all().await?;
        let pairs: Vec<serde_json::Value> = (0..n)
            .map(|i| json!({"env": "prod-bench", "appid": format!("wx{:016x}", (round << 32) + i)}))
            .collect();
        let body = serde_json::to_vec(&json!({
            "batch": format!("bench-api-{round}"),
            "chunk_size": 10,
            "pairs": pairs,
        }))?;
        let cpu0 = cpu_seconds(&serve.stat_path);
        let started = Instant::now();
        let r = http
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if status != reqwest::StatusCode::CREATED {
            bail!("POST /api/v1/batches answered {status}: {text}");
        }
        let summary: serde_json::Value = serde_json::from_str(&text)?;
        if summary["appids"].as_u64() != Some(n) {
            bail!("not every pair was enqueued: {summary}");
        }
        cpu_s.push(cpu_seconds(&serve.stat_path) - cpu0);
        times_ms.push(ms);
    }
    let _ = serve.stop.send(());
    let _ = serve.thread.join();
    queue.delete_all().await?;

    let mut sorted = times_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let mut cpu_sorted = cpu_s.clone();
    cpu_sorted.sort_by(f64::total_cmp);
    let round2 = |v: f64| (v * 10.0).round() / 10.0;
    Ok(json!({
        "command": "api", "version": env!("CARGO_PKG_VERSION"), "n": n, "rounds": times_ms.len(),
        "jobs": n.div_ceil(10),
        "times_ms": times_ms.iter().map(|t| round2(*t)).collect::<Vec<_>>(),
        "median_ms": round2(median), "best_ms": round2(sorted[0]),
        "serve_cpu_ms_median": round2(cpu_sorted[cpu_sorted.len() / 2] * 1000.0),
    }))
}
