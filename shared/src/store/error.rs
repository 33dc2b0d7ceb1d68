//! The storage layer's error type, and the one place that decides whether a Redis error is
//! worth retrying.

use redis::{RedisError, RetryMethod};

/// Why a storage operation failed. Every variant names the operation (`enqueue`, `claim`, …).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Redis failed or was unreachable; see [`StoreError::is_retryable`].
    #[error("queue {op} failed: Redis error: {source}")]
    Redis {
        /// The operation.
        op: &'static str,
        /// The Redis error.
        #[source]
        source: RedisError,
    },
    /// Data in Redis did not have the expected shape (a payload or record written by something
    /// else). Not retryable.
    #[error("queue {op} failed: malformed {what}: {detail}")]
    Malformed {
        /// The operation.
        op: &'static str,
        /// What was malformed (`payload of job 01J…`, `script reply`, …).
        what: String,
        /// The parse error.
        detail: String,
    },
    /// The events stream has no such consumer group (`NOGROUP`): create it and try again.
    #[error("queue {op} failed: the consumer group does not exist")]
    NoGroup {
        /// The operation.
        op: &'static str,
    },
    /// The caller passed something the queue cannot take (e.g. a job without appids). Not
    /// retryable.
    #[error("queue {op} failed: invalid input: {detail}")]
    Invalid {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl StoreError {
    /// The operation that failed.
    pub fn op(&self) -> &'static str {
        match self {
            StoreError::Redis { op, .. }
            | StoreError::Malformed { op, .. }
            | StoreError::NoGroup { op }
            | StoreError::Invalid { op, .. } => op,
        }
    }

    /// Whether the same call may succeed later: Redis connection errors, timeouts and
    /// `LOADING`/`BUSY`-style server states are retryable; bad data and bad input are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Redis { source, .. } => redis_error_is_retryable(source),
            StoreError::Malformed { .. } | StoreError::Invalid { .. } => false,
            // Retryable once the group is created (`create_group`).
            StoreError::NoGroup { .. } => true,
        }
    }

    pub(crate) fn redis(op: &'static str) -> impl FnOnce(RedisError) -> Self {
        move |source| StoreError::Redis { op, source }
    }

    /// [`StoreError::redis`], or [`StoreError::NoGroup`] for a `NOGROUP` reply.
    pub(crate) fn redis_or_no_group(op: &'static str, source: RedisError) -> Self {
        if source.code() == Some("NOGROUP") {
            StoreError::NoGroup { op }
        } else {
            StoreError::Redis { op, source }
        }
    }

    pub(crate) fn reply(op: &'static str, detail: impl ToString) -> Self {
        StoreError::Malformed {
            op,
            what: "script reply".into(),
            detail: detail.to_string(),
        }
    }
}

/// Whether a Redis error is worth retrying (the connection broke, timed out, or the server is
/// temporarily unable), as opposed to a script or type error that will fail the same way again.
pub(crate) fn redis_error_is_retryable(e: &RedisError) -> bool {
    e.is_timeout()
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || !matches!(e.retry_method(), RetryMethod::NoRetry)
}
