//! `GET /jobs/{id}`, `GET /appids/{appid}`, `GET /dead`, `POST /dead/retry`,
//! `POST /dead/purge`, `POST /pause`, `POST /resume`, `GET /status`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::batches::Paging;
use super::error::ErrorBody;
use super::{ApiError, Authorized, bad_id, parse_json, query, read_body};
use crate::export::ExportRow;
use crate::ids::{AppId, BatchId, JobId};
use crate::inspect::{self, PauseReport, ResumeReport, Status, StatusError};
use crate::serve::ServeParts;
use crate::store::{DeadJob, DeadSelection, FinishedJob, JobInfo};

/// A job looked up by id: as the queue holds it, or, once finished, as its batch's results
/// remember it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum JobLookup {
    /// In the queue: ready, scheduled, running or dead.
    Queued(JobInfo),
    /// Finished and removed from the queue; its batch and the outcome of each of its pairs.
    Finished(FinishedJob),
}

/// `GET /api/v1/jobs/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "operations",
    params(("id" = JobId, Path, description = "The job id")),
    responses(
        (status = 200, description = "The job as the queue holds it or, once it finished, its batch and per-appid rows", body = JobLookup),
        (status = 401, body = ErrorBody),
        (status = 404, description = "Neither in the queue nor in a batch on record: purged, expired with its batch, or unknown", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn job(
    _: Authorized,
    State(parts): State<ServeParts>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = JobId::parse(&id).map_err(|e| bad_id("id", &e))?;
    if let Some(info) = parts.queue.job(&id).await? {
        return Ok(axum::Json(JobLookup::Queued(info)).into_response());
    }
    match parts.queue.finished_job(&id).await? {
        Some(done) => Ok(axum::Json(JobLookup::Finished(done)).into_response()),
        None => Err(ApiError::not_found(format!(
            "the queue holds no job {id}, and no batch on record names it: it was purged, its \
             batch's results expired, or it never existed"
        ))),
    }
}

/// Every share of one appid on record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AppidShares<'a> {
    /// The appid.
    appid: &'a str,
    /// Its result rows, newest batch first.
    shares: Vec<ExportRow<'a>>,
}

/// `GET /api/v1/appids/{appid}`.
#[utoipa::path(
    get,
    path = "/api/v1/appids/{appid}",
    tag = "operations",
    params(("appid" = AppId, Path, description = "The Mini Program's appid")),
    responses(
        (status = 200, description = "Every share of the appid still on record", body = AppidShares<'static>),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No share of the appid on record", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn appid(
    _: Authorized,
    State(parts): State<ServeParts>,
    Path(appid): Path<String>,
) -> Result<Response, ApiError> {
    let appid = AppId::parse(&appid).map_err(|e| bad_id("appid", &e))?;
    let rows = parts.queue.find_appid(&appid).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!(
            "no share of {appid} on record (batches are kept for ENVSHARE_RESULTS_TTL after \
             they finish; a pair still waiting for WeChat's answer shows once it has one)"
        )));
    }
    Ok(axum::Json(AppidShares {
        appid: appid.as_str(),
        shares: rows.iter().map(ExportRow::of).collect(),
    })
    .into_response())
}

/// A page of dead jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeadPage {
    /// Dead jobs, newest first.
    jobs: Vec<DeadJob>,
    /// The `offset` of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_offset: Option<usize>,
}

/// `GET /api/v1/dead`.
#[utoipa::path(
    get,
    path = "/api/v1/dead",
    tag = "operations",
    params(Paging),
    responses(
        (status = 200, description = "Dead jobs, newest first", body = DeadPage),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn dead_list(
    _: Authorized,
    State(parts): State<ServeParts>,
    q: Result<Query<Paging>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (offset, limit) = query(q)?.get()?;
    let jobs = parts.queue.dead_list(offset, limit).await?;
    let next_offset = (jobs.len() == limit).then_some(offset + limit);
    Ok(axum::Json(DeadPage { jobs, next_offset }).into_response())
}

/// Which dead jobs: `{"ids":[…]}` or `{"all":true}` (read as [`DeadRequest`]).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // The schema only.
pub(crate) enum DeadSelectionBody {
    /// These dead jobs (ids that are not dead are counted in `not_dead`).
    Ids(DeadIds),
    /// Every dead job (`false`: none).
    All(DeadAll),
}

/// Dead jobs by id.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The schema only.
pub(crate) struct DeadIds {
    /// 1 to 1,000 job ids.
    #[schema(min_items = 1, max_items = 1000)]
    ids: Vec<JobId>,
}

/// Every dead job.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The schema only.
pub(crate) struct DeadAll {
    /// `true`: every dead job; `false`: none.
    all: bool,
}

/// The body of `POST /dead/retry` and `POST /dead/purge`, as read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadRequest {
    ids: Option<Vec<String>>,
    all: Option<bool>,
}

