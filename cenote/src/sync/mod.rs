//! The one place cenote imports its synchronisation primitives from.
//!
//! Under `--cfg loom` every type here is swapped for its [loom] model so the
//! same protocol code is model-checked; otherwise atomics come from `std`,
//! locks from `parking_lot` (smaller and faster uncontended than `std`'s on
//! the paths we use), and the bounded job queue is [`mpmc::ArrayQueue`]
//! (crossbeam's algorithm; a pop that meets a push in progress yields).
//!
//! The wrappers give both worlds one API: `lock()` never returns a poison
//! error and condition-variable waits take `&mut guard`.
//!
//! The parts: `lock.rs` (Mutex, Condvar), `queue.rs` (the job queue over
//! `mpmc.rs`), `thread.rs` (park, stripes), `spawn.rs` (threads never
//! detached), `backoff.rs`, `handshake.rs` (the hand-shake load),
//! `watch.rs` (watching before parking), `ticker.rs` (the process's
//! periodic ticks: resource maintenance, metrics) and `handles.rs` (the count of a
//! pool's user handles).

#![allow(dead_code)] // not every item is used under every cfg

use std::time::{Duration, Instant};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};

mod backoff;
mod handles;
mod handshake;
mod lock;
#[cfg(all(test, loom))]
mod loom_mpmc;
pub(crate) mod mpmc;
mod queue;
mod spawn;
pub(crate) mod thread;
#[cfg(not(loom))]
pub(crate) mod ticker;
#[cfg(not(loom))]
mod watch;

pub(crate) use backoff::Backoff;
pub(crate) use handles::HandleCount;
pub(crate) use handshake::HandshakeLoad;
#[allow(unused_imports)]
pub(crate) use lock::{Condvar, Mutex, MutexGuard};
pub(crate) use queue::Queue;
pub(crate) use spawn::spawn_thread;
#[cfg(not(loom))]
pub(crate) use watch::watch;

/// `thread_local!` (loom's under the model, which runs the destructors when
/// a model thread ends).
#[cfg(not(loom))]
pub(crate) use std::thread_local;

#[cfg(loom)]
pub(crate) use loom::thread_local;

/// An `UnsafeCell` with loom's closure API, so the models check every access.
#[cfg(not(loom))]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }
    /// Calls `f` with a pointer to the value. The caller guarantees
    /// exclusive access for the duration of `f`.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Shared ownership stays `std`'s `Arc` under loom too: the models check the
/// protocols built from the atomics, locks and threads above, not reference
/// counting, and loom's `Arc` cannot be a method receiver (`self: &Arc<Self>`).
pub(crate) use std::sync::Arc;

/// Computes `now + d`, or `None` when that instant cannot be represented
/// (a "huge" duration means "no deadline", never a panic).
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}
