//! The whole import flow in one call: [`run`] validates, skips the pairs already bound, plans,
//! enqueues and seals the batch, and returns a [`Summary`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::source::Rows;
use super::validate::validate_rows;
use super::{
    Chunks, DEFAULT_MAX_REPORTED, EnqueueError, Enqueued, EnvCount, ImportError, InvalidLine, Pair,
    PairSet, Planner, Source, Validation, enqueue_chunks,
};
use crate::confirm::{BindingChecker, CheckError};
use crate::ids::{AppId, BatchId, EnvId};
use crate::store::{JobOp, Queue, StoreError};

/// Bound pairs listed in [`Summary::bound_pairs`]; the rest are counted.
const MAX_BOUND_LISTED: usize = 1000;

/// How an import runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The batch the jobs go into.
    pub batch: BatchId,
    /// Appids per job (at least 1).
    pub chunk_size: usize,
    /// Enqueue pairs even if they are already queued within the dedupe window.
    pub force: bool,
    /// Enqueue the valid rows of an input that has invalid ones (else such an input enqueues
    /// nothing: [`RunError::Invalid`]).
    pub skip_invalid: bool,
    /// Invalid lines listed in [`Summary::errors`]; the rest are counted.
    pub max_errors: usize,
    /// Share (an import) or unshare (`envshare unshare`) the pairs.
    pub op: JobOp,
    /// Seal the batch once every pair is in (default), so `batch.completed` can fire. A
    /// producer adding more to the batch afterwards passes `false` and seals it itself.
    pub seal: bool,
}

impl Options {
    /// Shares into `batch` at `chunk_size` appids per job, sealed; no `force`, no
    /// `skip_invalid`, and [`DEFAULT_MAX_REPORTED`] errors listed.
    pub fn new(batch: BatchId, chunk_size: usize) -> Self {
        Self {
            batch,
            chunk_size,
            force: false,
            skip_invalid: false,
            max_errors: DEFAULT_MAX_REPORTED,
            op: JobOp::Share,
            seal: true,
        }
    }
}

/// The summary of an import: what the input held and what was enqueued. Its JSON form is what
/// `envshare import --json` prints.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// The batch the jobs went into (would go into, for a dry run).
    pub batch: String,
    /// The input's name ([`Source::name`]).
    pub input: String,
    /// `csv`, `jsonl`, or `arguments` for [`Source::pairs`].
    pub format: String,
    /// Whether this was a dry run (no queue given to [`run`]).
    pub dry_run: bool,
    /// Whether anything was enqueued (false for a dry run and for rejected input).
    pub enqueued: bool,
    /// Rows read (blank JSONL lines and the CSV header are not rows).
    pub rows: u64,
    /// Rows that were valid.
    pub valid_rows: u64,
    /// Rows that were invalid.
    pub invalid_rows: u64,
    /// The first invalid rows ([`Options::max_errors`]).
    pub errors: Vec<InvalidLine>,
    /// Pairs in the valid rows, duplicates included.
    pub pairs: u64,
    /// Pairs repeated within the input, folded into one.
    pub duplicates_in_input: u64,
    /// Distinct pairs in the input.
    pub unique_pairs: u64,
    /// Distinct envs in the input.
    pub envs: u64,
    /// Appids per job.
    pub chunk_size: usize,
    /// Jobs the unique pairs make.
    pub planned_jobs: u64,
    /// Jobs created.
    pub jobs: u64,
    /// Appids enqueued in them.
    pub appids: u64,
    /// Pairs skipped as already queued in the dedupe window.
    pub skipped_already_queued: u64,
    /// Pairs WeChat already lists as bound, not enqueued (when [`run`] was asked to skip them).
    pub skipped_bound: u64,
    /// The first of them (at most 1,000).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bound_pairs: Vec<BoundPair>,
    /// Distinct appids and jobs per env (only for a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_env: Option<BTreeMap<EnvId, EnvCount>>,
    /// How long the import took.
    pub elapsed_ms: u64,
}

/// A pair WeChat already lists as bound, skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BoundPair {
    /// The env.
    pub env: EnvId,
    /// The appid bound to it.
    pub appid: AppId,
}

/// A pass over the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The first pass: every row is checked, nothing is written.
    Validate,
    /// The distinct pairs are collected to ask WeChat which are bound.
    FindBound,
    /// The second pass: the pairs are planned into jobs and enqueued.
    Enqueue,
}

