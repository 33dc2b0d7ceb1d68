//! The console's pages and forms.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Form, Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use tracing::warn;

use super::auth::{Session, set_cookie};
use super::view::{Nav, code, csrf_input, dash, enc, num, page, progress, span, time};
use crate::export::{ExportFormat, ResultsWriter};
use crate::ids::{AppId, BatchId, JobId};
use crate::schedule::PAUSE_UNTIL_RESUMED_MS;
use crate::serve::ServeParts;
use crate::store::{
    BatchProgress, DeadSelection, JobState, MAX_RESULTS_PAGE, Queue, ResultRow, RowState,
    StoreError,
};

/// Batches per page of `/batches`.
const BATCHES_PAGE: usize = 50;
/// Rows per page of a batch's results.
const ROWS_PAGE: usize = 100;
/// Dead jobs per page of `/dead`.
const DEAD_PAGE: usize = 50;
/// The longest pause reason accepted (as `envshare pause --reason`).
const MAX_REASON_LEN: usize = crate::schedule::MAX_PAUSE_REASON_LEN;
/// The reason stored when the form leaves it empty.
const DEFAULT_REASON: &str = "paused from the console";
/// How long a wrong API token waits for its answer.
const WRONG_TOKEN_DELAY: std::time::Duration = std::time::Duration::from_millis(500);
/// A verify ticket lives 12 hours.
const TICKET_LIFE_MS: u64 = 12 * 3600 * 1000;

/// Why a page could not be shown; each renders as a page with its status.
#[derive(Debug)]
pub(super) enum PageError {
    /// 404: the id names nothing on record.
    NotFound(String),
    /// 400: the input cannot be used; says how to fix it.
    BadInput(String),
    /// 403: a state-changing form without this session's CSRF token.
    Forbidden,
    /// 503: Redis failed.
    Store(StoreError),
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError::Store(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, text) = match self {
            PageError::NotFound(t) => (StatusCode::NOT_FOUND, "Not found", t),
            PageError::BadInput(t) => (StatusCode::BAD_REQUEST, "Bad input", t),
            PageError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "The form did not carry this session's CSRF token, so nothing was changed. \
                 Reload the page and submit the form again."
                    .to_owned(),
            ),
            PageError::Store(e) => {
                warn!(error = %e, op = e.op(), "a console page could not read Redis");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Redis unavailable",
                    format!(
                        "The queue could not be read ({}); try again in a moment. The server's \
                         log has the cause.",
                        e.op()
                    ),
                )
            }
        };
        let body = page(
            title,
            Nav::None,
            None,
            None,
            html! { p.error { (text) } p { a href="/" { "Back to the overview" } } },
        );
        (status, body).into_response()
    }
}

type PageResult = Result<Response, PageError>;

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------------------
// Sign-in

/// `GET /login`: the sign-in form, or (no API token configured) a session at once.
pub(super) async fn login_form(State(parts): State<ServeParts>, headers: HeaderMap) -> Response {
    let auth = &parts.console.auth;
    if auth.is_open() {
        let cookie = auth.issue(parts.queue.now_ms() / 1000);
        return (
            [(SET_COOKIE, set_cookie(&headers, Some(&cookie)))],
            see_other("/"),
        )
            .into_response();
    }
    login_page(StatusCode::OK, None)
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let body = page(
        "Sign in",
        Nav::None,
        None,
        None,
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.login method="post" action="/login" {
                label for="token" { "API token (ENVSHARE_API_TOKEN)" }
                input #token type="password" name="token" autocomplete="current-password"
                    required autofocus;
                button type="submit" { "Sign in" }
            }
            p.hint { "The session lasts 12 hours; the token is not stored in the browser." }
        },
    );
    (status, body).into_response()
}

/// `POST /login`: the API token, compared in constant time.
pub(super) async fn login(
    State(parts): State<ServeParts>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let auth = &parts.console.auth;
    let given = field(&form, "token").unwrap_or_default();
    if !auth.token_matches(given) {
        // Slows guessing down; a long random token is what keeps it out of reach.
        tokio::time::sleep(WRONG_TOKEN_DELAY).await;
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not the API token. Try again."),
        );
    }
    let cookie = auth.issue(parts.queue.now_ms() / 1000);
    (
        [(SET_COOKIE, set_cookie(&headers, Some(&cookie)))],
        see_other("/"),
    )
        .into_response()
}

