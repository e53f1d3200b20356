//! The semaphore: an atomic count of available permits for the fast path,
//! and a FIFO queue of waiters (threads and tasks alike) under a mutex for
//! the slow one. See `DESIGN.md`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::thread::{self, Thread};
use crate::sync::{Arc, AtomicBool, AtomicUsize, Mutex, MutexGuard, Ordering::*, UnsafeCell};

/// The most permits a semaphore can hold (room is left so that sums of
/// permit counts never overflow).
pub const MAX_PERMITS: usize = usize::MAX >> 4;

/// Why an acquire failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    /// The semaphore was closed (before or while waiting).
    #[error("the semaphore is closed")]
    Closed,
    /// The deadline passed before the permits were granted.
    #[error("timed out waiting for a permit")]
    TimedOut,
    /// More permits were asked for than the semaphore could ever hold.
    #[error("asked for {requested} permits at once; a semaphore holds at most {max}", max = MAX_PERMITS)]
    TooMany {
        /// The permits asked for.
        requested: usize,
    },
}

/// Why a `try_acquire` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryAcquireError {
    /// The semaphore was closed.
    #[error("the semaphore is closed")]
    Closed,
    /// Not enough permits are available now (or others wait first).
    #[error("no permits available")]
    NoPermits,
    /// More permits were asked for than the semaphore could ever hold.
    #[error("asked for {requested} permits at once; a semaphore holds at most {max}", max = MAX_PERMITS)]
    TooMany {
        /// The permits asked for.
        requested: usize,
    },
}

/// Adding permits would take the semaphore past [`MAX_PERMITS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("adding {added} permits to {total} would exceed the limit of {max}", max = MAX_PERMITS)]
pub struct TooManyPermits {
    /// Permits the semaphore had.
    pub total: usize,
    /// Permits that were to be added.
    pub added: usize,
}

/// Why [`Semaphore::resize`] refused; the semaphore is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResizeError {
    /// Above [`MAX_PERMITS`].
    #[error("capacity {0} is above the limit of {max} permits", max = MAX_PERMITS)]
    CapacityTooLarge(usize),
    /// The semaphore is closed.
    #[error("the semaphore is closed")]
    Closed,
}

/// A counting semaphore for plain threads and async tasks alike.
///
/// Threads block in [`acquire_blocking`](Self::acquire_blocking) or
/// [`acquire_timeout`](Self::acquire_timeout); tasks `.await`
/// [`acquire`](Self::acquire). Both wait in one strictly FIFO queue, and a
/// request for several permits keeps its place: permits are handed to the
/// head of the queue as they come back, never to a later arrival. The core
/// depends on no async runtime: a task is woken through its `Waker`.
///
/// ```
/// use cenote::limit::Semaphore;
/// use std::sync::Arc;
///
/// let sem = Arc::new(Semaphore::new(2));
/// let a = sem.acquire_blocking().unwrap();
/// let b = sem.clone().acquire_owned_blocking().unwrap();
/// assert!(sem.try_acquire().is_err());
/// assert_eq!((sem.available(), sem.in_use()), (0, 2));
/// drop((a, b));
/// assert_eq!(sem.available(), 2);
/// ```
pub struct Semaphore {
    /// `available << 1 | SLOW`: the permits free to take, and whether a
    /// release must take the queue lock (someone waits, or a shrink is
    /// owed permits). One word, so that a release's add and a waiter's
    /// "I am queued" are read-modify-writes of the same atomic and cannot
    /// miss each other.
    state: AtomicUsize,
    /// Queued waiters (for `waiting()`; changed under the queue lock).
    waiters: AtomicUsize,
    /// Permits that exist: available, held, or reserved by the head waiter.
    total: AtomicUsize,
    /// Permits `resize` still has to remove as they come back.
    debt: AtomicUsize,
    /// Permits handed to queued waiters that still wait for more.
    reserved: AtomicUsize,
    closed: AtomicBool,
    queue: Mutex<List>,
    /// Requests by result, for the `metrics` feature (`observe/limit.rs`).
    #[cfg(feature = "metrics")]
    pub(crate) tally: Tally,
}

/// A semaphore's requests by result (feature `metrics`). Statistics only:
/// relaxed adds that order nothing. A grant costs one add on the fast
/// path; the other results are counted where they happen, off it.
#[cfg(feature = "metrics")]
#[derive(Default)]
pub(crate) struct Tally {
    /// Acquires and successful `try_acquire`s.
    pub(crate) acquired: std::sync::atomic::AtomicU64,
    /// Acquires that joined the queue.
    pub(crate) queued: std::sync::atomic::AtomicU64,
    /// `try_acquire`s refused for want of permits.
    pub(crate) rejected: std::sync::atomic::AtomicU64,
    /// Queued acquires given up (timed out, or the future dropped).
    pub(crate) abandoned: std::sync::atomic::AtomicU64,
    /// Requests refused because the semaphore was closed.
    pub(crate) closed: std::sync::atomic::AtomicU64,
    /// Where a queued acquire records its time in the queue, once the
    /// semaphore is published (its slow path only).
    pub(crate) queue_time: std::sync::OnceLock<Box<metrics::Histogram>>,
}

