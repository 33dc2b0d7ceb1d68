//! The component token cache, its fetch lock and the verify ticket: the Redis side of `token`.
//!
//! Keys (from [`Keys`]): `token` holds the token JSON with a TTL equal to the token's life;
//! `token:lock` is the fetch lock (`SET NX PX` with a random owner, released by its owner only);
//! `ticket` is the verify ticket hash (fields `ticket`, `set_at`); `ticket:request` is the
//! 10-minute claim on asking WeChat for a ticket push (`SET NX PX`); `stats` counts
//! `token_refreshes`, which doubles as the generation number. [`ExternalTokenKey`] reads the
//! key another program (the platform's SDK) keeps its token under, for the `redis` token source.

use std::sync::LazyLock;

use redis::Script;

use super::conn::RedisConn;
use super::{Keys, Queue, StoreError};

struct Scripts {
    store: Script,
    invalidate: Script,
    unlock: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    store: Script::new(include_str!("lua/token_store.lua")),
    invalidate: Script::new(include_str!("lua/token_invalidate.lua")),
    unlock: Script::new(include_str!("lua/token_unlock.lua")),
});

/// What Redis holds about the token and the ticket, for `envshare status` (never the values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenMeta {
    /// Whether a token is cached.
    pub token_cached: bool,
    /// How long the cached token lives on (ms); `None` without a token or without expiry.
    pub token_ttl_ms: Option<u64>,
    /// Whether a verify ticket is stored.
    pub ticket_stored: bool,
    /// When the ticket was stored (ms), when known.
    pub ticket_set_at_ms: Option<u64>,
}

/// The verify ticket and when it was stored.
#[derive(Clone)]
pub struct StoredTicket {
    /// The ticket (the caller wraps it in a secret at once).
    pub ticket: String,
    /// When it was stored (ms), when known.
    pub set_at_ms: Option<u64>,
}

impl std::fmt::Debug for StoredTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTicket")
            .field("set_at_ms", &self.set_at_ms)
            .finish_non_exhaustive()
    }
}

/// The token, lock and ticket keys of one queue on one connection. Cheap to clone.
#[derive(Clone)]
pub struct TokenStore {
    conn: RedisConn,
    token: String,
    lock: String,
    ticket: String,
    ticket_request: String,
    stats: String,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("token_key", &self.token)
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    /// The keys of `keys`' queue, on `conn`.
    pub fn new(conn: impl Into<RedisConn>, keys: &Keys) -> Self {
        Self {
            conn: conn.into(),
            token: keys.token(),
            lock: keys.token_lock(),
            ticket: keys.ticket(),
            ticket_request: keys.ticket_request(),
            stats: keys.stats(),
        }
    }

    /// The ticket key's name, for messages that tell an operator where the ticket goes.
    pub fn ticket_key(&self) -> &str {
        &self.ticket
    }

    /// The token key's name, for logs.
    pub fn token_key(&self) -> &str {
        &self.token
    }

