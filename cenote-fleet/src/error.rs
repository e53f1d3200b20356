//! What can go wrong, one variant per case a caller acts on differently.

use std::time::Duration;

/// A fleet semaphore's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No permit within the acquire timeout.
    #[error("no fleet permit within {0:?}")]
    TimedOut(Duration),
    /// `try_acquire` found no permit free (or others queued first).
    #[error("no fleet permit free")]
    Busy,
    /// Redis could not be reached or answered with an error.
    #[error("the fleet semaphore's Redis is unreachable or failed")]
    Unreachable(#[source] redis::RedisError),
    /// The lease ran out (not renewed in time, or expired on Redis's clock):
    /// another holder may have its permit.
    #[error("the fleet lease was lost")]
    LeaseLost,
    /// The semaphore exists in Redis with another cap.
    #[error("the fleet semaphore {name:?} exists with cap {stored}, not {asked}")]
    CapMismatch {
        /// The semaphore's name.
        name: String,
        /// The cap stored in Redis.
        stored: u64,
        /// The cap this handle was built with.
        asked: u64,
    },
    /// The semaphore's record was lost from Redis (deleted, evicted, or
    /// lost in a restart without persistence) and made again: nothing is
    /// granted until one TTL after the loss was seen (or after the
    /// server's restart), when every lease granted before it has ended.
    /// `try_acquire` says so; a waiting acquire queues and is served then,
    /// within its timeout.
    #[error("the fleet semaphore's record was lost in Redis; no grants until {until:?}")]
    Quarantined {
        /// When grants resume (this process's clock).
        until: std::time::Instant,
    },
    /// More permits asked for at once than the cap (or zero).
    #[error("{asked} permits asked for at once; the cap is {cap}")]
    TooMany {
        /// Permits asked for.
        asked: u64,
        /// The cap.
        cap: u64,
    },
    /// A configuration value out of range.
    #[error("invalid fleet semaphore configuration: {0}")]
    Config(&'static str),
    /// Redis answered something this protocol never sends.
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
    /// The tokio runtime the semaphore was built on has shut down.
    #[error("the fleet semaphore's tokio runtime has shut down")]
    RuntimeGone,
    /// A blocking call from a thread that drives async tasks.
    #[error("a blocking acquire was called from inside an async runtime; await acquire() there")]
    InsideRuntime,
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Error {
        Error::Unreachable(e)
    }
}

impl Error {
    /// The same error for another call of one failed batch (a Redis error
    /// is not `Clone`: its kind and text are kept).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Unreachable(e) => Error::Unreachable(redis::RedisError::from((
                e.kind(),
                "a batch of fleet calls failed",
                e.to_string(),
            ))),
            Error::Protocol(s) => Error::Protocol(s.clone()),
            _ => Error::RuntimeGone,
        }
    }
}
