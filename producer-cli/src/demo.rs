//! `envshare demo`: the whole pipeline on this machine, in one process.
//!
//! 1. Redis: the configured one (`ENVSHARE_REDIS_URL`, default `redis://127.0.0.1:6379`) if it
//!    answers, with a queue of the demo's own (`demo-<hex>`) whose keys are deleted afterwards;
//!    else a private `redis-server` from `PATH`, stopped afterwards; else exit 1 saying how to
//!    get Redis.
//! 2. The sandbox WeChat API, in-process, with the demo's faults (latency 20–200 ms, some -1
//!    and 502, appids ending in `bad` rejected) and a token that expires part-way through.
//! 3. `envshare serve` ([`envshare::serve::Application`]) with the WeChat callback: the sandbox
//!    pushes an encrypted verify ticket to it at once (and every 10 minutes, as WeChat does).
//! 4. The real worker service ([`Application`]) in component token mode: it fetches the token with
//!    the pushed ticket, so the token fetch and the refresh after the expiry are real calls.
//! 5. A generated CSV of `--pairs` pairs in three envs, imported through `envshare::import::run`
//!    as `envshare import` imports (validate, plan, enqueue, seal).
//! 6. Progress until `batch.completed`, then a summary read from the batch, the queue's
//!    counters, the sandbox's counters and the events stream.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use envshare::config::{Settings, redact_url};
use envshare::events::{Event, EventKind};
use envshare::import::{self, Format, NoProgress, Options, RunError, Source};
use envshare::sandbox::{CallbackPush, LocalRedis, LocalRedisError, Sandbox, SandboxConfig};
use envshare::store::conn::{self, ConnectOptions};
use envshare::store::read_all;
use envshare::store::{BatchProgress, Queue, QueueSettings};
use envshare::wechat::Endpoint;
use envshare::worker::{Application, WorkerOptions};
use envshare::{AppId, BatchId, QueueName};
use secrecy::SecretString;

use crate::cli::DemoArgs;
use crate::progress::Progress;

/// The demo's envs; pairs are spread over them in turn.
const ENVS: [&str; 3] = ["shop-prod-7f3a", "shop-staging-2c91", "shop-test-05be"];
/// Appids per job, the production default.
const CHUNK_SIZE: usize = 10;
/// Jobs the worker runs at once.
const CONCURRENCY: usize = 16;
/// The first retry delay; production's is 1 s. Short, so retries end within seconds.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// The longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The demo gives up after this long.
const DEADLINE: Duration = Duration::from_secs(60);
/// How long the configured Redis may take to answer before a private one is started.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the batch's progress is read.
const POLL: Duration = Duration::from_millis(100);
/// How often the sandbox pushes a new verify ticket (WeChat's period); the first push is at once.
const TICKET_PERIOD: Duration = Duration::from_secs(600);
/// How long the demo waits for the first pushed ticket.
const TICKET_WAIT: Duration = Duration::from_secs(10);
/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

/// The Redis the demo runs on.
enum DemoRedis {
    /// A server that was already running: only the demo queue's keys are touched.
    Existing(String),
    /// A private `redis-server`, stopped when dropped.
    Private(LocalRedis),
}

impl DemoRedis {
    fn url(&self) -> &str {
        match self {
            DemoRedis::Existing(url) => url,
            DemoRedis::Private(r) => r.url(),
        }
    }
}

