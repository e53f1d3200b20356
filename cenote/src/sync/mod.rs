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

#[cfg(all(test, loom))]
mod loom_mpmc;
pub(crate) mod mpmc;

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

// ---------------------------------------------------------------------------
// Mutex and Condvar
// ---------------------------------------------------------------------------

#[cfg(not(loom))]
mod lock {
    use std::time::Instant;

    pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);
    pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(parking_lot::Mutex::new(value))
        }
        #[inline]
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }
    }

    #[derive(Default)]
    pub(crate) struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(parking_lot::Condvar::new())
        }
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            self.0.wait(guard);
        }
        /// Waits until notified or `deadline` (None: no deadline). Returns
        /// true when the deadline passed.
        pub(crate) fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            deadline: Option<Instant>,
        ) -> bool {
            match deadline {
                Some(d) => self.0.wait_until(guard, d).timed_out(),
                None => {
                    self.0.wait(guard);
                    false
                }
            }
        }
        #[inline]
        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }
        #[inline]
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

#[cfg(loom)]
mod lock {
    use std::time::Instant;

    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);
    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> std::ops::Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("guard present")
        }
    }
    impl<T> std::ops::DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("guard present")
        }
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap()))
        }
    }

    #[derive(Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let g = guard.0.take().expect("guard present");
            guard.0 = Some(self.0.wait(g).unwrap());
        }
        /// Loom has no clock: a deadline already passed times out at once
        /// (a model sets a 1 ns idle timeout to explore the timeout paths),
        /// any other timed wait is an untimed one that never times out.
        pub(crate) fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            deadline: Option<Instant>,
        ) -> bool {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return true;
            }
            self.wait(guard);
            false
        }
        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

#[allow(unused_imports)]
pub(crate) use lock::{Condvar, Mutex, MutexGuard};

// ---------------------------------------------------------------------------
// The bounded job queue
// ---------------------------------------------------------------------------

/// A bounded MPMC FIFO queue.
///
/// Protocol requirement (see `workers/DESIGN.md`): a successful `push` or
/// `pop` is a SeqCst read-modify-write and `is_empty` does SeqCst loads, so
/// the Dekker-style hand-shakes between submitters and parking workers need
/// no extra fences. [`mpmc::ArrayQueue`] guarantees this (its head/tail CAS
/// and `is_empty` loads are SeqCst); the loom model's `Mutex` is stronger
/// still. It is `crossbeam_queue::ArrayQueue`'s algorithm, but a pop that
/// meets a push in progress backs off and yields instead of spinning (see
/// `mpmc.rs` for why that matters).
#[cfg(not(loom))]
pub(crate) struct Queue<T>(mpmc::ArrayQueue<T>);

#[cfg(not(loom))]
impl<T> Queue<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Queue(mpmc::ArrayQueue::new(cap))
    }
    #[inline]
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        self.0.push(value)
    }
    #[inline]
    pub(crate) fn pop(&self) -> Option<T> {
        self.0.pop()
    }
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(loom)]
pub(crate) struct Queue<T> {
    cap: usize,
    items: loom::sync::Mutex<std::collections::VecDeque<T>>,
}

#[cfg(loom)]
impl<T> Queue<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Queue {
            cap,
            items: loom::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        let mut q = self.items.lock().unwrap();
        if q.len() >= self.cap {
            return Err(value);
        }
        q.push_back(value);
        Ok(())
    }
    pub(crate) fn pop(&self) -> Option<T> {
        self.items.lock().unwrap().pop_front()
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.items.lock().unwrap().is_empty()
    }
    pub(crate) fn len(&self) -> usize {
        self.items.lock().unwrap().len()
    }
}

// ---------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------

/// Parking a blocked thread (a loom thread under the model, where a timed
/// park is an untimed one: the models do not exercise timeouts).
#[cfg(not(loom))]
pub(crate) mod thread {
    pub(crate) use std::thread::{current, park, park_timeout, Thread};

    /// A small number for the calling thread, handed out round robin on
    /// its first call and kept: which stripe of a per-thread-striped
    /// structure it uses (threads spread over the stripes, so that cores
    /// do not write one cache line in turn).
    #[inline]
    pub(crate) fn stripe() -> usize {
        use std::cell::Cell;
        use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        std::thread_local! {
            static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        STRIPE.with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT.fetch_add(1, Relaxed) & (usize::MAX >> 1);
                s.set(i);
            }
            i
        })
    }
}

#[cfg(loom)]
pub(crate) mod thread {
    pub(crate) use loom::thread::{current, park, Thread};

