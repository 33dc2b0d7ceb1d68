//! The queue's error type.

use redis::{RedisError, RetryMethod};

/// Why a queue operation failed. Every variant names the operation (`enqueue`, `claim`, …).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis failed or was unreachable; see [`QueueError::is_retryable`].
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

impl QueueError {
    /// The operation that failed.
    pub fn op(&self) -> &'static str {
        match self {
            QueueError::Redis { op, .. }
            | QueueError::Malformed { op, .. }
            | QueueError::Invalid { op, .. } => op,
        }
    }

    /// Whether the same call may succeed later: Redis connection errors, timeouts and
    /// `LOADING`/`BUSY`-style server states are retryable; bad data and bad input are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::Redis { source, .. } => redis_error_is_retryable(source),
            QueueError::Malformed { .. } | QueueError::Invalid { .. } => false,
        }
    }

    pub(crate) fn redis(op: &'static str) -> impl FnOnce(RedisError) -> Self {
        move |source| QueueError::Redis { op, source }
    }

    pub(crate) fn reply(op: &'static str, detail: impl ToString) -> Self {
        QueueError::Malformed {
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
