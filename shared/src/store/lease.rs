//! The worker side: claim, heartbeat, ack (complete / retry / bury), release, reap, pause.

use futures::future::try_join_all;
use redis::{Script, ScriptInvocation, Value};
use serde::Serialize;

use super::confirm::ConfirmInfo;
use super::types::Payload;
use super::{
    Ack, AckReport, AppResult, Claim, ClaimReply, JobOp, Lease, LeaseRef, Outcome, Queue,
    ReapReport, RowState, SCRIPTS, SLICE, StoreError, WorkerId, parse_ids, render_row, row_field,
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
        trace_id: job.trace_id(),
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
        trace_id: job.trace_id(),
    }
}

fn unshared(lease: &Lease, at: &str, appid: &AppId) -> Event {
    let job = &lease.job;
    Event {
        v: EVENT_VERSION,
        id: Event::share_id(&job.id, job.r#gen, appid),
        at: at.to_owned(),
        kind: EventKind::ShareUnshared {
            job_id: job.id.clone(),
            batch_id: job.batch.clone(),
            env: job.env.clone(),
            appid: appid.clone(),
            attempts: lease.attempt,
        },
        trace_id: job.trace_id(),
    }
}

/// The pair's result row field, `env/appid`.
fn pair(lease: &Lease, appid: &AppId) -> String {
    row_field(&lease.job.env, appid)
}

fn push_events(inv: &mut ScriptInvocation<'static>, events: &[Event]) {
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

/// The time of one [`Queue::complete`] call, as the acks' records carry it.
struct AckTime {
    /// ms (dead info `at`).
    ms: u64,
    /// ISO-8601 (the events' `at`).
    iso: String,
    /// When an appid accepted now is first checked for confirmation (ms); `None`: the acks do
    /// not schedule it (a watcher's stream intake does).
    confirm_due: Option<u64>,
}

/// One kind of ack, applied by one script: how one ack is written as that script's ARGV.
trait AckStep {
    /// The operation, in errors.
    const OP: &'static str;
    /// The script that applies acks of this kind.
    fn script() -> &'static Script;
    /// Appends this ack's record to `inv` (the script's header lists the fields).
    fn encode(&self, inv: &mut ScriptInvocation<'static>, time: &AckTime);
    /// Appends the script-specific arguments of one call applying the acks `part`: by default
    /// their number, then each ack's record.
    fn encode_call(part: &[Self], inv: &mut ScriptInvocation<'static>, time: &AckTime)
    where
        Self: Sized,
    {
        inv.arg(part.len());
        for a in part {
            a.encode(inv, time);
        }
    }
}

/// The acks of one [`Queue::complete`] call, grouped by the script that applies them.
#[derive(Default)]
struct AckGroups<'a> {
    done: Vec<DoneAck<'a>>,
    bury: Vec<BuryAck<'a>>,
    retry: Vec<RetryAck<'a>>,
}

impl<'a> AckGroups<'a> {
    fn classify(acks: &'a [Ack]) -> Self {
        let mut groups = Self::default();
        for a in acks {
            let lease = &a.lease;
            match &a.outcome {
                Outcome::Done(results) => groups.done.push(DoneAck { lease, results }),
                Outcome::Dead {
                    reason,
                    errcode,
                    errmsg,
                } => groups.bury.push(BuryAck {
                    lease,
                    reason: *reason,
                    errcode: *errcode,
                    errmsg,
                }),
                Outcome::RetryAt { at_ms, .. } => groups.retry.push(RetryAck {
                    lease,
                    at_ms: *at_ms,
                    refund: false,
                }),
                Outcome::Defer { at_ms } => groups.retry.push(RetryAck {
                    lease,
                    at_ms: *at_ms,
                    refund: true,
                }),
            }
        }
        groups
    }
}

/// WeChat answered: complete.lua writes the events and rows and removes the job.
struct DoneAck<'a> {
    lease: &'a Lease,
    results: &'a [AppResult],
}

/// A job's accepted (or unshared) appids with their confirmation URLs.
type Accepted<'a> = Vec<(&'a AppId, Option<&'a str>)>;
/// A job's rejected appids with WeChat's errcode and errmsg.
type Rejected<'a> = Vec<(&'a AppId, Option<i64>, &'a str)>;

impl<'a> DoneAck<'a> {
    /// The results, accepted (or unshared) ones and rejected ones, each in the job's order:
    /// complete.lua takes them in that order, so the event type follows from the position.
    fn split(&self) -> (Accepted<'a>, Rejected<'a>) {
        let mut ok = Vec::with_capacity(self.results.len());
        let mut rejected = Vec::new();
        for r in self.results {
            match r {
                AppResult::Accepted { appid, confirm_url } => {
                    ok.push((appid, confirm_url.as_deref()))
                }
                AppResult::Rejected {
                    appid,
                    errcode,
                    errmsg,
                } => rejected.push((appid, *errcode, errmsg.as_str())),
            }
        }
        (ok, rejected)
    }

    /// The state the accepted appids' rows move to.
    fn accepted_state(&self) -> RowState {
        match self.lease.job.op {
            JobOp::Share => RowState::Accepted,
            JobOp::Unshare => RowState::Unshared,
        }
    }

    /// Adds this job's rows to its batch's block (accepted ones first, as complete.lua reads
    /// them), if the job has rows.
    fn rows_into(&self, blocks: &mut RowBlocks<'a>, secs: u64) {
        let job = &self.lease.job;
        if job.row.is_none() {
            return;
        }
        let (ok, rejected) = self.split();
        let block = blocks.of(&job.batch);
        let attempts = self.lease.attempt;
        for (appid, url) in ok {
            if let Some(seq) = job.row_of(appid) {
                let state = self.accepted_state();
                let row = render_row(
                    state,
                    seq,
                    secs,
                    attempts,
                    None,
                    "",
                    job.job_index,
                    url.unwrap_or(""),
                    "",
                );
                block.push(pair(self.lease, appid), row, state, seq);
            }
        }
        for (appid, errcode, errmsg) in rejected {
            if let Some(seq) = job.row_of(appid) {
                let row = render_row(
                    RowState::Failed,
                    seq,
                    secs,
                    attempts,
                    errcode,
                    FailReason::Rejected.as_str(),
                    job.job_index,
                    "",
                    errmsg,
                );
                block.push(pair(self.lease, appid), row, RowState::Failed, seq);
            }
        }
    }
}

impl AckStep for DoneAck<'_> {
    const OP: &'static str = "complete";

    fn script() -> &'static Script {
        &SCRIPTS.complete
    }

    /// The job's record within its group: id, fence, events, rejected pairs' dedupe members,
    /// and for a share the accepted appids' confirmation schedule entries.
    fn encode(&self, inv: &mut ScriptInvocation<'static>, time: &AckTime) {
        let l = self.lease;
        let job = &l.job;
        let (ok, rejected) = self.split();
        inv.arg(job.id.as_str()).arg(l.fence);
        for (appid, url) in &ok {
            let event = match job.op {
                JobOp::Share => accepted(l, &time.iso, appid, *url),
                JobOp::Unshare => unshared(l, &time.iso, appid),
            };
            inv.arg(event.to_json());
        }
        for (appid, errcode, errmsg) in &rejected {
            let event = failed(l, &time.iso, appid, *errcode, errmsg, FailReason::Rejected);
            inv.arg(event.to_json());
        }
        for (appid, ..) in &rejected {
            inv.arg(job.dedupe_member(appid));
        }
        if job.op == JobOp::Share && time.confirm_due.is_some() {
            for (appid, _) in &ok {
                let info = ConfirmInfo {
                    env: job.env.clone(),
                    appid: (*appid).clone(),
                    batch_id: job.batch.clone(),
                    job_id: job.id.clone(),
                    accepted_at: time.ms,
                    checks: 0,
                    trace_id: job.trace_id(),
                };
                // The entry's id is its share.accepted event's id, as the stream intake keys it.
                inv.arg(Event::share_id(&job.id, job.r#gen, appid))
                    .arg(serde_json::to_string(&info).expect("ConfirmInfo serializes"));
            }
        }
    }

    /// Groups of consecutive acks with one header each (batch, kind, accepted and rejected
    /// appids per job), then the rows.
    fn encode_call(part: &[Self], inv: &mut ScriptInvocation<'static>, time: &AckTime) {
        let mut groups: Vec<(GroupHead<'_>, &[Self])> = Vec::new();
        let mut start = 0;
        for i in 1..=part.len() {
            if i == part.len() || part[i].head() != part[start].head() {
                groups.push((part[start].head(), &part[start..i]));
                start = i;
            }
        }
        inv.arg(time.confirm_due.unwrap_or(0)).arg(groups.len());
        for (head, acks) in groups {
            inv.arg(head.batch.as_str())
                .arg(head.kind)
                .arg(head.accepted)
                .arg(head.rejected)
                .arg(acks.len());
            for a in acks {
                a.encode(inv, time);
            }
        }
        let mut blocks = RowBlocks::default();
        for ack in part {
            ack.rows_into(&mut blocks, time.ms / 1000);
        }
        blocks.encode(inv);
    }
}

/// What the jobs of one group of complete.lua's arguments share.
#[derive(PartialEq, Eq)]
struct GroupHead<'a> {
    batch: &'a BatchId,
    /// `a` a share, `x` an unshare; upper case: the job has no result rows (enqueued before
    /// rows existed).
    kind: &'static str,
    accepted: usize,
    rejected: usize,
}

impl DoneAck<'_> {
    fn head(&self) -> GroupHead<'_> {
        let job = &self.lease.job;
        let rejected = self
            .results
            .iter()
            .filter(|r| matches!(r, AppResult::Rejected { .. }))
            .count();
        GroupHead {
            batch: &job.batch,
            kind: match (job.op, job.row.is_some()) {
                (JobOp::Share, true) => "a",
                (JobOp::Unshare, true) => "x",
                (JobOp::Share, false) => "A",
                (JobOp::Unshare, false) => "X",
            },
            accepted: self.results.len() - rejected,
            rejected,
        }
    }
}

