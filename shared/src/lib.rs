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
//!   [`confirm`] (confirmation tracking), [`import`] (the import flow: read and validate the
//!   input, skip bound pairs, plan jobs, enqueue, seal the batch) and [`sync`] (desired-state
//!   plans: what to share and unshare).
//! - Service: [`worker`] (the apalis worker, its backend and HTTP endpoints) and `sandbox`
//!   (feature `sandbox`: a fake WeChat API and a local redis-server for tests and the demo).
#![deny(missing_docs)]
// Items only the crate uses are `pub(crate)`, so the public API is what binaries and tests need.
#![warn(unreachable_pub)]

pub mod clock;
pub mod config;
pub mod confirm;
pub mod events;
mod ids;
pub mod import;
pub mod redis_url;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod schedule;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod throttle;
pub mod token;
pub mod wechat;
pub mod worker;

pub use ids::{AppId, BatchId, EnvId, IdError, JobId, QueueName};
