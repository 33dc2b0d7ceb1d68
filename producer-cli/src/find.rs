//! `envshare find APPID`: every share of one Mini Program still on record (one result row per
//! batch and env it was in), newest batch first.

use anyhow::Context as _;
use envshare::AppId;
use envshare::store::ResultRow;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::table::{Align, Table, clip, time};

/// The longest errmsg shown in the table.
const ERRMSG_WIDTH: usize = 60;

/// A row as `find --json` prints it: the stored row plus its time in RFC 3339.
#[derive(Debug, Serialize)]
struct FoundRow<'a> {
    #[serde(flatten)]
    row: &'a ResultRow,
    /// `updated_at_ms` as RFC 3339 UTC.
    updated_at: String,
}

/// `envshare find APPID [--json]`.
pub async fn run(ctx: &Ctx, appid: &str, json: bool) -> anyhow::Result<()> {
    let appid = AppId::parse(appid).context("fix the appid")?;
    let queue = ctx.queue().await?;
    let rows = queue
        .find_appid(&appid)
        .await
        .context("looking the appid up failed")?;
    if json {
        let out: Vec<FoundRow<'_>> = rows
            .iter()
            .map(|row| FoundRow {
                row,
                updated_at: time(row.updated_at_ms),
            })
            .collect();
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no share of {appid} on record in queue {} (batches are kept for \
             ENVSHARE_RESULTS_TTL after they finish; a pair still waiting for WeChat's answer \
             shows once it has one)",
            ctx.queue
        );
        return Ok(());
    }
    let mut t = Table::new(&[
        ("batch", Align::Left),
        ("env", Align::Left),
        ("state", Align::Left),
        ("updated", Align::Left),
        ("attempts", Align::Right),
        ("job", Align::Left),
        ("confirm_url / error", Align::Left),
    ]);
    for r in &rows {
        t.row(vec![
            r.batch_id.to_string(),
            r.env.to_string(),
            r.state.to_string(),
            time(r.updated_at_ms),
            r.attempts.to_string(),
            r.job_id.to_string(),
            detail(r),
        ]);
    }
    t.print();
    Ok(())
}

/// The last column of a row in a table: its confirmation URL, else what failed, else why it
/// ended.
pub(crate) fn detail(r: &ResultRow) -> String {
    match (&r.confirm_url, &r.errmsg) {
        (Some(url), _) => url.clone(),
        (None, Some(msg)) => {
            let reason = r.reason.as_deref().unwrap_or("error");
            let code = r.errcode.map(|c| format!(" {c}")).unwrap_or_default();
            format!("{reason}{code}: {}", clip(msg, ERRMSG_WIDTH))
        }
        (None, None) => r.reason.clone().unwrap_or_default(),
    }
}
