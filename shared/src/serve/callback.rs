//! `POST /wechat/callback`: the open platform's authorization event URL.
//!
//! Each push is checked in this order, and the first failure answers a 4xx, writes nothing but
//! the `callback_rejected` counter (the `stats` hash, and the `envshare_callback_rejections`
//! metric by reason) and logs one line without secrets:
//!
//! 1. the body is at most [`MAX_BODY_BYTES`] (413, refused from the `Content-Length` before the
//!    body is read, or as soon as a chunked body passes the limit);
//! 2. the query has `timestamp`, `nonce`, `msg_signature` and `encrypt_type=aes` (400);
//! 3. `timestamp` is within [`TIMESTAMP_WINDOW`] of the queue's clock (400 `stale_timestamp`);
//! 4. the body is the envelope XML (400 `not_xml`);
//! 5. `msg_signature` matches (403 `bad_signature`, compared in constant time);
//! 6. the ciphertext decrypts, with valid padding and length, for this platform's appid (400, or
//!    403 `wrong_appid`);
//! 7. the decrypted XML is a push (400 `bad_message`);
//! 8. the nonce was not used by another push within the window (409 `nonce_reused`).
//!
//! Then the push is applied with its nonce in one Redis script (`store::callback`) and answered
//! `success`: a verify ticket is stored as `envshare ticket set` stores it, unless the stored one
//! is as new or newer (`CreateTime`), and a pause waiting for a ticket is lifted; `authorized`,
//! `updateauthorized` and `unauthorized` become `app.*` events, the first two enqueueing the
//! shares of `ENVSHARE_AUTO_SHARE_ENVS` first; any other `InfoType` is counted and ignored. A
//! repeat (the same nonce and signature, the same ticket, or an event id already written) is
//! answered `success` and writes nothing. If Redis fails, the answer is 503 and WeChat sends the
//! push again.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::ExposeSecret;
use serde::Deserialize;
use tracing::{info, warn};

use super::ServeParts;
use crate::clock::iso8601;
use crate::events::{EVENT_VERSION, Event, EventKind};
use crate::ids::{AppId, BatchId, EnvId};
use crate::import::{self, NoProgress, Options, Source};
use crate::schedule::SHANGHAI_OFFSET_MS;
use crate::store::{Applied, CallbackWrite, Queue, Replay, StoreError};
use crate::wechat::callback::{CallbackKind, parse_envelope, parse_message};
use crate::wechat::crypt::{DecryptError, MsgCrypt};

/// The largest body accepted; WeChat's pushes are well under 2 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How far a push's `timestamp` may be from the clock, either way; its nonce is remembered for
/// twice this long, so a replay is caught for as long as its timestamp would pass.
pub const TIMESTAMP_WINDOW: Duration = Duration::from_secs(5 * 60);

/// How long an `app.*` event id is remembered, so a push re-sent later adds no second event.
const SEEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The `stats` counter of refused pushes.
const REJECTED: &str = "callback_rejected";

/// The callback's configuration.
pub(crate) struct Callback {
    crypt: MsgCrypt,
    auto_share: Vec<EnvId>,
    chunk_size: usize,
}

impl Callback {
    pub(crate) fn new(crypt: MsgCrypt, auto_share: Vec<EnvId>, chunk_size: usize) -> Self {
        Self {
            crypt,
            auto_share,
            chunk_size: chunk_size.max(1),
        }
    }

    pub(crate) fn auto_share_envs(&self) -> &[EnvId] {
        &self.auto_share
    }
}

pub(super) fn routes() -> Router<ServeParts> {
    Router::new().route("/wechat/callback", post(callback))
}

#[derive(Deserialize)]
struct CallbackQuery {
    timestamp: Option<String>,
    nonce: Option<String>,
    msg_signature: Option<String>,
    encrypt_type: Option<String>,
}

/// A refusal: status, metric reason, and what the sender is told (never a secret).
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    detail: String,
}

fn refuse(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason,
        detail: detail.into(),
    }
}

impl From<DecryptError> for Refusal {
    fn from(e: DecryptError) -> Self {
        let status = match e {
            DecryptError::WrongAppid => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        refuse(status, e.reason(), e.to_string())
    }
}

/// A push that passed every check.
struct Verified<'a> {
    nonce: &'a str,
    signature: &'a str,
    create_time: u64,
    kind: CallbackKind,
}