/// The result rows of one complete.lua call, one block per batch, in the order complete.lua
/// reads them: each block's rows in job order, and per state the bitmap writes that set the
/// rows' bits.
#[derive(Default)]
struct RowBlocks<'a> {
    blocks: Vec<RowBlock<'a>>,
}

struct RowBlock<'a> {
    batch: &'a BatchId,
    /// ("env/appid", row) in job order.
    rows: Vec<(String, String)>,
    /// The row numbers moving to each state.
    bits: Vec<(RowState, Vec<u64>)>,
}

impl<'a> RowBlocks<'a> {
    fn of(&mut self, batch: &'a BatchId) -> &mut RowBlock<'a> {
        // A call's acks name one batch or a few: a linear search beats a map.
        match self.blocks.iter().position(|b| b.batch == batch) {
            Some(i) => &mut self.blocks[i],
            None => {
                self.blocks.push(RowBlock {
                    batch,
                    rows: Vec::new(),
                    bits: Vec::new(),
                });
                self.blocks.last_mut().expect("just pushed")
            }
        }
    }

    fn encode(self, inv: &mut ScriptInvocation<'static>) {
        inv.arg(self.blocks.len());
        for b in self.blocks {
            inv.arg(b.batch.as_str()).arg(b.rows.len());
            for (field, row) in b.rows {
                inv.arg(field).arg(row);
            }
            inv.arg(b.bits.len());
            for (state, seqs) in b.bits {
                let args = bit_runs(seqs);
                inv.arg(state.as_str()).arg(args.len()).arg(args);
            }
        }
    }
}

impl RowBlock<'_> {
    fn push(&mut self, field: String, row: String, state: RowState, seq: u64) {
        self.rows.push((field, row));
        match self.bits.iter_mut().find(|(s, _)| *s == state) {
            Some((_, seqs)) => seqs.push(seq),
            None => self.bits.push((state, vec![seq])),
        }
    }
}

