//! A finished job, found again by its id. Finished jobs leave the queue, but their batch's
//! per-appid results keep, for as long as the batch is on record, the id of every job of the
//! batch (the `:jobs` string, 26 bytes per job index) and each row's job index (bytes 19–22 of
//! its record in the `:seq` string): enough to answer "what happened to job X" without an index
//! written per job.
//!
//! The search reads only what it needs, in bounded slices, outside any script: the batches on
//! record created in the week before the job's id (a ULID carries its time), newest first; in each,
//! the job ids a window at a time; then a binary search of the row records for the job's first
//! row, and its rows a page at a time.

use serde::Serialize;

use super::results::SEQ_WIDTH;
use super::{Queue, ResultRow, StoreError};
use crate::ids::{BatchId, JobId};

/// Bytes per job id in a batch's `:jobs` string (lua/prelude.lua, `JOB_WIDTH`).
const JOB_WIDTH: usize = 26;
/// Job ids read per GETRANGE while looking for one (104 KB).
const JOB_WINDOW: usize = 4096;
/// Rows read per page of a job's rows (a job carries at most a chunk of pairs, mostly 10).
const ROW_PAGE: usize = 100;
/// How long before a batch's creation one of its job ids may have been generated (a producer
/// makes the ids of a big import before its first enqueue call reaches Redis; producers' clocks
/// differ).
const ID_BEFORE_BATCH_MS: u64 = 3_600_000;
/// How long after a batch's creation a job may have joined it and still be found: the search
/// reads only batches created in this window before the job's id, so an unknown id does not
/// read every batch on record. Imports add all their jobs within minutes; a batch added to for
/// longer is still searched, by ids of its first week.
const BATCH_BEFORE_ID_MS: u64 = 7 * 24 * 3_600_000;

/// A job that finished and left the queue, as its batch's results remember it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FinishedJob {
    /// The job.
    pub id: JobId,
    /// Its batch.
    pub batch_id: BatchId,
    /// Its place among the batch's jobs (0 = the first enqueued).
    pub index: u64,
    /// The outcome of each of its pairs, in row order.
    pub rows: Vec<ResultRow>,
}

impl Queue {
    /// Finds a job that is no longer in the queue in the results of the batches on record.
    /// `None` when no batch on record had it (its batch expired, it was purged, it never
    /// existed, or its id is not one the results can hold).
    pub async fn finished_job(&self, id: &JobId) -> Result<Option<FinishedJob>, StoreError> {
        let op = "finished job";
        if id.as_str().len() != JOB_WIDTH {
            return Ok(None);
        }
        let (newest, oldest) = match id.created_ms() {
            Some(ms) => (
                (ms + ID_BEFORE_BATCH_MS).to_string(),
                ms.saturating_sub(BATCH_BEFORE_ID_MS).to_string(),
            ),
            None => ("+inf".to_owned(), "-inf".to_owned()),
        };
        let batches: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(self.keys.batches())
            .arg(newest)
            .arg(oldest)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis(op))?;
        for b in batches {
            let Ok(batch) = BatchId::parse(&b) else {
                continue;
            };
            if let Some(index) = self.job_index(&batch, id).await? {
                let rows = self.job_rows(&batch, id, index).await?;
                return Ok(Some(FinishedJob {
                    id: id.clone(),
                    batch_id: batch,
                    index,
                    rows,
                }));
            }
        }
        Ok(None)
    }

    /// The index of job `id` among the jobs of `batch`, if it is one of them.
    async fn job_index(&self, batch: &BatchId, id: &JobId) -> Result<Option<u64>, StoreError> {
        let op = "finished job";
        let key = format!("{}:jobs", self.keys.results(batch));
        let want = id.as_str().as_bytes();
        let mut from = 0usize;
        loop {
            let window = JOB_WINDOW * JOB_WIDTH;
            let bytes: Vec<u8> = redis::cmd("GETRANGE")
                .arg(&key)
                .arg(from)
                .arg(from + window - 1)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(StoreError::redis(op))?;
            if let Some(i) = bytes.chunks_exact(JOB_WIDTH).position(|c| c == want) {
                return Ok(Some((from / JOB_WIDTH + i) as u64));
            }
            if bytes.len() < window {
                return Ok(None);
            }
            from += window;
        }
    }

    /// The rows of job `index` of `batch`: a binary search of the row records for its first
    /// row (rows are numbered in the order jobs were enqueued), then its rows page by page.
    async fn job_rows(
        &self,
        batch: &BatchId,
        id: &JobId,
        index: u64,
    ) -> Result<Vec<ResultRow>, StoreError> {
        let op = "finished job";
        let key = format!("{}:seq", self.keys.results(batch));
        let len: u64 = redis::cmd("STRLEN")
            .arg(&key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis(op))?;
        let (mut lo, mut hi) = (0u64, len / SEQ_WIDTH);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = mid * SEQ_WIDTH + 18;
            let b: Vec<u8> = redis::cmd("GETRANGE")
                .arg(&key)
                .arg(at)
                .arg(at + 3)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(StoreError::redis(op))?;
            let job = match b[..] {
                [a, b, c, d] => u64::from(u32::from_be_bytes([a, b, c, d])),
                _ => return Err(StoreError::reply(op, "a row record is cut short")),
            };
            if job < index {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut rows = Vec::new();
        let mut cursor = lo;
        loop {
            let page = self.results_page(batch, None, cursor, ROW_PAGE).await?;
            let whole = page.rows.len();
            let mine = page.rows.into_iter().take_while(|r| r.job_id == *id);
            let before = rows.len();
            rows.extend(mine);
            match page.next {
                Some(next) if rows.len() - before == whole => cursor = next,
                _ => return Ok(rows),
            }
        }
    }
}
