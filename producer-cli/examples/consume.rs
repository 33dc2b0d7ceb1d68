//! A consumer of envshare's result events: the shape another service (a notifier, a CRM sync)
//! copies to act on `share.accepted`, `share.failed` and `batch.completed`.
//!
//! ```text
//! cargo run -p envshare-cli --example consume -- --group notifier
//! ```
//!
//! It reads the stream `envshare:{QUEUE}:events` (docs/events.md) as one member of a Redis consumer
//! group, so several copies share the work and each event goes to one of them:
//!
//! 1. creates the group if missing (`XGROUP CREATE … 0 MKSTREAM`: a new group starts at the
//!    oldest kept event, so events written before the first start are not missed);
//! 2. re-reads its own pending entries (`XREADGROUP … 0`): events it received before a crash but
//!    never acknowledged;
//! 3. claims entries that another member received and left unacknowledged for longer than
//!    `--claim-idle-ms` (`XAUTOCLAIM`): that member crashed or hangs. It does so at start and
//!    then every `--claim-every-ms`;
//! 4. reads new entries (`XREADGROUP … >`), handles each, and acknowledges it (`XACK`) only after
//!    handling, so a crash in between re-delivers the event instead of losing it.
//!
//! Delivery is therefore at least once. Every event carries a stable `id`: a real consumer makes
//! its handling idempotent by that id (a unique key in its own database); this example keeps
//! the ids it has seen in memory to show where that check goes.
//!
//! Settings: `ENVSHARE_REDIS_URL` (else `REDIS_URL`, else `redis://127.0.0.1:6379`) and
//! `ENVSHARE_QUEUE` (default `share`), as for the other binaries.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use redis::AsyncCommands as _;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use serde_json::Value;

/// Read envshare's result events as a member of a consumer group.
#[derive(Debug, Parser)]
struct Args {
    /// The consumer group: one group per consuming service.
    #[arg(long, default_value = "example-consumer")]
    group: String,
    /// This member's name within the group. Keep it stable across restarts (a pod name), so a
    /// restarted member finds its own pending entries.
    #[arg(long)]
    consumer: Option<String>,
    /// Claim another member's entries left unacknowledged this long.
    #[arg(long, default_value_t = 60_000)]
    claim_idle_ms: u64,
    /// How often to look for such entries.
    #[arg(long, default_value_t = 30_000)]
    claim_every_ms: u64,
    /// Stop after handling this many events (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
}

