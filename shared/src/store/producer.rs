//! The producer side: bulk enqueue and batch sealing.

use std::collections::BTreeSet;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use tracing::warn;

use super::{EnqueueOptions, EnqueueReport, IN_FLIGHT, NewJob, Queue, SCRIPTS, SLICE, StoreError};
use crate::ids::{BatchId, JobId};

/// Dedupe pairs per enqueue call at most, so one call's ARGV stays bounded whatever the chunk
/// size.
const SLICE_PAIRS: usize = 5000;

/// How long a slice is re-sent while Redis is unreachable (restarting, failing over) before the
/// enqueue gives up. Each slice carries a receipt key, so a re-sent slice is applied once.
const RETRY_FOR: Duration = Duration::from_secs(60);

impl Queue {
    /// Enqueues `jobs`: each gets a new id and goes to `ready` (or `scheduled` when `run_at_ms`
    /// is in the future). (env, appid) pairs already queued within the dedupe window are
    /// skipped unless `opts.force`; a job whose every pair is skipped is not created.
    ///
    /// Big inputs are sent as slices of a few hundred jobs, several in flight at once; each
    /// slice is atomic. With `opts.seal` every batch of `jobs` is sealed once all slices are in.
    pub async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
        opts: EnqueueOptions,
    ) -> Result<EnqueueReport, StoreError> {
        let op = "enqueue";
        if let Some(j) = jobs.iter().find(|j| j.appids.is_empty()) {
            return Err(StoreError::Invalid {
                op,
                detail: format!("a job of env {} in batch {} has no appids", j.env, j.batch),
            });
        }
        let batches: BTreeSet<BatchId> = jobs.iter().map(|j| j.batch.clone()).collect();
        let ids: Vec<JobId> = jobs.iter().map(|_| JobId::generate()).collect();

        // Slice boundaries: at most SLICE jobs and about SLICE_PAIRS pairs per call.
        let mut slices = Vec::new();
        let (mut start, mut pairs) = (0, 0);
        for (i, j) in jobs.iter().enumerate() {
            if i > start && (i - start == SLICE || pairs + j.appids.len() > SLICE_PAIRS) {
                slices.push(start..i);
                start = i;
                pairs = 0;
            }
            pairs += j.appids.len();
        }
        if start < jobs.len() {
            slices.push(start..jobs.len());
        }

        let window = self.settings.dedupe_window.as_millis() as u64;
        // The enqueuing span's W3C traceparent, copied into every job's payload; "" (no field
        // written) when this process exports no traces.
        let traceparent = crate::telemetry::current_traceparent().unwrap_or_default();
        let results: Vec<(usize, usize, usize, Vec<usize>)> = futures::stream::iter(slices)
            .map(|range| {
                let now = self.clock.now_ms();
                let mut inv = self.invocation(&SCRIPTS.enqueue, now);
                let slice = &jobs[range.clone()];
                let pairs: usize = slice.iter().map(|j| j.appids.len()).sum();
                // Consecutive jobs with the same batch, env and run-at share one group header,
                // so each job costs the script only its id, count and appids.
                let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
                for (i, job) in slice.iter().enumerate() {
                    match groups.last_mut() {
                        Some(g)
                            if slice[g.start].batch == job.batch
                                && slice[g.start].env == job.env
                                && slice[g.start].op == job.op
                                && slice[g.start].run_at_ms == job.run_at_ms =>
                        {
                            g.end = i + 1
                        }
                        _ => groups.push(i..i + 1),
                    }
                }
                inv.arg(if opts.force { "1" } else { "0" })
                    .arg(window)
                    .arg(pairs.max(1000))
                    .arg(groups.len())
                    .arg(self.keys.enqueue_receipt(&ulid::Ulid::new().to_string()))
                    .arg(self.settings.results_ttl.as_millis() as u64)
                    .arg(traceparent.as_str());
                for g in groups {
                    let first = &slice[g.start];
                    // Appids per job once for the group when every job has as many (an import's
                    // jobs mostly do): each argument costs Redis a parse and a Lua string.
                    let per = first.appids.len();
                    let uniform = slice[g.clone()].iter().all(|j| j.appids.len() == per);
                    inv.arg(first.batch.as_str())
                        .arg(first.env.as_str())
                        .arg(first.run_at_ms.unwrap_or(0))
                        .arg(match first.op {
                            super::JobOp::Share => "s",
                            super::JobOp::Unshare => "u",
                        })
                        .arg(if uniform { per } else { 0 })
                        .arg(g.len());
                    for i in g {
                        let job = &slice[i];
                        inv.arg(ids[range.start + i].as_str());
                        if !uniform {
                            inv.arg(job.appids.len());
                        }
                        for a in &job.appids {
                            inv.arg(a.hex());
                        }
                    }
                }
                async move {
                    let r: (usize, usize, usize, Vec<usize>) = self.run_retrying(op, &inv).await?;
                    Ok::<_, StoreError>((range, r))
                }
            })
            .buffered(IN_FLIGHT)
            .map_ok(|(range, (created, appids, skipped, not_created))| {
                // Lua indexes are 1-based within the slice.
                let not_created = not_created
                    .into_iter()
                    .map(|i| range.start + i - 1)
                    .collect();
                (created, appids, skipped, not_created)
            })
            .try_collect()
            .await?;

        let mut report = EnqueueReport::default();
        let mut dropped = vec![false; ids.len()];
        for (created, appids, skipped, not_created) in results {
            report.jobs += created;
            report.appids += appids;
            report.skipped_duplicates += skipped;
            for i in not_created {
                dropped[i] = true;
            }
        }
        report.job_ids = ids
            .into_iter()
            .zip(dropped)
            .filter_map(|(id, d)| (!d).then_some(id))
            .collect();
        if opts.seal {
            for b in &batches {
                self.seal_batch(b).await?;
            }
        }
        self.wait_for_replicas(op).await;
        Ok(report)
    }

    /// Runs an idempotent script call, re-sending it while the error is retryable (Redis
    /// restarting, a cut connection), for up to [`RETRY_FOR`].
    async fn run_retrying<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            match self.run(op, inv).await {
                Err(e) if e.is_retryable() && started.elapsed() < RETRY_FOR => {
                    warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "{op} failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// Marks `batch` as fully enqueued, so `batch.completed` fires when its last job ends (or
    /// now, if every job already ended). Idempotent. Returns whether this call emitted
    /// `batch.completed`.
    pub async fn seal_batch(&self, batch: &BatchId) -> Result<bool, StoreError> {
        let mut inv = self.invocation(&SCRIPTS.seal, self.clock.now_ms());
        inv.arg(batch.as_str());
        let emitted: i64 = self.run_retrying("seal batch", &inv).await?;
        Ok(emitted == 1)
    }
}
