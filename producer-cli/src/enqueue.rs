//! `envshare import` and `envshare enqueue`: validate, plan, enqueue, seal, summarize.
//!
//! An import reads its input twice (see `envshare::import`): a validating pass, then the
//! enqueueing pass. Standard input (`-`) cannot be read twice, so it is first copied to an
//! anonymous temporary file (disk, not memory: a 1,000,000-row input stays out of RAM).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use envshare::confirm::BindingChecker;
use envshare::import::{
    self, Chunk, Chunks, EnqueueError, Enqueued, EnvCount, Format, ImportError, InvalidLine,
    Planner, Records,
};
use envshare::store::Queue;
use envshare::throttle::RateLimiter;
use envshare::wechat::WechatClient;
use envshare::{AppId, BatchId, EnvId};
use serde::Serialize;

use crate::cli::{EnqueueArgs, EnqueueFlags, ImportArgs};
use crate::ctx::Ctx;
use crate::fail::bad_input;
use crate::progress::Progress;

/// Envs listed one by one in a text dry run; the rest are counted.
const MAX_ENVS_SHOWN: usize = 50;
/// Bound pairs listed in the summary (`--skip-bound`); the rest are counted.
const MAX_BOUND_LISTED: usize = 1000;
/// Bound pairs listed in the text summary.
const MAX_BOUND_SHOWN: usize = 20;

/// The input of an import: a file, or standard input spooled to a temporary file.
struct Source {
    /// How messages name it (`FILE` in `FILE:LINE`).
    name: String,
    file: File,
    len: u64,
}

impl Source {
    fn open(path: &Path) -> anyhow::Result<Self> {
        if path.as_os_str() == "-" {
            let mut spool = tempfile::tempfile()
                .context("creating a temporary file to hold standard input failed (set TMPDIR to a writable directory)")?;
            let len = io::copy(&mut io::stdin().lock(), &mut spool)
                .context("reading standard input failed")?;
            return Ok(Self {
                name: "<stdin>".into(),
                file: spool,
                len,
            });
        }
        let name = path.display().to_string();
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                bad_input!(
                    "cannot read {name}: no such file; check the path (or pass - to read standard input)"
                )
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                bad_input!(
                    "cannot read {name}: permission denied; make the file readable for this user"
                )
            }
            Err(e) => bad_input!("cannot read {name}: {e}"),
        };
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read {name}"))?;
        if meta.is_dir() {
            bad_input!(
                "cannot read {name}: it is a directory; give the path of a .csv or .jsonl file"
            );
        }
        Ok(Self {
            name,
            file,
            len: meta.len(),
        })
    }

    /// A reader from the start of the input (each pass gets its own handle).
    fn reader(&self) -> anyhow::Result<File> {
        let mut f = self
            .file
            .try_clone()
            .with_context(|| format!("cannot read {}", self.name))?;
        f.seek(SeekFrom::Start(0))
            .with_context(|| format!("cannot read {}", self.name))?;
        Ok(f)
    }

    fn format(&self, path: &Path, given: Option<Format>) -> anyhow::Result<Format> {
        if let Some(f) = given.or_else(|| Format::from_path(path)) {
            return Ok(f);
        }
        let mut head = Vec::with_capacity(8192);
        self.reader()?
            .take(8192)
            .read_to_end(&mut head)
            .with_context(|| format!("cannot read {}", self.name))?;
        match Format::sniff(&head) {
            Some(f) => Ok(f),
            None => Err(anyhow::Error::new(ImportError::UnknownFormat {
                what: format!(
                    "{} neither starts with a JSON object nor has a CSV header naming env and appid",
                    self.name
                ),
            })),
        }
    }
}

