//! Errors of `cenote::tasks`.

use std::any::Any;
use std::fmt;
use std::time::Duration;

/// Why [`Builder::build`](super::Builder::build) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `capacity(0)`: a pool that can never run anything.
    #[error("a task pool needs a capacity of at least 1")]
    ZeroCapacity,
    /// The capacity is above [`MAX_PERMITS`](crate::limit::MAX_PERMITS).
    #[error("capacity {0} is above the largest supported ({max})", max = crate::limit::MAX_PERMITS)]
    CapacityTooLarge(usize),
    /// `lanes(0)`.
    #[error("a task pool needs at least 1 lane")]
    ZeroLanes,
    /// `lanes(n)` with `n` over [`MAX_LANES`](super::MAX_LANES).
    #[error("{0} lanes asked for; a task pool runs at most {max}", max = super::MAX_LANES)]
    TooManyLanes(usize),
    /// Built outside a tokio runtime and without
    /// [`Builder::runtime`](super::Builder::runtime).
    #[error("no tokio runtime: build the pool inside one, or pass a handle with Builder::runtime")]
    NoRuntime,
}

/// Why a future was not spawned. The future is dropped (not run).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// Every slot was taken and the policy (or `try_spawn`) does not wait.
    #[error("the task pool is full")]
    Full,
    /// Every slot was taken and `max_waiting` spawners already wait.
    #[error("the task pool is full and {0} spawners already wait (max_waiting)")]
    TooManyWaiting(usize),
    /// No slot came free within the deadline.
    #[error("no slot came free within {0:?}")]
    TimedOut(Duration),
    /// The pool was closed.
    #[error("the task pool is closed")]
    Closed,
    /// The runtime the pool runs on has shut down.
    #[error("the task pool's tokio runtime has shut down")]
    RuntimeGone,
    /// `spawn_blocking`: the blocking (`cenote::workers`) pool refused the
    /// closure.
    #[error("the blocking pool refused the closure: {0}")]
    Blocking(#[from] crate::workers::SubmitError),
}

/// Why [`Pool::resize`](super::Pool::resize) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResizeError {
    /// `resize(0)`.
    #[error("a task pool needs a capacity of at least 1")]
    ZeroCapacity,
    /// Above [`MAX_PERMITS`](crate::limit::MAX_PERMITS).
    #[error("capacity {0} is above the largest supported ({max})", max = crate::limit::MAX_PERMITS)]
    CapacityTooLarge(usize),
    /// The pool was closed.
    #[error("the task pool is closed")]
    Closed,
}

/// [`Pool::shutdown_timeout`](super::Pool::shutdown_timeout) could not see
/// every future end by itself. The pool is closed either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{aborted} futures were still running after {waited:?} and were aborted{}", if *.from_own_task { " (called from one of the pool's own futures, which goes on)" } else { "" })]
#[non_exhaustive]
pub struct ShutdownError {
    /// Futures still running at the deadline, aborted.
    pub aborted: usize,
    /// How long `shutdown_timeout` waited before aborting.
    pub waited: Duration,
    /// Called from one of the pool's own futures: it waited for the others
    /// only.
    pub from_own_task: bool,
}

/// Why a [`JoinHandle`](super::JoinHandle) yielded no value.
#[non_exhaustive]
pub enum JoinError {
    /// The future panicked; the payload is the value passed to `panic!`.
    Panicked(Box<dyn Any + Send + 'static>),
    /// [`JoinHandle::abort`](super::JoinHandle::abort) or
    /// [`Pool::shutdown_timeout`](super::Pool::shutdown_timeout)
    /// dropped the future before it finished.
    Aborted,
    /// The future was dropped unfinished because the runtime shut down.
    Cancelled,
}

impl JoinError {
    /// True when the future panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// True when the future was aborted.
    pub fn is_aborted(&self) -> bool {
        matches!(self, JoinError::Aborted)
    }

    /// The panic message, when the payload is a string (as `panic!` makes).
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            JoinError::Panicked(p) => crate::unwind::message(p.as_ref()),
            _ => None,
        }
    }

    /// The panic payload, for `std::panic::resume_unwind`.
    pub fn into_panic(self) -> Option<Box<dyn Any + Send + 'static>> {
        match self {
            JoinError::Panicked(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(p) => f
                .debug_tuple("Panicked")
                .field(&crate::unwind::message(p.as_ref()).unwrap_or("<non-string payload>"))
                .finish(),
            JoinError::Aborted => f.write_str("Aborted"),
            JoinError::Cancelled => f.write_str("Cancelled"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(p) => match crate::unwind::message(p.as_ref()) {
                Some(m) => write!(f, "the task panicked: {m}"),
                None => f.write_str("the task panicked"),
            },
            JoinError::Aborted => f.write_str("the task was aborted"),
            JoinError::Cancelled => f.write_str("the task was cancelled (its runtime shut down)"),
        }
    }
}

impl std::error::Error for JoinError {}
