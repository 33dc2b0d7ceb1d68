//! `envshare unshare` and `envshare sync`: undoing shares, and making the bindings match a file
//! of desired pairs (`envshare::sync` plans; the import flow enqueues).

use std::io::{self, BufRead, IsTerminal, Write};
use std::time::Instant;

use anyhow::Context as _;
use envshare::import::{self, Options, Source};
use envshare::store::JobOp;
use envshare::sync::{Pair, Plan};
use serde::Serialize;

use crate::cli::{EnqueueArgs, EnqueueFlags, ImportArgs, SyncArgs, UnshareArgs};
use crate::ctx::Ctx;
use crate::enqueue::{self, Shown};
use crate::fail::bad_input;
use crate::progress::Progress;

/// Pairs of each list shown in a text plan; the rest are counted.
const SHOWN: usize = 20;

/// `envshare unshare FILE|- | --env ENV --appid APPID…`.
pub async fn unshare(ctx: &Ctx, args: UnshareArgs) -> anyhow::Result<()> {
    let common = EnqueueFlags {
        batch: args.batch,
        chunk_size: args.chunk_size,
        dry_run: args.dry_run,
        force: args.force,
        skip_bound: false,
        json: args.json,
    };
    match (args.file, args.env) {
        (Some(file), _) => {
            let import = ImportArgs {
                file,
                format: args.format,
                skip_invalid: args.skip_invalid,
                max_errors: args.max_errors,
                common,
            };
            enqueue::import_as(ctx, import, JobOp::Unshare).await
        }
        (None, Some(env)) => {
            let pairs = EnqueueArgs {
                env,
                appid: args.appid,
                common,
            };
            enqueue::pairs_as(ctx, pairs, JobOp::Unshare).await
        }
        (None, None) => bad_input!("give a FILE of pairs to unshare, or --env ENV --appid APPID…"),
    }
}

/// The `--json` output of `envshare sync`.
#[derive(Serialize)]
struct SyncOutput<'a> {
    file: &'a str,
    prune: bool,
    applied: bool,
    /// The batch the plan went into (when applied and not empty).
    batch: Option<String>,
    plan: &'a Plan,
}

/// `envshare sync FILE [--prune] [--apply]`.
pub async fn run(ctx: &Ctx, args: SyncArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let batch = enqueue::batch_id(args.batch.as_deref())?;
    let chunk_size = args.chunk_size.map_or(ctx.chunk_size, |n| n as usize);
    let mut source = enqueue::open(&args.file)?.with_format(args.format.map(Into::into));
    let name = source.name().to_owned();
    source
        .check()
        .with_context(|| format!("cannot read {name}"))?;
    let desired: Vec<Pair> = source
        .distinct_pairs()
        .with_context(|| format!("cannot read {name}"))?
        .into_iter()
        .map(|(env, appid)| Pair { env, appid })
        .collect();

    // Validate exactly as an import does (FILE:LINE for every bad row, exit 2, nothing done).
    let flags = EnqueueFlags {
        batch: None,
        chunk_size: None,
        dry_run: true,
        force: false,
        skip_bound: false,
        json: args.json,
    };
    let shown = Shown::new(Progress::new(true), &name, started, false);
    let checked = import::run(
        None,
        source,
        &Options::new(batch.clone(), chunk_size),
        None,
        shown,
    )
    .await;
    if let Err(e) = checked {
        return enqueue::finish(Err(e), &name, &batch, &flags, started);
    }

    let queue = ctx.queue().await?;
    let checker = enqueue::checker(ctx, &queue)?;
    let plan = envshare::sync::plan(&queue, &checker, &desired, args.prune)
        .await
        .context("planning the sync failed; nothing was enqueued")?;

    let apply = args.apply && !plan.is_empty();
    if apply && args.prune && !plan.to_unshare.is_empty() && !args.yes {
        if !io::stdin().is_terminal() || args.json {
            if !args.json {
                print_plan(&plan, &name, args.prune);
            }
            bad_input!(
                "--apply --prune would unshare {} binding{}; pass --yes to confirm (not on a \
                 terminal, sync does not ask)",
                plan.to_unshare.len(),
                enqueue::plural(plan.to_unshare.len() as u64)
            );
        }
        print_plan(&plan, &name, args.prune);
        if !confirm(plan.to_unshare.len())? {
            println!("nothing was enqueued");
            return Ok(());
        }
    } else if !args.json {
        print_plan(&plan, &name, args.prune);
    }

    if apply {
        enqueue_plan(&queue, &plan, &batch, chunk_size).await?;
    }
    if args.json {
        let out = SyncOutput {
            file: &name,
            prune: args.prune,
            applied: apply,
            batch: apply.then(|| batch.to_string()),
            plan: &plan,
        };
        println!("{}", serde_json::to_string(&out)?);
    } else if apply {
        println!(
            "enqueued batch {batch}: {} to share, {} to unshare; follow it with: envshare \
             status --batch {batch} --watch",
            plan.to_share.len(),
            plan.to_unshare.len()
        );
    } else if plan.is_empty() {
        println!("nothing to do: every desired pair is bound or on its way");
    } else {
        println!("nothing was enqueued: run again with --apply to enqueue this plan");
    }
    Ok(())
}