/// What a retry or purge did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeadOutcome {
    /// Dead jobs put back in `ready` (retry) or deleted (purge).
    count: usize,
    /// Of the ids given, how many were not dead jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_dead: Option<usize>,
}

async fn dead_selection(
    request: Request,
) -> Result<(Option<DeadSelection>, Option<usize>), ApiError> {
    let (head, body) = request.into_parts();
    let body = read_body(&head.headers, body).await?;
    let req: DeadRequest = parse_json(&body)?;
    match (req.ids, req.all) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "invalid_body",
            "all",
            "give either \"ids\" or \"all\", not both",
        )),
        (Some(ids), _) => {
            if ids.is_empty() || ids.len() > 1000 {
                return Err(ApiError::invalid(
                    "invalid_body",
                    "ids",
                    "ids must list 1 to 1000 job ids (or send {\"all\":true})",
                ));
            }
            let mut parsed = Vec::with_capacity(ids.len());
            for (i, id) in ids.iter().enumerate() {
                parsed.push(JobId::parse(id).map_err(|e| {
                    ApiError::invalid("invalid_body", format!("ids[{i}]"), e.to_string())
                })?);
            }
            let n = parsed.len();
            Ok((Some(DeadSelection::Ids(parsed)), Some(n)))
        }
        (None, Some(true)) => Ok((Some(DeadSelection::All), None)),
        (None, Some(false)) => Ok((None, None)),
        (None, _) => Err(ApiError::invalid(
            "invalid_body",
            "ids",
            "name the dead jobs: {\"ids\":[\"JOB\",…]} or {\"all\":true}",
        )),
    }
}

fn outcome(count: usize, asked: Option<usize>) -> Response {
    axum::Json(DeadOutcome {
        count,
        not_dead: asked.map(|a| a.saturating_sub(count)),
    })
    .into_response()
}

/// `POST /api/v1/dead/retry`.
#[utoipa::path(
    post,
    path = "/api/v1/dead/retry",
    tag = "operations",
    request_body = DeadSelectionBody,
    responses(
        (status = 200, description = "Dead jobs put back in ready", body = DeadOutcome),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn dead_retry(
    _: Authorized,
    State(parts): State<ServeParts>,
    request: Request,
) -> Result<Response, ApiError> {
    let (select, asked) = dead_selection(request).await?;
    let n = match select {
        Some(s) => parts.queue.dead_retry(s).await?,
        None => 0,
    };
    info!(count = n, "dead jobs retried through the API");
    Ok(outcome(n, asked))
}

/// `POST /api/v1/dead/purge`.
#[utoipa::path(
    post,
    path = "/api/v1/dead/purge",
    tag = "operations",
    request_body = DeadSelectionBody,
    responses(
        (status = 200, description = "Dead jobs deleted for good", body = DeadOutcome),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn dead_purge(
    _: Authorized,
    State(parts): State<ServeParts>,
    request: Request,
) -> Result<Response, ApiError> {
    let (select, asked) = dead_selection(request).await?;
    let n = match select {
        Some(s) => parts.queue.dead_purge(s).await?,
        None => 0,
    };
    info!(count = n, "dead jobs purged through the API");
    Ok(outcome(n, asked))
}

/// The body of `POST /pause`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PauseRequest {
    /// Why (one line, at most 500 characters, not blank); shown by `envshare status` and the
    /// console.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    reason: String,
    /// When the pause ends, RFC 3339 (`2026-12-03T10:00:00Z`); until `POST /resume` without it.
    /// A time already past pauses nothing (the answer's `paused` is the pause in force).
    #[schema(format = DateTime, pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-")]
    until: Option<String>,
}

/// `POST /api/v1/pause`.
#[utoipa::path(
    post,
    path = "/api/v1/pause",
    tag = "operations",
    request_body = PauseRequest,
    responses(
        (status = 200, description = "Paused (a longer pause in force is kept)", body = PauseReport),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn pause(
    _: Authorized,
    State(parts): State<ServeParts>,
    request: Request,
) -> Result<Response, ApiError> {
    let (head, body) = request.into_parts();
    let body = read_body(&head.headers, body).await?;
    let req: PauseRequest = parse_json(&body)?;
    let reason = inspect::check_reason(Some(&req.reason))
        .map_err(|e| ApiError::invalid("invalid_body", "reason", e.to_string()))?;
    let until = match req.until.as_deref() {
        None => inspect::UNTIL_RESUMED_MS,
        Some(s) => {
            let ms = rfc3339_ms(s.trim())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_body",
                        "until",
                        format!(
                            "until {s:?} is not an RFC 3339 time after 1970, e.g. \
                             2026-12-03T10:00:00Z or 2026-12-03T18:00:00+08:00"
                        ),
                    )
                })?
                .min(inspect::UNTIL_RESUMED_MS);
            // A time already past is stored as it is: the pause is over before it starts.
            ms.max(1)
        }
    };
    let report = inspect::pause(&parts.queue, until, reason).await?;
    info!(until_ms = until, "queue paused through the API");
    Ok(axum::Json(report).into_response())
}

