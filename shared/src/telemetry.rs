//! Logging set-up shared by the binaries (in progress).
