//! Throttling of WeChat calls across every worker: the global rate limit
//! (`ENVSHARE_RATE_LIMIT`). When a spent daily quota (errcode 45009) comes back is
//! [`crate::schedule::next_quota_reset`].
//!
//! The rate limit is GCRA in one Lua script on the queue's `rate` key ([`RateStore`]),
//! timed by Redis's clock so hosts with drifting clocks still share one schedule. The default
//! burst of 1 spaces calls evenly: 20/s means one call every 50 ms, not 20 at the top of each
//! second.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::conn::RedisConn;
use crate::store::{Keys, RateStore, StoreError};

/// Taking a rate limit slot failed.
#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    /// Redis failed. Retryable.
    #[error("taking a rate limit slot failed on Redis (transient, retry later)")]
    Redis(#[source] StoreError),
}

/// Counters of one limiter since it was created, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimiterCounters {
    /// Slots taken.
    pub acquired: u64,
    /// Times a caller was told to wait.
    pub throttled: u64,
    /// Total time callers spent waiting (ms).
    pub waited_ms: u64,
}

/// The global rate limit of WeChat calls, shared by every worker through Redis.
///
/// Cheap to share behind an `Arc`; every worker process builds its own over the same key.
pub struct RateLimiter {
    limit: Option<Limit>,
    acquired: AtomicU64,
    throttled: AtomicU64,
    waited_ms: AtomicU64,
}

struct Limit {
    store: RateStore,
    interval_us: u64,
    tolerance_us: u64,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RateLimiter");
        match &self.limit {
            None => d.field("limit", &"none"),
            Some(l) => d
                .field("store", &l.store)
                .field("interval_us", &l.interval_us)
                .field("tolerance_us", &l.tolerance_us),
        };
        d.finish()
    }
}

/// How early a call may come, beyond the burst, so that waiters who wake a little late (waits are
/// whole ms, and tokio timers fire up to a ms after their deadline) do not lose their slot's time:
/// GCRA forgets idle time, so without slack every late wake-up would lower the long-run rate by
/// its lateness (about 3 % at 20/s). A tenth of an interval, at most 5 ms: still evenly spaced.
fn timer_slack_us(interval_us: u64) -> u64 {
    (interval_us / 10).min(5_000)
}

impl RateLimiter {
    /// `per_second` calls per second for all workers together, evenly spaced (burst 1).
    /// `0` (or any value that is not a positive number) means no limit: [`acquire`](Self::acquire)
    /// then returns at once and never touches Redis.
    pub fn new(conn: impl Into<RedisConn>, keys: &Keys, per_second: f64) -> Self {
        Self::with_burst(conn, keys, per_second, 1)
    }

    /// Like [`new`](Self::new), but up to `burst` calls may go back to back after an idle
    /// period (the long-run rate stays `per_second`). `burst` 0 counts as 1.
    pub fn with_burst(
        conn: impl Into<RedisConn>,
        keys: &Keys,
        per_second: f64,
        burst: u32,
    ) -> Self {
        let limit = (per_second.is_finite() && per_second > 0.0).then(|| {
            // At least 1 µs: rates above a million per second are as good as none.
            let interval_us = ((1_000_000.0 / per_second).round() as u64).max(1);
            Limit {
                store: RateStore::new(conn, keys),
                interval_us,
                tolerance_us: interval_us * u64::from(burst.max(1) - 1)
                    + timer_slack_us(interval_us),
            }
        });
        Self {
            limit,
            acquired: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            waited_ms: AtomicU64::new(0),
        }
    }

    /// A limiter that never waits.
    pub fn unlimited() -> Self {
        Self {
            limit: None,
            acquired: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            waited_ms: AtomicU64::new(0),
        }
    }

    /// Whether calls are limited at all.
    pub fn is_limited(&self) -> bool {
        self.limit.is_some()
    }

    /// Takes a slot if one is free now (`Duration::ZERO`), else says how long to wait before
    /// asking again (nothing is taken then).
    pub async fn try_acquire(&self) -> Result<Duration, ThrottleError> {
        let Some(limit) = &self.limit else {
            self.acquired.fetch_add(1, Ordering::Relaxed);
            return Ok(Duration::ZERO);
        };
        let wait_ms = limit
            .store
            .take_slot(limit.interval_us, limit.tolerance_us)
            .await
            .map_err(ThrottleError::Redis)?;
        if wait_ms == 0 {
            self.acquired.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Duration::from_millis(wait_ms))
    }

    /// Waits until a slot is free and takes it. Returns how long it waited.
    ///
    /// Waiters retry after the time the script names; under contention one of them gets the
    /// slot and the others are told the next wait, so the rate holds across hosts.
    pub async fn acquire(&self) -> Result<Duration, ThrottleError> {
        let mut waited = Duration::ZERO;
        loop {
            let wait = self.try_acquire().await?;
            if wait.is_zero() {
                if !waited.is_zero() {
                    self.throttled.fetch_add(1, Ordering::Relaxed);
                    self.waited_ms
                        .fetch_add(waited.as_millis() as u64, Ordering::Relaxed);
                }
                return Ok(waited);
            }
            tokio::time::sleep(wait).await;
            waited += wait;
        }
    }

    /// Counters of this limiter, for metrics.
    pub fn counters(&self) -> RateLimiterCounters {
        RateLimiterCounters {
            acquired: self.acquired.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            waited_ms: self.waited_ms.load(Ordering::Relaxed),
        }
    }
}
