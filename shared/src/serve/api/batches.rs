//! `POST /batches`, `GET /batches`, `GET /batches/{id}`, `GET /batches/{id}/results`.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::error::PairError;
use super::{ApiError, Authorized, bad_id, parse_json, query, read_body};
use crate::export::{ExportFormat, ExportRow, ResultsWriter};
use crate::ids::BatchId;
use crate::import::{self, NoProgress, Options, RunError, Source, Summary};
use crate::inspect::BatchView;
use crate::serve::ServeParts;
use crate::store::{IdempotencyClaim, MAX_RESULTS_PAGE as MAX_PAGE, Queue, RowState, StoredAnswer};

/// How long the first answer to an `Idempotency-Key` is kept.
pub(crate) const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a request holds its key while it is being answered (a server that dies meanwhile
/// frees it after this).
const IDEMPOTENCY_CLAIM: Duration = Duration::from_secs(5 * 60);
/// The largest chunk size accepted, as `envshare import --chunk-size`.
const MAX_CHUNK_SIZE: u64 = 10_000;

/// The body of `POST /batches`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBatch {
    /// The batch to enqueue into (1 to 64 of `A-Z a-z 0-9 _ - .`); a new `b-ULID` without it.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    batch: Option<String>,
    /// Appids per job, 1 to 10,000 (default: `ENVSHARE_CHUNK_SIZE`).
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 10000)]
    chunk_size: Option<serde_json::Number>,
    /// The pairs to share; each `{"env","appid"}`. Every invalid pair is listed in a 422 and
    /// nothing is enqueued.
    #[schema(value_type = Vec<PairIn>, min_items = 1)]
    pairs: Vec<serde_json::Value>,
}

/// One pair of `POST /batches`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The schema of `pairs`; each pair is read as JSON and checked by hand.
pub(crate) struct PairIn {
    /// The cloud environment: 1 to 64 of `A-Z a-z 0-9 _ -`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    env: String,
    /// The Mini Program: `wx` and 16 lowercase hex digits.
    #[schema(pattern = "^wx[0-9a-f]{16}$")]
    appid: String,
}

/// Checks every pair; all of them valid, or every error.
fn check_pairs(pairs: &[serde_json::Value]) -> Result<Vec<import::Pair>, Vec<PairError>> {
    let mut ok = Vec::with_capacity(pairs.len());
    let mut errors = Vec::new();
    for (index, v) in pairs.iter().enumerate() {
        let checked = match v.as_object() {
            None => Err(format!(
                "must be an object {{\"env\":\"…\",\"appid\":\"wx…\"}}, found {}",
                kind(v)
            )),
            Some(o) => match o.keys().find(|k| *k != "env" && *k != "appid") {
                Some(extra) => Err(format!(
                    "unknown field {extra:?}: a pair has only \"env\" and \"appid\""
                )),
                None => match (o.get("env"), o.get("appid")) {
                    (None, _) => Err("no \"env\" field".to_owned()),
                    (_, None) => Err("no \"appid\" field".to_owned()),
                    (Some(e), Some(a)) => match (e.as_str(), a.as_str()) {
                        (None, _) => Err(format!("env must be a string, found {}", kind(e))),
                        (_, None) => Err(format!("appid must be a string, found {}", kind(a))),
                        (Some(e), Some(a)) => import::parse_pair(e, a),
                    },
                },
            },
        };
        match checked {
            Ok(p) => ok.push(p),
            Err(reason) => errors.push(PairError { index, reason }),
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        Err(errors)
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// An answer: status and JSON body (what an `Idempotency-Key` replays).
struct Answer {
    status: StatusCode,
    body: String,
    batch: Option<String>,
}

impl Answer {
    fn error(e: &ApiError) -> Self {
        Self {
            status: e.status(),
            body: e.to_json(),
            batch: None,
        }
    }

    fn into_response(self, replayed: bool) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response();
        if let Some(b) = self
            .batch
            .and_then(|b| HeaderValue::from_str(&format!("/api/v1/batches/{b}")).ok())
        {
            r.headers_mut().insert(header::LOCATION, b);
        }
        if replayed {
            r.headers_mut()
                .insert("idempotency-replayed", HeaderValue::from_static("true"));
        }
        r
    }
}

/// Validates and enqueues; the answer to keep for an idempotency key, or a 503 not to keep.
async fn enqueue(parts: &ServeParts, body: &[u8]) -> Result<Answer, ApiError> {
    let req: CreateBatch = match parse_json(body) {
        Ok(r) => r,
        Err(e) => return Ok(Answer::error(&e)),
    };
    let batch = match req.batch.as_deref() {
        None => BatchId::generate(),
        Some(b) => match BatchId::parse(b) {
            Ok(b) => b,
            Err(e) => {
                return Ok(Answer::error(&ApiError::invalid(
                    "invalid_body",
                    "batch",
                    e.to_string(),
                )));
            }
        },
    };
    // A JSON integer may be written 10.0.
    let chunk = req.chunk_size.as_ref().map(|n| {
        n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= MAX_CHUNK_SIZE as f64)
                .map(|f| f as u64)
        })
    });
    let chunk_size = match chunk {
        None => parts.settings.chunk_size.max(1),
        Some(Some(n @ 1..=MAX_CHUNK_SIZE)) => n as usize,
        Some(n) => {
            let n = n.map_or_else(
                || {
                    req.chunk_size
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                },
                |n| n.to_string(),
            );
            return Ok(Answer::error(&ApiError::invalid(
                "invalid_body",
                "chunk_size",
                format!("chunk_size {n} is not between 1 and {MAX_CHUNK_SIZE}"),
            )));
        }
    };
    if req.pairs.is_empty() {
        return Ok(Answer::error(&ApiError::invalid(
            "invalid_body",
            "pairs",
            "pairs is empty: send at least one {\"env\",\"appid\"}",
        )));
    }
    let n = req.pairs.len();
    let pairs = match check_pairs(&req.pairs) {
        Ok(p) => p,
        Err(errors) => return Ok(Answer::error(&ApiError::invalid_pairs(errors, n))),
    };
    drop(req);
    let source = Source::pairs("the request", pairs);
    let options = Options::new(batch.clone(), chunk_size);
    let summary: Summary = match import::run(
        Some(&parts.queue),
        source,
        &options,
        None,
        Arc::new(NoProgress),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return Err(run_error(&batch, e)),
    };
    info!(
        batch = %batch,
        jobs = summary.jobs,
        appids = summary.appids,
        skipped_duplicates = summary.skipped_already_queued,
        "batch enqueued through the API"
    );
    Ok(Answer {
        status: StatusCode::CREATED,
        body: serde_json::to_string(&summary).unwrap_or_default(),
        batch: Some(batch.to_string()),
    })
}