impl fmt::Display for Pass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Validate => "validating",
            Self::FindBound => "bound-check",
            Self::Enqueue => "enqueueing",
        })
    }
}

/// Follows an import as it runs (progress bars, log lines). Every method does nothing by
/// default. [`Observer::read`] is called from the blocking thread that reads the input.
pub trait Observer: Send + Sync {
    /// A pass over the input of `len` bytes starts.
    fn pass_started(&self, pass: Pass, len: u64) {
        let _ = (pass, len);
    }

    /// `bytes` more bytes of the input were read in the current pass.
    fn read(&self, bytes: u64) {
        let _ = bytes;
    }

    /// A pass ended without error (the enqueueing pass once the batch is sealed).
    fn pass_finished(&self, pass: Pass) {
        let _ = pass;
    }

    /// The validating pass ended: the counts and the first invalid lines, before the input is
    /// accepted or rejected.
    fn validated(&self, summary: &Summary) {
        let _ = summary;
    }

    /// The input was accepted (no invalid row, or [`Options::skip_invalid`]; at least one
    /// pair): next comes the dry run's answer, or the enqueueing.
    fn accepted(&self, summary: &Summary) {
        let _ = summary;
    }

    /// Another slice of jobs was enqueued: the running totals.
    fn enqueued(&self, done: &Enqueued) {
        let _ = done;
    }
}

/// An [`Observer`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Observer for NoProgress {}

/// Builds the [`BindingChecker`] that skipping bound pairs asks. Called once, and only when the
/// input was accepted and something is to be enqueued, so an input that is rejected anyway does
/// not need WeChat's credentials.
pub type MakeChecker<'a> = Box<
    dyn FnOnce() -> Result<BindingChecker, Box<dyn std::error::Error + Send + Sync>> + Send + 'a,
>;

