//! The durable queue against a real Redis: protocol, fencing, reaping, batches, events, admin,
//! and a model-based property test of random operation sequences.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use envshare::clock::{Clock, ManualClock};
use envshare::events::{Event, EventKind, read_all};
use envshare::queue::{
    Ack, AppResult, Claim, DeadSelection, EnqueueOptions, FailReason, JobState, Lease, NewJob,
    Outcome, Queue, QueueSettings, WorkerId,
};
use envshare::{AppId, BatchId, EnvId, JobId};
use envshare_tests::{TestRedis, unique_queue};

const LEASE_MS: u64 = 1000;

fn settings() -> QueueSettings {
    QueueSettings {
        max_attempts: 3,
        lease: Duration::from_millis(LEASE_MS),
        dedupe_window: Duration::from_secs(60),
        ..QueueSettings::default()
    }
}

async fn queue(prefix: &str) -> (Queue, ManualClock) {
    queue_with(prefix, settings()).await
}

async fn queue_with(prefix: &str, s: QueueSettings) -> (Queue, ManualClock) {
    let clock = ManualClock::new(1_800_000_000_000);
    let q = Queue::connect(TestRedis::shared().url(), &unique_queue(prefix), s)
        .await
        .expect("connect")
        .with_clock(Arc::new(clock.clone()));
    (q, clock)
}

fn app(i: u64) -> AppId {
    AppId::parse(&format!("wx{i:016x}")).unwrap()
}

fn env(s: &str) -> EnvId {
    EnvId::parse(s).unwrap()
}

fn batch(s: &str) -> BatchId {
    BatchId::parse(s).unwrap()
}

fn new_job(e: &str, appids: &[u64], b: &str) -> NewJob {
    NewJob {
        env: env(e),
        appids: appids.iter().map(|&i| app(i)).collect(),
        batch: batch(b),
        run_at_ms: None,
    }
}

