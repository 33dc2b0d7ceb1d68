//! `envshare pause` and `envshare resume`: the same queue-wide pause the workers set themselves
//! when WeChat's daily quota is spent (45009) or the token is misconfigured.
//!
//! A pause is the queue's `pause` hash (`until`, `reason`): while `until` lies ahead, claims are
//! refused, so every worker stops taking jobs at its next poll (jobs already running finish).
//! `status`, the worker's `/readyz` and its `queue_paused` metrics show it whoever set it.
//! Pausing never shortens a longer pause already in force; `resume` ends any pause at once,
//! an automatic one included.

use anyhow::Context as _;
use envshare::store::Pause;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::fail::bad_input;
use crate::table::{span, time};

/// The end of a pause "until resumed" (far beyond any automatic pause).
pub const UNTIL_RESUMED_MS: u64 = envshare::schedule::PAUSE_UNTIL_RESUMED_MS;

/// The reason stored when `--reason` is not given.
pub const DEFAULT_REASON: &str = "paused by an operator (envshare pause)";

/// The longest `--reason` accepted.
const MAX_REASON_LEN: usize = envshare::schedule::MAX_PAUSE_REASON_LEN;

/// What `pause --json` and `resume --json` print about a pause.
#[derive(Debug, Serialize)]
pub struct PauseView {
    /// End of the pause (ms since the epoch).
    pub until_ms: u64,
    /// The pause lasts until `envshare resume` (`until_ms` is [`UNTIL_RESUMED_MS`]).
    pub until_resumed: bool,
    /// Why.
    pub reason: String,
}

impl PauseView {
    fn of(p: &Pause) -> Self {
        Self {
            until_ms: p.until_ms,
            until_resumed: p.until_ms >= UNTIL_RESUMED_MS,
            reason: p.reason.clone(),
        }
    }
}

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

#[derive(Debug, Serialize)]
struct PauseReport {
    queue: String,
    /// The pause asked for.
    requested: PauseView,
    /// The pause in force after the call (a longer one already in force is kept).
    paused: Option<PauseView>,
    /// A longer pause was already in force and was kept as it was.
    kept_longer: bool,
}

/// `envshare pause [--reason TEXT] [--for DURATION]`.
pub async fn pause(
    ctx: &Ctx,
    reason: Option<String>,
    for_: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let reason = reason.map(|r| r.trim().to_owned());
    let reason = match reason {
        Some(r) if r.is_empty() => {
            bad_input!("--reason is empty: say why the queue is paused, or leave the flag out")
        }
        Some(r) if !envshare::schedule::pause_reason_ok(&r) => {
            bad_input!(
                "--reason must be one line of at most {MAX_REASON_LEN} characters without \
                 control characters"
            )
        }
        Some(r) => r,
        None => DEFAULT_REASON.to_owned(),
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
    let until = envshare::schedule::pause_end(now, length);
    queue
        .pause_until(until, &reason)
        .await
        .context("pausing the queue failed")?;
    let in_force = queue
        .pause_in_force()
        .await
        .context("reading the pause back failed")?;
    let kept_longer = in_force.as_ref().is_some_and(|p| p.until_ms > until);
    let report = PauseReport {
        queue: ctx.queue.to_string(),
        requested: PauseView {
            until_ms: until,
            until_resumed: until >= UNTIL_RESUMED_MS,
            reason,
        },
        paused: in_force.as_ref().map(PauseView::of),
        kept_longer,
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    match &in_force {
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

#[derive(Debug, Serialize)]
struct ResumeReport {
    queue: String,
    /// The pause that was lifted, if there was one.
    lifted: Option<PauseView>,
}

/// `envshare resume`: ends the pause in force, whoever set it.
pub async fn resume(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let queue = ctx.queue().await?;
    let before = queue
        .pause_in_force()
        .await
        .context("reading the pause failed")?;
    queue.resume().await.context("resuming the queue failed")?;
    let now = queue.now_ms();
    if json {
        let report = ResumeReport {
            queue: ctx.queue.to_string(),
            lifted: before.as_ref().map(PauseView::of),
        };
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    match before {
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
    use envshare::schedule::pause_end;
    use std::time::Duration;

    #[test]
    fn until_resumed_is_exact_in_lua_and_far_beyond_any_automatic_pause() {
        assert_eq!(time(UNTIL_RESUMED_MS), "9999-12-31T23:59:59Z");
        assert_eq!(pause_end(1, Some(Duration::MAX)), UNTIL_RESUMED_MS);
        assert_eq!(pause_end(1, None), UNTIL_RESUMED_MS);
        assert_eq!(pause_end(1_000, Some(Duration::from_secs(60))), 61_000);
    }

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