/// Counts one request's result in `tally` (feature `metrics`; nothing
/// without it).
macro_rules! tally {
    ($sem:expr, $field:ident) => {
        #[cfg(feature = "metrics")]
        $sem.tally
            .$field
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
}

/// `state` bit: releases must go through the queue lock.
const SLOW: usize = 1;

/// A waiter's progress, seen by the waiter and by whoever serves the queue.
const WAITING: usize = 0;
const GRANTED: usize = 1;
const CLOSED: usize = 2;

/// A queued acquire: its progress, which the waiter reads at any time, and
/// its queue node, which only the holder of the queue lock touches.
///
/// The acquire owns it ([`Queued`], a leaked `Box`, so its address survives
/// the future being moved) and the queue links it by address: an intrusive
/// list, so queuing and unlinking move no node and allocate nothing. That
/// is safe because the queue is the only other way to reach it, and the
/// owner frees it only (a) after seeing GRANTED or CLOSED, which the server
/// stores as its last touch, after unlinking it and taking its `Wake`, or
/// (b) after `cancel` unlinked it under the queue lock. So no counted
/// reference (two read-modify-writes per wait) is needed.
struct Waiter {
    state: AtomicUsize,
    /// Under the queue lock only (or before the waiter is linked).
    node: UnsafeCell<Node>,
}

struct Node {
    /// How to wake the waiter; a task's waker is updated here (under the
    /// queue lock) when it is polled with a new one. Taken by whoever
    /// unlinks the node.
    wake: Option<Wake>,
    requested: usize,
    /// Permits still to be handed over.
    remaining: usize,
    /// Higher waits ahead of lower; FIFO among equals.
    priority: i32,
    prev: Link,
    next: Link,
}

/// A linked waiter's address (`None`: the end of the list).
type Link = Option<NonNull<Waiter>>;

enum Wake {
    Thread(Thread),
    Task(Waker),
}

impl Wake {
    fn wake(self) {
        match self {
            Wake::Thread(t) => t.unpark(),
            Wake::Task(w) => w.wake(),
        }
    }
}

impl Clone for Wake {
    fn clone(&self) -> Self {
        match self {
            Wake::Thread(t) => Wake::Thread(t.clone()),
            Wake::Task(w) => Wake::Task(w.clone()),
        }
    }
}

/// The acquire's ownership of its [`Waiter`].
struct Queued {
    waiter: NonNull<Waiter>,
}

// SAFETY: the waiter is an atomic plus a node that only the queue lock's
// holder touches; the `Wake` in it is `Send`.
unsafe impl Send for Queued {}
// SAFETY: through `&Queued` only the atomic state is read.
unsafe impl Sync for Queued {}

impl Queued {
    /// A waiter in state WAITING with its node filled in, not linked: a
    /// recycled one when this thread has one, else a new allocation.
    ///
    /// A recycled box is filled field by field, the `Wake` made in place:
    /// a `Node` built on the stack and copied in was read back with wide
    /// loads spanning narrower stores, which miss store forwarding (about
    /// half of an enqueue's time, measured on AMD EPYC).
    fn new(n: usize, wake: impl FnOnce() -> Wake, priority: i32) -> Queued {
        // `try_with`: an acquire may start while this thread's locals are
        // being destroyed (from another local's drop); it then allocates.
        #[cfg(not(loom))]
        if let Some(mut w) = SPARE.try_with(|s| s.take()).ok().flatten() {
            *w.state.get_mut() = WAITING;
            w.node.with_mut(|p| {
                // SAFETY: the box is ours alone (unlinked, recycled).
                let node = unsafe { &mut *p };
                node.wake = Some(wake());
                node.requested = n;
                node.remaining = n;
                node.priority = priority;
                node.prev = None;
                node.next = None;
            });
            return Queued {
                waiter: NonNull::from(Box::leak(w)),
            };
        }
        let w = Box::new(Waiter {
            state: AtomicUsize::new(WAITING),
            node: UnsafeCell::new(Node {
                wake: Some(wake()),
                requested: n,
                remaining: n,
                priority,
                prev: None,
                next: None,
            }),
        });
        Queued {
            waiter: NonNull::from(Box::leak(w)),
        }
    }

    fn state(&self) -> usize {
        // SAFETY: alive until this `Queued` is dropped.
        unsafe { self.waiter.as_ref() }.state.load(SeqCst)
    }
}

impl Drop for Queued {
    /// Frees the waiter, or keeps it for this thread's next enqueue. Only
    /// ever reached unlinked: after GRANTED or CLOSED, or after `cancel`.
    fn drop(&mut self) {
        // SAFETY: leaked from a box in `new`; unlinked, so nobody else
        // reaches it.
        let w = unsafe { Box::from_raw(self.waiter.as_ptr()) };
        // `try_with`: an acquire kept in a thread local is dropped while the
        // thread's locals are destroyed, when SPARE may be gone; the box is
        // then freed.
        #[cfg(not(loom))]
        {
            let mut w = Some(w);
            let _ = SPARE.try_with(|s| s.set(w.take()));
            drop(w);
        }
        #[cfg(loom)]
        drop(w);
    }
}

#[cfg(not(loom))]
std::thread_local! {
    /// One finished waiter per thread, reused by the next enqueue: a waiting
    /// acquire then allocates nothing.
    static SPARE: std::cell::Cell<Option<Box<Waiter>>> = const { std::cell::Cell::new(None) };
}

// ----- the waiter queue: an intrusive doubly linked list -----------------------

/// FIFO (by priority) of linked waiters, with O(1) removal of any of them
/// (a cancelled waiter).
struct List {
    head: Link,
    tail: Link,
}

// SAFETY: the list holds addresses of waiters whose nodes are touched only
// under the lock that guards the list.
unsafe impl Send for List {}

/// Runs `f` on a waiter's node.
///
/// # Safety
/// The caller holds the queue lock, and `w` is linked in the queue (so its
/// owner keeps it alive), or is being linked or unlinked by the caller.
#[inline(always)]
unsafe fn node<R>(w: NonNull<Waiter>, f: impl FnOnce(&mut Node) -> R) -> R {
    // SAFETY: per the contract, alive, and the lock makes the access
    // exclusive.
    unsafe { w.as_ref() }
        .node
        .with_mut(|p| f(unsafe { &mut *p }))
}

impl List {
    const fn new() -> Self {
        List {
            head: None,
            tail: None,
        }
    }

    /// Links `w` behind every waiter of the same or higher priority (at the
    /// tail, O(1), when all share one priority), but never ahead of a head
    /// that already holds part of its permits (`reserved` is the head's).
    ///
    /// # Safety
    /// `w` is alive, unlinked, and stays alive while linked; the caller
    /// holds the queue lock (`&mut self`).
    unsafe fn link(&mut self, w: NonNull<Waiter>) {
        // SAFETY (every `node` call): `w` per the contract, the others
        // linked; the lock is held.
        let priority = unsafe { node(w, |n| n.priority) };
        let head = self.head;
        let mut after = self.tail;
        while let Some(a) = after {
            let (stop, prev) = unsafe {
                node(a, |n| {
                    let partly_served = Some(a) == head && n.remaining < n.requested;
                    (n.priority >= priority || partly_served, n.prev)
                })
            };
            if stop {
                break;
            }
            after = prev;
        }
        let next = match after {
            None => self.head,
            Some(a) => unsafe { node(a, |n| n.next.replace(w)) },
        };
        if after.is_none() {
            self.head = Some(w);
        }
        match next {
            None => self.tail = Some(w),
            Some(x) => unsafe { node(x, |n| n.prev = Some(w)) },
        }
        unsafe {
            node(w, |n| {
                n.prev = after;
                n.next = next;
            })
        };
    }

    /// Unlinks `w` and takes its `Wake`.
    ///
    /// # Safety
    /// `w` is linked in this list; the caller holds the queue lock.
    unsafe fn unlink(&mut self, w: NonNull<Waiter>) -> Option<Wake> {
        // SAFETY (every `node` call): linked waiters, the lock is held.
        let (prev, next, wake) = unsafe { node(w, |n| (n.prev, n.next, n.wake.take())) };
        match prev {
            None => self.head = next,
            Some(p) => unsafe { node(p, |n| n.next = next) },
        }
        match next {
            None => self.tail = prev,
            Some(x) => unsafe { node(x, |n| n.prev = prev) },
        }
        wake
    }
}

/// Publishes a waiter's outcome: the last touch of it, after it was
/// unlinked (under the queue lock).
///
/// # Safety
/// `w` was linked until the caller unlinked it under the queue lock, which
/// the caller still holds.
unsafe fn settle(w: NonNull<Waiter>, state: usize) {
    // SAFETY: the owner frees the waiter only after seeing this store, or
    // after unlinking it itself under the queue lock (then it is not
    // reachable here).
    unsafe { w.as_ref() }.state.store(state, Release);
}

// ----- the semaphore -----------------------------------------------------------

impl Semaphore {
    /// A semaphore with `permits` permits.
    ///
    /// # Panics
    /// If `permits` is above [`MAX_PERMITS`] (see [`try_new`](Self::try_new)).
    pub fn new(permits: usize) -> Semaphore {
        Semaphore::try_new(permits).unwrap_or_else(|e| panic!("cenote::limit::Semaphore::new: {e}"))
    }

    /// A semaphore with `permits` permits, or an error above [`MAX_PERMITS`].
    pub fn try_new(permits: usize) -> Result<Semaphore, TooManyPermits> {
        if permits > MAX_PERMITS {
            return Err(TooManyPermits {
                total: 0,
                added: permits,
            });
        }
        Ok(Semaphore {
            state: AtomicUsize::new(permits << 1),
            waiters: AtomicUsize::new(0),
            total: AtomicUsize::new(permits),
            debt: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            #[cfg(feature = "metrics")]
            tally: Tally::default(),
            queue: Mutex::new(List::new()),
        })
    }

    /// Permits free to take now.
    pub fn available(&self) -> usize {
        self.state.load(SeqCst) >> 1
    }

    /// Permits held by permit guards now (a snapshot: exact when nothing
    /// runs concurrently).
    pub fn in_use(&self) -> usize {
        let total = self.total.load(SeqCst);
        total
            .saturating_sub(self.available())
            .saturating_sub(self.reserved.load(SeqCst))
    }

    /// Threads and tasks waiting now.
    pub fn waiting(&self) -> usize {
        self.waiters.load(SeqCst)
    }

    /// Publishes this semaphore's levels (`cenote.limit.leases`,
    /// `.capacity`, `.queued`) and requests by result
    /// (`cenote.limit.requests`) to the `metrics` recorder under `name`,
    /// once a second, for as long as it lives; returns the name it got (a
    /// name a live pool holds gets a `-2` suffix, and a dropped semaphore's
    /// name is free again after the next publishing).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn publish_metrics(self: &std::sync::Arc<Self>, name: &str) -> String {
        crate::observe::limit::register(self, Some(name))
    }

    /// Wakes every waiter without granting it anything: each finds it
    /// still waits and goes on waiting (every acquire future and blocking
    /// wait tolerates such a wake-up). For a caller that checks a deadline
    /// of its own whenever it is polled: the resource pool's coarse acquire
    /// timeout, nudged by its background task instead of one timer per
    /// waiter. Returns how many were woken.
    #[cfg_attr(not(any(feature = "tokio", loom)), allow(dead_code))]
    #[cfg_attr(loom, allow(dead_code))] // its caller, `tasks`, is not built under loom
    pub(crate) fn wake_waiters(&self) -> usize {
        let mut wakes = Vec::new();
        {
            let q = self.queue.lock();
            let mut at = q.head;
            while let Some(w) = at {
                // SAFETY: linked, and the lock is held.
                at = unsafe {
                    node(w, |n| {
                        // A task's waker is taken, not cloned (a clone runs
                        // executor code, which must not run under the
                        // lock): the task, woken below, polls again and
                        // leaves a waker then. A thread's handle is kept.
                        wakes.extend(match &n.wake {
                            Some(Wake::Thread(t)) => Some(Wake::Thread(t.clone())),
                            _ => n.wake.take(),
                        });
                        n.next
                    })
                };
            }
        }
        // Woken outside the lock: a waker may run scheduler code.
        let n = wakes.len();
        wake_each(wakes.into_iter());
        n
    }

    /// The number of permits the semaphore is sized to (what
    /// [`resize`](Self::resize) last set, plus additions, minus
    /// forgotten ones).
    pub fn permits(&self) -> usize {
        self.total
            .load(SeqCst)
            .saturating_sub(self.debt.load(SeqCst))
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    // ----- acquiring ---------------------------------------------------------

    /// Waits for one permit (async). Cancel-safe: dropping the future at
    /// any point leaves no permit behind and no waiter in the queue.
    pub fn acquire(&self) -> Acquire<'_> {
        self.acquire_many(1)
    }

    /// Waits for `n` permits at once (async), keeping its place in the
    /// queue while they come back one by one.
    pub fn acquire_many(&self, n: usize) -> Acquire<'_> {
        Acquire {
            sem: self,
            req: Request::new(n),
        }
    }

    /// Like [`acquire_many`](Self::acquire_many), with a priority: a waiter
    /// queues ahead of every waiter of lower priority (the plain acquires
    /// have priority 0), behind those of the same or higher priority, so
    /// urgent work is served first and equals stay FIFO. A waiter already
    /// holding part of a many-permit request is never overtaken. Use it
    /// from a thread with [`Acquire::wait`] / [`Acquire::wait_timeout`].
    pub fn acquire_prioritized(&self, n: usize, priority: i32) -> Acquire<'_> {
        let mut req = Request::new(n);
        req.priority = priority;
        Acquire { sem: self, req }
    }

    /// Like [`acquire`](Self::acquire), with a permit that owns a handle to
    /// the semaphore (`'static`, can move into a spawned task).
    pub fn acquire_owned(self: Arc<Self>) -> AcquireOwned {
        self.acquire_many_owned(1)
    }

    /// Like [`acquire_many`](Self::acquire_many), owned.
    pub fn acquire_many_owned(self: Arc<Self>, n: usize) -> AcquireOwned {
        AcquireOwned {
            sem: self,
            req: Request::new(n),
        }
    }

    /// Blocks the calling thread until a permit is granted.
    ///
    /// Not for a thread that drives async tasks (a tokio worker, or inside
    /// `block_on`): if a task on that thread holds the permit, it can never
    /// run to release it. `.await` [`acquire`](Self::acquire) there. The
    /// semaphore depends on no runtime, so it cannot tell; the resource
    /// pool, which knows its runtime, refuses such a call instead.
    #[inline]
    pub fn acquire_blocking(&self) -> Result<Permit<'_>, AcquireError> {
        // The uncontended case inline: one load and one CAS.
        if !self.closed.load(SeqCst) && self.take_available(1) {
            tally!(self, acquired);
            return Ok(Permit { sem: self, n: 1 });
        }
        self.acquire_slow()
    }

    #[cold]
    #[inline(never)]
    fn acquire_slow(&self) -> Result<Permit<'_>, AcquireError> {
        self.acquire().wait()
    }

    /// Blocks the calling thread for at most `timeout` (zero: only a permit
    /// free now; a huge one: no deadline).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Permit<'_>, AcquireError> {
        self.acquire().wait_timeout(timeout)
    }

    /// Blocks until `n` permits are granted.
    pub fn acquire_many_blocking(&self, n: usize) -> Result<Permit<'_>, AcquireError> {
        self.acquire_many(n).wait()
    }

    /// Blocks until a permit is granted; the permit owns a semaphore handle.
    pub fn acquire_owned_blocking(self: Arc<Self>) -> Result<OwnedPermit, AcquireError> {
        self.acquire_owned().wait()
    }

    /// A permit if one is free now and nobody waits before the caller.
    pub fn try_acquire(&self) -> Result<Permit<'_>, TryAcquireError> {
        self.try_acquire_many(1)
    }

    /// `n` permits if they are free now and nobody waits before the caller.
    pub fn try_acquire_many(&self, n: usize) -> Result<Permit<'_>, TryAcquireError> {
        self.try_take(n)?;
        Ok(Permit { sem: self, n })
    }

    /// Like [`try_acquire`](Self::try_acquire), owned.
    pub fn try_acquire_owned(self: Arc<Self>) -> Result<OwnedPermit, TryAcquireError> {
        self.try_take(1)?;
        Ok(OwnedPermit { sem: self, n: 1 })
    }

    fn try_take(&self, n: usize) -> Result<(), TryAcquireError> {
        if n > MAX_PERMITS {
            return Err(TryAcquireError::TooMany { requested: n });
        }
        if self.closed.load(Acquire) {
            tally!(self, closed);
            return Err(TryAcquireError::Closed);
        }
        // Zero permits are always free (as for `acquire_many(0)`), also
        // while a shrink is owed permits.
        if n > 0 && !self.take_available(n) {
            tally!(self, rejected);
            return Err(TryAcquireError::NoPermits);
        }
        tally!(self, acquired);
        Ok(())
    }

    /// The fast path: takes `n` available permits if there are that many
    /// and nobody waits (strict FIFO: no barging past the queue).
    #[inline]
    fn take_available(&self, n: usize) -> bool {
        let mut cur = self.state.load(SeqCst);
        loop {
            if cur & SLOW != 0 || cur >> 1 < n {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(cur, cur - (n << 1), SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// A blocking acquirer, before it joins the queue: while nobody waits
    /// in it, spins a little (about a microsecond) for `n` permits to come
    /// free. Two threads taking turns with one permit then hand it over
    /// through the state word alone, not through the queue's lock, a park
    /// and a wake-up. Once a waiter is queued (SLOW), nobody spins past it:
    /// the queue stays FIFO. Tasks never spin; they wait in the queue.
    fn spin_take(&self, n: usize) -> bool {
        #[cfg(not(loom))]
        {
            let backoff = crate::sync::Backoff::new();
            for _ in 0..8 {
                if self.take_available(n) {
                    return true;
                }
                if self.state.load(Relaxed) & SLOW != 0 {
                    return false;
                }
                backoff.spin();
            }
            false
        }
        #[cfg(loom)]
        self.take_available(n)
    }

    /// Under the queue lock: takes up to `n` available permits; how many.
    fn take_up_to(&self, n: usize) -> usize {
        let mut cur = self.state.load(SeqCst);
        loop {
            let take = (cur >> 1).min(n);
            if take == 0 {
                return 0;
            }
            match self
                .state
                .compare_exchange_weak(cur, cur - (take << 1), SeqCst, SeqCst)
            {
                Ok(_) => return take,
                Err(now) => cur = now,
            }
        }
    }

    /// Makes permits available (the caller serves the queue if needed).
    #[inline]
    fn put_available(&self, n: usize) -> usize {
        self.state.fetch_add(n << 1, SeqCst)
    }

    // ----- releasing and resizing --------------------------------------------

    /// Gives `n` permits back: to the queue's head first, then to the pool.
    #[inline]
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        // Somebody waits (or a shrink is owed): hand the permits over under
        // the lock, without passing them through the state word (an add,
        // then the server's CAS to take them back out: two read-modify-
        // writes per hand-over saved). The load is a hint; the lock decides.
        if self.state.load(Relaxed) & SLOW != 0 {
            self.release_to_queue(n);
            return;
        }
        // If SLOW was set before this add, the queue is served below; if it
        // is set after, whoever set it (under the lock) serves the queue
        // and sees these permits.
        if self.put_available(n) & SLOW != 0 {
            self.release_slow();
        }
    }

    /// A release that saw SLOW: `n` permits served to the queue from hand.
    #[cold]
    #[inline(never)]
    fn release_to_queue(&self, n: usize) {
        let mut q = self.queue.lock();
        let woken = self.serve_with(&mut q, n);
        drop(q);
        wake_all(woken);
    }

    /// A release that found SLOW: serve the queue (and pay shrink debt).
    #[cold]
    #[inline(never)]
    fn release_slow(&self) {
        let mut q = self.queue.lock();
        let woken = self.serve(&mut q);
        drop(q);
        wake_all(woken);
    }

    /// Adds `n` permits (first cancelling what a shrink still owes).
    pub fn add_permits(&self, n: usize) -> Result<(), TooManyPermits> {
        let q = self.queue.lock();
        self.add_locked(q, n)
    }

    /// [`add_permits`](Self::add_permits) with the queue lock held (and
    /// released before the wake-ups).
    fn add_locked(&self, mut q: MutexGuard<'_, List>, n: usize) -> Result<(), TooManyPermits> {
        let total = self.total.load(SeqCst);
        let debt = self.debt.load(SeqCst);
        let paid = debt.min(n);
        let rest = n - paid;
        if total.saturating_add(rest) > MAX_PERMITS {
            return Err(TooManyPermits { total, added: n });
        }
        self.debt.store(debt - paid, SeqCst);
        self.total.fetch_add(rest, SeqCst);
        self.put_available(rest);
        let woken = self.serve(&mut q);
        drop(q);
        wake_all(woken);
        Ok(())
    }

    /// Removes up to `n` permits that are available now; returns how many.
    pub fn forget_permits(&self, n: usize) -> usize {
        let _q = self.queue.lock();
        let taken = self.take_up_to(n);
        self.total.fetch_sub(taken, SeqCst);
        taken
    }

    /// `n` held permits leave for good (a guard's `forget`). A pending
    /// shrink is owed permits as they come back, and these are such
    /// permits: they pay its debt first, and only the rest lowers the size.
    /// (Taken off `total` alone they would leave the debt behind, owed by
    /// permits that no longer exist: `permits()` stuck low and
    /// `add_permits` swallowed.) Under the queue lock, where the debt
    /// changes.
    fn forget_held(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut q = self.queue.lock();
        let debt = self.debt.load(SeqCst);
        self.debt.store(debt - debt.min(n), SeqCst);
        self.total.fetch_sub(n, SeqCst);
        // With the debt paid and nobody waiting, SLOW is cleared here.
        let woken = self.serve(&mut q);
        drop(q);
        wake_all(woken);
    }

    /// Resizes the semaphore to `permits` (both ways). Growing adds permits
    /// at once; shrinking removes available ones at once and the rest as
    /// holders release them, so in-use permits are never revoked.
    /// A closed semaphore refuses with [`ResizeError::Closed`].
    pub fn resize(&self, permits: usize) -> Result<(), ResizeError> {
        if permits > MAX_PERMITS {
            return Err(ResizeError::CapacityTooLarge(permits));
        }
        // One critical section from the read of the size to its change: a
        // resize or forget in between would be undone (two racing resizes
        // to 10 and 3 from 5 left 8).
        let mut q = self.queue.lock();
        if self.is_closed() {
            return Err(ResizeError::Closed);
        }
        let current = self.total.load(SeqCst) - self.debt.load(SeqCst);
        if permits >= current {
            return self
                .add_locked(q, permits - current)
                .map_err(|_| ResizeError::CapacityTooLarge(permits));
        }
        self.debt.fetch_add(current - permits, SeqCst);
        self.state.fetch_or(SLOW, SeqCst);
        let woken = self.serve(&mut q);
        drop(q);
        wake_all(woken);
        Ok(())
    }

    /// Closes the semaphore: every waiter wakes with
    /// [`AcquireError::Closed`], later acquires fail at once. Permits held
    /// stay valid and are returned as usual. Idempotent.
    pub fn close(&self) {
        let mut q = self.queue.lock();
        self.closed.store(true, SeqCst);
        let mut woken = Woken::default();
        while let Some(head) = q.head {
            // SAFETY: linked, and the lock is held; `settle` is the last
            // touch.
            unsafe {
                let partial = node(head, |n| n.requested - n.remaining);
                let wake = q.unlink(head);
                self.unreserve(partial);
                self.put_available(partial);
                self.count_waiter(false);
                settle(head, CLOSED);
                woken.extend_one(wake);
            }
        }
        // Pays any shrink debt from what came back, and clears SLOW.
        woken.extend(self.serve(&mut q));
        drop(q);
        wake_all(woken);
    }

    /// Under the queue lock: pays the shrink debt, then hands available
    /// permits to waiters in order; returns the waiters to wake.
    fn serve(&self, q: &mut MutexGuard<'_, List>) -> Woken {
        self.serve_with(q, 0)
    }

    /// [`serve`](Self::serve) with `in_hand` permits that a release brings
    /// (not in the state word): they go first, to the debt, then to the
    /// waiters; what is left is made available.
    fn serve_with(&self, q: &mut MutexGuard<'_, List>, mut in_hand: usize) -> Woken {
        let mut woken = Woken::default();
        let debt = self.debt.load(SeqCst);
        if debt > 0 {
            let from_hand = in_hand.min(debt);
            in_hand -= from_hand;
            let paid = from_hand + self.take_up_to(debt - from_hand);
            self.debt.store(debt - paid, SeqCst);
            self.total.fetch_sub(paid, SeqCst);
            if debt > paid {
                // SLOW stays set: releases come here to pay the rest. (All
                // in hand went to the debt.)
                return woken;
            }
        }
        while let Some(head) = q.head {
            // SAFETY: linked, and the lock is held.
            let (requested, remaining) = unsafe { node(head, |n| (n.requested, n.remaining)) };
            let from_hand = in_hand.min(remaining);
            in_hand -= from_hand;
            let mut got = from_hand;
            if remaining > got {
                got += self.take_up_to(remaining - got);
            }
            if got < remaining {
                if got > 0 {
                    // SAFETY: as above.
                    unsafe { node(head, |n| n.remaining -= got) };
                    self.reserve(got);
                }
                break;
            }
            // SAFETY: as above; `settle` is the last touch. Release: the
            // waiter that sees GRANTED sees the queue as this lock holder
            // left it; it re-checks under the lock before it touches its
            // node.
            unsafe {
                let wake = q.unlink(head);
                self.unreserve(requested - remaining);
                self.count_waiter(false);
                settle(head, GRANTED);
                woken.extend_one(wake);
            }
        }
        if in_hand > 0 {
            // Nobody left to serve (a waiter still short took all it could).
            self.put_available(in_hand);
        }
        if q.head.is_none() {
            // Nobody waits and nothing is owed: releases may skip the lock.
            // (Set again under this lock by the next waiter or shrink.)
            self.state.fetch_and(!SLOW, SeqCst);
        }
        woken
    }

    /// `waiters` and `reserved` change only under the queue lock, so a load
    /// and a store do (no read-modify-write); readers take snapshots.
    fn count_waiter(&self, joined: bool) {
        let n = self.waiters.load(Relaxed);
        self.waiters
            .store(if joined { n + 1 } else { n - 1 }, Release);
    }

    fn reserve(&self, n: usize) {
        self.reserved
            .store(self.reserved.load(Relaxed) + n, Relaxed);
    }

    fn unreserve(&self, n: usize) {
        if n > 0 {
            self.reserved
                .store(self.reserved.load(Relaxed) - n, Relaxed);
        }
    }

    /// Queues a waiter for `n` permits (and serves the queue at once, which
    /// grants it if permits are free and it is first).
    fn enqueue(
        &self,
        n: usize,
        wake: impl FnOnce() -> Wake,
        priority: i32,
    ) -> Result<Queued, AcquireError> {
        // Filled in before the lock is taken: the lock covers linking only.
        let queued = Queued::new(n, wake, priority);
        let mut q = self.queue.lock();
        if self.closed.load(SeqCst) {
            return Err(AcquireError::Closed);
        }
        // SAFETY: unlinked and ours; it stays alive while linked (see
        // `Waiter`); the lock is held.
        unsafe { q.link(queued.waiter) };
        tally!(self, queued);
        // SLOW is cleared only under this lock: seen set, it stays set until
        // we unlock, and every release meanwhile comes to serve the queue.
        // (Skipping the RMW matters when many wait: it is the one write to
        // the word every acquire and release touches.)
        let mut state = self.state.load(SeqCst);
        if state & SLOW == 0 {
            state = self.state.fetch_or(SLOW, SeqCst) | SLOW;
        }
        // Counted once SLOW is set (the store releases it): whoever sees
        // this waiter in `waiting()` and then releases a permit releases it
        // through the queue, to this waiter, not to a later `try_acquire`.
        self.count_waiter(true);
        if state >> 1 == 0 {
            // Nothing free as of the moment SLOW was (seen) set: serving
            // would hand out nothing, and every permit released from now
            // on comes through the lock to whoever is first (the usual
            // case: the waiter queues behind a holder).
            return Ok(queued);
        }
        let woken = self.serve(&mut q);
        drop(q);
        // Waking our own waiter is harmless (a stale unpark, or a wake of
        // the task being polled).
        wake_all(woken);
        Ok(queued)
    }

    /// Takes a waiter out of the queue (its future was dropped or its
    /// deadline passed). Returns what it had become meanwhile.
    fn cancel(&self, queued: &Queued, n: usize) -> usize {
        let mut q = self.queue.lock();
        let state = queued.state();
        if state != WAITING {
            return state;
        }
        tally!(self, abandoned);
        // SAFETY: still WAITING under the lock, so still linked.
        let (partial, wake) = unsafe {
            let partial = n - node(queued.waiter, |n| n.remaining);
            (partial, q.unlink(queued.waiter))
        };
        self.count_waiter(false);
        if partial > 0 {
            self.unreserve(partial);
            self.put_available(partial);
        }
        // The next waiter may now be first, or the partial permits may
        // satisfy someone.
        let woken = self.serve(&mut q);
        drop(q);
        // Dropped outside the lock: dropping a waker may run scheduler code.
        drop(wake);
        wake_all(woken);
        WAITING
    }
}

/// Waiters to wake once the queue lock is released. Usually one, kept
/// inline: a release that hands its permit over allocates nothing.
#[derive(Default)]
struct Woken {
    first: Option<Wake>,
    rest: Vec<Wake>,
}

impl Woken {
    fn push(&mut self, w: Wake) {
        match self.first {
            None => self.first = Some(w),
            Some(_) => self.rest.push(w),
        }
    }

    fn extend_one(&mut self, w: Option<Wake>) {
        if let Some(w) = w {
            self.push(w);
        }
    }

    fn extend(&mut self, other: Woken) {
        self.extend_one(other.first);
        for w in other.rest {
            self.push(w);
        }
    }
}

/// Wakes the waiters a grant or close served. A waker that panics (an
/// executor's bug) does not cost the others their wake-up: each is woken,
/// and the first panic goes on to the caller afterwards.
#[inline]
fn wake_all(woken: Woken) {
    let Some(first) = woken.first else { return };
    if woken.rest.is_empty() {
        first.wake();
        return;
    }
    wake_each(std::iter::once(first).chain(woken.rest));
}

#[cold]
fn wake_each(wakes: impl Iterator<Item = Wake>) {
    let mut panic = None;
    for w in wakes {
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake())) {
            match panic {
                None => panic = Some(p),
                Some(_) => crate::unwind::drop_payload(p),
            }
        }
    }
    if let Some(p) = panic {
        std::panic::resume_unwind(p);
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("permits", &self.permits())
            .field("available", &self.available())
            .field("in_use", &self.in_use())
            .field("waiting", &self.waiting())
            .field("closed", &self.is_closed())
            .finish()
    }
}

