//! `Builder`: every knob of a worker pool, validated once at `build`.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::core::{FnRunner, Inner, TaskRunner};
use super::errors::BuildError;
use super::{FnPool, Pool, MAX_CAPACITY, MAX_QUEUE};

/// What a submit does when every thread is busy and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Wait for room (ants' default). `submit_timeout` bounds the wait;
    /// `max_waiting` bounds how many may wait. A task of this pool
    /// that submits into its own full pool runs the new task itself instead
    /// of waiting, since waiting could deadlock (see the module docs).
    #[default]
    Block,
    /// Fail at once with [`SubmitError::Full`](super::SubmitError::Full)
    /// (ants' `Nonblocking`).
    Reject,
    /// Run the task on the submitting thread (gopool's `TryGo`, Java's
    /// `CallerRunsPolicy`): natural back-pressure without an error.
    CallerRuns,
}

pub(crate) use crate::unwind::PanicHandler;
pub(crate) type ThreadHook = Arc<dyn Fn() + Send + Sync>;

/// The validated configuration shared by a pool's threads.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) capacity: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) prestart: usize,
    pub(crate) queue: usize,
    pub(crate) policy: Policy,
    pub(crate) max_waiting: usize,
    pub(crate) panic_handler: Option<PanicHandler>,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) on_thread_start: Option<ThreadHook>,
    pub(crate) on_thread_stop: Option<ThreadHook>,
    pub(crate) name: Option<String>,
}

/// The least default `queue` length: deep enough that a fast producer
/// rarely blocks, small enough (about 48 KiB of slots) to allocate up front.
/// Pools of more than 512 threads get more by default: see
/// [`default_queue`].
pub const DEFAULT_QUEUE: usize = 1024;

/// The most slots a default queue gets (about 768 KiB, allocated at build).
const DEFAULT_QUEUE_MAX: usize = 16 * 1024;

/// The `queue` length a pool of `capacity` threads gets when the builder's
/// [`queue`](Builder::queue) is not called: twice the capacity, at least
/// [`DEFAULT_QUEUE`] and at most 16,384.
///
/// Tasks that block (sleep, wait on I/O) tend to end in waves: all threads
/// started together, so they finish together and each takes the next task.
/// A queue shorter than the pool is emptied by one wave, and the threads
/// that find it empty park until the producer, which has to win a core from
/// all of them first, refills it. Twice the capacity lets one wave find its
/// tasks queued and leaves the producer a whole wave to queue the next.
/// (Ants' seed 001, 100k tasks sleeping 10 ms on 1,000 threads: 1.15-1.22 s
/// with 1,024 slots, 1.08-1.10 s with 2,048.)
pub fn default_queue(capacity: usize) -> usize {
    capacity
        .saturating_mul(2)
        .clamp(DEFAULT_QUEUE, DEFAULT_QUEUE_MAX)
}

