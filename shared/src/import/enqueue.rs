//! Streaming chunks into the queue: [`enqueue_chunks`].

use super::{Chunk, ImportError};
use crate::ids::BatchId;
use crate::store::{EnqueueOptions, EnqueueReport, JobOp, NewJob, Queue, StoreError};

/// Jobs per [`Queue::enqueue`] call of [`enqueue_chunks`]: the queue slices each call again into
/// script calls of a few hundred jobs with several in flight, so this keeps its pipeline full.
pub const ENQUEUE_SLICE_JOBS: usize = 4000;
/// Pairs per [`Queue::enqueue`] call of [`enqueue_chunks`] at most (for large chunk sizes).
pub const ENQUEUE_SLICE_PAIRS: usize = 40_000;
/// [`Queue::enqueue`] calls in flight at once, while the reader prepares the next slice.
pub const ENQUEUE_IN_FLIGHT: usize = 2;

/// What an import enqueued so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Enqueued {
    /// Jobs created.
    pub jobs: u64,
    /// Appids enqueued in them.
    pub appids: u64,
    /// Pairs skipped because they were already queued within the dedupe window.
    pub skipped_duplicates: u64,
}

impl Enqueued {
    fn add(&mut self, r: &EnqueueReport) {
        self.jobs += r.jobs as u64;
        self.appids += r.appids as u64;
        self.skipped_duplicates += r.skipped_duplicates as u64;
    }
}

/// Why [`enqueue_chunks`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// Reading the input again failed (not retryable as is: the input changed or went away).
    #[error("reading the input for enqueueing failed")]
    Read(#[source] ImportError),
    /// The queue failed; the jobs counted in `done` were enqueued, the rest were not.
    /// Retryable when [`StoreError::is_retryable`] says so: running the same import again
    /// with the same batch id skips the pairs already queued.
    #[error("enqueueing failed after {} jobs were enqueued", done.jobs)]
    Queue {
        /// What was enqueued before the failure.
        done: Enqueued,
        /// The queue's error.
        #[source]
        source: StoreError,
    },
}

/// Enqueues `chunks` into `batch` as `op` jobs, streaming: a blocking thread pulls chunks (e.g. [`Chunks`](super::Chunks)
/// over the input) and hands slices of [`ENQUEUE_SLICE_JOBS`] jobs to this task, which keeps
/// [`ENQUEUE_IN_FLIGHT`] [`Queue::enqueue`] calls going, so memory holds a few slices at most
/// and parsing overlaps with Redis. `progress` is called after each slice with the running
/// totals. Does not seal the batch: call [`Queue::seal_batch`] once everything is in.
pub async fn enqueue_chunks<I>(
    queue: &Queue,
    chunks: I,
    batch: &BatchId,
    op: JobOp,
    force: bool,
    mut progress: impl FnMut(&Enqueued),
) -> Result<Enqueued, EnqueueError>
where
    I: Iterator<Item = Result<Chunk, ImportError>> + Send + 'static,
{
    use futures::StreamExt as _;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<NewJob>>(ENQUEUE_IN_FLIGHT);
    let batch_id = batch.clone();
    let reader = tokio::task::spawn_blocking(move || -> Result<(), ImportError> {
        let mut slice = Vec::new();
        let mut pairs = 0;
        for chunk in chunks {
            let chunk = chunk?;
            pairs += chunk.appids.len();
            slice.push(NewJob {
                op,
                env: chunk.env,
                appids: chunk.appids,
                batch: batch_id.clone(),
                run_at_ms: None,
            });
            if slice.len() >= ENQUEUE_SLICE_JOBS || pairs >= ENQUEUE_SLICE_PAIRS {
                pairs = 0;
                if tx.blocking_send(std::mem::take(&mut slice)).is_err() {
                    // The enqueueing side stopped on an error; it reports it.
                    return Ok(());
                }
            }
        }
        if !slice.is_empty() {
            let _ = tx.blocking_send(slice);
        }
        Ok(())
    });

    let opts = EnqueueOptions { force, seal: false };
    let slices = futures::stream::poll_fn(|cx| rx.poll_recv(cx));
    let mut calls = slices
        .map(|jobs| queue.enqueue(jobs, opts))
        .buffer_unordered(ENQUEUE_IN_FLIGHT);
    let mut done = Enqueued::default();
    while let Some(result) = calls.next().await {
        match result {
            Ok(report) => {
                done.add(&report);
                progress(&done);
            }
            Err(source) => {
                // Dropping the stream drops the receiver, which stops the reader thread.
                drop(calls);
                let _ = reader.await;
                return Err(EnqueueError::Queue { done, source });
            }
        }
    }
    match reader.await {
        Ok(Ok(())) => Ok(done),
        Ok(Err(e)) => Err(EnqueueError::Read(e)),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}
