//! Tests: the share path end to end. A real Redis (the harness), the sandbox over real HTTP and
//! the worker service (`envshare::worker::Application`) in-process, or the real
//! `envshare-worker` binary for the signal and log tests.

use std::time::{Duration, Instant};

use envshare::events::{EventKind, FailReason};
use envshare::sandbox::{Fault, Latency, SandboxConfig};
use envshare::wechat::Endpoint;
use envshare::worker::WorkerOptions;
use envshare::{AppId, BatchId, JobId};
use envshare_tests::{
    ChildProcess, RunningWorker, TestRedis, TestStack, appid, bin_path, is_share, wait_until,
};
use secrecy::SecretString;

/// The fixed token the sandbox accepts; recognisable, so the log test can search for it.
const STATIC_TOKEN: &str = "static-token-LEAKCHECK-5e6f7a8b";
/// Component credentials, recognisable for the log test.
const SECRET: &str = "secret-LEAKCHECK-share-1a2b3c";
const TICKET: &str = "ticket-LEAKCHECK-share-4d5e6f";
const ENV: &str = "prod-share";

/// Redis + sandbox + a queue, with the sandbox taking this file's token and credentials.
async fn start_stack(prefix: &str, config: SandboxConfig) -> TestStack {
    let config = SandboxConfig {
        static_tokens: vec![STATIC_TOKEN.into()],
        component_secret: SECRET.into(),
        verify_ticket: TICKET.into(),
        ..config
    };
    TestStack::start(prefix, config, |_| {}).await
}

/// Switches to component mode with the sandbox's appid and secret.
fn component_mode(stack: &mut TestStack) {
    stack.settings.access_token = None;
    stack.settings.component_appid = Some(AppId::parse(SandboxConfig::COMPONENT_APPID).unwrap());
    stack.settings.component_appsecret = Some(SecretString::from(SECRET));
}

/// Enqueues one job per slice of `appids` (sizes as given), one sealed batch.
async fn enqueue(stack: &TestStack, jobs: &[Vec<AppId>]) -> (BatchId, Vec<JobId>) {
    stack.enqueue(ENV, jobs).await
}

/// `n` one-appid jobs, appids numbered from `from`.
async fn enqueue_singles(stack: &TestStack, from: u64, n: u64) -> Vec<JobId> {
    let jobs: Vec<Vec<AppId>> = (from..from + n).map(|i| vec![appid(i)]).collect();
    enqueue(stack, &jobs).await.1
}

fn accepted(events: &[EventKind]) -> Vec<(AppId, Option<String>, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::ShareAccepted {
                appid,
                confirm_url,
                attempts,
                ..
            } => Some((appid.clone(), confirm_url.clone(), *attempts)),
            _ => None,
        })
        .collect()
}

fn failed(events: &[EventKind]) -> Vec<(AppId, Option<i64>, FailReason, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::ShareFailed {
                appid,
                errcode,
                reason,
                attempts,
                ..
            } => Some((appid.clone(), *errcode, *reason, *attempts)),
            _ => None,
        })
        .collect()
}

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn system_busy_twice_then_ok_makes_three_calls_and_is_accepted_on_the_third_attempt() {
    let stack = start_stack("share-busy", SandboxConfig::default()).await;
    stack.sandbox.script(
        Endpoint::ShareEnv,
        [Some(Fault::BUSY), Some(Fault::BUSY), None],
    );
    let worker = stack.worker().await;
    enqueue_singles(&stack, 1, 1).await;
    let events = stack.share_events(1, WAIT).await;
    worker.stop().await;
    assert_eq!(
        accepted(&events),
        vec![(appid(1), accepted_url(&stack, 1), 3)]
    );
    assert_eq!(stack.share_calls(), 3);
    assert_eq!(stack.stats().await.dead, 0);
}

fn accepted_url(stack: &TestStack, i: u64) -> Option<String> {
    Some(format!(
        "{}/confirm/{ENV}/{}",
        stack.sandbox.url(),
        appid(i)
    ))
}

#[tokio::test]
async fn system_error_until_max_attempts_is_dead_with_retries_exhausted() {
    let mut stack = start_stack("share-exhausted", SandboxConfig::default()).await;
    stack.settings.max_attempts = 3;
    stack
        .sandbox
        .script(Endpoint::ShareEnv, [Some(Fault::SYSTEM_ERROR); 3]);
    let worker = stack.worker().await;
    enqueue_singles(&stack, 1, 1).await;
    let events = stack.share_events(1, WAIT).await;
    worker.stop().await;
    assert_eq!(
        failed(&events),
        vec![(appid(1), Some(-1000), FailReason::RetriesExhausted, 3)]
    );
    assert_eq!(stack.share_calls(), 3);
    assert_eq!(stack.stats().await.dead, 1);
}

