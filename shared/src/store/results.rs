//! Per-appid results: one row per (env, appid) pair of a batch while the batch is on record,
//! written by the same scripts as the state change and its events (lua/prelude.lua documents
//! the keys and the row format), read here a page at a time.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use redis::Value;
use serde::Serialize;

use super::{Queue, SCRIPTS, StoreError};
use crate::ids::{AppId, BatchId, EnvId, JobId};

/// Rows per [`Queue::results_page`] call at most.
pub const MAX_PAGE: usize = 1000;
/// Pending rows one cancel script call looks at.
const CANCEL_SLICE: usize = 500;
/// Bytes per row number in the `:seq` string (lua/prelude.lua, `SEQ_WIDTH`).
pub(super) const SEQ_WIDTH: u64 = 22;

/// Where one (env, appid) pair of a batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RowState {
    /// Enqueued; WeChat has not answered for it yet (waiting, running or retrying).
    Pending,
    /// WeChat took the share; the administrator must open the confirmation URL.
    Accepted,
    /// The share failed for good (see `reason`).
    Failed,
    /// The administrator confirmed: the binding is live.
    Bound,
    /// The confirmation window ended without the binding showing up.
    Unconfirmed,
    /// An operator cancelled the batch before the pair ran.
    Cancelled,
    /// The binding was removed (`envshare unshare`, `envshare sync --prune`).
    Unshared,
}

impl RowState {
    /// Every state, in lifecycle order.
    pub const ALL: [RowState; 7] = [
        RowState::Pending,
        RowState::Accepted,
        RowState::Failed,
        RowState::Bound,
        RowState::Unconfirmed,
        RowState::Cancelled,
        RowState::Unshared,
    ];

    /// The lowercase name (`pending`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Pending => "pending",
            RowState::Accepted => "accepted",
            RowState::Failed => "failed",
            RowState::Bound => "bound",
            RowState::Unconfirmed => "unconfirmed",
            RowState::Cancelled => "cancelled",
            RowState::Unshared => "unshared",
        }
    }

    /// The one-letter code rows store (lua/prelude.lua, `STATES`).
    fn from_code(c: &str) -> Option<Self> {
        Some(match c {
            "p" => RowState::Pending,
            "a" => RowState::Accepted,
            "f" => RowState::Failed,
            "b" => RowState::Bound,
            "u" => RowState::Unconfirmed,
            "c" => RowState::Cancelled,
            "x" => RowState::Unshared,
            _ => return None,
        })
    }
}

