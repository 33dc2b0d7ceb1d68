//! `GET /events`: the events stream as Server-Sent Events.
//!
//! Each SSE message is one event: `id` is its stream entry id (`1764460800000-0`), `event` its
//! type (`share.accepted`, …), `data` its JSON (docs/events.md). A client that reconnects with
//! `Last-Event-ID` (browsers' `EventSource` does so by itself) gets every event after that one
//! still in the stream; `?from=start` starts at the oldest event kept, and by default only new
//! events come. The stream is polled (no blocking read holds the queue's shared connection),
//! so an event reaches clients within [`POLL`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::warn;

use super::error::ErrorBody;
use super::{ApiError, Authorized, query};
use crate::serve::ServeParts;
use crate::store::{Queue, StreamEvent};

/// How often the stream is read for new events.
const POLL: Duration = Duration::from_millis(500);
/// Events read per poll.
const PAGE: usize = 200;

/// The query of `GET /events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// `start`: from the oldest event still in the stream; `now` (default): only new events.
    /// `Last-Event-ID` wins over it.
    #[param(value_type = Option<String>, pattern = "^(start|now)$")]
    from: Option<String>,
    /// Resume after this stream entry id, for clients that cannot send `Last-Event-ID`.
    #[param(pattern = "^[0-9]{1,20}-[0-9]{1,20}$")]
    last_event_id: Option<String>,
}

/// A stream entry id: `MS-SEQ`.
fn entry_id(s: &str) -> Option<&str> {
    let (ms, seq) = s.split_once('-')?;
    let digits = |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
    (digits(ms) && digits(seq) && ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok())
        .then_some(s)
}

/// `GET /api/v1/events`.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(EventsQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (its SSE id)")),
    responses(
        (status = 200, description = "Server-Sent Events: id = stream entry id, event = type, data = the event's JSON",
            content_type = "text/event-stream", body = String),
        (status = 400, description = "Last-Event-ID is not a stream entry id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn stream(
    _: Authorized,
    State(parts): State<ServeParts>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let header = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or_default().trim().to_owned());
    let after = match (
        header.as_deref(),
        q.last_event_id.as_deref(),
        q.from.as_deref(),
    ) {
        (Some(h), _, _) => entry_id(h)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "Last-Event-ID is not an event id of this stream (MS-SEQ, e.g. \
                     1764460800000-0)",
                )
                .with_field("Last-Event-ID")
            })?
            .to_owned(),
        (None, Some(q), _) => entry_id(q)
            .ok_or_else(|| {
                ApiError::invalid(
                    "invalid_parameter",
                    "last_event_id",
                    "last_event_id is not an event id of this stream (MS-SEQ)",
                )
            })?
            .to_owned(),
        (None, None, Some("start")) => "0-0".to_owned(),
        (None, None, None | Some("now")) => parts.queue.events_tail().await?,
        (None, None, Some(other)) => {
            return Err(ApiError::invalid(
                "invalid_parameter",
                "from",
                format!("from {other:?}: use start or now"),
            ));
        }
    };
    let st = Reader {
        queue: parts.queue.clone(),
        after,
        buffered: VecDeque::new(),
        stopping: parts.stopping.subscribe(),
    };
    let events = futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.buffered.pop_front() {
                st.after.clone_from(&e.entry_id);
                let msg = SseEvent::default()
                    .id(e.entry_id.clone())
                    .event(e.event.type_name())
                    .data(e.event.to_json());
                return Some((Ok::<_, Infallible>(msg), st));
            }
            if *st.stopping.borrow() {
                return None;
            }
            match st.queue.events_after(&st.after, PAGE).await {
                Ok(page) if !page.is_empty() => st.buffered.extend(page),
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "reading events for an SSE client failed; trying again")
                }
            }
            if st.buffered.is_empty() {
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    _ = st.stopping.wait_for(|s| *s) => return None,
                }
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

struct Reader {
    queue: Queue,
    after: String,
    buffered: VecDeque<StreamEvent>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stream_entry_ids_resume() {
        assert_eq!(entry_id("1764460800000-0"), Some("1764460800000-0"));
        assert_eq!(entry_id("0-0"), Some("0-0"));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1-2-3",
            "a-1",
            "1 -1",
            "99999999999999999999999-0",
        ] {
            assert_eq!(entry_id(bad), None, "{bad}");
        }
    }
}
