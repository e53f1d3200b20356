//! Configuration of a [`Pool`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::errors::BuildError;
use super::pool::Pool;
use crate::limit::MAX_PERMITS;

/// What [`Pool::spawn`] does when `capacity` futures are in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Wait for a slot, in FIFO order (back-pressure). The default.
    #[default]
    Wait,
    /// Fail at once with [`SpawnError::Full`](super::SpawnError::Full).
    Reject,
    /// Wait at most this long, then fail with
    /// [`SpawnError::TimedOut`](super::SpawnError::TimedOut).
    WaitFor(Duration),
}

pub(crate) use crate::unwind::PanicHandler;

/// Builds a [`Pool`]; see [`Pool::builder`].
#[must_use = "a builder does nothing until build() is called"]
pub struct Builder {
    pub(crate) capacity: usize,
    pub(crate) when_full: WhenFull,
    pub(crate) max_waiting: Option<usize>,
    pub(crate) panic_handler: Option<PanicHandler>,
    pub(crate) lanes: Option<usize>,
    pub(crate) runtime: Option<tokio::runtime::Handle>,
    pub(crate) blocking: Option<crate::workers::Pool>,
    pub(crate) eager: bool,
    pub(crate) eager_limit: Duration,
    pub(crate) name: Option<String>,
}

/// The default of [`Builder::eager_limit`].
pub const DEFAULT_EAGER_LIMIT: Duration = Duration::from_micros(20);

/// The most lanes a pool runs (a cell keeps its lane in 16 bits).
pub const MAX_LANES: usize = u16::MAX as usize;

/// The capacity of [`Builder::new`].
pub const DEFAULT_CAPACITY: usize = 1024;

impl Builder {
    /// Capacity [`DEFAULT_CAPACITY`], wait when full, no bound on waiting
    /// spawners, one lane per runtime worker, the current runtime.
    pub fn new() -> Builder {
        Builder {
            capacity: DEFAULT_CAPACITY,
            when_full: WhenFull::Wait,
            max_waiting: None,
            panic_handler: None,
            lanes: None,
            runtime: None,
            blocking: None,
            eager: true,
            eager_limit: DEFAULT_EAGER_LIMIT,
            name: None,
        }
    }

    /// The pool's name in metrics and log lines (default `tasks-<n>`; a
    /// name a live pool already holds gets a `-2` suffix).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// At most `n` futures in flight (0 is an error at build).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }

    /// What `spawn` does when the pool is full.
    pub fn when_full(mut self, policy: WhenFull) -> Self {
        self.when_full = policy;
        self
    }

    /// At most `n` spawners wait for a slot; one more is refused with
    /// [`SpawnError::TooManyWaiting`](super::SpawnError::TooManyWaiting)
    /// (load shedding). `0` means a full pool refuses at once.
    pub fn max_waiting(mut self, n: usize) -> Self {
        self.max_waiting = Some(n);
        self
    }

    /// Called with the payload of every panic of a spawned future (the
    /// payload then goes on to its [`JoinHandle`](super::JoinHandle)), and
    /// of every panic while the pool drops a future or a detached output.
    /// An output dropped with its handle, on the caller's thread, is caught
    /// and logged instead. A panicking handler is caught and logged.
    pub fn panic_handler<H>(mut self, handler: H) -> Self
    where
        H: Fn(&(dyn Any + Send)) + Send + Sync + 'static,
    {
        self.panic_handler = Some(Arc::new(handler));
        self
    }

    /// How many lanes (tokio tasks that each poll a share of the pool's
    /// futures) to run; by default one per runtime worker thread (at most
    /// [`MAX_LANES`]). More than [`MAX_LANES`] is a build error.
    pub fn lanes(mut self, n: usize) -> Self {
        self.lanes = Some(n);
        self
    }

    /// The runtime to run on, for a pool built outside one.
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// The `cenote::workers` pool that runs
    /// [`spawn_blocking`](Pool::spawn_blocking) closures. By default a
    /// pool of up to 512 threads (tokio's own limit for blocking work),
    /// started on first use, shared by every task pool.
    pub fn blocking_pool(mut self, pool: crate::workers::Pool) -> Self {
        self.blocking = Some(pool);
        self
    }

    /// Whether a spawn makes the future's first poll itself, in the
    /// spawner's thread (on by default; Python's asyncio calls these eager
    /// tasks). A future that finishes in that poll never reaches a lane: no
    /// queue, no other thread, no wake-up, which makes a short job several
    /// times cheaper. One that returns `Pending` has started its I/O or
    /// timer already and goes to a lane for the rest.
    ///
    /// Only a spawn from a task of the pool's own runtime starts eagerly
    /// (one from elsewhere, another runtime or a plain thread, queues as
    /// usual). The poll catches panics as a lane does, and is never nested
    /// (a spawn from inside an eager poll queues normally). A first poll that computes for long would hold up
    /// the spawner, so the pool times one first poll in 64 per spawning
    /// thread and, when one took longer than [`eager_limit`](Self::eager_limit)
    /// (20 µs by default), queues the next 1,024 spawns normally before it
    /// tries again. Turn it off for futures that compute a lot before their
    /// first `.await`.
    pub fn eager_start(mut self, on: bool) -> Self {
        self.eager = on;
        self
    }

    /// How long a timed eager first poll may take before eager starts
    /// pause (see [`eager_start`](Self::eager_start)); `Duration::MAX`:
    /// never pause, for futures known to be short.
    pub fn eager_limit(mut self, limit: Duration) -> Self {
        self.eager_limit = limit;
        self
    }

    /// Builds the pool and starts its lanes.
    pub fn build(self) -> Result<Pool, BuildError> {
        if self.capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        if self.capacity > MAX_PERMITS {
            return Err(BuildError::CapacityTooLarge(self.capacity));
        }
        if self.lanes == Some(0) {
            return Err(BuildError::ZeroLanes);
        }
        if let Some(n) = self.lanes.filter(|&n| n > MAX_LANES) {
            return Err(BuildError::TooManyLanes(n));
        }
        let runtime = match self.runtime.clone() {
            Some(h) => h,
            None => tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?,
        };
        Ok(Pool::start(self, runtime))
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("capacity", &self.capacity)
            .field("when_full", &self.when_full)
            .field("max_waiting", &self.max_waiting)
            .field("panic_handler", &self.panic_handler.is_some())
            .field("lanes", &self.lanes)
            .field("eager_start", &self.eager)
            .field("eager_limit", &self.eager_limit)
            .finish_non_exhaustive()
    }
}