/// Why [`run`] stopped. Nothing was enqueued unless the variant says so.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The input cannot be read, is empty, has an unknown format or a bad CSV header.
    #[error(transparent)]
    Import(ImportError),
    /// A pass over the input stopped before its end (the runtime shut down).
    #[error("the {pass} pass stopped")]
    Stopped {
        /// The pass.
        pass: Pass,
        /// Why it stopped.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The input has invalid rows and [`Options::skip_invalid`] is off: the summary lists them.
    #[error("{} invalid lines in {}; nothing was enqueued", .0.invalid_rows, .0.input)]
    Invalid(Box<Summary>),
    /// The input has no valid row.
    #[error("{} has no valid rows; nothing was enqueued", .0.input)]
    NoValidRows(Box<Summary>),
    /// Building the binding checker failed ([`MakeChecker`]).
    #[error("{0}")]
    Checker(Box<dyn std::error::Error + Send + Sync>),
    /// Asking WeChat which pairs are already bound failed.
    #[error("checking which pairs are already bound (batchgetenvid) failed; nothing was enqueued")]
    Bound(#[source] CheckError),
    /// Enqueueing stopped part-way (see [`EnqueueError`] for what was enqueued).
    #[error(transparent)]
    Enqueue(EnqueueError),
    /// Everything was enqueued but sealing the batch failed: running the same import again
    /// with the same batch id seals it.
    #[error(transparent)]
    Seal(StoreError),
}

/// Imports `source` into `queue` (`None`: a dry run, which reads the input once and enqueues
/// nothing):
///
/// 1. checks the input ([`Source::check`]) unless the caller did;
/// 2. validates every row on a blocking thread ([`super::validate`]); an input with an invalid
///    row is [`RunError::Invalid`] unless [`Options::skip_invalid`], one without a valid pair is
///    [`RunError::NoValidRows`];
/// 3. with `skip_bound`, reads the distinct pairs again and asks WeChat (through the checker it
///    builds) which are already bound: those get no job;
/// 4. reads the input again, folds duplicates and chunks by env ([`Planner`]), enqueues the
///    chunks as they come ([`enqueue_chunks`]) and seals the batch.
///
/// `observer` follows the passes.
///
/// Traced as `envshare.import`: the jobs it enqueues carry its `traceparent`, so each worker
/// attempt is a child of it.
#[tracing::instrument(
    name = "envshare.import",
    skip_all,
    fields(
        batch_id = %options.batch,
        op = options.op.as_str(),
        dry_run = queue.is_none(),
        rows = tracing::field::Empty,
        jobs = tracing::field::Empty,
        appids = tracing::field::Empty,
        skipped_duplicates = tracing::field::Empty,
    )
)]
pub async fn run(
    queue: Option<&Queue>,
    mut source: Source,
    options: &Options,
    skip_bound: Option<MakeChecker<'_>>,
    observer: Arc<dyn Observer>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let chunk_size = options.chunk_size.max(1);
    source.check().map_err(RunError::Import)?;
    let source = Arc::new(source);

    // Pass 1: validate everything; nothing is written yet.
    observer.pass_started(Pass::Validate, source.len());
    let rows = source
        .rows(Some(Arc::clone(&observer)))
        .map_err(RunError::Import)?;
    let empty = match source.format() {
        Some(super::Format::Csv) => {
            ImportError::Empty(" (a header but no rows)", "one row per pair")
        }
        Some(super::Format::Jsonl) => ImportError::Empty("", "one JSON object per line"),
        None => ImportError::Empty("", "at least one pair"),
    };
    let max_errors = options.max_errors;
    let mut validation = blocking(Pass::Validate, move || {
        validate_rows(rows, chunk_size, max_errors, empty)
    })
    .await?;
    observer.pass_finished(Pass::Validate);

    let mut summary = Summary {
        batch: options.batch.to_string(),
        input: source.name().to_owned(),
        format: source.format_label(),
        dry_run: queue.is_none(),
        rows: validation.rows,
        valid_rows: validation.valid_rows,
        invalid_rows: validation.invalid_rows,
        errors: validation.errors.clone(),
        pairs: validation.pairs,
        duplicates_in_input: validation.duplicates,
        unique_pairs: validation.unique_pairs(),
        envs: validation.envs.len() as u64,
        chunk_size,
        planned_jobs: validation.jobs(),
        ..Summary::default()
    };
    observer.validated(&summary);
    if validation.invalid_rows > 0 && !options.skip_invalid {
        summary.elapsed_ms = elapsed_ms(started);
        return Err(RunError::Invalid(Box::new(summary)));
    }
    if validation.unique_pairs() == 0 {
        summary.elapsed_ms = elapsed_ms(started);
        return Err(RunError::NoValidRows(Box::new(summary)));
    }
    observer.accepted(&summary);

    let Some(queue) = queue else {
        summary.per_env = Some(std::mem::take(&mut validation.envs));
        summary.elapsed_ms = elapsed_ms(started);
        return Ok(summary);
    };

    if let Some(make_checker) = skip_bound {
        skip_bound_pairs(
            &source,
            &mut validation,
            &mut summary,
            make_checker,
            &observer,
        )
        .await?;
    }

    // Pass 2: read again, fold, chunk, enqueue in slices as the rows stream.
    let planner = Planner::new(validation.seen, chunk_size);
    observer.pass_started(Pass::Enqueue, source.len());
    let rows = source
        .rows(Some(Arc::clone(&observer)))
        .map_err(RunError::Import)?;
    let chunks = Chunks::from_records(rows, planner);
    let progress = Arc::clone(&observer);
    let done = enqueue_chunks(
        queue,
        chunks,
        &options.batch,
        options.op,
        options.force,
        |d| progress.enqueued(d),
    )
    .await
    .map_err(RunError::Enqueue)?;
    // Sealing lets batch.completed fire once the last job ends.
    if options.seal {
        queue
            .seal_batch(&options.batch)
            .await
            .map_err(RunError::Seal)?;
    }
    observer.pass_finished(Pass::Enqueue);

    summary.enqueued = true;
    summary.jobs = done.jobs;
    summary.appids = done.appids;
    summary.skipped_already_queued = done.skipped_duplicates;
    summary.elapsed_ms = elapsed_ms(started);
    tracing::Span::current()
        .record("rows", summary.rows)
        .record("jobs", summary.jobs)
        .record("appids", summary.appids)
        .record("skipped_duplicates", summary.skipped_already_queued);
    Ok(summary)
}

