//! Tests: confirmation tracking (`envshare::confirm`, docs/confirmation.md). A real Redis, the
//! sandbox over real HTTP (it remembers bindings; `confirm` marks one confirmed) and the worker
//! service in-process, with a short schedule and window so each test takes a second or two.

use std::time::{Duration, Instant};

use envshare::confirm::read_confirmations;
use envshare::events::EventKind;
use envshare::sandbox::{Fault, SandboxConfig};
use envshare::schedule::ConfirmSchedule;
use envshare::wechat::Endpoint;
use envshare::worker::WorkerOptions;
use envshare::{AppId, BatchId, EnvId};
use envshare_tests::{RunningWorker, TestRedis, TestStack, appid, wait_until};
use secrecy::SecretString;

const TOKEN: &str = "static-token-confirm";
const ENV: &str = "prod-confirm";
/// This file's appids are `appid(APPIDS + i)`, apart from other files' ones.
const APPIDS: u64 = 0xc0_0000;

/// Redis + sandbox + a queue, with a short retry policy and the given confirmation schedule
/// and window.
async fn start_stack(prefix: &str, schedule: &str, window_ms: u64) -> TestStack {
    let config = SandboxConfig {
        static_tokens: vec![TOKEN.into()],
        hang: Duration::from_secs(2),
        ..SandboxConfig::default()
    };
    TestStack::start(prefix, config, |settings| {
        settings.concurrency = 4;
        settings.backoff_base = Duration::from_millis(300);
        settings.backoff_max = Duration::from_millis(400);
        settings.request_timeout = Duration::from_millis(400);
        settings.confirm_schedule = ConfirmSchedule::parse(schedule).unwrap();
        settings.confirm_window = Duration::from_millis(window_ms);
    })
    .await
}

/// A worker that polls for due checks every 30 ms, with one-second leases.
async fn worker(s: &TestStack) -> RunningWorker {
    let options = WorkerOptions {
        confirm_poll: Duration::from_millis(30),
        confirm_lease: Duration::from_secs(1),
        confirm_claim_idle: Duration::from_secs(1),
        ..WorkerOptions::default()
    };
    s.worker_with(s.settings.clone(), options).await
}

/// Enqueues one job for `appids`, one sealed batch.
async fn enqueue(s: &TestStack, appids: Vec<AppId>) -> BatchId {
    s.enqueue(ENV, &[appids]).await.0
}

async fn confirmations(s: &TestStack) -> Vec<EventKind> {
    let mut conn = TestRedis::shared().conn().await;
    read_confirmations(&mut conn, s.queue.keys())
        .await
        .expect("events")
        .into_iter()
        .map(|(_, e)| e.kind)
        .collect()
}

async fn accepted(s: &TestStack) -> Vec<EventKind> {
    s.events()
        .await
        .into_iter()
        .filter(|k| matches!(k, EventKind::ShareAccepted { .. }))
        .collect()
}

/// Waits until `n` confirmation events are in the stream.
async fn wait_confirmations(s: &TestStack, n: usize, timeout: Duration) -> Vec<EventKind> {
    let ok = wait_until(timeout, || async { confirmations(s).await.len() >= n }).await;
    let all = confirmations(s).await;
    assert!(ok, "expected {n} confirmation events, got {all:?}");
    all
}

fn count(events: &[EventKind], type_name: &str) -> usize {
    events.iter().filter(|e| e.type_name() == type_name).count()
}

