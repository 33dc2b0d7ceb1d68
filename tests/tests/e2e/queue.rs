//! The durable queue against a real Redis: protocol, fencing, reaping, batches, events, admin,
//! and a model-based property test of random operation sequences.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use envshare::clock::{Clock, ManualClock};
use envshare::events::FailReason;
use envshare::events::{Event, EventKind};
use envshare::store::read_all;
use envshare::store::{
    Ack, AppResult, Claim, DeadSelection, EnqueueOptions, JobState, Lease, NewJob, Outcome, Queue,
    QueueSettings, RowState, WorkerId,
};
use envshare::{AppId, BatchId, EnvId, JobId};
use envshare_tests::{TestRedis, all_accepted, appid, unique_queue};

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

fn env(s: &str) -> EnvId {
    EnvId::parse(s).unwrap()
}

fn batch(s: &str) -> BatchId {
    BatchId::parse(s).unwrap()
}

fn new_job(e: &str, appids: &[u64], b: &str) -> NewJob {
    NewJob {
        op: envshare::store::JobOp::Share,
        env: env(e),
        appids: appids.iter().map(|&i| appid(i)).collect(),
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

fn accepted(l: &Lease) -> Outcome {
    all_accepted(&l.job, Some("https://confirm.invalid/"))
}

fn done_acks(leases: &[Lease]) -> Vec<Ack> {
    leases
        .iter()
        .map(|l| Ack::new(l.clone(), accepted(l)))
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
        .enqueue(
            vec![new_job("prod-1", &[1, 2], "b-1")],
            EnqueueOptions::default(),
        )
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
    assert_eq!(ev[0].id, format!("{}.0.{}", r.job_ids[0], appid(1)));
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
    assert!(
        q.job(&r.job_ids[0]).await.unwrap().is_none(),
        "done jobs are removed"
    );
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
    assert_eq!(
        second.attempt, 2,
        "a reaped lease keeps its attempt counted"
    );

    for outcome in [
        accepted(&first),
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
        let rep = q
            .complete(vec![Ack::new(first.clone(), outcome)])
            .await
            .unwrap();
        assert_eq!(rep.applied, 0);
        assert_eq!(rep.stale, vec![first.job.id.clone()]);
    }
    assert_eq!(q.release(&[first.lease_ref()]).await.unwrap(), 0);
    assert_eq!(
        q.heartbeat(&w1, &[first.lease_ref()]).await.unwrap().len(),
        1
    );
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

/// claim.lua keeps its max in 1..=1000 itself: the worker always asks for at least one, but a
/// max of "0" from any other caller would be `ZRANGE ready 0 -1`, the whole ready set.
#[tokio::test]
async fn the_claim_script_asked_for_no_job_leases_one_not_all() {
    let (q, clock) = queue("q-claim-zero").await;
    let jobs: Vec<NewJob> = (0..3u64).map(|i| new_job("e", &[i], "b")).collect();
    q.enqueue(jobs, EnqueueOptions::default()).await.unwrap();
    let lua = [
        include_str!("../../../shared/src/store/lua/prelude.lua"),
        include_str!("../../../shared/src/store/lua/lib.lua"),
        include_str!("../../../shared/src/store/lua/claim.lua"),
    ]
    .concat();
    let script = redis::Script::new(&lua);
    let mut inv = script.prepare_invoke();
    for k in q.keys().script_keys() {
        inv.key(k);
    }
    let now = clock.now_ms();
    inv.arg(now)
        .arg("2027-01-15T08:00:00.000Z")
        .arg(q.keys().prefix())
        .arg(1000)
        .arg("outside-caller")
        .arg("0")
        .arg(LEASE_MS)
        .arg(3)
        .arg(100)
        .arg(100)
        .arg("1");
    let mut conn = TestRedis::shared().conn().await;
    let _: redis::Value = inv.invoke_async(&mut conn).await.expect("claim runs");
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.running, stats.ready), (1, 2), "{stats:?}");
}

#[tokio::test]
async fn a_job_whose_worker_keeps_dying_ends_dead_with_lease_expired_after_max_attempts() {
    let (q, clock) = queue("q-dying").await;
    let r = q
        .enqueue(
            vec![new_job("e", &[1, 2, 3], "b-d")],
            EnqueueOptions::default(),
        )
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
    for (i, (a, reason, attempts, eid)) in failed.iter().enumerate() {
        assert_eq!(a, &appid(i as u64 + 1));
        assert_eq!((*reason, *attempts), (FailReason::LeaseExpired, 3));
        assert_eq!(eid, &format!("{id}.0.{a}"));
    }
    assert_eq!(count_type(&ev, "batch.completed"), 1);
    assert!(claim(&q, &WorkerId::generate(), 1).await.is_empty());
}

/// One complete call over two batches, a job with an accepted and a rejected appid, and (with
/// `dup`) one ack sent twice: complete.lua then writes the rows one by one instead of the
/// worker's blocks. Returns every row as (batch, seq, state, appid, errcode, url) and the row
/// numbers each state's bitmap holds.
async fn rows_after_one_complete_call(dup: bool) -> (Vec<String>, Vec<String>) {
    let (q, _clock) = queue(if dup { "q-rows-dup" } else { "q-rows" }).await;
    let jobs = vec![
        new_job("e", &[1, 2], "b-one"),
        new_job("e", &[3], "b-one"),
        new_job("e", &[4, 5], "b-one"),
        new_job("e", &[6], "b-two"),
    ];
    q.enqueue(jobs, EnqueueOptions::default()).await.unwrap();
    let leases = claim(&q, &WorkerId::new("w"), 4).await;
    assert_eq!(leases.len(), 4);
    let mut acks: Vec<Ack> = leases
        .iter()
        .map(|l| {
            let results = l
                .job
                .appids
                .iter()
                .map(|a| {
                    if *a == appid(2) {
                        AppResult::Rejected {
                            appid: a.clone(),
                            errcode: Some(85088),
                            errmsg: "no".into(),
                        }
                    } else {
                        AppResult::Accepted {
                            appid: a.clone(),
                            confirm_url: Some(format!("https://confirm.invalid/{a}")),
                        }
                    }
                })
                .collect();
            Ack::new(l.clone(), Outcome::Done(results))
        })
        .collect();
    if dup {
        acks.insert(1, acks[0].clone());
    }
    let rep = q.complete(acks).await.unwrap();
    assert_eq!((rep.applied, rep.stale.len()), (4, usize::from(dup)));
    let mut rows = Vec::new();
    let mut bits = Vec::new();
    for b in ["b-one", "b-two"] {
        let page = q.results_page(&batch(b), None, 0, 100).await.unwrap();
        for r in page.rows {
            rows.push(format!(
                "{b} {} {} {} {:?} {:?}",
                r.seq, r.state, r.appid, r.errcode, r.confirm_url
            ));
        }
        for state in [RowState::Accepted, RowState::Failed, RowState::Pending] {
            let page = q
                .results_page(&batch(b), Some(state), 0, 100)
                .await
                .unwrap();
            let seqs: Vec<u64> = page.rows.iter().map(|r| r.seq).collect();
            bits.push(format!("{b} {state} {seqs:?}"));
        }
    }
    (rows, bits)
}

#[tokio::test]
async fn a_complete_call_writes_each_row_and_bit_once_whether_every_ack_applies_or_not() {
    let url = |i: u64| format!("Some(\"https://confirm.invalid/{}\")", appid(i));
    let expected_rows = vec![
        format!("b-one 0 accepted {} None {}", appid(1), url(1)),
        format!("b-one 1 failed {} Some(85088) None", appid(2)),
        format!("b-one 2 accepted {} None {}", appid(3), url(3)),
        format!("b-one 3 accepted {} None {}", appid(4), url(4)),
        format!("b-one 4 accepted {} None {}", appid(5), url(5)),
        format!("b-two 0 accepted {} None {}", appid(6), url(6)),
    ];
    let expected_bits = vec![
        "b-one accepted [0, 2, 3, 4]",
        "b-one failed [1]",
        "b-one pending []",
        "b-two accepted [0]",
        "b-two failed []",
        "b-two pending []",
    ];
    for dup in [false, true] {
        let (rows, bits) = rows_after_one_complete_call(dup).await;
        assert_eq!(rows, expected_rows, "rows, an ack sent twice: {dup}");
        assert_eq!(
            bits, expected_bits,
            "state bitmaps, an ack sent twice: {dup}"
        );
    }
}

#[tokio::test]
async fn batch_completed_is_emitted_once_under_duplicate_acks_reaps_and_admin_retries() {
    let (q, clock) = queue("q-once").await;
    let jobs = vec![new_job("e", &[1], "b-o"), new_job("e", &[2], "b-o")];
    q.enqueue(jobs, EnqueueOptions::default()).await.unwrap();
    let w = WorkerId::new("w");
    let leases = claim(&q, &w, 2).await;
    // First job: acked twice in one call and once more later.
    let ack = Ack::new(leases[0].clone(), accepted(&leases[0]));
    let rep = q.complete(vec![ack.clone(), ack.clone()]).await.unwrap();
    assert_eq!((rep.applied, rep.stale.len()), (1, 1));
    // Second job: its lease expires and is re-leased; the late ack of the old lease is stale.
    clock.advance(Duration::from_millis(LEASE_MS + 1));
    let again = claim(&q, &w, 2).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        q.complete(done_acks(&leases[1..]))
            .await
            .unwrap()
            .stale
            .len(),
        1
    );
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
    match &ev
        .iter()
        .find(|e| e.type_name() == "batch.completed")
        .unwrap()
        .kind
    {
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
    q.enqueue(vec![new_job("e", &[1], "b-s")], open)
        .await
        .unwrap();
    let w = WorkerId::new("w");
    let l = claim(&q, &w, 10).await;
    let rep = q.complete(done_acks(&l)).await.unwrap();
    assert!(
        rep.batches_completed.is_empty(),
        "unsealed: more jobs may come"
    );
    q.enqueue(vec![new_job("e", &[2], "b-s")], open)
        .await
        .unwrap();
    let l = claim(&q, &w, 10).await;
    q.complete(done_acks(&l)).await.unwrap();
    assert_eq!(count_type(&events(&q).await, "batch.completed"), 0);
    assert!(
        q.seal_batch(&batch("b-s")).await.unwrap(),
        "sealing a finished batch completes it"
    );
    assert!(!q.seal_batch(&batch("b-s")).await.unwrap());
    assert_eq!(count_type(&events(&q).await, "batch.completed"), 1);
}

#[tokio::test]
async fn the_dedupe_window_skips_queued_pairs_and_force_overrides_it() {
    let (q, clock) = queue("q-dedupe").await;
    let o = EnqueueOptions::default();
    let r = q
        .enqueue(vec![new_job("e", &[1, 2], "b")], o)
        .await
        .unwrap();
    assert_eq!((r.jobs, r.appids), (1, 2));
    let r = q
        .enqueue(vec![new_job("e", &[2, 3], "b"), new_job("e", &[1], "b")], o)
        .await
        .unwrap();
    assert_eq!((r.jobs, r.appids, r.skipped_duplicates), (1, 1, 2));
    assert_eq!(r.job_ids.len(), 1);
    let l = claim(&q, &WorkerId::new("w"), 10).await;
    let second = l.iter().find(|l| l.job.id == r.job_ids[0]).unwrap();
    assert_eq!(
        second.job.appids,
        vec![appid(3)],
        "the duplicate appid was dropped from the job"
    );
    let forced = EnqueueOptions { force: true, ..o };
    let r = q
        .enqueue(vec![new_job("e", &[1], "b")], forced)
        .await
        .unwrap();
    assert_eq!((r.jobs, r.skipped_duplicates), (1, 0));
    let r = q
        .enqueue(vec![new_job("other", &[1], "b")], o)
        .await
        .unwrap();
    assert_eq!(r.jobs, 1, "the pair is (env, appid)");
    clock.advance(Duration::from_secs(61));
    let r = q.enqueue(vec![new_job("e", &[1], "b")], o).await.unwrap();
    assert_eq!(r.jobs, 1, "the window ended");
}

#[tokio::test]
async fn burying_a_job_frees_its_pairs_so_a_reimport_retries_them() {
    let (q, _) = queue("q-bury").await;
    let o = EnqueueOptions::default();
    q.enqueue(vec![new_job("e", &[1, 2, 3], "b")], o)
        .await
        .unwrap();
    let l = claim(&q, &WorkerId::new("w"), 1).await;
    q.complete(vec![Ack::new(
        l[0].clone(),
        Outcome::Done(vec![
            AppResult::Accepted {
                appid: appid(1),
                confirm_url: None,
            },
            AppResult::Rejected {
                appid: appid(2),
                errcode: Some(-1),
                errmsg: "x".into(),
            },
        ]),
    )])
    .await
    .unwrap();
    let r = q
        .enqueue(vec![new_job("e", &[1, 2], "b")], o)
        .await
        .unwrap();
    assert_eq!(
        (r.appids, r.skipped_duplicates),
        (1, 1),
        "the rejected pair is free again"
    );
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
    assert_eq!(
        q.dead_purge(DeadSelection::Ids(vec![order[1].clone()]))
            .await
            .unwrap(),
        1
    );
    assert!(q.job(&order[1]).await.unwrap().is_none());
    assert_eq!(q.dead_purge(DeadSelection::All).await.unwrap(), 3);
    let s = q.stats().await.unwrap();
    assert_eq!((s.dead, s.ready, s.jobs), (0, 1, 1));
}

fn dead_now(l: &Lease) -> Ack {
    Ack::new(
        l.clone(),
        Outcome::Dead {
            reason: FailReason::PermanentError,
            errcode: Some(40101),
            errmsg: "nope".into(),
        },
    )
}

#[tokio::test]
async fn the_generation_lives_in_the_state_record_and_old_payloads_still_count() {
    let (q, clock) = queue("q-gen").await;
    let (k, w) = (q.keys().clone(), WorkerId::new("w"));
    let hget = |key: String, id: JobId| {
        let mut conn = q.connection();
        async move {
            redis::cmd("HGET")
                .arg(key)
                .arg(id.as_str())
                .query_async::<Option<String>>(&mut conn)
                .await
                .unwrap()
        }
    };
    q.enqueue(vec![new_job("e", &[1], "b")], EnqueueOptions::default())
        .await
        .unwrap();
    let l = claim(&q, &w, 1).await;
    let id = l[0].job.id.clone();
    let payload = hget(k.jobs(), id.clone()).await.unwrap();
    assert!(payload.contains(r#""gen":0"#), "{payload}");
    // Dead twice, retried twice: the generation counts in the state record, which a dead job
    // keeps once past 0; the payload stays as enqueue wrote it.
    q.complete(vec![dead_now(&l[0])]).await.unwrap();
    assert_eq!(hget(k.state(), id.clone()).await, None);
    assert_eq!(q.dead_retry(DeadSelection::All).await.unwrap(), 1);
    assert_eq!(hget(k.state(), id.clone()).await.as_deref(), Some("0/1"));
    let l = claim(&q, &w, 1).await;
    assert_eq!((l[0].job.r#gen, l[0].attempt), (1, 1));
    q.complete(vec![dead_now(&l[0])]).await.unwrap();
    assert_eq!(hget(k.state(), id.clone()).await.as_deref(), Some("1/1"));
    let dead = q.dead_list(0, 1).await.unwrap();
    assert_eq!(dead[0].job.as_ref().map(|j| j.r#gen), Some(1));
    assert_eq!(q.dead_retry(DeadSelection::All).await.unwrap(), 1);
    assert_eq!(q.job(&id).await.unwrap().unwrap().job.r#gen, 2);
    assert_eq!(hget(k.jobs(), id.clone()).await.unwrap(), payload);
    // Through a transient retry and a lease expiry the generation stays.
    let l = claim(&q, &w, 1).await;
    assert_eq!(l[0].job.r#gen, 2);
    let retry = Outcome::RetryAt {
        at_ms: clock.now_ms(),
        errcode: None,
        errmsg: "busy".into(),
    };
    q.complete(vec![Ack::new(l[0].clone(), retry)])
        .await
        .unwrap();
    assert_eq!(hget(k.state(), id.clone()).await.as_deref(), Some("1/2"));
    for attempt in 2..=3 {
        let l = claim(&q, &w, 1).await;
        assert_eq!((l[0].job.r#gen, l[0].attempt), (2, attempt));
        clock.advance(Duration::from_millis(LEASE_MS + 1));
    }
    assert_eq!(q.reap(10).await.unwrap().buried, 1);
    let failed: Vec<String> = events(&q)
        .await
        .into_iter()
        .filter(|e| e.type_name() == "share.failed")
        .map(|e| e.id)
        .collect();
    let a = appid(1);
    assert_eq!(
        failed,
        [
            format!("{id}.0.{a}"),
            format!("{id}.1.{a}"),
            format!("{id}.2.{a}")
        ]
    );
    let purge = DeadSelection::Ids(vec![id.clone()]);
    assert_eq!(q.dead_purge(purge).await.unwrap(), 1);
    assert_eq!(hget(k.state(), id).await, None);

    // A record written by an older version: the generation inside the payload, none in the
    // state record. It is read from the payload, and a retry from dead counts on from it.
    let rep = q
        .enqueue(vec![new_job("e", &[2], "b2")], EnqueueOptions::default())
        .await
        .unwrap();
    let old = rep.job_ids[0].clone();
    let patched = hget(k.jobs(), old.clone())
        .await
        .unwrap()
        .replace(r#""gen":0"#, r#""gen":5"#);
    redis::cmd("HSET")
        .arg(k.jobs())
        .arg(old.as_str())
        .arg(&patched)
        .query_async::<()>(&mut q.connection())
        .await
        .unwrap();
    for attempt in 1..=3 {
        let l = claim(&q, &w, 1).await;
        assert_eq!(
            (&l[0].job.id, l[0].job.r#gen, l[0].attempt),
            (&old, 5, attempt)
        );
        clock.advance(Duration::from_millis(LEASE_MS + 1));
    }
    assert_eq!(q.reap(10).await.unwrap().buried, 1);
    let ev = events(&q).await;
    let last = ev
        .iter()
        .rfind(|e| e.type_name() == "share.failed")
        .unwrap();
    assert_eq!(last.id, format!("{old}.5.{}", appid(2)));
    assert_eq!(
        q.dead_list(0, 1).await.unwrap()[0]
            .job
            .as_ref()
            .unwrap()
            .r#gen,
        5
    );
    assert_eq!(q.dead_retry(DeadSelection::All).await.unwrap(), 1);
    assert_eq!(hget(k.state(), old.clone()).await.as_deref(), Some("0/6"));
    assert_eq!(claim(&q, &w, 1).await[0].job.r#gen, 6);
    assert_eq!(hget(k.jobs(), old).await.unwrap(), patched);
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
    assert_eq!(
        (s.ready, s.scheduled, s.running, s.dead, s.jobs),
        (3, 2, 1, 0, 6)
    );
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
    assert_eq!(
        q.reap(10).await.unwrap().requeued,
        0,
        "the heartbeat extended the lease"
    );
    assert_eq!(q.release(&[l.lease_ref()]).await.unwrap(), 1);
    let again = claim(&q, &w, 1).await.remove(0);
    assert_eq!(again.attempt, 1, "a released job did not use its attempt");
}

/// Enqueue, claim and complete 10,000 jobs and print the enqueue rate, Redis commands per job
/// (from `INFO commandstats`; commands run inside scripts are counted by Redis too) and Redis CPU
/// per job (`INFO cpu`). A measurement, not a check; run it against a Redis of its own:
/// `ENVSHARE_TEST_REDIS_URL=redis://127.0.0.1:PORT cargo test -p envshare-tests --test e2e --
/// --ignored --nocapture measure_`.
#[tokio::test]
#[ignore]
async fn measure_commands_and_cpu_per_job_for_ten_thousand_jobs() {
    let (q, _) = queue_with("q-measure", QueueSettings::default()).await;
    let info = |section: &'static str| {
        let mut conn = q.connection();
        async move {
            let s: String = redis::cmd("INFO")
                .arg(section)
                .query_async(&mut conn)
                .await
                .unwrap();
            s
        }
    };
    // (commands other than EVALSHA and housekeeping, EVALSHA calls)
    let calls = |text: String| -> (u64, u64) {
        let (mut cmds, mut scripts) = (0, 0);
        for line in text.lines().filter(|l| l.starts_with("cmdstat_")) {
            let name = &line[8..line.find(':').unwrap()];
            let n: u64 = line
                .split("calls=")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            match name {
                "evalsha" | "eval" => scripts += n,
                "info" | "config|resetstat" | "script|load" | "client|setinfo" | "hello" => {}
                _ => cmds += n,
            }
        }
        (cmds, scripts)
    };
    let cpu = |text: String| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
            .map(|l| l.split(':').nth(1).unwrap().trim().parse::<f64>().unwrap())
            .sum()
    };
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut q.connection())
        .await
        .unwrap();
    let n = 10_000u64;
    let jobs: Vec<NewJob> = (0..n).map(|i| new_job("m", &[i], "b-m")).collect();
    let cpu0 = cpu(info("cpu").await);
    let t = std::time::Instant::now();
    q.enqueue(jobs, EnqueueOptions::default()).await.unwrap();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let cpu1 = cpu(info("cpu").await);
    let (enq_cmds, enq_scripts) = calls(info("commandstats").await);
    let w = WorkerId::generate();
    loop {
        let l = claim(&q, &w, 100).await;
        if l.is_empty() {
            break;
        }
        q.complete(done_acks(&l)).await.unwrap();
    }
    let cpu2 = cpu(info("cpu").await);
    let (cmds, scripts) = calls(info("commandstats").await);
    let per = |x: f64| x / n as f64;
    println!(
        "enqueue: {rate:.0} jobs/s, {:.3} cmds/job, {:.4} script calls/job, {:.2} us Redis CPU/job",
        per(enq_cmds as f64),
        per(enq_scripts as f64),
        per(cpu1 - cpu0) * 1e6
    );
    println!(
        "end to end (enqueue + claim + complete + 1 event): {:.2} cmds/job + {:.4} script calls/job, {:.2} us Redis CPU/job",
        per(cmds as f64),
        per(scripts as f64),
        per(cpu2 - cpu0) * 1e6
    );
}

/// The model-based property test: random operation sequences against Redis and an in-memory
/// model, compared after every step.
mod model {
    use super::*;
    use proptest::prelude::*;

    const MAX_ATTEMPTS: u32 = 3;
    const WINDOW_MS: u64 = 60_000;
    const ENV: &str = "pe";

    #[derive(Debug, Clone)]
    enum AckKind {
        Done(u8),
        Retry,
        Dead,
        Defer,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Enqueue {
            jobs: Vec<(u8, Vec<u8>)>,
            force: bool,
            delay: bool,
        },
        Claim {
            max: u8,
            worker: u8,
        },
        Ack {
            pick: usize,
            kind: AckKind,
        },
        Heartbeat {
            worker: u8,
        },
        Advance {
            ms: u64,
        },
        Reap,
        Release {
            pick: usize,
        },
        AdminRetryAll,
    }

    fn op() -> impl Strategy<Value = Op> {
        let ack = prop_oneof![
            3 => any::<u8>().prop_map(AckKind::Done),
            1 => Just(AckKind::Retry),
            1 => Just(AckKind::Dead),
            1 => Just(AckKind::Defer),
        ];
        prop_oneof![
            3 => (
                prop::collection::vec((0u8..2, prop::collection::vec(0u8..6, 1..3)), 1..4),
                prop::bool::weighted(0.2),
                prop::bool::weighted(0.2)
            )
                .prop_map(|(jobs, force, delay)| Op::Enqueue { jobs, force, delay }),
            4 => (1u8..4, 0u8..2).prop_map(|(max, worker)| Op::Claim { max, worker }),
            4 => (any::<usize>(), ack).prop_map(|(pick, kind)| Op::Ack { pick, kind }),
            1 => (0u8..2).prop_map(|worker| Op::Heartbeat { worker }),
            2 => (0u64..1500).prop_map(|ms| Op::Advance { ms }),
            1 => Just(Op::Reap),
            1 => any::<usize>().prop_map(|pick| Op::Release { pick }),
            1 => Just(Op::AdminRetryAll),
        ]
    }

    #[derive(Debug, Clone, PartialEq)]
    enum St {
        Ready(u64),
        Sched(u64),
        Running { fence: u64, deadline: u64 },
        Dead,
        Done,
    }

    #[derive(Debug)]
    struct MJob {
        id: JobId,
        st: St,
        attempts: u32,
        r#gen: u32,
        appids: Vec<u64>,
        batch: String,
    }

    #[derive(Debug, Default, Clone, PartialEq)]
    struct MBatch {
        jobs: u64,
        appids: u64,
        done: i64,
        accepted: i64,
        failed: i64,
        sealed: bool,
        completed: bool,
    }

    #[derive(Default)]
    struct Model {
        now: u64,
        jobs: Vec<MJob>,
        by_id: HashMap<JobId, usize>,
        batches: BTreeMap<String, MBatch>,
        dedupe: HashMap<u64, u64>,
        events: Vec<(String, &'static str)>,
        max_fence: u64,
    }

    impl Model {
        fn share_event(&mut self, j: usize, a: u64, ty: &'static str) {
            let job = &self.jobs[j];
            let id = format!("{}.{}.{}", job.id, job.r#gen, appid(a));
            self.events.push((id, ty));
        }

        /// Applies a batch counter change; returns true if batch.completed fires now.
        fn bump(&mut self, b: &str, done: i64, acc: i64, fail: i64) -> bool {
            let m = self.batches.get_mut(b).expect("batch exists");
            m.done += done;
            m.accepted += acc;
            m.failed += fail;
            self.check_complete(b)
        }

        fn check_complete(&mut self, b: &str) -> bool {
            let m = self.batches.get_mut(b).unwrap();
            if m.sealed && !m.completed && m.done >= m.jobs as i64 {
                m.completed = true;
                self.events
                    .push((format!("batch.{b}.completed"), "batch.completed"));
                // Nothing bound or unconfirmed in this model: a batch with nothing accepted
                // has nothing left to confirm.
                if m.accepted == 0 {
                    self.events
                        .push((format!("batch.{b}.confirmed"), "batch.confirmed"));
                }
                return true;
            }
            false
        }

        fn bury(&mut self, j: usize, failed_ty: bool) -> bool {
            let appids = self.jobs[j].appids.clone();
            if failed_ty {
                for &a in &appids {
                    self.share_event(j, a, "share.failed");
                }
            }
            for a in &appids {
                self.dedupe.remove(a);
            }
            self.jobs[j].st = St::Dead;
            let b = self.jobs[j].batch.clone();
            self.bump(&b, 1, 0, appids.len() as i64)
        }

        /// Returns (requeued, buried, completed batches).
        fn reap(&mut self) -> (usize, usize, Vec<String>) {
            let (mut rq, mut bu, mut done) = (0, 0, Vec::new());
            // Requeued orphans go just ahead of the oldest ready job (the front of the queue).
            let head = self
                .jobs
                .iter()
                .filter_map(|j| match j.st {
                    St::Ready(s) => Some(s),
                    _ => None,
                })
                .min();
            let requeue_at = match head {
                Some(h) if h <= self.now => h - 1,
                _ => self.now,
            };
            for j in 0..self.jobs.len() {
                if let St::Running { deadline, .. } = self.jobs[j].st
                    && deadline <= self.now
                {
                    if self.jobs[j].attempts >= MAX_ATTEMPTS {
                        bu += 1;
                        if self.bury(j, true) {
                            done.push(self.jobs[j].batch.clone());
                        }
                    } else {
                        rq += 1;
                        self.jobs[j].st = St::Ready(requeue_at);
                    }
                }
            }
            (rq, bu, done)
        }

        fn promote(&mut self) {
            for j in &mut self.jobs {
                if let St::Sched(at) = j.st
                    && at <= self.now
                {
                    j.st = St::Ready(at);
                }
            }
        }

        fn current(&self, l: &Lease) -> Option<usize> {
            let j = self.by_id[&l.job.id];
            matches!(self.jobs[j].st, St::Running { fence, .. } if fence == l.fence).then_some(j)
        }
    }

    fn job_state_matches(st: &St, real: &Option<JobState>) -> bool {
        match (st, real) {
            (St::Ready(s), Some(JobState::Ready { since_ms })) => s == since_ms,
            (St::Sched(s), Some(JobState::Scheduled { run_at_ms })) => s == run_at_ms,
            (
                St::Running { fence, deadline },
                Some(JobState::Running {
                    fence: f,
                    deadline_ms,
                    ..
                }),
            ) => fence == f && deadline == deadline_ms,
            (St::Dead, Some(JobState::Dead { .. })) => true,
            _ => false,
        }
    }

    async fn check(q: &Queue, m: &Model, step: usize) {
        for j in &m.jobs {
            let info = q.job(&j.id).await.unwrap();
            match (&j.st, info) {
                (St::Done, None) => {}
                (st, Some(info)) => {
                    assert!(
                        job_state_matches(st, &info.state),
                        "step {step}: job {} model {st:?} redis {:?}",
                        j.id,
                        info.state
                    );
                    assert_eq!(
                        info.attempts, j.attempts,
                        "step {step}: attempts of {}",
                        j.id
                    );
                    assert_eq!(info.job.r#gen, j.r#gen, "step {step}: gen of {}", j.id);
                    let appids: Vec<AppId> = j.appids.iter().map(|&a| appid(a)).collect();
                    assert_eq!(info.job.appids, appids);
                }
                (st, None) => panic!("step {step}: job {} lost (model {st:?})", j.id),
            }
        }
        let s = q.stats().await.unwrap();
        let count = |f: fn(&St) -> bool| m.jobs.iter().filter(|j| f(&j.st)).count() as u64;
        assert_eq!(
            s.ready,
            count(|s| matches!(s, St::Ready(_))),
            "step {step}: ready"
        );
        assert_eq!(
            s.scheduled,
            count(|s| matches!(s, St::Sched(_))),
            "step {step}: scheduled"
        );
        assert_eq!(
            s.running,
            count(|s| matches!(s, St::Running { .. })),
            "step {step}: running"
        );
        assert_eq!(
            s.dead,
            count(|s| matches!(s, St::Dead)),
            "step {step}: dead"
        );
        assert_eq!(
            s.jobs,
            count(|s| !matches!(s, St::Done)),
            "step {step}: stored payloads"
        );

        let mut real: Vec<(String, String)> = events(q)
            .await
            .into_iter()
            .map(|e| (e.id.clone(), e.type_name().to_owned()))
            .collect();
        let mut want: Vec<(String, String)> = m
            .events
            .iter()
            .map(|(i, t)| (i.clone(), (*t).to_owned()))
            .collect();
        real.sort();
        want.sort();
        assert_eq!(real, want, "step {step}: events");

        for (b, mb) in &m.batches {
            let p = q.batch(&batch(b)).await.unwrap().expect("batch exists");
            let got = (
                p.jobs,
                p.appids,
                p.done_jobs as i64,
                p.accepted as i64,
                p.failed as i64,
                p.sealed,
                p.completed,
            );
            let want = (
                mb.jobs,
                mb.appids,
                mb.done,
                mb.accepted,
                mb.failed,
                mb.sealed,
                mb.completed,
            );
            assert_eq!(got, want, "step {step}: batch {b}");
        }
    }

    async fn run(ops: Vec<Op>) {
        let (q, clock) = queue("q-model").await;
        let mut m = Model {
            now: clock.now_ms(),
            ..Model::default()
        };
        let workers = [WorkerId::new("w0"), WorkerId::new("w1")];
        let mut leases: Vec<(Lease, u8)> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Enqueue { jobs, force, delay } => {
                    let run_at = delay.then_some(m.now + 300);
                    let input: Vec<NewJob> = jobs
                        .iter()
                        .map(|(b, a)| NewJob {
                            op: envshare::store::JobOp::Share,
                            env: env(ENV),
                            appids: a.iter().map(|&i| appid(i as u64)).collect(),
                            batch: batch(&format!("b{b}")),
                            run_at_ms: run_at,
                        })
                        .collect();
                    let r = q
                        .enqueue(input, EnqueueOptions { force, seal: true })
                        .await
                        .unwrap();
                    let mut seen = HashSet::new();
                    let mut created = Vec::new();
                    let (mut appids, mut skipped) = (0, 0);
                    for (b, a) in &jobs {
                        let mut kept = Vec::new();
                        for &i in a {
                            let i = i as u64;
                            let busy = m.dedupe.get(&i).is_some_and(|&end| end > m.now);
                            if seen.contains(&i) || (busy && !force) {
                                skipped += 1;
                            } else {
                                seen.insert(i);
                                kept.push(i);
                            }
                        }
                        if !kept.is_empty() {
                            appids += kept.len();
                            created.push((format!("b{b}"), kept));
                        }
                    }
                    assert_eq!(
                        (r.jobs, r.appids, r.skipped_duplicates),
                        (created.len(), appids, skipped),
                        "step {step}: enqueue report"
                    );
                    for &i in &seen {
                        m.dedupe.insert(i, m.now + WINDOW_MS);
                    }
                    for (id, (b, kept)) in r.job_ids.into_iter().zip(created) {
                        let mb = m.batches.entry(b.clone()).or_default();
                        mb.jobs += 1;
                        mb.appids += kept.len() as u64;
                        m.by_id.insert(id.clone(), m.jobs.len());
                        m.jobs.push(MJob {
                            id,
                            st: run_at.map_or(St::Ready(m.now), St::Sched),
                            attempts: 0,
                            r#gen: 0,
                            appids: kept,
                            batch: b,
                        });
                    }
                    for (b, _) in &jobs {
                        let b = format!("b{b}");
                        m.batches.entry(b.clone()).or_default().sealed = true;
                        m.check_complete(&b);
                    }
                }
                Op::Claim { max, worker } => {
                    let got = claim(&q, &workers[worker as usize], max as usize).await;
                    m.reap();
                    m.promote();
                    let mut ready: Vec<(u64, String, usize)> = m
                        .jobs
                        .iter()
                        .enumerate()
                        .filter_map(|(i, j)| match j.st {
                            St::Ready(s) => Some((s, j.id.to_string(), i)),
                            _ => None,
                        })
                        .collect();
                    ready.sort();
                    let want: Vec<usize> = ready.iter().take(max as usize).map(|r| r.2).collect();
                    let got_ids: Vec<&JobId> = got.iter().map(|l| &l.job.id).collect();
                    let want_ids: Vec<&JobId> = want.iter().map(|&i| &m.jobs[i].id).collect();
                    assert_eq!(got_ids, want_ids, "step {step}: claim order");
                    for (l, &j) in got.iter().zip(&want) {
                        assert!(l.fence > m.max_fence, "step {step}: fences increase");
                        m.max_fence = l.fence;
                        let mj = &mut m.jobs[j];
                        mj.attempts += 1;
                        assert_eq!(l.attempt, mj.attempts, "step {step}: attempt");
                        assert_eq!(l.job.r#gen, mj.r#gen);
                        mj.st = St::Running {
                            fence: l.fence,
                            deadline: m.now + LEASE_MS,
                        };
                        leases.push((l.clone(), worker));
                    }
                }
                Op::Ack { pick, kind } => {
                    if leases.is_empty() {
                        continue;
                    }
                    let l = leases[pick % leases.len()].0.clone();
                    let outcome = match kind {
                        AckKind::Done(mask) => Outcome::Done(
                            l.job
                                .appids
                                .iter()
                                .enumerate()
                                .map(|(i, a)| {
                                    if mask & (1 << i) == 0 {
                                        AppResult::Accepted {
                                            appid: a.clone(),
                                            confirm_url: None,
                                        }
                                    } else {
                                        AppResult::Rejected {
                                            appid: a.clone(),
                                            errcode: Some(-1),
                                            errmsg: "x".into(),
                                        }
                                    }
                                })
                                .collect(),
                        ),
                        AckKind::Retry => Outcome::RetryAt {
                            at_ms: m.now + 200,
                            errcode: Some(-1),
                            errmsg: "busy".into(),
                        },
                        AckKind::Dead => Outcome::Dead {
                            reason: FailReason::PermanentError,
                            errcode: Some(40097),
                            errmsg: "no".into(),
                        },
                        AckKind::Defer => Outcome::Defer { at_ms: m.now + 200 },
                    };
                    let rep = q
                        .complete(vec![Ack::new(l.clone(), outcome)])
                        .await
                        .unwrap();
                    let Some(j) = m.current(&l) else {
                        assert_eq!(
                            (rep.applied, rep.stale.clone()),
                            (0, vec![l.job.id.clone()]),
                            "step {step}: stale ack"
                        );
                        continue;
                    };
                    assert_eq!(
                        (rep.applied, rep.stale.len()),
                        (1, 0),
                        "step {step}: ack applied"
                    );
                    let mut completed = Vec::new();
                    match kind {
                        AckKind::Done(mask) => {
                            let appids = m.jobs[j].appids.clone();
                            let (mut acc, mut fail) = (0, 0);
                            for (i, &a) in appids.iter().enumerate() {
                                if mask & (1 << i) == 0 {
                                    acc += 1;
                                    m.share_event(j, a, "share.accepted");
                                } else {
                                    fail += 1;
                                    m.share_event(j, a, "share.failed");
                                    m.dedupe.remove(&a);
                                }
                            }
                            m.jobs[j].st = St::Done;
                            let b = m.jobs[j].batch.clone();
                            if m.bump(&b, 1, acc, fail) {
                                completed.push(b);
                            }
                        }
                        AckKind::Dead => {
                            if m.bury(j, true) {
                                completed.push(m.jobs[j].batch.clone());
                            }
                        }
                        AckKind::Retry => m.jobs[j].st = St::Sched(m.now + 200),
                        AckKind::Defer => {
                            m.jobs[j].st = St::Sched(m.now + 200);
                            m.jobs[j].attempts -= 1;
                        }
                    }
                    let got: Vec<String> = rep
                        .batches_completed
                        .iter()
                        .map(|b| b.to_string())
                        .collect();
                    assert_eq!(got, completed, "step {step}: batches completed by the ack");
                }
                Op::Heartbeat { worker } => {
                    let held: Vec<_> = leases
                        .iter()
                        .filter(|(_, w)| *w == worker)
                        .map(|(l, _)| l.clone())
                        .collect();
                    let refs: Vec<_> = held.iter().map(Lease::lease_ref).collect();
                    let lost = q.heartbeat(&workers[worker as usize], &refs).await.unwrap();
                    let mut want_lost = Vec::new();
                    for l in &held {
                        match m.current(l) {
                            Some(j) => {
                                m.jobs[j].st = St::Running {
                                    fence: l.fence,
                                    deadline: m.now + LEASE_MS,
                                }
                            }
                            None => want_lost.push(l.lease_ref()),
                        }
                    }
                    assert_eq!(lost, want_lost, "step {step}: lost leases");
                }
                Op::Advance { ms } => {
                    clock.advance(Duration::from_millis(ms));
                    m.now += ms;
                }
                Op::Reap => {
                    let rep = q.reap(500).await.unwrap();
                    let (rq, bu, done) = m.reap();
                    assert_eq!((rep.requeued, rep.buried), (rq, bu), "step {step}: reap");
                    let got: Vec<String> = rep
                        .batches_completed
                        .iter()
                        .map(|b| b.to_string())
                        .collect();
                    let (mut got, mut done) = (got, done);
                    got.sort();
                    done.sort();
                    assert_eq!(got, done, "step {step}: batches completed by the reap");
                }
                Op::Release { pick } => {
                    if leases.is_empty() {
                        continue;
                    }
                    let l = leases[pick % leases.len()].0.clone();
                    let n = q.release(&[l.lease_ref()]).await.unwrap();
                    match m.current(&l) {
                        Some(j) => {
                            assert_eq!(n, 1, "step {step}: release");
                            m.jobs[j].st = St::Ready(m.now);
                            m.jobs[j].attempts -= 1;
                        }
                        None => assert_eq!(n, 0, "step {step}: stale release"),
                    }
                }
                Op::AdminRetryAll => {
                    let n = q.dead_retry(DeadSelection::All).await.unwrap();
                    let dead: Vec<usize> = (0..m.jobs.len())
                        .filter(|&j| m.jobs[j].st == St::Dead)
                        .collect();
                    assert_eq!(n, dead.len(), "step {step}: dead retry");
                    for j in dead {
                        let now = m.now;
                        let mj = &mut m.jobs[j];
                        mj.st = St::Ready(now);
                        mj.attempts = 0;
                        mj.r#gen += 1;
                        let (b, appids) = (mj.batch.clone(), mj.appids.clone());
                        for a in &appids {
                            m.dedupe.insert(*a, now + WINDOW_MS);
                        }
                        let mb = m.batches.get_mut(&b).unwrap();
                        mb.done -= 1;
                        mb.failed -= appids.len() as i64;
                    }
                }
            }
            check(&q, &m, step).await;
        }
        // Nothing twice: every event id is unique.
        let ev = events(&q).await;
        let ids: HashSet<&str> = ev.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids.len(), ev.len(), "an event id appeared twice");
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(24)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

        #[test]
        fn random_operation_sequences_match_the_in_memory_model(ops in prop::collection::vec(op(), 1..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(run(ops));
        }
    }
}
