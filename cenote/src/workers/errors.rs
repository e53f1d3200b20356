//! One error type per family of operations. Every message says what
//! happened and what to change.

use std::any::Any;
use std::fmt;
use std::time::Duration;

/// `Builder::build` (and `Pool::new`) rejected the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `capacity(0)`.
    #[error("capacity must be at least 1 (a pool of 0 threads could never run a task)")]
    ZeroCapacity,
    /// A capacity above [`MAX_CAPACITY`](crate::workers::MAX_CAPACITY).
    #[error("capacity {0} is above the maximum of {max}; no OS gives a process that many threads", max = crate::workers::MAX_CAPACITY)]
    CapacityTooLarge(usize),
    /// `prestart(n)` with `n` above the capacity.
    #[error(
        "prestart({prestart}) is above capacity({capacity}); lower prestart or raise capacity"
    )]
    PrestartAboveCapacity {
        /// The requested number of threads to start at build.
        prestart: usize,
        /// The pool's capacity.
        capacity: usize,
    },
    /// `idle_timeout(Some(Duration::ZERO))`.
    #[error("idle_timeout of zero would retire every thread the moment it finishes a task; use None to keep threads forever or a positive duration")]
    ZeroIdleTimeout,
    /// `stack_size(0)`.
    #[error("stack_size must be positive (leave it unset for the platform default)")]
    ZeroStackSize,
    /// `queue(n)` above [`MAX_QUEUE`](crate::workers::MAX_QUEUE).
    #[error("queue({0}) is above the maximum of {max}; the queue's slots are allocated up front", max = crate::workers::MAX_QUEUE)]
    QueueTooLarge(usize),
    /// `MultiPool::new(0, ..)`.
    #[error("a MultiPool needs at least 1 sub-pool")]
    NoPools,
    /// A thread asked for by `prestart` could not be started.
    #[error("could not start a prestarted worker thread: {0}")]
    Spawn(String),
}

/// A task was not accepted by `submit`, `try_submit`, `submit_timeout`,
/// `spawn` or `FnPool::invoke`. The task (or argument) is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The pool was closed (`close`, `shutdown_timeout` or the last handle
    /// dropped).
    #[error("the pool is closed; call reboot() to reopen it before submitting")]
    Closed,
    /// Every thread was busy and the queue full, and the call was not allowed
    /// to wait (`try_submit`, or the `Reject` policy).
    #[error("the pool is full (all threads busy and the queue full); retry later, raise capacity or queue, or use a blocking submit")]
    Full,
    /// The pool stayed full for the whole timeout.
    #[error("the pool stayed full for {0:?}; retry later, or raise capacity or queue")]
    TimedOut(Duration),
    /// `max_waiting` submitters were already waiting.
    #[error("{0} submitters are already blocked on this pool (max_waiting); shed load or raise the limit")]
    TooManyWaiting(usize),
}

/// `resize` rejected the new capacity; the pool is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResizeError {
    /// `resize(0)`.
    #[error("capacity must be at least 1; to stop the pool use close()")]
    ZeroCapacity,
    /// Above [`MAX_CAPACITY`](crate::workers::MAX_CAPACITY).
    #[error("capacity {0} is above the maximum of {max}", max = crate::workers::MAX_CAPACITY)]
    CapacityTooLarge(usize),
    /// The pool is closed; [`reboot`](crate::workers::Pool::reboot) reopens it.
    #[error("the pool is closed; call reboot() to reopen it before resizing")]
    Closed,
}

impl ResizeError {
    /// `n` as a capacity to resize to: at least 1, at most
    /// [`MAX_CAPACITY`](crate::workers::MAX_CAPACITY).
    pub(crate) fn check(n: usize) -> Result<(), ResizeError> {
        match n {
            0 => Err(ResizeError::ZeroCapacity),
            n if n > crate::workers::MAX_CAPACITY => Err(ResizeError::CapacityTooLarge(n)),
            _ => Ok(()),
        }
    }
}

/// `shutdown_timeout` could not see the pool stop. The pool is closed
/// either way; the remaining tasks still run to completion on their threads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("{threads} worker threads were still running and {queued} tasks still queued after {waited:?}{}; they keep running in the background", if *.from_own_task { " (called from one of the pool's own tasks, which cannot wait for its own thread: that task and its thread are counted)" } else { "" })]
pub struct ShutdownError {
    /// Worker threads still alive when the wait ended (the caller's own
    /// thread included when `from_own_task`).
    pub threads: usize,
    /// Tasks still waiting in the queue.
    pub queued: usize,
    /// How long `shutdown_timeout` waited.
    pub waited: Duration,
    /// Called from a task of this pool: it waited for every other thread
    /// and task, and reports the caller's own task and thread as running.
    pub from_own_task: bool,
}

/// `configure_global` was called after the default pool already existed,
/// or with a configuration that does not build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GlobalError {
    /// The default pool was already configured or used.
    #[error("the default pool is already initialised; call configure_global once, before the first use of the free functions")]
    AlreadyInitialized,
    /// The builder was invalid.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Why a [`JoinHandle`](crate::workers::JoinHandle) did not yield a value.
#[non_exhaustive]
pub enum JoinError {
    /// The task panicked; the payload is the value passed to `panic!`.
    Panicked(Box<dyn Any + Send + 'static>),
    /// `join_timeout` ran out of time. The task keeps running and the handle
    /// can be joined again.
    TimedOut(Duration),
    /// The task was dropped without running (its pool could not run it).
    Cancelled,
    /// The result was already taken by an earlier `join`/`join_timeout`/poll.
    AlreadyJoined,
}

impl JoinError {
    /// True when the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
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
            JoinError::TimedOut(d) => f.debug_tuple("TimedOut").field(d).finish(),
            JoinError::Cancelled => f.write_str("Cancelled"),
            JoinError::AlreadyJoined => f.write_str("AlreadyJoined"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(p) => match crate::unwind::message(p.as_ref()) {
                Some(m) => write!(f, "the task panicked: {m}"),
                None => f.write_str("the task panicked (non-string payload; see into_panic())"),
            },
            JoinError::TimedOut(d) => write!(
                f,
                "the task did not finish within {d:?}; it keeps running, join again to wait more"
            ),
            JoinError::Cancelled => f.write_str(
                "the task was dropped without running because its pool could not run it",
            ),
            JoinError::AlreadyJoined => {
                f.write_str("the task's result was already taken by an earlier join")
            }
        }
    }
}

impl std::error::Error for JoinError {}
