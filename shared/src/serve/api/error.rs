//! The API's error answers: JSON `{"error":{"code","message",…}}` with a status that says whose
//! fault it is. Every code is listed in docs/api.md.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::warn;

use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// A stable, machine-readable code (`unauthorized`, `not_found`, `invalid_body`,
    /// `invalid_pairs`, `invalid_parameter`, `body_too_large`, `unsupported_media_type`,
    /// `bad_request`, `idempotency_key_in_use`, `idempotency_key_reused`, `unavailable`).
    code: &'static str,
    /// What is wrong and how to fix it, in words.
    message: String,
    /// The field (body, query or path) at fault, e.g. `pairs[3].env`, `limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// For `invalid_pairs`: every invalid pair, by index in `pairs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<PairError>>,
}

/// One invalid pair of `POST /batches`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct PairError {
    /// The pair's index in `pairs`, from 0.
    pub index: usize,
    /// Why it is invalid.
    pub reason: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: ErrorDetail {
                    code,
                    message: message.into(),
                    field: None,
                    errors: None,
                },
            },
        }
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        self.body.error.field = Some(field.into());
        self
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the API token as `Authorization: Bearer TOKEN`",
        )
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A body, query or path value that does not fit the schema (422 naming the field).
    pub(crate) fn invalid(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the body is larger than {limit} bytes: send the pairs in several batches, or \
                 import a file with `envshare import`"
            ),
        )
    }

    pub(crate) fn invalid_pairs(errors: Vec<PairError>, pairs: usize) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_pairs",
            format!(
                "{} of {pairs} pairs are invalid; nothing was enqueued. Fix them (an appid is \
                 \"wx\" and 16 lowercase hex digits, an env 1 to 64 of A-Z a-z 0-9 _ -) and \
                 send the request again",
                errors.len()
            ),
        )
        .with_field("pairs");
        e.body.error.errors = Some(errors);
        e
    }

    /// Redis failed: 503, so the client tries again later. The cause is logged, not answered.
    pub(crate) fn store(e: &StoreError) -> Self {
        warn!(error = %e, "an API request failed on Redis");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the queue's Redis could not answer; try again shortly",
        )
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&self.body).unwrap_or_default()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::store(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