#[tokio::test]
async fn a_permanent_errcode_is_dead_after_one_call_with_permanent_error() {
    let stack = start_stack("share-permanent", SandboxConfig::default()).await;
    stack
        .sandbox
        .script(Endpoint::ShareEnv, [Some(Fault::Errcode(47001))]);
    let worker = stack.worker().await;
    enqueue(&stack, &[vec![appid(1), appid(2)]]).await;
    let events = stack.share_events(2, WAIT).await;
    worker.stop().await;
    assert_eq!(
        failed(&events),
        vec![
            (appid(1), Some(47001), FailReason::PermanentError, 1),
            (appid(2), Some(47001), FailReason::PermanentError, 1),
        ]
    );
    assert_eq!(stack.share_calls(), 1);
    assert_eq!(stack.stats().await.dead, 1);
}

#[tokio::test]
async fn an_http_500_then_ok_is_accepted_on_the_second_attempt() {
    let stack = start_stack("share-http500", SandboxConfig::default()).await;
    stack
        .sandbox
        .script(Endpoint::ShareEnv, [Some(Fault::HttpStatus(500)), None]);
    let worker = stack.worker().await;
    enqueue_singles(&stack, 1, 1).await;
    let events = stack.share_events(1, WAIT).await;
    worker.stop().await;
    assert_eq!(
        accepted(&events),
        vec![(appid(1), accepted_url(&stack, 1), 2)]
    );
    assert_eq!(stack.share_calls(), 2);
}

#[tokio::test]
async fn a_mixed_answer_accepts_some_with_confirm_url_and_rejects_the_rest() {
    let config = SandboxConfig {
        rejected_appids: [appid(2), appid(4)].iter().map(|a| a.to_string()).collect(),
        ..SandboxConfig::default()
    };
    let stack = start_stack("share-mixed", config).await;
    let worker = stack.worker().await;
    enqueue(&stack, &[vec![appid(1), appid(2), appid(3), appid(4)]]).await;
    let events = stack.share_events(4, WAIT).await;
    worker.stop().await;
    assert_eq!(
        accepted(&events),
        vec![
            (appid(1), accepted_url(&stack, 1), 1),
            (appid(3), accepted_url(&stack, 3), 1),
        ]
    );
    let rejected = failed(&events);
    assert_eq!(rejected.len(), 2);
    for (i, (a, _, reason, attempts)) in rejected.into_iter().enumerate() {
        assert_eq!(a, appid(2 * (i as u64 + 1)));
        assert_eq!((reason, attempts), (FailReason::Rejected, 1));
    }
    assert_eq!(stack.share_calls(), 1);
    // A job WeChat answered is done, even with rejections: nothing is dead.
    assert_eq!(stack.stats().await.dead, 0);
}

#[tokio::test]
async fn an_expired_token_is_fetched_once_for_64_jobs_in_flight_across_two_workers() {
    let config = SandboxConfig {
        latency: Latency::Fixed(Duration::from_millis(100)),
        ..SandboxConfig::default()
    };
    let mut stack = start_stack("share-token", config).await;
    component_mode(&mut stack);
    stack.settings.concurrency = 32;
    stack.set_ticket(TICKET).await;
    let a = stack.worker().await;
    let b = stack.worker().await;
    // Warm up: one job fetches the first token.
    enqueue_singles(&stack, 1_000, 1).await;
    stack.share_events(1, WAIT).await;
    assert_eq!(stack.sandbox.token_fetches(), 1);

    stack.sandbox.expire_tokens();
    enqueue_singles(&stack, 1, 64).await;
    let events = stack.share_events(65, WAIT).await;
    a.stop().await;
    b.stop().await;
    let acc = accepted(&events);
    assert_eq!(acc.len(), 65, "all accepted: {events:?}");
    assert!(
        acc.iter().all(|(_, _, attempts)| *attempts == 1),
        "no attempt burned: {acc:?}"
    );
    assert_eq!(
        stack.sandbox.token_fetches(),
        2,
        "exactly one fetch after the expiry"
    );
}

