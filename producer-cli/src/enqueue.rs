//! `envshare import` and `envshare enqueue`: parse the arguments, run the library's import flow
//! (`envshare::import::run`: validate, skip bound pairs, plan, enqueue, seal), print the summary.
//!
//! An import reads its input more than once (see `envshare::import`). Standard input (`-`)
//! cannot be read twice, so it is first copied to an anonymous temporary file (disk, not memory:
//! a 1,000,000-row input stays out of RAM).

use std::error::Error;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::Context as _;
use envshare::confirm::BindingChecker;
use envshare::import::{
    self, EnqueueError, Enqueued, MakeChecker, Observer, Options, Pass, RunError, Source, Summary,
};
use envshare::store::{JobOp, Queue};
use envshare::throttle::RateLimiter;
use envshare::wechat::WechatClient;
use envshare::{AppId, BatchId, EnvId};
use indicatif::ProgressBar;

use crate::cli::{EnqueueArgs, EnqueueFlags, ImportArgs};
use crate::ctx::Ctx;
use crate::fail::bad_input;
use crate::progress::{Progress, Ticker};

/// Envs listed one by one in a text dry run; the rest are counted.
const MAX_ENVS_SHOWN: usize = 50;
/// Bound pairs listed in the text summary.
const MAX_BOUND_SHOWN: usize = 20;

/// Opens the input: a file, or standard input spooled to a temporary file.
pub fn open(path: &Path) -> anyhow::Result<Source> {
    if path.as_os_str() == "-" {
        let mut spool = tempfile::tempfile()
            .context("creating a temporary file to hold standard input failed (set TMPDIR to a writable directory)")?;
        let len = io::copy(&mut io::stdin().lock(), &mut spool)
            .context("reading standard input failed")?;
        return Ok(Source::file("<stdin>", spool, len));
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
        bad_input!("cannot read {name}: it is a directory; give the path of a .csv or .jsonl file");
    }
    Ok(Source::file(name, file, meta.len()))
}

/// A binding checker from the settings: the WeChat client, the token of the configured mode and
/// the global rate limit.
pub fn checker(ctx: &Ctx, queue: &Queue) -> anyhow::Result<BindingChecker> {
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
            "asking WeChat which pairs are bound (batchgetenvid: --skip-bound, sync) needs a \
             token: set ENVSHARE_ACCESS_TOKEN, or ENVSHARE_COMPONENT_APPID and \
             ENVSHARE_COMPONENT_APPSECRET (with a ticket stored by `envshare ticket set`)"
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

/// `--skip-bound`: the checker is built only once the input is accepted.
fn skip_bound<'a>(
    ctx: &'a Ctx,
    queue: Option<&'a Queue>,
    flags: &EnqueueFlags,
) -> Option<MakeChecker<'a>> {
    let queue = queue.filter(|_| flags.skip_bound)?;
    Some(Box::new(move || {
        checker(ctx, queue).map_err(|e| Box::new(Carried(e)) as Box<dyn Error + Send + Sync>)
    }))
}

/// Carries the error of [`checker`] through the import flow unchanged (its exit code depends on
/// what it holds).
#[derive(Debug)]
struct Carried(anyhow::Error);

impl fmt::Display for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for Carried {}

pub fn batch_id(given: Option<&str>) -> anyhow::Result<BatchId> {
    match given {
        None => Ok(BatchId::generate()),
        Some(s) => BatchId::parse(s)
            .context("fix --batch: a batch id is 1 to 64 of A-Z, a-z, 0-9, '_', '-' or '.'"),
    }
}

/// Shows an import's progress on stderr: a bar per pass over a file, the invalid lines, a
/// plain line now and then while enqueueing.
pub struct Shown {
    progress: Progress,
    /// How messages name the input.
    name: String,
    started: Instant,
    /// Bars and notes for the passes over a file (not for pairs given as arguments).
    passes: bool,
    bar: Mutex<ProgressBar>,
    ticker: Mutex<Ticker>,
}

