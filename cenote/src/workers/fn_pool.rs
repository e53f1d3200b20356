//! `FnPool`: a pool bound to one function (ants' `PoolWithFunc`).

use std::fmt;
use std::time::Duration;

use super::builder::Builder;
use super::core::{FnRunner, How, Inner};
use super::errors::{BuildError, ResizeError, ShutdownError, SubmitError};
use super::Stats;
use crate::sync::{deadline_after, Arc};

/// A worker pool whose every task calls one function with an argument.
///
/// `invoke(arg)` queues the argument itself: nothing is boxed or allocated
/// per call. Everything else (capacity, queue, policy, resize, close, reboot,
/// statistics) behaves as for [`Pool`](super::Pool).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use cenote::workers::FnPool;
///
/// let sum = Arc::new(AtomicU64::new(0));
/// let s = sum.clone();
/// let pool = FnPool::new(4, move |x: u64| { s.fetch_add(x, Ordering::Relaxed); }).unwrap();
/// for i in 1..=100 {
///     pool.invoke(i).unwrap();
/// }
/// pool.wait_idle();
/// assert_eq!(sum.load(Ordering::Relaxed), 5050);
/// ```
pub struct FnPool<A: Send + 'static> {
    inner: Arc<Inner<FnRunner<A>>>,
}

impl<A: Send + 'static> FnPool<A> {
    pub(crate) fn from_inner(inner: Arc<Inner<FnRunner<A>>>) -> Self {
        FnPool { inner }
    }

    /// An `FnPool` of at most `capacity` threads with the default settings.
    /// Use [`Builder::build_fn`] for the others.
    pub fn new<F>(capacity: usize, f: F) -> Result<Self, BuildError>
    where
        F: Fn(A) + Send + Sync + 'static,
    {
        Builder::new().capacity(capacity).build_fn(f)
    }

    /// Calls the pool's function with `arg` on a pool thread; a full pool
    /// behaves as the policy says (as `Pool::submit`).
    #[inline]
    pub fn invoke(&self, arg: A) -> Result<(), SubmitError> {
        self.inner.submit(arg, How::Policy)
    }

    /// Never blocks: a full pool is `Err(SubmitError::Full)`.
    #[inline]
    pub fn try_invoke(&self, arg: A) -> Result<(), SubmitError> {
        self.inner.submit(arg, How::Try)
    }

    /// Waits at most `timeout` for room.
    pub fn invoke_timeout(&self, arg: A, timeout: Duration) -> Result<(), SubmitError> {
        self.inner
            .submit(arg, How::Wait(deadline_after(timeout), timeout))
    }

    /// See [`Pool::resize`](super::Pool::resize).
    pub fn resize(&self, n: usize) -> Result<(), ResizeError> {
        self.inner.resize(n)
    }
    /// Threads alive.
    pub fn running(&self) -> usize {
        self.inner.running()
    }
    /// Threads parked.
    pub fn idle(&self) -> usize {
        self.inner.idle()
    }
    /// The capacity in force.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }
    /// Submitters blocked waiting for room.
    pub fn waiting(&self) -> usize {
        self.inner.waiting()
    }
    /// Arguments queued, not yet picked up.
    pub fn queued(&self) -> usize {
        self.inner.queued()
    }
    /// Counters since the pool was built.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
    /// Blocks until every invocation so far has finished.
    pub fn wait_idle(&self) {
        self.inner.wait_idle(None);
    }
    /// `wait_idle` for at most `timeout`; true if the pool became idle.
    pub fn wait_idle_timeout(&self, timeout: Duration) -> bool {
        self.inner.wait_idle(deadline_after(timeout))
    }
    /// Refuses new work; queued work still runs.
    pub fn close(&self) {
        self.inner.close();
    }
    /// Closes and waits at most `timeout` for the threads to finish.
    pub fn shutdown_timeout(&self, timeout: Duration) -> Result<(), ShutdownError> {
        self.inner.shutdown_timeout(timeout)
    }
    /// Reopens a closed pool.
    pub fn reboot(&self) {
        self.inner.reboot();
    }
    /// True while closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

impl<A: Send + 'static> Clone for FnPool<A> {
    fn clone(&self) -> Self {
        self.inner.handles.cloned();
        FnPool {
            inner: self.inner.clone(),
        }
    }
}

impl<A: Send + 'static> Drop for FnPool<A> {
    fn drop(&mut self) {
        if self.inner.handles.dropped() {
            self.inner.close();
        }
    }
}

impl<A: Send + 'static> fmt::Debug for FnPool<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnPool")
            .field("capacity", &self.capacity())
            .field("running", &self.running())
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}
