//! The global rate limit's state: one GCRA key (`rate`) shared by every worker, timed by Redis's
//! clock so hosts with drifting clocks still share one schedule.

use std::sync::LazyLock;

use redis::Script;

use super::conn::RedisConn;
use super::{Keys, StoreError};

static GCRA: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/throttle_gcra.lua")));

/// The rate-limit key of one queue on one connection. Cheap to clone.
#[derive(Clone)]
pub struct RateStore {
    conn: RedisConn,
    key: String,
}

impl std::fmt::Debug for RateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateStore")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RateStore {
    /// The rate key of `keys`' queue, on `conn`.
    pub fn new(conn: impl Into<RedisConn>, keys: &Keys) -> Self {
        Self {
            conn: conn.into(),
            key: keys.rate(),
        }
    }

    /// One GCRA step: takes a slot (returns 0) or says how many ms to wait before asking again
    /// (nothing is taken then). `interval_us` is the spacing of slots, `tolerance_us` how far
    /// ahead of schedule a caller may be.
    pub async fn take_slot(&self, interval_us: u64, tolerance_us: u64) -> Result<u64, StoreError> {
        GCRA.key(&self.key)
            .arg(interval_us)
            .arg(tolerance_us)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("rate limit"))
    }
}
