//! envshare's integration and end-to-end tests, compiled as one test binary.
//!
//! Every test gets a real Redis from [`envshare_tests::TestRedis`] and its own queue name, so the
//! tests run in parallel.

mod api;
mod callback;
mod chaos;
mod cli;
mod cluster;
mod config;
mod confirm;
mod console;
mod conventions;
mod events;
mod fuzz;
mod import;
mod layers;
mod operator;
mod ops;
mod queue;
mod reliability;
mod results;
mod sentinel;
mod share;
mod sync;
mod tls;
mod tokensrc;
mod traces;
mod wake;
mod webhooks;
mod wechat;
mod worker;