/// `POST /logout`.
pub(super) async fn logout(
    session: Session,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    if !session.csrf_ok(&form) {
        return Err(PageError::Forbidden);
    }
    Ok((
        [(SET_COOKIE, set_cookie(&headers, None))],
        see_other("/login"),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Overview, pause, resume

/// `GET /`: jobs per state, rate, workers, pause, token expiry and ticket age.
pub(super) async fn overview(session: Session, State(parts): State<ServeParts>) -> PageResult {
    let q = &parts.queue;
    let tokens = q.token_store();
    let (stats, meta, last_minute) =
        tokio::try_join!(q.stats(), tokens.meta(), q.events_per_minute(200))?;
    let now = q.now_ms();
    let c = &parts.console;
    let counter = |k: &str| stats.counters.get(k).copied().unwrap_or(0);
    let body = html! {
        section.cards {
            div.card { h2 { "Ready" } p.big #ready { (num(stats.ready)) } }
            div.card { h2 { "Running" } p.big #running { (num(stats.running)) } }
            div.card { h2 { "Scheduled" } p.big #scheduled { (num(stats.scheduled)) } }
            div.card { h2 { "Dead" } p.big #dead { a href="/dead" { (num(stats.dead)) } } }
        }
        section {
            h2 { "Throughput" }
            table.kv {
                tr { th { "Events per minute" } td #rate {
                    @if last_minute.estimated { "≈ " } (num(last_minute.per_minute))
                    @if last_minute.estimated { " (from the newest 200)" } @else { " (last minute)" }
                } }
                tr { th { "Rate limit" } td { @match c.rate_limit {
                    Some(r) => { (r) " calls/s (all workers)" }
                    None => "none (ENVSHARE_RATE_LIMIT)",
                } } }
                tr { th { "Live workers" } td #workers { (stats.live_workers) } }
                tr { th { "Oldest ready job" } td { @match stats.oldest_ready_age_ms {
                    Some(ms) => { (span(ms)) " old" }
                    None => "none",
                } } }
                tr { th { "Jobs stored" } td { (num(stats.jobs)) } }
                tr { th { "Enqueued / completed / retried" } td {
                    (counter("enqueued")) " / " (counter("completed")) " / " (counter("retries"))
                } }
                tr { th { "Events in stream" } td { (num(stats.events)) } }
            }
        }
        section #pause {
            h2 { "Pause" }
            @match &stats.paused {
                Some(p) => {
                    p.paused #pause-state {
                        "Paused "
                        @if p.until_ms >= PAUSE_UNTIL_RESUMED_MS { "until resumed" }
                        @else { "until " (time(p.until_ms)) " (" (span(p.until_ms.saturating_sub(now))) " more)" }
                        ": " span #pause-reason { (p.reason) }
                    }
                    form method="post" action="/resume" {
                        (csrf_input(&session.csrf))
                        button #resume type="submit" { "Resume" }
                    }
                }
                None => {
                    p #pause-state { "Running: workers take jobs." }
                    form.inline method="post" action="/pause" {
                        (csrf_input(&session.csrf))
                        label { "Reason " input #pause-reason-input type="text" name="reason"
                            maxlength=(MAX_REASON_LEN) placeholder=(DEFAULT_REASON); }
                        label { " for " input type="text" name="for" size="6"
                            placeholder="30m"; }
                        " "
                        button #pause-button type="submit" { "Pause" }
                    }
                    p.hint { "Leave “for” empty to pause until resumed. Running jobs finish." }
                }
            }
        }
        section {
            h2 { "Token and ticket" }
            table.kv {
                tr { th { "Token source" } td { (c.token_source) } }
                tr { th { "Access token" } td #token { @match (meta.token_cached, meta.token_ttl_ms) {
                    (true, Some(ms)) => { "cached, expires in " (span(ms)) }
                    (true, None) => "cached, no expiry known",
                    (false, _) if c.token_source == "component" => "none cached",
                    (false, _) if c.token_source == "fixed" => "fixed (ENVSHARE_ACCESS_TOKEN of the workers)",
                    (false, _) => { "not cached here (source " (c.token_source) ")" }
                } } }
                tr { th { "Verify ticket" } td #ticket { @match (meta.ticket_stored, meta.ticket_set_at_ms) {
                    (true, Some(at)) => {
                        @let age = now.saturating_sub(at);
                        "stored " (span(age)) " ago"
                        @if age > TICKET_LIFE_MS { strong.warn { " — older than its 12 h life" } }
                    }
                    (true, None) => "stored (time unknown)",
                    (false, _) => "none stored",
                } } }
            }
        }
    };
    Ok(page("Overview", Nav::Overview, Some(&session.csrf), None, body).into_response())
}

/// `POST /pause`: `reason`, optional `for` (`30m`, `2h`, …; empty: until resumed).
pub(super) async fn pause(
    session: Session,
    State(parts): State<ServeParts>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    if !session.csrf_ok(&form) {
        return Err(PageError::Forbidden);
    }
    let reason = field(&form, "reason").unwrap_or_default().trim();
    let reason = if reason.is_empty() {
        DEFAULT_REASON
    } else {
        reason
    };
    if !crate::schedule::pause_reason_ok(reason) {
        return Err(PageError::BadInput(format!(
            "The reason must be one line of at most {MAX_REASON_LEN} characters."
        )));
    }
    let now = parts.queue.now_ms();
    let until = match field(&form, "for").map(str::trim).filter(|s| !s.is_empty()) {
        None => PAUSE_UNTIL_RESUMED_MS,
        Some(s) => match crate::schedule::parse_duration(s) {
            Ok(d) if !d.is_zero() => crate::schedule::pause_end(now, Some(d)),
            Ok(_) => {
                return Err(PageError::BadInput(
                    "“for” is zero: give how long to pause (30m, 2h, 1d), or leave it empty to \
                     pause until resumed."
                        .to_owned(),
                ));
            }
            Err(why) => {
                return Err(PageError::BadInput(format!(
                    "“for” {s:?} is not a duration: {why} (e.g. 30m, 2h, 1d)."
                )));
            }
        },
    };
    parts.queue.pause_until(until, reason).await?;
    Ok(see_other("/#pause"))
}

/// `POST /resume`: ends the pause in force, whoever set it.
pub(super) async fn resume(
    session: Session,
    State(parts): State<ServeParts>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    if !session.csrf_ok(&form) {
        return Err(PageError::Forbidden);
    }
    parts.queue.resume().await?;
    Ok(see_other("/#pause"))
}

// ---------------------------------------------------------------------------------------------
// Batches

/// A batch as the lists show it.
struct BatchView {
    id: BatchId,
    progress: BatchProgress,
    phase: &'static str,
    bound: u64,
    unconfirmed: u64,
    counts: BTreeMap<RowState, u64>,
}

async fn batch_view(q: &Queue, id: BatchId) -> Result<Option<BatchView>, StoreError> {
    let (p, c, counts) = tokio::try_join!(
        q.batch(&id),
        q.batch_confirmation(&id),
        q.results_counts(&id)
    )?;
    let Some(p) = p else { return Ok(None) };
    let cancelled = counts.get(&RowState::Cancelled).is_some_and(|n| *n > 0);
    Ok(Some(BatchView {
        phase: p.phase(c.confirmed, cancelled),
        bound: c.bound,
        unconfirmed: c.unconfirmed,
        counts,
        progress: p,
        id,
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct OffsetQuery {
    offset: Option<usize>,
    done: Option<String>,
    n: Option<usize>,
}

fn pager(path: &str, offset: usize, page: usize, shown: usize) -> Markup {
    html! {
        nav.pager {
            @if offset > 0 {
                a rel="prev" href={(path) "?offset=" (offset.saturating_sub(page))} { "← newer" }
            }
            @if shown == page {
                a rel="next" href={(path) "?offset=" (offset + page)} { "older →" }
            }
        }
    }
}

/// `GET /batches?offset=N`: the batches on record, newest first, 50 a page.
pub(super) async fn batches(
    session: Session,
    State(parts): State<ServeParts>,
    Query(query): Query<OffsetQuery>,
) -> PageResult {
    let q = &parts.queue;
    let offset = query.offset.unwrap_or(0);
    let ids = q.list_batches(offset, BATCHES_PAGE).await?;
    let shown = ids.len();
    let views = futures::future::try_join_all(ids.into_iter().map(|id| batch_view(q, id))).await?;
    let body = html! {
        @if views.is_empty() {
            p { "No batch on record" @if offset > 0 { " at this offset" } ". "
                "Import one with " (code("envshare import FILE")) "." }
        } @else {
            table.batches {
                thead { tr {
                    th { "Batch" } th { "Created" } th.num { "Appids" } th { "Progress" }
                    th.num { "Accepted" } th.num { "Failed" } th.num { "Pending" }
                    th.num { "Bound" } th.num { "Unconfirmed" } th { "Phase" }
                } }
                tbody {
                    @for v in views.iter().flatten() {
                        @let p = &v.progress;
                        tr data-batch=(v.id) {
                            td { a href={"/batches/" (v.id)} { (v.id) } }
                            td { (time(p.created_at_ms)) }
                            td.num { (num(p.appids)) }
                            td { (progress(p.accepted + p.failed, p.appids)) }
                            td.num { (num(p.accepted)) }
                            td.num { (num(p.failed)) }
                            td.num { (num(p.pending())) }
                            td.num { (num(v.bound)) }
                            td.num { (num(v.unconfirmed)) }
                            td { span class={"phase " (v.phase)} { (v.phase) } }
                        }
                    }
                }
            }
        }
        (pager("/batches", offset, BATCHES_PAGE, shown))
    };
    Ok(page("Batches", Nav::Batches, Some(&session.csrf), None, body).into_response())
}

fn parse_batch(id: &str) -> Result<BatchId, PageError> {
    BatchId::parse(id).map_err(|_| unknown_batch(id))
}

fn unknown_batch(id: &str) -> PageError {
    PageError::NotFound(format!(
        "There is no batch {id:?} on record. A finished batch is kept for ENVSHARE_RESULTS_TTL; \
         the batches page lists those on record."
    ))
}

fn parse_state(s: Option<&str>) -> Result<Option<RowState>, PageError> {
    match s.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|e: crate::store::UnknownState| PageError::BadInput(e.to_string())),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RowsQuery {
    state: Option<String>,
    cursor: Option<u64>,
}

/// `GET /batches/{id}?state=S&cursor=N`: progress, counts per state and 100 rows.
pub(super) async fn batch(
    session: Session,
    State(parts): State<ServeParts>,
    Path(id): Path<String>,
    Query(query): Query<RowsQuery>,
) -> PageResult {
    let q = &parts.queue;
    let bid = parse_batch(&id)?;
    let state = parse_state(query.state.as_deref())?;
    let cursor = query.cursor.unwrap_or(0);
    let (view, rows) = tokio::try_join!(
        batch_view(q, bid.clone()),
        q.results_page(&bid, state, cursor, ROWS_PAGE)
    )?;
    let Some(v) = view else {
        return Err(unknown_batch(&id));
    };
    let p = &v.progress;
    let state_q = state.map(|s| format!("state={}", s.as_str()));
    let csv_href = match &state_q {
        Some(s) => format!("/batches/{}/results.csv?{s}", v.id),
        None => format!("/batches/{}/results.csv", v.id),
    };
    let done = p.accepted + p.failed;
    let body = html! {
        section.summary {
            p #batch-progress {
                (progress(done, p.appids)) " "
                span #batch-done { (num(done)) } " of " span #batch-total { (num(p.appids)) }
                " appids answered · " span #batch-phase class={"phase " (v.phase)} { (v.phase) }
            }
            table.kv {
                tr { th { "Created" } td { (time(p.created_at_ms)) } }
                tr { th { "Jobs" } td { (num(p.done_jobs)) " of " (num(p.jobs)) " ended" } }
                tr { th { "Accepted / failed / pending" } td {
                    (num(p.accepted)) " / " (num(p.failed)) " / " (num(p.pending())) } }
                tr { th { "Bound / unconfirmed" } td { (num(v.bound)) " / " (num(v.unconfirmed)) } }
            }
        }
        nav.filters aria-label="filter by state" {
            a href={"/batches/" (v.id)} aria-current=[state.is_none().then_some("page")] {
                "all (" (num(p.appids)) ")" }
            @for (st, n) in &v.counts {
                @if *n > 0 || Some(*st) == state {
                    a data-state=(st.as_str())
                        href={"/batches/" (v.id) "?state=" (st.as_str())}
                        aria-current=[(Some(*st) == state).then_some("page")] {
                        (st.as_str()) " (" (num(*n)) ")" }
                }
            }
            a.download #csv href=(csv_href) download { "Download CSV" }
        }
        (rows_table(&rows.rows))
        @if rows.rows.is_empty() { p { "No row" @if state.is_some() { " in this state" } "." } }
        nav.pager {
            @if cursor > 0 {
                a href={"/batches/" (v.id) @if let Some(s) = &state_q { "?" (s) }} { "← first page" }
            }
            @if let Some(next) = rows.next {
                a rel="next" #next-page href={"/batches/" (v.id) "?cursor=" (next)
                    @if let Some(s) = &state_q { "&" (s) }} { "next page →" }
            }
        }
    };
    let refresh = (!p.completed).then_some(2);
    let title = format!("Batch {}", v.id);
    Ok(page(&title, Nav::Batches, Some(&session.csrf), refresh, body).into_response())
}

/// A batch's rows as the batch page shows them.
fn rows_table(rows: &[ResultRow]) -> Markup {
    html! {
        table.results {
            thead { tr {
                th.num { "#" } th { "Env" } th { "Appid" } th { "State" } th { "Confirm URL" }
                th { "Error" } th.num { "Attempts" } th { "Updated" } th { "Job" }
            } }
            tbody {
                @for r in rows { (row(r)) }
            }
        }
    }
}

fn row(r: &ResultRow) -> Markup {
    html! {
        tr data-appid=(r.appid) data-state=(r.state.as_str()) {
            td.num { (r.seq) }
            td { (r.env) }
            td { a href={"/lookup?q=" (r.appid)} { (r.appid) } }
            td { span class={"state " (r.state.as_str())} { (r.state.as_str()) } }
            td.url { @match &r.confirm_url {
                Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
                    a href=(u) rel="noopener noreferrer" target="_blank" { (u) } }
                Some(u) => (u),
                None => (dash()),
            } }
            td { @if r.errcode.is_some() || r.errmsg.is_some() || r.reason.is_some() {
                @if let Some(reason) = &r.reason { (reason) }
                @if let Some(c) = r.errcode { " " (c) }
                @if let Some(m) = &r.errmsg { ": " (m) }
            } @else { (dash()) } }
            td.num { (r.attempts) }
            td { (time(r.updated_at_ms)) }
            td { a href={"/jobs/" (r.job_id)} { (r.job_id) } }
        }
    }
}

/// A `Write` whose bytes are taken out a page at a time and sent down the response.
#[derive(Clone, Default)]
struct Chunks(Arc<Mutex<Vec<u8>>>);

impl Chunks {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("not poisoned"))
    }
}

