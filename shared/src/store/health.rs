//! Liveness and hygiene: PING, the eviction policy check of `/readyz`, the batch hash's
//! confirmation counters, and deleting a whole queue (the demo's clean-up).

use super::{Queue, StoreError};
use crate::ids::BatchId;

/// The server's `maxmemory-policy`, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCheck {
    /// Every server (every cluster master) answers `noeviction`.
    NoEviction,
    /// A server evicts keys under memory pressure: the policy it names.
    Evicting(String),
    /// The policy could not be read from `INFO memory`.
    Unknown,
}

/// The INFO texts in a reply: one (a single server) or one per node (a cluster's map).
fn info_texts(v: &redis::Value) -> redis::RedisResult<Vec<String>> {
    match v {
        redis::Value::Map(nodes) => nodes
            .iter()
            .map(|(_, text)| redis::from_redis_value_ref::<String>(text).map_err(Into::into))
            .collect(),
        other => Ok(vec![redis::from_redis_value_ref::<String>(other)?]),
    }
}

/// The confirmation counters of a batch hash (written by the confirmation watchers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchConfirmation {
    /// Appids bound (`share.bound`).
    pub bound: u64,
    /// Appids not confirmed within the window (`share.unconfirmed`).
    pub unconfirmed: u64,
    /// Whether `batch.confirmed` was emitted.
    pub confirmed: bool,
}

impl Queue {
    /// `PING`: whether Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.connection())
            .await
            .map_err(StoreError::redis("ping"))
    }

    /// The eviction policy of the server, or of every master of a cluster (the first that is not
    /// `noeviction` is reported).
    pub async fn eviction_policy(&self) -> Result<ServerCheck, StoreError> {
        let op = "info memory";
        // One server answers with its INFO text; Redis Cluster (through the cluster client)
        // with a map of node → text.
        let info: redis::Value = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.connection())
            .await
            .map_err(StoreError::redis(op))?;
        let texts = info_texts(&info).map_err(|e| StoreError::reply(op, e))?;
        let policies: Vec<String> = texts
            .iter()
            .filter_map(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("maxmemory_policy:"))
                    .map(|p| p.trim().to_owned())
            })
            .collect();
        if policies.len() != texts.len() || policies.is_empty() {
            return Ok(ServerCheck::Unknown);
        }
        Ok(match policies.iter().find(|p| p.as_str() != "noeviction") {
            Some(p) => ServerCheck::Evicting(p.clone()),
            None => ServerCheck::NoEviction,
        })
    }

    /// The confirmation counters of batch `batch`.
    pub async fn batch_confirmation(
        &self,
        batch: &BatchId,
    ) -> Result<BatchConfirmation, StoreError> {
        let (bound, unconfirmed, confirmed): (Option<u64>, Option<u64>, Option<String>) =
            redis::cmd("HMGET")
                .arg(self.keys().batch(batch))
                .arg("bound")
                .arg("unconfirmed")
                .arg("confirmed")
                .query_async(&mut self.connection())
                .await
                .map_err(StoreError::redis("batch confirmation"))?;
        Ok(BatchConfirmation {
            bound: bound.unwrap_or(0),
            unconfirmed: unconfirmed.unwrap_or(0),
            confirmed: confirmed.as_deref() == Some("1"),
        })
    }

    /// Deletes every key of the queue (`SCAN … MATCH prefix*` and `DEL`, never `KEYS`: the
    /// server may be shared). For throw-away queues such as the demo's.
    pub async fn delete_all(&self) -> Result<(), StoreError> {
        let op = "delete queue";
        let mut conn = self.connection();
        let pattern = format!("{}*", self.keys().prefix());
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(StoreError::redis(op))?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(StoreError::redis(op))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
