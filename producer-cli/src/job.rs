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
        let created = ulid_time_ms(id.as_str())
            .filter(|ms| *ms <= queue.now_ms() + 86_400_000)
            .map(|ms| format!(" (its id says it was created at {})", time(ms)))
            .unwrap_or_default();
        bad_input!(
            "queue {} holds no job {id}{created}: it finished (finished jobs are removed; see each \
             appid's outcome with `envshare batch results BATCH` or `envshare find APPID`), was \
             purged, or never existed; `envshare batch list` shows the batches on record",
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

/// The creation time (ms) a generated job id (a ULID: 26 Crockford base32 characters, the first
/// 10 the time in ms) carries; `None` for an id of another shape.
fn ulid_time_ms(id: &str) -> Option<u64> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    if id.len() != 26 {
        return None;
    }
    let mut ms: u64 = 0;
    for b in id.bytes().take(10) {
        let digit = ALPHABET.iter().position(|a| *a == b.to_ascii_uppercase())?;
        ms = ms.checked_mul(32)?.checked_add(digit as u64)?;
    }
    // 10 characters hold 50 bits; a ULID's time is 48.
    (ms < 1 << 48).then_some(ms)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_job_id_tells_when_it_was_created() {
        let id = JobId::generate();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let ms = ulid_time_ms(id.as_str()).unwrap();
        assert!(ms <= now && now - ms < 60_000, "{id}: {ms} vs {now}");
        assert_eq!(
            ulid_time_ms("01M8XMSZCVFYYVYHAZMR7ZRYVY")
                .map(time)
                .as_deref(),
            Some("2026-12-03T09:47:11Z")
        );
        assert_eq!(ulid_time_ms("not-a-ulid"), None);
        assert_eq!(ulid_time_ms("ZZZZZZZZZZZZZZZZZZZZZZZZZZ"), None);
    }
}
