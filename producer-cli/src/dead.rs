//! `envshare dead list|retry|purge`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context as _;
use envshare::JobId;
use envshare::store::DeadSelection;

use crate::cli::DeadSelectionArgs;
use crate::ctx::Ctx;
use crate::fail::bad_input;

/// The longest errmsg shown in the text listing.
const ERRMSG_WIDTH: usize = 60;

fn selection(args: &DeadSelectionArgs) -> anyhow::Result<DeadSelection> {
    if args.all {
        return Ok(DeadSelection::All);
    }
    let ids = args
        .ids
        .iter()
        .map(|s| JobId::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .context("fix the job id (see `envshare dead list`)")?;
    Ok(DeadSelection::Ids(ids))
}

/// `envshare dead list`.
pub async fn list(ctx: &Ctx, offset: usize, limit: usize, json: bool) -> anyhow::Result<()> {
    let queue = ctx.queue().await?;
    let dead = queue
        .dead_list(offset, limit)
        .await
        .context("listing dead jobs failed")?;
    if json {
        println!("{}", serde_json::to_string(&dead)?);
        return Ok(());
    }
    if dead.is_empty() {
        println!(
            "no dead jobs{}",
            if offset > 0 { " at this offset" } else { "" }
        );
        return Ok(());
    }
    println!(
        "{:<26} {:>8} {:<17} {:>8} {:>8} {:<20} {:>6}  errmsg",
        "job", "died", "reason", "errcode", "attempts", "env", "appids"
    );
    let now = queue.now_ms();
    for d in &dead {
        let mut errmsg: String = d.errmsg.chars().take(ERRMSG_WIDTH).collect();
        if d.errmsg.chars().count() > ERRMSG_WIDTH {
            errmsg.push('…');
        }
        println!(
            "{:<26} {:>7}s {:<17} {:>8} {:>8} {:<20} {:>6}  {errmsg}",
            d.id.as_str(),
            now.saturating_sub(d.died_at_ms) / 1000,
            d.reason.map_or("-", |r| r.as_str()),
            d.errcode.map_or("-".to_owned(), |c| c.to_string()),
            d.attempts,
            d.job.as_ref().map_or("-".to_owned(), |j| j.env.to_string()),
            d.job.as_ref().map_or(0, |j| j.appids.len()),
        );
    }
    if dead.len() == limit {
        println!("(more may follow: --offset {})", offset + limit);
    }
    Ok(())
}

/// `envshare dead retry`.
pub async fn retry(ctx: &Ctx, args: DeadSelectionArgs) -> anyhow::Result<()> {
    let select = selection(&args)?;
    let asked = match &select {
        DeadSelection::Ids(ids) => Some(ids.len()),
        DeadSelection::All => None,
    };
    let queue = ctx.queue().await?;
    let n = queue
        .dead_retry(select)
        .await
        .context("retrying dead jobs failed")?;
    report("put back in ready", n, asked)
}

/// `envshare dead purge`: asks first on a terminal; needs `--yes` otherwise.
pub async fn purge(ctx: &Ctx, args: DeadSelectionArgs, yes: bool) -> anyhow::Result<()> {
    let select = selection(&args)?;
    let asked = match &select {
        DeadSelection::Ids(ids) => Some(ids.len()),
        DeadSelection::All => None,
    };
    let queue = ctx.queue().await?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            bad_input!(
                "refusing to purge dead jobs without confirmation: standard input is not a \
                 terminal; pass --yes"
            );
        }
        let what = match asked {
            Some(n) => format!("{n} dead job{}", if n == 1 { "" } else { "s" }),
            None => {
                let stats = queue.stats().await.context("counting dead jobs failed")?;
                format!("all {} dead jobs", stats.dead)
            }
        };
        eprint!("purge {what} of queue {} for good? [y/N] ", ctx.queue);
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("reading the answer failed")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            println!("nothing purged");
            return Ok(());
        }
    }
    let n = queue
        .dead_purge(select)
        .await
        .context("purging dead jobs failed")?;
    report("purged", n, asked)
}

fn report(done: &str, n: usize, asked: Option<usize>) -> anyhow::Result<()> {
    println!("{n} dead job{} {done}", if n == 1 { "" } else { "s" });
    if let Some(asked) = asked
        && n < asked
    {
        let missing = asked - n;
        if n == 0 {
            bad_input!(
                "none of the {asked} id{} is a dead job: see `envshare dead list`",
                if asked == 1 { "" } else { "s" }
            );
        }
        eprintln!("{missing} of the ids given are not dead jobs (see `envshare dead list`)");
    }
    Ok(())
}
