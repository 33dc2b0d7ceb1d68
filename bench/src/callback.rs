//! `envshare-bench callback N CONCURRENCY`: the WeChat callback receiver of `envshare serve`.
//!
//! `envshare::serve::Application` (the code `envshare serve` runs) runs on a thread of its own with
//! a current-thread runtime: one core at most. N verify-ticket pushes are prepared first
//! (encrypted and signed as WeChat's, each with its own nonce and a newer `CreateTime`, so every
//! one is stored: signature check, decryption, XML, the Redis script with the nonce, the pause
//! check), then posted over keep-alive connections, CONCURRENCY at a time, from the main runtime.
//! Every answer must be `200 success`.
//!
//! Reported: pushes per second (wall clock), the receiver thread's CPU time per push (read from
//! its `/proc` entry, so the load generator's work is left out), and latency percentiles. Redis
//! runs in its own process and is not counted.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use envshare::QueueName;
use envshare::config::Settings;
use envshare::sandbox::{CallbackPush, SandboxConfig};
use envshare::serve::Application;
use envshare::store::{Queue, QueueSettings};
use envshare::wechat::callback::{envelope_xml, ticket_xml};
use envshare::wechat::crypt::MsgCrypt;
use futures::StreamExt;
use secrecy::SecretString;
use serde_json::json;

use crate::share::cpu_seconds;

/// The receiver on its own thread.
pub(crate) struct ServeThread {
    pub(crate) addr: std::net::SocketAddr,
    stat_path: String,
    pub(crate) stop: tokio::sync::oneshot::Sender<()>,
    pub(crate) thread: std::thread::JoinHandle<()>,
}

pub(crate) fn start_serve(settings: Settings) -> anyhow::Result<ServeThread> {
    let (ready_tx, ready_rx) =
        std::sync::mpsc::channel::<anyhow::Result<(std::net::SocketAddr, String)>>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("serve".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let app = match Application::build(settings).await {
                    Ok(app) => app,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                let me = std::fs::read_link("/proc/thread-self")
                    .map(|p| format!("/proc/{}/stat", p.display()))
                    .unwrap_or_default();
                let _ = ready_tx.send(Ok((app.addr(), me)));
                let _ = app
                    .run_until_stopped(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        })
        .context("starting the serve thread")?;
    let (addr, stat_path) = ready_rx
        .recv()
        .context("the serve thread stopped before it started")??;
    Ok(ServeThread {
        addr,
        stat_path,
        stop,
        thread,
    })
}

/// One prepared push: its query and body.
struct Push {
    query: String,
    body: String,
}

pub(crate) async fn run(
    redis_url: &str,
    n: u64,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let queue_name = QueueName::parse("bench-callback")?;
    let queue = Queue::connect(redis_url, &queue_name, QueueSettings::default())
        .await
        .context("connecting to Redis (set REDIS_URL)")?;
    queue.delete_all().await?;

    let appid = SandboxConfig::COMPONENT_APPID;
    let mut settings = Settings::defaults();
    settings.redis_url = redis_url.to_owned();
    settings.queue = queue_name;
    settings.component_appid = Some(envshare::AppId::parse(appid)?);
    settings.component_appsecret = Some(SecretString::from(SandboxConfig::COMPONENT_SECRET));
    settings.callback_token = Some(SecretString::from(CallbackPush::TOKEN));
    settings.callback_aes_key = Some(SecretString::from(CallbackPush::AES_KEY));
    settings.serve_addr = "127.0.0.1:0".parse()?;
    settings.log = "warn".into();

    // Prepared before the clock starts: encrypting and signing is WeChat's work, not ours.
    let crypt = MsgCrypt::new(CallbackPush::TOKEN.into(), CallbackPush::AES_KEY, appid)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let pushes: Vec<Push> = (0..n)
        .map(|i| {
            let xml = ticket_xml(
                appid,
                now - n + i,
                &format!("ticket@@@bench-{i:08}-{:032x}", i * 7919),
            );
            let encrypt = crypt.encrypt(xml.as_bytes());
            let ts = now.to_string();
            let nonce = format!("{}", 1_000_000_000 + i);
            let sig = crypt.signature(&ts, &nonce, &encrypt);
            Push {
                query: format!("timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={sig}"),
                body: envelope_xml(appid, &encrypt),
            }
        })
        .collect();

    let serve = start_serve(settings)?;
    let url = format!("http://{}/wechat/callback", serve.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let cpu_before = cpu_seconds(&serve.stat_path);
    let started = Instant::now();
    let results: Vec<anyhow::Result<Duration>> = futures::stream::iter(pushes)
        .map(|p| {
            let client = client.clone();
            let url = format!("{url}?{}", p.query);
            async move {
                let t = Instant::now();
                let answer = client.post(url).body(p.body).send().await?;
                let status = answer.status();
                let text = answer.text().await?;
                if !status.is_success() || text != "success" {
                    bail!("the receiver answered {status}: {text}");
                }
                Ok(t.elapsed())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&serve.stat_path) - cpu_before;
    let _ = serve.stop.send(());
    let _ = serve.thread.join();

    let mut latencies = Vec::with_capacity(results.len());
    for r in results {
        latencies.push(r?);
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    // Pushes race each other, so a few tickets arrive after a newer one and are kept out (still
    // a full push: checks, decryption and the script); every push must be one or the other.
    let counters = queue.stats().await?.counters;
    let count = |k: &str| counters.get(k).copied().unwrap_or(0);
    let (stored, older) = (count("callback_tickets"), count("callback_stale_tickets"));
    if stored + older != n as i64 {
        bail!("{stored} tickets stored and {older} kept out as older, of {n} pushes");
    }
    queue.delete_all().await?;
    Ok(json!({
        "bench": "callback",
        "pushes": n,
        "concurrency": concurrency,
        "elapsed_s": elapsed,
        "callbacks_per_sec": n as f64 / elapsed,
        "receiver_cpu_us_per_push": cpu * 1e6 / n as f64,
        "receiver_cpu_share": cpu / elapsed,
        "tickets_stored": stored,
        "tickets_older": older,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }))
}
