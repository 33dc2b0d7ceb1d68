//! Reliability tests (issue 6, parts 4 and 6): the real `envshare-worker` and `envshare` binaries
//! as child processes, a private `redis-server` from the harness, and the sandbox misbehaving.
//!
//! - API chaos: a few hundred jobs against a sandbox that answers 30 % HTTP 5xx, 10 % errcode -1,
//!   and hangs past the request timeout, resets, truncated JSON and endless bodies. Every appid
//!   must end by the policy (one final event), no lease may stay behind, the binary must exit 0
//!   on SIGTERM, and its resident memory (sampled from `/proc/<pid>/status`) must stay bounded.
//! - Secrets: the worker and the CLI at `ENVSHARE_LOG=trace` through a ticket pause, token
//!   fetches and refreshes, transient errors, retries and dead jobs; the app secret, both
//!   tickets and every token the sandbox issued must appear in no log line, event, `/metrics`
//!   answer, `envshare status --json` output or error message.
//!
//! Figures (peak RSS, calls, time) are printed on stderr; see them with `-- --nocapture`.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use envshare::events::{EventKind, FailReason};
use envshare::sandbox::{AppidRule, Fault, Latency, Sandbox, SandboxConfig, SandboxHandle};
use envshare::store::read_all;
use envshare::store::{EnqueueOptions, NewJob, Queue, QueueSettings, QueueStats};
use envshare::wechat::Endpoint;
use envshare::{AppId, BatchId, EnvId, QueueName};
use envshare_tests::{
    ChildProcess, TestRedis, appid, bin_path, free_port, unique_queue, wait_until,
};

const ENV: &str = "prod-chaos";

// ---- binaries ----

/// The environment every child gets: nothing from the caller's, so nothing redirects it.
fn base_env(cmd: &mut Command, redis: &TestRedis, queue: &QueueName) {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ENVSHARE_REDIS_URL", redis.url())
        .env("ENVSHARE_QUEUE", queue.as_str());
}

/// A running `envshare-worker` (its output collected by [`ChildProcess`]), its RSS sampled
/// every 20 ms.
struct Worker {
    child: ChildProcess,
    http: String,
    sampler: Option<std::thread::JoinHandle<()>>,
    stop_sampling: Arc<AtomicBool>,
    peak_rss_kb: Arc<AtomicU64>,
}

