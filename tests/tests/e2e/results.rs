//! Tests: per-appid result rows. A real Redis, the sandbox over HTTP and in-process workers; the
//! rows are read back through the store and compared with the events, appid by appid.

use std::collections::BTreeMap;
use std::time::Duration;

use envshare::events::{EventKind, FailReason};
use envshare::sandbox::{AppidRule, Fault, SandboxConfig};
use envshare::schedule::ConfirmSchedule;
use envshare::store::{EnqueueOptions, JobOp, NewJob, ResultRow, RowState, WorkerId};
use envshare::worker::WorkerOptions;
use envshare::{AppId, BatchId, EnvId};
use envshare_tests::{TestStack, all_accepted, appid, wait_until};

const TOKEN: &str = "results-static-token";
const ENV: &str = "prod-results";
const APPIDS: u64 = 0x5e_0000;

async fn start_stack(prefix: &str, config: SandboxConfig) -> TestStack {
    let config = SandboxConfig {
        static_tokens: vec![TOKEN.into()],
        ..config
    };
    TestStack::start(prefix, config, |s| {
        s.backoff_base = Duration::from_millis(10);
        s.backoff_max = Duration::from_millis(30);
    })
    .await
}

/// Every row of `batch`, read a page of `page` rows at a time.
async fn all_rows(
    s: &TestStack,
    batch: &BatchId,
    state: Option<RowState>,
    page: usize,
) -> Vec<ResultRow> {
    let mut rows = Vec::new();
    let mut cursor = 0;
    loop {
        let p = s
            .queue
            .results_page(batch, state, cursor, page)
            .await
            .expect("results page");
        assert!(p.rows.len() <= page);
        rows.extend(p.rows);
        match p.next {
            Some(n) => cursor = n,
            None => return rows,
        }
    }
}

async fn wait_completed(s: &TestStack, batch: &BatchId, timeout: Duration) {
    let done = wait_until(timeout, || async {
        s.queue
            .batch(batch)
            .await
            .unwrap()
            .is_some_and(|b| b.completed)
    })
    .await;
    assert!(done, "batch {batch} did not complete");
}

/// The final word of the events on each appid of `batch`: (state, confirm_url, errcode,
/// reason, attempts, job id), as the rows must say it.
type Final = (
    RowState,
    Option<String>,
    Option<i64>,
    Option<String>,
    u32,
    String,
);

fn finals(events: &[EventKind], batch: &BatchId) -> BTreeMap<String, Final> {
    let mut out = BTreeMap::new();
    for e in events {
        match e {
            EventKind::ShareAccepted {
                batch_id,
                env,
                appid,
                confirm_url,
                attempts,
                job_id,
            } if batch_id == batch => {
                out.insert(
                    format!("{env}/{appid}"),
                    (
                        RowState::Accepted,
                        confirm_url.clone(),
                        None,
                        None,
                        *attempts,
                        job_id.to_string(),
                    ),
                );
            }
            EventKind::ShareFailed {
                batch_id,
                env,
                appid,
                attempts,
                errcode,
                reason,
                job_id,
                ..
            } if batch_id == batch => {
                let state = if *reason == FailReason::Cancelled {
                    RowState::Cancelled
                } else {
                    RowState::Failed
                };
                out.insert(
                    format!("{env}/{appid}"),
                    (
                        state,
                        None,
                        *errcode,
                        Some(reason.as_str().to_owned()),
                        *attempts,
                        job_id.to_string(),
                    ),
                );
            }
            _ => {}
        }
    }
    out
}