/// One more read of the distinct valid pairs, for `batchgetenvid`. Bound pairs leave the
/// planner's set, so the enqueueing pass makes no job for them.
async fn skip_bound_pairs(
    source: &Arc<Source>,
    validation: &mut Validation,
    summary: &mut Summary,
    make_checker: MakeChecker<'_>,
    observer: &Arc<dyn Observer>,
) -> Result<(), RunError> {
    observer.pass_started(Pass::FindBound, source.len());
    let rows = source
        .rows(Some(Arc::clone(observer)))
        .map_err(RunError::Import)?;
    let pairs = blocking(Pass::FindBound, move || distinct_pairs(rows)).await?;
    observer.pass_finished(Pass::FindBound);
    let checker = make_checker().map_err(RunError::Checker)?;
    let bound = find_bound(&checker, pairs).await.map_err(RunError::Bound)?;
    for (env, appid) in &bound {
        validation.seen.remove(env, appid);
    }
    summary.skipped_bound = bound.len() as u64;
    summary.bound_pairs = bound
        .iter()
        .take(MAX_BOUND_LISTED)
        .map(|(env, appid)| BoundPair {
            env: env.clone(),
            appid: appid.clone(),
        })
        .collect();
    if source.format().is_none() && !bound.is_empty() {
        // For pairs given as arguments the planned jobs leave the bound pairs out (for a file
        // they are the jobs of every pair of the file).
        let chunk = summary.chunk_size.max(1) as u64;
        let mut left: BTreeMap<&EnvId, u64> = validation
            .envs
            .iter()
            .map(|(env, count)| (env, count.appids))
            .collect();
        for (env, _) in &bound {
            if let Some(n) = left.get_mut(env) {
                *n -= 1;
            }
        }
        summary.planned_jobs = left.values().map(|n| n.div_ceil(chunk)).sum();
    }
    Ok(())
}

/// The distinct valid pairs of `rows`, in input order.
fn distinct_pairs(rows: Rows) -> Result<Vec<Pair>, ImportError> {
    let mut seen = PairSet::default();
    let mut pairs = Vec::new();
    for record in rows {
        if let Ok(row) = record?.pairs {
            for (env, appid) in row {
                if seen.insert(&env, &appid) {
                    pairs.push((env, appid));
                }
            }
        }
    }
    Ok(pairs)
}

/// The pairs of `pairs` (distinct) that WeChat already lists as bound: one `batchgetenvid` call
/// per group of distinct appids.
async fn find_bound(checker: &BindingChecker, pairs: Vec<Pair>) -> Result<Vec<Pair>, CheckError> {
    let mut by_appid: Vec<(AppId, Vec<EnvId>)> = Vec::new();
    let mut index: HashMap<AppId, usize> = HashMap::new();
    for (env, appid) in pairs {
        let slot = *index.entry(appid.clone()).or_insert_with(|| {
            by_appid.push((appid, Vec::new()));
            by_appid.len() - 1
        });
        by_appid[slot].1.push(env);
    }
    let mut bound = Vec::new();
    for group in by_appid.chunks(checker.batch()) {
        let appids: Vec<AppId> = group.iter().map(|(a, _)| a.clone()).collect();
        let answer = checker.get_env_ids(&appids).await?;
        for (appid, envs) in group {
            let listed = answer.envs_of(appid.as_str());
            for env in envs {
                if listed.iter().any(|e| e == env.as_str()) {
                    bound.push((env.clone(), appid.clone()));
                }
            }
        }
    }
    Ok(bound)
}

