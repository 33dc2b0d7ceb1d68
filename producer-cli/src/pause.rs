//! `envshare pause` and `envshare resume`: the same queue-wide pause the workers set themselves
//! when WeChat's daily quota is spent (45009) or the token is misconfigured.
//!
//! A pause is the queue's `pause` hash (`until`, `reason`): while `until` lies ahead, claims are
//! refused, so every worker stops taking jobs at its next poll (jobs already running finish).
//! `status`, the worker's `/readyz` and its `queue_paused` metrics show it whoever set it.
//! Pausing never shortens a longer pause already in force; `resume` ends any pause at once,
//! an automatic one included.

use anyhow::Context as _;
use envshare::inspect::{self, ReasonError, UNTIL_RESUMED_MS};

use crate::ctx::Ctx;
use crate::fail::bad_input;
use crate::table::{span, time};

/// How long a pause lasts from `now_ms`: `until resumed`, or `until 2026-12-03T10:00:00Z (for
/// 30m00s more)`.
pub fn describe_until(until_ms: u64, now_ms: u64) -> String {
    if until_ms >= UNTIL_RESUMED_MS {
        "until resumed (`envshare resume`)".to_owned()
    } else {
        format!(
            "until {} ({} more)",
            time(until_ms),
            span(until_ms.saturating_sub(now_ms))
        )
    }
}

/// `envshare pause [--reason TEXT] [--for DURATION]`.
pub async fn pause(
    ctx: &Ctx,
    reason: Option<String>,
    for_: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let reason = match inspect::check_reason(reason.as_deref()) {
        Ok(r) => r,
        Err(ReasonError::Empty) => {
            bad_input!("--reason is empty: say why the queue is paused, or leave the flag out")
        }
        Err(ReasonError::Shape) => bad_input!(
            "--reason must be one line of at most {} characters without control characters",
            inspect::MAX_REASON_LEN
        ),
    };
    let length = match for_.as_deref() {
        None => None,
        Some(s) => match envshare::schedule::parse_duration(s) {
            Ok(d) if d.is_zero() => bad_input!(
                "--for {s:?} is zero: give how long to pause (e.g. 30m, 2h, 1d), or leave the \
                 flag out to pause until `envshare resume`"
            ),
            Ok(d) => Some(d),
            Err(why) => bad_input!("invalid --for {s:?}: {why} (e.g. 30m, 2h, 1d)"),
        },
    };
    let queue = ctx.queue().await?;
    let now = queue.now_ms();
    let until = inspect::pause_end(now, length);
    let report = inspect::pause(&queue, until, reason)
        .await
        .context("pausing the queue failed")?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let kept_longer = report.kept_longer;
    match &report.paused {
        Some(p) if kept_longer => println!(
            "queue {} was already paused for longer, {}: {}\n(pausing never shortens a pause; \
             `envshare resume` ends it, then pause again for a shorter time)",
            ctx.queue,
            describe_until(p.until_ms, now),
            p.reason
        ),
        Some(p) => println!(
            "queue {} paused {}: {}\nworkers take no new job from their next poll; running jobs \
             finish",
            ctx.queue,
            describe_until(p.until_ms, now),
            p.reason
        ),
        // Only when --for was so short that it ran out before it was read back.
        None => println!(
            "queue {} was paused, and the pause has already ended",
            ctx.queue
        ),
    }
    Ok(())
}

/// `envshare resume`: ends the pause in force, whoever set it.
pub async fn resume(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let queue = ctx.queue().await?;
    let report = inspect::resume(&queue)
        .await
        .context("resuming the queue failed")?;
    let now = queue.now_ms();
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    match report.lifted {
        Some(p) => println!(
            "queue {} resumed: workers take jobs again at their next poll\n(lifted the pause \
             that would have lasted {}: {})",
            ctx.queue,
            describe_until(p.until_ms, now),
            p.reason
        ),
        None => println!("queue {} was not paused; nothing to resume", ctx.queue),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_reads_as_its_end_and_what_is_left() {
        assert_eq!(
            describe_until(UNTIL_RESUMED_MS, 0),
            "until resumed (`envshare resume`)"
        );
        assert_eq!(
            describe_until(1_700_000_000_000 + 1_800_000, 1_700_000_000_000),
            "until 2023-11-14T22:43:20Z (30m00s more)"
        );
    }
}
