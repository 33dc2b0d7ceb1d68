//! The confirmation events: `share.bound`, `share.unconfirmed` and `batch.confirmed`.
//!
//! They go to the same stream as the queue's events (`envshare:{QUEUE}:events`), with the same
//! two fields (`type`, `event`) and the same envelope (`v`, `id`, `at`, `type`). They have their
//! own Rust type rather than new [`EventKind`](crate::events::EventKind) variants so that code
//! matching `EventKind` exhaustively keeps compiling; `EventKind` reads them as `Unknown`.

use serde::{Deserialize, Serialize};

use crate::events::EventError;
use crate::ids::{AppId, BatchId, EnvId, JobId};
use crate::queue::Keys;

/// One confirmation event, as written to the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmationEvent {
    /// Format version (1).
    pub v: u32,
    /// Stable id: `{job_id}.{gen}.{appid}.bound` / `.unconfirmed`, `batch.{batch_id}.confirmed`.
    pub id: String,
    /// When it was decided, ISO-8601 UTC.
    pub at: String,
    /// What was decided.
    #[serde(flatten)]
    pub kind: ConfirmationKind,
}

/// The kinds of confirmation events and their fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ConfirmationKind {
    /// `batchgetenvid` lists `env` for `appid`: the administrator confirmed, the binding is live.
    #[serde(rename = "share.bound")]
    ShareBound {
        /// The job that carried the appid.
        job_id: JobId,
        /// The job's batch.
        batch_id: BatchId,
        /// The shared environment.
        env: EnvId,
        /// The Mini Program.
        appid: AppId,
        /// When the share was accepted, ISO-8601 UTC.
        accepted_at: String,
        /// Seconds from acceptance to the check that saw the binding (ms precision).
        confirm_seconds: f64,
        /// `batchgetenvid` checks made, this one included.
        checks: u32,
    },
    /// The confirmation window ended without the binding showing up.
    #[serde(rename = "share.unconfirmed")]
    ShareUnconfirmed {
        /// The job that carried the appid.
        job_id: JobId,
        /// The job's batch.
        batch_id: BatchId,
        /// The shared environment.
        env: EnvId,
        /// The Mini Program.
        appid: AppId,
        /// When the share was accepted, ISO-8601 UTC.
        accepted_at: String,
        /// The window (`ENVSHARE_CONFIRM_WINDOW`) in seconds.
        window_seconds: f64,
        /// `batchgetenvid` checks made.
        checks: u32,
    },
    /// The batch completed and every accepted appid is bound or unconfirmed; emitted once.
    #[serde(rename = "batch.confirmed")]
    BatchConfirmed {
        /// The batch.
        batch_id: BatchId,
        /// Appids accepted.
        accepted: u64,
        /// Appids bound.
        bound: u64,
        /// Appids unconfirmed.
        unconfirmed: u64,
    },
    /// Any other event type (the queue's own events, or a newer version's).
    #[serde(other)]
    Other,
}

impl ConfirmationKind {
    /// The `type` string; `other` for [`ConfirmationKind::Other`].
    pub fn type_name(&self) -> &'static str {
        match self {
            ConfirmationKind::ShareBound { .. } => "share.bound",
            ConfirmationKind::ShareUnconfirmed { .. } => "share.unconfirmed",
            ConfirmationKind::BatchConfirmed { .. } => "batch.confirmed",
            ConfirmationKind::Other => "other",
        }
    }
}

impl ConfirmationEvent {
    /// The JSON written to the stream's `event` field.
    pub fn to_json(&self) -> String {
        // Plain strings and numbers always serialize.
        serde_json::to_string(self).expect("a ConfirmationEvent always serializes")
    }
}

/// The confirmation events in a queue's stream, oldest first, with their stream entry ids
/// (XRANGE in pages of 1,000; for tests and inspection, consumers use consumer groups).
pub async fn read_confirmations<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
) -> Result<Vec<(String, ConfirmationEvent)>, EventError> {
    let stream = keys.events();
    let mut out = Vec::new();
    let mut start = "-".to_owned();
    loop {
        let page: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&stream)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(|source| EventError::Redis {
                op: "range",
                source,
            })?;
        let n = page.len();
        for (entry_id, fields) in page {
            start = format!("({entry_id}");
            let Some(json) = fields
                .chunks(2)
                .find(|kv| kv.len() == 2 && kv[0] == "event")
                .map(|kv| &kv[1])
            else {
                continue;
            };
            let event: ConfirmationEvent =
                serde_json::from_str(json).map_err(|e| EventError::Malformed {
                    op: "range",
                    entry_id: entry_id.clone(),
                    detail: e.to_string(),
                })?;
            if event.kind != ConfirmationKind::Other {
                out.push((entry_id, event));
            }
        }
        if n < 1000 {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_event_round_trips_and_queue_events_read_as_other() {
        let e = ConfirmationEvent {
            v: 1,
            id: "J.0.wx0123456789abcdef.bound".into(),
            at: "2026-11-30T02:00:00.000Z".into(),
            kind: ConfirmationKind::ShareBound {
                job_id: JobId::parse("J").unwrap(),
                batch_id: BatchId::parse("b").unwrap(),
                env: EnvId::parse("e").unwrap(),
                appid: AppId::parse("wx0123456789abcdef").unwrap(),
                accepted_at: "2026-11-30T01:59:00.000Z".into(),
                confirm_seconds: 60.5,
                checks: 2,
            },
        };
        let json = e.to_json();
        assert!(json.contains(r#""type":"share.bound""#), "{json}");
        assert_eq!(serde_json::from_str::<ConfirmationEvent>(&json).unwrap(), e);
        let other: ConfirmationEvent = serde_json::from_str(
            r#"{"v":1,"id":"x","at":"t","type":"share.accepted","appid":"wx"}"#,
        )
        .unwrap();
        assert_eq!(other.kind, ConfirmationKind::Other);
    }
}
