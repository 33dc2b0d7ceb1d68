//! `envshare batch list|show|results|cancel`: the batches on record, one batch's progress and
//! its per-appid results (the file operators send to the Mini Programs' administrators).
//!
//! Progress comes from the batch's hash (O(1)), the per-state counts from its result bitmaps
//! (`BITCOUNT`), and the results a page of rows at a time (`Queue::results_page`), so a
//! 100,000-appid batch streams out in flat memory.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use anyhow::Context as _;
use envshare::BatchId;
use envshare::export::{ExportFormat, ResultsWriter};
use envshare::store::{BatchProgress, Queue, RowState};
use serde::Serialize;

use crate::cli::{ResultsArgs, ResultsFormat, StateArg};
use crate::ctx::Ctx;
use crate::fail::bad_input;
use crate::table::{Align, Table, count, time};

/// Rows per `results_page` call (the store's maximum).
const PAGE: usize = 1000;

impl From<ResultsFormat> for ExportFormat {
    fn from(f: ResultsFormat) -> Self {
        match f {
            ResultsFormat::Csv => Self::Csv,
            ResultsFormat::Jsonl => Self::Jsonl,
        }
    }
}

impl From<StateArg> for RowState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Pending => Self::Pending,
            StateArg::Accepted => Self::Accepted,
            StateArg::Failed => Self::Failed,
            StateArg::Bound => Self::Bound,
            StateArg::Unconfirmed => Self::Unconfirmed,
            StateArg::Cancelled => Self::Cancelled,
            StateArg::Unshared => Self::Unshared,
        }
    }
}

/// Parses a batch id given on the command line.
fn batch_id(id: &str) -> anyhow::Result<BatchId> {
    BatchId::parse(id).context("fix the batch id (`envshare batch list` shows them)")
}

/// The batch's progress, or exit 2 naming it.
async fn progress(ctx: &Ctx, queue: &Queue, id: &BatchId) -> anyhow::Result<BatchProgress> {
    match queue.batch(id).await.context("reading the batch failed")? {
        Some(p) => Ok(p),
        None => unknown_batch(ctx, id),
    }
}

fn unknown_batch<T>(ctx: &Ctx, id: &BatchId) -> anyhow::Result<T> {
    bad_input!(
        "queue {} has no batch {id}: check the id (`envshare batch list` shows the batches on \
         record; a finished batch is kept for ENVSHARE_RESULTS_TTL) and ENVSHARE_QUEUE",
        ctx.queue
    )
}

/// One batch as `batch list` and `batch show` print it.
#[derive(Debug, Serialize)]
struct BatchView {
    #[serde(flatten)]
    progress: BatchProgress,
    /// When the batch was created (RFC 3339).
    created_at: String,
    /// `enqueuing`, `running`, `completed`, `confirmed` or `cancelled`.
    phase: &'static str,
    /// Appids neither accepted nor failed yet.
    pending: u64,
    /// Accepted appids whose binding was confirmed.
    bound: u64,
    /// Accepted appids whose confirmation window ended first.
    unconfirmed: u64,
    /// Appids per result state; `None` for a batch enqueued before per-appid results existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<BTreeMap<RowState, u64>>,
}

impl BatchView {
    async fn read(queue: &Queue, id: &BatchId, p: BatchProgress) -> anyhow::Result<Self> {
        let c = queue
            .batch_confirmation(id)
            .await
            .context("reading the batch's confirmation counters failed")?;
        let counts = queue
            .results_counts(id)
            .await
            .context("counting the batch's results failed")?;
        let results = (counts.values().sum::<u64>() > 0).then_some(counts);
        let cancelled = results
            .as_ref()
            .and_then(|c| c.get(&RowState::Cancelled))
            .is_some_and(|n| *n > 0);
        Ok(Self {
            created_at: time(p.created_at_ms),
            phase: p.phase(c.confirmed, cancelled),
            pending: p.pending(),
            bound: c.bound,
            unconfirmed: c.unconfirmed,
            results,
            progress: p,
        })
    }

