//! Idle workers wait on the queue's wake channel and the next due time, not on a poll: a job
//! enqueued into an idle queue, a retry falling due and a resume each start work long before
//! the (here very long) poll interval would. And the claim's housekeeping flag: reaping and
//! promoting happen only when asked for, and an under-filled claim reports the next due time.
//! And the running set stays a skip list however few leases it holds, invisible to counts,
//! reaps and due times.

use std::sync::Arc;
use std::time::Duration;

use envshare::clock::{Clock, ManualClock};
use envshare::sandbox::{Fault, SandboxConfig};
use envshare::store::{Ack, Claim, EnqueueOptions, NewJob, Queue, QueueSettings, WorkerId};
use envshare::wechat::Endpoint;
use envshare::worker::WorkerOptions;
use envshare::{BatchId, EnvId};
use envshare_tests::{RunningWorker, TestStack};
use envshare_tests::{TestRedis, all_accepted, appid, unique_queue, wait_until};

const TOKEN: &str = "wake-token";

/// A poll interval no test waits out: anything that happens sooner came from a wake message or
/// a due time.
const NEVER: Duration = Duration::from_secs(120);

async fn idle_stack(prefix: &str) -> (TestStack, RunningWorker) {
    let stack = TestStack::start(
        prefix,
        SandboxConfig {
            static_tokens: vec![TOKEN.into()],
            ..SandboxConfig::default()
        },
        |_| {},
    )
    .await;
    let worker = stack
        .worker_with(
            stack.settings.clone(),
            WorkerOptions {
                idle_poll: NEVER,
                ..WorkerOptions::default()
            },
        )
        .await;
    // Let the worker find the queue empty and go to sleep.
    tokio::time::sleep(Duration::from_millis(500)).await;
    (stack, worker)
}

async fn done(stack: &TestStack, n: u64) -> bool {
    let queue = stack.queue.clone();
    wait_until(Duration::from_secs(10), move || {
        let queue = queue.clone();
        async move {
            queue
                .stats()
                .await
                .map(|s| {
                    s.jobs == 0 && s.counters.get("completed").copied().unwrap_or(0) >= n as i64
                })
                .unwrap_or(false)
        }
    })
    .await
}

