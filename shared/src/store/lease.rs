//! The worker side: claim, heartbeat, ack (complete / retry / bury), release, reap, pause.

use futures::future::try_join_all;
use redis::Value;
use serde::Serialize;

use super::types::Payload;
use super::{
    Ack, AckReport, AppResult, Claim, Lease, LeaseRef, Outcome, Queue, ReapReport, SCRIPTS, SLICE,
    StoreError, WorkerId, parse_ids,
};
use crate::events::{EVENT_VERSION, Event, EventKind, FailReason};
use crate::ids::{AppId, BatchId, JobId};

/// Claims take at most this many jobs per call (bounded script cost and reply size).
pub const MAX_CLAIM: usize = 1000;

/// `dead:info` record of a buried job.
#[derive(Serialize)]
struct DeadRecord<'a> {
    reason: FailReason,
    errcode: Option<i64>,
    errmsg: &'a str,
    attempts: u32,
    at: u64,
}

fn accepted(lease: &Lease, at: &str, appid: &AppId, confirm_url: Option<&str>) -> Event {
    let job = &lease.job;
    Event {
        v: EVENT_VERSION,
        id: Event::share_id(&job.id, job.r#gen, appid),
        at: at.to_owned(),
        kind: EventKind::ShareAccepted {
            job_id: job.id.clone(),
            batch_id: job.batch.clone(),
            env: job.env.clone(),
            appid: appid.clone(),
            confirm_url: confirm_url.map(str::to_owned),
            attempts: lease.attempt,
        },
    }
}

fn failed(
    lease: &Lease,
    at: &str,
    appid: &AppId,
    errcode: Option<i64>,
    errmsg: &str,
    reason: FailReason,
) -> Event {
    let job = &lease.job;
    Event {
        v: EVENT_VERSION,
        id: Event::share_id(&job.id, job.r#gen, appid),
        at: at.to_owned(),
        kind: EventKind::ShareFailed {
            job_id: job.id.clone(),
            batch_id: job.batch.clone(),
            env: job.env.clone(),
            appid: appid.clone(),
            confirm_url: None,
            attempts: lease.attempt,
            errcode,
            errmsg: errmsg.to_owned(),
            reason,
        },
    }
}

fn pair(lease: &Lease, appid: &AppId) -> String {
    format!("{}/{}", lease.job.env, appid)
}

fn push_events(inv: &mut redis::ScriptInvocation<'static>, events: &[Event]) {
    inv.arg(events.len());
    for e in events {
        inv.arg(e.type_name()).arg(e.to_json());
    }
}

fn as_str(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

impl Queue {
    /// Reaps expired leases and promotes due scheduled jobs (bounded slices), then leases up to
    /// `max` (≤ [`MAX_CLAIM`]) ready jobs to `worker`, oldest first, each with a new fencing
    /// token and its attempt counted. Also records `worker` as alive. Returns
    /// [`Claim::Paused`] while the queue is paused.
    pub async fn claim(&self, worker: &WorkerId, max: usize) -> Result<Claim, StoreError> {
        let op = "claim";
        let s = &self.settings;
        let mut inv = self.invocation(&SCRIPTS.claim, self.clock.now_ms());
        inv.arg(worker.as_str())
            .arg(max.clamp(1, MAX_CLAIM))
            .arg(s.lease.as_millis() as u64)
            .arg(s.max_attempts.max(1))
            .arg(s.promote_slice.clamp(1, 1000))
            .arg(s.reap_slice.clamp(1, 1000));
        let reply: Vec<Value> = self.run(op, &inv).await?;
        let status = reply.first().and_then(as_str).unwrap_or_default();
        match (status.as_str(), reply.as_slice()) {
            ("paused", [_, until, reason, ..]) => Ok(Claim::Paused {
                until_ms: as_str(until)
                    .and_then(|u| u.parse().ok())
                    .ok_or_else(|| StoreError::reply(op, "pause end is not a number"))?,
                reason: as_str(reason).unwrap_or_default(),
            }),
            ("jobs", [_, Value::Array(flat), ..]) => {
                let mut leases = Vec::with_capacity(flat.len() / 4);
                for rec in flat.chunks_exact(4) {
                    let field = |i: usize| {
                        as_str(&rec[i]).ok_or_else(|| StoreError::reply(op, "non-string field"))
                    };
                    let id = JobId::parse(&field(0)?).map_err(|e| StoreError::reply(op, e))?;
                    let fence = field(1)?.parse().map_err(|e| StoreError::reply(op, e))?;
                    let attempt = field(2)?.parse().map_err(|e| StoreError::reply(op, e))?;
                    match Payload::parse(op, &id, &field(3)?) {
                        Ok(p) => leases.push(Lease {
                            job: p.into_job(id),
                            fence,
                            attempt,
                        }),
                        // Only enqueue writes payloads, so this is corruption from outside.
                        // Failing the whole claim would strand the other leases; the broken job
                        // stays leased until reaped and finally buried as lease_expired.
                        Err(e) => {
                            tracing::error!(error = %e, "skipping a job with a malformed payload")
                        }
                    }
                }
                Ok(Claim::Jobs(leases))
            }
            _ => Err(StoreError::reply(
                op,
                format!("unexpected claim reply {reply:?}"),
            )),
        }
    }

    /// Records `worker` as alive and extends the leases in `held` by the lease period. Returns
    /// the leases that were lost (their fencing token no longer matches: reaped, maybe leased to
    /// another worker): stop working on those, their acks would be rejected.
    pub async fn heartbeat(
        &self,
        worker: &WorkerId,
        held: &[LeaseRef],
    ) -> Result<Vec<LeaseRef>, StoreError> {
        let op = "heartbeat";
        let now = self.clock.now_ms();
        let lease_ms = self.settings.lease.as_millis() as u64;
        let calls = held.chunks(SLICE).enumerate().map(|(c, part)| {
            let mut inv = self.invocation(&SCRIPTS.heartbeat, now);
            inv.arg(worker.as_str()).arg(lease_ms).arg(part.len());
            for l in part {
                inv.arg(l.job.as_str()).arg(l.fence);
            }
            async move {
                let (_, lost): (usize, Vec<usize>) = self.run(op, &inv).await?;
                // Lua indexes are 1-based within the slice.
                Ok::<_, StoreError>(lost.into_iter().map(move |i| c * SLICE + i - 1))
            }
        });
        if held.is_empty() {
            let mut inv = self.invocation(&SCRIPTS.heartbeat, now);
            inv.arg(worker.as_str()).arg(lease_ms).arg(0);
            let _: (usize, Vec<usize>) = self.run(op, &inv).await?;
            return Ok(Vec::new());
        }
        let lost = try_join_all(calls).await?;
        Ok(lost
            .into_iter()
            .flatten()
            .filter_map(|i| held.get(i).cloned())
            .collect())
    }

    /// Removes `worker` from the live workers (clean shutdown).
    pub async fn deregister_worker(&self, worker: &WorkerId) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZREM")
            .arg(self.keys.workers())
            .arg(worker.as_str())
            .query_async::<()>(&mut conn)
            .await
            .map_err(StoreError::redis("deregister worker"))
    }

    /// Applies acks of any kinds: `Done` → complete.lua, `RetryAt`/`Defer` → retry.lua, `Dead` →
    /// bury.lua, each batched (≤ 500 jobs per call, calls in flight together). An ack whose
    /// fencing token is no longer current is reported in [`AckReport::stale`] and nothing is
    /// written for it.
    pub async fn complete(&self, acks: Vec<Ack>) -> Result<AckReport, StoreError> {
        let now = self.clock.now_ms();
        let at = crate::clock::iso8601(now);
        let (mut done, mut retry, mut bury) = (Vec::new(), Vec::new(), Vec::new());
        for a in &acks {
            match a.outcome {
                Outcome::Done(_) => done.push(a),
                Outcome::RetryAt { .. } | Outcome::Defer { .. } => retry.push(a),
                Outcome::Dead { .. } => bury.push(a),
            }
        }
        let mut calls = Vec::new();
        for part in done.chunks(SLICE) {
            let mut inv = self.invocation(&SCRIPTS.complete, now);
            inv.arg(part.len());
            for a in part {
                let Outcome::Done(results) = &a.outcome else {
                    unreachable!()
                };
                let l = &a.lease;
                // complete.lua takes the accepted events first, then the failed ones, then the
                // rejected pairs: the event type follows from the position.
                let mut accepted_ev = Vec::with_capacity(results.len());
                let mut failed_ev = Vec::new();
                let mut free = Vec::new();
                for r in results {
                    match r {
                        AppResult::Accepted { appid, confirm_url } => {
                            accepted_ev.push(accepted(l, &at, appid, confirm_url.as_deref()));
                        }
                        AppResult::Rejected {
                            appid,
                            errcode,
                            errmsg,
                        } => {
                            free.push(pair(l, appid));
                            failed_ev.push(failed(
                                l,
                                &at,
                                appid,
                                *errcode,
                                errmsg,
                                FailReason::Rejected,
                            ));
                        }
                    }
                }
                inv.arg(l.job.id.as_str())
                    .arg(l.fence)
                    .arg(l.job.batch.as_str())
                    .arg(accepted_ev.len())
                    .arg(failed_ev.len());
                for e in accepted_ev.iter().chain(&failed_ev) {
                    inv.arg(e.to_json());
                }
                inv.arg(free);
            }
            calls.push(("complete", inv));
        }
        for part in bury.chunks(SLICE) {
            let mut inv = self.invocation(&SCRIPTS.bury, now);
            inv.arg(part.len());
            for a in part {
                let Outcome::Dead {
                    reason,
                    errcode,
                    errmsg,
                } = &a.outcome
                else {
                    unreachable!()
                };
                let l = &a.lease;
                let events: Vec<Event> = l
                    .job
                    .appids
                    .iter()
                    .map(|appid| failed(l, &at, appid, *errcode, errmsg, *reason))
                    .collect();
                let free: Vec<String> = l.job.appids.iter().map(|a| pair(l, a)).collect();
                let info = serde_json::to_string(&DeadRecord {
                    reason: *reason,
                    errcode: *errcode,
                    errmsg,
                    attempts: l.attempt,
                    at: now,
                })
                .expect("a dead record always serializes");
                inv.arg(l.job.id.as_str())
                    .arg(l.fence)
                    .arg(l.job.batch.as_str())
                    .arg(l.job.appids.len())
                    .arg(info);
                push_events(&mut inv, &events);
                inv.arg(free.len()).arg(free);
            }
            calls.push(("bury", inv));
        }
        for part in retry.chunks(SLICE) {
            let mut inv = self.invocation(&SCRIPTS.retry, now);
            inv.arg(part.len());
            for a in part {
                let (at_ms, refund) = match a.outcome {
                    Outcome::RetryAt { at_ms, .. } => (at_ms, "0"),
                    Outcome::Defer { at_ms } => (at_ms, "1"),
                    _ => unreachable!(),
                };
                inv.arg(a.lease.job.id.as_str())
                    .arg(a.lease.fence)
                    .arg(at_ms)
                    .arg(refund);
            }
            calls.push(("retry", inv));
        }
        let replies = try_join_all(calls.iter().map(|(op, inv)| async move {
            let reply: Vec<Value> = self.run(op, inv).await?;
            let applied: usize = reply
                .first()
                .and_then(as_str)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StoreError::reply(op, "no applied count"))?;
            let list = |i: usize| -> Result<Vec<String>, StoreError> {
                match reply.get(i) {
                    None => Ok(Vec::new()),
                    Some(v) => redis::from_redis_value_ref(v).map_err(|e| StoreError::reply(op, e)),
                }
            };
            let stale: Vec<JobId> = parse_ids(op, list(1)?)?;
            let completed: Vec<BatchId> = parse_ids(op, list(2)?)?;
            Ok::<_, StoreError>((applied, stale, completed))
        }))
        .await?;
        let mut report = AckReport::default();
        for (applied, stale, completed) in replies {
            report.applied += applied;
            report.stale.extend(stale);
            report.batches_completed.extend(completed);
        }
        Ok(report)
    }

    /// Hands leased jobs back to `ready` without running them (shutdown); the attempt is
    /// refunded. Returns how many were released (stale leases are skipped).
    pub async fn release(&self, leases: &[LeaseRef]) -> Result<usize, StoreError> {
        let op = "release";
        let now = self.clock.now_ms();
        let calls = leases.chunks(SLICE).map(|part| {
            let mut inv = self.invocation(&SCRIPTS.release, now);
            inv.arg(part.len());
            for l in part {
                inv.arg(l.job.as_str()).arg(l.fence);
            }
            async move {
                let (n, _stale): (usize, Vec<String>) = self.run(op, &inv).await?;
                Ok::<_, StoreError>(n)
            }
        });
        Ok(try_join_all(calls).await?.into_iter().sum())
    }

    /// Reaps up to `limit` (≤ 1,000) expired leases: back to ready, or to dead with
    /// `lease_expired` at max attempts. [`Queue::claim`] does this too; call it from a reaper
    /// when no claims are running.
    pub async fn reap(&self, limit: usize) -> Result<ReapReport, StoreError> {
        let op = "reap";
        let mut inv = self.invocation(&SCRIPTS.reap, self.clock.now_ms());
        inv.arg(limit.clamp(1, 1000))
            .arg(self.settings.max_attempts.max(1));
        let (requeued, buried, completed): (usize, usize, Vec<String>) = self.run(op, &inv).await?;
        Ok(ReapReport {
            requeued,
            buried,
            batches_completed: parse_ids(op, completed)?,
        })
    }

    /// Pauses claims for every worker until `until_ms` (e.g. 45009, daily quota spent). Never
    /// shortens a longer pause already in force.
    pub async fn pause_until(&self, until_ms: u64, reason: &str) -> Result<(), StoreError> {
        let mut inv = self.invocation(&SCRIPTS.pause, self.clock.now_ms());
        inv.arg(until_ms.max(1)).arg(reason);
        let _: u64 = self.run("pause", &inv).await?;
        Ok(())
    }

    /// Ends a pause now.
    pub async fn resume(&self) -> Result<(), StoreError> {
        let mut inv = self.invocation(&SCRIPTS.pause, self.clock.now_ms());
        inv.arg(0).arg("");
        let _: u64 = self.run("resume", &inv).await?;
        Ok(())
    }

    /// Adds `by` to the queue-wide counter `name` (e.g. `token_refreshes`), shown by stats.
    pub async fn incr_stat(&self, name: &str, by: i64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("HINCRBY")
            .arg(self.keys.stats())
            .arg(name)
            .arg(by)
            .query_async::<()>(&mut conn)
            .await
            .map_err(StoreError::redis("incr stat"))
    }
}
