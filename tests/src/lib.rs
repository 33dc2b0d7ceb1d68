//! envshare's test harness: a real Redis for every test, and small helpers.
//!
//! # Where Redis comes from
//!
//! [`TestRedis::shared`] picks the first of these that is available:
//!
//! 1. `ENVSHARE_TEST_REDIS_URL`, if set: an existing server (each test still uses its own queue
//!    name from [`unique_queue`], so tests sharing it do not collide);
//! 2. a private `redis-server` from `PATH`, spawned on a free port in a temporary directory with
//!    AOF on;
//! 3. a Redis container through testcontainers (needs a running Docker daemon);
//! 4. otherwise it panics with a message saying how to get Redis. A test is never skipped.
//!
//! `ENVSHARE_TEST_REDIS=process` or `=container` forces step 2 or 3 (to test the harness itself).
//!
//! [`TestRedis::private`] always starts a server of its own (step 2, else 3) so a fault test can
//! [`kill`](TestRedis::kill), [`restart`](TestRedis::restart) or [`stop`](TestRedis::stop) it.
//!
//! # Lifetimes
//!
//! Each `#[tokio::test]` has its own runtime, but the shared server lives for the whole test
//! process, so nothing here depends on a tokio runtime: servers are spawned with
//! `std::process` (or testcontainers' blocking runner, which owns its runtime). A private server
//! is killed and its directory removed on `Drop`. The shared server is a `static`, which Rust
//! never drops, so an `atexit` hook kills it when the test binary exits; on Linux every
//! `redis-server` is also started with `PR_SET_PDEATHSIG`, so it dies with the test process even
//! when that process is killed. No `redis-server` outlives the tests.
//!
//! # End-to-end stack
//!
//! [`TestStack::start`] adds the sandbox, a queue of the test's own and in-process workers on
//! top of the shared Redis; [`bin_path`] and [`ChildProcess`] run the real binaries.
//!
//! # Layout
//!
//! - `redis`: [`TestRedis`] and its backends (the `redis-server` child is the library's
//!   [`LocalRedis`](envshare::sandbox::LocalRedis), the one spawner shared with `envshare demo`);
//! - `process`: [`bin_path`], [`ChildProcess`] and the spawner that ties children to the test
//!   process;
//! - `cluster`: [`TestCluster`];
//! - `stack`: [`TestStack`];
//! - `fixtures`: [`free_port`], [`unique_queue`], [`appid`], [`wait_until`].

#![deny(missing_docs)]

mod cluster;
mod fixtures;
mod process;
mod redis;
mod stack;

pub use self::redis::{TEST_REDIS_MODE_VAR, TEST_REDIS_URL_VAR, TestRedis};
pub use cluster::TestCluster;
pub use fixtures::{all_accepted, appid, free_port, unique_queue, wait_until};
pub use process::{ChildProcess, bin_path, run_envshare};
pub use stack::{RunningWorker, TestStack, is_share};