// ----- one acquire request, shared by the borrowed and owned futures ----------

struct Request {
    n: usize,
    priority: i32,
    queued: Option<Queued>,
    done: bool,
    /// When it joined the queue, if its time there is recorded.
    #[cfg(feature = "metrics")]
    queued_at: Option<Instant>,
}

impl Request {
    fn new(n: usize) -> Self {
        Request {
            n,
            priority: 0,
            queued: None,
            done: false,
            #[cfg(feature = "metrics")]
            queued_at: None,
        }
    }

    /// First attempt: the fast path, else a place in the queue.
    #[inline]
    fn start(
        &mut self,
        sem: &Semaphore,
        wake: impl FnOnce() -> Wake,
    ) -> Option<Result<(), AcquireError>> {
        if self.n > MAX_PERMITS {
            return Some(Err(AcquireError::TooMany { requested: self.n }));
        }
        if sem.closed.load(SeqCst) {
            return Some(Err(AcquireError::Closed));
        }
        if self.n == 0 || sem.take_available(self.n) {
            return Some(Ok(()));
        }
        match sem.enqueue(self.n, wake, self.priority) {
            Err(e) => Some(Err(e)),
            Ok(queued) => {
                let state = queued.state();
                self.queued = Some(queued);
                #[cfg(feature = "metrics")]
                if sem.tally.queue_time.get().is_some() {
                    self.queued_at = Some(Instant::now());
                }
                Self::outcome(state)
            }
        }
    }

