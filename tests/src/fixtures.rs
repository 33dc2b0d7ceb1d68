//! Small helpers every test uses: free ports, queue names, appids, polling.

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use envshare::store::{AppResult, Outcome, ShareJob};
use envshare::{AppId, QueueName};

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it; it is released on
/// return, so bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// A queue name no other test in any process uses: `prefix` (cut to 40 characters), a counter
/// and random hex, e.g. `retry-3-9f2c41d07a`.
///
/// Panics if `prefix` has characters a [`QueueName`] does not allow.
pub fn unique_queue(prefix: &str) -> QueueName {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let prefix: String = prefix.chars().take(40).collect();
    let name = format!(
        "{prefix}-{n}-{:010x}",
        rand::random::<u64>() & 0xff_ffff_ffff
    );
    QueueName::parse(&name).unwrap_or_else(|e| panic!("unique_queue({prefix:?}): {e}"))
}

/// The test appid number `i`: `wx` and `i` as 16 hex digits, e.g. `appid(1)` is
/// `wx0000000000000001`.
///
/// A test file whose appids should be told apart from other files' ones (in the shared Redis,
/// in logs) keeps a base of its own and asks for `appid(BASE + i)`, e.g. `0xc0_0000 + i`.
pub fn appid(i: u64) -> AppId {
    AppId::parse(&format!("wx{i:016x}")).expect("wx and 16 hex digits is a valid appid")
}

/// The outcome of `job` when WeChat accepts every appid; with `url`, each appid's confirmation
/// URL is `url` followed by the appid.
pub fn all_accepted(job: &ShareJob, url: Option<&str>) -> Outcome {
    Outcome::Done(
        job.appids
            .iter()
            .map(|a| AppResult::Accepted {
                appid: a.clone(),
                confirm_url: url.map(|u| format!("{u}{a}")),
            })
            .collect(),
    )
}

/// Polls `cond` every 20 ms until it returns true (then `true`) or `timeout` passes (then
/// `false`; `cond` is checked one last time at the deadline).
///
/// Use as `assert!(wait_until(Duration::from_secs(5), || async { … }).await, "what was awaited")`.
#[must_use = "assert on the result: false means the condition never held"]
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Locks `m`, poisoned or not: a test that panicked while holding the lock leaves what it
/// guards usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appids_are_wx_and_sixteen_hex_digits() {
        assert_eq!(appid(1).as_str(), "wx0000000000000001");
        assert_eq!(appid(0xc0_0000 + 3).as_str(), "wx0000000000c00003");
    }
}