/// A component-mode stack whose stored ticket is `wrong`, a worker re-checking the token every
/// `recheck`, three jobs enqueued, and the queue seen paused with the ticket error (61005).
async fn paused_on_a_wrong_ticket(
    prefix: &str,
    wrong: &str,
    recheck: Duration,
) -> (TestStack, RunningWorker) {
    let mut stack = start_stack(prefix, SandboxConfig::default()).await;
    component_mode(&mut stack);
    stack.set_ticket(wrong).await;
    let options = WorkerOptions {
        misconfig_recheck: Some(recheck),
        ..WorkerOptions::default()
    };
    let worker = stack.worker_with(stack.settings.clone(), options).await;
    enqueue_singles(&stack, 1, 3).await;
    assert!(
        stack.wait_paused("61005", WAIT).await,
        "the queue is paused with the ticket error"
    );
    (stack, worker)
}

#[tokio::test]
async fn an_invalid_ticket_pauses_the_workers_and_they_resume_after_the_right_ticket_is_stored() {
    let (stack, worker) = paused_on_a_wrong_ticket(
        "share-ticket",
        "ticket-LEAKCHECK-wrong-000",
        Duration::from_millis(300),
    )
    .await;
    let pause = stack.stats().await.paused.unwrap();
    assert!(
        pause.reason.contains("envshare ticket set"),
        "{}",
        pause.reason
    );
    assert!(!pause.reason.contains(SECRET) && !pause.reason.contains("LEAKCHECK"));
    // Several re-check intervals later: still nothing called, nothing dead.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let s = stack.stats().await;
    assert_eq!((s.dead, stack.share_calls()), (0, 0));
    assert_eq!(stack.sandbox.token_fetches(), 0);

    stack.set_ticket(TICKET).await;
    let events = stack.share_events(3, WAIT).await;
    worker.stop().await;
    let acc = accepted(&events);
    assert_eq!(acc.len(), 3);
    assert!(acc.iter().all(|(_, _, attempts)| *attempts == 1), "{acc:?}");
    assert_eq!(stack.sandbox.token_fetches(), 1);
}