    fn outcome(state: usize) -> Option<Result<(), AcquireError>> {
        match state {
            GRANTED => Some(Ok(())),
            CLOSED => Some(Err(AcquireError::Closed)),
            _ => None,
        }
    }

    fn finish(&mut self, r: Result<(), AcquireError>) -> Result<(), AcquireError> {
        self.done = true;
        self.queued = None;
        r
    }

    /// [`finish`](Self::finish), counting the result in `sem`'s tally
    /// (feature `metrics`).
    #[inline]
    fn finish_on(
        &mut self,
        sem: &Semaphore,
        r: Result<(), AcquireError>,
    ) -> Result<(), AcquireError> {
        match &r {
            Ok(()) => {
                tally!(sem, acquired);
            }
            Err(AcquireError::Closed) => {
                tally!(sem, closed);
            }
            Err(_) => {}
        }
        #[cfg(feature = "metrics")]
        if let (Some(t0), Some(h)) = (self.queued_at.take(), sem.tally.queue_time.get()) {
            h.record(t0.elapsed().as_secs_f64());
        }
        let _ = sem;
        self.finish(r)
    }

    #[inline]
    fn poll(&mut self, sem: &Semaphore, cx: &mut Context<'_>) -> Poll<Result<(), AcquireError>> {
        assert!(!self.done, "an Acquire future polled after it completed");
        let Some(queued) = &self.queued else {
            return match self.start(sem, || Wake::Task(cx.waker().clone())) {
                Some(r) => Poll::Ready(self.finish_on(sem, r)),
                None => Poll::Pending,
            };
        };
        match Self::rewake(sem, queued, Some(cx.waker())) {
            Some(r) => Poll::Ready(self.finish_on(sem, r)),
            None => Poll::Pending,
        }
    }

