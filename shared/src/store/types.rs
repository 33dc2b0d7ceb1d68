//! The queue's public data types (see the module docs for how they flow).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::events::FailReason;
use crate::ids::{AppId, BatchId, EnvId, JobId};

/// What a job asks of WeChat.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JobOp {
    /// Share the env with the appids (`batchshareenv`).
    #[default]
    Share,
    /// Remove the env's binding from the appids (`batchunshareenv`).
    Unshare,
}

impl JobOp {
    /// `share` or `unshare`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOp::Share => "share",
            JobOp::Unshare => "unshare",
        }
    }
}

/// A job to enqueue: share `env` with `appids` (one WeChat call), or unshare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Share or unshare.
    pub op: JobOp,
    /// The environment to share.
    pub env: EnvId,
    /// The Mini Programs to share it with (at least one).
    pub appids: Vec<AppId>,
    /// The batch (import) the job belongs to.
    pub batch: BatchId,
    /// Run no earlier than this time (ms); `None` = now.
    pub run_at_ms: Option<u64>,
}

/// Options of [`Queue::enqueue`](super::Queue::enqueue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// Enqueue pairs even if they are inside their dedupe window.
    pub force: bool,
    /// Mark every batch of these jobs as fully enqueued once they are all written (default
    /// `true`). `batch.completed` is only emitted for a sealed batch, so an import split over
    /// several `enqueue` calls passes `false` on all but the last call (or calls
    /// [`Queue::seal_batch`](super::Queue::seal_batch) at the end).
    pub seal: bool,
}

impl Default for EnqueueOptions {
    fn default() -> Self {
        Self {
            force: false,
            seal: true,
        }
    }
}

/// What [`Queue::enqueue`](super::Queue::enqueue) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueReport {
    /// Jobs created.
    pub jobs: usize,
    /// Appids enqueued (in created jobs).
    pub appids: usize,
    /// (env, appid) pairs skipped because they were already queued in the dedupe window (or
    /// repeated in the input).
    pub skipped_duplicates: usize,
    /// Ids of the created jobs, in input order (jobs whose every pair was skipped are absent).
    pub job_ids: Vec<JobId>,
}

/// A worker's identity: `host-pid-random`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId(String);

impl WorkerId {
    /// A fresh id: host name (`HOSTNAME` or `/etc/hostname`), process id and 32 random bits,
    /// so restarted or co-located workers never share an id.
    pub fn generate() -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(40)
            .collect();
        let host = if host.is_empty() { "host".into() } else { host };
        Self(format!(
            "{host}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ))
    }

    /// A given id (tests, or an operator-chosen name).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job as a worker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShareJob {
    /// The job id.
    pub id: JobId,
    /// The environment to share.
    pub env: EnvId,
    /// The Mini Programs.
    pub appids: Vec<AppId>,
    /// The batch.
    pub batch: BatchId,
    /// How many times an operator retried the job from dead (part of event ids).
    pub r#gen: u32,
    /// Share or unshare.
    #[serde(default)]
    pub op: JobOp,
    /// The result row number of the first appid (the others follow in order); `None` for a job
    /// enqueued before result rows existed.
    #[serde(default)]
    pub row: Option<u64>,
    /// The job's index in its batch (where its id sits in the batch's result keys).
    #[serde(default)]
    pub job_index: Option<u64>,
    /// The W3C `traceparent` of the span that enqueued the job (an import), when the producer
    /// exported traces: the worker's attempt span is its child, and the job's events carry its
    /// trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl ShareJob {
    /// The result row number of `appid`, if the job has rows and carries that appid.
    pub fn row_of(&self, appid: &AppId) -> Option<u64> {
        let first = self.row?;
        let i = self.appids.iter().position(|a| a == appid)?;
        Some(first + i as u64)
    }

    /// The trace id (32 hex digits) of the job's `traceparent`, carried by its events.
    pub fn trace_id(&self) -> Option<String> {
        self.traceparent
            .as_deref()
            .and_then(crate::telemetry::trace_id_of)
            .map(str::to_owned)
    }

    /// The job's dedupe member of `appid`: `env/appid` for a share, `u:env/appid` for an
    /// unshare (lua/enqueue.lua writes the same).
    pub fn dedupe_member(&self, appid: &AppId) -> String {
        match self.op {
            JobOp::Share => format!("{}/{}", self.env, appid),
            JobOp::Unshare => format!("u:{}/{}", self.env, appid),
        }
    }
}

/// A job leased to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job: ShareJob,
    /// The fencing token: acks are accepted only with the current one.
    pub fence: u64,
    /// Which try this is, 1-based (crash recoveries count).
    pub attempt: u32,
}

