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

/// Events per minute lately ([`Queue::events_per_minute`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRate {
    /// Events in the last minute, or the recent rate scaled to a minute.
    pub per_minute: u64,
    /// Scaled from the newest entries (more were written in the last minute than sampled).
    pub estimated: bool,
}

/// Stream entries as XRANGE/XREVRANGE return them: id, then the flat field/value list.
type Range = Vec<(String, Vec<String>)>;

fn entries(range: Range) -> Vec<FeedEntry> {
    range
        .into_iter()
        .map(|(entry_id, fields)| {
            let mut entry = FeedEntry {
                entry_id,
                kind: String::new(),
                json: String::new(),
            };
            for pair in fields.chunks_exact(2) {
                match pair[0].as_str() {
                    "type" => entry.kind.clone_from(&pair[1]),
                    "event" => entry.json.clone_from(&pair[1]),
                    _ => {}
                }
            }
            entry
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
    pub async fn feed_after(
        &self,
        after: &str,
        count: usize,
    ) -> Result<Vec<FeedEntry>, StoreError> {
        let range = self
            .range_after(after, count)
            .await
            .map_err(StoreError::redis("events after"))?;
        Ok(entries(range))
    }

    /// The one read of entries after `after` (exclusive), oldest first, at most `count`, each
    /// with its flat field/value list: `XRANGE (after + COUNT n`, which never blocks, so
    /// readers that poll may use the queue's shared connection. Behind [`Queue::feed_after`]
    /// (raw entries) and [`Queue::events_after`] (parsed events).
    pub(crate) async fn range_after(&self, after: &str, count: usize) -> redis::RedisResult<Range> {
        redis::cmd("XRANGE")
            .arg(self.keys().events())
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.connection())
            .await
    }

    /// Events per minute lately, from the newest `sample` entries' ids (which carry their time):
    /// when some of them are older than a minute, the exact count of the last minute; when all
    /// `sample` are newer, the rate they were written at, scaled to a minute (`estimated`).
    /// One bounded `XREVRANGE`, whatever the stream's length or rate.
    pub async fn events_per_minute(&self, sample: usize) -> Result<EventRate, StoreError> {
        let sample = sample.max(2);
        let newest: Range = redis::cmd("XREVRANGE")
            .arg(self.keys().events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(sample)
            .query_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("events per minute"))?;
        let now = self.now_ms();
        let times: Vec<u64> = newest
            .iter()
            .filter_map(|(id, _)| id.split_once('-').and_then(|(ms, _)| ms.parse().ok()))
            .collect();
        let from = now.saturating_sub(60_000);
        let within = times.iter().filter(|t| **t >= from).count() as u64;
        Ok(match times.last() {
            Some(oldest) if times.len() == sample && *oldest >= from => EventRate {
                per_minute: within * 60_000 / now.saturating_sub(*oldest).max(1),
                estimated: true,
            },
            _ => EventRate {
                per_minute: within,
                estimated: false,
            },
        })
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
