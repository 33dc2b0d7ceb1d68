//! envshare shares WeChat cloud environments with many Mini Programs at once, through a durable
//! Redis queue, on behalf of a third-party platform.
//!
//! # Layout
//!
//! Lowest layer first; a module uses only modules of its own layer or below.
//!
//! - Foundation: `ids` (validated identifiers, exported at the root: [`AppId`], [`EnvId`], [`JobId`], [`BatchId`],
//!   [`QueueName`]), [`clock`], [`redis_url`], [`telemetry`], [`events`] (the event types),
//!   [`schedule`] (durations, the confirmation schedule, the quota reset in UTC+8) and
//!   [`config`] (settings from the environment and an optional TOML file).
//! - Storage: [`store`] owns every Redis key, Lua script and command: the queue, batches, the
//!   events stream, the confirmation schedule, the token cache and ticket, the rate limit.
//! - Domain: [`wechat`] (the API client and errcode table), [`token`], [`throttle`],
//!   [`confirm`] (confirmation tracking), [`webhook`] (signatures and the webhook schedule's
//!   operator view), [`import`] (the import flow: read and validate the input, skip bound
//!   pairs, plan jobs, enqueue, seal the batch) [`sync`] (desired-state plans: what to
//!   share and unshare) [`export`] (per-appid results as CSV or JSONL) and [`inspect`] (the operator's views of
//!   batches, status and the pause, shared by the command line and the API).
//! - Service: [`worker`] (the apalis worker, its backend and HTTP endpoints), [`serve`] (`envshare
//!   serve`: the producer's HTTP face, with the WeChat callback) and `sandbox` (feature
//!   `sandbox`: a fake WeChat API and a local redis-server for tests and the demo).
#![deny(missing_docs)]
// Items only the crate uses are `pub(crate)`, so the public API is what binaries and tests need.
#![warn(unreachable_pub)]

pub mod clock;
pub mod config;
pub mod confirm;
pub mod events;
pub mod export;
mod ids;
pub mod import;
pub mod inspect;
pub mod redis_url;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod schedule;
pub mod serve;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod throttle;
pub mod token;
pub mod webhook;
pub mod wechat;
pub mod worker;

pub use ids::{AppId, BatchId, EnvId, IdError, JobId, QueueName};