async fn callback(
    State(parts): State<ServeParts>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
    request: Request,
) -> Response {
    let Some(cb) = parts.callback.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let query = query.ok().map(|Query(q)| q);
    let body = read_body(request).await;
    match verify(&parts.queue, &cb.crypt, query.as_ref(), body) {
        Ok(push) => apply(&parts, &cb, push).await,
        Err(r) => {
            parts.metrics.rejection(r.reason);
            warn!(
                reason = r.reason,
                status = r.status.as_u16(),
                detail = %r.detail,
                "WeChat callback push refused"
            );
            if let Err(e) = parts.queue.incr_stat(REJECTED, 1).await {
                warn!(error = %e, "counting a refused callback push failed");
            }
            (r.status, format!("{}: {}\n", r.reason, r.detail)).into_response()
        }
    }
}

/// The body, at most [`MAX_BODY_BYTES`]: a larger `Content-Length` is refused before anything
/// is read, and a chunked body as soon as it passes the limit.
async fn read_body(request: Request) -> Result<Bytes, Refusal> {
    use futures::StreamExt as _;
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut stream = request.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            refuse(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the body could not be read",
            )
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// Checks 1 to 7 of the module docs.
fn verify<'q>(
    queue: &Queue,
    crypt: &MsgCrypt,
    query: Option<&'q CallbackQuery>,
    body: Result<Bytes, Refusal>,
) -> Result<Verified<'q>, Refusal> {
    let body = body?;
    let q = query.ok_or_else(|| {
        refuse(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "the query string is not valid",
        )
    })?;
    let need = |v: &'q Option<String>, name: &str| {
        v.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("the query has no {name}"),
            )
        })
    };
    let timestamp = need(&q.timestamp, "timestamp")?;
    let nonce = need(&q.nonce, "nonce")?;
    let signature = need(&q.msg_signature, "msg_signature")?;
    if q.encrypt_type.as_deref() != Some("aes") {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "encrypt_type is not aes: set the open platform's message mode to safe mode \
             (encrypted)",
        ));
    }
    if nonce.len() > 64
        || !nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "the nonce is not 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    if signature.len() != 40 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "msg_signature is not 40 hex digits",
        ));
    }
    let ts: u64 = timestamp.parse().map_err(|_| {
        refuse(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "the timestamp is not Unix seconds",
        )
    })?;
    let now_s = queue.now_ms() / 1000;
    if now_s.abs_diff(ts) > TIMESTAMP_WINDOW.as_secs() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "stale_timestamp",
            format!(
                "the timestamp is {} s from this server's clock (at most {} s allowed): a \
                 replayed push, or a clock that is off (check NTP)",
                now_s.abs_diff(ts),
                TIMESTAMP_WINDOW.as_secs()
            ),
        ));
    }
    let envelope = parse_envelope(&body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "not_xml", e.to_string()))?;
    if !crypt.verify(timestamp, nonce, &envelope.encrypt, signature) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "msg_signature does not match: check ENVSHARE_CALLBACK_TOKEN against the open \
             platform's message-check Token",
        ));
    }
    let xml = crypt.decrypt(&envelope.encrypt)?;
    let message = parse_message(&xml)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "bad_message", e.to_string()))?;
    Ok(Verified {
        nonce,
        signature,
        create_time: message.create_time,
        kind: message.kind,
    })
}

/// Applies a verified push (step 8 and after, in the module docs).
async fn apply(parts: &ServeParts, cb: &Callback, push: Verified<'_>) -> Response {
    let info_type = push.kind.info_type().to_owned();
    match apply_inner(parts, cb, &push).await {
        Ok(Applied::NonceReused) => {
            parts.metrics.rejection("nonce_reused");
            warn!(
                reason = "nonce_reused",
                nonce = push.nonce,
                "WeChat callback push refused: its nonce was used by another push"
            );
            if let Err(e) = parts.queue.incr_stat(REJECTED, 1).await {
                warn!(error = %e, "counting a refused callback push failed");
            }
            (
                StatusCode::CONFLICT,
                "nonce_reused: the nonce was used by another push within the replay window\n",
            )
                .into_response()
        }
        Ok(applied) => {
            let result = match (applied, &push.kind) {
                (Applied::Applied, CallbackKind::Other(_)) => "ignored",
                (Applied::Applied, _) => "applied",
                (Applied::Repeat, _) => "repeat",
                _ => "not_newer",
            };
            parts.metrics.message(&info_type, result);
            success()
        }
        Err(e) => {
            parts.metrics.error();
            warn!(info_type, error = %e, "applying a WeChat callback push failed; answering 503 so WeChat sends it again");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the push could not be stored now; send it again\n",
            )
                .into_response()
        }
    }
}

/// Why a verified push could not be applied (answered 503).
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("enqueueing the automatic share failed: {0}")]
    Enqueue(#[source] import::RunError),
}