    /// A blocking wait, step by step: an outcome at once, else a place in
    /// the queue; a short spin; a watch, for the head of the queue; a park.
    fn wait(&mut self, sem: &Semaphore, deadline: Option<Instant>) -> Result<(), AcquireError> {
        assert!(!self.done, "an Acquire waited on after it completed");
        if let Some(r) = self.enter_wait(sem, deadline) {
            return self.finish_on(sem, r);
        }
        if let Some(r) = self.spin_for_grant() {
            return self.finish_on(sem, r);
        }
        #[cfg(not(loom))]
        if let Some(r) = self.watch_as_head(sem, deadline) {
            return self.finish_on(sem, r);
        }
        let r = self.park_until_settled(sem, deadline);
        self.finish_on(sem, r)
    }

    /// A blocking wait's start: the outcome, if it has one already;
    /// otherwise the request is queued and waiting.
    fn enter_wait(
        &mut self,
        sem: &Semaphore,
        deadline: Option<Instant>,
    ) -> Option<Result<(), AcquireError>> {
        match &self.queued {
            // Polled before, so already queued: the same waiter goes on
            // waiting, woken as this thread from now on.
            Some(queued) => Self::rewake(sem, queued, None),
            None => self.begin_wait(sem, deadline),
        }
    }

    /// A grant often comes within a few hundred nanoseconds (a holder
    /// releasing right away); spinning that long saves the park and the
    /// futex wake-up that would follow, the bulk of a hand-over between
    /// two threads. After it the waiter watches (as the queue's head) or
    /// parks.
    fn spin_for_grant(&self) -> Option<Result<(), AcquireError>> {
        let backoff = crate::sync::Backoff::new();
        while !backoff.is_completed() {
            let queued = self.queued.as_ref().expect("queued after start");
            if let Some(r) = Self::outcome(queued.state()) {
                return Some(r);
            }
            backoff.snooze();
        }
        None
    }

