//! Errors of the resource pool.

use std::sync::Arc;
use std::time::Duration;

/// Why `get` gave no resource.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError<E: std::error::Error + 'static> {
    /// No resource within the acquire timeout. `last_error` is the most
    /// recent create or check error this call or the pool saw since its last
    /// successful create, and the error's [`source`](std::error::Error::source),
    /// so a database that is down shows as down, not as a bare timeout.
    #[error("no resource within {waited:?}{}", if last_error.is_some() { " (the last create or check failed; see the source)" } else { "" })]
    TimedOut {
        /// How long the caller waited.
        waited: Duration,
        /// The last create or check error, if any.
        #[source]
        last_error: Option<Arc<E>>,
    },
    /// Creating a resource failed with an error the manager calls
    /// permanent (bad credentials, unknown host): reported at once.
    #[error("creating a resource failed")]
    Create(#[source] Arc<E>),
    /// The pool is closed.
    #[error("the resource pool is closed")]
    Closed,
    /// `max_waiting` callers already wait: this one is shed.
    #[error("{0} callers already wait for a resource (max_waiting): shed")]
    TooManyWaiting(usize),
    /// The tokio runtime the pool runs its manager on has shut down, so
    /// no resource can be created, checked or destroyed: build the pool on
    /// a runtime that outlives it (or let it start its own).
    #[error("the resource pool's tokio runtime has shut down; build the pool on a runtime that outlives it")]
    RuntimeGone,
    /// A blocking get was called while the calling thread's thread-locals
    /// are being destroyed (from another thread-local's drop), where it
    /// cannot wait.
    #[error("a blocking get cannot wait while its thread exits (called from a thread-local's destructor)")]
    ThreadExiting,
}

impl<E: std::error::Error + 'static> GetError<E> {
    /// The underlying create or check error, if any.
    pub fn cause(&self) -> Option<&E> {
        match self {
            GetError::TimedOut { last_error, .. } => last_error.as_deref(),
            GetError::Create(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError<E: std::error::Error + 'static> {
    /// `capacity(0)`.
    #[error("capacity must be at least 1")]
    ZeroCapacity,
    /// `capacity` above the semaphore's limit.
    #[error("capacity {0} is above the limit ({max})", max = crate::limit::MAX_PERMITS)]
    CapacityTooLarge(usize),
    /// `min_idle` above `capacity`.
    #[error("min_idle {min_idle} is above capacity {capacity}")]
    MinIdleAboveCapacity {
        /// The requested minimum.
        min_idle: usize,
        /// The bound.
        capacity: usize,
    },
    /// A zero duration where a positive one is needed.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A thread the pool needs could not start: its own runtime (built
    /// outside any runtime), or the process's maintenance ticker.
    #[error("could not start the pool's runtime or maintenance thread")]
    Runtime(#[source] std::io::Error),
    /// `build_filled`: the first resources could not be created (the
    /// manager's own error, not a timeout).
    #[error("creating the first resources failed")]
    Create(#[source] Arc<E>),
    /// `build_filled`: creating the first resources took longer than the
    /// create timeout.
    #[error("creating the first resources timed out after {0:?}")]
    CreateTimedOut(Duration),
}

/// Why `shutdown_timeout` returned before every resource was destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("{lent} resources still lent and {destroying} being destroyed after the timeout")]
pub struct ShutdownError {
    /// Resources still lent when the time ran out.
    pub lent: usize,
    /// Resources whose `destroy` had not finished.
    pub destroying: usize,
}

/// Why `resize` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResizeError {
    /// `resize(0)`.
    #[error("capacity must be at least 1")]
    ZeroCapacity,
    /// Above [`MAX_PERMITS`](crate::limit::MAX_PERMITS).
    #[error("capacity {0} is above the limit ({max})", max = crate::limit::MAX_PERMITS)]
    CapacityTooLarge(usize),
    /// The pool is closed.
    #[error("the pool is closed")]
    Closed,
}