    /// The cached token JSON, if any.
    pub async fn read_token(&self) -> Result<Option<String>, StoreError> {
        redis::cmd("GET")
            .arg(&self.token)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("read token"))
    }

    /// Takes the fetch lock for `owner` for `ttl_ms` if nobody holds it.
    pub async fn try_lock(&self, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        self.set_nx_px(&self.lock, owner, ttl_ms, "lock token")
            .await
    }

    /// `SET key owner NX PX ttl_ms`: whether this call took `key` (nobody held it).
    async fn set_nx_px(
        &self,
        key: &str,
        owner: &str,
        ttl_ms: u64,
        op: &'static str,
    ) -> Result<bool, StoreError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis(op))?;
        Ok(set.is_some())
    }

    /// Whether anybody holds the fetch lock.
    pub async fn is_locked(&self) -> Result<bool, StoreError> {
        redis::cmd("EXISTS")
            .arg(&self.lock)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("check token lock"))
    }

    /// Releases the fetch lock if `owner` still holds it; returns whether it did.
    pub async fn unlock(&self, owner: &str) -> Result<bool, StoreError> {
        let released: i64 = SCRIPTS
            .unlock
            .key(&self.lock)
            .arg(owner)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("unlock token"))?;
        Ok(released == 1)
    }

    /// Stores a fetched token while `owner` still holds the lock, releasing it. `json_prefix`
    /// is the token JSON up to `"generation":`; the script appends the new generation and `}`.
    /// Returns the generation, or 0 when the lock was no longer `owner`'s (nothing written).
    pub async fn store_token(
        &self,
        owner: &str,
        json_prefix: &str,
        life_ms: u64,
    ) -> Result<u64, StoreError> {
        SCRIPTS
            .store
            .key(&self.token)
            .key(&self.lock)
            .key(&self.stats)
            .arg(owner)
            .arg(json_prefix)
            .arg(life_ms.max(1))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("store token"))
    }

    /// Deletes the cached token if it is still the one of `generation` fetched at
    /// `fetched_at_ms`; returns whether it did.
    pub async fn invalidate_token(
        &self,
        generation: u64,
        fetched_at_ms: u64,
    ) -> Result<bool, StoreError> {
        let deleted: i64 = SCRIPTS
            .invalidate
            .key(&self.token)
            .arg(generation)
            .arg(fetched_at_ms)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("invalidate token"))?;
        Ok(deleted == 1)
    }

    /// The stored verify ticket, if any (the caller wraps it in a secret at once).
    pub async fn read_ticket(&self) -> Result<Option<String>, StoreError> {
        redis::cmd("HGET")
            .arg(&self.ticket)
            .arg("ticket")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("read ticket"))
    }

    /// The stored verify ticket with the time it was stored, if any.
    pub async fn read_ticket_with_time(&self) -> Result<Option<StoredTicket>, StoreError> {
        let (ticket, set_at): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(&self.ticket)
            .arg("ticket")
            .arg("set_at")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("read ticket"))?;
        Ok(ticket.map(|ticket| StoredTicket {
            ticket,
            set_at_ms: set_at,
        }))
    }

    /// Claims the right to ask WeChat for a ticket push for `ttl_ms` (`SET NX PX`): `true` for
    /// exactly one caller per period, across processes.
    pub async fn claim_ticket_request(&self, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        self.set_nx_px(&self.ticket_request, owner, ttl_ms, "claim ticket request")
            .await
    }

    /// How long until another ticket push may be asked for (ms); `None` when it may be now.
    pub async fn ticket_request_wait_ms(&self) -> Result<Option<u64>, StoreError> {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&self.ticket_request)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("ticket request ttl"))?;
        Ok(u64::try_from(pttl).ok())
    }

    /// Stores the verify ticket, with the time it was stored (ms).
    pub async fn set_ticket(&self, ticket: &str, set_at_ms: u64) -> Result<(), StoreError> {
        redis::cmd("HSET")
            .arg(&self.ticket)
            .arg("ticket")
            .arg(ticket)
            .arg("set_at")
            .arg(set_at_ms)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("set ticket"))
    }

    /// Whether a token is cached and a ticket stored, with their ages; never the values.
    pub async fn meta(&self) -> Result<TokenMeta, StoreError> {
        let (pttl, has_ticket, set_at): (i64, bool, Option<u64>) = redis::pipe()
            .cmd("PTTL")
            .arg(&self.token)
            .cmd("HEXISTS")
            .arg(&self.ticket)
            .arg("ticket")
            .cmd("HGET")
            .arg(&self.ticket)
            .arg("set_at")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("token meta"))?;
        Ok(TokenMeta {
            // PTTL: -2 no key, -1 no expiry.
            token_cached: pttl != -2,
            token_ttl_ms: u64::try_from(pttl).ok(),
            ticket_stored: has_ticket,
            ticket_set_at_ms: set_at,
        })
    }
}

/// A token kept by another program (the platform's SDK) under a key of its choosing, as
/// envshare's `redis` token source reads it. Only `GET` and `PTTL` are ever sent: the key is
/// never written.
#[derive(Clone)]
pub struct ExternalTokenKey {
    conn: RedisConn,
    key: String,
}

impl std::fmt::Debug for ExternalTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalTokenKey")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What [`ExternalTokenKey::read`] found: the raw value and its remaining life.
pub struct ExternalTokenValue {
    /// The value's bytes as stored (the caller wraps what it extracts in a secret at once).
    pub raw: Vec<u8>,
    /// The key's remaining time to live (ms); `None` when it has no expiry.
    pub ttl_ms: Option<u64>,
}

impl std::fmt::Debug for ExternalTokenValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalTokenValue")
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl ExternalTokenKey {
    /// The key `key` on `conn`.
    pub fn new(conn: impl Into<RedisConn>, key: impl Into<String>) -> Self {
        Self {
            conn: conn.into(),
            key: key.into(),
        }
    }

    /// The key's name, for messages.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value and its time to live, or `None` when the key does not exist. A key of another
    /// type than string is an error (`WRONGTYPE`).
    pub async fn read(&self) -> Result<Option<ExternalTokenValue>, StoreError> {
        // One key, so one slot: the pipeline works on a cluster too.
        let (raw, pttl): (Option<Vec<u8>>, i64) = redis::pipe()
            .cmd("GET")
            .arg(&self.key)
            .cmd("PTTL")
            .arg(&self.key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("read external token"))?;
        Ok(raw.map(|raw| ExternalTokenValue {
            raw,
            ttl_ms: u64::try_from(pttl).ok(),
        }))
    }

    /// Writes `value` with a life of `ttl_ms` (none when `None`): what the platform's SDK does.
    /// envshare never calls this; tests and the demo stand in for the SDK with it.
    pub async fn write(&self, value: &str, ttl_ms: Option<u64>) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&self.key).arg(value);
        if let Some(ttl) = ttl_ms {
            cmd.arg("PX").arg(ttl.max(1));
        }
        cmd.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("write external token"))
    }
}

impl Queue {
    /// The token, lock and ticket keys of this queue, on its connection.
    pub fn token_store(&self) -> TokenStore {
        TokenStore::new(self.connection(), self.keys())
    }
}