impl Shown {
    pub fn new(progress: Progress, name: &str, started: Instant, passes: bool) -> Arc<Self> {
        Arc::new(Self {
            progress,
            name: name.to_owned(),
            started,
            passes,
            bar: Mutex::new(ProgressBar::hidden()),
            ticker: Mutex::new(progress.ticker()),
        })
    }

    fn bar(&self) -> ProgressBar {
        self.bar
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Observer for Shown {
    fn pass_started(&self, pass: Pass, len: u64) {
        let bar = match pass {
            Pass::Validate if self.passes => self.progress.bytes("validating", len),
            Pass::Enqueue if self.passes => self.progress.bytes("enqueueing", len),
            _ => ProgressBar::hidden(),
        };
        *self.bar.lock().unwrap_or_else(PoisonError::into_inner) = bar;
        if pass == Pass::Enqueue {
            // Plain lines start two seconds into the enqueueing.
            *self.ticker.lock().unwrap_or_else(PoisonError::into_inner) = self.progress.ticker();
        }
    }

    fn read(&self, bytes: u64) {
        self.bar().inc(bytes);
    }

    fn pass_finished(&self, _pass: Pass) {
        self.bar().finish_and_clear();
    }

    fn validated(&self, s: &Summary) {
        for e in &s.errors {
            eprintln!("{}:{}: {}", self.name, e.line, e.reason);
        }
        let unlisted = s.invalid_rows - s.errors.len() as u64;
        if unlisted > 0 {
            eprintln!("… and {unlisted} more invalid lines");
        }
    }

    fn accepted(&self, s: &Summary) {
        if !self.passes {
            return;
        }
        if s.invalid_rows > 0 {
            self.progress.note(format!(
                "skipping {} invalid line{} (--skip-invalid)",
                s.invalid_rows,
                plural(s.invalid_rows)
            ));
        }
        if !self.progress.is_terminal() {
            self.progress.note(format!(
                "validated {} rows of {} in {:.2} s: {} pairs, {} jobs",
                s.rows,
                self.name,
                self.started.elapsed().as_secs_f64(),
                s.unique_pairs,
                s.planned_jobs
            ));
        }
    }

    fn enqueued(&self, d: &Enqueued) {
        self.bar().set_message(format!("{} jobs", d.jobs));
        self.ticker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tick(|| format!("enqueued {} jobs ({} appids)", d.jobs, d.appids));
    }
}

/// `envshare import FILE|-`.
pub async fn import(ctx: &Ctx, args: ImportArgs) -> anyhow::Result<()> {
    import_as(ctx, args, JobOp::Share).await
}

/// An import of `op` jobs (`envshare import`, `envshare unshare FILE`).
pub async fn import_as(ctx: &Ctx, args: ImportArgs, op: JobOp) -> anyhow::Result<()> {
    let started = Instant::now();
    let flags = &args.common;
    let chunk_size = flags.chunk_size.map_or(ctx.chunk_size, |n| n as usize);
    let batch = batch_id(flags.batch.as_deref())?;
    let progress = Progress::new(flags.json);

    let mut source = open(&args.file)?.with_format(args.format.map(Into::into));
    let name = source.name().to_owned();
    // Check the input now, so a wrong file fails before connecting to Redis.
    source
        .check()
        .with_context(|| format!("cannot import {name}"))?;
    let queue = if flags.dry_run {
        None
    } else {
        Some(ctx.queue().await?)
    };
    let options = Options {
        force: flags.force,
        skip_invalid: args.skip_invalid,
        max_errors: args.max_errors,
        op,
        ..Options::new(batch, chunk_size)
    };
    let shown = Shown::new(progress, &name, started, true);
    let result = import::run(
        queue.as_ref(),
        source,
        &options,
        skip_bound(ctx, queue.as_ref(), flags),
        shown,
    )
    .await;
    finish(result, &name, &options.batch, flags, started)
}

/// `envshare enqueue --env ENV --appid APPID…`.
pub async fn pairs(ctx: &Ctx, args: EnqueueArgs) -> anyhow::Result<()> {
    pairs_as(ctx, args, JobOp::Share).await
}

/// A few pairs as `op` jobs (`envshare enqueue`, `envshare unshare --env … --appid …`).
pub async fn pairs_as(ctx: &Ctx, args: EnqueueArgs, op: JobOp) -> anyhow::Result<()> {
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
    let queue = if flags.dry_run {
        None
    } else {
        Some(ctx.queue().await?)
    };
    let name = "<arguments>";
    let options = Options {
        force: flags.force,
        op,
        ..Options::new(batch, chunk_size)
    };
    let shown = Shown::new(progress, name, started, false);
    let result = import::run(
        queue.as_ref(),
        Source::pairs(name, pairs),
        &options,
        skip_bound(ctx, queue.as_ref(), flags),
        shown,
    )
    .await;
    finish(result, name, &options.batch, flags, started)
}

/// Prints the summary of a finished import, or turns why it stopped into an error that says
/// what to do.
pub fn finish(
    result: Result<Summary, RunError>,
    name: &str,
    batch: &BatchId,
    flags: &EnqueueFlags,
    started: Instant,
) -> anyhow::Result<()> {
    let elapsed_ms = || started.elapsed().as_millis() as u64;
    let err = match result {
        Ok(mut summary) => {
            summary.elapsed_ms = elapsed_ms();
            return print_summary(&summary, flags);
        }
        Err(e) => e,
    };
    match err {
        RunError::Invalid(mut summary) => {
            summary.elapsed_ms = elapsed_ms();
            if flags.json {
                print_json(&summary)?;
            }
            bad_input!(
                "{} invalid line{} in {name}; nothing was enqueued. Fix {}, or pass --skip-invalid \
                 to enqueue the {} valid row{}",
                summary.invalid_rows,
                plural(summary.invalid_rows),
                if summary.invalid_rows == 1 {
                    "it"
                } else {
                    "them"
                },
                summary.valid_rows,
                plural(summary.valid_rows)
            );
        }
        RunError::NoValidRows(_) => bad_input!("{name} has no valid rows; nothing was enqueued"),
        RunError::Import(e) => {
            Err(anyhow::Error::new(e)).with_context(|| format!("cannot import {name}"))
        }
        RunError::Stopped { pass, source } => {
            Err(anyhow::Error::new(source)).with_context(|| format!("the {pass} pass stopped"))
        }
        RunError::Checker(e) => Err(e
            .downcast::<Carried>()
            .map_or_else(anyhow::Error::from_boxed, |carried| carried.0)),
        RunError::Bound(e) => Err(anyhow::Error::new(e).context(
            "checking which pairs are already bound (batchgetenvid) failed; nothing was \
             enqueued. Run again once WeChat answers, or without --skip-bound",
        )),
        RunError::Enqueue(EnqueueError::Queue { done, source }) => Err(anyhow::Error::new(source))
            .with_context(|| {
                format!(
                    "enqueueing stopped after {} jobs ({} appids) of batch {batch}; once the \
                     cause is fixed, run the same command with --batch {batch} to enqueue the \
                     rest (pairs already queued are skipped)",
                    done.jobs, done.appids
                )
            }),
        RunError::Enqueue(e @ EnqueueError::Read(_)) => {
            Err(anyhow::Error::new(e)).with_context(|| {
                format!(
                    "some jobs of batch {batch} may be enqueued; run the same command with \
                     --batch {batch} to finish (pairs already queued are skipped)"
                )
            })
        }
        RunError::Seal(e) => Err(anyhow::Error::new(e)).with_context(|| {
            format!("sealing batch {batch} failed; run the command again with --batch {batch}")
        }),
    }
}

pub fn plural(n: u64) -> &'static str {
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