/// The summary of an import or enqueue, printed as text or as one JSON object (`--json`).
#[derive(Debug, Default, Serialize)]
struct Summary {
    /// The batch the jobs went into (would go into, for a dry run).
    batch: String,
    /// The input's name (`<stdin>` for `-`, `<arguments>` for `enqueue`).
    input: String,
    /// `csv`, `jsonl` or `arguments`.
    format: String,
    dry_run: bool,
    /// Whether anything was enqueued (false for a dry run and for rejected input).
    enqueued: bool,
    rows: u64,
    valid_rows: u64,
    invalid_rows: u64,
    /// The first invalid rows (`--max-errors`).
    errors: Vec<ErrorLine>,
    /// Pairs in the valid rows, duplicates included.
    pairs: u64,
    /// Pairs repeated within the input, folded into one.
    duplicates_in_input: u64,
    unique_pairs: u64,
    envs: u64,
    chunk_size: usize,
    /// Jobs the unique pairs make.
    planned_jobs: u64,
    /// Jobs and appids enqueued, and pairs skipped as already queued in the dedupe window.
    jobs: u64,
    appids: u64,
    skipped_already_queued: u64,
    /// Pairs WeChat already lists as bound, not enqueued (`--skip-bound`).
    skipped_bound: u64,
    /// The first of them (at most 1,000).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bound_pairs: Vec<BoundPair>,
    /// Per env (only for a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    per_env: Option<BTreeMap<String, EnvCount>>,
    elapsed_ms: u64,
}

/// A pair found already bound by `--skip-bound`.
#[derive(Debug, Serialize)]
struct BoundPair {
    env: String,
    appid: String,
}

/// A binding checker from the settings: the WeChat client, the token of the configured mode and
/// the global rate limit.
fn checker(ctx: &Ctx, queue: &Queue) -> anyhow::Result<BindingChecker> {
    let s = &ctx.settings;
    let client = WechatClient::new(&s.wechat_base_url, s.request_timeout)
        .context("fix ENVSHARE_WECHAT_BASE_URL")?;
    let Some(tokens) = envshare::token::provider_from_settings(
        s,
        queue.connection(),
        queue.keys(),
        client.clone(),
    ) else {
        bad_input!(
            "--skip-bound asks WeChat which pairs are bound and needs a token: set \
             ENVSHARE_ACCESS_TOKEN, or ENVSHARE_COMPONENT_APPID and ENVSHARE_COMPONENT_APPSECRET \
             (with a ticket stored by `envshare ticket set`)"
        );
    };
    let limiter = Arc::new(RateLimiter::new(
        queue.connection(),
        queue.keys(),
        s.rate_limit,
    ));
    Ok(BindingChecker::new(
        client,
        tokens,
        limiter,
        s.confirm_batch,
    ))
}