/// Asks on the terminal before unsharing; true for yes.
fn confirm(n: usize) -> anyhow::Result<bool> {
    print!("unshare {n} binding{}? [y/N] ", enqueue::plural(n as u64));
    io::stdout().flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Enqueues the plan's shares and unshares into `batch`, sealed once both are in.
async fn enqueue_plan(
    queue: &envshare::store::Queue,
    plan: &Plan,
    batch: &envshare::BatchId,
    chunk_size: usize,
) -> anyhow::Result<()> {
    let parts = [
        (JobOp::Share, &plan.to_share),
        (JobOp::Unshare, &plan.to_unshare),
    ];
    let last = parts.iter().rposition(|(_, p)| !p.is_empty());
    for (i, (op, pairs)) in parts.into_iter().enumerate() {
        if pairs.is_empty() {
            continue;
        }
        let options = Options {
            op,
            seal: Some(i) == last,
            ..Options::new(batch.clone(), chunk_size)
        };
        let source = Source::pairs(
            "<plan>",
            pairs
                .iter()
                .map(|p| (p.env.clone(), p.appid.clone()))
                .collect(),
        );
        import::run(
            Some(queue),
            source,
            &options,
            None,
            std::sync::Arc::new(import::NoProgress),
        )
        .await
        .with_context(|| {
            format!(
                "enqueueing the plan into batch {batch} failed; run the same sync again (pairs \
                 already queued are skipped)"
            )
        })?;
    }
    Ok(())
}

fn print_plan(plan: &Plan, name: &str, prune: bool) {
    println!(
        "sync plan for {name} ({} appids checked with WeChat):",
        plan.appids_checked
    );
    let lists: [(&str, &Vec<Pair>); 4] = [
        ("to share", &plan.to_share),
        ("already bound", &plan.bound),
        ("awaiting confirmation or queued", &plan.awaiting),
        ("to unshare", &plan.to_unshare),
    ];
    for (title, pairs) in lists {
        if title == "to unshare" && !prune {
            println!("  {title:<32} (pass --prune to plan unsharing bindings the file lacks)");
            continue;
        }
        println!("  {title:<32} {}", pairs.len());
        let width = pairs
            .iter()
            .map(|p| p.env.as_str().len())
            .max()
            .unwrap_or(0);
        for p in pairs.iter().take(SHOWN) {
            println!("    {:<width$}  {}", p.env.as_str(), p.appid);
        }
        if pairs.len() > SHOWN {
            println!("    … and {} more", pairs.len() - SHOWN);
        }
    }
}