/// Entries fetched per round trip.
const BATCH: usize = 100;
/// How long one XREADGROUP waits for new entries before the loop checks for claims and Ctrl-C.
const BLOCK_MS: usize = 5_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = std::env::var("ENVSHARE_REDIS_URL")
        .or_else(|_| std::env::var("REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let queue = std::env::var("ENVSHARE_QUEUE").unwrap_or_else(|_| "share".to_owned());
    let stream = format!("envshare:{{{queue}}}:events");
    let consumer = args
        .consumer
        .clone()
        .unwrap_or_else(|| format!("example-{}", std::process::id()));

    let client = redis::Client::open(url.as_str()).context("invalid Redis URL")?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .context("cannot connect to Redis (set ENVSHARE_REDIS_URL)")?;
    create_group(&mut con, &stream, &args.group).await?;
    eprintln!(
        "consuming {stream} as {}/{consumer} (Ctrl-C to stop)",
        args.group
    );

    let mut consumer_state = Consumer {
        con,
        stream,
        group: args.group.clone(),
        name: consumer,
        seen: HashSet::new(),
        handled: 0,
        limit: args.count,
    };

    // 2. Our own entries from before a crash: delivered to this name, never acknowledged.
    consumer_state.drain_own_pending().await?;
    // 3. Entries a crashed member left behind.
    consumer_state.claim_stale(args.claim_idle_ms).await?;
    let mut last_claim = Instant::now();

    // 4. New entries.
    let options = StreamReadOptions::default()
        .group(&args.group, &consumer_state.name)
        .count(BATCH)
        .block(BLOCK_MS);
    let keys = [consumer_state.stream.clone()];
    while !consumer_state.done() {
        let reply: Option<StreamReadReply> = tokio::select! {
            r = consumer_state.con.xread_options(&keys, &[">"], &options) => {
                r.context("XREADGROUP failed")?
            }
            _ = tokio::signal::ctrl_c() => break,
        };
        let entries: Vec<StreamId> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        consumer_state.handle_and_ack(&entries).await?;
        if last_claim.elapsed() >= Duration::from_millis(args.claim_every_ms) {
            consumer_state.claim_stale(args.claim_idle_ms).await?;
            last_claim = Instant::now();
        }
    }
    eprintln!("handled {} events", consumer_state.handled);
    Ok(())
}

/// `XGROUP CREATE stream group 0 MKSTREAM`; an existing group keeps its position.
async fn create_group(
    con: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> anyhow::Result<()> {
    let created: redis::RedisResult<()> = con.xgroup_create_mkstream(stream, group, "0").await;
    match created {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e).context("XGROUP CREATE failed"),
    }
}

/// One member of the group and what it has handled.
struct Consumer {
    con: MultiplexedConnection,
    stream: String,
    group: String,
    name: String,
    /// Event ids already handled. A real consumer keeps this in its own database, in the same
    /// transaction as the effect of handling the event.
    seen: HashSet<String>,
    handled: u64,
    limit: Option<u64>,
}

impl Consumer {
    fn done(&self) -> bool {
        self.limit.is_some_and(|n| self.handled >= n)
    }

    /// `XREADGROUP GROUP g c STREAMS stream 0`, repeated from the last id until empty: this
    /// member's pending entries (id `0` reads the pending list instead of new entries).
    async fn drain_own_pending(&mut self) -> anyhow::Result<()> {
        let mut from = "0".to_owned();
        loop {
            let options = StreamReadOptions::default()
                .group(&self.group, &self.name)
                .count(BATCH);
            let reply: Option<StreamReadReply> = self
                .con
                .xread_options(&[&self.stream], &[&from], &options)
                .await
                .context("XREADGROUP of pending entries failed")?;
            let entries: Vec<StreamId> = reply
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .collect();
            let Some(last) = entries.last() else {
                return Ok(());
            };
            from = last.id.clone();
            if !entries.is_empty() {
                eprintln!("re-handling {} own pending events", entries.len());
            }
            self.handle_and_ack(&entries).await?;
        }
    }

    /// `XAUTOCLAIM stream group me MIN-IDLE cursor COUNT n`, following the cursor until it
    /// returns `0-0`: takes over entries idle for `min_idle_ms` in any member's pending list.
    async fn claim_stale(&mut self, min_idle_ms: u64) -> anyhow::Result<()> {
        let mut cursor = "0-0".to_owned();
        loop {
            let reply: StreamAutoClaimReply = self
                .con
                .xautoclaim_options(
                    &self.stream,
                    &self.group,
                    &self.name,
                    min_idle_ms,
                    &cursor,
                    StreamAutoClaimOptions::default().count(BATCH),
                )
                .await
                .context("XAUTOCLAIM failed")?;
            if !reply.claimed.is_empty() {
                eprintln!(
                    "claimed {} events another member left unacknowledged",
                    reply.claimed.len()
                );
            }
            // Entries trimmed from the stream (MAXLEN) while pending come back in
            // `deleted_ids`; Redis has already removed them from the pending list.
            if !reply.deleted_ids.is_empty() {
                eprintln!(
                    "{} pending events were trimmed from the stream before anyone handled them",
                    reply.deleted_ids.len()
                );
            }
            self.handle_and_ack(&reply.claimed).await?;
            if reply.next_stream_id == "0-0" {
                return Ok(());
            }
            cursor = reply.next_stream_id;
        }
    }

    /// Handles each entry, then acknowledges them all in one `XACK`.
    async fn handle_and_ack(&mut self, entries: &[StreamId]) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(entries.len());
        for entry in entries {
            if let Err(e) = self.handle(entry) {
                // An entry that cannot be parsed will not parse on the next delivery either:
                // report it and acknowledge it, so it does not block the group forever. A
                // failure of the consumer's own side effect (database down) should instead
                // return an error here and leave the entry pending for a retry.
                eprintln!("skipping entry {}: {e:#}", entry.id);
            }
            ids.push(entry.id.clone());
        }
        let _acked: usize = self
            .con
            .xack(&self.stream, &self.group, &ids)
            .await
            .context("XACK failed")?;
        Ok(())
    }

    /// What a consumer does with each event type (docs/events.md).
    fn handle(&mut self, entry: &StreamId) -> anyhow::Result<()> {
        let Some(json) = entry.get::<String>("event") else {
            bail!("no `event` field");
        };
        let event: Value = serde_json::from_str(&json).context("`event` is not JSON")?;
        let id = event["id"].as_str().context("event without an id")?;
        if !self.seen.insert(id.to_owned()) {
            // At-least-once delivery: the same event again after a crash or a claim.
            return Ok(());
        }
        self.handled += 1;
        let field = |name: &str| event[name].as_str().unwrap_or("-").to_owned();
        match event["type"].as_str().unwrap_or_default() {
            "share.accepted" => {
                // WeChat took the request; the binding takes effect once the Mini Program's
                // administrator opens confirm_url. Deliver it to them (message, email, …).
                println!(
                    "accepted  env={} appid={} batch={} confirm_url={}",
                    field("env"),
                    field("appid"),
                    field("batch_id"),
                    field("confirm_url"),
                );
            }
            "share.failed" => {
                // Final: envshare will not try again. `reason` says why: rejected (WeChat's
                // err_list), permanent_error, retries_exhausted or lease_expired.
                println!(
                    "failed    env={} appid={} batch={} reason={} errcode={} errmsg={}",
                    field("env"),
                    field("appid"),
                    field("batch_id"),
                    field("reason"),
                    event["errcode"],
                    field("errmsg"),
                );
            }
            "batch.completed" => {
                // Emitted once per batch, after every job of the batch has ended.
                println!(
                    "completed batch={} total={} accepted={} failed={}",
                    field("batch_id"),
                    event["total"],
                    event["accepted"],
                    event["failed"],
                );
            }
            "share.bound" => {
                // The administrator confirmed: the environment is shared.
                println!("bound     env={} appid={}", field("env"), field("appid"));
            }
            other => {
                // Newer envshare versions may add event types: ignore them, do not fail.
                println!("ignored   type={other} id={id}");
            }
        }
        Ok(())
    }
}
