//! A pool of at most N OS threads for blocking or CPU-bound work.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use cenote::workers::Pool;
//!
//! let pool = Pool::new(4).unwrap();
//! let done = Arc::new(AtomicUsize::new(0));
//! for _ in 0..100 {
//!     let done = done.clone();
//!     pool.submit(move || { done.fetch_add(1, Ordering::Relaxed); }).unwrap();
//! }
//! let answer = pool.spawn(|| 6 * 7).unwrap();
//! assert_eq!(answer.join().unwrap(), 42);
//! pool.wait_idle();
//! assert_eq!(done.load(Ordering::Relaxed), 100);
//! ```
//!
//! **The model.** Threads are started on demand, one per task that finds no
//! idle thread, up to the capacity; they are reused for task after task and
//! retire after `idle_timeout` parked (10 s by default; `None` keeps them).
//! In front of the threads sits a bounded FIFO queue (`queue(n)`, 1024 by
//! default; `queue(0)` is ants' direct hand-off). When every thread is busy
//! and the queue is full, the [`Policy`] decides: block (default), reject,
//! or run on the caller. `running() <= capacity()` holds at every instant,
//! also while [`Pool::resize`] and submitters race; no task is lost or run
//! twice; a panicking task is caught, counted and reported (to the
//! `panic_handler`, or a `tracing` error), and its thread keeps serving.
//!
//! **Nested submits.** A task that submits into its own *full* pool with a
//! blocking submit does not wait (every thread could be waiting the same
//! way, a silent deadlock): it runs the new task itself, on its own thread,
//! and counts it in [`Stats::ran_on_caller`]. `wait_idle` called from a task
//! waits for the other tasks only; a [`scope`](Pool::scope) waiting on a pool
//! thread runs queued tasks while it waits.
//!
//! Also here: [`FnPool`] (one function, no allocation per call),
//! [`MultiPool`] (several pools, balanced), [`Pool::scope`] (borrowing
//! tasks) and a process-wide default pool ([`global`], [`submit`], [`spawn`]).
//! The protocol that keeps parked threads cheap and loses no wake-up is
//! described in `src/workers/DESIGN.md`.

mod builder;
mod core;
pub(crate) mod errors;
mod fn_pool;
mod global;
mod join;
mod multi;
mod pool;
mod scope;
mod task;

pub use builder::{default_queue, Builder, Policy, DEFAULT_IDLE_TIMEOUT, DEFAULT_QUEUE};
pub use errors::{BuildError, GlobalError, JoinError, ResizeError, ShutdownError, SubmitError};
pub use fn_pool::FnPool;
pub use global::{configure_global, global, spawn, submit, submit_timeout, try_submit};
pub use join::JoinHandle;
pub use multi::{Balance, MultiPool};
pub use pool::Pool;
pub use scope::{Scope, ScopedJoinHandle};

/// The largest capacity a pool accepts (the counts are packed in 32 bits).
pub const MAX_CAPACITY: usize = u32::MAX as usize - 1;

/// The longest queue a pool accepts (its slots are allocated up front).
pub const MAX_QUEUE: usize = 1 << 24;

/// Counters of a pool since it was built, and its gauges at the moment of
/// the snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Threads alive (see [`Pool::running`]).
    pub running: usize,
    /// Threads parked, waiting for a task.
    pub idle: usize,
    /// Submitters blocked, waiting for room.
    pub waiting: usize,
    /// Tasks in the queue.
    pub queued: usize,
    /// The capacity in force.
    pub capacity: usize,
    /// Tasks that returned normally.
    pub completed: u64,
    /// Tasks that panicked (also those whose panic went to a `JoinHandle`).
    pub panicked: u64,
    /// Submits refused: `Full`, `Timeout` or `TooManyWaiting`.
    pub rejected: u64,
    /// Tasks run on the submitting thread (`CallerRuns`, nested submits).
    pub ran_on_caller: u64,
    /// Threads started.
    pub threads_started: u64,
    /// Threads that exited (idle timeout, resize, close).
    pub threads_retired: u64,
}

impl std::ops::Add for Stats {
    type Output = Stats;
    fn add(self, o: Stats) -> Stats {
        Stats {
            running: self.running + o.running,
            idle: self.idle + o.idle,
            waiting: self.waiting + o.waiting,
            queued: self.queued + o.queued,
            capacity: self.capacity + o.capacity,
            completed: self.completed + o.completed,
            panicked: self.panicked + o.panicked,
            rejected: self.rejected + o.rejected,
            ran_on_caller: self.ran_on_caller + o.ran_on_caller,
            threads_started: self.threads_started + o.threads_started,
            threads_retired: self.threads_retired + o.threads_retired,
        }
    }
}