/// Runs a pass over the input on a blocking thread: parsing is CPU work that must not hold up
/// the async runtime.
async fn blocking<T: Send + 'static>(
    pass: Pass,
    f: impl FnOnce() -> Result<T, ImportError> + Send + 'static,
) -> Result<T, RunError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(RunError::Import),
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(source) => Err(RunError::Stopped { pass, source }),
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::Format;
    use super::super::test_support::*;
    use super::*;

    fn options(chunk_size: usize) -> Options {
        Options::new(BatchId::parse("b-test").unwrap(), chunk_size)
    }

    /// Records what the flow reports, in order.
    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl Observer for Log {
        fn pass_started(&self, pass: Pass, len: u64) {
            self.0.lock().unwrap().push(format!("start {pass} {len}"));
        }
        fn pass_finished(&self, pass: Pass) {
            self.0.lock().unwrap().push(format!("end {pass}"));
        }
        fn validated(&self, s: &Summary) {
            self.0.lock().unwrap().push(format!("validated {}", s.rows));
        }
        fn accepted(&self, s: &Summary) {
            self.0
                .lock()
                .unwrap()
                .push(format!("accepted {}", s.unique_pairs));
        }
    }

    #[tokio::test]
    async fn a_dry_run_of_bytes_counts_per_env_and_reports_its_passes() {
        let body = format!(
            "{{\"env\":\"p\",\"appids\":[\"{A}\",\"{B}\",\"{A}\"]}}\n{{\"env\":\"q\",\"appid\":\"{C}\"}}\n"
        );
        let len = body.len() as u64;
        let log = Arc::new(Log::default());
        let source = Source::bytes("<body>", body.into_bytes());
        let s = run(None, source, &options(1), None, log.clone())
            .await
            .unwrap();
        assert_eq!(s.format, "jsonl", "sniffed from the first bytes");
        assert_eq!(s.input, "<body>");
        assert!(s.dry_run && !s.enqueued);
        assert_eq!((s.rows, s.pairs, s.duplicates_in_input), (2, 4, 1));
        assert_eq!((s.unique_pairs, s.envs, s.planned_jobs), (3, 2, 3));
        let per_env = s.per_env.unwrap();
        assert_eq!(per_env[&pair("p", A).0], EnvCount { appids: 2, jobs: 2 });
        assert_eq!(
            *log.0.lock().unwrap(),
            vec![
                format!("start validating {len}"),
                "end validating".to_owned(),
                "validated 2".to_owned(),
                "accepted 3".to_owned(),
            ]
        );
    }

    #[tokio::test]
    async fn an_invalid_row_rejects_the_input_unless_skipped() {
        let csv = format!("env,appid\np,{A}\np,nope\n");
        let source = || Source::bytes("in.csv", csv.clone().into_bytes());
        let err = run(None, source(), &options(10), None, Arc::new(NoProgress))
            .await
            .unwrap_err();
        let RunError::Invalid(s) = err else {
            panic!("{err}")
        };
        assert_eq!((s.invalid_rows, s.valid_rows), (1, 1));
        assert_eq!(s.errors[0].line, 3);
        let skip = Options {
            skip_invalid: true,
            ..options(10)
        };
        let s = run(None, source(), &skip, None, Arc::new(NoProgress))
            .await
            .unwrap();
        assert_eq!((s.format.as_str(), s.unique_pairs), ("csv", 1));

        let only_bad = Source::bytes("in.csv", b"env,appid\np,nope\n".to_vec());
        let err = run(None, only_bad, &skip, None, Arc::new(NoProgress))
            .await
            .unwrap_err();
        assert!(matches!(err, RunError::NoValidRows(_)), "{err}");
    }

    #[tokio::test]
    async fn a_bad_source_is_an_import_error() {
        let empty = Source::bytes("e", Vec::new());
        let err = run(None, empty, &options(10), None, Arc::new(NoProgress))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RunError::Import(ImportError::Empty(..))),
            "{err}"
        );
        let unknown = Source::bytes("x", b"hello\n".to_vec());
        let err = run(None, unknown, &options(10), None, Arc::new(NoProgress))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RunError::Import(ImportError::UnknownFormat { .. })),
            "{err}"
        );
        let header = Source::bytes("x", b"a,b\n".to_vec()).with_format(Some(Format::Csv));
        let err = run(None, header, &options(10), None, Arc::new(NoProgress))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RunError::Import(ImportError::MissingColumn { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn pairs_are_rows_of_their_own_format() {
        let pairs = vec![pair("p", A), pair("p", B), pair("p", A)];
        let s = run(
            None,
            Source::pairs("<arguments>", pairs),
            &options(10),
            None,
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
        assert_eq!(s.format, "arguments");
        assert_eq!((s.rows, s.valid_rows, s.pairs), (3, 3, 3));
        assert_eq!(
            (s.duplicates_in_input, s.unique_pairs, s.planned_jobs),
            (1, 2, 1)
        );
    }

    #[test]
    fn the_summary_serializes_typed_ids_as_strings() {
        let (env, appid) = pair("p", A);
        let s = Summary {
            bound_pairs: vec![BoundPair {
                env: env.clone(),
                appid,
            }],
            per_env: Some(BTreeMap::from([(env, EnvCount { appids: 1, jobs: 1 })])),
            ..Summary::default()
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["bound_pairs"],
            serde_json::json!([{"env": "p", "appid": A}])
        );
        assert_eq!(
            json["per_env"],
            serde_json::json!({"p": {"appids": 1, "jobs": 1}})
        );
        assert!(
            serde_json::to_value(Summary::default())
                .unwrap()
                .get("per_env")
                .is_none()
        );
    }
}