    /// The only waiter is the next one served: it keeps watching (giving
    /// its core to any thread that wants it) for up to `sync::watch`'s
    /// `WATCH` before it parks. A grant to a parked thread leaves the permit
    /// unused until the thread is back on a core (tens of microseconds on a
    /// VM), and between two threads taking turns that was most of the time
    /// (see limit/DESIGN.md, "Waiting threads"). Waiters further
    /// back park at once: they are not served next.
    #[cfg(not(loom))]
    fn watch_as_head(
        &self,
        sem: &Semaphore,
        deadline: Option<Instant>,
    ) -> Option<Result<(), AcquireError>> {
        if sem.waiters.load(Relaxed) != 1 {
            return None;
        }
        let queued = self.queued.as_ref().expect("queued after start");
        crate::sync::watch(deadline, || Self::outcome(queued.state()))
    }

    /// Parks until the waiter is granted or the semaphore closed; at the
    /// deadline it leaves the queue (a grant that came first still counts).
    fn park_until_settled(
        &self,
        sem: &Semaphore,
        deadline: Option<Instant>,
    ) -> Result<(), AcquireError> {
        loop {
            let queued = self.queued.as_ref().expect("queued after start");
            if let Some(r) = Self::outcome(queued.state()) {
                return r;
            }
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        let state = sem.cancel(queued, self.n);
                        return Self::outcome(state).unwrap_or(Err(AcquireError::TimedOut));
                    }
                    thread::park_timeout(deadline - now);
                }
            }
        }
    }

    /// A blocking wait's first attempt: the fast path, a short spin, then a
    /// place in the queue; `None` once queued and still waiting.
    fn begin_wait(
        &mut self,
        sem: &Semaphore,
        deadline: Option<Instant>,
    ) -> Option<Result<(), AcquireError>> {
        // A permit free now needs no clock read; spinning needs time left.
        let may_spin = self.n <= MAX_PERMITS && !sem.closed.load(SeqCst);
        if may_spin
            && (sem.take_available(self.n)
                || (deadline.map_or(true, |d| Instant::now() < d) && sem.spin_take(self.n)))
        {
            return Some(Ok(()));
        }
        self.start(sem, || Wake::Thread(thread::current()))
    }

    /// A queued waiter's outcome if it has one; else it is told how to
    /// wake its owner from now on: `task`'s waker, or the calling thread
    /// (`None`). Under the queue lock: a grant or close sets the state and
    /// unlinks the waiter under that lock, so while the state says WAITING
    /// the waiter is still linked. A new `Wake` is made (a waker cloned)
    /// with the lock released: cloning a waker runs the executor's code,
    /// which may call this semaphore back.
    fn rewake(
        sem: &Semaphore,
        queued: &Queued,
        task: Option<&Waker>,
    ) -> Option<Result<(), AcquireError>> {
        let mut fresh: Option<Wake> = None;
        loop {
            if let Some(r) = Self::outcome(queued.state()) {
                return Some(r);
            }
            let q = sem.queue.lock();
            if let Some(r) = Self::outcome(queued.state()) {
                return Some(r);
            }
            // SAFETY (both calls): linked (WAITING under the lock), and the
            // lock is held.
            let same = unsafe {
                node(queued.waiter, |n| match (&n.wake, task) {
                    (Some(Wake::Task(w)), Some(t)) => w.will_wake(t),
                    _ => false,
                })
            };
            if same {
                return None;
            }
            let Some(wake) = fresh.take() else {
                drop(q);
                fresh = Some(match task {
                    Some(t) => Wake::Task(t.clone()),
                    None => Wake::Thread(thread::current()),
                });
                continue;
            };
            let old = unsafe { node(queued.waiter, |n| n.wake.replace(wake)) };
            drop(q);
            // Dropped outside the lock: dropping a waker may run scheduler code.
            drop(old);
            return None;
        }
    }

    /// The future was dropped: leave nothing behind.
    fn abandon(&mut self, sem: &Semaphore) {
        if self.done {
            return;
        }
        if let Some(queued) = self.queued.take() {
            if sem.cancel(&queued, self.n) == GRANTED {
                // Granted but never handed to the caller: give them back.
                sem.release(self.n);
            }
            drop(queued);
        }
    }
}