impl fmt::Display for RowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`RowState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown state {0:?}: use one of pending, accepted, failed, bound, unconfirmed, cancelled, \
     unshared"
)]
pub struct UnknownState(pub String);

impl FromStr for RowState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, UnknownState> {
        RowState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// One pair's result row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ResultRow {
    /// The row number within the batch (the order its pairs were enqueued, from 0).
    pub seq: u64,
    /// The batch.
    pub batch_id: BatchId,
    /// Where the pair stands.
    pub state: RowState,
    /// The environment.
    pub env: EnvId,
    /// The Mini Program.
    pub appid: AppId,
    /// The job that carried (or carries) the pair.
    pub job_id: JobId,
    /// The confirmation URL to send to the Mini Program's administrator (accepted, bound,
    /// unconfirmed).
    pub confirm_url: Option<String>,
    /// WeChat's errcode of a failure, if WeChat answered one.
    pub errcode: Option<i64>,
    /// What failed.
    pub errmsg: Option<String>,
    /// Why it failed or ended (`rejected`, `permanent_error`, `retries_exhausted`,
    /// `lease_expired`, `cancelled`).
    pub reason: Option<String>,
    /// Tries made.
    pub attempts: u32,
    /// When the row last changed (ms since the epoch; rows keep seconds).
    pub updated_at_ms: u64,
}

impl ResultRow {
    /// Parses `env/appid|S|SEQ|UPDATED|ATTEMPTS|ERRCODE|REASON|JOB|URL|ERRMSG` (JOB is the job's
    /// index in the batch; the scripts send its id, `job`, beside the row).
    #[cfg(test)]
    fn parse(batch: &BatchId, raw: &str, job: &str) -> Result<Self, String> {
        Self::parse_or_pending(batch, raw, job, 0)
    }

    /// As [`Self::parse`]; `env/appid|` alone (a pair with no row yet) is a pending row of
    /// number `seq` updated at `created_ms` (the batch's creation).
    fn parse_or_pending(
        batch: &BatchId,
        raw: &str,
        job: &str,
        created_ms: u64,
    ) -> Result<Self, String> {
        if let Some(pair) = raw.strip_suffix('|').filter(|p| !p.contains('|')) {
            let (env, appid) = pair
                .split_once('/')
                .ok_or_else(|| format!("result row field {pair:?} is not env/appid"))?;
            return Ok(Self {
                seq: 0,
                batch_id: batch.clone(),
                state: RowState::Pending,
                env: EnvId::parse(env).map_err(|e| e.to_string())?,
                appid: AppId::parse(appid).map_err(|e| e.to_string())?,
                job_id: JobId::parse(job).map_err(|e| e.to_string())?,
                confirm_url: None,
                errcode: None,
                errmsg: None,
                reason: None,
                attempts: 0,
                updated_at_ms: created_ms,
            });
        }
        let f: Vec<&str> = raw.splitn(10, '|').collect();
        let [
            pair,
            code,
            seq,
            updated,
            attempts,
            errcode,
            reason,
            _job_index,
            url,
            errmsg,
        ] = f[..]
        else {
            return Err(format!("a result row has {} fields, not 10", f.len()));
        };
        let (env, appid) = pair
            .split_once('/')
            .ok_or_else(|| format!("result row field {pair:?} is not env/appid"))?;
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Ok(Self {
            seq: seq.parse().map_err(|_| format!("row number {seq:?}"))?,
            batch_id: batch.clone(),
            state: RowState::from_code(code).ok_or_else(|| format!("state code {code:?}"))?,
            env: EnvId::parse(env).map_err(|e| e.to_string())?,
            appid: AppId::parse(appid).map_err(|e| e.to_string())?,
            job_id: JobId::parse(job).map_err(|e| e.to_string())?,
            confirm_url: opt(url).map(|u| u.replace("%7C", "|")),
            errcode: if errcode.is_empty() {
                None
            } else {
                Some(
                    errcode
                        .parse()
                        .map_err(|_| format!("errcode {errcode:?}"))?,
                )
            },
            errmsg: opt(errmsg),
            reason: opt(reason),
            attempts: attempts.parse().unwrap_or(0),
            updated_at_ms: updated.parse::<u64>().unwrap_or(0) * 1000,
        })
    }
}

/// One page of a batch's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResultsPage {
    /// The rows, in row-number order.
    pub rows: Vec<ResultRow>,
    /// The cursor of the next page; `None` when this is the last one.
    pub next: Option<u64>,
}

/// What [`Queue::cancel_batch`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CancelReport {
    /// Waiting jobs taken out of the queue.
    pub cancelled_jobs: u64,
    /// Their appids (now `cancelled`, each with a `share.failed` reason `cancelled`).
    pub cancelled_appids: u64,
    /// Jobs leased to a worker when the sweep passed: they finish and record their outcome.
    pub running_jobs: u64,
    /// The batch had completed before: nothing changed.
    pub already_completed: bool,
}

/// The field of the (env, appid) pair's row in its batch's row hash: `env/appid`.
pub(crate) fn row_field(env: &EnvId, appid: &AppId) -> String {
    format!("{env}/{appid}")
}

/// A row as the scripts store it (lua/prelude.lua): `S|SEQ|UPDATED|ATTEMPTS|ERRCODE|REASON|JOB|
/// URL|ERRMSG`, with `updated_s` in unix seconds and `job` the job's index in its batch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn render_row(
    state: RowState,
    seq: u64,
    updated_s: u64,
    attempts: u32,
    errcode: Option<i64>,
    reason: &str,
    job: Option<u64>,
    url: &str,
    errmsg: &str,
) -> String {
    let code = match state {
        RowState::Pending => 'p',
        RowState::Accepted => 'a',
        RowState::Failed => 'f',
        RowState::Bound => 'b',
        RowState::Unconfirmed => 'u',
        RowState::Cancelled => 'c',
        RowState::Unshared => 'x',
    };
    let errcode = errcode.map(|c| c.to_string()).unwrap_or_default();
    let job = job.map(|j| j.to_string()).unwrap_or_default();
    let url = url.replace('|', "%7C");
    format!("{code}|{seq}|{updated_s}|{attempts}|{errcode}|{reason}|{job}|{url}|{errmsg}")
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

impl Queue {
    /// Up to `limit` (≤ [`MAX_PAGE`]) rows of `batch` from row number `cursor` (0: the
    /// start), only those in `state` if given. O(page): no scan of events or keys.
    pub async fn results_page(
        &self,
        batch: &BatchId,
        state: Option<RowState>,
        cursor: u64,
        limit: usize,
    ) -> Result<ResultsPage, StoreError> {
        let op = "results page";
        let mut inv = self.invocation(&SCRIPTS.results_page, self.now_ms());
        inv.arg(batch.as_str())
            .arg(state.map_or("", RowState::as_str))
            .arg(cursor)
            .arg(limit.clamp(1, MAX_PAGE));
        let reply: Vec<Value> = self.run(op, &inv).await?;
        let mut it = reply.iter();
        let next = it.next().and_then(int).unwrap_or(-1);
        let created_ms = it.next().and_then(int).unwrap_or(0).max(0) as u64;
        let mut rows = Vec::new();
        while let (Some(seq), Some(raw), Some(job)) = (it.next(), it.next(), it.next()) {
            let raw = text(raw).ok_or_else(|| StoreError::reply(op, "a row is not text"))?;
            let job = text(job).unwrap_or_default();
            let mut row = ResultRow::parse_or_pending(batch, raw, job, created_ms)
                .map_err(|e| StoreError::reply(op, e))?;
            row.seq = int(seq).unwrap_or(0).max(0) as u64;
            rows.push(row);
        }
        Ok(ResultsPage {
            rows,
            next: u64::try_from(next).ok(),
        })
    }

    /// How many rows of `batch` are in each state (every state listed, zeros included).
    pub async fn results_counts(
        &self,
        batch: &BatchId,
    ) -> Result<BTreeMap<RowState, u64>, StoreError> {
        // Rows in all: the row-number string's length; pending: those in no other state.
        let ended = &RowState::ALL[1..];
        let mut pipe = redis::pipe();
        pipe.cmd("STRLEN")
            .arg(format!("{}:seq", self.keys.results(batch)));
        for st in ended {
            pipe.cmd("BITCOUNT")
                .arg(self.keys.results_state(batch, st.as_str()));
        }
        let counts: Vec<u64> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("results counts"))?;
        let total = counts[0] / SEQ_WIDTH;
        let done: u64 = counts[1..].iter().sum();
        let mut out: BTreeMap<RowState, u64> = ended
            .iter()
            .copied()
            .zip(counts[1..].iter().copied())
            .collect();
        out.insert(RowState::Pending, total.saturating_sub(done));
        Ok(out)
    }

    /// Bytes of Redis memory the result keys of `batch` take (`MEMORY USAGE` of each, all
    /// samples), for the memory-per-row figure of the benchmarks.
    pub async fn results_memory(&self, batch: &BatchId) -> Result<u64, StoreError> {
        let base = self.keys.results(batch);
        let mut keys = vec![
            base.clone(),
            format!("{base}:seq"),
            format!("{base}:envs"),
            format!("{base}:jobs"),
        ];
        keys.extend(
            RowState::ALL
                .iter()
                .map(|st| self.keys.results_state(batch, st.as_str())),
        );
        let mut pipe = redis::pipe();
        for k in &keys {
            // MEMORY USAGE does not expire a key whose TTL has passed; EXISTS does.
            pipe.cmd("EXISTS").arg(k).ignore();
            pipe.cmd("MEMORY").arg("USAGE").arg(k).arg("SAMPLES").arg(0);
        }
        // A key that does not exist answers nil.
        let sizes: Vec<Value> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("results memory"))?;
        Ok(sizes.iter().filter_map(int).map(|n| n.max(0) as u64).sum())
    }

    /// The rows of `appid` in every batch on record, newest batch first, its pending pairs
    /// (queued, running or waiting for a retry: no row yet) included.
    pub async fn find_appid(&self, appid: &AppId) -> Result<Vec<ResultRow>, StoreError> {
        let op = "find appid";
        let mut inv = self.invocation(&SCRIPTS.results_find, self.now_ms());
        inv.arg(appid.as_str());
        let reply: Vec<String> = self.run(op, &inv).await?;
        let mut rows = Vec::new();
        for rec in reply.chunks_exact(5) {
            let batch = BatchId::parse(&rec[0]).map_err(|e| StoreError::reply(op, e))?;
            let created_ms = rec[3].parse().unwrap_or(0);
            let mut row = ResultRow::parse_or_pending(&batch, &rec[1], &rec[2], created_ms)
                .map_err(|e| StoreError::reply(op, e))?;
            // A pending pair's row number comes beside it (a row carries its own).
            if let Ok(seq) = rec[4].parse() {
                row.seq = seq;
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Cancels `batch`: every job of it still waiting leaves the queue, its appids end
    /// `cancelled` (each with a `share.failed` reason `cancelled`), and the batch completes once
    /// the jobs leased now have finished. Sweeps the batch's pending rows in slices; call again
    /// to sweep up jobs that were leased and came back for a retry. `None` if there is no such
    /// batch.
    pub async fn cancel_batch(&self, batch: &BatchId) -> Result<Option<CancelReport>, StoreError> {
        let op = "cancel batch";
        let mut report = CancelReport::default();
        let mut cursor: i64 = 0;
        while cursor >= 0 {
            let mut inv = self.invocation(&SCRIPTS.cancel, self.now_ms());
            inv.arg(batch.as_str()).arg(cursor).arg(CANCEL_SLICE);
            let reply: Vec<Value> = self.run(op, &inv).await?;
            match reply.first().and_then(text) {
                Some("unknown") => return Ok(None),
                // On a later slice: this sweep's own cancels completed the batch.
                Some("completed") => {
                    report.already_completed = cursor == 0;
                    return Ok(Some(report));
                }
                Some("ok") => {}
                _ => return Err(StoreError::reply(op, format!("unexpected {reply:?}"))),
            }
            let n = |i: usize| reply.get(i).and_then(int).unwrap_or(0);
            cursor = n(1);
            report.cancelled_jobs += n(2) as u64;
            report.cancelled_appids += n(3) as u64;
            report.running_jobs += n(4) as u64;
        }
        Ok(Some(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_parses_with_a_pipe_in_its_message_and_url() {
        let b = BatchId::parse("b-1").unwrap();
        let raw = "env-1/wx0123456789abcdef|f|7|1700000000|3|-1||4|https://x/a%7Cb|system busy | try later";
        let r = ResultRow::parse(&b, raw, "01J0000000000000000000000A").unwrap();
        assert_eq!(r.job_id.as_str(), "01J0000000000000000000000A");
        assert_eq!(r.seq, 7);
        assert_eq!(r.state, RowState::Failed);
        assert_eq!(r.errcode, Some(-1));
        assert_eq!(r.reason, None);
        assert_eq!(r.confirm_url.as_deref(), Some("https://x/a|b"));
        assert_eq!(r.errmsg.as_deref(), Some("system busy | try later"));
        assert_eq!(r.updated_at_ms, 1_700_000_000_000);
        assert!(ResultRow::parse(&b, "env/wx0123456789abcdef|q|1", "j").is_err());
    }

    #[test]
    fn states_round_trip_and_an_unknown_one_lists_the_valid_ones() {
        for st in RowState::ALL {
            assert_eq!(st.as_str().parse::<RowState>().unwrap(), st);
        }
        let e = "done".parse::<RowState>().unwrap_err().to_string();
        assert!(e.contains("pending") && e.contains("unshared"), "{e}");
    }
}
