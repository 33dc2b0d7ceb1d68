//! `envshare events tail`: one consumer of a consumer group, printing and acking events.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use envshare::events::{Event, EventKind};
use envshare::store::{EventReader, StartFrom};

use crate::ctx::Ctx;
use crate::fail::redis_unreachable;

/// Options of `events tail`.
#[derive(Debug)]
pub struct TailOptions {
    /// The consumer group.
    pub group: String,
    /// The consumer name.
    pub consumer: Option<String>,
    /// A new group starts at the oldest kept event.
    pub from_start: bool,
    /// Raw JSON lines.
    pub json: bool,
    /// Stop after this many events.
    pub count: Option<u64>,
}

/// Follows the stream until Ctrl-C (or `count` events), printing each event, then acking it.
pub async fn tail(ctx: &Ctx, opts: TailOptions) -> anyhow::Result<()> {
    // Fail with the usual message when Redis is down, before the reader's own error.
    ctx.check_redis().await?;
    let consumer = opts
        .consumer
        .clone()
        .unwrap_or_else(|| format!("cli-{}", std::process::id()));
    let start = if opts.from_start {
        StartFrom::Beginning
    } else {
        StartFrom::New
    };
    let mut reader = EventReader::connect_with(
        &ctx.redis_url,
        ctx.redis_cluster,
        &ctx.keys,
        &opts.group,
        &consumer,
        start,
    )
    .await
    .with_context(|| redis_unreachable(&ctx.redis_url))?;
    if !opts.json {
        eprintln!(
            "following {} as {}/{} (Ctrl-C to stop)",
            ctx.keys.events(),
            opts.group,
            consumer
        );
    }
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    loop {
        let want = opts.count.map_or(100, |c| (c - printed).min(100)) as usize;
        let batch = tokio::select! {
            r = reader.read(want, Duration::from_secs(1)) => r.context("reading events failed")?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        if batch.is_empty() {
            continue;
        }
        let mut out = stdout.lock();
        let mut ids = Vec::with_capacity(batch.len());
        for e in &batch {
            let line = if opts.json {
                e.event.to_json()
            } else {
                human(&e.event)
            };
            writeln!(out, "{line}").context("writing to standard output failed")?;
            ids.push(e.entry_id.clone());
        }
        out.flush().context("writing to standard output failed")?;
        drop(out);
        // Ack only after the lines are out: a crash in between re-delivers, never loses.
        reader.ack(&ids).await.context("acking events failed")?;
        printed += ids.len() as u64;
        if opts.count.is_some_and(|c| printed >= c) {
            return Ok(());
        }
    }
}

/// One readable line for an event.
pub fn human(e: &Event) -> String {
    match &e.kind {
        EventKind::ShareAccepted {
            job_id,
            batch_id,
            env,
            appid,
            confirm_url,
            attempts,
        } => format!(
            "{} share.accepted   env={env} appid={appid} batch={batch_id} job={job_id} attempts={attempts} confirm_url={}",
            e.at,
            confirm_url.as_deref().unwrap_or("-")
        ),
        EventKind::ShareFailed {
            job_id,
            batch_id,
            env,
            appid,
            attempts,
            errcode,
            errmsg,
            reason,
            ..
        } => format!(
            "{} share.failed     env={env} appid={appid} batch={batch_id} job={job_id} attempts={attempts} reason={} errcode={} errmsg={errmsg:?}",
            e.at,
            reason.as_str(),
            errcode.map_or("-".to_owned(), |c| c.to_string()),
        ),
        EventKind::ShareUnshared {
            job_id,
            batch_id,
            env,
            appid,
            attempts,
        } => format!(
            "{} share.unshared   env={env} appid={appid} batch={batch_id} job={job_id} attempts={attempts}",
            e.at
        ),
        EventKind::BatchCompleted {
            batch_id,
            total,
            accepted,
            failed,
        } => format!(
            "{} batch.completed  batch={batch_id} total={total} accepted={accepted} failed={failed}",
            e.at
        ),
        EventKind::ShareBound {
            batch_id,
            env,
            appid,
            confirm_seconds,
            checks,
            ..
        } => format!(
            "{} share.bound      env={env} appid={appid} batch={batch_id} confirmed_after={confirm_seconds:.0}s checks={checks}",
            e.at
        ),
        EventKind::ShareUnconfirmed {
            batch_id,
            env,
            appid,
            window_seconds,
            checks,
            ..
        } => format!(
            "{} share.unconfirmed env={env} appid={appid} batch={batch_id} window={window_seconds:.0}s checks={checks}",
            e.at
        ),
        EventKind::BatchConfirmed {
            batch_id,
            accepted,
            bound,
            unconfirmed,
        } => format!(
            "{} batch.confirmed  batch={batch_id} accepted={accepted} bound={bound} unconfirmed={unconfirmed}",
            e.at
        ),
        EventKind::Unknown => format!("{} (unknown event type) id={}", e.at, e.id),
    }
}