/// Default idle timeout, after which a parked thread retires.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Configures a [`Pool`] or an [`FnPool`]. Obtain one with
/// [`Pool::builder`]; every setter consumes and returns the builder.
///
/// ```
/// use std::time::Duration;
/// use cenote::workers::{Pool, Policy};
///
/// let pool = Pool::builder()
///     .capacity(8)
///     .queue(256)
///     .policy(Policy::CallerRuns)
///     .idle_timeout(Some(Duration::from_secs(30)))
///     .thread_name("io")
///     .build()
///     .unwrap();
/// pool.submit(|| println!("hello from a pool thread")).unwrap();
/// pool.wait_idle();
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct Builder {
    config: Config,
    /// `queue` was called (otherwise it follows the capacity at build).
    queue_set: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("Builder")
            .field("capacity", &c.capacity)
            .field("idle_timeout", &c.idle_timeout)
            .field("prestart", &c.prestart)
            .field(
                "queue",
                &if self.queue_set {
                    c.queue
                } else {
                    default_queue(c.capacity)
                },
            )
            .field("policy", &c.policy)
            .field("max_waiting", &c.max_waiting)
            .field("thread_name", &c.thread_name)
            .field("stack_size", &c.stack_size)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A builder with the defaults: capacity = available parallelism,
    /// a queue of [`default_queue`]`(capacity)` slots (1,024 up to 512
    /// threads), `Policy::Block`, idle timeout 10 s, no prestart.
    pub fn new() -> Builder {
        Builder {
            config: Config {
                capacity: std::thread::available_parallelism().map_or(1, |n| n.get()),
                idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
                prestart: 0,
                queue: DEFAULT_QUEUE,
                policy: Policy::Block,
                max_waiting: usize::MAX,
                panic_handler: None,
                thread_name: "cenote-worker".to_owned(),
                stack_size: None,
                on_thread_start: None,
                on_thread_stop: None,
                name: None,
            },
            queue_set: false,
        }
    }

    /// The most threads that may exist at once (0 is a build error).
    pub fn capacity(mut self, n: usize) -> Self {
        self.config.capacity = n;
        self
    }

    /// How long a thread may stay parked before it retires. `None` keeps
    /// threads forever (ants' `DisablePurge`). `Some(ZERO)` is a build error.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Start `n` threads during `build` instead of on demand.
    pub fn prestart(mut self, n: usize) -> Self {
        self.config.prestart = n;
        self
    }

    /// Slots in front of the threads. `0` is ants' direct hand-off: a submit
    /// succeeds only by handing the task to an idle or newly started thread.
    /// `n > 0` is a bounded FIFO queue of `n` tasks; its slots are allocated
    /// at build (about 48 bytes each). Not called: [`default_queue`] of the
    /// capacity.
    pub fn queue(mut self, n: usize) -> Self {
        self.config.queue = n;
        self.queue_set = true;
        self
    }

    /// What a submit does when the pool is full.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.config.policy = policy;
        self
    }

    /// At most `n` submitters may block at once (ants' `MaxBlockingTasks`);
    /// one more fails with `SubmitError::TooManyWaiting`. Unlimited by
    /// default; `0` forbids blocking altogether.
    pub fn max_waiting(mut self, n: usize) -> Self {
        self.config.max_waiting = n;
        self
    }

    /// Called with the payload of every task that panics (except tasks from
    /// `spawn`, whose panic goes to their `JoinHandle`). Without a handler a
    /// panic is logged as a `tracing` error event (the standard panic hook prints
    /// it too). Either way it is counted and the thread keeps serving. A
    /// panicking handler is caught and logged.
    pub fn panic_handler<H>(mut self, handler: H) -> Self
    where
        H: Fn(&(dyn Any + Send)) + Send + Sync + 'static,
    {
        self.config.panic_handler = Some(Arc::new(handler));
        self
    }

    /// The pool's name in metrics and log lines (default `workers-<n>`; a
    /// name a live pool already holds gets a `-2` suffix).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// Thread names are `"{prefix}-{n}"` (default prefix `cenote-worker`).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.config.thread_name = prefix.into();
        self
    }

    /// Stack size of each thread, in bytes (0 is a build error).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.config.stack_size = Some(bytes);
        self
    }

    /// Runs on each new thread before its first task.
    pub fn on_thread_start<H: Fn() + Send + Sync + 'static>(mut self, hook: H) -> Self {
        self.config.on_thread_start = Some(Arc::new(hook));
        self
    }

    /// Runs on each thread just before it exits.
    pub fn on_thread_stop<H: Fn() + Send + Sync + 'static>(mut self, hook: H) -> Self {
        self.config.on_thread_stop = Some(Arc::new(hook));
        self
    }

    fn validated(self) -> Result<Config, BuildError> {
        let mut c = self.config;
        if !self.queue_set {
            c.queue = default_queue(c.capacity);
        }
        if c.capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        if c.capacity > MAX_CAPACITY {
            return Err(BuildError::CapacityTooLarge(c.capacity));
        }
        if c.prestart > c.capacity {
            return Err(BuildError::PrestartAboveCapacity {
                prestart: c.prestart,
                capacity: c.capacity,
            });
        }
        if c.idle_timeout == Some(Duration::ZERO) {
            return Err(BuildError::ZeroIdleTimeout);
        }
        if c.stack_size == Some(0) {
            return Err(BuildError::ZeroStackSize);
        }
        if c.queue > MAX_QUEUE {
            return Err(BuildError::QueueTooLarge(c.queue));
        }
        Ok(c)
    }

    /// Builds a [`Pool`] that runs closures.
    pub fn build(self) -> Result<Pool, BuildError> {
        let inner = Inner::start(self.validated()?, TaskRunner)?;
        Ok(Pool::from_inner(inner))
    }

    /// Builds an [`FnPool`] whose every task calls `f` with the argument
    /// given to `invoke` (ants' `PoolWithFunc`).
    pub fn build_fn<A, F>(self, f: F) -> Result<FnPool<A>, BuildError>
    where
        A: Send + 'static,
        F: Fn(A) + Send + Sync + 'static,
    {
        let inner = Inner::start(self.validated()?, FnRunner::new(f))?;
        Ok(FnPool::from_inner(inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_queue_follows_the_capacity_and_an_explicit_one_wins() {
        let queue = |b: Builder| b.validated().unwrap().queue;
        assert_eq!(queue(Builder::new().capacity(2)), DEFAULT_QUEUE);
        assert_eq!(queue(Builder::new().capacity(512)), 1024);
        assert_eq!(queue(Builder::new().capacity(1000)), 2000);
        assert_eq!(queue(Builder::new().capacity(100_000)), 16 * 1024);
        assert_eq!(queue(Builder::new().capacity(MAX_CAPACITY)), 16 * 1024);
        // Set before or after the capacity, `queue(n)` is kept, 0 included.
        assert_eq!(queue(Builder::new().queue(5).capacity(1000)), 5);
        assert_eq!(queue(Builder::new().capacity(1000).queue(0)), 0);
        assert!(format!("{:?}", Builder::new().capacity(1000)).contains("queue: 2000"));
    }
}
