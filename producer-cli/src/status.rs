//! `envshare status`: queue counts, workers, pause, token expiry and ticket age, batch progress.
//!
//! The token and the ticket are never read: only the token key's remaining time to live (`PTTL`,
//! the token module sets it to the token's life) and the ticket hash's `set_at` field.

use std::time::Duration;

use anyhow::Context as _;
use envshare::BatchId;
use envshare::store::{BatchProgress, Queue, QueueStats};
use serde::Serialize;

use crate::cli::StatusArgs;
use crate::ctx::Ctx;
use crate::fail::bad_input;
use crate::progress::Progress;

/// A verify ticket lives 12 hours.
const TICKET_LIFE_MS: u64 = 12 * 3600 * 1000;

/// What `status --json` prints.
#[derive(Debug, Serialize)]
struct Status {
    queue: String,
    #[serde(flatten)]
    stats: QueueStats,
    token: TokenInfo,
    ticket: TicketInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<BatchInfo>,
    /// When this was read (the queue's clock, ms), for the ages printed.
    #[serde(skip)]
    read_at_ms: u64,
}

/// The token, without its value.
#[derive(Debug, Serialize)]
struct TokenInfo {
    /// Where workers take it from: `component`, `fixed`, `redis`, `http`, or `none` (no token
    /// settings given to this command).
    source: &'static str,
    /// A token is cached in Redis (`component`), or present at the source (`redis`, `http`).
    cached: bool,
    /// Time until it expires (ms), when cached with an expiry.
    expires_in_ms: Option<u64>,
    /// Why the source could not be read (`redis`, `http`), if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The verify ticket, without its value.
#[derive(Debug, Serialize)]
struct TicketInfo {
    /// A ticket is stored.
    stored: bool,
    /// When it was stored (ms since the epoch).
    set_at_ms: Option<u64>,
    /// Its age (ms).
    age_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
struct BatchInfo {
    #[serde(flatten)]
    progress: BatchProgress,
    /// Appids neither accepted nor failed yet.
    pending: u64,
    /// Accepted appids whose binding `batchgetenvid` showed confirmed (`share.bound`).
    bound: u64,
    /// Accepted appids whose confirmation window ended first (`share.unconfirmed`).
    unconfirmed: u64,
    /// Accepted appids still being checked.
    awaiting_confirmation: u64,
    /// `batch.confirmed` was emitted.
    confirmed: bool,
}

impl BatchInfo {
    /// The batch's progress plus its confirmation counters (fields of the batch hash written by
    /// the confirmation watcher).
    async fn read(queue: &Queue, progress: BatchProgress) -> anyhow::Result<Self> {
        let pending = progress
            .appids
            .saturating_sub(progress.accepted + progress.failed);
        let Some(id) = &progress.id else {
            return Err(anyhow::anyhow!("a batch without an id"));
        };
        let c = queue
            .batch_confirmation(id)
            .await
            .context("reading the batch's confirmation counters failed")?;
        let (bound, unconfirmed, confirmed) = (c.bound, c.unconfirmed, c.confirmed);
        Ok(Self {
            pending,
            bound,
            unconfirmed,
            awaiting_confirmation: progress.accepted.saturating_sub(bound + unconfirmed),
            confirmed,
            progress,
        })
    }
}

/// The token of a `redis` or `http` source, asked from the source itself.
async fn external_token(ctx: &Ctx, queue: &Queue, source: &'static str) -> TokenInfo {
    let s = &ctx.settings;
    let status = async {
        let client = envshare::wechat::WechatClient::from_settings(s).map_err(|e| e.to_string())?;
        let provider = envshare::token::provider_for(s, queue.connection(), queue.keys(), client)
            .map_err(|e| e.to_string())?;
        provider.status().await.map_err(|e| e.to_string())
    };
    match status.await {
        Ok(st) => TokenInfo {
            source,
            cached: st.cached,
            expires_in_ms: st.expires_at_ms.map(|e| e.saturating_sub(queue.now_ms())),
            error: None,
        },
        Err(error) => TokenInfo {
            source,
            cached: false,
            expires_in_ms: None,
            error: Some(error),
        },
    }
}

async fn token_and_ticket(ctx: &Ctx, queue: &Queue) -> anyhow::Result<(TokenInfo, TicketInfo)> {
    let meta = queue
        .token_store()
        .meta()
        .await
        .context("reading the token and ticket metadata failed")?;
    let source = ctx.settings.token_mode().name();
    let token = match source {
        "redis" | "http" => external_token(ctx, queue, source).await,
        _ => TokenInfo {
            source,
            cached: meta.token_cached,
            expires_in_ms: meta.token_ttl_ms,
            error: None,
        },
    };
    let ticket = TicketInfo {
        stored: meta.ticket_stored,
        set_at_ms: meta.ticket_set_at_ms,
        age_ms: meta
            .ticket_set_at_ms
            .map(|s| queue.now_ms().saturating_sub(s)),
    };
    Ok((token, ticket))
}

async fn gather(ctx: &Ctx, queue: &Queue, batch: Option<&BatchId>) -> anyhow::Result<Status> {
    let stats = queue
        .stats()
        .await
        .context("reading the queue counts failed")?;
    let (token, ticket) = token_and_ticket(ctx, queue).await?;
    let batch = match batch {
        None => None,
        Some(id) => match queue.batch(id).await.context("reading the batch failed")? {
            Some(p) => Some(BatchInfo::read(queue, p).await?),
            None => bad_input!(
                "queue {} has no batch {id}: check the id `envshare import` printed (and \
                 ENVSHARE_QUEUE)",
                ctx.queue
            ),
        },
    };
    Ok(Status {
        queue: ctx.queue.to_string(),
        stats,
        token,
        ticket,
        batch,
        read_at_ms: queue.now_ms(),
    })
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
