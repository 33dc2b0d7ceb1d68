//! `envshare status`: queue counts, workers, pause, token expiry and ticket age, batch progress.
//!
//! The token and the ticket are never read: only the token key's remaining time to live (`PTTL`,
//! the token module sets it to the token's life) and the ticket hash's `set_at` field.

use std::time::Duration;

use anyhow::Context as _;
use envshare::BatchId;
use envshare::inspect::{self, Status, StatusError, TICKET_LIFE_MS};
use envshare::store::Queue;

use crate::cli::StatusArgs;
use crate::ctx::Ctx;
use crate::fail::bad_input;
use crate::progress::Progress;

async fn gather(ctx: &Ctx, queue: &Queue, batch: Option<&BatchId>) -> anyhow::Result<Status> {
    match inspect::status(&ctx.settings, queue, batch).await {
        Ok(s) => Ok(s),
        Err(StatusError::UnknownBatch(id)) => bad_input!(
            "queue {} has no batch {id}: check the id `envshare import` printed (and \
             ENVSHARE_QUEUE)",
            ctx.queue
        ),
        Err(StatusError::Store(e)) => {
            Err(anyhow::Error::new(e).context("reading the queue's status failed"))
        }
    }
}

/// `envshare status`.
pub async fn run(ctx: &Ctx, args: StatusArgs) -> anyhow::Result<()> {
    let batch = match &args.batch {
        Some(b) => Some(BatchId::parse(b).context("fix --batch")?),
        None => None,
    };
    let queue = ctx.queue().await?;
    let interval = Duration::from_millis(args.interval_ms.max(100));
    if args.watch
        && let Some(id) = &batch
    {
        return watch_batch(ctx, &queue, id, &args, interval).await;
    }
    loop {
        let status = gather(ctx, &queue, batch.as_ref()).await?;
        if args.json {
            println!("{}", serde_json::to_string(&status)?);
        } else {
            print_text(&status);
        }
        if !args.watch {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        if !args.json {
            println!();
        }
    }
}

/// Follows a batch with a progress bar (or a line per interval) until it completes.
async fn watch_batch(
    ctx: &Ctx,
    queue: &Queue,
    id: &BatchId,
    args: &StatusArgs,
    interval: Duration,
) -> anyhow::Result<()> {
    let progress = Progress::new(args.json);
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut ticker = progress.ticker();
    loop {
        let status = gather(ctx, queue, Some(id)).await?;
        let b = status
            .batch
            .as_ref()
            .expect("gather returns the batch asked for");
        let p = &b.progress;
        let bar = bar.get_or_insert_with(|| progress.items("appids", p.appids));
        bar.set_length(p.appids);
        bar.set_position(p.accepted + p.failed);
        bar.set_message(format!(
            "accepted {} failed {} | ready {} running {} scheduled {} dead {}",
            p.accepted,
            p.failed,
            status.stats.ready,
            status.stats.running,
            status.stats.scheduled,
            status.stats.dead
        ));
        ticker.tick(|| {
            format!(
                "batch {id}: {}/{} appids done (accepted {}, failed {}), {} pending",
                p.accepted + p.failed,
                p.appids,
                p.accepted,
                p.failed,
                b.pending
            )
        });
        if p.completed {
            bar.finish_and_clear();
            if args.json {
                println!("{}", serde_json::to_string(&status)?);
            } else {
                print_text(&status);
            }
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => {
                bar.abandon();
                return Ok(());
            }
        }
    }
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn print_text(s: &Status) {
    let st = &s.stats;
    println!("queue {}", s.queue);
    println!(
        "  jobs: ready {}, running {}, scheduled {}, dead {} ({} stored)",
        st.ready, st.running, st.scheduled, st.dead, st.jobs
    );
    println!(
        "  oldest ready job: {}",
        st.oldest_ready_age_ms
            .map_or("none".to_owned(), |ms| format!("{} old", age(ms)))
    );
    println!("  live workers: {}", st.live_workers);
    match &st.paused {
        Some(p) => println!(
            "  paused {}: {}",
            crate::pause::describe_until(p.until_ms, s.read_at_ms),
            p.reason
        ),
        None => println!("  not paused"),
    }
    let source = s.token.source;
    match (&s.token.error, s.token.cached, s.token.expires_in_ms) {
        (Some(e), _, _) => println!("  token ({source}): cannot be read: {e}"),
        (None, true, Some(ms)) => println!("  token ({source}): present, expires in {}", age(ms)),
        (None, true, None) => println!("  token ({source}): present, no expiry known"),
        (None, false, _) if source == "redis" => {
            println!("  token ({source}): none under ENVSHARE_TOKEN_REDIS_KEY")
        }
        (None, false, _) => println!("  token ({source}): none cached"),
    }
    match (s.ticket.stored, s.ticket.age_ms) {
        (true, Some(ms)) if ms > TICKET_LIFE_MS => println!(
            "  verify ticket: set {} ago, older than its 12 h life: store a fresh one with \
             `envshare ticket set -`",
            age(ms)
        ),
        (true, Some(ms)) => println!("  verify ticket: set {} ago", age(ms)),
        (true, None) => println!("  verify ticket: stored (time unknown)"),
        (false, _) => println!("  verify ticket: none stored"),
    }
    println!("  events in stream: {}", st.events);
    if !st.counters.is_empty() {
        let counters: Vec<String> = st
            .counters
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("  counters: {}", counters.join(", "));
    }
    if let Some(b) = &s.batch {
        let p = &b.progress;
        let id = p.id.as_ref().map(ToString::to_string).unwrap_or_default();
        println!(
            "batch {id}: {} appids in {} jobs; accepted {}, failed {}, pending {}; {}",
            p.appids,
            p.jobs,
            p.accepted,
            p.failed,
            b.pending,
            if p.completed {
                "completed"
            } else if p.sealed {
                "in progress"
            } else {
                "still being enqueued"
            }
        );
        println!(
            "  confirmation: bound {}, unconfirmed {}, awaiting {}; {}",
            b.bound,
            b.unconfirmed,
            b.awaiting_confirmation,
            if b.confirmed {
                "confirmed (every accepted appid bound or unconfirmed)"
            } else {
                "not confirmed yet"
            }
        );
    }
}