/// The future of [`Semaphore::acquire`] and [`Semaphore::acquire_many`].
/// `.await` it in a task, or call [`wait`](Self::wait) /
/// [`wait_timeout`](Self::wait_timeout) on a plain thread.
#[must_use = "an Acquire does nothing until awaited or waited on"]
pub struct Acquire<'a> {
    sem: &'a Semaphore,
    req: Request,
}

impl std::fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acquire").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AcquireOwned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireOwned").finish_non_exhaustive()
    }
}

impl<'a> Acquire<'a> {
    /// Blocks the calling thread until the permits are granted. A future
    /// polled before keeps its place in the queue (the same waiter goes on
    /// waiting, woken as this thread from then on). Calling it on a future
    /// that already yielded its permits panics, as polling it would.
    pub fn wait(mut self) -> Result<Permit<'a>, AcquireError> {
        self.req.wait(self.sem, None)?;
        Ok(Permit {
            sem: self.sem,
            n: self.req.n,
        })
    }

    /// Blocks for at most `timeout`.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Permit<'a>, AcquireError> {
        let deadline = Instant::now().checked_add(timeout);
        self.req.wait(self.sem, deadline)?;
        Ok(Permit {
            sem: self.sem,
            n: self.req.n,
        })
    }
}

impl<'a> Future for Acquire<'a> {
    type Output = Result<Permit<'a>, AcquireError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.req.poll(this.sem, cx).map(|r| {
            r.map(|()| Permit {
                sem: this.sem,
                n: this.req.n,
            })
        })
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        self.req.abandon(self.sem);
    }
}

