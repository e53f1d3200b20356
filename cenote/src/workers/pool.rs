//! `Pool`: the handle users hold.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::builder::Builder;
use super::core::{How, Inner, TaskRunner};
use super::errors::{BuildError, JoinError, ResizeError, ShutdownError, SubmitError};
use super::join::{CompleteOnDrop, JoinHandle, JoinState};
use super::task::Task;
use super::Stats;
use crate::sync::{deadline_after, Arc};

/// A pool of at most `capacity` OS threads for blocking or CPU-bound work.
///
/// Cloning a `Pool` gives another handle to the same pool. See the
/// [module documentation](super) for the model and an example.
///
/// # Drop
/// Dropping the last handle closes the pool, like [`close`](Pool::close):
/// tasks already accepted (queued or running) still run to completion on
/// their threads, which then exit. Drop never blocks; call
/// [`shutdown_timeout`](Pool::shutdown_timeout) to wait for them.
pub struct Pool {
    pub(crate) inner: Arc<Inner<TaskRunner>>,
}

impl Pool {
    pub(crate) fn from_inner(inner: Arc<Inner<TaskRunner>>) -> Pool {
        Pool { inner }
    }

    /// A pool of at most `capacity` threads with the default settings
    /// (a queue of [`default_queue`](super::default_queue)`(capacity)`
    /// slots, `Policy::Block`, 10 s idle timeout).
    pub fn new(capacity: usize) -> Result<Pool, BuildError> {
        Builder::new().capacity(capacity).build()
    }