/// `envshare demo`.
pub async fn run(settings: &Settings, args: DemoArgs) -> anyhow::Result<()> {
    let redis = find_redis(&settings.redis_url).await?;
    let queue_name = QueueName::parse(&format!("demo-{:08x}", seed() as u32))
        .context("naming the demo queue failed")?;
    let queue = Queue::connect(redis.url(), &queue_name, QueueSettings::default())
        .await
        .with_context(|| format!("connecting to Redis at {} failed", redact_url(redis.url())))?;
    match &redis {
        DemoRedis::Existing(url) => note(format!(
            "Redis: {} (queue {queue_name}; its keys are deleted at the end)",
            redact_url(url)
        )),
        DemoRedis::Private(r) => note(format!(
            "Redis: a private redis-server on 127.0.0.1:{} (stopped at the end)",
            r.port()
        )),
    }

    // Ctrl-C ends the run but not the cleanup: the queue's keys are still deleted.
    let result = tokio::select! {
        r = pipeline(&redis, &queue, &queue_name, args.pairs as usize) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let DemoRedis::Existing(_) = redis
        && let Err(e) = queue.delete_all().await
    {
        eprintln!(
            "warning: deleting the demo queue's keys ({}*) failed: {e:#}",
            queue.keys().prefix()
        );
    }
    drop(redis);
    result
}

/// The configured Redis if it answers, else a private one, else an error saying how to get one.
async fn find_redis(url: &str) -> anyhow::Result<DemoRedis> {
    let why = match tokio::time::timeout(PROBE_TIMEOUT, ping(url)).await {
        Ok(Ok(())) => return Ok(DemoRedis::Existing(url.to_owned())),
        Ok(Err(e)) => format!("{e}"),
        Err(_) => format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
    };
    let shown = redact_url(url);
    if LocalRedis::find().is_some() {
        note(format!(
            "no Redis answers at {shown} ({why}); starting a private redis-server"
        ));
    }
    match tokio::task::spawn_blocking(LocalRedis::start).await {
        Ok(Ok(local)) => Ok(DemoRedis::Private(local)),
        Ok(Err(LocalRedisError::NotInstalled)) => bail!(
            "the demo needs Redis: none answers at {shown} ({why}) and redis-server is not on \
             PATH. Either install Redis so redis-server is on PATH (Debian/Ubuntu: `sudo apt-get \
             install redis-server`; macOS: `brew install redis`), or start one (e.g. `docker run \
             -d -p 6379:6379 redis:7-alpine`) and point ENVSHARE_REDIS_URL at it \
             (e.g. ENVSHARE_REDIS_URL=redis://127.0.0.1:6379), then run the demo again"
        ),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!(
            "the demo needs Redis: none answers at {shown} ({why}); start one and point \
             ENVSHARE_REDIS_URL at it, or fix the redis-server on PATH"
        ))),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

async fn ping(url: &str) -> redis::RedisResult<()> {
    let options = ConnectOptions {
        connection_timeout: PROBE_TIMEOUT,
        response_timeout: Some(PROBE_TIMEOUT),
        retries: 0,
    };
    conn::connect_and_ping(url, false, options).await.map(drop)
}

/// Aborts a spawned task when dropped (on Ctrl-C or an early error).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn pipeline(
    redis: &DemoRedis,
    queue: &Queue,
    queue_name: &QueueName,
    pairs: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let progress = Progress::new(false);

    // The input file, generated first: its job count sets when the token expires.
    let dir = tempfile::Builder::new()
        .prefix("envshare-demo-")
        .tempdir()
        .context("creating a temporary directory failed (set TMPDIR to a writable directory)")?;
    let path = dir.path().join("pairs.csv");
    let input = generate(pairs, seed());
    std::fs::write(&path, &input.csv)
        .with_context(|| format!("writing {} failed", path.display()))?;

    // A token that expires after about two thirds of the share calls: one refresh mid-run.
    let token_calls = (input.jobs * 2 / 3).max(1);

    // Component token mode, as in production: `envshare serve` receives the verify ticket the
    // sandbox pushes to its callback, as WeChat pushes it to the platform's authorization event
    // URL, and the worker fetches the token with it.
    let serve = envshare::serve::Application::build(serve_settings(redis.url(), queue_name)?)
        .await
        .context("starting envshare serve failed")?;
    let serve_addr = serve.addr();
    let (stop_serve, serve_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut serving = AbortOnDrop(tokio::spawn(serve.run_until_stopped(async move {
        let _ = serve_stopped.await;
    })));
    let sandbox = Arc::new(
        Sandbox::start(SandboxConfig {
            token_max_calls: Some(token_calls),
            callback: Some(CallbackPush::new(
                format!("http://{serve_addr}/wechat/callback"),
                Some(TICKET_PERIOD),
            )),
            ..SandboxConfig::demo()
        })
        .await
        .context("starting the sandbox WeChat API failed")?,
    );
    note(format!(
        "sandbox WeChat API: {} (latency 20–200 ms, ~5% errcode -1 and ~1% HTTP 502 on share \
         calls, the token expires after {token_calls} calls, appids ending in \"bad\" rejected)",
        sandbox.url()
    ));

    wait_for_ticket(queue).await?;
    note(format!(
        "envshare serve: http://{serve_addr} (the WeChat callback: the sandbox pushed an \
         encrypted verify ticket to /wechat/callback, as WeChat does every 10 minutes)"
    ));

    let worker_settings = worker_settings(redis.url(), queue_name, sandbox.url())?;
    let app = Application::build_with(
        worker_settings,
        WorkerOptions {
            token_retry: Duration::from_millis(200),
            ..WorkerOptions::default()
        },
    )
    .await
    .context("starting the worker failed")?;
    note(format!(
        "worker: concurrency {CONCURRENCY}, component token mode, backoff from {} ms, metrics \
         on http://{}/metrics",
        BACKOFF_BASE.as_millis(),
        app.http_addr()
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut worker = AbortOnDrop(tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    })));

    // The import, through the same library flow as `envshare import`.
    let batch = BatchId::generate();
    let import_started = Instant::now();
    let source = Source::file(
        path.display().to_string(),
        File::open(&path)?,
        input.csv.len() as u64,
    )
    .with_format(Some(Format::Csv));
    let options = Options::new(batch.clone(), CHUNK_SIZE);
    let imported =
        match import::run(Some(queue), source, &options, None, Arc::new(NoProgress)).await {
            Ok(summary) => summary,
            Err(RunError::Invalid(summary)) => {
                bail!("the generated file has invalid rows: {:?}", summary.errors)
            }
            Err(RunError::Import(e)) => {
                return Err(anyhow::Error::new(e).context("validating the generated file failed"));
            }
            Err(e) => return Err(e.into()),
        };
    let import_secs = import_started.elapsed().as_secs_f64();
    note(format!(
        "imported {} rows of a generated pairs.csv ({} envs): {} jobs of up to {CHUNK_SIZE} \
         appids in batch {batch}, in {:.0} ms",
        imported.rows,
        ENVS.len().min(pairs),
        imported.jobs,
        import_secs * 1000.0
    ));
    debug_assert_eq!(imported.jobs, imported.planned_jobs);

    let done = follow(queue, &batch, &progress, &mut worker.0).await?;
    let sharing_secs = started.elapsed().as_secs_f64() - import_secs;

    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(10), &mut worker.0).await {
        Ok(Ok(Ok(_report))) => {}
        Ok(Ok(Err(e))) => return Err(anyhow::Error::new(e).context("the worker failed")),
        Ok(Err(join)) => bail!("the worker task failed: {join}"),
        Err(_) => bail!("the worker did not stop within 10 s"),
    }

    let _ = stop_serve.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut serving.0).await;

    let stats = queue.stats().await?;
    let events = read_all(&mut queue.connection(), queue.keys())
        .await
        .context("reading the events failed")?;
    let summary = Summary {
        done,
        retries: stats.counters.get("retries").copied().unwrap_or(0),
        token_fetches: sandbox.token_fetches(),
        share_calls: sandbox.calls(Endpoint::ShareEnv),
        import_secs,
        sharing_secs,
        elapsed_secs: started.elapsed().as_secs_f64(),
        events: events.into_iter().map(|e| e.event).collect(),
    };
    print!("{}", summary.render());
    std::io::stdout().flush().ok();
    if let Ok(s) = Arc::try_unwrap(sandbox) {
        let _ = s.shutdown().await;
    }
    Ok(())
}