    fn id(&self) -> String {
        self.progress
            .id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}

/// `envshare batch list [--limit N] [--offset N] [--json]`.
pub async fn list(ctx: &Ctx, limit: u32, offset: usize, json: bool) -> anyhow::Result<()> {
    let queue = ctx.queue().await?;
    let ids = queue
        .list_batches(offset, limit as usize)
        .await
        .context("listing batches failed")?;
    let mut views = Vec::with_capacity(ids.len());
    for id in &ids {
        // A batch whose record expired (ENVSHARE_RESULTS_TTL) between the two reads is skipped.
        if let Some(p) = queue.batch(id).await.context("reading a batch failed")? {
            views.push(BatchView::read(&queue, id, p).await?);
        }
    }
    if json {
        println!("{}", serde_json::to_string(&views)?);
        return Ok(());
    }
    if views.is_empty() {
        println!(
            "queue {} has no batch on record{}",
            ctx.queue,
            if offset > 0 { " at this offset" } else { "" }
        );
        return Ok(());
    }
    let mut t = Table::new(&[
        ("batch", Align::Left),
        ("created", Align::Left),
        ("appids", Align::Right),
        ("jobs", Align::Right),
        ("accepted", Align::Right),
        ("failed", Align::Right),
        ("pending", Align::Right),
        ("bound", Align::Right),
        ("unconfirmed", Align::Right),
        ("phase", Align::Left),
    ]);
    for v in &views {
        let p = &v.progress;
        t.row(vec![
            v.id(),
            v.created_at.clone(),
            p.appids.to_string(),
            p.jobs.to_string(),
            p.accepted.to_string(),
            p.failed.to_string(),
            v.pending.to_string(),
            v.bound.to_string(),
            v.unconfirmed.to_string(),
            v.phase.to_owned(),
        ]);
    }
    t.print();
    if ids.len() == limit as usize {
        println!("(more may follow: --offset {})", offset + ids.len());
    }
    Ok(())
}

/// `envshare batch show ID [--json]`.
pub async fn show(ctx: &Ctx, id: &str, json: bool) -> anyhow::Result<()> {
    let id = batch_id(id)?;
    let queue = ctx.queue().await?;
    let p = progress(ctx, &queue, &id).await?;
    let v = BatchView::read(&queue, &id, p).await?;
    if json {
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    let p = &v.progress;
    println!("batch {id} ({})", v.phase);
    println!("  created:      {}", v.created_at);
    println!(
        "  enqueued:     {} in {}{}",
        count(p.appids, "appid"),
        count(p.jobs, "job"),
        if p.sealed { "" } else { " so far" }
    );
    println!(
        "  done:         {} of {} jobs; accepted {}, failed {}, pending {}",
        p.done_jobs, p.jobs, p.accepted, p.failed, v.pending
    );
    println!(
        "  confirmation: bound {}, unconfirmed {}, awaiting {}",
        v.bound,
        v.unconfirmed,
        p.accepted.saturating_sub(v.bound + v.unconfirmed)
    );
    match &v.results {
        Some(counts) => {
            let parts: Vec<String> = counts
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(st, n)| format!("{st} {n}"))
                .collect();
            println!("  appids by state: {}", parts.join(", "));
            println!("  per appid: envshare batch results {id} [--state STATE] [--out FILE]");
        }
        None if p.appids > 0 => {
            println!("  no per-appid results: the batch was enqueued before they were recorded")
        }
        None => {}
    }
    Ok(())
}

/// Streams every row of `id` (in `state`, if given) into `sink`, a page at a time; returns how
/// many were written.
async fn stream_rows<W: Write>(
    queue: &Queue,
    id: &BatchId,
    state: Option<RowState>,
    sink: &mut ResultsWriter<W>,
) -> anyhow::Result<u64> {
    let mut cursor = 0;
    let mut n = 0;
    loop {
        let page = queue
            .results_page(id, state, cursor, PAGE)
            .await
            .context("reading the batch's results failed")?;
        for r in &page.rows {
            sink.row(r).context("writing the results failed")?;
        }
        n += page.rows.len() as u64;
        match page.next {
            Some(next) if next > cursor => cursor = next,
            _ => return Ok(n),
        }
    }
}

/// `envshare batch results ID [--format csv|jsonl | --json] [--state S] [--out FILE] [--bom]`.
pub async fn results(ctx: &Ctx, args: ResultsArgs) -> anyhow::Result<()> {
    let id = batch_id(&args.id)?;
    let format = if args.json {
        ResultsFormat::Jsonl
    } else {
        args.format
    };
    if args.bom && format != ResultsFormat::Csv {
        bad_input!("--bom is for CSV only: leave it out with --format jsonl or --json");
    }
    let queue = ctx.queue().await?;
    let p = progress(ctx, &queue, &id).await?;
    let state = args.state.map(RowState::from);
    let written = match &args.out {
        None => {
            let stdout = io::stdout().lock();
            let mut sink = ResultsWriter::new(format.into(), io::BufWriter::new(stdout), args.bom)
                .context("writing to standard output failed")?;
            let n = stream_rows(&queue, &id, state, &mut sink).await?;
            sink.finish().context("writing to standard output failed")?;
            n
        }
        Some(path) => write_file(&queue, &id, state, format, args.bom, path).await?,
    };
    if written == 0 && state.is_none() && p.appids > 0 {
        eprintln!(
            "batch {id} has no per-appid results: it was enqueued before they were recorded; \
             `envshare batch show {id}` has its counts"
        );
    }
    if let Some(path) = &args.out {
        eprintln!(
            "wrote {} of batch {id} to {}",
            count(written, "row"),
            path.display()
        );
    }
    Ok(())
}

/// Writes the rows to a temporary file beside `path`, then renames it over `path`: the file is
/// either the complete result or left as it was.
async fn write_file(
    queue: &Queue,
    id: &BatchId,
    state: Option<RowState>,
    format: ResultsFormat,
    bom: bool,
    path: &Path,
) -> anyhow::Result<u64> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = match tempfile::NamedTempFile::new_in(dir) {
        Ok(t) => t,
        Err(e) => bad_input!(
            "cannot write {}: {e}; check that the directory exists and is writable",
            path.display()
        ),
    };
    let mut sink = ResultsWriter::new(format.into(), io::BufWriter::new(tmp), bom)
        .with_context(|| format!("writing {} failed", path.display()))?;
    let n = stream_rows(queue, id, state, &mut sink).await?;
    let tmp = sink
        .finish()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .with_context(|| format!("writing {} failed", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("replacing {} failed", path.display()))?;
    Ok(n)
}

#[derive(Debug, Serialize)]
struct CancelOut {
    batch: String,
    /// The batch had completed before: nothing changed.
    already_completed: bool,
    /// Waiting jobs taken out of the queue.
    cancelled_jobs: u64,
    /// Their appids, now `cancelled`.
    cancelled_appids: u64,
    /// Jobs leased to a worker: they finish and record their outcome.
    running_jobs: u64,
}

/// `envshare batch cancel ID [--json]`: exit 0 also when the batch had already completed (the
/// message says nothing changed).
pub async fn cancel(ctx: &Ctx, id: &str, json: bool) -> anyhow::Result<()> {
    let id = batch_id(id)?;
    let queue = ctx.queue().await?;
    let Some(r) = queue
        .cancel_batch(&id)
        .await
        .context("cancelling the batch failed")?
    else {
        return unknown_batch(ctx, &id);
    };
    let already_completed = r.already_completed;
    if json {
        let out = CancelOut {
            batch: id.to_string(),
            already_completed,
            cancelled_jobs: r.cancelled_jobs,
            cancelled_appids: r.cancelled_appids,
            running_jobs: r.running_jobs,
        };
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    if already_completed {
        println!("batch {id} had already completed: nothing was cancelled, nothing changed");
        return Ok(());
    }
    println!(
        "batch {id} cancelled: {} ({}) taken out of the queue; their appids end `cancelled`",
        count(r.cancelled_jobs, "waiting job"),
        count(r.cancelled_appids, "appid")
    );
    if r.running_jobs > 0 {
        println!(
            "{} running now finish and record their outcome; one that comes back for a retry is \
             cancelled by running this command again",
            count(r.running_jobs, "job")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_flag_value() {
        use clap::ValueEnum as _;
        let names: Vec<String> = StateArg::value_variants()
            .iter()
            .map(|s| RowState::from(*s).as_str().to_owned())
            .collect();
        let all: Vec<String> = RowState::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        assert_eq!(names, all);
        for s in StateArg::value_variants() {
            let flag = s.to_possible_value().unwrap();
            assert_eq!(flag.get_name(), RowState::from(*s).as_str());
        }
    }
}
