//! The durable queue (DESIGN.md §4): Redis keys, Lua scripts, producer, apalis backend, admin.

mod keys;

pub use keys::Keys;