async fn events(q: &Queue) -> Vec<Event> {
    read_all(&mut q.connection(), q.keys())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

async fn claim(q: &Queue, w: &WorkerId, max: usize) -> Vec<Lease> {
    match q.claim(w, max).await.unwrap() {
        Claim::Jobs(l) => l,
        Claim::Paused { .. } => panic!("unexpectedly paused"),
    }
}

fn all_accepted(l: &Lease) -> Outcome {
    Outcome::Done(
        l.job
            .appids
            .iter()
            .map(|a| AppResult::Accepted {
                appid: a.clone(),
                confirm_url: Some(format!("https://confirm.invalid/{a}")),
            })
            .collect(),
    )
}

fn done_acks(leases: &[Lease]) -> Vec<Ack> {
    leases
        .iter()
        .map(|l| Ack::new(l.clone(), all_accepted(l)))
        .collect()
}

fn count_type(ev: &[Event], t: &str) -> usize {
    ev.iter().filter(|e| e.type_name() == t).count()
}

#[tokio::test]
async fn a_completed_job_emits_one_accepted_event_per_appid_and_completes_its_batch() {
    let (q, _) = queue("q-smoke").await;
    let w = WorkerId::generate();
    let r = q
        .enqueue(vec![new_job("prod-1", &[1, 2], "b-1")], EnqueueOptions::default())
        .await
        .unwrap();
    assert_eq!((r.jobs, r.appids, r.skipped_duplicates), (1, 2, 0));
    let leases = claim(&q, &w, 10).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].attempt, 1);
    assert_eq!(leases[0].job.id, r.job_ids[0]);
    let rep = q.complete(done_acks(&leases)).await.unwrap();
    assert_eq!(rep.applied, 1);
    assert!(rep.stale.is_empty());
    assert_eq!(rep.batches_completed, vec![batch("b-1")]);
    let ev = events(&q).await;
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[0].id, format!("{}.0.{}", r.job_ids[0], app(1)));
    match &ev[0].kind {
        EventKind::ShareAccepted {
            confirm_url,
            attempts,
            ..
        } => {
            assert_eq!(*attempts, 1);
            assert!(confirm_url.as_deref().unwrap().starts_with("https://"));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(
        ev[2].kind,
        EventKind::BatchCompleted {
            batch_id: batch("b-1"),
            total: 2,
            accepted: 2,
            failed: 0
        }
    );
    assert!(q.job(&r.job_ids[0]).await.unwrap().is_none(), "done jobs are removed");
    let s = q.stats().await.unwrap();
    assert_eq!((s.ready, s.running, s.dead, s.jobs), (0, 0, 0, 0));
}

#[tokio::test]
async fn fifty_thousand_jobs_enqueued_before_any_claim_are_all_claimed_and_completed() {
    let (q, _) = queue("q-50k").await;
    let jobs: Vec<NewJob> = (0..50_000u64)
        .map(|i| new_job("bulk", &[i], "b-bulk"))
        .collect();
    let r = q.enqueue(jobs, EnqueueOptions::default()).await.unwrap();
    assert_eq!(r.jobs, 50_000);
    assert_eq!(q.stats().await.unwrap().ready, 50_000);
    let w = WorkerId::generate();
    let mut seen = HashSet::new();
    loop {
        let leases = claim(&q, &w, 1000).await;
        if leases.is_empty() {
            break;
        }
        for l in &leases {
            assert!(seen.insert(l.job.id.clone()), "claimed twice: {}", l.job.id);
        }
        let rep = q.complete(done_acks(&leases)).await.unwrap();
        assert_eq!(rep.applied, leases.len());
    }
    assert_eq!(seen.len(), 50_000);
    let b = q.batch(&batch("b-bulk")).await.unwrap().unwrap();
    assert_eq!((b.jobs, b.done_jobs, b.accepted), (50_000, 50_000, 50_000));
    assert!(b.completed);
    let s = q.stats().await.unwrap();
    assert_eq!((s.ready, s.running, s.jobs), (0, 0, 0));
}

#[tokio::test]
async fn a_stale_fencing_token_is_rejected_with_no_partial_write() {
    let (q, clock) = queue("q-stale").await;
    let (w1, w2) = (WorkerId::new("w1"), WorkerId::new("w2"));
    q.enqueue(vec![new_job("e", &[1], "b")], EnqueueOptions::default())
        .await
        .unwrap();
    let first = claim(&q, &w1, 1).await.remove(0);
    clock.advance(Duration::from_millis(LEASE_MS + 1));
    let second = claim(&q, &w2, 1).await.remove(0);
    assert_eq!(first.job.id, second.job.id);
    assert!(second.fence > first.fence);
    assert_eq!(second.attempt, 2, "a reaped lease keeps its attempt counted");

    for outcome in [
        all_accepted(&first),
        Outcome::Dead {
            reason: FailReason::PermanentError,
            errcode: Some(40097),
            errmsg: "bad".into(),
        },
        Outcome::RetryAt {
            at_ms: clock.now_ms(),
            errcode: Some(-1),
            errmsg: "busy".into(),
        },
        Outcome::Defer {
            at_ms: clock.now_ms(),
        },
    ] {
        let rep = q.complete(vec![Ack::new(first.clone(), outcome)]).await.unwrap();
        assert_eq!(rep.applied, 0);
        assert_eq!(rep.stale, vec![first.job.id.clone()]);
    }
    assert_eq!(q.release(&[first.lease_ref()]).await.unwrap(), 0);
    assert_eq!(q.heartbeat(&w1, &[first.lease_ref()]).await.unwrap().len(), 1);
    assert!(events(&q).await.is_empty(), "a stale ack writes no event");
    let info = q.job(&first.job.id).await.unwrap().unwrap();
    assert!(matches!(info.state, Some(JobState::Running { fence, .. }) if fence == second.fence));
    let b = q.batch(&batch("b")).await.unwrap().unwrap();
    assert_eq!((b.done_jobs, b.accepted, b.failed), (0, 0, 0));

    let rep = q.complete(done_acks(&[second])).await.unwrap();
    assert_eq!(rep.applied, 1);
    assert_eq!(count_type(&events(&q).await, "share.accepted"), 1);
}

#[tokio::test]
async fn two_racing_claimers_never_hold_the_same_lease() {
    let (q, _) = queue("q-race").await;
    let jobs: Vec<NewJob> = (0..2000u64).map(|i| new_job("e", &[i], "b")).collect();
    q.enqueue(jobs, EnqueueOptions::default()).await.unwrap();
    let run = |name: &'static str| {
        let q = q.clone();
        tokio::spawn(async move {
            let w = WorkerId::new(name);
            let mut got = Vec::new();
            loop {
                let l = claim(&q, &w, 7).await;
                if l.is_empty() {
                    return got;
                }
                got.extend(l.into_iter().map(|l| (l.job.id, l.fence)));
            }
        })
    };
    let (a, b) = tokio::join!(run("a"), run("b"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(!a.is_empty() && !b.is_empty(), "both claimers got work");
    let ids: HashSet<&JobId> = a.iter().chain(&b).map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 2000);
    assert_eq!(a.len() + b.len(), 2000, "no job leased to both");
    let fences: HashSet<u64> = a.iter().chain(&b).map(|(_, f)| *f).collect();
    assert_eq!(fences.len(), 2000, "every lease has its own fencing token");
}

#[tokio::test]
async fn a_job_whose_worker_keeps_dying_ends_dead_with_lease_expired_after_max_attempts() {
    let (q, clock) = queue("q-dying").await;
    let r = q
        .enqueue(vec![new_job("e", &[1, 2, 3], "b-d")], EnqueueOptions::default())
        .await
        .unwrap();
    let id = r.job_ids[0].clone();
    for attempt in 1..=3 {
        let l = claim(&q, &WorkerId::generate(), 1).await;
        assert_eq!(l.len(), 1, "attempt {attempt} claims it");
        assert_eq!(l[0].attempt, attempt);
        clock.advance(Duration::from_millis(LEASE_MS + 1));
    }
    let rep = q.reap(100).await.unwrap();
    assert_eq!((rep.requeued, rep.buried), (0, 1));
    assert_eq!(rep.batches_completed, vec![batch("b-d")]);
    let info = q.job(&id).await.unwrap().unwrap();
    assert!(matches!(info.state, Some(JobState::Dead { .. })));
    let dead = info.dead.unwrap();
    assert_eq!((dead.reason, dead.attempts), (FailReason::LeaseExpired, 3));
    let ev = events(&q).await;
    let failed: Vec<_> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ShareFailed {
                appid,
                reason,
                attempts,
                ..
            } => Some((appid.clone(), *reason, *attempts, e.id.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 3, "one share.failed per appid");
    for (i, (appid, reason, attempts, eid)) in failed.iter().enumerate() {
        assert_eq!(appid, &app(i as u64 + 1));
        assert_eq!((*reason, *attempts), (FailReason::LeaseExpired, 3));
        assert_eq!(eid, &format!("{id}.0.{appid}"));
    }
    assert_eq!(count_type(&ev, "batch.completed"), 1);
    assert!(claim(&q, &WorkerId::generate(), 1).await.is_empty());
}

#[tokio::test]
async fn batch_completed_is_emitted_once_under_duplicate_acks_reaps_and_admin_retries() {
    let (q, clock) = queue("q-once").await;
    let jobs = vec![new_job("e", &[1], "b-o"), new_job("e", &[2], "b-o")];
    q.enqueue(jobs, EnqueueOptions::default()).await.unwrap();
    let w = WorkerId::new("w");
    let leases = claim(&q, &w, 2).await;
    // First job: acked twice in one call and once more later.
    let ack = Ack::new(leases[0].clone(), all_accepted(&leases[0]));
    let rep = q.complete(vec![ack.clone(), ack.clone()]).await.unwrap();
    assert_eq!((rep.applied, rep.stale.len()), (1, 1));
    // Second job: its lease expires and is re-leased; the late ack of the old lease is stale.
    clock.advance(Duration::from_millis(LEASE_MS + 1));
    let again = claim(&q, &w, 2).await;
    assert_eq!(again.len(), 1);
    assert_eq!(q.complete(done_acks(&leases[1..])).await.unwrap().stale.len(), 1);
    let rep = q
        .complete(vec![Ack::new(
            again[0].clone(),
            Outcome::Dead {
                reason: FailReason::PermanentError,
                errcode: Some(85088),
                errmsg: "no".into(),
            },
        )])
        .await
        .unwrap();
    assert_eq!(rep.batches_completed, vec![batch("b-o")]);
    assert_eq!(q.complete(vec![ack]).await.unwrap().applied, 0);
    // An admin retry reopens the job but the batch never completes twice.
    assert_eq!(q.dead_retry(DeadSelection::All).await.unwrap(), 1);
    let b = q.batch(&batch("b-o")).await.unwrap().unwrap();
    assert_eq!((b.done_jobs, b.failed, b.completed), (1, 0, true));
    let l = claim(&q, &w, 1).await;
    assert_eq!((l[0].job.r#gen, l[0].attempt), (1, 1));
    q.complete(done_acks(&l)).await.unwrap();
    let ev = events(&q).await;
    assert_eq!(count_type(&ev, "batch.completed"), 1);
    match &ev.iter().find(|e| e.type_name() == "batch.completed").unwrap().kind {
        EventKind::BatchCompleted {
            total,
            accepted,
            failed,
            ..
        } => assert_eq!((*total, *accepted, *failed), (2, 1, 1)),
        k => panic!("{k:?}"),
    }
    let b = q.batch(&batch("b-o")).await.unwrap().unwrap();
    assert_eq!((b.done_jobs, b.accepted, b.failed), (2, 2, 0));
    let ids: HashSet<&str> = ev.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), ev.len(), "no event id twice");
}

#[tokio::test]
async fn a_batch_split_over_several_enqueues_completes_only_once_sealed() {
    let (q, _) = queue("q-seal").await;
    let open = EnqueueOptions {
        seal: false,
        ..EnqueueOptions::default()
    };
    q.enqueue(vec![new_job("e", &[1], "b-s")], open).await.unwrap();
    let w = WorkerId::new("w");
    let l = claim(&q, &w, 10).await;
    let rep = q.complete(done_acks(&l)).await.unwrap();
    assert!(rep.batches_completed.is_empty(), "unsealed: more jobs may come");
    q.enqueue(vec![new_job("e", &[2], "b-s")], open).await.unwrap();
    let l = claim(&q, &w, 10).await;
    q.complete(done_acks(&l)).await.unwrap();
    assert_eq!(count_type(&events(&q).await, "batch.completed"), 0);
    assert!(q.seal_batch(&batch("b-s")).await.unwrap(), "sealing a finished batch completes it");
    assert!(!q.seal_batch(&batch("b-s")).await.unwrap());
    assert_eq!(count_type(&events(&q).await, "batch.completed"), 1);
}

#[tokio::test]
async fn the_dedupe_window_skips_queued_pairs_and_force_overrides_it() {
    let (q, clock) = queue("q-dedupe").await;
    let o = EnqueueOptions::default();
    let r = q.enqueue(vec![new_job("e", &[1, 2], "b")], o).await.unwrap();
    assert_eq!((r.jobs, r.appids), (1, 2));
    let r = q
        .enqueue(vec![new_job("e", &[2, 3], "b"), new_job("e", &[1], "b")], o)
        .await
        .unwrap();
    assert_eq!((r.jobs, r.appids, r.skipped_duplicates), (1, 1, 2));
    assert_eq!(r.job_ids.len(), 1);
    let l = claim(&q, &WorkerId::new("w"), 10).await;
    let second = l.iter().find(|l| l.job.id == r.job_ids[0]).unwrap();
    assert_eq!(second.job.appids, vec![app(3)], "the duplicate appid was dropped from the job");
    let forced = EnqueueOptions {
        force: true,
        ..o
    };
    let r = q.enqueue(vec![new_job("e", &[1], "b")], forced).await.unwrap();
    assert_eq!((r.jobs, r.skipped_duplicates), (1, 0));
    let r = q.enqueue(vec![new_job("other", &[1], "b")], o).await.unwrap();
    assert_eq!(r.jobs, 1, "the pair is (env, appid)");
    clock.advance(Duration::from_secs(61));
    let r = q.enqueue(vec![new_job("e", &[1], "b")], o).await.unwrap();
    assert_eq!(r.jobs, 1, "the window ended");
}

#[tokio::test]
async fn burying_a_job_frees_its_pairs_so_a_reimport_retries_them() {
    let (q, _) = queue("q-bury").await;
    let o = EnqueueOptions::default();
    q.enqueue(vec![new_job("e", &[1, 2, 3], "b")], o).await.unwrap();
    let l = claim(&q, &WorkerId::new("w"), 1).await;
    q.complete(vec![Ack::new(
        l[0].clone(),
        Outcome::Done(vec![
            AppResult::Accepted {
                appid: app(1),
                confirm_url: None,
            },
            AppResult::Rejected {
                appid: app(2),
                errcode: Some(-1),
                errmsg: "x".into(),
            },
        ]),
    )])
    .await
    .unwrap();
    let r = q.enqueue(vec![new_job("e", &[1, 2], "b")], o).await.unwrap();
    assert_eq!((r.appids, r.skipped_duplicates), (1, 1), "the rejected pair is free again");
    let l = claim(&q, &WorkerId::new("w"), 1).await;
    q.complete(vec![Ack::new(
        l[0].clone(),
        Outcome::Dead {
            reason: FailReason::RetriesExhausted,
            errcode: Some(-1),
            errmsg: "busy".into(),
        },
    )])
    .await
    .unwrap();
    let r = q.enqueue(vec![new_job("e", &[2], "b")], o).await.unwrap();
    assert_eq!(r.jobs, 1, "the buried pair is free again");
}

#[tokio::test]
async fn a_paused_queue_makes_claim_return_paused_until_resumed_or_over() {
    let (q, clock) = queue("q-pause").await;
    q.enqueue(vec![new_job("e", &[1], "b")], EnqueueOptions::default())
        .await
        .unwrap();
    let until = clock.now_ms() + 5000;
    q.pause_until(until, "45009 daily quota").await.unwrap();
    q.pause_until(until - 1000, "shorter").await.unwrap();
    let w = WorkerId::new("w");
    assert_eq!(
        q.claim(&w, 1).await.unwrap(),
        Claim::Paused {
            until_ms: until,
            reason: "45009 daily quota".into()
        }
    );
    assert_eq!(q.stats().await.unwrap().paused.unwrap().until_ms, until);
    clock.advance(Duration::from_millis(5001));
    assert_eq!(claim(&q, &w, 1).await.len(), 1);
    q.pause_until(clock.now_ms() + 5000, "again").await.unwrap();
    q.resume().await.unwrap();
    assert!(q.stats().await.unwrap().paused.is_none());
}

#[tokio::test]
async fn dead_jobs_can_be_listed_newest_first_retried_and_purged() {
    let (q, clock) = queue("q-dead").await;
    let jobs = (0..5u64).map(|i| new_job("e", &[i], "b")).collect();
    q.enqueue(jobs, EnqueueOptions::default()).await.unwrap();
    let w = WorkerId::new("w");
    let mut order = Vec::new();
    for _ in 0..5 {
        let l = claim(&q, &w, 1).await;
        clock.advance(Duration::from_millis(1));
        order.push(l[0].job.id.clone());
        q.complete(vec![Ack::new(
            l[0].clone(),
            Outcome::Dead {
                reason: FailReason::PermanentError,
                errcode: Some(40101),
                errmsg: "nope".into(),
            },
        )])
        .await
        .unwrap();
    }
    let page = q.dead_list(0, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].id, order[4], "newest first");
    assert_eq!(page[0].reason, Some(FailReason::PermanentError));
    assert_eq!((page[0].errcode, page[0].attempts), (Some(40101), 1));
    assert!(page[0].job.is_some());
    assert_eq!(q.dead_list(4, 10).await.unwrap()[0].id, order[0]);
    assert_eq!(q.stats().await.unwrap().dead, 5);

    let n = q
        .dead_retry(DeadSelection::Ids(vec![order[0].clone(), order[0].clone()]))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let info = q.job(&order[0]).await.unwrap().unwrap();
    assert!(matches!(info.state, Some(JobState::Ready { .. })));
    assert_eq!((info.attempts, info.job.r#gen), (0, 1));
    assert_eq!(q.dead_purge(DeadSelection::Ids(vec![order[1].clone()])).await.unwrap(), 1);
    assert!(q.job(&order[1]).await.unwrap().is_none());
    assert_eq!(q.dead_purge(DeadSelection::All).await.unwrap(), 3);
    let s = q.stats().await.unwrap();
    assert_eq!((s.dead, s.ready, s.jobs), (0, 1, 1));
}

#[tokio::test]
async fn stats_count_jobs_per_state_and_live_workers() {
    let (q, clock) = queue("q-stats").await;
    let mut jobs: Vec<NewJob> = (0..6u64).map(|i| new_job("e", &[i], "b")).collect();
    jobs[5].run_at_ms = Some(clock.now_ms() + 60_000);
    q.enqueue(jobs, EnqueueOptions::default()).await.unwrap();
    clock.advance(Duration::from_millis(250));
    let l = claim(&q, &WorkerId::new("w1"), 2).await;
    q.complete(vec![Ack::new(
        l[0].clone(),
        Outcome::RetryAt {
            at_ms: clock.now_ms() + 10_000,
            errcode: Some(-1),
            errmsg: "busy".into(),
        },
    )])
    .await
    .unwrap();
    q.heartbeat(&WorkerId::new("w2"), &[]).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!((s.ready, s.scheduled, s.running, s.dead, s.jobs), (3, 2, 1, 0, 6));
    assert_eq!(s.oldest_ready_age_ms, Some(250));
    assert_eq!(s.live_workers, 2);
    assert_eq!(s.counters.get("retries"), Some(&1));
    assert_eq!(s.counters.get("enqueued"), Some(&6));
    clock.advance(Duration::from_millis(3 * LEASE_MS + 1));
    q.deregister_worker(&WorkerId::new("w2")).await.unwrap();
    assert_eq!(q.stats().await.unwrap().live_workers, 0);
}

#[tokio::test]
async fn a_heartbeat_keeps_a_lease_and_a_release_refunds_the_attempt() {
    let (q, clock) = queue("q-hb").await;
    q.enqueue(vec![new_job("e", &[1], "b")], EnqueueOptions::default())
        .await
        .unwrap();
    let w = WorkerId::new("w");
    let l = claim(&q, &w, 1).await.remove(0);
    clock.advance(Duration::from_millis(LEASE_MS - 100));
    assert!(q.heartbeat(&w, &[l.lease_ref()]).await.unwrap().is_empty());
    clock.advance(Duration::from_millis(LEASE_MS - 100));
    assert_eq!(q.reap(10).await.unwrap().requeued, 0, "the heartbeat extended the lease");
    assert_eq!(q.release(&[l.lease_ref()]).await.unwrap(), 1);
    let again = claim(&q, &w, 1).await.remove(0);
    assert_eq!(again.attempt, 1, "a released job did not use its attempt");
}

/// Enqueue, claim and complete 10,000 jobs and print the Redis commands per job (from `INFO
/// commandstats`, so run it against a Redis of its own) and the enqueue rate. A measurement,
/// not a check: `cargo test -p envshare-tests --test e2e -- --ignored --nocapture commands_per_job`.
#[tokio::test]
#[ignore]
async fn measure_commands_per_job_for_ten_thousand_jobs() {
    let (q, _) = queue_with(
        "q-measure",
        QueueSettings {
            dedupe_window: Duration::from_secs(60),
            ..QueueSettings::default()
        },
    )
    .await;
    let mut conn = q.connection();
    let calls = |info: String| -> (u64, u64, u64) {
        let (mut all, mut lua, mut scripts) = (0, 0, 0);
        for line in info.lines().filter(|l| l.starts_with("cmdstat_")) {
            let name = &line[8..line.find(':').unwrap()];
            let n: u64 = line.split("calls=").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
            if matches!(name, "evalsha" | "eval") {
                scripts += n;
            } else if !matches!(name, "info" | "script|load" | "client|setinfo" | "hello") {
                all += n;
            }
            lua += 0;
        }
        (all, lua, scripts)
    };
    let info = || async {
        let s: String = redis::cmd("INFO").arg("commandstats").query_async(&mut q.connection()).await.unwrap();
        s
    };
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn).await.unwrap();
    let n = 10_000u64;
    let jobs: Vec<NewJob> = (0..n).map(|i| new_job("m", &[i], "b-m")).collect();
    let t = std::time::Instant::now();
    q.enqueue(jobs, EnqueueOptions::default()).await.unwrap();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let (enq_cmds, _, enq_scripts) = calls(info().await);
    let w = WorkerId::generate();
    loop {
        let l = claim(&q, &w, 100).await;
        if l.is_empty() {
            break;
        }
        q.complete(done_acks(&l)).await.unwrap();
    }
    let (all, _, scripts) = calls(info().await);
    println!(
        "enqueue: {rate:.0} jobs/s, {:.3} cmds/job, {:.4} scripts/job; end to end: {:.2} cmds/job (inside scripts + direct), {:.4} script calls/job",
        enq_cmds as f64 / n as f64,
        enq_scripts as f64 / n as f64,
        all as f64 / n as f64,
        scripts as f64 / n as f64
    );
}
