//! The JSON API of `envshare serve`, under `/api/v1` (docs/api.md is its guide; the OpenAPI
//! document at `/api/v1/openapi.json` is generated from the handlers below):
//!
//! - `batches`: `POST /batches` (enqueue pairs, validated like `envshare import`, with
//!   `Idempotency-Key`), `GET /batches`, `GET /batches/{id}`, `GET /batches/{id}/results`;
//! - `ops`: `GET /jobs/{id}`, `GET /appids/{appid}`, `GET /dead`, `POST /dead/retry`,
//!   `POST /dead/purge`, `POST /pause`, `POST /resume`, `GET /status`;
//! - `events`: `GET /events`, Server-Sent Events from the events stream.
//!
//! Every route but the OpenAPI document needs `Authorization: Bearer ENVSHARE_API_TOKEN` when a
//! token is set (compared in constant time); without one, `serve` listens on loopback only and
//! the API is open to local callers. Errors are JSON (`error` module); bodies are capped at
//! [`MAX_BODY_BYTES`], refused from `Content-Length` before they are read.

mod batches;
mod error;
mod events;
mod ops;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::OpenApi;

use super::ServeParts;
pub(crate) use error::ApiError;

/// The largest request body the API reads (32 MiB, about 400,000 pairs for `POST /batches`).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

pub(super) fn routes() -> Router<ServeParts> {
    let api = Router::new()
        .route("/batches", post(batches::create).get(batches::list))
        .route("/batches/{id}", get(batches::show))
        .route("/batches/{id}/results", get(batches::results))
        .route("/jobs/{id}", get(ops::job))
        .route("/appids/{appid}", get(ops::appid))
        .route("/dead", get(ops::dead_list))
        .route("/dead/retry", post(ops::dead_retry))
        .route("/dead/purge", post(ops::dead_purge))
        .route("/pause", post(ops::pause))
        .route("/resume", post(ops::resume))
        .route("/status", get(ops::status))
        .route("/events", get(events::stream))
        .fallback(unknown_route);
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .nest("/api/v1", api)
}

async fn unknown_route(_: Authorized) -> ApiError {
    ApiError::not_found("no such API route: see /api/v1/openapi.json")
}

/// A request with the right bearer token (or any request when `ENVSHARE_API_TOKEN` is not set):
/// the first extractor of every handler, so a request without it is refused before its body is
/// read.
pub(crate) struct Authorized;

impl axum::extract::FromRequestParts<ServeParts> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &ServeParts,
    ) -> Result<Self, ApiError> {
        let Some(token) = &state.settings.api_token else {
            return Ok(Authorized);
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        // Hashes first, so the comparison takes as long whatever the lengths.
        let ok = given.is_some_and(|g| {
            let want = Sha256::digest(token.expose_secret().as_bytes());
            let got = Sha256::digest(g.as_bytes());
            bool::from(want.ct_eq(&got))
        });
        if ok {
            Ok(Authorized)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// Reads a body of at most [`MAX_BODY_BYTES`]: a larger `Content-Length` is refused before
/// anything is read, and a chunked body as soon as it passes the cap.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Bytes, ApiError> {
    use futures::StreamExt as _;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let json = ct
            .to_str()
            .ok()
            .and_then(|s| s.split(';').next())
            .map(|s| s.trim().to_ascii_lowercase())
            .is_some_and(|s| s == "application/json" || s.ends_with("+json"));
        if !json {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(1 << 20) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("the body could not be read"))?;
        if out.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::too_large(MAX_BODY_BYTES));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// Parses a JSON body as `T`; a body that does not fit is a 422 naming the field.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is an object (serde would also read a struct from an array).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid(
            "invalid_body",
            "body",
            "the body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let text = inner.to_string();
        // A missing or unknown field is reported at its parent: name the field itself.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| text.strip_prefix(p))
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name.to_owned());
        let root = path == "." || path.is_empty();
        let unknown = text.starts_with("unknown field `");
        let field = match (named, root) {
            // An unknown field's path already ends with it.
            (Some(_), false) if unknown => path,
            (Some(name), true) => name,
            (Some(name), false) => format!("{path}.{name}"),
            (None, true) => "body".to_owned(),
            (None, false) => path,
        };
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("the body is not valid JSON: {inner}")
        } else {
            format!("{field}: {inner}")
        };
        ApiError::invalid("invalid_body", field, message)
    })?;
    de.end().map_err(|e| {
        ApiError::invalid(
            "invalid_body",
            "body",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    Ok(parsed)
}

/// The query string as `T`; one that does not fit is a 422 naming the parameter.
pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    match q {
        Ok(Query(t)) => Ok(t),
        Err(e) => {
            let text = e.body_text();
            // serde_urlencoded's messages name the field first: `limit: invalid digit …`.
            let detail = text
                .strip_prefix("Failed to deserialize query string: ")
                .unwrap_or(&text)
                .to_owned();
            let field = detail
                .split_once(':')
                .map(|(f, _)| f.trim())
                .filter(|f| !f.is_empty() && !f.contains(' '))
                .unwrap_or("query")
                .to_owned();
            Err(ApiError::invalid(
                "invalid_parameter",
                field,
                format!("the query string does not fit: {detail}"),
            ))
        }
    }
}

/// A path id that cannot be one: 422 naming the parameter.
pub(crate) fn bad_id(field: &'static str, e: &crate::IdError) -> ApiError {
    ApiError::invalid("invalid_parameter", field, e.to_string())
}

/// `GET /api/v1/openapi.json`: this API's OpenAPI 3.1 document (no token needed).
async fn openapi() -> Response {
    axum::Json(ApiDoc::openapi()).into_response()
}

/// The bearer scheme, named `bearer` in the document.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("ENVSHARE_API_TOKEN"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "envshare API",
        description = "Enqueue shares of WeChat cloud environments and follow them: batches, \
                       per-appid results, jobs, dead jobs, the pause, status and events. \
                       Guide: docs/api.md."
    ),
    paths(
        batches::create,
        batches::list,
        batches::show,
        batches::results,
        ops::job,
        ops::appid,
        ops::dead_list,
        ops::dead_retry,
        ops::dead_purge,
        ops::pause,
        ops::resume,
        ops::status,
        events::stream,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, error::PairError)),
    modifiers(&Security),
    security(("bearer" = [])),
    tags((name = "batches"), (name = "operations"), (name = "events"))
)]
struct ApiDoc;

/// The OpenAPI document, for tools and tests.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