impl Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `GET /batches/{id}/results.csv?state=S`: every row (in `state`), streamed a page of 1,000 at
/// a time in `envshare batch results`'s CSV format.
pub(super) async fn batch_csv(
    _session: Session,
    State(parts): State<ServeParts>,
    Path(id): Path<String>,
    Query(query): Query<RowsQuery>,
) -> PageResult {
    let bid = parse_batch(&id)?;
    let state = parse_state(query.state.as_deref())?;
    if parts.queue.batch(&bid).await?.is_none() {
        return Err(unknown_batch(&id));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let queue = parts.queue.clone();
    let name = match state {
        Some(s) => format!("batch-{bid}-{}.csv", s.as_str()),
        None => format!("batch-{bid}.csv"),
    };
    tokio::spawn(async move {
        let chunks = Chunks::default();
        let mut sink = match ResultsWriter::new(ExportFormat::Csv, chunks.clone(), false) {
            Ok(s) => s,
            Err(e) => return drop(tx.send(Err(e)).await),
        };
        let mut cursor = 0;
        loop {
            let page = match queue
                .results_page(&bid, state, cursor, MAX_RESULTS_PAGE)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "the CSV download stopped: Redis failed");
                    return drop(tx.send(Err(std::io::Error::other(e.op()))).await);
                }
            };
            for r in &page.rows {
                if let Err(e) = sink.row(r) {
                    return drop(tx.send(Err(e)).await);
                }
            }
            let bytes = chunks.take();
            if !bytes.is_empty() && tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                return; // the client went away
            }
            match page.next {
                Some(next) if next > cursor => cursor = next,
                _ => break,
            }
        }
        let last = sink.finish().map(|c| Bytes::from(c.take()));
        let _ = tx.send(last).await;
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Dead jobs