/// An import that failed after validation (Redis): 503, and the client sends it again (pairs
/// already queued are skipped, so nothing is enqueued twice).
fn run_error(batch: &BatchId, e: RunError) -> ApiError {
    warn!(batch = %batch, error = %e, "enqueueing a batch through the API failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!(
            "enqueueing batch {batch} failed on Redis; send the same request again with \
             \"batch\":\"{batch}\" to finish it (pairs already queued are skipped)"
        ),
    )
}

/// A valid `Idempotency-Key`: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or_default();
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good key)",
        )
        .with_field("Idempotency-Key"));
    }
    Ok(Some(s.to_owned()))
}

/// `POST /api/v1/batches`.
#[utoipa::path(
    post,
    path = "/api/v1/batches",
    tag = "batches",
    request_body = CreateBatch,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
        description = "The same key and body within 24 h get the first answer again and enqueue nothing")),
    responses(
        (status = 201, description = "Enqueued: the import summary", body = Summary),
        (status = 400, description = "Bad Idempotency-Key", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with another body, or a request with it is being answered", body = super::error::ErrorBody),
        (status = 413, description = "Body over the cap", body = super::error::ErrorBody),
        (status = 415, description = "Body not JSON", body = super::error::ErrorBody),
        (status = 422, description = "Body not the schema, or invalid pairs (every one listed)", body = super::error::ErrorBody),
        (status = 503, description = "Redis failed; send it again", body = super::error::ErrorBody),
    )
)]
pub(crate) async fn create(
    _: Authorized,
    State(parts): State<ServeParts>,
    request: Request,
) -> Result<Response, ApiError> {
    let (head, body) = request.into_parts();
    let key = idempotency_key(&head.headers)?;
    let body = read_body(&head.headers, body).await?;
    let Some(key) = key else {
        return Ok(enqueue(&parts, &body).await?.into_response(false));
    };
    let fingerprint = hex::encode(Sha256::digest(&body));
    match parts
        .queue
        .idempotency_claim(&key, &fingerprint, IDEMPOTENCY_CLAIM)
        .await?
    {
        IdempotencyClaim::Claimed => {}
        IdempotencyClaim::Answered(a) if a.fingerprint == fingerprint => {
            let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
            let batch = (status == StatusCode::CREATED)
                .then(|| serde_json::from_str::<serde_json::Value>(&a.body).ok())
                .flatten()
                .and_then(|v| v.get("batch").and_then(|b| b.as_str()).map(str::to_owned));
            return Ok(Answer {
                status,
                body: a.body,
                batch,
            }
            .into_response(true));
        }
        IdempotencyClaim::Answered(_) => {
            return Err(reused());
        }
        IdempotencyClaim::InProgress { fingerprint: fp } if fp != fingerprint => {
            return Err(reused());
        }
        IdempotencyClaim::InProgress { .. } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is being answered now; send it again in a \
                 moment to get its answer",
            ));
        }
    }
    match enqueue(&parts, &body).await {
        Ok(answer) => {
            let stored = StoredAnswer {
                fingerprint,
                status: answer.status.as_u16(),
                body: answer.body.clone(),
            };
            if let Err(e) = parts
                .queue
                .idempotency_record(&key, &stored, IDEMPOTENCY_TTL)
                .await
            {
                warn!(error = %e, "keeping the answer of an Idempotency-Key failed");
            }
            Ok(answer.into_response(false))
        }
        Err(e) => {
            if let Err(e) = parts.queue.idempotency_release(&key).await {
                warn!(error = %e, "freeing an Idempotency-Key failed");
            }
            Err(e)
        }
    }
}

