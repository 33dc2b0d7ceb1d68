//! `envshare job show ID`: one job as the queue holds it: its env, appids and batch, where it
//! is (ready, scheduled, running, dead), its attempts and, when dead, why.
//!
//! A job that finished is removed from the queue (the events and the batch's per-appid results
//! are its record), so a job id the queue does not hold is either finished, purged or unknown.

use anyhow::Context as _;
use envshare::JobId;
use envshare::store::{JobInfo, JobState};

use crate::ctx::Ctx;
use crate::fail::bad_input;
use crate::table::{clip, span, time};

/// The longest errmsg shown in the text output.
const ERRMSG_WIDTH: usize = 200;

/// `envshare job show ID [--json]`.
pub async fn show(ctx: &Ctx, id: &str, json: bool) -> anyhow::Result<()> {
    let id = JobId::parse(id)
        .context("fix the job id (`envshare dead list` and the events show job ids)")?;
    let queue = ctx.queue().await?;
    let Some(info) = queue.job(&id).await.context("reading the job failed")? else {
        bad_input!(
            "queue {} holds no job {id}: it finished (finished jobs are removed; see each appid's \
             outcome with `envshare batch results BATCH` or `envshare find APPID`), was purged, or \
             never existed; `envshare batch list` shows the batches on record",
            ctx.queue
        );
    };
    if json {
        println!("{}", serde_json::to_string(&info)?);
        return Ok(());
    }
    print_text(&info, queue.now_ms());
    Ok(())
}

/// Where the job is, in words.
fn state_line(state: Option<&JobState>, now: u64) -> String {
    match state {
        Some(JobState::Ready { since_ms }) => format!(
            "ready (waiting for a worker for {})",
            span(now.saturating_sub(*since_ms))
        ),
        Some(JobState::Scheduled { run_at_ms }) if *run_at_ms > now => format!(
            "scheduled (runs again at {}, in {})",
            time(*run_at_ms),
            span(run_at_ms - now)
        ),
        Some(JobState::Scheduled { run_at_ms }) => {
            format!("scheduled (due since {})", time(*run_at_ms))
        }
        Some(JobState::Running {
            deadline_ms,
            fence,
            worker,
        }) => format!(
            "running on worker {worker} (lease {fence}, until {})",
            time(*deadline_ms)
        ),
        Some(JobState::Dead { died_at_ms }) => format!(
            "dead since {} ({} ago); `envshare dead retry ID` runs it again",
            time(*died_at_ms),
            span(now.saturating_sub(*died_at_ms))
        ),
        None => "between states (read again)".to_owned(),
    }
}

fn print_text(info: &JobInfo, now: u64) {
    let j = &info.job;
    println!("job {} ({})", j.id, j.op.as_str());
    println!("  state:    {}", state_line(info.state.as_ref(), now));
    println!("  batch:    {}", j.batch);
    println!("  env:      {}", j.env);
    println!("  created:  {}", time(info.created_at_ms));
    println!("  attempts: {}", info.attempts);
    if j.r#gen > 0 {
        println!("  retried from dead: {} time(s)", j.r#gen);
    }
    let appids: Vec<&str> = j.appids.iter().map(|a| a.as_str()).collect();
    println!("  appids ({}): {}", appids.len(), appids.join(" "));
    if let Some(d) = &info.dead {
        println!(
            "  died:     {} (errcode {}) after {} attempt(s): {}",
            d.reason.as_str(),
            d.errcode.map_or("-".to_owned(), |c| c.to_string()),
            d.attempts,
            clip(&d.errmsg, ERRMSG_WIDTH)
        );
    }
}