/// `GET /dead?offset=N`: dead jobs, 50 a page, with retry and purge.
pub(super) async fn dead(
    session: Session,
    State(parts): State<ServeParts>,
    Query(query): Query<OffsetQuery>,
) -> PageResult {
    let q = &parts.queue;
    let offset = query.offset.unwrap_or(0);
    let (list, stats) = tokio::try_join!(q.dead_list(offset, DEAD_PAGE), q.stats())?;
    let now = q.now_ms();
    let notice = match (query.done.as_deref(), query.n) {
        (Some("retry"), Some(n)) => Some(format!("{n} dead job(s) put back in ready.")),
        (Some("purge"), Some(n)) => Some(format!("{n} dead job(s) purged.")),
        _ => None,
    };
    let body = html! {
        @if let Some(n) = notice { p.notice role="status" #notice { (n) } }
        p { (num(stats.dead)) " dead job(s). A dead job ran out of tries or met a permanent \
            error; retry puts it back in ready with its tries reset." }
        @if list.is_empty() {
            p #no-dead { "No dead jobs" @if offset > 0 { " at this offset" } "." }
        } @else {
            form #dead-form method="post" action="/dead/retry" {
                (csrf_input(&session.csrf))
                table.dead {
                    thead { tr {
                        th { "" } th { "Job" } th { "Died" } th { "Reason" } th.num { "Errcode" }
                        th { "Error" } th.num { "Attempts" } th { "Env" } th.num { "Appids" }
                        th { "Batch" }
                    } }
                    tbody {
                        @for d in &list {
                            tr data-job=(d.id) {
                                td { input type="checkbox" name="ids" value=(d.id)
                                    aria-label={"select " (d.id)}; }
                                td { a href={"/jobs/" (d.id)} { (d.id) } }
                                td { (span(now.saturating_sub(d.died_at_ms))) " ago" }
                                td { (d.reason.map_or("-", |r| r.as_str())) }
                                td.num { (d.errcode.map_or("-".to_owned(), |c| c.to_string())) }
                                td { (d.errmsg) }
                                td.num { (d.attempts) }
                                td { @if let Some(j) = &d.job { (j.env) } @else { (dash()) } }
                                td.num { (d.job.as_ref().map_or(0, |j| j.appids.len())) }
                                td { @if let Some(j) = &d.job {
                                    a href={"/batches/" (j.batch)} { (j.batch) } } }
                            }
                        }
                    }
                }
                p.actions {
                    button #retry-selected type="submit" { "Retry selected" }
                    " "
                    button #purge-selected type="submit" formaction="/dead/purge"
                        data-confirm="Purge the selected dead jobs for good?" { "Purge selected" }
                }
            }
            form.inline method="post" action="/dead/retry" {
                (csrf_input(&session.csrf))
                input type="hidden" name="all" value="1";
                button #retry-all type="submit" { "Retry all" }
            }
            " "
            form.inline method="post" action="/dead/purge" {
                (csrf_input(&session.csrf))
                input type="hidden" name="all" value="1";
                label { input type="checkbox" name="confirm" value="1" required; " I mean it" }
                " "
                button #purge-all type="submit" data-confirm="Purge every dead job for good?" {
                    "Purge all" }
            }
        }
        (pager("/dead", offset, DEAD_PAGE, list.len()))
    };
    Ok(page("Dead jobs", Nav::Dead, Some(&session.csrf), None, body).into_response())
}

