//! The events stream `envshare:{QUEUE}:events`: consumer groups, reads, acks and inspection.
//!
//! The queue's scripts append to the stream (outbox); everything that reads it goes through
//! here: [`EventReader`] for consumers such as `envshare events tail`, [`read_all`] for tests
//! and small inspections, and the group operations the confirmation watchers use.

use std::collections::HashMap;
use std::time::Duration;

use super::conn::{self, ConnectOptions, RedisConn};
use super::{Keys, Queue, StoreError};
use crate::events::Event;

/// Why reading events failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Redis failed; retryable when the connection broke or timed out.
    #[error("events {op}: Redis error: {source}")]
    Redis {
        /// The operation (`connect`, `create group`, `read`, `ack`, `range`).
        op: &'static str,
        /// The Redis error.
        #[source]
        source: redis::RedisError,
    },
    /// A stream entry did not hold a valid event (written by something else). Not retryable.
    #[error("events {op}: malformed entry {entry_id}: {detail}")]
    Malformed {
        /// The operation.
        op: &'static str,
        /// The stream entry id.
        entry_id: String,
        /// What was wrong.
        detail: String,
    },
}

impl EventError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            EventError::Redis { source, .. } => super::error::redis_error_is_retryable(source),
            EventError::Malformed { .. } => false,
        }
    }
}

/// An event read from the stream, with its stream entry id (for [`EventReader::ack`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// The stream entry id (`1764460800000-0`), not the event's stable id.
    pub entry_id: String,
    /// The event.
    pub event: Event,
}

/// Where a new consumer group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// From the oldest event still in the stream (`0`).
    Beginning,
    /// Only events added after the group is created (`$`).
    New,
}

impl StartFrom {
    fn id(self) -> &'static str {
        match self {
            StartFrom::Beginning => "0",
            StartFrom::New => "$",
        }
    }
}

/// A consumer in a consumer group of a queue's events stream (`XREADGROUP`).
///
/// It owns a dedicated connection, because `XREADGROUP … BLOCK` holds the connection while it
/// waits. It first re-reads its own pending entries (delivered before, never acked, e.g. before a
/// crash), then new ones.
#[derive(Debug)]
pub struct EventReader {
    conn: RedisConn,
    stream: String,
    group: String,
    consumer: String,
    pending_done: bool,
}

/// A stream entry id as (ms, seq), for comparisons; "0-0" for anything unparsable.
pub(crate) fn entry_id(s: &str) -> (u64, u64) {
    let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn parse_entry(op: &'static str, entry_id: String, fields: &[String]) -> Result<Event, EventError> {
    Event::from_entry_fields(fields).map_err(|e| EventError::Malformed {
        op,
        entry_id,
        detail: e.to_string(),
    })
}

/// `XREADGROUP` / `XAUTOCLAIM` entries: id, and fields (`None` when the entry was trimmed while
/// pending).
type Entries = Vec<(String, Option<Vec<String>>)>;
type GroupReply = Option<Vec<(String, Entries)>>;

/// `XGROUP CREATE … MKSTREAM`; an existing group (BUSYGROUP) is fine.
async fn create_group(
    conn: &mut RedisConn,
    stream: &str,
    group: &str,
    start: StartFrom,
) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg(start.id())
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
        _ => Ok(()),
    }
}

impl EventReader {
    /// Connects and creates the group if it does not exist (`XGROUP CREATE … MKSTREAM`); an
    /// existing group keeps its position and `start` is ignored. A `redis+cluster://` URL
    /// connects to Redis Cluster.
    pub async fn connect(
        redis_url: &str,
        keys: &Keys,
        group: &str,
        consumer: &str,
        start: StartFrom,
    ) -> Result<Self, EventError> {
        Self::connect_with(redis_url, false, keys, group, consumer, start).await
    }