    /// A builder to configure a pool (or an [`FnPool`](super::FnPool)).
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Runs `f` on the pool. When the pool is full, what happens depends on
    /// the [`Policy`](super::Policy): wait (default), fail with
    /// `SubmitError::Full`, or run `f` on this thread.
    #[inline]
    pub fn submit<F: FnOnce() + Send + 'static>(&self, f: F) -> Result<(), SubmitError> {
        self.inner.submit(Task::new(unit(f)), How::Policy)
    }

    /// Like `submit`, but never blocks and never runs `f` on this thread: a
    /// full pool is `Err(SubmitError::Full)`.
    #[inline]
    pub fn try_submit<F: FnOnce() + Send + 'static>(&self, f: F) -> Result<(), SubmitError> {
        self.inner.submit(Task::new(unit(f)), How::Try)
    }

    /// Like `submit`, but waits at most `timeout` for room, whatever the
    /// policy; then `Err(SubmitError::TimedOut(_))`. A zero timeout is a
    /// `try_submit` that reports `TimedOut`; a huge one never expires. With
    /// [`max_waiting(0)`](super::Builder::max_waiting) any other timeout
    /// on a full pool is `Err(SubmitError::TooManyWaiting(0))`.
    pub fn submit_timeout<F: FnOnce() + Send + 'static>(
        &self,
        f: F,
        timeout: Duration,
    ) -> Result<(), SubmitError> {
        self.inner.submit(
            Task::new(unit(f)),
            How::Wait(deadline_after(timeout), timeout),
        )
    }

    /// Runs `f` on the pool and returns a handle to its result. The handle
    /// can be joined from a thread or awaited from async code; a panic in `f`
    /// arrives as [`JoinError::Panicked`]. Waits for room like `submit`.
    pub fn spawn<T, F>(&self, f: F) -> Result<JoinHandle<T>, SubmitError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let state = JoinState::new(None);
        let task = Task::new(handle_task(f, CompleteOnDrop(Some(state.clone()))));
        self.inner.submit(task, How::Policy)?;
        Ok(JoinHandle::new(state, Some(self.inner.clone())))
    }

    /// Like [`spawn`](Pool::spawn), but never blocks and never runs `f` on
    /// this thread: a full pool is `Err(SubmitError::Full)`. This is the
    /// form to call from async code.
    pub fn try_spawn<T, F>(&self, f: F) -> Result<JoinHandle<T>, SubmitError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let state = JoinState::new(None);
        let task = Task::new(handle_task(f, CompleteOnDrop(Some(state.clone()))));
        self.inner.submit(task, How::Try)?;
        Ok(JoinHandle::new(state, Some(self.inner.clone())))
    }

    /// Changes the capacity at once. Growing lets blocked submitters in and
    /// starts threads for queued work; shrinking retires parked threads now
    /// and busy ones as they finish their task. While a shrink is pending,
    /// [`capacity`](Pool::capacity) reports the capacity still in force
    /// (never below [`running`](Pool::running)), falling to `n` as threads
    /// retire; [`target_capacity`](Pool::target_capacity) reports `n`.
    pub fn resize(&self, n: usize) -> Result<(), ResizeError> {
        self.inner.resize(n)
    }

    /// Threads alive (running a task, searching or parked). Never above
    /// [`capacity`](Pool::capacity).
    pub fn running(&self) -> usize {
        self.inner.running()
    }

    /// Threads parked, waiting for a task.
    pub fn idle(&self) -> usize {
        self.inner.idle()
    }

    /// Threads running a task right now (approximate while threads move).
    pub fn busy(&self) -> usize {
        self.inner.busy()
    }

    /// The capacity in force (see [`resize`](Pool::resize)).
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The capacity last asked for by `build` or `resize`.
    pub fn target_capacity(&self) -> usize {
        self.inner.target()
    }

    /// `(running, capacity)` read at one instant.
    pub fn running_and_capacity(&self) -> (usize, usize) {
        self.inner.running_and_capacity()
    }

    /// Submitters blocked waiting for room.
    pub fn waiting(&self) -> usize {
        self.inner.waiting()
    }

    /// Tasks in the queue, not yet picked up by a thread.
    pub fn queued(&self) -> usize {
        self.inner.queued()
    }

    /// Counters since the pool was built.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The pool's name (see [`Builder::name`](super::Builder::name)).
    pub fn name(&self) -> &str {
        self.inner.name.as_str()
    }

    /// Blocks until everything submitted so far has finished (the queue is
    /// empty and every thread is parked). The pool stays open. Called from a
    /// task of this pool, it waits for all the *other* tasks (tasks that are
    /// themselves in `wait_idle` count as finished, so two of them never wait
    /// for each other).
    pub fn wait_idle(&self) {
        self.inner.wait_idle(None);
    }

    /// `wait_idle` for at most `timeout`; true if the pool became idle.
    pub fn wait_idle_timeout(&self, timeout: Duration) -> bool {
        self.inner.wait_idle(deadline_after(timeout))
    }

    /// Refuses new work from now on (`SubmitError::Closed`, blocked
    /// submitters included) and lets threads exit once the queue is drained.
    /// Queued and running tasks still run. Does not wait.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Closes the pool and waits at most `timeout` for every queued and
    /// running task to finish and every thread to exit (ants'
    /// `ReleaseTimeout`). Called from one of the pool's own tasks, it waits
    /// for every other task and thread, then returns an error with
    /// `from_own_task` set: the calling task and its thread still run.
    pub fn shutdown_timeout(&self, timeout: Duration) -> Result<(), ShutdownError> {
        self.inner.shutdown_timeout(timeout)
    }

    /// Reopens a closed pool; threads start again on demand. A no-op on an
    /// open pool.
    pub fn reboot(&self) {
        self.inner.reboot();
    }

    /// True after `close`/`shutdown_timeout` until `reboot`.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

/// Adapts a user closure to the engine's `FnOnce() -> bool`.
#[inline]
pub(crate) fn unit<F: FnOnce()>(f: F) -> impl FnOnce() -> bool {
    move || {
        f();
        false
    }
}

/// The closure a `spawn` submits: run `f`, deliver its outcome.
pub(crate) fn handle_task<T, F>(f: F, out: CompleteOnDrop<T>) -> impl FnOnce() -> bool
where
    F: FnOnce() -> T,
{
    move || match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => {
            out.finish(Ok(v));
            false
        }
        Err(p) => {
            out.finish(Err(JoinError::Panicked(p)));
            true
        }
    }
}

impl Clone for Pool {
    fn clone(&self) -> Self {
        self.inner.handles.cloned();
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.inner.handles.dropped() {
            self.inner.close();
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("capacity", &self.capacity())
            .field("running", &self.running())
            .field("idle", &self.idle())
            .field("queued", &self.queued())
            .field("waiting", &self.waiting())
            .field("closed", &self.is_closed())
            .finish()
    }
}