#[tokio::test]
async fn a_job_enqueued_into_an_idle_queue_starts_on_the_wake_message() {
    let (stack, worker) = idle_stack("wake-enqueue").await;
    let started = std::time::Instant::now();
    stack.enqueue("prod", &[vec![appid(1)]]).await;
    assert!(
        done(&stack, 1).await,
        "an idle worker polling every {NEVER:?} ran the job only through the wake message"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the job ran within seconds, not at the next poll"
    );
    // A second job after another idle spell: the subscription stays up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.enqueue("prod", &[vec![appid(2)]]).await;
    assert!(
        done(&stack, 2).await,
        "the second job ran on its wake message"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_retry_runs_when_it_falls_due_while_the_worker_sleeps() {
    let (stack, worker) = idle_stack("wake-retry").await;
    // Two busy answers: the job is retried twice (backoff 20-100 ms), each time from the
    // scheduled set, with the worker otherwise idle.
    stack
        .sandbox
        .script(Endpoint::ShareEnv, [Some(Fault::BUSY), Some(Fault::BUSY)]);
    stack.enqueue("prod", &[vec![appid(3)]]).await;
    assert!(
        done(&stack, 1).await,
        "the retries ran at their due times, not at the next poll"
    );
    assert_eq!(
        stack.sandbox.calls(Endpoint::ShareEnv),
        3,
        "two busy answers, then the share"
    );
    let stats = stack.queue.stats().await.expect("stats");
    assert_eq!(stats.counters.get("retries").copied(), Some(2));
    worker.stop().await;
}

#[tokio::test]
async fn resume_wakes_a_paused_idle_worker() {
    let (stack, worker) = idle_stack("wake-resume").await;
    stack
        .queue
        .pause_until(stack.queue.now_ms() + 3_600_000, "maintenance")
        .await
        .expect("pause");
    stack.enqueue("prod", &[vec![appid(4)]]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack.queue.stats().await.expect("stats").ready,
        1,
        "paused: the job waits"
    );
    stack.queue.resume().await.expect("resume");
    assert!(done(&stack, 1).await, "resume published a wake message");
    worker.stop().await;
}

async fn manual_queue(prefix: &str) -> (Queue, ManualClock) {
    let clock = ManualClock::new(1_800_000_000_000);
    let settings = QueueSettings {
        lease: Duration::from_millis(1_000),
        ..QueueSettings::default()
    };
    let q = Queue::connect(TestRedis::shared().url(), &unique_queue(prefix), settings)
        .await
        .expect("connect")
        .with_clock(Arc::new(clock.clone()));
    (q, clock)
}

fn job(n: u64, run_at_ms: Option<u64>) -> NewJob {
    NewJob {
        op: envshare::store::JobOp::Share,
        env: EnvId::parse("prod").unwrap(),
        appids: vec![appid(n)],
        batch: BatchId::parse("wake-b").unwrap(),
        run_at_ms,
    }
}

const FORCE: EnqueueOptions = EnqueueOptions {
    force: true,
    seal: false,
};

#[tokio::test]
async fn claims_reap_and_promote_only_when_asked_and_report_the_next_due_time() {
    let (q, clock) = manual_queue("wake-housekeep").await;
    let now = clock.now_ms();
    let w = WorkerId::generate();
    q.enqueue(vec![job(1, None), job(2, Some(now + 5_000))], FORCE)
        .await
        .expect("enqueue");

    // One ready job: leased; the claim was under-filled, so it names the next due time: the
    // lease deadline (now + 1 s) comes before the scheduled job (now + 5 s).
    let r = q.claim_with(&w, 10, false).await.expect("claim");
    let Claim::Jobs(leases) = r.claim else {
        panic!("not paused")
    };
    assert_eq!(leases.len(), 1);
    assert_eq!(r.next_due_ms, Some(now + 1_000));

    // Past both: without housekeeping nothing is reaped or promoted.
    clock.advance(Duration::from_secs(6));
    let r = q.claim_with(&w, 10, false).await.expect("claim");
    assert!(matches!(r.claim, Claim::Jobs(ref l) if l.is_empty()));
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.running, stats.scheduled), (1, 1));
    assert_eq!(
        r.next_due_ms,
        Some(now + 1_000),
        "the expired lease is due already"
    );

    // With it: the expired lease goes back to ready and the due job is promoted; both leased.
    let r = q.claim_with(&w, 10, true).await.expect("claim");
    let Claim::Jobs(leases) = r.claim else {
        panic!("not paused")
    };
    assert_eq!(leases.len(), 2);
    // A full claim says nothing about due times.
    let r = q.claim_with(&w, 2, true).await.expect("claim");
    assert!(matches!(r.claim, Claim::Jobs(ref l) if l.is_empty()));
    assert_eq!(
        r.next_due_ms,
        Some(clock.now_ms() + 1_000),
        "the new leases' deadline"
    );
}