    /// [`EventReader::connect`], in cluster mode when `cluster` is set or the URL's scheme is
    /// `redis+cluster://` (see [`parse_target`](crate::redis_url::parse_target)).
    pub async fn connect_with(
        redis_url: &str,
        cluster: bool,
        keys: &Keys,
        group: &str,
        consumer: &str,
        start: StartFrom,
    ) -> Result<Self, EventError> {
        let redis = |op| move |source| EventError::Redis { op, source };
        // A connection of its own (also on a cluster, where the client multiplexes one
        // connection per node), with no response timeout: a blocking read legitimately waits
        // for its BLOCK time, and would stall other commands queued behind it.
        let options = ConnectOptions {
            response_timeout: None,
            ..ConnectOptions::default()
        };
        let mut conn = conn::connect_with(redis_url, cluster, options)
            .await
            .map_err(redis("connect"))?;
        let stream = keys.events();
        create_group(&mut conn, &stream, group, start)
            .await
            .map_err(redis("create group"))?;
        Ok(Self {
            conn,
            stream,
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            pending_done: false,
        })
    }

    /// Reads up to `count` events, waiting up to `block` for new ones; empty when none came.
    ///
    /// Entries whose content was trimmed away while pending are acked and skipped.
    pub async fn read(
        &mut self,
        count: usize,
        block: Duration,
    ) -> Result<Vec<StreamEvent>, EventError> {
        loop {
            let from = if self.pending_done { ">" } else { "0" };
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(count.max(1));
            if self.pending_done {
                cmd.arg("BLOCK").arg(block.as_millis() as u64);
            }
            cmd.arg("STREAMS").arg(&self.stream).arg(from);
            let reply: GroupReply = cmd
                .query_async(&mut self.conn)
                .await
                .map_err(|source| EventError::Redis { op: "read", source })?;
            let entries: Vec<_> = reply
                .unwrap_or_default()
                .into_iter()
                .flat_map(|(_, e)| e)
                .collect();
            if !self.pending_done && entries.is_empty() {
                self.pending_done = true;
                continue;
            }
            let mut out = Vec::with_capacity(entries.len());
            let mut trimmed = Vec::new();
            for (entry_id, fields) in entries {
                match fields {
                    Some(fields) => out.push(StreamEvent {
                        event: parse_entry("read", entry_id.clone(), &fields)?,
                        entry_id,
                    }),
                    None => trimmed.push(entry_id),
                }
            }
            if !trimmed.is_empty() {
                self.ack(&trimmed).await?;
            }
            if out.is_empty() && !self.pending_done {
                continue;
            }
            return Ok(out);
        }
    }

    /// Acknowledges processed entries (`XACK`), by stream entry id.
    pub async fn ack(&mut self, entry_ids: &[String]) -> Result<(), EventError> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        redis::cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(entry_ids)
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(|source| EventError::Redis { op: "ack", source })
    }
}

/// Reads the whole stream of a queue, oldest first, in pages of 1,000 (`XRANGE`); for tests and
/// small inspections, not for consumers (use [`EventReader`]).
pub async fn read_all<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
) -> Result<Vec<StreamEvent>, EventError> {
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
            out.push(StreamEvent {
                event: parse_entry("range", entry_id.clone(), &fields)?,
                entry_id,
            });
        }
        if n < 1000 {
            return Ok(out);
        }
    }
}

impl Queue {
    /// Up to `count` events after stream entry `after` (exclusive), oldest first, without
    /// waiting (`XRANGE (after + COUNT n`): for readers that poll on the queue's shared
    /// connection, where a blocking read would hold it. `after` is a stream entry id
    /// (`1764460800000-0`), checked by the caller.
    pub async fn events_after(
        &self,
        after: &str,
        count: usize,
    ) -> Result<Vec<StreamEvent>, EventError> {
        let page = self
            .range_after(after, count)
            .await
            .map_err(|source| EventError::Redis {
                op: "range",
                source,
            })?;
        page.into_iter()
            .map(|(entry_id, fields)| {
                Ok(StreamEvent {
                    event: parse_entry("range", entry_id.clone(), &fields)?,
                    entry_id,
                })
            })
            .collect()
    }
}

/// A stream entry as read by a group operation: its id and its field/value list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEntry {
    /// The stream entry id (`1764460800000-0`).
    pub id: String,
    /// `type`, T, `event`, JSON (empty when the entry was trimmed while pending).
    pub fields: Vec<String>,
}

fn raw(entries: Entries) -> Vec<RawEntry> {
    entries
        .into_iter()
        .map(|(id, f)| RawEntry {
            id,
            fields: f.unwrap_or_default(),
        })
        .collect()
}