#[tokio::test]
async fn a_binding_confirmed_after_the_second_check_gives_one_share_bound_and_one_batch_confirmed()
{
    let s = start_stack("confirm-bound", "200ms,400ms", 3_000).await;
    let worker = worker(&s).await;
    let (a, b) = (appid(APPIDS + 1), appid(APPIDS + 2));
    let batch = enqueue(&s, vec![a.clone(), b.clone()]).await;

    // The first check finds nothing confirmed; then both administrators confirm.
    assert!(
        wait_until(Duration::from_secs(5), || async {
            s.sandbox.calls(Endpoint::GetEnvIds) >= 1
        })
        .await
    );
    assert!(s.sandbox.confirm(ENV, a.as_str()));
    assert!(s.sandbox.confirm(ENV, b.as_str()));

    let events = wait_confirmations(&s, 3, Duration::from_secs(5)).await;
    // Later checks must not emit anything again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let events_later = confirmations(&s).await;
    worker.stop().await;

    assert_eq!(events_later, events, "nothing emitted twice");
    assert_eq!(count(&events, "share.bound"), 2, "{events:?}");
    for e in &events {
        if let EventKind::ShareBound {
            checks,
            confirm_seconds,
            env,
            batch_id,
            ..
        } = e
        {
            assert!(*checks >= 2, "seen at the second check or later: {e:?}");
            assert!(*confirm_seconds >= 0.4 && *confirm_seconds < 3.0, "{e:?}");
            assert_eq!((env.as_str(), batch_id), (ENV, &batch));
        }
    }
    assert_eq!(
        events.last().unwrap(),
        &EventKind::BatchConfirmed {
            batch_id: batch.clone(),
            accepted: 2,
            bound: 2,
            unconfirmed: 0,
        }
    );
    assert_eq!(s.sandbox.share_calls_for(a.as_str()), 1);
    // The worker's acks scheduled the checks themselves: nothing was left to the stream intake.
    let counters = s.stats().await.counters;
    assert_eq!(counters.get("completed"), Some(&1), "{counters:?}");
    assert_eq!(counters.get("completed_direct"), Some(&1), "{counters:?}");
}

#[tokio::test]
async fn a_binding_never_confirmed_gives_one_share_unconfirmed_at_the_window_end() {
    let s = start_stack("confirm-window", "200ms,400ms", 1_200).await;
    let worker = worker(&s).await;
    let batch = enqueue(&s, vec![appid(APPIDS + 3)]).await;
    let started = Instant::now();

    let events = wait_confirmations(&s, 2, Duration::from_secs(5)).await;
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events_later = confirmations(&s).await;
    worker.stop().await;

    assert!(
        elapsed >= Duration::from_millis(1_200),
        "not before the window's end: {elapsed:?}"
    );
    assert_eq!(events_later, events, "nothing emitted twice");
    let EventKind::ShareUnconfirmed {
        appid: a,
        checks,
        window_seconds,
        ..
    } = &events[0]
    else {
        panic!("expected share.unconfirmed first: {events:?}");
    };
    assert_eq!(a, &appid(APPIDS + 3));
    assert!(
        *checks >= 3,
        "checked on the schedule until the window's end: {checks}"
    );
    assert_eq!(*window_seconds, 1.2);
    assert_eq!(
        events[1],
        EventKind::BatchConfirmed {
            batch_id: batch,
            accepted: 1,
            bound: 0,
            unconfirmed: 1,
        }
    );
}

#[tokio::test]
async fn a_timeout_after_the_share_was_recorded_does_not_send_the_bound_appid_again() {
    let s = start_stack("confirm-resend", "200ms,400ms", 2_000).await;
    // The first share call is applied by the sandbox but its answer never arrives in time.
    s.sandbox.script(Endpoint::ShareEnv, [Some(Fault::Hang)]);
    let worker = worker(&s).await;
    let (a, b) = (appid(APPIDS + 4), appid(APPIDS + 5));
    let batch = enqueue(&s, vec![a.clone(), b.clone()]).await;

    // A's administrator confirms before the retry; B's does not.
    assert!(
        wait_until(Duration::from_secs(5), || async {
            s.sandbox.bindings().iter().any(|x| x.appid == a.as_str())
        })
        .await
    );
    assert!(s.sandbox.confirm(ENV, a.as_str()));

    let events = wait_confirmations(&s, 3, Duration::from_secs(8)).await;
    let accepted = accepted(&s).await;
    worker.stop().await;

    assert_eq!(
        s.sandbox.share_calls_for(a.as_str()),
        1,
        "A was not sent again"
    );
    assert_eq!(
        s.sandbox.share_calls_for(b.as_str()),
        2,
        "B, not bound, was sent again"
    );
    assert_eq!(
        accepted.len(),
        2,
        "one share.accepted per appid: {accepted:?}"
    );
    for e in &accepted {
        let EventKind::ShareAccepted {
            appid,
            confirm_url,
            attempts,
            ..
        } = e
        else {
            unreachable!()
        };
        assert_eq!(*attempts, 2);
        assert_eq!(confirm_url.is_none(), appid == &a, "{e:?}");
    }
    assert_eq!(count(&events, "share.bound"), 1, "{events:?}");
    assert_eq!(count(&events, "share.unconfirmed"), 1, "{events:?}");
    assert!(events.contains(&EventKind::BatchConfirmed {
        batch_id: batch,
        accepted: 2,
        bound: 1,
        unconfirmed: 1,
    }));
}