/// [`Acquire`] whose permits, once granted, are kept (as
/// [`Permit::keep`]): the caller answers for releasing them. Its output is
/// a byte, returned in a register, where a `Permit` travels through every
/// layer of the caller's future in memory (for the resource pool's wait).
#[cfg(feature = "tokio")]
pub(crate) struct AcquireKept<'a>(pub(crate) Acquire<'a>);

#[cfg(feature = "tokio")]
impl Future for AcquireKept<'_> {
    type Output = Result<(), AcquireError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut self.0;
        // Granted permits are the caller's from here: `req` is done, so
        // dropping the `Acquire` gives nothing back.
        this.req.poll(this.sem, cx)
    }
}

/// The future of [`Semaphore::acquire_owned`]; like [`Acquire`].
#[must_use = "an AcquireOwned does nothing until awaited or waited on"]
pub struct AcquireOwned {
    sem: Arc<Semaphore>,
    req: Request,
}

impl AcquireOwned {
    /// Blocks the calling thread until the permits are granted.
    pub fn wait(mut self) -> Result<OwnedPermit, AcquireError> {
        self.req.wait(&self.sem, None)?;
        Ok(OwnedPermit {
            sem: self.sem.clone(),
            n: self.req.n,
        })
    }

    /// Blocks for at most `timeout`.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<OwnedPermit, AcquireError> {
        let deadline = Instant::now().checked_add(timeout);
        self.req.wait(&self.sem, deadline)?;
        Ok(OwnedPermit {
            sem: self.sem.clone(),
            n: self.req.n,
        })
    }
}

impl Future for AcquireOwned {
    type Output = Result<OwnedPermit, AcquireError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.req.poll(&this.sem, cx).map(|r| {
            r.map(|()| OwnedPermit {
                sem: this.sem.clone(),
                n: this.req.n,
            })
        })
    }
}

impl Drop for AcquireOwned {
    fn drop(&mut self) {
        self.req.abandon(&self.sem);
    }
}

// ----- permits ------------------------------------------------------------------

/// Permits borrowed from a [`Semaphore`]; released when dropped.
#[must_use = "a permit is released as soon as it is dropped"]
pub struct Permit<'a> {
    sem: &'a Semaphore,
    n: usize,
}

impl<'a> Permit<'a> {
    /// How many permits this guard holds.
    pub fn count(&self) -> usize {
        self.n
    }

    /// Drops the guard without returning its permits: the semaphore
    /// shrinks by that many for good.
    pub fn forget(self) {
        self.sem.forget_held(self.n);
        std::mem::forget(self);
    }

    /// Keeps the permits taken without a guard; whoever calls this gives
    /// them back later with `Semaphore::release` (the task pool does, when
    /// a future ends).
    #[cfg_attr(any(loom, not(feature = "tokio")), allow(dead_code))]
    pub(crate) fn keep(self) {
        std::mem::forget(self);
    }

    /// Moves `n` of the permits into a new guard.
    pub fn split(&mut self, n: usize) -> Option<Permit<'a>> {
        if n > self.n {
            return None;
        }
        self.n -= n;
        Some(Permit { sem: self.sem, n })
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.sem.release(self.n);
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("count", &self.n).finish()
    }
}

/// Permits that own a handle to their [`Semaphore`] (`'static`).
#[must_use = "a permit is released as soon as it is dropped"]
pub struct OwnedPermit {
    sem: Arc<Semaphore>,
    n: usize,
}

impl OwnedPermit {
    /// How many permits this guard holds.
    pub fn count(&self) -> usize {
        self.n
    }

    /// The semaphore the permits belong to.
    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.sem
    }

    /// Drops the guard without returning its permits.
    pub fn forget(mut self) {
        self.sem.forget_held(self.n);
        self.n = 0;
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        self.sem.release(self.n);
    }
}

impl fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("count", &self.n)
            .finish()
    }
}
