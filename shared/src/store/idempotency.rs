//! The first answers of `POST /api/v1/batches` by `Idempotency-Key`, so a client that sends the
//! same request again (after a timeout, say) gets the same answer and enqueues nothing twice.
//!
//! One string per key, `envshare:{QUEUE}:idempotency:SHA256(KEY)`, holding JSON:
//! `{"fp":FINGERPRINT}` while the first request is being answered (it expires after the claim
//! time, so a crashed server does not hold the key for long), then
//! `{"fp":FINGERPRINT,"status":201,"body":"…"}` for the answer's lifetime.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Queue, StoreError};

/// What [`Queue::idempotency_claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// No request had the key: this one holds it now. Answer it, then
    /// [`Queue::idempotency_record`] the answer (or [`Queue::idempotency_release`] the key).
    Claimed,
    /// A request with the key is being answered now; `fingerprint` is its body's.
    InProgress {
        /// The fingerprint of the request that holds the key.
        fingerprint: String,
    },
    /// The key was answered before.
    Answered(StoredAnswer),
}

/// An answer kept for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// The fingerprint of the request's body.
    #[serde(rename = "fp")]
    pub fingerprint: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The JSON body answered.
    pub body: String,
}

#[derive(Deserialize)]
struct Stored {
    fp: String,
    status: Option<u16>,
    body: Option<String>,
}

fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl Queue {
    /// Claims `key` for a request whose body has `fingerprint`, for `claim_ttl` (`SET NX PX`), or
    /// says what holds it.
    pub async fn idempotency_claim(
        &self,
        key: &str,
        fingerprint: &str,
        claim_ttl: Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        let op = "idempotency claim";
        let k = self.keys.idempotency(&key_hash(key));
        let pending = serde_json::json!({ "fp": fingerprint }).to_string();
        // A key that expires between the SET and the GET is claimed on the next round.
        for _ in 0..3 {
            let set: Option<String> = redis::cmd("SET")
                .arg(&k)
                .arg(&pending)
                .arg("NX")
                .arg("PX")
                .arg(claim_ttl.as_millis().max(1) as u64)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(StoreError::redis(op))?;
            if set.is_some() {
                return Ok(IdempotencyClaim::Claimed);
            }
            let raw: Option<String> = redis::cmd("GET")
                .arg(&k)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(StoreError::redis(op))?;
            let Some(raw) = raw else { continue };
            let stored: Stored = serde_json::from_str(&raw).map_err(|e| StoreError::Malformed {
                op,
                what: "an idempotency record".to_owned(),
                detail: e.to_string(),
            })?;
            return Ok(match (stored.status, stored.body) {
                (Some(status), Some(body)) => IdempotencyClaim::Answered(StoredAnswer {
                    fingerprint: stored.fp,
                    status,
                    body,
                }),
                _ => IdempotencyClaim::InProgress {
                    fingerprint: stored.fp,
                },
            });
        }
        Err(StoreError::reply(
            op,
            "the key kept expiring while it was read",
        ))
    }

    /// Keeps `answer` for `key` for `ttl`.
    pub async fn idempotency_record(
        &self,
        key: &str,
        answer: &StoredAnswer,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let op = "idempotency record";
        let json = serde_json::to_string(answer).map_err(|e| StoreError::reply(op, e))?;
        redis::cmd("SET")
            .arg(self.keys.idempotency(&key_hash(key)))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis(op))
    }

    /// Frees `key` (the request that claimed it failed without an answer worth keeping).
    pub async fn idempotency_release(&self, key: &str) -> Result<(), StoreError> {
        redis::cmd("DEL")
            .arg(self.keys.idempotency(&key_hash(key)))
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("idempotency release"))
    }
}