/// The pairs of `pairs` (distinct) that WeChat already lists as bound: one `batchgetenvid` call
/// per group of distinct appids.
async fn find_bound(
    checker: &BindingChecker,
    pairs: Vec<(EnvId, AppId)>,
) -> anyhow::Result<Vec<(EnvId, AppId)>> {
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
        let answer = checker.get_env_ids(&appids).await.context(
            "checking which pairs are already bound (batchgetenvid) failed; nothing was \
             enqueued. Run again once WeChat answers, or without --skip-bound",
        )?;
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

fn record_bound(summary: &mut Summary, bound: &[(EnvId, AppId)]) {
    summary.skipped_bound = bound.len() as u64;
    summary.bound_pairs = bound
        .iter()
        .take(MAX_BOUND_LISTED)
        .map(|(e, a)| BoundPair {
            env: e.to_string(),
            appid: a.to_string(),
        })
        .collect();
}

#[derive(Debug, Serialize)]
struct ErrorLine {
    line: u64,
    reason: String,
}

impl From<&InvalidLine> for ErrorLine {
    fn from(e: &InvalidLine) -> Self {
        Self {
            line: e.line,
            reason: e.reason.clone(),
        }
    }
}

fn batch_id(given: Option<&str>) -> anyhow::Result<BatchId> {
    match given {
        None => Ok(BatchId::generate()),
        Some(s) => BatchId::parse(s)
            .context("fix --batch: a batch id is 1 to 64 of A-Z, a-z, 0-9, '_', '-' or '.'"),
    }
}

/// `envshare import FILE|-`.
pub async fn import(ctx: &Ctx, args: ImportArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let flags = &args.common;
    let chunk_size = flags.chunk_size.map_or(ctx.chunk_size, |n| n as usize);
    let batch = batch_id(flags.batch.as_deref())?;
    let progress = Progress::new(flags.json);

    let source = Source::open(&args.file)?;
    let name = source.name.clone();
    let cannot = || format!("cannot import {name}");
    if source.len == 0 {
        return Err(anyhow::Error::new(ImportError::Empty(
            "",
            "a CSV header \"env,appid\" and rows, or JSON lines",
        )))
        .with_context(cannot);
    }
    let format = source
        .format(&args.file, args.format.map(Into::into))
        .with_context(cannot)?;
    // Check the header now, so a wrong file fails before connecting to Redis.
    Records::new(source.reader()?, format).with_context(cannot)?;
    let queue = if flags.dry_run {
        None
    } else {
        Some(ctx.queue().await?)
    };

    // Pass 1: validate everything; nothing is written yet.
    let bar = progress.bytes("validating", source.len);
    let input = bar.wrap_read(source.reader()?);
    let max_errors = args.max_errors;
    let mut validation = tokio::task::spawn_blocking(move || {
        import::validate(input, format, chunk_size, max_errors)
    })
    .await
    .context("the validating pass stopped")?
    .with_context(cannot)?;
    bar.finish_and_clear();
    for e in &validation.errors {
        eprintln!("{name}:{}: {}", e.line, e.reason);
    }
    if validation.unlisted_errors() > 0 {
        eprintln!("… and {} more invalid lines", validation.unlisted_errors());
    }

    let mut summary = Summary {
        batch: batch.to_string(),
        input: name.clone(),
        format: format.to_string(),
        dry_run: flags.dry_run,
        rows: validation.rows,
        valid_rows: validation.valid_rows,
        invalid_rows: validation.invalid_rows,
        errors: validation.errors.iter().map(Into::into).collect(),
        pairs: validation.pairs,
        duplicates_in_input: validation.duplicates,
        unique_pairs: validation.unique_pairs(),
        envs: validation.envs.len() as u64,
        chunk_size,
        planned_jobs: validation.jobs(),
        ..Summary::default()
    };

    if validation.invalid_rows > 0 && !args.skip_invalid {
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        if flags.json {
            print_json(&summary)?;
        }
        bad_input!(
            "{} invalid line{} in {name}; nothing was enqueued. Fix {}, or pass --skip-invalid to \
             enqueue the {} valid row{}",
            validation.invalid_rows,
            plural(validation.invalid_rows),
            if validation.invalid_rows == 1 {
                "it"
            } else {
                "them"
            },
            validation.valid_rows,
            plural(validation.valid_rows)
        );
    }
    if validation.unique_pairs() == 0 {
        bad_input!("{name} has no valid rows; nothing was enqueued");
    }
    if validation.invalid_rows > 0 {
        progress.note(format!(
            "skipping {} invalid line{} (--skip-invalid)",
            validation.invalid_rows,
            plural(validation.invalid_rows)
        ));
    }
    if !progress.is_terminal() {
        progress.note(format!(
            "validated {} rows of {name} in {:.2} s: {} pairs, {} jobs",
            validation.rows,
            started.elapsed().as_secs_f64(),
            validation.unique_pairs(),
            validation.jobs()
        ));
    }

    let Some(queue) = queue else {
        summary.per_env = Some(
            validation
                .envs
                .iter()
                .map(|(e, c)| (e.to_string(), *c))
                .collect(),
        );
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        return print_summary(&summary, flags);
    };

    if flags.skip_bound {
        // One more read: the distinct valid pairs, for batchgetenvid. Bound pairs leave the
        // planner's set, so pass 2 makes no job for them.
        let input = source.reader()?;
        let pairs =
            tokio::task::spawn_blocking(move || -> Result<Vec<(EnvId, AppId)>, ImportError> {
                let mut seen = import::PairSet::default();
                let mut pairs = Vec::new();
                for record in Records::new(input, format)? {
                    if let Ok(row) = record?.pairs {
                        for (env, appid) in row {
                            if seen.insert(&env, &appid) {
                                pairs.push((env, appid));
                            }
                        }
                    }
                }
                Ok(pairs)
            })
            .await
            .context("the bound-check pass stopped")?
            .with_context(cannot)?;
        let bound = find_bound(&checker(ctx, &queue)?, pairs).await?;
        for (env, appid) in &bound {
            validation.seen.remove(env, appid);
        }
        record_bound(&mut summary, &bound);
    }

    // Pass 2: read again, fold, chunk, enqueue in slices as the rows stream.
    let planner = Planner::new(validation.seen, chunk_size);
    let bar = progress.bytes("enqueueing", source.len);
    let chunks =
        Chunks::new(bar.wrap_read(source.reader()?), format, planner).with_context(cannot)?;
    let done = enqueue_into(&queue, chunks, &batch, flags, &progress, &bar).await?;
    bar.finish_and_clear();

    summary.enqueued = true;
    summary.jobs = done.jobs;
    summary.appids = done.appids;
    summary.skipped_already_queued = done.skipped_duplicates;
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    print_summary(&summary, flags)
}

/// Runs the enqueueing pass and seals the batch.
async fn enqueue_into<I>(
    queue: &envshare::store::Queue,
    chunks: I,
    batch: &BatchId,
    flags: &EnqueueFlags,
    progress: &Progress,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Enqueued>
where
    I: Iterator<Item = Result<Chunk, ImportError>> + Send + 'static,
{
    let mut ticker = progress.ticker();
    let result = import::enqueue_chunks(queue, chunks, batch, flags.force, |d| {
        bar.set_message(format!("{} jobs", d.jobs));
        ticker.tick(|| format!("enqueued {} jobs ({} appids)", d.jobs, d.appids));
    })
    .await;
    let done = match result {
        Ok(done) => done,
        Err(EnqueueError::Queue { done, source }) => {
            return Err(anyhow::Error::new(source)).with_context(|| {
                format!(
                    "enqueueing stopped after {} jobs ({} appids) of batch {batch}; once the \
                     cause is fixed, run the same command with --batch {batch} to enqueue the \
                     rest (pairs already queued are skipped)",
                    done.jobs, done.appids
                )
            });
        }
        Err(e @ EnqueueError::Read(_)) => {
            return Err(anyhow::Error::new(e)).with_context(|| {
                format!(
                    "some jobs of batch {batch} may be enqueued; run the same command with \
                     --batch {batch} to finish (pairs already queued are skipped)"
                )
            });
        }
    };
    // Sealing lets batch.completed fire once the last job ends.
    queue.seal_batch(batch).await.with_context(|| {
        format!("sealing batch {batch} failed; run the command again with --batch {batch}")
    })?;
    Ok(done)
}

/// `envshare enqueue --env ENV --appid APPID…`.
pub async fn pairs(ctx: &Ctx, args: EnqueueArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let flags = &args.common;
    let chunk_size = flags.chunk_size.map_or(ctx.chunk_size, |n| n as usize);
    let batch = batch_id(flags.batch.as_deref())?;
    let progress = Progress::new(flags.json);

    let env = EnvId::parse(&args.env).context("fix --env")?;
    let mut bad = Vec::new();
    let mut pairs = Vec::new();
    for a in &args.appid {
        match AppId::parse(a) {
            Ok(appid) => pairs.push((env.clone(), appid)),
            Err(e) => bad.push(e.to_string()),
        }
    }
    if !bad.is_empty() {
        bad_input!("fix --appid: {}", bad.join("; "));
    }
    let total_pairs = pairs.len() as u64;
    let queue = if flags.dry_run {
        None
    } else {
        Some(ctx.queue().await?)
    };
    let mut bound = Vec::new();
    if let Some(queue) = &queue
        && flags.skip_bound
    {
        let mut seen = import::PairSet::default();
        let distinct: Vec<(EnvId, AppId)> = pairs
            .iter()
            .filter(|(e, a)| seen.insert(e, a))
            .cloned()
            .collect();
        bound = find_bound(&checker(ctx, queue)?, distinct).await?;
    }
    let pairs: Vec<(EnvId, AppId)> = pairs.into_iter().filter(|p| !bound.contains(p)).collect();
    let chunks = import::plan_pairs(pairs, chunk_size);
    let unique: u64 = chunks.iter().map(|c| c.appids.len() as u64).sum();
    let mut summary = Summary {
        batch: batch.to_string(),
        input: "<arguments>".into(),
        format: "arguments".into(),
        dry_run: flags.dry_run,
        rows: total_pairs,
        valid_rows: total_pairs,
        pairs: total_pairs,
        duplicates_in_input: total_pairs - unique - bound.len() as u64,
        unique_pairs: unique + bound.len() as u64,
        envs: 1,
        chunk_size,
        planned_jobs: chunks.len() as u64,
        ..Summary::default()
    };
    if flags.dry_run {
        let count = EnvCount {
            appids: unique,
            jobs: chunks.len() as u64,
        };
        summary.per_env = Some(BTreeMap::from([(env.to_string(), count)]));
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        return print_summary(&summary, flags);
    }
    record_bound(&mut summary, &bound);
    let Some(queue) = queue else {
        unreachable!("a queue is connected unless --dry-run")
    };
    let bar = indicatif::ProgressBar::hidden();
    let done = enqueue_into(
        &queue,
        chunks.into_iter().map(Ok),
        &batch,
        flags,
        &progress,
        &bar,
    )
    .await?;
    summary.enqueued = true;
    summary.jobs = done.jobs;
    summary.appids = done.appids;
    summary.skipped_already_queued = done.skipped_duplicates;
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    print_summary(&summary, flags)
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn print_json(summary: &Summary) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string(summary).context("rendering the summary failed")?
    );
    Ok(())
}

fn print_summary(s: &Summary, flags: &EnqueueFlags) -> anyhow::Result<()> {
    if flags.json {
        return print_json(s);
    }
    let secs = s.elapsed_ms as f64 / 1000.0;
    let input = format!(
        "{} rows ({} invalid{}), {} pairs, {} duplicate{} in the input folded",
        s.rows,
        s.invalid_rows,
        if s.invalid_rows > 0 { ", skipped" } else { "" },
        s.pairs,
        s.duplicates_in_input,
        plural(s.duplicates_in_input)
    );
    if s.dry_run {
        println!("dry run: nothing was enqueued");
        println!(
            "would enqueue {} jobs ({} appids, chunk size {}) for {} env{} in batch {}",
            s.planned_jobs,
            s.unique_pairs,
            s.chunk_size,
            s.envs,
            plural(s.envs),
            s.batch
        );
        if let Some(per_env) = &s.per_env {
            for (env, c) in per_env.iter().take(MAX_ENVS_SHOWN) {
                println!("  {env}: {} appids, {} jobs", c.appids, c.jobs);
            }
            if per_env.len() > MAX_ENVS_SHOWN {
                println!("  … and {} more envs", per_env.len() - MAX_ENVS_SHOWN);
            }
        }
        println!("{input}");
        println!("(a dry run does not check which pairs are already queued)");
        return Ok(());
    }
    println!(
        "batch {}: enqueued {} jobs with {} appids for {} env{}",
        s.batch,
        s.jobs,
        s.appids,
        s.envs,
        plural(s.envs)
    );
    println!("{input}");
    if s.skipped_bound > 0 {
        println!(
            "{} pair{} already bound skipped (--skip-bound):",
            s.skipped_bound,
            plural(s.skipped_bound)
        );
        for p in s.bound_pairs.iter().take(MAX_BOUND_SHOWN) {
            println!("  {} {}", p.env, p.appid);
        }
        if s.skipped_bound > MAX_BOUND_SHOWN as u64 {
            println!("  … and {} more", s.skipped_bound - MAX_BOUND_SHOWN as u64);
        }
    }
    if s.skipped_already_queued > 0 {
        println!(
            "{} pair{} already queued in the dedupe window skipped (--force enqueues them anyway)",
            s.skipped_already_queued,
            plural(s.skipped_already_queued)
        );
    }
    println!(
        "took {secs:.2} s; follow it with: envshare status --batch {} --watch",
        s.batch
    );
    Ok(())
}