/// BITFIELD arguments that set the bits of `seqs` (row numbers) to 1: one `SET uN offset
/// 2^N-1` per run of up to 63 consecutive numbers (BITFIELD's widest unsigned type), so rows
/// acked in the order they were enqueued cost one operation per run, not one each.
fn bit_runs(mut seqs: Vec<u64>) -> Vec<String> {
    seqs.sort_unstable();
    seqs.dedup();
    let mut args = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let start = seqs[i];
        let mut len = 1;
        while i + len < seqs.len() && len < 63 && seqs[i + len] == start + len as u64 {
            len += 1;
        }
        args.push("SET".to_owned());
        args.push(format!("u{len}"));
        args.push(start.to_string());
        args.push(((1u64 << len) - 1).to_string());
        i += len;
    }
    args
}

/// Dead now: bury.lua moves the job to dead with a `share.failed` per appid.
struct BuryAck<'a> {
    lease: &'a Lease,
    reason: FailReason,
    errcode: Option<i64>,
    errmsg: &'a str,
}

impl AckStep for BuryAck<'_> {
    const OP: &'static str = "bury";

    fn script() -> &'static Script {
        &SCRIPTS.bury
    }

    fn encode(&self, inv: &mut ScriptInvocation<'static>, time: &AckTime) {
        let l = self.lease;
        let events: Vec<Event> = l
            .job
            .appids
            .iter()
            .map(|appid| failed(l, &time.iso, appid, self.errcode, self.errmsg, self.reason))
            .collect();
        let free: Vec<String> = l
            .job
            .appids
            .iter()
            .map(|a| l.job.dedupe_member(a))
            .collect();
        let info = serde_json::to_string(&DeadRecord {
            reason: self.reason,
            errcode: self.errcode,
            errmsg: self.errmsg,
            attempts: l.attempt,
            at: time.ms,
        })
        .expect("a dead record always serializes");
        inv.arg(l.job.id.as_str())
            .arg(l.fence)
            .arg(l.job.batch.as_str())
            .arg(l.job.appids.len())
            .arg(info);
        push_events(inv, &events);
        inv.arg(free.len()).arg(free);
        let rows: Vec<(u64, &AppId)> = l
            .job
            .appids
            .iter()
            .filter_map(|a| l.job.row_of(a).map(|r| (r, a)))
            .collect();
        inv.arg(rows.len());
        for (seq, appid) in rows {
            inv.arg(seq).arg(pair(l, appid)).arg(render_row(
                RowState::Failed,
                seq,
                time.ms / 1000,
                l.attempt,
                self.errcode,
                self.reason.as_str(),
                l.job.job_index,
                "",
                self.errmsg,
            ));
        }
    }
}