fn reused() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_key_reused",
        "this Idempotency-Key was used within 24 h with another body: use a new key for a new \
         request",
    )
    .with_field("Idempotency-Key")
}

/// Paging by offset.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Paging {
    /// Items to skip (default 0).
    #[param(minimum = 0, maximum = 1099511627776_u64)]
    offset: Option<usize>,
    /// Items per page, 1 to 1,000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

impl Paging {
    pub(crate) fn get(&self) -> Result<(usize, usize), ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::invalid(
                "invalid_parameter",
                "limit",
                format!("limit {limit} is not between 1 and 1000"),
            ));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > 1 << 40 {
            return Err(ApiError::invalid(
                "invalid_parameter",
                "offset",
                "offset is too large",
            ));
        }
        Ok((offset, limit))
    }
}

/// A page of batches.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BatchPage {
    /// The batches, newest first.
    batches: Vec<BatchView>,
    /// The `offset` of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_offset: Option<usize>,
}

/// `GET /api/v1/batches`.
#[utoipa::path(
    get,
    path = "/api/v1/batches",
    tag = "batches",
    params(Paging),
    responses(
        (status = 200, description = "Batches on record, newest first", body = BatchPage),
        (status = 401, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody),
    )
)]
pub(crate) async fn list(
    _: Authorized,
    State(parts): State<ServeParts>,
    q: Result<Query<Paging>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (offset, limit) = query(q)?.get()?;
    let batches = BatchView::list(&parts.queue, offset, limit).await?;
    let next_offset = (batches.len() == limit).then_some(offset + limit);
    Ok(axum::Json(BatchPage {
        batches,
        next_offset,
    })
    .into_response())
}

fn batch_id(id: &str) -> Result<BatchId, ApiError> {
    BatchId::parse(id).map_err(|e| bad_id("id", &e))
}

fn no_batch(id: &BatchId) -> ApiError {
    ApiError::not_found(format!(
        "no batch {id} on record (a finished batch is kept for ENVSHARE_RESULTS_TTL)"
    ))
}

/// `GET /api/v1/batches/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/batches/{id}",
    tag = "batches",
    params(("id" = BatchId, Path, description = "The batch id")),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody),
    )
)]
pub(crate) async fn show(
    _: Authorized,
    State(parts): State<ServeParts>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = batch_id(&id)?;
    match BatchView::get(&parts.queue, &id).await? {
        Some(v) => Ok(axum::Json(v).into_response()),
        None => Err(no_batch(&id)),
    }
}

/// The query of `GET /batches/{id}/results`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ResultsQuery {
    /// `json` (default: a page of rows with a cursor), `csv` or `jsonl` (every row, streamed;
    /// the same bytes as `envshare batch results`).
    #[param(value_type = Option<String>, pattern = "^(json|csv|jsonl)$")]
    format: Option<String>,
    /// Only rows in this state (`pending`, `accepted`, `failed`, `bound`, `unconfirmed`,
    /// `cancelled`, `unshared`).
    #[param(value_type = Option<RowState>)]
    state: Option<String>,
    /// For `json`: the `next_cursor` of the previous page (default 0, the start).
    #[param(minimum = 0, maximum = 1099511627776_u64)]
    cursor: Option<u64>,
    /// For `json`: rows per page, 1 to 1,000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// For `csv`: start with a UTF-8 byte order mark (for Excel).
    bom: Option<bool>,
}