/// How Redis stores `key` (`OBJECT ENCODING`: listpack, skiplist, hashtable, …).
async fn encoding(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> String {
    redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(key)
        .query_async(conn)
        .await
        .expect("OBJECT ENCODING")
}

/// A housekeeping claim turns even a small running set into a skip list (a listpack makes
/// every ZADD and ZREM walk it), and the pin member that keeps it one is no lease: not counted,
/// never reaped, no due time, and the set stays pinned when the last lease ends.
#[tokio::test]
async fn the_running_set_stays_a_skip_list_and_its_pin_is_no_lease() {
    let (q, clock) = manual_queue("wake-pin").await;
    let w = WorkerId::generate();
    q.enqueue((1..=3).map(|n| job(n, None)).collect(), FORCE)
        .await
        .expect("enqueue");
    let r = q.claim_with(&w, 10, true).await.expect("claim");
    let Claim::Jobs(leases) = r.claim else {
        panic!("not paused")
    };
    assert_eq!(leases.len(), 3);
    let mut conn = TestRedis::shared().conn().await;
    let running = q.keys().running();
    assert_eq!(
        encoding(&mut conn, &running).await,
        "skiplist",
        "3 leases, yet no listpack"
    );
    assert_eq!(q.stats().await.expect("stats").running, 3);

    let acks = leases
        .into_iter()
        .map(|l| {
            let done = all_accepted(&l.job, None);
            Ack::new(l, done)
        })
        .collect();
    q.complete(acks).await.expect("complete");
    // Long past any lease: a housekeeping claim reaps nothing and names no due time.
    clock.advance(Duration::from_secs(3_600));
    let r = q.claim_with(&w, 10, true).await.expect("claim");
    assert!(matches!(r.claim, Claim::Jobs(ref l) if l.is_empty()));
    assert_eq!(r.next_due_ms, None, "the pin is not a lease running out");
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.running, stats.ready, stats.jobs), (0, 0, 0));
    assert_eq!(
        encoding(&mut conn, &running).await,
        "skiplist",
        "kept for the next leases"
    );
    let members: u64 = redis::cmd("ZCARD")
        .arg(&running)
        .query_async(&mut conn)
        .await
        .expect("ZCARD");
    assert_eq!(members, 1, "only the pin is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_import_writes_skip_lists_and_a_row_hash_table_with_no_member_of_its_own() {
    let (q, _clock) = manual_queue("wake-wide").await;
    let mut conn = TestRedis::shared().conn().await;
    // 300 jobs into an empty queue: below the listpack limits, every ZADD into `ready` and
    // `dedupe` and every row into the batch's hash would scan what came before.
    q.enqueue(
        (1..=300).map(|n| job(n, None)).collect(),
        EnqueueOptions::default(),
    )
    .await
    .expect("enqueue");
    let batch = BatchId::parse("wake-b").unwrap();
    let k = q.keys();
    for (key, want) in [
        (k.ready(), "skiplist"),
        (k.dedupe(), "skiplist"),
        (k.results(&batch), "hashtable"),
    ] {
        assert_eq!(encoding(&mut conn, &key).await, want, "{key}");
    }
    let (ready, dedupe): (u64, u64) = redis::pipe()
        .cmd("ZCARD")
        .arg(k.ready())
        .cmd("ZCARD")
        .arg(k.dedupe())
        .query_async(&mut conn)
        .await
        .expect("ZCARD");
    assert_eq!(
        (ready, dedupe),
        (300, 300),
        "the widening member is gone again"
    );
    assert_eq!(q.stats().await.expect("stats").ready, 300);
    // The row hash's pin is no row: every pair is still pending, and pages show 300 rows.
    let counts = q.results_counts(&batch).await.expect("counts");
    assert_eq!(counts[&envshare::store::RowState::Pending], 300);
    let page = q
        .results_page(&batch, None, 0, 1000)
        .await
        .expect("results page");
    assert_eq!(page.rows.len(), 300);
    assert!(
        page.rows
            .iter()
            .all(|r| r.state == envshare::store::RowState::Pending)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widening_member_left_behind_is_dropped_by_the_next_claim_and_enqueue() {
    // What a script that failed between its widening ZADD and the ZREM would leave.
    let (q, _clock) = manual_queue("wake-stray").await;
    let mut conn = TestRedis::shared().conn().await;
    let stray =
        ":encoding: a member longer than zset-max-listpack-value turns the set into a skip list";
    let k = q.keys();
    let _: () = redis::pipe()
        .cmd("ZADD")
        .arg(k.ready())
        .arg("-inf")
        .arg(stray)
        .ignore()
        .cmd("ZADD")
        .arg(k.dedupe())
        .arg("-inf")
        .arg(stray)
        .ignore()
        .query_async(&mut conn)
        .await
        .expect("ZADD");
    q.enqueue((1..=2).map(|n| job(n, None)).collect(), FORCE)
        .await
        .expect("enqueue");
    let r = q
        .claim_with(&WorkerId::generate(), 10, true)
        .await
        .expect("claim");
    let Claim::Jobs(leases) = r.claim else {
        panic!("not paused")
    };
    assert_eq!(leases.len(), 2, "only the real jobs are claimed");
    let (ready, in_dedupe): (u64, Option<f64>) = redis::pipe()
        .cmd("ZCARD")
        .arg(k.ready())
        .cmd("ZSCORE")
        .arg(k.dedupe())
        .arg(stray)
        .query_async(&mut conn)
        .await
        .expect("ZCARD");
    assert_eq!(ready, 0, "the stray member left ready");
    assert_eq!(in_dedupe, None, "the dedupe trim removed it");
    // Claimed like a job (claims read no payloads), then dropped: no lease, no state record.
    let (leased, state): (Option<f64>, bool) = redis::pipe()
        .cmd("ZSCORE")
        .arg(k.running())
        .arg(stray)
        .cmd("HEXISTS")
        .arg(k.state())
        .arg(stray)
        .query_async(&mut conn)
        .await
        .expect("ZSCORE");
    assert_eq!(leased, None, "the stray member holds no lease");
    assert!(!state, "the stray member has no state record");
}
