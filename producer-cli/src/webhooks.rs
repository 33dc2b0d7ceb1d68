//! `envshare webhooks status|dead list|dead retry|verify`.

use std::io::Read as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use envshare::webhook::{self, VerifyError};
use serde_json::json;

use crate::ctx::Ctx;
use crate::fail::bad_input;

/// The longest error shown in a table cell.
const ERROR_WIDTH: usize = 60;

/// Prints rows under a header, each column as wide as its widest cell; the last column is left
/// unpadded.
fn table(header: &[&str], rows: &[Vec<String>], right: &[bool]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i == last {
                if right[i] {
                    out.push_str(&" ".repeat(pad));
                }
                out.push_str(cell);
            } else if right[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn cut(s: &str) -> String {
    let mut out: String = s.chars().take(ERROR_WIDTH).collect();
    if s.chars().count() > ERROR_WIDTH {
        out.push('…');
    }
    out
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `envshare webhooks status`.
pub async fn status(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let queue = ctx.queue().await?;
    let all = webhook::status(&queue)
        .await
        .context("reading the webhook schedule failed")?;
    if json {
        println!("{}", serde_json::to_string(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        println!(
            "no webhook endpoints registered on queue {} (a worker registers them when \
             ENVSHARE_WEBHOOK_URLS is set)",
            ctx.queue
        );
        return Ok(());
    }
    let now = queue.now_ms();
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|e| {
            vec![
                e.endpoint.clone(),
                e.url.clone(),
                e.backlog.to_string(),
                e.in_flight.to_string(),
                e.dead.to_string(),
                e.oldest_undelivered_ms.map_or("-".to_owned(), age),
                e.last_error.as_ref().map_or("-".to_owned(), |l| {
                    format!(
                        "{} ago: {}",
                        age(now.saturating_sub(l.at_ms)),
                        cut(&l.error)
                    )
                }),
            ]
        })
        .collect();
    table(
        &[
            "endpoint",
            "url",
            "backlog",
            "in_flight",
            "dead",
            "oldest",
            "last_error",
        ],
        &rows,
        &[false, false, true, true, true, true, false],
    );
    Ok(())
}

/// `envshare webhooks dead list`.
pub async fn dead_list(
    ctx: &Ctx,
    endpoint: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let queue = ctx.queue().await?;
    check_endpoint(&queue, endpoint).await?;
    let dead = webhook::dead_list(&queue, endpoint, limit.max(1))
        .await
        .context("listing dead webhook deliveries failed")?;
    if json {
        println!("{}", serde_json::to_string(&dead)?);
        return Ok(());
    }
    if dead.is_empty() {
        println!("no dead webhook deliveries");
        return Ok(());
    }
    let now = queue.now_ms();
    let rows: Vec<Vec<String>> = dead
        .iter()
        .map(|d| {
            vec![
                d.endpoint.clone(),
                d.event_id.clone(),
                d.kind.clone(),
                d.attempts.to_string(),
                age(now.saturating_sub(d.died_ms)),
                d.error.as_deref().map_or("-".to_owned(), cut),
            ]
        })
        .collect();
    table(
        &["endpoint", "event_id", "type", "attempts", "died", "error"],
        &rows,
        &[false, false, false, true, true, false],
    );
    Ok(())
}

async fn check_endpoint(
    queue: &envshare::store::Queue,
    endpoint: Option<&str>,
) -> anyhow::Result<()> {
    let Some(ep) = endpoint else {
        return Ok(());
    };
    let known = queue
        .webhook_endpoints()
        .await
        .context("reading the webhook endpoints failed")?;
    if !known.iter().any(|(id, _)| id == ep) {
        let ids: Vec<&str> = known.iter().map(|(id, _)| id.as_str()).collect();
        bad_input!(
            "no webhook endpoint {ep:?}; known endpoint ids: {} (see `envshare webhooks status`)",
            if ids.is_empty() {
                "none".to_owned()
            } else {
                ids.join(", ")
            }
        );
    }
    Ok(())
}

/// `envshare webhooks dead retry`.
pub async fn dead_retry(
    ctx: &Ctx,
    ids: &[String],
    all: bool,
    endpoint: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let queue = ctx.queue().await?;
    check_endpoint(&queue, endpoint).await?;
    let ids: &[String] = if all { &[] } else { ids };
    let n = webhook::dead_retry(&queue, endpoint, ids)
        .await
        .context("re-sending dead webhook deliveries failed")?;
    if json {
        println!("{}", json!({ "revived": n }));
    } else {
        println!(
            "{n} dead webhook deliver{} scheduled again",
            if n == 1 { "y" } else { "ies" }
        );
    }
    match ids {
        [] => {}
        [one] if n == 0 => {
            bad_input!("event id {one:?} is not a dead delivery: see `envshare webhooks dead list`")
        }
        many if n == 0 => bad_input!(
            "none of the {} event ids is a dead delivery: see `envshare webhooks dead list`",
            many.len()
        ),
        _ => {}
    }
    Ok(())
}

/// `envshare webhooks verify`: exit 0 when a `v1` matches, 1 when none does, 2 for a malformed
/// header or an unreadable body.
pub fn verify(
    secret: &str,
    header: &str,
    tolerance: Option<u64>,
    json: bool,
    body: &Path,
) -> anyhow::Result<()> {
    let bytes = if body == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the body from standard input failed")?;
        buf
    } else {
        match std::fs::read(body) {
            Ok(b) => b,
            Err(e) => bad_input!("cannot read the body file {}: {e}", body.display()),
        }
    };
    if secret.is_empty() {
        bad_input!("--secret is empty: pass the shared secret (or set ENVSHARE_WEBHOOK_SECRET)");
    }
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = header
        .trim()
        .strip_prefix("Envshare-Signature:")
        .unwrap_or(header)
        .trim();
    match webhook::verify(header, &bytes, secret.as_bytes(), tolerance, now_s) {
        Ok(h) => {
            if json {
                println!(
                    "{}",
                    json!({"valid": true, "t": h.t, "age_seconds": now_s.saturating_sub(h.t)})
                );
            } else {
                println!(
                    "valid: signed at t={} ({} ago), {} bytes",
                    h.t,
                    age(now_s.saturating_sub(h.t) * 1000),
                    bytes.len()
                );
            }
            Ok(())
        }
        Err(VerifyError::Malformed(why)) => {
            bad_input!("{}", VerifyError::Malformed(why))
        }
        Err(e) => {
            if json {
                println!("{}", json!({"valid": false, "error": e.to_string()}));
            }
            Err(anyhow::Error::new(e).context("the signature does not verify"))
        }
    }
}
