//! Throttling of WeChat calls across every worker: the global rate limit
//! (`ENVSHARE_RATE_LIMIT`) and the time the daily quota resets (after errcode 45009).
//!
//! The rate limit is GCRA in one Lua script on the queue's `rate` key ([`RateStore`]),
//! timed by Redis's clock so hosts with drifting clocks still share one schedule. The default
//! burst of 1 spaces calls evenly: 20/s means one call every 50 ms, not 20 at the top of each
//! second.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::config::QuotaReset;
use crate::store::conn::RedisConn;
use crate::store::{Keys, RateStore, StoreError};

/// Asia/Shanghai is UTC+8 all year (no daylight saving time since 1991).
pub const SHANGHAI_OFFSET_MS: u64 = 8 * 3_600_000;

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

/// The first moment strictly after `now_ms` (Unix ms) when the Shanghai clock (UTC+8, no
/// daylight saving time) shows `reset` (`ENVSHARE_QUOTA_RESET`, default 00:00): when a quota
/// spent at `now_ms` (errcode 45009) is available again, so the pause lasts until then.
///
/// One implementation: this is [`QuotaReset::next_after`] in the unsigned ms the queue's pause
/// uses.
pub fn next_quota_reset(now_ms: u64, reset: QuotaReset) -> u64 {
    // Unix ms fit an i64 for the next 292 million years; clamp rather than wrap past that.
    let now = i64::try_from(now_ms).unwrap_or(i64::MAX / 2);
    u64::try_from(reset.next_after(now)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-30T00:00:00Z = 2026-11-30 08:00 in Shanghai.
    const NOV30_UTC_MIDNIGHT: u64 = 1_795_996_800_000;
    const H: u64 = 3_600_000;
    const DAY_MS: u64 = 24 * H;

    #[test]
    fn the_reset_after_a_shanghai_afternoon_is_the_next_shanghai_midnight() {
        // 2026-11-30 15:00 Shanghai (07:00 UTC) → 2026-12-01 00:00 Shanghai = 11-30 16:00 UTC.
        let now = NOV30_UTC_MIDNIGHT + 7 * H;
        let next = next_quota_reset(now, QuotaReset::default());
        assert_eq!(next, NOV30_UTC_MIDNIGHT + 16 * H);
    }

    #[test]
    fn the_reset_just_after_shanghai_midnight_is_a_day_later() {
        // 2026-12-01 00:00:01 Shanghai: the quota just reset; the next reset is a day away.
        let midnight = NOV30_UTC_MIDNIGHT + 16 * H;
        assert_eq!(
            next_quota_reset(midnight + 1_000, QuotaReset::default()),
            midnight + 24 * H
        );
        // Exactly at midnight counts as after it: the reset is the next one.
        assert_eq!(
            next_quota_reset(midnight, QuotaReset::default()),
            midnight + 24 * H
        );
        // One ms before midnight: the reset is in one ms.
        assert_eq!(
            next_quota_reset(midnight - 1, QuotaReset::default()),
            midnight
        );
    }

    #[test]
    fn the_reset_before_utc_midnight_uses_the_shanghai_date() {
        // 2026-11-29 23:30 UTC is already 2026-11-30 07:30 in Shanghai: next midnight in
        // Shanghai is 2026-11-30 16:00 UTC, not 2026-11-30 00:00 UTC.
        let now = NOV30_UTC_MIDNIGHT - H / 2;
        assert_eq!(
            next_quota_reset(now, QuotaReset::default()),
            NOV30_UTC_MIDNIGHT + 16 * H
        );
    }

    #[test]
    fn a_custom_reset_time_later_today_is_today() {
        let reset = QuotaReset::parse("09:30").unwrap();
        // 08:00 Shanghai → 09:30 Shanghai the same day = 01:30 UTC.
        assert_eq!(
            next_quota_reset(NOV30_UTC_MIDNIGHT, reset),
            NOV30_UTC_MIDNIGHT + H + H / 2
        );
        // 10:00 Shanghai → 09:30 the next day.
        assert_eq!(
            next_quota_reset(NOV30_UTC_MIDNIGHT + 2 * H, reset),
            NOV30_UTC_MIDNIGHT + 25 * H + H / 2
        );
    }

    #[test]
    fn a_reset_is_always_within_one_day_ahead() {
        for step in 0..2000u64 {
            let now = NOV30_UTC_MIDNIGHT + step * 7_919_993;
            for reset in [QuotaReset::default(), QuotaReset::parse("13:07").unwrap()] {
                let next = next_quota_reset(now, reset);
                assert!(next > now && next <= now + DAY_MS, "{now} {next}");
                let local = (next + SHANGHAI_OFFSET_MS) % DAY_MS;
                assert_eq!(
                    local,
                    (u64::from(reset.hour()) * 60 + u64::from(reset.minute())) * 60_000
                );
            }
        }
    }
}