#[tokio::test]
async fn envshare_ticket_set_lifts_a_ticket_pause_at_once() {
    // A re-check interval far longer than the test: only the lifted pause can let jobs through.
    let (stack, worker) = paused_on_a_wrong_ticket(
        "share-ticket-lift",
        "ticket-LEAKCHECK-wrong-111",
        Duration::from_secs(120),
    )
    .await;

    let envshare = bin_path("envshare");
    let started = Instant::now();
    let mut cli = std::process::Command::new(envshare)
        .args(["ticket", "set", "-"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ENVSHARE_REDIS_URL", &stack.settings.redis_url)
        .env("ENVSHARE_QUEUE", stack.name().as_str())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("envshare runs");
    {
        use std::io::Write;
        let mut stdin = cli.stdin.take().unwrap();
        writeln!(stdin, "{TICKET}").unwrap();
    }
    let out = cli.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("lifted the pause"), "{stdout}");
    assert!(
        !stdout.contains(TICKET),
        "the ticket is never echoed: {stdout}"
    );

    let events = stack.share_events(3, WAIT).await;
    let took = started.elapsed();
    worker.stop().await;
    assert_eq!(accepted(&events).len(), 3);
    assert!(
        took < Duration::from_secs(5),
        "the jobs ran {took:?} after the ticket was stored, not at the 120 s re-check"
    );
}

#[tokio::test]
async fn a_spent_daily_quota_stops_every_call_until_the_reset() {
    let config = SandboxConfig {
        daily_quota: Some(2),
        ..SandboxConfig::default()
    };
    let mut stack = start_stack("share-quota", config).await;
    stack.settings.concurrency = 1;
    let options = WorkerOptions {
        quota_pause: Some(Duration::from_millis(1_500)),
        ..WorkerOptions::default()
    };
    let worker = stack.worker_with(stack.settings.clone(), options).await;
    enqueue_singles(&stack, 1, 5).await;
    assert!(
        stack.wait_paused("45009", WAIT).await,
        "paused for the quota"
    );
    let at_pause = stack.share_calls();
    assert_eq!(at_pause, 3, "two calls within the quota, one 45009");
    // The quota comes back, but the pause holds every call until it ends.
    stack.sandbox.configure(|c| c.daily_quota = None);
    stack.sandbox.reset_quota();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(stack.share_calls(), at_pause, "no call during the pause");
    let events = stack.share_events(5, WAIT).await;
    worker.stop().await;
    let acc = accepted(&events);
    assert_eq!(acc.len(), 5);
    assert!(acc.iter().all(|(_, _, attempts)| *attempts == 1), "{acc:?}");
    assert_eq!(stack.share_calls(), 6);
    assert_eq!(stack.stats().await.dead, 0);
}

#[tokio::test]
async fn a_rate_limit_of_20_per_second_holds_across_two_workers() {
    let mut stack = start_stack("share-rate", SandboxConfig::default()).await;
    stack.settings.rate_limit = 20.0;
    stack.settings.concurrency = 16;
    let a = stack.worker().await;
    let b = stack.worker().await;
    let n = 61;
    enqueue_singles(&stack, 1, n).await;
    stack
        .share_events(n as usize, Duration::from_secs(20))
        .await;
    a.stop().await;
    b.stop().await;
    let log = stack.sandbox.share_log();
    assert_eq!(log.len(), n as usize);
    let first = log.iter().map(|c| c.at).min().unwrap();
    let last = log.iter().map(|c| c.at).max().unwrap();
    let secs = last.duration_since(first).unwrap().as_secs_f64();
    let rate = (n - 1) as f64 / secs;
    assert!(
        (18.0..=22.0).contains(&rate),
        "measured {rate:.2} calls/s over {secs:.2} s"
    );
}

#[tokio::test]
async fn a_job_still_running_at_the_shutdown_timeout_is_released_with_its_attempt_refunded() {
    let config = SandboxConfig {
        hang: Duration::from_secs(20),
        ..SandboxConfig::default()
    };
    let mut stack = start_stack("share-release", config).await;
    stack.settings.shutdown_timeout = Duration::from_millis(300);
    stack.settings.request_timeout = Duration::from_secs(30);
    stack
        .sandbox
        .script(Endpoint::ShareEnv, [Some(Fault::Hang)]);
    let worker = stack.worker().await;
    let ids = enqueue_singles(&stack, 1, 1).await;
    assert!(
        wait_until(WAIT, || async { stack.share_calls() == 1 }).await,
        "the call is in flight"
    );
    let started = Instant::now();
    let report = worker.stop().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(report.released, 1);
    let s = stack.stats().await;
    assert_eq!((s.ready, s.running, s.dead), (1, 0, 0));
    let info = stack.queue.job(&ids[0]).await.unwrap().unwrap();
    assert_eq!(info.attempts, 0, "the released attempt is refunded");
}

#[tokio::test]
async fn metrics_and_health_endpoints_answer() {
    let stack = start_stack("share-http", SandboxConfig::default()).await;
    let worker = stack.worker().await;
    enqueue_singles(&stack, 1, 2).await;
    stack.share_events(2, WAIT).await;
    let base = format!("http://{}", worker.http_addr());
    let client = reqwest_client();
    let health = get(&client, &format!("{base}/healthz")).await;
    assert_eq!(health.0, 200);
    let metrics = get(&client, &format!("{base}/metrics")).await;
    assert_eq!(metrics.0, 200);
    for needle in [
        "envshare_jobs_total{outcome=\"done\"} 2",
        "envshare_wechat_calls_total{errcode=\"0\"} 2",
        "envshare_wechat_call_duration_seconds_count 2",
        "envshare_queue_jobs{state=\"ready\"} 0",
        "envshare_token_refreshes_total",
    ] {
        assert!(
            metrics.1.contains(needle),
            "{needle} missing in:\n{}",
            metrics.1
        );
    }
    let ready = get(&client, &format!("{base}/readyz")).await;
    let body: serde_json::Value = serde_json::from_str(&ready.1).unwrap();
    // The shared test Redis may or may not evict; the answer must say which.
    let policy_ok = body["checks"]["maxmemory_policy"]["ok"].as_bool().unwrap();
    assert_eq!(body["checks"]["redis"]["ok"], true, "{body}");
    assert_eq!(body["checks"]["token"]["ok"], true, "{body}");
    assert_eq!(ready.0 == 200, policy_ok, "{body}");
    if !policy_ok {
        assert!(
            body["checks"]["maxmemory_policy"]["detail"]
                .as_str()
                .unwrap()
                .contains("silently drops jobs"),
            "{body}"
        );
    }
    worker.stop().await;
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let r = client.get(url).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

// ---- the real binary ----

/// Starts the real `envshare-worker` on the stack's Redis, queue and sandbox, with `envs` added.
fn spawn_binary(stack: &TestStack, envs: &[(&str, String)]) -> ChildProcess {
    let mut env = vec![
        ("ENVSHARE_REDIS_URL", TestRedis::shared().url().to_owned()),
        ("ENVSHARE_QUEUE", stack.name().to_string()),
        ("ENVSHARE_WECHAT_BASE_URL", stack.sandbox.url().to_owned()),
        ("ENVSHARE_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("ENVSHARE_BACKOFF_BASE_MS", "20".to_owned()),
        ("ENVSHARE_BACKOFF_MAX_MS", "100".to_owned()),
    ];
    env.extend(envs.iter().cloned());
    ChildProcess::spawn(&bin_path("envshare-worker"), &[], &env)
}

/// Waits for the binary to exit (at most `timeout`) and returns the status and stderr.
async fn wait_binary(
    mut child: ChildProcess,
    timeout: Duration,
) -> (std::process::ExitStatus, String) {
    let status = child
        .wait_exit(timeout)
        .await
        .unwrap_or_else(|| panic!("envshare-worker did not exit within {timeout:?}"));
    (status, child.output().1)
}

#[tokio::test]
async fn sigterm_mid_run_exits_zero_and_loses_no_job() {
    let config = SandboxConfig {
        latency: Latency::Fixed(Duration::from_millis(100)),
        ..SandboxConfig::default()
    };
    let stack = start_stack("share-sigterm", config).await;
    let n = 80;
    enqueue_singles(&stack, 1, n).await;
    let child = spawn_binary(
        &stack,
        &[
            ("ENVSHARE_ACCESS_TOKEN", STATIC_TOKEN.into()),
            ("ENVSHARE_CONCURRENCY", "8".into()),
            ("ENVSHARE_SHUTDOWN_TIMEOUT_MS", "5000".into()),
        ],
    );
    assert!(
        wait_until(WAIT, || async { stack.share_calls() >= 16 }).await,
        "the binary is running jobs"
    );
    child.sigterm();
    let (status, stderr) = wait_binary(child, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    let s = stack.stats().await;
    assert_eq!(s.running, 0, "nothing left leased: {s:?}");
    let done = stack.events().await.iter().filter(|e| is_share(e)).count() as u64;
    assert!(done < n, "stopped mid-run ({done} of {n} done)");
    assert_eq!(
        done + s.ready + s.scheduled,
        n,
        "every job is done or waiting: {s:?}"
    );

    // Another worker finishes the rest; every appid ends exactly once.
    let worker = stack.worker().await;
    let events = stack.share_events(n as usize, WAIT).await;
    worker.stop().await;
    let mut appids: Vec<AppId> = accepted(&events).into_iter().map(|a| a.0).collect();
    appids.sort();
    appids.dedup();
    assert_eq!(appids.len() as u64, n);
    assert_eq!(events.len() as u64, n, "one final event per appid");
}

#[tokio::test]
async fn no_secret_ticket_or_token_appears_in_any_log_line_at_trace_level() {
    let config = SandboxConfig {
        // A token that expires after 5 calls forces refreshes and token errors.
        token_max_calls: Some(5),
        ..SandboxConfig::default()
    };
    let mut stack = start_stack("share-logs", config).await;
    component_mode(&mut stack);
    stack.set_ticket(TICKET).await;
    stack.sandbox.script(
        Endpoint::ShareEnv,
        [Some(Fault::BUSY), Some(Fault::Errcode(47001)), None],
    );
    let n = 20;
    enqueue_singles(&stack, 1, n).await;
    let child = spawn_binary(
        &stack,
        &[
            (
                "ENVSHARE_COMPONENT_APPID",
                SandboxConfig::COMPONENT_APPID.into(),
            ),
            ("ENVSHARE_COMPONENT_APPSECRET", SECRET.into()),
            ("ENVSHARE_CONCURRENCY", "4".into()),
            ("ENVSHARE_LOG", "trace".into()),
            ("ENVSHARE_LOG_FORMAT", "json".into()),
        ],
    );
    let all_done = wait_until(WAIT, || async {
        stack.events().await.iter().filter(|e| is_share(e)).count() >= n as usize
    })
    .await;
    child.sigterm();
    let (status, stderr) = wait_binary(child, Duration::from_secs(10)).await;
    assert!(all_done, "all jobs ended");
    assert!(stack.sandbox.token_fetches() >= 2, "tokens were refreshed");
    let token = stack.sandbox.current_token().expect("a token was issued");
    assert_eq!(status.code(), Some(0));
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() > 50,
        "trace logging is on: {} lines",
        lines.len()
    );
    assert!(
        lines.iter().any(|l| l.contains("share_job")),
        "job spans are logged"
    );
    for line in lines {
        for secret in [
            SECRET,
            TICKET,
            token.as_str(),
            "sandbox-token-",
            "access_token=",
        ] {
            assert!(!line.contains(secret), "{secret:?} leaked in: {line}");
        }
    }
}