    /// See the non-loom `stripe`: the model thread's number (deterministic
    /// across the model's runs, as loom needs).
    pub(crate) fn stripe() -> usize {
        let id = format!("{:?}", current().id());
        id.trim_start_matches("ThreadId(")
            .trim_end_matches(')')
            .parse()
            .unwrap_or(0)
    }
    pub(crate) fn park_timeout(_: std::time::Duration) {
        park();
    }
}

/// Starts an OS thread (a loom thread under the model).
///
/// The thread is never detached: dropping a `JoinHandle` calls
/// `pthread_detach`, and glibc (2.36 here) reads the thread's descriptor
/// after marking it detached, so a thread exiting at that very moment (a
/// worker retired right after it was started) frees it first and the
/// spawner crashes with SIGSEGV inside `pthread_detach` (seen once in the
/// worker stress test). The handles are kept instead and joined once their
/// threads are finished, which costs a `pthread_join` of a dead thread.
#[cfg(not(loom))]
pub(crate) fn spawn_thread(
    name: String,
    stack_size: Option<usize>,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let mut b = std::thread::Builder::new().name(name);
    if let Some(size) = stack_size {
        b = b.stack_size(size);
    }
    let handle = b.spawn(move || {
        body();
        reaper::exited();
    })?;
    reaper::keep(handle);
    Ok(())
}

/// The handles of the threads `spawn_thread` started (see there).
#[cfg(not(loom))]
mod reaper {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::thread::JoinHandle;

    static KEPT: parking_lot::Mutex<Vec<JoinHandle<()>>> = parking_lot::Mutex::new(Vec::new());

    /// Bodies that returned since the last sweep.
    static EXITED: AtomicUsize = AtomicUsize::new(0);

    /// Sweep once this many threads are done: at most about this many
    /// finished threads (and their stacks) wait to be joined.
    const SWEEP_AFTER: usize = 64;

    pub(super) fn keep(handle: JoinHandle<()>) {
        KEPT.lock().push(handle);
    }

    /// Called by a thread as its body returns.
    pub(super) fn exited() {
        if EXITED.fetch_add(1, Relaxed) + 1 < SWEEP_AFTER {
            return;
        }
        let finished: Vec<JoinHandle<()>> = {
            let mut kept = KEPT.lock();
            EXITED.store(0, Relaxed);
            let mut done = Vec::new();
            let mut i = 0;
            while i < kept.len() {
                if kept[i].is_finished() {
                    done.push(kept.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            done
        };
        // Joined outside the lock: each body has returned, so this only
        // waits for the OS thread to end (never this one: it is still in
        // its body). A panic was reported by the thread itself.
        for h in finished {
            let _ = h.join();
        }
    }
}

#[cfg(loom)]
pub(crate) fn spawn_thread(
    _name: String,
    _stack_size: Option<usize>,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    loom::thread::spawn(body);
    Ok(())
}

/// Spin-then-yield back-off for short searches.
#[cfg(not(loom))]
pub(crate) use crossbeam_utils::Backoff;

/// Under loom a search gives up at once (spinning only multiplies states).
#[cfg(loom)]
pub(crate) struct Backoff;

#[cfg(loom)]
impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff
    }
    pub(crate) fn snooze(&self) {
        loom::thread::yield_now();
    }
    pub(crate) fn is_completed(&self) -> bool {
        true
    }
}

/// A load that is one half of a Dekker-style hand-shake (see
/// `workers/DESIGN.md`, "Why no wake-up and no job is lost").
///
/// Outside loom it is a SeqCst load, which the C++ memory model orders
/// against the other side's SeqCst read-modify-write (and which costs a
/// plain `mov` on x86). Loom models SeqCst as AcqRel, under which such a
/// hand-shake can fail in the model though not on real hardware, so under
/// loom the load is a read-modify-write (`fetch_add(0)`): RMWs always read
/// the latest value, which restores the guarantee in the model.
pub(crate) trait HandshakeLoad {
    type Value;
    fn handshake_load(&self) -> Self::Value;
}

impl HandshakeLoad for AtomicU64 {
    type Value = u64;
    #[inline]
    fn handshake_load(&self) -> u64 {
        #[cfg(not(loom))]
        {
            self.load(Ordering::SeqCst)
        }
        #[cfg(loom)]
        {
            self.fetch_add(0, Ordering::SeqCst)
        }
    }
}

impl HandshakeLoad for AtomicUsize {
    type Value = usize;
    #[inline]
    fn handshake_load(&self) -> usize {
        #[cfg(not(loom))]
        {
            self.load(Ordering::SeqCst)
        }
        #[cfg(loom)]
        {
            self.fetch_add(0, Ordering::SeqCst)
        }
    }
}
