//! Reading the confirmation events (`share.bound`, `share.unconfirmed`, `batch.confirmed`).
//!
//! They are [`EventKind`](crate::events::EventKind) variants in the same stream as the queue's
//! events (`envshare:{QUEUE}:events`), with the same two fields (`type`, `event`) and the same
//! envelope (`v`, `id`, `at`, `type`).

use crate::events::Event;
use crate::store::{EventError, Keys, read_all};

/// The confirmation events in a queue's stream, oldest first, with their stream entry ids
/// (XRANGE in pages; for tests and inspection — consumers use consumer groups).
pub async fn read_confirmations<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
) -> Result<Vec<(String, Event)>, EventError> {
    Ok(read_all(conn, keys)
        .await?
        .into_iter()
        .filter(|e| e.event.kind.is_confirmation())
        .map(|e| (e.entry_id, e.event))
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::events::{Event, EventKind};
    use crate::ids::{AppId, BatchId, EnvId, JobId};

    #[test]
    fn a_bound_event_round_trips_with_its_type() {
        let e = Event {
            v: 1,
            id: "J.0.wx0123456789abcdef.bound".into(),
            at: "2026-11-30T02:00:00.000Z".into(),
            kind: EventKind::ShareBound {
                job_id: JobId::parse("J").unwrap(),
                batch_id: BatchId::parse("b").unwrap(),
                env: EnvId::parse("e").unwrap(),
                appid: AppId::parse("wx0123456789abcdef").unwrap(),
                accepted_at: "2026-11-30T01:59:00.000Z".into(),
                confirm_seconds: 60.5,
                checks: 2,
            },
            trace_id: None,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""type":"share.bound""#), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        assert!(e.kind.is_confirmation());
    }
}
