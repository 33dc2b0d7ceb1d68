//! The live event feed: a page with the latest events, and `GET /events/stream`, Server-Sent
//! Events read from the queue's stream without a consumer group (the console's own route,
//! behind its session cookie; the JSON API has its own).
//!
//! Each SSE message is one event's JSON with its stream entry id as the SSE id, so a browser
//! that reconnects (`EventSource` does so by itself) resumes after the last one it got
//! (`Last-Event-ID`). A connection lasts at most [`STREAM_LIFE`]; the browser reconnects. The
//! stream ends when serve stops, so an open console never holds a shutdown.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use maud::html;

use super::auth::Session;
use super::pages::PageError;
use super::view::{self, Nav};
use crate::serve::ServeParts;
use crate::store::{FeedEntry, Queue};

/// Events shown when the page opens.
const LATEST: usize = 50;
/// How often an idle stream looks for new entries.
const POLL: Duration = Duration::from_millis(500);
/// Entries read per look.
const BATCH: usize = 200;
/// How long one SSE connection is kept before the browser is asked to reconnect.
const STREAM_LIFE: Duration = Duration::from_secs(300);

/// `GET /events`: the newest events, then live ones (the script's `EventSource`).
pub(super) async fn page(
    session: Session,
    State(parts): State<ServeParts>,
) -> Result<Response, PageError> {
    let latest = parts.queue.events_latest(LATEST).await?;
    let body = html! {
        p #feed-status { "The newest " (LATEST) " events; new ones appear at the top as they are \
            written (needs JavaScript)." }
        ol #feed data-src="/events/stream" {
            @for e in &latest {
                li data-type=(e.kind) { code.type { (e.kind) } " " span.json { (e.json) } }
            }
        }
    };
    Ok(view::page("Events", Nav::Events, Some(&session.csrf), None, body).into_response())
}

/// Whether `s` is a stream entry id (`MS-SEQ`).
fn is_entry_id(s: &str) -> bool {
    s.split_once('-').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.len() <= 20
            && b.len() <= 20
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

struct Follow {
    queue: Queue,
    last: String,
    buf: VecDeque<FeedEntry>,
    until: tokio::time::Instant,
    /// Set when serve stops: the stream ends so the connection closes and shutdown is not held.
    stopping: tokio::sync::watch::Receiver<bool>,
}

fn follow(f: Follow) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(f, |mut f| async move {
        loop {
            if let Some(e) = f.buf.pop_front() {
                let ev = Event::default().id(e.entry_id).data(e.json);
                return Some((Ok(ev), f));
            }
            if tokio::time::Instant::now() >= f.until || *f.stopping.borrow() {
                return None;
            }
            match f.queue.feed_after(&f.last, BATCH).await {
                Ok(v) if !v.is_empty() => {
                    if let Some(e) = v.last() {
                        f.last = e.entry_id.clone();
                    }
                    f.buf.extend(v);
                }
                Ok(_) => {
                    tokio::select! {
                        () = tokio::time::sleep(POLL) => {}
                        _ = f.stopping.wait_for(|s| *s) => return None,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the console's event feed could not read Redis");
                    tokio::select! {
                        () = tokio::time::sleep(POLL * 4) => {}
                        _ = f.stopping.wait_for(|s| *s) => return None,
                    }
                }
            }
        }
    })
}

/// `GET /events/stream`: Server-Sent Events from now (or after `Last-Event-ID`).
pub(super) async fn stream(
    _session: Session,
    State(parts): State<ServeParts>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| is_entry_id(s))
        .map(str::to_owned);
    let last = match resume {
        Some(id) => id,
        None => parts.queue.events_tail().await?,
    };
    let f = Follow {
        queue: parts.queue.clone(),
        last,
        buf: VecDeque::new(),
        until: tokio::time::Instant::now() + STREAM_LIFE,
        stopping: parts.stopping.subscribe(),
    };
    Ok(Sse::new(follow(f))
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stream_ids_are_taken_from_last_event_id() {
        assert!(is_entry_id("1764460800000-0"));
        assert!(!is_entry_id("$"));
        assert!(!is_entry_id("1-"));
        assert!(!is_entry_id("1-0 +"));
        assert!(!is_entry_id("-"));
    }
}