#[tokio::test]
async fn confirmation_tracking_survives_a_worker_restart_with_nothing_lost_or_doubled() {
    let s = start_stack("confirm-restart", "200ms,400ms", 1_500).await;
    let first = worker(&s).await;
    let appids: Vec<AppId> = (10..14).map(|i| appid(APPIDS + i)).collect();
    let batch = enqueue(&s, appids.clone()).await;

    // Stop the worker mid-schedule: accepted, checked once, nothing settled yet.
    assert!(
        wait_until(Duration::from_secs(5), || async {
            s.sandbox.calls(Endpoint::GetEnvIds) >= 1
        })
        .await
    );
    first.stop().await;
    assert!(confirmations(&s).await.is_empty());
    s.sandbox.confirm(ENV, appids[0].as_str());
    s.sandbox.confirm(ENV, appids[1].as_str());

    let second = worker(&s).await;
    let events = wait_confirmations(&s, 5, Duration::from_secs(6)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let events_later = confirmations(&s).await;
    second.stop().await;

    assert_eq!(events_later, events, "nothing emitted twice");
    assert_eq!(count(&events, "share.bound"), 2, "{events:?}");
    assert_eq!(count(&events, "share.unconfirmed"), 2, "{events:?}");
    assert_eq!(
        events.last().unwrap(),
        &EventKind::BatchConfirmed {
            batch_id: batch,
            accepted: 4,
            bound: 2,
            unconfirmed: 2,
        }
    );
    // The schedule is empty: every entry settled.
    let mut conn = TestRedis::shared().conn().await;
    let left: u64 = redis::cmd("ZCARD")
        .arg(s.queue.keys().confirm())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// `envshare` (the real binary) against this stack's Redis queue and sandbox.
fn envshare_cli(s: &TestStack) -> std::process::Command {
    let mut cmd = std::process::Command::new(envshare_tests::bin_path("envshare"));
    cmd.env_remove("REDIS_URL")
        .env_remove("ENVSHARE_CHUNK_SIZE")
        .env("ENVSHARE_REDIS_URL", TestRedis::shared().url())
        .env("ENVSHARE_QUEUE", s.settings.queue.as_str())
        .env("ENVSHARE_WECHAT_BASE_URL", s.sandbox.url())
        .env("ENVSHARE_ACCESS_TOKEN", TOKEN)
        .env("ENVSHARE_LOG", "warn");
    cmd
}

/// Runs `cmd` off the runtime's thread (the sandbox answers on this runtime meanwhile).
async fn run_json(mut cmd: std::process::Command) -> serde_json::Value {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("envshare runs");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[tokio::test]
async fn skip_bound_enqueues_no_job_for_pairs_already_bound() {
    let s = start_stack("confirm-skip", "1h", 7_200_000).await;
    let client = envshare::wechat::WechatClient::new(s.sandbox.url(), Duration::from_secs(5))
        .expect("client");
    let (a, b, c) = (appid(APPIDS + 20), appid(APPIDS + 21), appid(APPIDS + 22));
    let env = EnvId::parse(ENV).unwrap();
    client
        .share_env(&SecretString::from(TOKEN), &env, &[a.clone(), b.clone()])
        .await
        .expect("share");
    // A is bound; B's share waits for its administrator, so it is not bound yet.
    assert!(s.sandbox.confirm(ENV, a.as_str()));
    let checks_before = s.sandbox.calls(Endpoint::GetEnvIds);

    let summary = {
        let mut cmd = envshare_cli(&s);
        cmd.args([
            "enqueue",
            "--env",
            ENV,
            "--appid",
            a.as_str(),
            b.as_str(),
            c.as_str(),
            "--skip-bound",
            "--json",
        ]);
        run_json(cmd).await
    };
    assert_eq!(summary["skipped_bound"], 1, "{summary}");
    assert_eq!(
        summary["bound_pairs"],
        serde_json::json!([{"env": ENV, "appid": a.as_str()}])
    );
    assert_eq!(summary["appids"], 2, "{summary}");
    assert_eq!(s.sandbox.calls(Endpoint::GetEnvIds), checks_before + 1);

    // The same through import, with the file's pairs in two rows and a duplicate.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pairs.csv");
    std::fs::write(
        &file,
        format!("env,appid\n{ENV},{a}\nother-env,{a}\n{ENV},{a}\n{ENV},{c}\n"),
    )
    .unwrap();
    let summary = {
        let mut cmd = envshare_cli(&s);
        cmd.args([
            "import",
            file.to_str().unwrap(),
            "--skip-bound",
            "--force",
            "--json",
        ]);
        run_json(cmd).await
    };
    assert_eq!(summary["skipped_bound"], 1, "{summary}");
    assert_eq!(
        summary["appids"], 2,
        "other-env/A and C are enqueued: {summary}"
    );
}

#[tokio::test]
async fn status_of_a_batch_shows_bound_unconfirmed_and_confirmed() {
    let s = start_stack("confirm-status", "100ms,200ms", 800).await;
    let worker = worker(&s).await;
    let (a, b) = (appid(APPIDS + 30), appid(APPIDS + 31));
    let batch = enqueue(&s, vec![a.clone(), b.clone()]).await;
    assert!(
        wait_until(Duration::from_secs(5), || async {
            s.sandbox.bindings().len() == 2
        })
        .await
    );
    assert!(s.sandbox.confirm(ENV, a.as_str()));
    wait_confirmations(&s, 3, Duration::from_secs(5)).await;
    worker.stop().await;

    let status = {
        let mut cmd = envshare_cli(&s);
        cmd.args(["status", "--batch", batch.as_str(), "--json"]);
        run_json(cmd).await
    };
    let b = &status["batch"];
    assert_eq!(
        (&b["accepted"], &b["bound"], &b["unconfirmed"], &b["failed"]),
        (
            &serde_json::json!(2),
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(0)
        ),
        "{status}"
    );
    assert_eq!(b["confirmed"], true, "{status}");
    assert_eq!(b["awaiting_confirmation"], 0, "{status}");
}

#[tokio::test]
async fn intake_lag_counts_unread_events_and_sees_a_trim_past_them() {
    use envshare::confirm::{CONFIRM_GROUP, IntakeLag, intake_lag};
    use envshare::store::{Queue, QueueSettings};

    let redis = TestRedis::shared();
    let name = envshare_tests::unique_queue("confirm-lag");
    let queue = Queue::connect(redis.url(), &name, QueueSettings::default())
        .await
        .unwrap();
    let stream = queue.keys().events();
    let mut conn = redis.conn().await;
    assert_eq!(intake_lag(&queue).await.unwrap(), None, "no stream yet");
    for i in 0..5 {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("type")
            .arg("test")
            .arg("event")
            .arg(i)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(intake_lag(&queue).await.unwrap(), None, "no group yet");
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(CONFIRM_GROUP)
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        intake_lag(&queue).await.unwrap(),
        Some(IntakeLag {
            lag: Some(5),
            trimmed_unread: false
        })
    );

    // The group reads one event; a trim (exact here; the queue trims with `~`) then removes it
    // and the next two, which the group never read.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(CONFIRM_GROUP)
        .arg("reader")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(intake_lag(&queue).await.unwrap().unwrap().lag, Some(4));
    let _: u64 = redis::cmd("XTRIM")
        .arg(&stream)
        .arg("MAXLEN")
        .arg(2)
        .query_async(&mut conn)
        .await
        .unwrap();
    let l = intake_lag(&queue).await.unwrap().unwrap();
    assert!(l.trimmed_unread, "{l:?}");

    // Once the group has read past the trim, nothing is behind it (Redis's lag count after a
    // trim past the group is its own estimate: not asserted).
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(CONFIRM_GROUP)
        .arg("reader")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    let l = intake_lag(&queue).await.unwrap().unwrap();
    assert!(!l.trimmed_unread, "{l:?}");
}

/// A watcher of `s`'s queue, driven round by round by the test (no loop, no worker).
fn round_watcher(s: &TestStack, conn: redis::aio::ConnectionManager) -> envshare::confirm::Watcher {
    round_watcher_with(
        s,
        conn,
        // Every round asks whether the stream must be read (30 s apart by default).
        envshare::confirm::ConfirmSettings {
            claim_idle: Duration::ZERO,
            ..envshare::confirm::ConfirmSettings::default()
        },
    )
}

/// [`round_watcher`] with the given settings.
fn round_watcher_with(
    s: &TestStack,
    conn: redis::aio::ConnectionManager,
    settings: envshare::confirm::ConfirmSettings,
) -> envshare::confirm::Watcher {
    use envshare::confirm::{BindingChecker, ConfirmCounters, Watcher};
    use envshare::token::FixedTokenProvider;
    use std::sync::Arc;

    let client = envshare::wechat::WechatClient::new(s.sandbox.url(), Duration::from_secs(5))
        .expect("client");
    let tokens = Arc::new(FixedTokenProvider::new(SecretString::from(TOKEN)));
    let limiter = Arc::new(envshare::throttle::RateLimiter::new(
        conn,
        s.queue.keys(),
        0.0,
    ));
    let checker = BindingChecker::new(client, tokens, limiter, 100);
    Watcher::new(
        s.queue.clone(),
        checker,
        settings,
        "test-watcher",
        ConfirmCounters::default(),
    )
}

/// `s`'s queue as the worker sets it up: its acks schedule each accepted appid's first check,
/// a minute on.
async fn scheduling_queue(s: &TestStack) -> envshare::store::Queue {
    envshare::store::Queue::connect(
        TestRedis::shared().url(),
        s.name(),
        envshare::store::QueueSettings {
            confirm_first: Some(Duration::from_secs(60)),
            ..envshare::store::QueueSettings::default()
        },
    )
    .await
    .expect("queue connects")
}

/// Claims every ready job of `queue` and acks each with `outcome(job)`.
async fn work_off(
    queue: &envshare::store::Queue,
    outcome: impl Fn(&envshare::store::ShareJob) -> envshare::store::Outcome,
) {
    use envshare::store::{Ack, Claim, WorkerId};
    let Claim::Jobs(leases) = queue.claim(&WorkerId::new("w1"), 100).await.unwrap() else {
        panic!("not paused")
    };
    let acks = leases
        .into_iter()
        .map(|l| {
            let o = outcome(&l.job);
            Ack::new(l, o)
        })
        .collect();
    queue.complete(acks).await.unwrap();
}

/// Enqueues one job for `appid` in a batch of its own and has `queue` claim and accept it.
async fn accept_one(s: &TestStack, queue: &envshare::store::Queue, appid: &AppId) -> BatchId {
    let (batch, _) = s.enqueue(ENV, &[vec![appid.clone()]]).await;
    work_off(queue, |job| envshare_tests::all_accepted(job, None)).await;
    batch
}

/// WeChat takes the share of `appid` and its administrator confirms it; then `queue` (one that
/// schedules what it accepts) accepts it, and its first check is made due now. Returns its batch
/// and schedule entry id.
async fn accept_confirmed_due_now(
    s: &TestStack,
    queue: &envshare::store::Queue,
    appid: &AppId,
) -> (BatchId, String) {
    let client = envshare::wechat::WechatClient::new(s.sandbox.url(), Duration::from_secs(5))
        .expect("client");
    client
        .share_env(
            &SecretString::from(TOKEN),
            &EnvId::parse(ENV).unwrap(),
            std::slice::from_ref(appid),
        )
        .await
        .expect("share");
    assert!(s.sandbox.confirm(ENV, appid.as_str()));
    let batch = accept_one(s, queue, appid).await;
    let sid = schedule(s)
        .await
        .keys()
        .next()
        .expect("scheduled by the ack")
        .clone();
    let mut conn = TestRedis::shared().conn().await;
    let _: i64 = redis::cmd("ZADD")
        .arg(s.queue.keys().confirm())
        .arg(0)
        .arg(&sid)
        .query_async(&mut conn)
        .await
        .unwrap();
    (batch, sid)
}

/// The confirmation schedule: entry id → (due ms, details JSON).
async fn schedule(s: &TestStack) -> std::collections::BTreeMap<String, (u64, serde_json::Value)> {
    let mut conn = TestRedis::shared().conn().await;
    let due: Vec<(String, u64)> = redis::cmd("ZRANGE")
        .arg(s.queue.keys().confirm())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for (id, at) in due {
        let info: String = redis::cmd("HGET")
            .arg(s.queue.keys().confirm_info())
            .arg(&id)
            .query_async(&mut conn)
            .await
            .unwrap();
        out.insert(id, (at, serde_json::from_str(&info).unwrap()));
    }
    out
}

/// `lag` of the confirmation group (XINFO GROUPS), `None` without the group.
async fn group_lag(s: &TestStack) -> Option<redis::Value> {
    let mut conn = TestRedis::shared().conn().await;
    let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(s.queue.keys().events())
        .query_async(&mut conn)
        .await
        .unwrap();
    groups
        .into_iter()
        .find(|g| {
            g.get("name")
                .is_some_and(|n| *n == redis::Value::BulkString(b"envshare-confirm".to_vec()))
        })
        .map(|g| g["lag"].clone())
}

#[tokio::test]
async fn an_accepted_appid_is_scheduled_by_the_step_that_accepts_it_and_no_event_is_read_back() {
    use envshare::store::{AppResult, Outcome};

    let s = start_stack("confirm-direct", "1m", 600_000).await;
    // The worker's queue schedules what it accepts; the stack's own queue does not, as workers
    // of earlier versions did not.
    let worker_queue = scheduling_queue(&s).await;
    let (a, b, c) = (appid(APPIDS + 40), appid(APPIDS + 41), appid(APPIDS + 42));
    let (batch, jobs) = s
        .enqueue(ENV, &[vec![a.clone(), b.clone()], vec![c.clone()]])
        .await;
    let before = s.queue.now_ms();
    // The first job is accepted; the second rejected (nothing to confirm).
    work_off(&worker_queue, |job| {
        if job.appids.contains(&c) {
            Outcome::Done(vec![AppResult::Rejected {
                appid: c.clone(),
                errcode: Some(-1),
                errmsg: "rejected".into(),
            }])
        } else {
            envshare_tests::all_accepted(job, None)
        }
    })
    .await;
    let after = s.queue.now_ms();

    // Scheduled in the same step, under the share.accepted event's id, first due a minute
    // after acceptance.
    let accepted_ids: Vec<String> = s
        .queue
        .events_after("0-0", 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.event.kind, EventKind::ShareAccepted { .. }))
        .map(|e| e.event.id)
        .collect();
    let sched = schedule(&s).await;
    assert_eq!(
        sched.keys().cloned().collect::<Vec<_>>(),
        {
            let mut ids = accepted_ids.clone();
            ids.sort();
            ids
        },
        "one entry per accepted appid, keyed by its event id"
    );
    assert_eq!(sched.len(), 2);
    for (due, info) in sched.values() {
        let at = info["accepted_at"].as_u64().unwrap();
        assert!((before..=after).contains(&at), "{info}");
        assert_eq!(*due, at + 60_000, "{info}");
        assert_eq!(info["checks"], 0);
        assert_eq!(info["env"], ENV);
        assert_eq!(info["batch_id"], batch.as_str());
        assert_eq!(info["job_id"], jobs[0].as_str());
    }

    // The watcher has nothing to read: it moves its group to the end of the stream.
    let conn = TestRedis::shared().connection_manager().await;
    let mut watcher = round_watcher(&s, conn);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let r = watcher.round(&stopped).await.unwrap();
    assert_eq!((r.read, r.scheduled, r.checked), (0, 0, 0), "{r:?}");
    assert_eq!(group_lag(&s).await, Some(redis::Value::Int(0)));

    // A worker that leaves scheduling to the stream intake, as earlier versions did: its
    // complete script writes share.accepted and counts its job in `completed` only.
    let old = appid(APPIDS + 43);
    accept_one(&s, &s.queue, &old).await;
    let old_event = s
        .queue
        .events_after("0-0", 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .find(|e| matches!(&e.kind, EventKind::ShareAccepted { appid, .. } if *appid == old))
        .expect("its share.accepted");
    assert_eq!(schedule(&s).await.len(), 2, "not scheduled by its ack");
    // Meanwhile a worker of this version accepts one more: scheduled by its own step, and read
    // by the intake beside the earlier worker's event without being scheduled twice.
    let d = appid(APPIDS + 44);
    accept_one(&s, &worker_queue, &d).await;
    assert_eq!(schedule(&s).await.len(), 3);

    let r = watcher.round(&stopped).await.unwrap();
    assert!(r.read >= 2, "both share.accepted events are read: {r:?}");
    assert_eq!(
        r.scheduled, 1,
        "only the earlier worker's event is scheduled: {r:?}"
    );
    let sched = schedule(&s).await;
    assert_eq!(sched.len(), 4);
    let (due, info) = &sched[&old_event.id];
    assert_eq!(info["appid"], old.as_str());
    assert_eq!(*due, info["accepted_at"].as_u64().unwrap() + 60_000);

    // Caught up: the next rounds read nothing again.
    let r = watcher.round(&stopped).await.unwrap();
    assert_eq!(r.read, 0, "{r:?}");
    accept_one(&s, &worker_queue, &appid(APPIDS + 45)).await;
    let r = watcher.round(&stopped).await.unwrap();
    assert_eq!((r.read, r.scheduled), (0, 0), "{r:?}");
    assert_eq!(schedule(&s).await.len(), 5);
    assert_eq!(group_lag(&s).await, Some(redis::Value::Int(0)));
}

#[tokio::test]
async fn a_batch_with_nothing_accepted_is_confirmed_as_it_completes() {
    use envshare::store::{AppResult, Outcome};

    let s = start_stack("confirm-none", "1m", 600_000).await;
    let a = appid(APPIDS + 50);
    let (batch, _) = s.enqueue(ENV, &[vec![a.clone()]]).await;
    work_off(&s.queue, |_| {
        Outcome::Done(vec![AppResult::Rejected {
            appid: a.clone(),
            errcode: Some(-1),
            errmsg: "rejected".into(),
        }])
    })
    .await;
    // No watcher runs: the queue's own step emits both.
    let types: Vec<&str> = s
        .events()
        .await
        .iter()
        .map(EventKind::type_name)
        .filter(|t| t.starts_with("batch."))
        .collect();
    assert_eq!(types, ["batch.completed", "batch.confirmed"]);
    let confirmed = s
        .events()
        .await
        .into_iter()
        .find(|k| matches!(k, EventKind::BatchConfirmed { .. }))
        .unwrap();
    assert!(
        matches!(&confirmed, EventKind::BatchConfirmed { batch_id, accepted: 0, bound: 0, unconfirmed: 0, .. } if *batch_id == batch),
        "{confirmed:?}"
    );
}

#[tokio::test]
async fn an_intake_behind_the_stream_does_not_schedule_an_appid_already_settled_again() {
    let s = start_stack("confirm-settled", "1m", 600_000).await;
    let worker_queue = scheduling_queue(&s).await;
    let x = appid(APPIDS + 60);
    let (_, sid) = accept_confirmed_due_now(&s, &worker_queue, &x).await;

    // Due now: the first round follows the stream and settles it bound.
    let mut conn = TestRedis::shared().conn().await;
    let mut watcher = round_watcher(&s, TestRedis::shared().connection_manager().await);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let r = watcher.round(&stopped).await.unwrap();
    assert_eq!((r.read, r.checked), (0, 1), "{r:?}");
    assert!(schedule(&s).await.is_empty(), "settled");
    assert_eq!(count(&confirmations(&s).await, "share.bound"), 1);

    // The group is put back before the share.accepted event, as an intake lagging behind the
    // stream would be, and a worker that leaves scheduling to the intake writes one more.
    let _: () = redis::cmd("XGROUP")
        .arg("SETID")
        .arg(s.queue.keys().events())
        .arg("envshare-confirm")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let y = appid(APPIDS + 61);
    accept_one(&s, &s.queue, &y).await;

    let r = watcher.round(&stopped).await.unwrap();
    assert!(r.read >= 2, "both share.accepted events are read: {r:?}");
    assert_eq!(
        r.scheduled, 1,
        "only the second: the first is bound already: {r:?}"
    );
    let sched = schedule(&s).await;
    assert!(!sched.contains_key(&sid), "{sched:?}");
    assert_eq!(sched.len(), 1);
    assert_eq!(count(&confirmations(&s).await, "share.bound"), 1);
}

/// The `batch.confirmed` events of `batch` on `s`'s stream: (stream entry id, bound).
async fn batch_confirmed(s: &TestStack, batch: &BatchId) -> Vec<(String, u64)> {
    s.queue
        .events_after("0-0", 1000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event.kind {
            EventKind::BatchConfirmed {
                batch_id, bound, ..
            } if batch_id == *batch => Some((e.entry_id, bound)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_batch_an_earlier_worker_completes_after_its_appids_settled_is_confirmed_by_the_sweep() {
    let s = start_stack("confirm-sweep", "1m", 600_000).await;
    let worker_queue = scheduling_queue(&s).await;
    let mut watcher = round_watcher(&s, TestRedis::shared().connection_manager().await);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let mut conn = TestRedis::shared().conn().await;

    // WeChat takes the share, the administrator confirms it, and a worker of this version
    // accepts it: the ack completes the batch, and the check, due at once, settles it bound.
    let (batch, _) = accept_confirmed_due_now(&s, &worker_queue, &appid(APPIDS + 70)).await;
    let r = watcher.round(&stopped).await.unwrap();
    assert_eq!(r.checked, 1, "{r:?}");
    let confirmed = batch_confirmed(&s, &batch).await;
    assert_eq!(confirmed.len(), 1);

    // Taken back to the state an earlier worker's bury, reap or cancel leaves when it
    // completes a batch whose accepted appids had all settled: completed, not confirmed. Those
    // scripts left batch.confirmed to a watcher reading batch.completed back.
    let _: () = redis::pipe()
        .cmd("HDEL")
        .arg(s.queue.keys().batch(&batch))
        .arg("confirmed")
        .arg("confirmed_at")
        .ignore()
        .cmd("XDEL")
        .arg(s.queue.keys().events())
        .arg(&confirmed[0].0)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();

    // Only workers of this version have written to this queue: nothing sweeps the batches.
    watcher.round(&stopped).await.unwrap();
    assert!(batch_confirmed(&s, &batch).await.is_empty());
    let sweep: Option<String> = redis::cmd("GET")
        .arg(s.queue.keys().confirm_sweep())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(sweep, None);

    // A worker of an earlier version completes a job. Once the intake has read its events,
    // every follow check sweeps the batches on record: this one is confirmed, once.
    accept_one(&s, &s.queue, &appid(APPIDS + 71)).await;
    for _ in 0..3 {
        watcher.round(&stopped).await.unwrap();
    }
    let confirmed = batch_confirmed(&s, &batch).await;
    assert_eq!(
        confirmed.iter().map(|c| c.1).collect::<Vec<_>>(),
        [1],
        "one batch.confirmed, with its bound appid"
    );
    let flag: Option<String> = redis::cmd("HGET")
        .arg(s.queue.keys().batch(&batch))
        .arg("confirmed")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(flag.as_deref(), Some("1"));
}

#[tokio::test]
async fn a_following_watcher_asks_again_within_half_the_first_offset() {
    let s = start_stack("confirm-follow-every", "2s", 600_000).await;
    // The default claim_idle (60 s) would have it ask every 30 s; the first check comes 2 s
    // after acceptance, so it asks every second.
    let mut watcher = round_watcher_with(
        &s,
        TestRedis::shared().connection_manager().await,
        envshare::confirm::ConfirmSettings {
            schedule: ConfirmSchedule::parse("2s").unwrap(),
            ..envshare::confirm::ConfirmSettings::default()
        },
    );
    watcher.ensure_group().await.unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let r = watcher.round(&stopped).await.unwrap();
    assert_eq!(r.read, 0, "nothing written yet: {r:?}");

    // A worker that leaves scheduling to the intake, as earlier versions did, accepts one.
    let started = Instant::now();
    accept_one(&s, &s.queue, &appid(APPIDS + 80)).await;
    let r = watcher.round(&stopped).await.unwrap();
    assert_eq!(r.read, 0, "asked less than a second ago: {r:?}");
    let r = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = watcher.round(&stopped).await.unwrap();
        if r.read > 0 || started.elapsed() > Duration::from_secs(3) {
            break r;
        }
    };
    assert_eq!(r.scheduled, 1, "{r:?}");
    let (due, info) = schedule(&s).await.into_values().next().expect("scheduled");
    assert_eq!(due, info["accepted_at"].as_u64().unwrap() + 2_000);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "read before its first check falls due: {:?}",
        started.elapsed()
    );
}