/// An RFC 3339 time (`Z` or a `±HH:MM` offset) as ms since the epoch; `None` if it is not one
/// or lies before 1970.
fn rfc3339_ms(s: &str) -> Option<u64> {
    let (local, offset_s): (String, i64) = match s.as_bytes().last()? {
        b'Z' | b'z' => (s.to_owned(), 0),
        _ => {
            let at = s.len().checked_sub(6)?;
            let (base, off) = (s.get(..at)?, s.get(at..)?);
            let sign = match off.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = off[1..].split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            if !(0..24).contains(&h) || !(0..60).contains(&m) {
                return None;
            }
            (format!("{base}Z"), sign * (h * 3600 + m * 60))
        }
    };
    let t = humantime::parse_rfc3339_weak(&local).ok()?;
    let ms = i128::try_from(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()?;
    u64::try_from(ms - i128::from(offset_s) * 1000).ok()
}

/// `POST /api/v1/resume`.
#[utoipa::path(
    post,
    path = "/api/v1/resume",
    tag = "operations",
    responses(
        (status = 200, description = "Resumed; the pause lifted, if any", body = ResumeReport),
        (status = 401, body = ErrorBody),
    )
)]
pub(crate) async fn resume(
    _: Authorized,
    State(parts): State<ServeParts>,
) -> Result<Response, ApiError> {
    let report = inspect::resume(&parts.queue).await?;
    info!(
        lifted = report.lifted.is_some(),
        "queue resumed through the API"
    );
    Ok(axum::Json(report).into_response())
}

/// The query of `GET /status`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatusQuery {
    /// Also the progress of this batch.
    #[param(value_type = Option<BatchId>)]
    batch: Option<String>,
}

/// `GET /api/v1/status`.
#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "operations",
    params(StatusQuery),
    responses(
        (status = 200, description = "Counts per state, workers, pause, token expiry and ticket age (never their values)", body = Status),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such batch", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn status(
    _: Authorized,
    State(parts): State<ServeParts>,
    q: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let batch = match q.batch.as_deref() {
        None => None,
        Some(b) => Some(
            BatchId::parse(b)
                .map_err(|e| ApiError::invalid("invalid_parameter", "batch", e.to_string()))?,
        ),
    };
    match inspect::status(&parts.settings, &parts.queue, batch.as_ref()).await {
        Ok(s) => Ok(axum::Json(s).into_response()),
        Err(StatusError::Store(e)) => Err(e.into()),
        Err(StatusError::UnknownBatch(id)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no batch {id} on record"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::rfc3339_ms;

    #[test]
    fn an_rfc_3339_time_with_any_offset_reads_as_utc() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(rfc3339_ms("1970-01-01T08:00:01+08:00"), Some(1000));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01.5-00:30"), Some(1_801_500));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00+00:01"), None);
        for bad in [
            "",
            "tomorrow",
            "2026-12-03",
            "2026-12-03T10:00:00+25:00",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(rfc3339_ms(bad), None, "{bad}");
        }
    }
}
