//! envshare shares WeChat cloud environments with many Mini Programs at once, through a durable
//! Redis queue, on behalf of a third-party platform.
//!
//! # Layout
//!
//! - [`ids`]: validated domain identifiers ([`AppId`], [`EnvId`], [`JobId`], [`BatchId`],
//!   [`QueueName`]).
//! - [`config`]: settings from the environment and an optional TOML file.
//! - [`wechat`]: the WeChat API client, its wire types and the errcode table.
//! - [`token`]: the `component_access_token`, cached in Redis and refreshed by one owner.
//! - [`queue`]: the durable queue: Redis keys, Lua scripts, producer, apalis backend, admin.
//! - [`events`]: event types and the Redis Stream reader.
//! - `sandbox` (feature `sandbox`): a fake WeChat API for tests, the demo and benchmarks.
#![deny(missing_docs)]

pub mod clock;
pub mod config;
pub mod confirm;
pub mod events;
pub mod ids;
pub mod import;
pub mod redis_url;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod token;
pub mod wechat;
pub mod worker;

pub use ids::{AppId, BatchId, EnvId, IdError, JobId, QueueName};