impl Lease {
    /// The job id and fencing token.
    pub fn lease_ref(&self) -> LeaseRef {
        LeaseRef {
            job: self.job.id.clone(),
            fence: self.fence,
        }
    }
}

/// A job id with the fencing token of one lease of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    /// The job.
    pub job: JobId,
    /// The fencing token.
    pub fence: u64,
}

/// The answer to [`Queue::claim`](super::Queue::claim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Leased jobs (possibly none).
    Jobs(Vec<Lease>),
    /// Claims are paused (e.g. daily quota spent) until `until_ms`.
    Paused {
        /// End of the pause (ms).
        until_ms: u64,
        /// Why.
        reason: String,
    },
}

/// What [`Queue::claim_with`](super::Queue::claim_with) answers: the claim, and when an idle
/// worker must look again.
#[derive(Debug, Clone)]
pub struct ClaimReply {
    /// The leased jobs, or the pause.
    pub claim: Claim,
    /// When fewer jobs than asked for were ready: the earliest time (ms) a scheduled job falls
    /// due or a lease runs out, `None` if nothing is scheduled or leased (or the claim was
    /// full, or paused). Until then only an enqueue, a release or a retry (all published on the
    /// wake channel) can make work.
    pub next_due_ms: Option<u64>,
}

/// How a leased job ended, with the lease it ran under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The lease (job, fencing token, attempt): the events need the job's env, appids, gen and
    /// the attempt number.
    pub lease: Lease,
    /// What happened.
    pub outcome: Outcome,
}

impl Ack {
    /// An ack of `lease` with `outcome`.
    pub fn new(lease: Lease, outcome: Outcome) -> Self {
        Self { lease, outcome }
    }
}

/// The result of running a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// WeChat answered errcode 0: one event per appid. Give one result per appid of the job.
    Done(Vec<AppResult>),
    /// Transient failure: schedule at `at_ms`; the attempt stays counted.
    RetryAt {
        /// When to run again (ms).
        at_ms: u64,
        /// WeChat's errcode, if any.
        errcode: Option<i64>,
        /// What failed.
        errmsg: String,
    },
    /// Dead now: share.failed for every appid with `reason`.
    Dead {
        /// Why.
        reason: FailReason,
        /// WeChat's errcode, if any.
        errcode: Option<i64>,
        /// What failed.
        errmsg: String,
    },
    /// Not run (quota pause, token misconfiguration): back to scheduled at `at_ms`, attempt
    /// refunded.
    Defer {
        /// When to run (ms).
        at_ms: u64,
    },
}

/// The result for one appid of a job WeChat answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppResult {
    /// WeChat took the request; `confirm_url` from `msg_info_list`.
    Accepted {
        /// The Mini Program.
        appid: AppId,
        /// The confirmation URL, if WeChat gave one.
        confirm_url: Option<String>,
    },
    /// WeChat listed the appid in `err_list`.
    Rejected {
        /// The Mini Program.
        appid: AppId,
        /// errcode, if any.
        errcode: Option<i64>,
        /// errmsg from `err_list`.
        errmsg: String,
    },
}

/// What [`Queue::complete`](super::Queue::complete) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckReport {
    /// Acks applied.
    pub applied: usize,
    /// Jobs whose fencing token no longer matched (reaped and re-leased, or already acked):
    /// nothing was written for them.
    pub stale: Vec<JobId>,
    /// Batches whose `batch.completed` was emitted by this call.
    pub batches_completed: Vec<BatchId>,
}

