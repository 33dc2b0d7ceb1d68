//! sandbox (in progress).