/// Run again later: retry.lua moves the job to scheduled; a deferral refunds the attempt.
struct RetryAck<'a> {
    lease: &'a Lease,
    at_ms: u64,
    refund: bool,
}

impl AckStep for RetryAck<'_> {
    const OP: &'static str = "retry";

    fn script() -> &'static Script {
        &SCRIPTS.retry
    }

    fn encode(&self, inv: &mut ScriptInvocation<'static>, _time: &AckTime) {
        inv.arg(self.lease.job.id.as_str())
            .arg(self.lease.fence)
            .arg(self.at_ms)
            .arg(if self.refund { "1" } else { "0" });
    }
}

impl Queue {
    /// Reaps expired leases and promotes due scheduled jobs (bounded slices), then leases up to
    /// `max` (≤ [`MAX_CLAIM`]) ready jobs to `worker`, oldest first, each with a new fencing
    /// token and its attempt counted. Also records `worker` as alive. Returns
    /// [`Claim::Paused`] while the queue is paused.
    pub async fn claim(&self, worker: &WorkerId, max: usize) -> Result<Claim, StoreError> {
        Ok(self.claim_with(worker, max, true).await?.claim)
    }

    /// [`Queue::claim`], with the housekeeping (recording the worker as alive, reaping expired
    /// leases, promoting due jobs) only when `housekeep` is set: a worker claiming many times a
    /// second runs it on a timer instead, since each Redis command inside a script costs a few
    /// µs whatever it does. The reply also says when an idle worker must look again.
    pub async fn claim_with(
        &self,
        worker: &WorkerId,
        max: usize,
        housekeep: bool,
    ) -> Result<ClaimReply, StoreError> {
        let op = "claim";
        let s = &self.settings;
        let mut inv = self.invocation(&SCRIPTS.claim, self.clock.now_ms());
        inv.arg(worker.as_str())
            .arg(max.clamp(1, MAX_CLAIM))
            .arg(s.lease.as_millis() as u64)
            .arg(s.max_attempts.max(1))
            .arg(s.promote_slice.clamp(1, 1000))
            .arg(s.reap_slice.clamp(1, 1000))
            .arg(if housekeep { "1" } else { "0" });
        let reply: Vec<Value> = self.run(op, &inv).await?;
        let status = reply.first().and_then(as_str).unwrap_or_default();
        match (status.as_str(), reply.as_slice()) {
            ("paused", [_, until, reason, ..]) => Ok(ClaimReply {
                claim: Claim::Paused {
                    until_ms: as_str(until)
                        .and_then(|u| u.parse().ok())
                        .ok_or_else(|| StoreError::reply(op, "pause end is not a number"))?,
                    reason: as_str(reason).unwrap_or_default(),
                },
                next_due_ms: None,
            }),
            ("jobs", [_, Value::Array(flat), rest @ ..]) => {
                // -1: the claim was full; 0: nothing scheduled or leased.
                let next_due_ms = match rest.get(1) {
                    Some(Value::Int(n)) if *n > 0 => Some(*n as u64),
                    _ => None,
                };
                let mut claimed = Vec::with_capacity(flat.len() / 4);
                for rec in flat.chunks_exact(4) {
                    let field = |i: usize| {
                        as_str(&rec[i]).ok_or_else(|| StoreError::reply(op, "non-string field"))
                    };
                    let id = field(0)?;
                    let fence: u64 = field(1)?.parse().map_err(|e| StoreError::reply(op, e))?;
                    let attempt = field(2)?.parse().map_err(|e| StoreError::reply(op, e))?;
                    // 0: the state record names no generation, the payload's holds.
                    let r#gen: u32 = field(3)?.parse().map_err(|e| StoreError::reply(op, e))?;
                    claimed.push((id, fence, attempt, r#gen));
                }
                let leases = self.with_payloads(claimed).await?;
                Ok(ClaimReply {
                    claim: Claim::Jobs(leases),
                    next_due_ms,
                })
            }
            _ => Err(StoreError::reply(
                op,
                format!("unexpected claim reply {reply:?}"),
            )),
        }
    }

    /// The leases of claimed jobs `(id, fence, attempt, generation)`, their payloads read with
    /// one HMGET (claim.lua returns none: a plain command costs Redis less than carrying each
    /// payload through Lua). A job without a payload, or whose id is not one enqueue writes,
    /// cannot run and is dropped (drop.lua).
    async fn with_payloads(
        &self,
        claimed: Vec<(String, u64, u32, u32)>,
    ) -> Result<Vec<Lease>, StoreError> {
        let op = "claim";
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let payloads: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.jobs())
            .arg(claimed.iter().map(|c| c.0.as_str()).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await
            .map_err(StoreError::redis(op))?;
        let mut leases = Vec::with_capacity(claimed.len());
        let mut missing = Vec::new();
        for ((id, fence, attempt, r#gen), payload) in claimed.into_iter().zip(payloads) {
            let (Some(raw), Ok(id)) = (payload, JobId::parse(&id)) else {
                missing.push((id, fence));
                continue;
            };
            match Payload::parse(op, &id, &raw) {
                Ok(p) => leases.push(Lease {
                    job: p.into_job(id, (r#gen > 0).then_some(r#gen)),
                    fence,
                    attempt,
                }),
                // Only enqueue writes payloads, so this is corruption from outside. Failing
                // the whole claim would strand the other leases; the broken job stays leased
                // until reaped and finally buried as lease_expired.
                Err(e) => tracing::error!(error = %e, "skipping a job with a malformed payload"),
            }
        }
        if !missing.is_empty() {
            let mut inv = self.invocation(&SCRIPTS.drop, self.clock.now_ms());
            inv.arg(missing.len());
            for (id, fence) in &missing {
                inv.arg(id).arg(*fence);
            }
            let dropped: usize = self.run("drop", &inv).await?;
            tracing::warn!(
                claimed = missing.len(),
                dropped,
                "dropped claimed ids that have no payload or are not job ids (written from outside envshare?)"
            );
        }
        Ok(leases)
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
        let time = AckTime {
            ms: now,
            iso: crate::clock::iso8601(now),
            confirm_due: self
                .settings
                .confirm_first
                .map(|first| now.saturating_add(first.as_millis() as u64)),
        };
        let groups = AckGroups::classify(&acks);
        let calls: Vec<_> = [
            self.ack_calls(&groups.done, &time),
            self.ack_calls(&groups.bury, &time),
            self.ack_calls(&groups.retry, &time),
        ]
        .into_iter()
        .flatten()
        .collect();
        let replies = try_join_all(calls.iter().map(|(op, inv)| self.run_ack(op, inv))).await?;
        let mut report = AckReport::default();
        for part in replies {
            report.applied += part.applied;
            report.stale.extend(part.stale);
            report.batches_completed.extend(part.batches_completed);
        }
        if report.applied > 0 {
            self.wait_for_replicas("complete").await;
        }
        Ok(report)
    }

    /// The script calls applying `acks`, all of one kind: slices of at most [`SLICE`] acks.
    fn ack_calls<S: AckStep>(
        &self,
        acks: &[S],
        time: &AckTime,
    ) -> Vec<(&'static str, ScriptInvocation<'static>)> {
        acks.chunks(SLICE)
            .map(|part| {
                let mut inv = self.invocation(S::script(), time.ms);
                S::encode_call(part, &mut inv, time);
                (S::OP, inv)
            })
            .collect()
    }

    /// Runs one ack script call. Its reply is `{applied, {stale job ids}, {completed batch
    /// ids}}`; retry.lua's has no third element.
    async fn run_ack(
        &self,
        op: &'static str,
        inv: &ScriptInvocation<'_>,
    ) -> Result<AckReport, StoreError> {
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
        Ok(AckReport {
            applied,
            stale: parse_ids(op, list(1)?)?,
            batches_completed: parse_ids(op, list(2)?)?,
        })
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

#[cfg(test)]
mod tests {
    use super::bit_runs;

    #[test]
    fn bit_runs_set_each_run_of_consecutive_rows_once_and_split_at_63() {
        let ops = |seqs: Vec<u64>| bit_runs(seqs).join(" ");
        assert_eq!(ops(vec![]), "");
        assert_eq!(ops(vec![7]), "SET u1 7 1");
        // Unsorted, with a duplicate and a gap.
        assert_eq!(ops(vec![5, 3, 4, 4, 9]), "SET u3 3 7 SET u1 9 1");
        // 64 consecutive rows: BITFIELD's widest unsigned type is u63.
        assert_eq!(
            ops((100..164).collect()),
            format!("SET u63 100 {} SET u1 163 1", (1u64 << 63) - 1)
        );
    }
}
