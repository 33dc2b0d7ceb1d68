//! Tests: queue.