/// Traced as `envshare.callback`: an automatic share's import is its child, and the `app.*`
/// event carries its trace id.
#[tracing::instrument(name = "envshare.callback", skip_all, fields(info_type = push.kind.info_type()))]
async fn apply_inner(
    parts: &ServeParts,
    cb: &Callback,
    push: &Verified<'_>,
) -> Result<Applied, ApplyError> {
    let queue = &parts.queue;
    let replay = Replay {
        nonce: push.nonce,
        signature: push.signature,
        ttl: TIMESTAMP_WINDOW * 2,
    };
    let (appid, kind) = match &push.kind {
        CallbackKind::VerifyTicket(ticket) => {
            let write = CallbackWrite::Ticket {
                ticket: ticket.0.expose_secret(),
                create_time: push.create_time,
            };
            let applied = queue.callback_apply(replay, write).await?;
            match applied {
                Applied::Applied => {
                    let lifted = crate::token::lift_ticket_pause(queue).await?;
                    info!(
                        create_time = push.create_time,
                        lifted_pause = lifted.is_some(),
                        "verify ticket stored from the WeChat callback"
                    );
                }
                Applied::NotNewer => info!(
                    create_time = push.create_time,
                    "a verify ticket no newer than the stored one was pushed; kept the stored one"
                ),
                _ => {}
            }
            return Ok(applied);
        }
        CallbackKind::Other(info_type) => {
            info!(
                info_type = info_type.as_str(),
                "WeChat callback push of a type envshare does not use; ignored"
            );
            let write = CallbackWrite::Ignore {
                counter: "callback_ignored",
            };
            return Ok(queue.callback_apply(replay, write).await?);
        }
        CallbackKind::Authorized(a) => (a, EventKind::AppAuthorized { appid: a.clone() }),
        CallbackKind::AuthorizationUpdated(a) => {
            (a, EventKind::AppAuthorizationUpdated { appid: a.clone() })
        }
        CallbackKind::Unauthorized(a) => (a, EventKind::AppUnauthorized { appid: a.clone() }),
    };
    let id = Event::app_id(appid, push.kind.info_type(), push.create_time);
    let shares = !matches!(push.kind, CallbackKind::Unauthorized(_)) && !cb.auto_share.is_empty();
    if shares && !queue.callback_seen(&id).await? {
        auto_share(parts, cb, appid).await?;
    }
    let event = Event {
        v: EVENT_VERSION,
        id: id.clone(),
        at: iso8601(push.create_time.saturating_mul(1000)),
        kind,
        // The callback's trace, which holds the automatic share's import.
        trace_id: crate::telemetry::current_trace_id(),
    };
    let json = event.to_json();
    let applied = queue
        .callback_apply(
            replay,
            CallbackWrite::Event {
                id: &id,
                kind: event.type_name(),
                json: &json,
                seen_ttl: SEEN_TTL,
            },
        )
        .await?;
    if applied == Applied::Applied {
        info!(appid = %appid, event = event.type_name(), "authorization change from the WeChat callback");
    }
    Ok(applied)
}

/// The batch of automatic shares: `auto-YYYY-MM-DD`, the date in UTC+8 (China Standard Time, the
/// clock WeChat's quotas follow).
pub(crate) fn auto_batch(now_ms: u64) -> BatchId {
    let date = &iso8601(now_ms + SHANGHAI_OFFSET_MS)[..10];
    BatchId::parse(&format!("auto-{date}")).expect("auto-YYYY-MM-DD is a valid batch id")
}

/// Enqueues the shares of `ENVSHARE_AUTO_SHARE_ENVS` for `appid` through the import flow
/// (validate, plan, enqueue with the dedupe window, seal).
async fn auto_share(parts: &ServeParts, cb: &Callback, appid: &AppId) -> Result<(), ApplyError> {
    let batch = auto_batch(parts.queue.now_ms());
    let pairs = cb
        .auto_share
        .iter()
        .map(|env| (env.clone(), appid.clone()))
        .collect();
    let source = Source::pairs(format!("authorization of {appid}"), pairs);
    let options = Options::new(batch.clone(), cb.chunk_size);
    let summary = import::run(
        Some(&parts.queue),
        source,
        &options,
        None,
        Arc::new(NoProgress),
    )
    .await
    .map_err(ApplyError::Enqueue)?;
    parts
        .metrics
        .auto_share(summary.appids, summary.skipped_already_queued);
    info!(
        appid = %appid,
        batch = %batch,
        enqueued = summary.appids,
        skipped_duplicates = summary.skipped_already_queued,
        "automatic share enqueued"
    );
    Ok(())
}

fn success() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "success",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auto_batch_is_named_by_the_date_in_utc_plus_8() {
        // 2026-12-03 15:59:59.999 UTC is 23:59:59.999 in Shanghai; a millisecond later, the 4th.
        assert_eq!(auto_batch(1_796_313_599_999).as_str(), "auto-2026-12-03");
        assert_eq!(auto_batch(1_796_313_600_000).as_str(), "auto-2026-12-04");
    }
}
