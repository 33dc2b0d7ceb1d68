//! `envshare job show ID`: one job as the queue holds it: its env, appids and batch, where it
//! is (ready, scheduled, running, dead), its attempts and, when dead, why.
//!
//! A job that finished is removed from the queue; while its batch is on record, its batch's
//! per-appid results still name it, so `job show` finds it there and shows each of its pairs'
//! outcome. A job id found in neither is purged, expired with its batch, or unknown.

use anyhow::Context as _;
use envshare::JobId;
use envshare::store::{FinishedJob, JobInfo, JobState};

use crate::ctx::Ctx;
use crate::fail::bad_input;
use crate::table::{Align, Table, clip, span, time};

/// The longest errmsg shown in the text output.
const ERRMSG_WIDTH: usize = 200;

/// `envshare job show ID [--json]`.
pub async fn show(ctx: &Ctx, id: &str, json: bool) -> anyhow::Result<()> {
    let id = JobId::parse(id)
        .context("fix the job id (`envshare dead list` and the events show job ids)")?;
    let queue = ctx.queue().await?;
    if let Some(info) = queue.job(&id).await.context("reading the job failed")? {
        if json {
            println!("{}", serde_json::to_string(&info)?);
        } else {
            print_text(&info, queue.now_ms());
        }
        return Ok(());
    }
    let Some(done) = queue
        .finished_job(&id)
        .await
        .context("looking the job up in the batches' results failed")?
    else {
        let created = id
            .created_ms()
            .filter(|ms| *ms <= queue.now_ms() + 86_400_000)
            .map(|ms| format!(" (its id says it was created at {})", time(ms)))
            .unwrap_or_default();
        bad_input!(
            "queue {} holds no job {id}{created}, and no batch on record names it: it was \
             purged, its batch's results expired (ENVSHARE_RESULTS_TTL), or it never existed; \
             `envshare batch list` shows the batches on record",
            ctx.queue
        );
    };
    if json {
        println!("{}", serde_json::to_string(&done)?);
    } else {
        print_finished(&done);
    }
    Ok(())
}

/// A job that left the queue, from its batch's results.
fn print_finished(done: &FinishedJob) {
    println!("job {} (finished: no longer in the queue)", done.id);
    println!(
        "  batch:    {} (its job number {}, counting from 0)",
        done.batch_id, done.index
    );
    if let Some(ms) = done.id.created_ms() {
        println!("  created:  {}", time(ms));
    }
    println!("  appids ({}):", done.rows.len());
    let mut t = Table::new(&[
        ("env", Align::Left),
        ("appid", Align::Left),
        ("state", Align::Left),
        ("updated", Align::Left),
        ("attempts", Align::Right),
        ("confirm_url / error", Align::Left),
    ]);
    for r in &done.rows {
        t.row(vec![
            r.env.to_string(),
            r.appid.to_string(),
            r.state.to_string(),
            time(r.updated_at_ms),
            r.attempts.to_string(),
            crate::find::detail(r),
        ]);
    }
    t.print();
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