/// What `XINFO STREAM` and `XINFO GROUPS` say about the stream and one group (Redis 7 fields;
/// `None` where the server did not say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupInfo {
    /// Entries ever added to the stream.
    pub entries_added: Option<u64>,
    /// Entries in the stream now.
    pub length: Option<u64>,
    /// The id of the oldest entry still in the stream.
    pub first_entry_id: String,
    /// The last entry delivered to the group.
    pub last_delivered_id: String,
    /// The group's position in everything ever added.
    pub entries_read: Option<u64>,
    /// Entries not yet delivered to the group.
    pub lag: Option<u64>,
}

type InfoMap = HashMap<String, redis::Value>;

impl Queue {
    /// Creates consumer group `group` on the events stream if it does not exist.
    pub(crate) async fn create_group(
        &self,
        group: &str,
        start: StartFrom,
    ) -> Result<(), StoreError> {
        create_group(&mut self.connection(), &self.keys().events(), group, start)
            .await
            .map_err(StoreError::redis("create group"))
    }

    /// Up to `count` new entries for `consumer` of `group` (`XREADGROUP … >`, no blocking).
    /// A missing group is [`StoreError::NoGroup`].
    pub(crate) async fn read_group(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<RawEntry>, StoreError> {
        let op = "read group";
        let reply: GroupReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("STREAMS")
            .arg(self.keys().events())
            .arg(">")
            .query_async(&mut self.connection())
            .await
            .map_err(|e| StoreError::redis_or_no_group(op, e))?;
        Ok(reply
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(_, e)| raw(e))
            .collect())
    }

    /// Takes over up to `count` entries of `group` pending for at least `min_idle` with other
    /// consumers (`XAUTOCLAIM`).
    pub(crate) async fn autoclaim(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<RawEntry>, StoreError> {
        let (_next, entries, _deleted): (String, Entries, Vec<String>) = redis::cmd("XAUTOCLAIM")
            .arg(self.keys().events())
            .arg(group)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64)
            .arg("0")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.connection())
            .await
            .map_err(|e| StoreError::redis_or_no_group("autoclaim", e))?;
        Ok(raw(entries))
    }

    /// Removes `consumer` from `group` if nothing is pending for it (pending entries stay for
    /// [`autoclaim`](Self::autoclaim)). Returns whether it was removed.
    pub(crate) async fn leave_group(
        &self,
        group: &str,
        consumer: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.connection();
        let stream = self.keys().events();
        let mine: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(group)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(consumer)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::redis("leave group"))?;
        if !mine.is_empty() {
            return Ok(false);
        }
        let _: u64 = redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(&stream)
            .arg(group)
            .arg(consumer)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::redis("leave group"))?;
        Ok(true)
    }

    /// The stream's and `group`'s counters (`XINFO STREAM`, `XINFO GROUPS`); `None` when the
    /// stream or the group does not exist.
    pub(crate) async fn group_info(&self, group: &str) -> Result<Option<GroupInfo>, StoreError> {
        let op = "group info";
        let mut conn = self.connection();
        let stream = self.keys().events();
        let info: InfoMap = match redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&stream)
            .query_async(&mut conn)
            .await
        {
            Ok(info) => info,
            // XINFO STREAM on a missing key is an error reply (`ERR no such key`), not nil.
            Err(e) if e.to_string().contains("no such key") => {
                return Ok(None);
            }
            Err(e) => return Err(StoreError::redis(op)(e)),
        };
        let groups: Vec<InfoMap> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::redis(op))?;
        let text = |m: &InfoMap, k: &str| -> Option<String> {
            m.get(k).and_then(|v| redis::from_redis_value_ref(v).ok())
        };
        let number = |m: &InfoMap, k: &str| -> Option<u64> {
            m.get(k).and_then(|v| redis::from_redis_value_ref(v).ok())
        };
        let Some(g) = groups
            .iter()
            .find(|g| text(g, "name").as_deref() == Some(group))
        else {
            return Ok(None);
        };
        Ok(Some(GroupInfo {
            entries_added: number(&info, "entries-added"),
            length: number(&info, "length"),
            first_entry_id: text(&info, "recorded-first-entry-id").unwrap_or_default(),
            last_delivered_id: text(g, "last-delivered-id").unwrap_or_default(),
            entries_read: number(g, "entries-read"),
            lag: number(g, "lag"),
        }))
    }
}
