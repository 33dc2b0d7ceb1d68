//! Following the events stream without a consumer group: a live feed (the console's) reads the
//! entries after the last one it showed, and the overview counts the last minute's entries. No
//! group is created, so a closed browser tab leaves nothing behind in Redis.

use super::{Queue, StoreError};

/// One raw stream entry: its id, its `type` field and its `event` JSON, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// The stream entry id (`1764460800000-0`).
    pub entry_id: String,
    /// The event type (`share.accepted`, …).
    pub kind: String,
    /// The event as its JSON text.
    pub json: String,
}

type Range = Vec<(String, Vec<(String, String)>)>;

fn entries(range: Range) -> Vec<FeedEntry> {
    range
        .into_iter()
        .map(|(entry_id, fields)| {
            let mut kind = String::new();
            let mut json = String::new();
            for (k, v) in fields {
                match k.as_str() {
                    "type" => kind = v,
                    "event" => json = v,
                    _ => {}
                }
            }
            FeedEntry {
                entry_id,
                kind,
                json,
            }
        })
        .collect()
}

impl Queue {
    /// The id of the newest entry of the events stream (`0-0` when it is empty): a feed that
    /// starts now reads after it.
    pub async fn events_tail(&self) -> Result<String, StoreError> {
        let last: Range = redis::cmd("XREVRANGE")
            .arg(self.keys().events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("events tail"))?;
        Ok(last
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |(id, _)| id))
    }

    /// Up to `count` entries after entry `after` (exclusive), oldest first. Does not block.
    pub async fn events_after(
        &self,
        after: &str,
        count: usize,
    ) -> Result<Vec<FeedEntry>, StoreError> {
        let range: Range = redis::cmd("XRANGE")
            .arg(self.keys().events())
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("events after"))?;
        Ok(entries(range))
    }

    /// How many entries the stream got in the `window_ms` before now, counting at most `cap`
    /// (the count is then `cap`, read as "at least"). The entry ids carry their time, so this
    /// is one bounded `XRANGE`.
    pub async fn events_in_last(&self, window_ms: u64, cap: usize) -> Result<u64, StoreError> {
        let from = self.now_ms().saturating_sub(window_ms);
        let ids: Range = redis::cmd("XRANGE")
            .arg(self.keys().events())
            .arg(from)
            .arg("+")
            .arg("COUNT")
            .arg(cap.max(1))
            .query_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("events in last"))?;
        Ok(ids.len() as u64)
    }
}

impl Queue {
    /// The newest `count` entries of the events stream, newest first.
    pub async fn events_latest(&self, count: usize) -> Result<Vec<FeedEntry>, StoreError> {
        let range: Range = redis::cmd("XREVRANGE")
            .arg(self.keys().events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("events latest"))?;
        Ok(entries(range))
    }
}