fn spawn_worker(redis: &TestRedis, queue: &QueueName, envs: &[(&str, String)]) -> Worker {
    let port = free_port();
    let mut env = vec![
        ("ENVSHARE_REDIS_URL", redis.url().to_owned()),
        ("ENVSHARE_QUEUE", queue.as_str().to_owned()),
        ("ENVSHARE_HTTP_ADDR", format!("127.0.0.1:{port}")),
    ];
    env.extend(envs.iter().cloned());
    let child = ChildProcess::spawn(&bin_path("envshare-worker"), &[], &env);
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let peak_rss_kb = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop_sampling.clone(), peak_rss_kb.clone());
        let pid = child.pid();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match proc_status_kb(pid, "VmRSS:") {
                    Some(kb) => {
                        peak.fetch_max(kb, Ordering::Relaxed);
                    }
                    None => return,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    Worker {
        child,
        http: format!("http://127.0.0.1:{port}"),
        sampler: Some(sampler),
        stop_sampling,
        peak_rss_kb,
    }
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS:`, `VmHWM:`), `None` once the process is gone.
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

impl Worker {
    /// The kernel's high-water mark of the resident set (`VmHWM`), in kB, while it runs.
    fn rss_high_water_kb(&self) -> Option<u64> {
        proc_status_kb(self.child.pid(), "VmHWM:")
    }

    fn sigterm(&self) {
        self.child.sigterm();
    }

    /// Waits for the exit (at most `timeout`, then SIGKILL and panic); returns the status, the
    /// whole stderr and the peak sampled RSS in kB.
    async fn wait(mut self, timeout: Duration) -> (std::process::ExitStatus, String, u64) {
        let Some(status) = self.child.wait_exit(timeout).await else {
            self.child.kill9();
            panic!("envshare-worker did not exit within {timeout:?}");
        };
        self.stop_sampling.store(true, Ordering::Relaxed);
        let _ = self.sampler.take().unwrap().join();
        let stderr = self.child.output().1;
        (status, stderr, self.peak_rss_kb.load(Ordering::Relaxed))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The child is killed by its own Drop; the sampler stops with it.
        self.stop_sampling.store(true, Ordering::Relaxed);
    }
}

/// Runs `envshare ARGS` to the end with `stdin` written to it; returns its output.
fn cli(
    redis: &TestRedis,
    queue: &QueueName,
    envs: &[(&str, String)],
    args: &[&str],
    stdin: &str,
) -> Output {
    let mut cmd = Command::new(bin_path("envshare"));
    base_env(&mut cmd, redis, queue);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawning envshare");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().expect("envshare runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn http_get(url: &str) -> String {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap()
}

// ---- queue helpers ----

async fn connect(redis: &TestRedis, name: &QueueName) -> Queue {
    Queue::connect(redis.url(), name, QueueSettings::default())
        .await
        .expect("queue connects")
}

/// `n` one-appid jobs (appids 1..=n) in one sealed batch.
async fn enqueue_singles(queue: &Queue, n: u64) -> BatchId {
    let batch = BatchId::generate();
    let jobs = (1..=n)
        .map(|i| NewJob {
            op: envshare::store::JobOp::Share,
            env: EnvId::parse(ENV).unwrap(),
            appids: vec![appid(i)],
            batch: batch.clone(),
            run_at_ms: None,
        })
        .collect();
    queue
        .enqueue(
            jobs,
            EnqueueOptions {
                force: true,
                seal: true,
            },
        )
        .await
        .expect("enqueue");
    batch
}

async fn events(redis: &TestRedis, queue: &Queue) -> Vec<EventKind> {
    let mut conn = redis.conn().await;
    read_all(&mut conn, queue.keys())
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.event.kind)
        .collect()
}

fn share_events(events: &[EventKind]) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                EventKind::ShareAccepted { .. } | EventKind::ShareFailed { .. }
            )
        })
        .count()
}

async fn stats(queue: &Queue) -> QueueStats {
    queue.stats().await.expect("stats")
}

// ---- part 4: API chaos ----

/// Faults drawn per share call: 30 % HTTP 5xx, 10 % -1, and 4 % each of a hang past the request
/// timeout, a reset mid-body, truncated JSON and an endless body. 56 % in all, so a job succeeds
/// on an attempt with p = 0.44 and exhausts 8 attempts with p = 0.56^8 ≈ 1 %.
fn chaos_faults() -> Vec<(Fault, f64)> {
    vec![
        (Fault::HttpStatus(500), 0.10),
        (Fault::HttpStatus(502), 0.10),
        (Fault::HttpStatus(503), 0.10),
        (Fault::BUSY, 0.10),
        (Fault::Hang, 0.04),
        (Fault::Reset, 0.04),
        (Fault::MalformedJson, 0.04),
        (Fault::OversizedBody, 0.04),
    ]
}

const CHAOS_SECRET: &str = "secret-CHAOS-4b1d9e";
const CHAOS_TICKET: &str = "ticket-CHAOS-7c2a0f";
/// Worst RSS the worker may reach under chaos. Measured peak is far below (see
/// docs/reliability.md); the bound is generous so a slow machine does not fail it.
const RSS_BOUND_KB: u64 = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_jobs_under_mixed_api_chaos_all_end_by_the_policy_with_bounded_worker_memory()
{
    const N: u64 = 300;
    const MAX_ATTEMPTS: u32 = 8;
    let started = Instant::now();
    let redis = TestRedis::private();
    let sandbox = Sandbox::start(SandboxConfig {
        random_faults: chaos_faults(),
        // Longer than the 300 ms request timeout: the client gives up first.
        hang: Duration::from_secs(2),
        component_secret: CHAOS_SECRET.into(),
        verify_ticket: CHAOS_TICKET.into(),
        // Refreshes in the middle of the chaos: a token lasts 40 calls.
        token_max_calls: Some(40),
        record_share_log: false,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts");
    let name = unique_queue("chaos-api");
    let queue = connect(&redis, &name).await;
    envshare::token::store_ticket(&queue, &CHAOS_TICKET.into())
        .await
        .unwrap();
    let batch = enqueue_singles(&queue, N).await;

    let worker = spawn_worker(
        &redis,
        &name,
        &[
            ("ENVSHARE_WECHAT_BASE_URL", sandbox.url().to_owned()),
            (
                "ENVSHARE_COMPONENT_APPID",
                SandboxConfig::COMPONENT_APPID.into(),
            ),
            ("ENVSHARE_COMPONENT_APPSECRET", CHAOS_SECRET.into()),
            ("ENVSHARE_CONCURRENCY", "16".into()),
            ("ENVSHARE_MAX_ATTEMPTS", MAX_ATTEMPTS.to_string()),
            ("ENVSHARE_BACKOFF_BASE_MS", "15".into()),
            ("ENVSHARE_BACKOFF_MAX_MS", "200".into()),
            ("ENVSHARE_REQUEST_TIMEOUT_MS", "300".into()),
            ("ENVSHARE_LEASE_MS", "5000".into()),
            ("ENVSHARE_SHUTDOWN_TIMEOUT_MS", "5000".into()),
            ("ENVSHARE_LOG", "info".into()),
        ],
    );
    let run_started = Instant::now();
    // Polls O(1) counts: no job waiting or running, and at least N share events and one
    // batch.completed in the stream. The events themselves are read once at the end.
    let all_ended = wait_until(Duration::from_secs(60), || async {
        let s = stats(&queue).await;
        s.ready + s.scheduled + s.running == 0 && s.events > N
    })
    .await;
    let drain = run_started.elapsed();
    let metrics = http_get(&format!("{}/metrics", worker.http)).await;
    let high_water_kb = worker.rss_high_water_kb();
    worker.sigterm();
    let (status, stderr, peak_kb) = worker.wait(Duration::from_secs(15)).await;
    let elapsed = started.elapsed();
    let all = events(&redis, &queue).await;
    assert!(
        all_ended,
        "only {} of {N} appids ended; stderr tail:\n{}",
        share_events(&all),
        tail(&stderr, 30)
    );

    // Every appid: exactly one final event, accepted or failed with retries_exhausted.
    let mut finals: BTreeMap<AppId, usize> = BTreeMap::new();
    let (mut accepted, mut exhausted) = (0u64, 0u64);
    let mut attempts_hist: BTreeMap<u32, u64> = BTreeMap::new();
    let mut completed = Vec::new();
    let mut last_errors: BTreeMap<String, u64> = BTreeMap::new();
    for e in &all {
        match e {
            EventKind::ShareAccepted {
                appid, attempts, ..
            } => {
                assert!(*attempts >= 1 && *attempts <= MAX_ATTEMPTS, "{e:?}");
                *finals.entry(appid.clone()).or_default() += 1;
                *attempts_hist.entry(*attempts).or_default() += 1;
                accepted += 1;
            }
            EventKind::ShareFailed {
                appid,
                reason,
                attempts,
                errmsg,
                ..
            } => {
                *last_errors.entry(errmsg.clone()).or_default() += 1;
                assert_eq!(
                    (*reason, *attempts),
                    (FailReason::RetriesExhausted, MAX_ATTEMPTS),
                    "only transient faults were injected: {e:?}"
                );
                *finals.entry(appid.clone()).or_default() += 1;
                exhausted += 1;
            }
            EventKind::BatchCompleted { .. } => completed.push(e.clone()),
            // Confirmation events come after the finals; they are not finals themselves.
            k if k.is_confirmation() => {}
            EventKind::Unknown => panic!("an unknown event type in the stream: {e:?}"),
            _ => unreachable!("every kind is matched above"),
        }
    }
    assert_eq!(finals.len() as u64, N, "every appid has a final event");
    assert!(
        finals.values().all(|&n| n == 1),
        "duplicates: {:?}",
        finals.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert_eq!(
        completed,
        vec![EventKind::BatchCompleted {
            batch_id: batch,
            total: N,
            accepted,
            failed: exhausted,
        }],
        "batch.completed exactly once with the right counts"
    );
    // About 1 % exhaust on an idle machine; on a loaded one some answers miss the 300 ms
    // timeout too. The policy is what is asserted; this only checks that the run was not all
    // failures.
    assert!(
        accepted >= N / 2,
        "most jobs succeed: {accepted} accepted, {exhausted} exhausted; last errors {last_errors:?}"
    );

    // No stuck lease, nothing waiting; the exhausted jobs are the dead ones.
    let s = stats(&queue).await;
    assert_eq!(
        (s.ready, s.scheduled, s.running, s.dead),
        (0, 0, 0, exhausted),
        "{s:?}"
    );

    // No panic, a clean exit.
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; stderr tail:\n{}",
        tail(&stderr, 30)
    );
    assert!(!stderr.contains("panicked"), "a panic:\n{stderr}");
    assert!(
        metrics.contains("envshare_jobs_total"),
        "metrics answer during the run:\n{metrics}"
    );

    // Memory stays bounded although bodies never end and hangs pile up.
    let hwm_kb = high_water_kb.unwrap_or(0);
    let peak = peak_kb.max(hwm_kb);
    assert!(peak > 0, "RSS was sampled");
    assert!(
        peak < RSS_BOUND_KB,
        "worker RSS peaked at {} MiB (bound {} MiB)",
        peak / 1024,
        RSS_BOUND_KB / 1024
    );
    let calls = sandbox.calls(Endpoint::ShareEnv);
    eprintln!(
        "chaos: {N} jobs, {accepted} accepted, {exhausted} retries_exhausted (last errors \
         {last_errors:?}), {calls} share calls, {} token fetches, attempts of accepted {attempts_hist:?}; peak RSS sampled {:.1} MiB, \
         VmHWM {:.1} MiB; drained in {:.1} s, {:.1} s in all",
        sandbox.token_fetches(),
        peak_kb as f64 / 1024.0,
        hwm_kb as f64 / 1024.0,
        drain.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    sandbox.shutdown().await.unwrap();
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---- part 6: secrets ----

/// Every secret of the secrets test carries this mark, so a leak of any part of one is found.
const MARK: &str = "LEAKPROBE";
const LEAK_SECRET: &str = "secret-LEAKPROBE-a17f3c";
const LEAK_TICKET: &str = "ticket-LEAKPROBE-right-92d0";
const WRONG_TICKET: &str = "ticket-LEAKPROBE-wrong-5e11";
const FIXED_TOKEN: &str = "fixed-LEAKPROBE-token-0c7d";

/// Collects every token the sandbox issues by polling [`SandboxHandle::current_token`] each
/// millisecond. A token replaced within a millisecond could be missed, so the search also
/// looks for the sandbox's token prefix `sandbox-token-`, which every issued token starts with.
fn collect_tokens(
    sandbox: Arc<SandboxHandle>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<HashSet<String>> {
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        while !stop.load(Ordering::Relaxed) {
            if let Some(t) = sandbox.current_token() {
                seen.insert(t);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        seen.extend(sandbox.current_token());
        seen
    })
}

/// Raw text of every event in the stream, as consumers read it (`type` and `event` fields).
async fn raw_events(redis: &TestRedis, queue: &Queue) -> String {
    let entries = redis.stream_entries(&queue.keys().events()).await;
    entries
        .into_iter()
        .map(|(id, fields)| format!("{id} {}\n", fields.join(" ")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_ticket_or_token_reaches_logs_events_metrics_status_or_errors_of_worker_and_cli()
{
    const N: u64 = 30;
    let redis = TestRedis::private();
    let sandbox = Arc::new(
        Sandbox::start(SandboxConfig {
            latency: Latency::Fixed(Duration::from_millis(5)),
            random_faults: vec![
                (Fault::BUSY, 0.15),
                (Fault::HttpStatus(502), 0.10),
                (Fault::Reset, 0.05),
                (Fault::MalformedJson, 0.05),
            ],
            component_secret: LEAK_SECRET.into(),
            verify_ticket: LEAK_TICKET.into(),
            // A token lasts 3 calls: fetches, 42001s and refreshes all through the run.
            token_max_calls: Some(3),
            reject_if: Some(AppidRule::suffix("7")),
            ..SandboxConfig::default()
        })
        .await
        .expect("sandbox starts"),
    );
    // The first share call is answered with a permanent errcode: a dead job and its error.
    sandbox.script(Endpoint::ShareEnv, [Some(Fault::Errcode(47001))]);
    let stop_collecting = Arc::new(AtomicBool::new(false));
    let collector = collect_tokens(sandbox.clone(), stop_collecting.clone());
    let name = unique_queue("chaos-secrets");
    let queue = connect(&redis, &name).await;
    // Worker and CLI get the same settings, the secret included, as an operator's shell would.
    let env: Vec<(&str, String)> = vec![
        ("ENVSHARE_WECHAT_BASE_URL", sandbox.url().to_owned()),
        (
            "ENVSHARE_COMPONENT_APPID",
            SandboxConfig::COMPONENT_APPID.into(),
        ),
        ("ENVSHARE_COMPONENT_APPSECRET", LEAK_SECRET.into()),
        ("ENVSHARE_LOG", "trace".into()),
        ("ENVSHARE_CONCURRENCY", "4".into()),
        // One appid per job: 30 jobs, each with its own calls, retries and outcome.
        ("ENVSHARE_CHUNK_SIZE", "1".into()),
        ("ENVSHARE_MAX_ATTEMPTS", "3".into()),
        ("ENVSHARE_BACKOFF_BASE_MS", "10".into()),
        ("ENVSHARE_BACKOFF_MAX_MS", "100".into()),
        ("ENVSHARE_REQUEST_TIMEOUT_MS", "1000".into()),
    ];
    let worker_env: Vec<(&str, String)> = env
        .iter()
        .cloned()
        .chain([("ENVSHARE_LOG_FORMAT", "json".to_owned())])
        .collect();
    // (what, text) of everything that must not hold a secret.
    let mut outputs: Vec<(String, String)> = Vec::new();
    let run_cli =
        |outputs: &mut Vec<(String, String)>, what: &str, args: &[&str], stdin: &str, ok: bool| {
            let out = cli(&redis, &name, &env, args, stdin);
            let all = text(&out);
            assert_eq!(out.status.success(), ok, "envshare {args:?}:\n{all}");
            outputs.push((format!("envshare {what}"), all.clone()));
            all
        };

    // Phase 1: the wrong ticket. The worker pauses every worker and calls nothing.
    run_cli(
        &mut outputs,
        "ticket set (wrong)",
        &["ticket", "set", "-"],
        WRONG_TICKET,
        true,
    );
    // One job meets the pause: the worker defers it until the pause's re-check (30 s in the
    // binary), so it stays scheduled for the rest of this test.
    let paused_appid = appid(1_000_000).to_string();
    run_cli(
        &mut outputs,
        "enqueue",
        &["enqueue", "--env", ENV, "--appid", &paused_appid],
        "",
        true,
    );
    let first = spawn_worker(&redis, &name, &worker_env);
    assert!(
        wait_until(Duration::from_secs(15), || async {
            stats(&queue)
                .await
                .paused
                .is_some_and(|p| p.reason.contains("61005"))
        })
        .await,
        "the wrong ticket pauses the queue"
    );
    outputs.push((
        "pause reason".into(),
        stats(&queue).await.paused.unwrap().reason,
    ));
    run_cli(
        &mut outputs,
        "status (paused)",
        &["status", "--json"],
        "",
        true,
    );
    outputs.push((
        "metrics (paused)".into(),
        http_get(&format!("{}/metrics", first.http)).await,
    ));
    assert_eq!(
        sandbox.calls(Endpoint::ShareEnv),
        0,
        "nothing called while paused"
    );

    // Phase 2: the right ticket. The binary re-checks a ticket pause after 30 s (not a setting)
    // and defers the jobs it holds as long; the test ends the pause itself, starts a fresh worker
    // and imports new jobs instead of waiting.
    run_cli(
        &mut outputs,
        "ticket set (right)",
        &["ticket", "set", "-"],
        LEAK_TICKET,
        true,
    );
    first.sigterm();
    let (status, stderr, _) = first.wait(Duration::from_secs(15)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "paused worker exits 0:\n{}",
        tail(&stderr, 20)
    );
    outputs.push(("worker log (paused)".into(), stderr));
    queue.resume().await.expect("resume");
    let dir = tempfile::tempdir().unwrap();
    let csv: String = std::iter::once("env,appid\n".to_owned())
        .chain((1..=N).map(|i| format!("{ENV},{}\n", appid(i))))
        .collect();
    let file = dir.path().join("pairs.csv");
    std::fs::write(&file, csv).unwrap();
    run_cli(
        &mut outputs,
        "import",
        &["import", "--json", file.to_str().unwrap()],
        "",
        true,
    );
    let second = spawn_worker(&redis, &name, &worker_env);
    assert!(
        wait_until(Duration::from_secs(15), || async {
            share_events(&events(&redis, &queue).await) as u64 >= N / 3
        })
        .await,
        "the second worker runs jobs"
    );
    run_cli(
        &mut outputs,
        "status (running)",
        &["status", "--json"],
        "",
        true,
    );
    let ended = wait_until(Duration::from_secs(30), || async {
        share_events(&events(&redis, &queue).await) as u64 >= N
    })
    .await;
    outputs.push((
        "metrics (done)".into(),
        http_get(&format!("{}/metrics", second.http)).await,
    ));
    run_cli(
        &mut outputs,
        "status (done)",
        &["status", "--json"],
        "",
        true,
    );
    run_cli(
        &mut outputs,
        "dead list",
        &["dead", "list", "--json"],
        "",
        true,
    );
    let all = events(&redis, &queue).await;
    let count = all.len().to_string();
    run_cli(
        &mut outputs,
        "events tail",
        &[
            "events",
            "tail",
            "--from-start",
            "--json",
            "--count",
            &count,
        ],
        "",
        true,
    );
    // Error paths of the CLI: a ticket that is not one is refused without being echoed.
    let refused = run_cli(
        &mut outputs,
        "ticket set (control character)",
        &["ticket", "set", "-"],
        &format!("{LEAK_TICKET}\u{1}x"),
        false,
    );
    assert!(refused.contains("control characters"), "{refused}");
    second.sigterm();
    let (status, stderr, _) = second.wait(Duration::from_secs(15)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "worker exits 0:\n{}",
        tail(&stderr, 20)
    );
    assert!(ended, "all {N} appids ended:\n{}", tail(&stderr, 20));
    outputs.push(("worker log".into(), stderr));

    // A worker refused at start-up: two token modes at once. Its error names the variables only.
    let refused = spawn_worker(
        &redis,
        &name,
        &[
            ("ENVSHARE_WECHAT_BASE_URL", sandbox.url().to_owned()),
            (
                "ENVSHARE_COMPONENT_APPID",
                SandboxConfig::COMPONENT_APPID.into(),
            ),
            ("ENVSHARE_COMPONENT_APPSECRET", LEAK_SECRET.into()),
            ("ENVSHARE_ACCESS_TOKEN", FIXED_TOKEN.into()),
            ("ENVSHARE_LOG", "trace".into()),
        ],
    );
    let (status, stderr, _) = refused.wait(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ENVSHARE_ACCESS_TOKEN"), "{stderr}");
    outputs.push(("worker start-up error".into(), stderr));

    outputs.push(("events".into(), raw_events(&redis, &queue).await));
    stop_collecting.store(true, Ordering::Relaxed);
    let tokens = collector.await.unwrap();

    // The run went through what it was meant to: refreshes, errors, retries, dead jobs.
    let fetches = sandbox.token_fetches();
    assert!(fetches >= 3, "tokens were refreshed: {fetches} fetches");
    assert!(tokens.len() >= 2, "tokens collected: {}", tokens.len());
    let share_calls = sandbox.calls(Endpoint::ShareEnv);
    assert!(share_calls > N / 4, "share calls: {share_calls}");
    let s = stats(&queue).await;
    assert!(s.dead >= 1, "the permanent error made a dead job: {s:?}");
    let retried = all.iter().any(|e| match e {
        EventKind::ShareAccepted { attempts, .. } | EventKind::ShareFailed { attempts, .. } => {
            *attempts > 1
        }
        _ => false,
    });
    assert!(retried, "some job was retried: {all:?}");

    let mut needles: Vec<String> = vec![
        LEAK_SECRET.into(),
        LEAK_TICKET.into(),
        WRONG_TICKET.into(),
        FIXED_TOKEN.into(),
        MARK.into(),
        "sandbox-token-".into(),
        "access_token=".into(),
    ];
    needles.extend(tokens.iter().cloned());
    let mut lines = 0usize;
    for (what, text) in &outputs {
        for (i, line) in text.lines().enumerate() {
            lines += 1;
            for needle in &needles {
                assert!(
                    !line.contains(needle.as_str()),
                    "{needle:?} leaked in {what}, line {}: {line}",
                    i + 1
                );
            }
        }
    }
    let worker_lines = outputs
        .iter()
        .filter(|(w, _)| w.starts_with("worker log"))
        .map(|(_, t)| t.lines().count())
        .sum::<usize>();
    assert!(
        worker_lines > 100,
        "trace logging is on: {worker_lines} lines"
    );
    eprintln!(
        "secrets: {} outputs, {lines} lines searched ({worker_lines} worker log lines) for {} \
         needles ({} issued tokens collected of {fetches} fetches); {share_calls} share calls",
        outputs.len(),
        needles.len(),
        tokens.len()
    );
}