fn dead_selection(form: &[(String, String)], purge: bool) -> Result<DeadSelection, PageError> {
    if field(form, "all") == Some("1") {
        if purge && field(form, "confirm") != Some("1") {
            return Err(PageError::BadInput(
                "Purging every dead job needs the “I mean it” box ticked.".to_owned(),
            ));
        }
        return Ok(DeadSelection::All);
    }
    let ids = form
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| {
            JobId::parse(v).map_err(|e| PageError::BadInput(format!("job id {v:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(PageError::BadInput(
            "No dead job selected: tick the jobs first.".to_owned(),
        ));
    }
    Ok(DeadSelection::Ids(ids))
}

/// `POST /dead/retry`: `ids` (repeated) or `all=1`.
pub(super) async fn dead_retry(
    session: Session,
    State(parts): State<ServeParts>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    if !session.csrf_ok(&form) {
        return Err(PageError::Forbidden);
    }
    let n = parts
        .queue
        .dead_retry(dead_selection(&form, false)?)
        .await?;
    Ok(see_other(&format!("/dead?done=retry&n={n}")))
}

/// `POST /dead/purge`: `ids` (repeated) or `all=1&confirm=1`.
pub(super) async fn dead_purge(
    session: Session,
    State(parts): State<ServeParts>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    if !session.csrf_ok(&form) {
        return Err(PageError::Forbidden);
    }
    let n = parts.queue.dead_purge(dead_selection(&form, true)?).await?;
    Ok(see_other(&format!("/dead?done=purge&n={n}")))
}

// ---------------------------------------------------------------------------------------------
// Lookup

#[derive(Debug, Deserialize)]
pub(super) struct LookupQuery {
    q: Option<String>,
}

/// `GET /lookup?q=`: an appid (its shares on record) or a job id (its page).
pub(super) async fn lookup(
    session: Session,
    State(parts): State<ServeParts>,
    Query(query): Query<LookupQuery>,
) -> PageResult {
    let text = query.q.as_deref().unwrap_or_default().trim();
    if text.is_empty() {
        let body =
            html! { p { "Type a job id or an appid (wx + 16 hex digits) in the search box." } };
        return Ok(page("Lookup", Nav::Lookup, Some(&session.csrf), None, body).into_response());
    }
    if let Ok(appid) = AppId::parse(text) {
        let rows = parts.queue.find_appid(&appid).await?;
        let body = html! {
            @if rows.is_empty() {
                p #no-share { "No share of " (appid) " on record. Batches are kept for \
                    ENVSHARE_RESULTS_TTL after they finish; a pair still waiting for WeChat's \
                    answer shows once it has one." }
            } @else {
                table.results {
                    thead { tr {
                        th { "Batch" } th { "Env" } th { "State" } th { "Confirm URL" }
                        th { "Error" } th.num { "Attempts" } th { "Updated" } th { "Job" }
                    } }
                    tbody { @for r in &rows {
                        tr data-state=(r.state.as_str()) {
                            td { a href={"/batches/" (r.batch_id)} { (r.batch_id) } }
                            td { (r.env) }
                            td { span class={"state " (r.state.as_str())} { (r.state.as_str()) } }
                            td.url { @if let Some(u) = &r.confirm_url { (u) } @else { (dash()) } }
                            td { @if let Some(m) = &r.errmsg {
                                (r.reason.as_deref().unwrap_or("error"))
                                @if let Some(c) = r.errcode { " " (c) } ": " (m)
                            } @else { (dash()) } }
                            td.num { (r.attempts) }
                            td { (time(r.updated_at_ms)) }
                            td { a href={"/jobs/" (r.job_id)} { (r.job_id) } }
                        }
                    } }
                }
            }
        };
        let title = format!("Appid {appid}");
        return Ok(page(&title, Nav::Lookup, Some(&session.csrf), None, body).into_response());
    }
    match JobId::parse(text) {
        Ok(id) => Ok(see_other(&format!("/jobs/{}", enc(id.as_str())))),
        Err(_) => Err(PageError::BadInput(format!(
            "{text:?} is neither an appid (wx + 16 lowercase hex digits) nor a job id."
        ))),
    }
}

/// `GET /jobs/{id}`: one job as the queue holds it.
pub(super) async fn job(
    session: Session,
    State(parts): State<ServeParts>,
    Path(id): Path<String>,
) -> PageResult {
    let not_found = || {
        PageError::NotFound(format!(
            "The queue holds no job {id:?}, and no batch on record names it: it was purged, \
             its batch's results expired (ENVSHARE_RESULTS_TTL), or it never existed."
        ))
    };
    let jid = JobId::parse(&id).map_err(|_| not_found())?;
    let Some(info) = parts.queue.job(&jid).await? else {
        let Some(done) = parts.queue.finished_job(&jid).await? else {
            return Err(not_found());
        };
        let body = html! {
            table.kv {
                tr { th { "State" } td #job-state { "finished (no longer in the queue)" } }
                tr { th { "Batch" } td {
                    a href={"/batches/" (done.batch_id)} { (done.batch_id) }
                    " (its job number " (done.index) ", counting from 0)"
                } }
                @if let Some(ms) = jid.created_ms() {
                    tr { th { "Created" } td { (time(ms)) } }
                }
            }
            h2 { "Its appids" }
            (rows_table(&done.rows))
        };
        let title = format!("Job {jid}");
        return Ok(page(&title, Nav::Lookup, Some(&session.csrf), None, body).into_response());
    };
    let now = parts.queue.now_ms();
    let j = &info.job;
    let state = match &info.state {
        Some(JobState::Ready { since_ms }) => {
            format!(
                "ready (waiting for {})",
                span(now.saturating_sub(*since_ms))
            )
        }
        Some(JobState::Scheduled { run_at_ms }) => {
            format!("scheduled (runs at {})", time(*run_at_ms))
        }
        Some(JobState::Running {
            deadline_ms,
            worker,
            ..
        }) => format!(
            "running on worker {worker} (lease until {})",
            time(*deadline_ms)
        ),
        Some(JobState::Dead { died_at_ms }) => format!(
            "dead since {} ({} ago)",
            time(*died_at_ms),
            span(now.saturating_sub(*died_at_ms))
        ),
        None => "between states (reload)".to_owned(),
    };
    let body = html! {
        table.kv {
            tr { th { "Operation" } td { (j.op.as_str()) } }
            tr { th { "State" } td #job-state { (state) } }
            tr { th { "Batch" } td { a href={"/batches/" (j.batch)} { (j.batch) } } }
            tr { th { "Env" } td { (j.env) } }
            tr { th { "Created" } td { (time(info.created_at_ms)) } }
            tr { th { "Attempts" } td { (info.attempts) } }
            @if let Some(d) = &info.dead {
                tr { th { "Died" } td {
                    (d.reason.as_str()) " (errcode "
                    (d.errcode.map_or("-".to_owned(), |c| c.to_string())) ") after "
                    (d.attempts) " attempt(s): " (d.errmsg)
                } }
            }
            tr { th { "Appids" } td { @for a in &j.appids {
                a href={"/lookup?q=" (a)} { (a) } " "
            } } }
        }
        @if info.dead.is_some() {
            form method="post" action="/dead/retry" {
                (csrf_input(&session.csrf))
                input type="hidden" name="ids" value=(j.id);
                button type="submit" { "Retry this job" }
            }
        }
    };
    let title = format!("Job {}", j.id);
    Ok(page(&title, Nav::Lookup, Some(&session.csrf), None, body).into_response())
}
