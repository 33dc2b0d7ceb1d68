//! Tests: worker.
