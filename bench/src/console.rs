//! `envshare-bench console [APPIDS] [BATCHES]`: how fast the web console of `envshare serve`
//! renders with a large batch and many batches on record.
//!
//! Sets up, on the queue `bench-console` (cleared first): one batch of APPIDS appids (default
//! 100,000) in jobs of 10, every tenth appid refused and the rest accepted with a confirmation
//! URL (claimed and completed through the store, as a worker would), and BATCHES − 1 more
//! batches of one appid (default 1,000 batches in all). Then `envshare::serve::Application`
//! (the code `envshare serve` runs) serves on a thread of its own with a current-thread runtime
//! (one core at most), signs in with the API token, and each page is fetched 30 times in a row
//! over one keep-alive connection.
//!
//! Reported per page: the median, 95th percentile and maximum of the time from request to the
//! last byte of the page, in ms, over loopback (so server time plus a loopback round trip), and
//! the page's size; and the whole CSV download of the big batch once.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use envshare::config::Settings;
use envshare::store::{
    Ack, AppResult, Claim, EnqueueOptions, JobOp, MAX_CLAIM, NewJob, Outcome, Queue, QueueSettings,
    WorkerId,
};
use envshare::{AppId, BatchId, EnvId, QueueName};
use secrecy::SecretString;
use serde_json::json;

use crate::callback::start_serve;

const TOKEN: &str = "bench-console-api-token";
const ROUNDS: usize = 30;

/// Claims and completes every job of the queue, as a worker whose WeChat accepts all but every
/// tenth appid.
async fn complete_all(queue: &Queue) -> anyhow::Result<u64> {
    let worker = WorkerId::generate();
    let mut n = 0;
    loop {
        let leases = match queue.claim(&worker, MAX_CLAIM).await? {
            Claim::Jobs(l) => l,
            Claim::Paused { reason, .. } => bail!("the queue is paused: {reason}"),
        };
        if leases.is_empty() {
            return Ok(n);
        }
        let acks = leases
            .into_iter()
            .map(|lease| {
                let results = lease
                    .job
                    .appids
                    .iter()
                    .enumerate()
                    .map(|(i, appid)| {
                        if i == 9 {
                            AppResult::Rejected {
                                appid: appid.clone(),
                                errcode: Some(-1),
                                errmsg: "the mini program has not authorized the platform"
                                    .to_owned(),
                            }
                        } else {
                            AppResult::Accepted {
                                appid: appid.clone(),
                                confirm_url: Some(format!(
                                    "https://open.weixin.qq.com/wxaopen/confirm?env={}&appid={appid}",
                                    lease.job.env
                                )),
                            }
                        }
                    })
                    .collect();
                Ack::new(lease, Outcome::Done(results))
            })
            .collect::<Vec<_>>();
        n += acks.len() as u64;
        queue.complete(acks).await?;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) async fn run(
    redis_url: &str,
    appids: u64,
    batches: u64,
) -> anyhow::Result<serde_json::Value> {
    let name = QueueName::parse("bench-console")?;
    let settings_q = QueueSettings {
        events_maxlen: 2_000_000,
        ..QueueSettings::default()
    };
    let queue = Queue::connect(redis_url, &name, settings_q)
        .await
        .context("connecting to Redis (set REDIS_URL)")?;
    queue.delete_all().await?;

    let started = Instant::now();
    let env = EnvId::parse("prod-bench")?;
    let options = EnqueueOptions {
        force: true,
        seal: true,
    };
    for i in 1..batches {
        let job = NewJob {
            op: JobOp::Share,
            env: env.clone(),
            appids: vec![AppId::parse(&format!("wx{:016x}", 0xb000_0000_u64 + i))?],
            batch: BatchId::generate(),
            run_at_ms: None,
        };
        queue.enqueue(vec![job], options).await?;
    }
    let big = BatchId::generate();
    let jobs: Vec<NewJob> = (0..appids)
        .collect::<Vec<_>>()
        .chunks(10)
        .map(|c| -> anyhow::Result<NewJob> {
            Ok(NewJob {
                op: JobOp::Share,
                env: env.clone(),
                appids: c
                    .iter()
                    .map(|i| AppId::parse(&format!("wx{i:016x}")))
                    .collect::<Result<_, _>>()?,
                batch: big.clone(),
                run_at_ms: None,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    queue.enqueue(jobs, options).await?;
    let completed = complete_all(&queue).await?;
    let setup_s = started.elapsed().as_secs_f64();
    eprintln!(
        "set up {batches} batches ({appids} appids in the big one, {completed} jobs) in {setup_s:.1} s"
    );

    let mut settings = Settings::defaults();
    settings.redis_url = redis_url.to_owned();
    settings.queue = name;
    settings.api_token = Some(SecretString::from(TOKEN));
    settings.serve_addr = "127.0.0.1:0".parse()?;
    let serve = start_serve(settings)?;
    let base = format!("http://{}", serve.addr);

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let login = client
        .post(format!("{base}/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .context("no session cookie")?
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();

    let pages = [
        ("overview", "/".to_owned()),
        ("batches, first page", "/batches".to_owned()),
        (
            "batches, last page",
            format!("/batches?offset={}", batches.saturating_sub(50)),
        ),
        ("big batch, first page", format!("/batches/{big}")),
        (
            "big batch, middle page",
            format!("/batches/{big}?cursor={}", appids / 2),
        ),
        (
            "big batch, failed only",
            format!("/batches/{big}?state=failed"),
        ),
        (
            "big batch, failed only, middle",
            format!("/batches/{big}?state=failed&cursor={}", appids / 2),
        ),
        (
            "big batch, bound only (none)",
            format!("/batches/{big}?state=bound"),
        ),
        ("dead jobs", "/dead".to_owned()),
    ];
    let mut out = Vec::new();
    for (label, path) in &pages {
        let mut times = Vec::with_capacity(ROUNDS);
        let mut bytes = 0;
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let res = client
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            if !res.status().is_success() {
                bail!("{path}: {}", res.status());
            }
            bytes = res.bytes().await?.len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let (p50, p95, max) = (
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            times[times.len() - 1],
        );
        eprintln!(
            "{label:<32} p50 {p50:7.1} ms  p95 {p95:7.1} ms  max {max:7.1} ms  {bytes} bytes"
        );
        out.push(
            json!({"page": label, "path": path, "p50_ms": p50, "p95_ms": p95,
            "max_ms": max, "bytes": bytes}),
        );
    }
    let t = Instant::now();
    let csv = client
        .get(format!("{base}/batches/{big}/results.csv"))
        .header("cookie", &cookie)
        .send()
        .await?
        .bytes()
        .await?;
    let csv_s = t.elapsed().as_secs_f64();
    let rows = csv
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        .saturating_sub(1);
    eprintln!(
        "CSV download of the big batch: {rows} rows, {} bytes in {csv_s:.2} s",
        csv.len()
    );
    let _ = serve.stop.send(());
    let _ = tokio::task::spawn_blocking(move || serve.thread.join()).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    queue.delete_all().await?;
    Ok(json!({
        "appids": appids,
        "batches": batches,
        "setup_s": setup_s,
        "pages": out,
        "csv_rows": rows,
        "csv_bytes": csv.len(),
        "csv_s": csv_s,
    }))
}