fn row_finals(rows: &[ResultRow]) -> BTreeMap<String, Final> {
    rows.iter()
        .map(|r| {
            (
                format!("{}/{}", r.env, r.appid),
                (
                    r.state,
                    r.confirm_url.clone(),
                    r.errcode,
                    r.reason.clone(),
                    r.attempts,
                    r.job_id.to_string(),
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_rows_equal_the_events_appid_by_appid_after_retries_token_refresh_and_dead_jobs() {
    // Busy answers at random (retries, some exhausted), refused appids (rejected), a token
    // that expires every few calls (refresh), and a permanent errcode for one job.
    let config = SandboxConfig {
        random_faults: vec![(Fault::BUSY, 0.3)],
        reject_if: Some(AppidRule::suffix("7")),
        token_max_calls: Some(10),
        ..SandboxConfig::default()
    };
    let mut s = start_stack("results-equal", config).await;
    s.settings.max_attempts = 3;
    // Component mode: the worker fetches its token with the ticket and refreshes it on 42001.
    s.settings.access_token = None;
    s.settings.component_appid = Some(AppId::parse(SandboxConfig::COMPONENT_APPID).unwrap());
    s.settings.component_appsecret = Some(SandboxConfig::COMPONENT_SECRET.into());
    s.set_ticket(SandboxConfig::VERIFY_TICKET).await;
    let jobs: Vec<Vec<AppId>> = (0..40)
        .map(|j| (0..3).map(|i| appid(APPIDS + j * 3 + i)).collect())
        .collect();
    let (batch, _) = s.enqueue(ENV, &jobs).await;

    // Before any worker: every pair is a pending row, in enqueue order.
    let rows = all_rows(&s, &batch, None, 1000).await;
    assert_eq!(rows.len(), 120);
    assert!(rows.iter().all(|r| r.state == RowState::Pending));
    assert!(rows.iter().enumerate().all(|(i, r)| r.seq == i as u64));
    assert_eq!(rows[5].appid, appid(APPIDS + 5));

    s.sandbox.script(
        envshare::wechat::Endpoint::ShareEnv,
        [Some(Fault::Errcode(40097))],
    );
    let w = s.worker().await;
    wait_completed(&s, &batch, Duration::from_secs(30)).await;
    w.stop().await;
    assert!(s.sandbox.token_fetches() >= 2, "the token was refreshed");

    let events = s.events().await;
    let want = finals(&events, &batch);
    let rows = all_rows(&s, &batch, None, 7).await;
    assert_eq!(row_finals(&rows), want, "rows and events disagree");
    let counts = s.queue.results_counts(&batch).await.unwrap();
    assert_eq!(counts[&RowState::Pending], 0);
    assert!(counts[&RowState::Failed] > 0, "{counts:?}");
    assert!(counts[&RowState::Accepted] > 0, "{counts:?}");
    let failed_reasons: Vec<_> = rows.iter().filter_map(|r| r.reason.clone()).collect();
    assert!(
        failed_reasons.iter().any(|r| r == "rejected"),
        "{failed_reasons:?}"
    );
    assert!(
        failed_reasons.iter().any(|r| r == "permanent_error"),
        "{failed_reasons:?}"
    );
    assert!(
        rows.iter()
            .filter(|r| r.state == RowState::Accepted)
            .all(|r| r
                .confirm_url
                .as_deref()
                .is_some_and(|u| u.contains(r.appid.as_str()))),
        "accepted rows carry their confirmation URL"
    );

    // The dead jobs, retried on a healthy API, take their rows back through pending.
    s.sandbox.configure(|c| c.random_faults.clear());
    let retried = s
        .queue
        .dead_retry(envshare::store::DeadSelection::All)
        .await
        .unwrap();
    assert!(retried > 0);
    let pending = all_rows(&s, &batch, Some(RowState::Pending), 1000).await;
    assert!(!pending.is_empty());
    assert!(
        pending
            .iter()
            .all(|r| r.errcode.is_none() && r.attempts == 0)
    );
    let w = s.worker().await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            s.queue.results_counts(&batch).await.unwrap()[&RowState::Pending] == 0
        })
        .await
    );
    w.stop().await;
    let events = s.events().await;
    let rows = all_rows(&s, &batch, None, 1000).await;
    assert_eq!(
        row_finals(&rows),
        finals(&events, &batch),
        "after the dead retry"
    );
}

#[tokio::test]
async fn a_state_filter_pages_through_exactly_the_rows_in_that_state() {
    let config = SandboxConfig {
        reject_if: Some(AppidRule::suffix("3")),
        ..SandboxConfig::default()
    };
    let s = start_stack("results-filter", config).await;
    let jobs: Vec<Vec<AppId>> = (0..250)
        .map(|j| (0..10).map(|i| appid(APPIDS + j * 10 + i)).collect())
        .collect();
    let (batch, _) = s.enqueue(ENV, &jobs).await;
    let w = s.worker().await;
    wait_completed(&s, &batch, Duration::from_secs(30)).await;
    w.stop().await;

    let failed = all_rows(&s, &batch, Some(RowState::Failed), 7).await;
    let want: Vec<AppId> = (0..2500)
        .map(|i| appid(APPIDS + i))
        .filter(|a| a.as_str().ends_with('3'))
        .collect();
    assert_eq!(
        failed.iter().map(|r| r.appid.clone()).collect::<Vec<_>>(),
        want
    );
    assert!(failed.windows(2).all(|w| w[0].seq < w[1].seq));
    let accepted = all_rows(&s, &batch, Some(RowState::Accepted), 1000).await;
    assert_eq!(accepted.len() + failed.len(), 2500);
    assert!(
        all_rows(&s, &batch, Some(RowState::Pending), 100)
            .await
            .is_empty()
    );
    let counts = s.queue.results_counts(&batch).await.unwrap();
    assert_eq!(counts[&RowState::Failed], want.len() as u64);
}

#[tokio::test]
async fn a_cancelled_batch_ends_its_waiting_appids_cancelled_and_completes_once() {
    let s = start_stack("results-cancel", SandboxConfig::default()).await;
    let batch = BatchId::generate();
    let env = EnvId::parse(ENV).unwrap();
    // Two jobs ready, three scheduled an hour from now; no worker runs.
    let later = s.queue.now_ms() + 3_600_000;
    let jobs: Vec<NewJob> = (0..5u64)
        .map(|j| NewJob {
            op: JobOp::Share,
            env: env.clone(),
            appids: (0..2).map(|i| appid(APPIDS + j * 2 + i)).collect(),
            batch: batch.clone(),
            run_at_ms: (j >= 2).then_some(later),
        })
        .collect();
    s.queue
        .enqueue(jobs, EnqueueOptions::default())
        .await
        .unwrap();
    // One of the ready jobs is leased: it is left to finish.
    let claim = s.queue.claim(&WorkerId::new("w1"), 1).await.unwrap();
    let envshare::store::Claim::Jobs(leases) = claim else {
        panic!("not paused")
    };
    assert_eq!(leases.len(), 1);

    let report = s.queue.cancel_batch(&batch).await.unwrap().unwrap();
    assert_eq!(
        (
            report.cancelled_jobs,
            report.cancelled_appids,
            report.running_jobs
        ),
        (4, 8, 1)
    );
    assert!(!report.already_completed);
    let counts = s.queue.results_counts(&batch).await.unwrap();
    assert_eq!(
        (counts[&RowState::Cancelled], counts[&RowState::Pending]),
        (8, 2)
    );
    assert_eq!(s.stats().await.ready + s.stats().await.scheduled, 0);

    // The leased job finishes: the batch completes, once.
    let ack = envshare::store::Ack::new(
        leases[0].clone(),
        all_accepted(&leases[0].job, Some("https://confirm/")),
    );
    s.queue.complete(vec![ack]).await.unwrap();
    let events = s.events().await;
    let completed: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, EventKind::BatchCompleted { .. }))
        .collect();
    assert_eq!(
        completed,
        [&EventKind::BatchCompleted {
            batch_id: batch.clone(),
            total: 10,
            accepted: 2,
            failed: 8
        }]
    );
    let rows = all_rows(&s, &batch, None, 1000).await;
    assert_eq!(row_finals(&rows), finals(&events, &batch));
    assert!(
        rows.iter()
            .filter(|r| r.state == RowState::Cancelled)
            .all(|r| r.reason.as_deref() == Some("cancelled"))
    );

    // Cancelling again changes nothing and says the batch had completed.
    let again = s.queue.cancel_batch(&batch).await.unwrap().unwrap();
    assert!(again.already_completed);
    assert_eq!(s.events().await.len(), events.len());
    assert!(
        s.queue
            .cancel_batch(&BatchId::generate())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn find_shows_an_appid_in_every_batch_on_record_newest_first_pending_pairs_too() {
    let s = start_stack("results-find", SandboxConfig::default()).await;
    let a = appid(APPIDS + 1);
    let (first, _) = s.enqueue(ENV, &[vec![a.clone(), appid(APPIDS + 2)]]).await;
    let w = s.worker().await;
    wait_completed(&s, &first, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (second, _) = s.enqueue("prod-other", &[vec![a.clone()]]).await;
    wait_completed(&s, &second, Duration::from_secs(10)).await;
    w.stop().await;
    // With no worker running, a third batch's pair stays pending: found with its job and row
    // number (the third pair of the batch, in its second job).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (third, jobs) = s
        .enqueue(
            ENV,
            &[vec![appid(APPIDS + 3)], vec![appid(APPIDS + 4), a.clone()]],
        )
        .await;

    let found = s.queue.find_appid(&a).await.unwrap();
    let batches: Vec<_> = found
        .iter()
        .map(|r| (r.batch_id.clone(), r.env.to_string()))
        .collect();
    assert_eq!(
        batches,
        [
            (third, ENV.to_owned()),
            (second, "prod-other".to_owned()),
            (first, ENV.to_owned())
        ]
    );
    let pending = &found[0];
    assert_eq!(
        (pending.state, pending.seq, &pending.job_id, &pending.appid),
        (RowState::Pending, 2, &jobs[1], &a)
    );
    assert!(
        found[1..]
            .iter()
            .all(|r| r.state == RowState::Accepted && r.appid == a)
    );
    assert!(
        s.queue
            .find_appid(&appid(APPIDS + 99))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn confirmation_moves_accepted_rows_to_bound_or_unconfirmed_as_the_events_say() {
    let mut s = start_stack("results-confirm", SandboxConfig::default()).await;
    s.settings.confirm_schedule = ConfirmSchedule::parse("100ms,200ms").unwrap();
    s.settings.confirm_window = Duration::from_millis(1_500);
    let (a, b) = (appid(APPIDS + 1), appid(APPIDS + 2));
    let (batch, _) = s.enqueue(ENV, &[vec![a.clone(), b.clone()]]).await;
    // As a traced import records its trace id in the batch (enqueue.lua): the batch events
    // the scripts write carry it.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut conn = envshare_tests::TestRedis::shared().conn().await;
    let _: () = redis::cmd("HSET")
        .arg(s.queue.keys().batch(&batch))
        .arg("trace")
        .arg(trace)
        .query_async(&mut conn)
        .await
        .unwrap();
    let options = WorkerOptions {
        confirm_poll: Duration::from_millis(30),
        confirm_lease: Duration::from_secs(1),
        confirm_claim_idle: Duration::from_secs(1),
        ..WorkerOptions::default()
    };
    let w = s.worker_with(s.settings.clone(), options).await;
    wait_completed(&s, &batch, Duration::from_secs(10)).await;
    assert!(s.sandbox.confirm(ENV, a.as_str()));
    let confirmed = wait_until(Duration::from_secs(10), || async {
        s.queue
            .batch_confirmation(&batch)
            .await
            .is_ok_and(|c| c.confirmed)
    })
    .await;
    w.stop().await;
    assert!(confirmed);
    let rows = all_rows(&s, &batch, None, 10).await;
    let by_appid: BTreeMap<_, _> = rows.iter().map(|r| (r.appid.clone(), r)).collect();
    assert_eq!(by_appid[&a].state, RowState::Bound);
    assert_eq!(by_appid[&b].state, RowState::Unconfirmed);
    assert!(
        by_appid[&b].confirm_url.is_some(),
        "an unconfirmed row keeps its URL to resend"
    );
    let events = envshare::store::read_all(&mut conn, s.queue.keys())
        .await
        .unwrap();
    let batch_events: Vec<_> = events
        .iter()
        .filter(|e| {
            matches!(
                e.event.kind,
                EventKind::BatchCompleted { .. } | EventKind::BatchConfirmed { .. }
            )
        })
        .map(|e| (e.event.kind.type_name(), e.event.trace_id.as_deref()))
        .collect();
    assert_eq!(
        batch_events,
        [
            ("batch.completed", Some(trace)),
            ("batch.confirmed", Some(trace))
        ]
    );
}

#[tokio::test]
async fn a_completed_batch_and_its_rows_expire_after_the_results_ttl_and_leave_the_list() {
    let s = start_stack("results-ttl", SandboxConfig::default()).await;
    let settings = envshare::store::QueueSettings {
        results_ttl: Duration::from_millis(2_000),
        ..envshare::store::QueueSettings::default()
    };
    let queue = envshare::store::Queue::connect(
        envshare_tests::TestRedis::shared().url(),
        s.name(),
        settings,
    )
    .await
    .unwrap();
    let batch = BatchId::generate();
    let job = NewJob {
        op: JobOp::Share,
        env: EnvId::parse(ENV).unwrap(),
        appids: vec![appid(APPIDS + 1)],
        batch: batch.clone(),
        run_at_ms: None,
    };
    queue
        .enqueue(vec![job], EnqueueOptions::default())
        .await
        .unwrap();
    // Not completed: no expiry yet, however long it waits.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(all_rows(&s, &batch, None, 10).await.len(), 1);
    let w = s.worker().await;
    wait_completed(&s, &batch, Duration::from_secs(10)).await;
    w.stop().await;
    assert_eq!(
        queue.list_batches(0, 10).await.unwrap(),
        std::slice::from_ref(&batch)
    );
    let gone = wait_until(Duration::from_secs(5), || async {
        queue.batch(&batch).await.unwrap().is_none()
    })
    .await;
    assert!(gone, "the batch record expired");
    assert!(all_rows(&s, &batch, None, 10).await.is_empty());
    assert_eq!(
        queue.results_memory(&batch).await.unwrap(),
        0,
        "every result key expired"
    );
    assert!(queue.list_batches(0, 10).await.unwrap().is_empty());
}