/// What a reap did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Expired leases put back in ready.
    pub requeued: usize,
    /// Expired leases at max attempts moved to dead (`lease_expired`).
    pub buried: usize,
    /// Batches whose `batch.completed` was emitted by this reap.
    pub batches_completed: Vec<BatchId>,
}

/// The job payload as stored in the `jobs` hash, as enqueue wrote it (never rewritten).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Payload {
    pub env: EnvId,
    pub appids: Vec<AppId>,
    pub batch: BatchId,
    /// The generation at enqueue (0). Records written by older versions hold the generation of
    /// a job retried from dead here; a state record naming a generation takes precedence.
    #[serde(default)]
    pub r#gen: u32,
    #[serde(default)]
    pub created_at: u64,
    #[serde(default)]
    pub op: JobOp,
    #[serde(default)]
    pub row: Option<u64>,
    #[serde(default)]
    pub ji: Option<u64>,
    /// The W3C `traceparent` of the enqueuing span; absent when the producer traced nothing.
    #[serde(default)]
    pub tp: Option<String>,
}

impl Payload {
    pub(crate) fn parse(
        op: &'static str,
        id: &JobId,
        raw: &str,
    ) -> Result<Self, super::StoreError> {
        serde_json::from_str(raw).map_err(|e| super::StoreError::Malformed {
            op,
            what: format!("payload of job {id}"),
            detail: e.to_string(),
        })
    }

    /// The job, at generation `state_gen` (from its state record) or, when the record names
    /// none, the payload's.
    pub(crate) fn into_job(self, id: JobId, state_gen: Option<u32>) -> ShareJob {
        ShareJob {
            id,
            env: self.env,
            appids: self.appids,
            batch: self.batch,
            r#gen: state_gen.unwrap_or(self.r#gen),
            op: self.op,
            row: self.row,
            job_index: self.ji,
            traceparent: self.tp,
        }
    }
}

/// A job's record in the `state` hash (the grammar `lua/lib.lua` documents at `parse_state`):
/// `attempts` while waiting, `fence:attempts:worker` while leased, and `/gen` after the
/// attempts once an operator retried the job from dead (`attempts/gen`, also kept while dead).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StateRecord {
    pub attempts: u32,
    /// The fencing token while leased.
    pub fence: Option<u64>,
    /// The lease holder ("" while not leased).
    pub worker: String,
    /// The generation, when the record names one (otherwise the payload's holds).
    pub r#gen: Option<u32>,
}

impl StateRecord {
    /// Parses a record; no record is attempts 0, no lease, no generation. Unreadable numbers
    /// read as 0 / none.
    pub(crate) fn parse(record: Option<&str>) -> Self {
        let Some(record) = record else {
            return Self::default();
        };
        let (fence, counts, worker) = match record.splitn(3, ':').collect::<Vec<_>>()[..] {
            [f, c, w] => (f.parse().ok(), c, w),
            [c, ..] => (None, c, ""),
            [] => (None, "", ""),
        };
        let (attempts, r#gen) = match counts.split_once('/') {
            Some((a, g)) => (a, g.parse().ok()),
            None => (counts, None),
        };
        Self {
            attempts: attempts.parse().unwrap_or(0),
            fence,
            worker: worker.to_owned(),
            r#gen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_record_reads_in_every_form() {
        let rec = |a, fence, worker: &str, g| StateRecord {
            attempts: a,
            fence,
            worker: worker.to_owned(),
            r#gen: g,
        };
        assert_eq!(StateRecord::parse(None), rec(0, None, "", None));
        assert_eq!(StateRecord::parse(Some("3")), rec(3, None, "", None));
        assert_eq!(StateRecord::parse(Some("0/2")), rec(0, None, "", Some(2)));
        assert_eq!(
            StateRecord::parse(Some("41:2:host-1-ab")),
            rec(2, Some(41), "host-1-ab", None)
        );
        assert_eq!(
            StateRecord::parse(Some("41:1/3:w:with:colons")),
            rec(1, Some(41), "w:with:colons", Some(3))
        );
    }
}