/// A page of result rows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ResultsPage<'a> {
    /// The rows, in the order their pairs were enqueued.
    rows: Vec<ExportRow<'a>>,
    /// The `cursor` of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<u64>,
}

/// `GET /api/v1/batches/{id}/results`.
#[utoipa::path(
    get,
    path = "/api/v1/batches/{id}/results",
    tag = "batches",
    params(("id" = BatchId, Path, description = "The batch id"), ResultsQuery),
    responses(
        (status = 200, description = "Per-appid rows: a JSON page, or the whole CSV or JSONL file",
            content(
                (ResultsPage<'static> = "application/json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
            )),
        (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody),
        (status = 503, description = "Redis failed; try again", body = super::error::ErrorBody),
    )
)]
pub(crate) async fn results(
    _: Authorized,
    State(parts): State<ServeParts>,
    Path(id): Path<String>,
    q: Result<Query<ResultsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = batch_id(&id)?;
    let q = query(q)?;
    let format = match q.format.as_deref() {
        None | Some("json") => None,
        Some("csv") => Some(ExportFormat::Csv),
        Some("jsonl") => Some(ExportFormat::Jsonl),
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_parameter",
                "format",
                format!("unknown format {other:?}: use json, csv or jsonl"),
            ));
        }
    };
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<RowState>()
                .map_err(|e| ApiError::invalid("invalid_parameter", "state", e.to_string()))?,
        ),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_parameter",
            "limit",
            format!("limit {limit} is not between 1 and {MAX_PAGE}"),
        ));
    }
    let cursor = q.cursor.unwrap_or(0);
    if cursor > 1 << 40 {
        return Err(ApiError::invalid(
            "invalid_parameter",
            "cursor",
            "cursor is too large: pass the next_cursor of the previous page",
        ));
    }
    if parts.queue.batch(&id).await?.is_none() {
        return Err(no_batch(&id));
    }
    match format {
        None => {
            let page = parts.queue.results_page(&id, state, cursor, limit).await?;
            let out = ResultsPage {
                rows: page.rows.iter().map(ExportRow::of).collect(),
                next_cursor: page.next,
            };
            Ok(axum::Json(out).into_response())
        }
        Some(format) => {
            let bom = q.bom.unwrap_or(false) && format == ExportFormat::Csv;
            let body = stream_results(parts.queue.clone(), id.clone(), state, format, bom)
                .map_err(|e| ApiError::store(&crate::store::StoreError::reply("results", e)))?;
            let disposition = format!(
                "attachment; filename=\"{id}-results.{}\"",
                format.extension()
            );
            Ok((
                [
                    (header::CONTENT_TYPE, format.content_type().to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                body,
            )
                .into_response())
        }
    }
}

/// A `Write` whose bytes are taken a page at a time.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn take(&self) -> Bytes {
        self.0
            .lock()
            .map(|mut b| Bytes::from(std::mem::take(&mut *b)))
            .unwrap_or_default()
    }
}

/// Every row of the batch, a page of [`MAX_PAGE`] rows per chunk, written by the same
/// [`ResultsWriter`] as `envshare batch results`. A Redis error part-way ends the body early
/// (the connection is cut, so the client sees an incomplete download, not a short file).
fn stream_results(
    queue: Queue,
    id: BatchId,
    state: Option<RowState>,
    format: ExportFormat,
    bom: bool,
) -> io::Result<Body> {
    let buf = Shared::default();
    let writer = ResultsWriter::new(format, buf.clone(), bom)?;
    struct St {
        queue: Queue,
        id: BatchId,
        state: Option<RowState>,
        cursor: Option<u64>,
        writer: ResultsWriter<Shared>,
        buf: Shared,
    }
    let st = St {
        queue,
        id,
        state,
        cursor: Some(0),
        writer,
        buf,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        let cursor = st.cursor?;
        let page = match st
            .queue
            .results_page(&st.id, st.state, cursor, MAX_PAGE)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                warn!(batch = %st.id, error = %e, "streaming results failed part-way");
                st.cursor = None;
                return Some((Err(io::Error::other(e.to_string())), st));
            }
        };
        for r in &page.rows {
            if let Err(e) = st.writer.row(r) {
                st.cursor = None;
                return Some((Err(e), st));
            }
        }
        if let Err(e) = st.writer.flush() {
            st.cursor = None;
            return Some((Err(e), st));
        }
        st.cursor = page.next.filter(|n| *n > cursor);
        Some((Ok::<_, io::Error>(st.buf.take()), st))
    });
    Ok(Body::from_stream(stream))
}