/// `envshare serve` for the demo: the callback with the sandbox's Token and EncodingAESKey, on a
/// free loopback port.
fn serve_settings(redis_url: &str, queue: &QueueName) -> anyhow::Result<Settings> {
    let mut s = Settings::defaults();
    s.redis_url = redis_url.to_owned();
    s.queue = queue.clone();
    s.component_appid = Some(AppId::parse(SandboxConfig::COMPONENT_APPID)?);
    s.component_appsecret = Some(SecretString::from(SandboxConfig::COMPONENT_SECRET));
    s.callback_token = Some(SecretString::from(CallbackPush::TOKEN));
    s.callback_aes_key = Some(SecretString::from(CallbackPush::AES_KEY));
    s.serve_addr = "127.0.0.1:0".parse()?;
    Ok(s)
}

/// Waits until the verify ticket the sandbox pushes at its start is stored.
async fn wait_for_ticket(queue: &Queue) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let meta = queue.token_store().meta().await?;
        if meta.ticket_stored {
            return Ok(());
        }
        if started.elapsed() >= TICKET_WAIT {
            bail!(
                "no verify ticket reached envshare serve's callback within {} s (see the log \
                 lines above)",
                TICKET_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn worker_settings(redis_url: &str, queue: &QueueName, wechat: &str) -> anyhow::Result<Settings> {
    let mut s = Settings::defaults();
    s.redis_url = redis_url.to_owned();
    s.queue = queue.clone();
    s.wechat_base_url = wechat.to_owned();
    s.component_appid = Some(AppId::parse(SandboxConfig::COMPONENT_APPID)?);
    s.component_appsecret = Some(SecretString::from(SandboxConfig::COMPONENT_SECRET));
    s.concurrency = CONCURRENCY;
    s.backoff_base = BACKOFF_BASE;
    s.backoff_max = BACKOFF_MAX;
    s.request_timeout = Duration::from_secs(5);
    s.shutdown_timeout = Duration::from_secs(5);
    // Port 0: the demo never clashes with a worker already running on 9464.
    s.http_addr = "127.0.0.1:0".parse()?;
    Ok(s)
}

/// Shows the batch's progress until `batch.completed` and returns its final counts.
async fn follow(
    queue: &Queue,
    batch: &BatchId,
    progress: &Progress,
    worker: &mut tokio::task::JoinHandle<
        Result<envshare::worker::RunReport, envshare::worker::RunError>,
    >,
) -> anyhow::Result<BatchProgress> {
    let started = Instant::now();
    let first = queue.batch(batch).await?.unwrap_or_default();
    let bar = progress.items("sharing", first.appids);
    let mut last_line = Instant::now();
    loop {
        let b = queue.batch(batch).await?.unwrap_or_default();
        let ended = b.accepted + b.failed;
        bar.set_position(ended);
        bar.set_message(format!(
            "appids: {} accepted, {} failed",
            b.accepted, b.failed
        ));
        if !progress.is_terminal() && (last_line.elapsed() >= PLAIN_EVERY || b.completed) {
            last_line = Instant::now();
            eprintln!(
                "sharing: {ended}/{} appids ended ({} accepted, {} failed), {}/{} jobs done",
                b.appids, b.accepted, b.failed, b.done_jobs, b.jobs
            );
        }
        if b.completed {
            bar.finish_and_clear();
            return Ok(b);
        }
        if worker.is_finished() {
            bar.abandon();
            bail!("the worker stopped before the batch completed (see the log lines above)");
        }
        if started.elapsed() >= DEADLINE {
            bar.abandon();
            bail!(
                "the demo did not finish within {} s ({ended} of {} appids ended); the machine \
                 may be overloaded: run it again, or with fewer --pairs",
                DEADLINE.as_secs(),
                b.appids
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A generated input.
struct Input {
    csv: String,
    /// Jobs it makes at [`CHUNK_SIZE`] appids per job.
    jobs: u64,
}

/// `pairs` distinct pairs spread over [`ENVS`]; one pair in a hundred (at least one) has an
/// appid ending in `bad`, which the demo sandbox rejects (b, a, d are hex digits, so the appid
/// is still valid).
fn generate(pairs: usize, seed: u64) -> Input {
    let mut csv = String::with_capacity(32 * (pairs + 1));
    csv.push_str("env,appid\n");
    let mut per_env = [0u64; ENVS.len()];
    let bad_slot = pairs.min(100) / 2;
    for i in 0..pairs {
        // splitmix64 is a bijection, so distinct indexes give distinct appids.
        let mut x = splitmix64(seed.wrapping_add(i as u64));
        if i % 100 == bad_slot {
            x = (x & !0xfff) | 0xbad;
        } else if x & 0xfff == 0xbad {
            x ^= 1;
        }
        let env = i % ENVS.len();
        per_env[env] += 1;
        let _ = writeln!(csv, "{},wx{x:016x}", ENVS[env]);
    }
    let chunk = CHUNK_SIZE as u64;
    let jobs = per_env.iter().map(|n| n.div_ceil(chunk)).sum();
    Input { csv, jobs }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A per-run seed, so two demos on one Redis never share appids or a queue name.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    splitmix64(nanos ^ u64::from(std::process::id()).rotate_left(32))
}

fn note(line: impl AsRef<str>) {
    eprintln!("{}", line.as_ref());
}

/// What the demo prints at the end.
struct Summary {
    done: BatchProgress,
    retries: i64,
    token_fetches: u64,
    share_calls: u64,
    import_secs: f64,
    sharing_secs: f64,
    elapsed_secs: f64,
    events: Vec<Event>,
}

impl Summary {
    fn render(&self) -> String {
        let d = &self.done;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nbatch {} completed: {} of {} pairs ended, {} accepted, {} failed\n",
            d.id.as_ref().map(ToString::to_string).unwrap_or_default(),
            d.accepted + d.failed,
            d.appids,
            d.accepted,
            d.failed
        );
        let _ = writeln!(
            out,
            "  accepted       {:>6}   share.accepted events (a confirm URL each)",
            d.accepted
        );
        let _ = writeln!(out, "  failed         {:>6}", d.failed);
        for (reason, (count, example)) in self.failures() {
            let _ = writeln!(out, "    {reason:<20} {count:>4}   e.g. {example}");
        }
        let _ = writeln!(
            out,
            "  retries        {:>6}   attempts answered -1 or HTTP 502, tried again after a backoff",
            self.retries
        );
        let _ = writeln!(
            out,
            "  token fetches  {:>6}   {}",
            self.token_fetches,
            match self.token_fetches {
                0 => "none",
                1 => "the first fetch; no refresh was needed",
                2 => "the first fetch, then one refresh after the token expired",
                _ => "the first fetch, then refreshes after the token expired",
            }
        );
        // Each job is called once, once more per retry, and once more within the same attempt
        // when WeChat rejects the token (expired, or superseded by the refresh).
        let token_repeats = self
            .share_calls
            .saturating_sub(d.jobs)
            .saturating_sub(self.retries.max(0) as u64);
        let _ = writeln!(
            out,
            "  share calls    {:>6}   {} jobs' first tries, {} retries, {} repeated with a \
             fresh token",
            self.share_calls, d.jobs, self.retries, token_repeats
        );
        let _ = writeln!(
            out,
            "  elapsed        {:>5.1}s   import {:.2} s, sharing {:.1} s",
            self.elapsed_secs, self.import_secs, self.sharing_secs
        );
        let samples = self.samples();
        if !samples.is_empty() {
            let _ = writeln!(
                out,
                "\nsample events, as consumers read them from the stream:"
            );
        }
        for (label, event) in samples {
            let json = serde_json::to_string_pretty(event).unwrap_or_default();
            let _ = writeln!(out, "\n{label}:\n{json}");
        }
        out
    }

    /// Failed appids per reason (with errcode), and one errmsg as an example.
    fn failures(&self) -> BTreeMap<String, (u64, String)> {
        let mut by = BTreeMap::new();
        for e in &self.events {
            if let EventKind::ShareFailed {
                reason,
                errcode,
                errmsg,
                ..
            } = &e.kind
            {
                let key = match errcode {
                    Some(c) => format!("{} ({c})", reason.as_str()),
                    None => reason.as_str().to_owned(),
                };
                let entry = by.entry(key).or_insert((0, format!("{errmsg:?}")));
                entry.0 += 1;
            }
        }
        by
    }

    /// One accepted share (one that needed a retry, if any), one failed, and batch.completed.
    fn samples(&self) -> Vec<(&'static str, &Event)> {
        let accepted = |retried: bool| {
            self.events.iter().find(|e| {
                matches!(e.kind, EventKind::ShareAccepted { attempts, .. } if (attempts > 1) == retried)
            })
        };
        let mut out = Vec::new();
        if let Some(e) = accepted(true) {
            out.push(("share.accepted (on a retry)", e));
        } else if let Some(e) = accepted(false) {
            out.push(("share.accepted", e));
        }
        if let Some(e) = self
            .events
            .iter()
            .find(|e| matches!(e.kind, EventKind::ShareFailed { .. }))
        {
            out.push(("share.failed", e));
        }
        if let Some(e) = self
            .events
            .iter()
            .find(|e| matches!(e.kind, EventKind::BatchCompleted { .. }))
        {
            out.push(("batch.completed", e));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pairs_are_valid_distinct_and_include_rejected_appids() {
        for pairs in [1, 7, 100, 1000] {
            let input = generate(pairs, 42);
            let v = import::validate(input.csv.as_bytes(), Format::Csv, CHUNK_SIZE, 5).unwrap();
            assert_eq!(v.invalid_rows, 0, "{:?}", v.errors);
            assert_eq!(v.unique_pairs(), pairs as u64);
            assert_eq!(v.jobs(), input.jobs);
            let bad = input.csv.lines().filter(|l| l.ends_with("bad")).count();
            assert_eq!(bad, pairs.div_ceil(100).max(1), "{pairs} pairs");
        }
    }
}
