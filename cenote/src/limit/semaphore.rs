//! The semaphore: an atomic count of available permits for the fast path,
//! and a FIFO queue of waiters (threads and tasks alike) under a mutex for
//! the slow one. See `DESIGN.md`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::thread::{self, Thread};
use crate::sync::{Arc, AtomicBool, AtomicUsize, Mutex, MutexGuard, Ordering::*};

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
    /// Permits `set_permits` still has to remove as they come back.
    debt: AtomicUsize,
    /// Permits handed to queued waiters that still wait for more.
    reserved: AtomicUsize,
    closed: AtomicBool,
    queue: Mutex<List>,
}

/// `state` bit: releases must go through the queue lock.
const SLOW: usize = 1;

/// A waiter's progress, seen by the waiter and by whoever serves the queue.
const WAITING: usize = 0;
const GRANTED: usize = 1;
const CLOSED: usize = 2;

/// What a queued acquire shares with whoever serves the queue: only its
/// progress. How to wake it lives in its queue node, under the queue lock.
///
/// The acquire owns it (a `Box`, so its address survives the future being
/// moved); its node holds only its address ([`WaiterRef`]). That is safe
/// because the node is the only way to reach it and the owner frees it
/// only (a) after seeing GRANTED or CLOSED, which the server stores as its
/// last touch, after unlinking the node, or (b) after `cancel` unlinked the
/// node under the queue lock. So no counted reference (two read-modify-
/// writes per wait, plus `Arc::get_mut`'s to recycle it) is needed.
struct Waiter {
    state: AtomicUsize,
}

/// A queued node's pointer to its acquire's [`Waiter`].
struct WaiterRef(std::ptr::NonNull<Waiter>);

// SAFETY: it only reaches an `AtomicUsize` (shared across threads by
// design), and only while the owner keeps the waiter (see `Waiter`).
unsafe impl Send for WaiterRef {}
// SAFETY: as above.
unsafe impl Sync for WaiterRef {}

impl WaiterRef {
    /// Publishes the waiter's outcome: the last use of the pointer, after
    /// its node is unlinked, under the queue lock.
    fn settle(self, state: usize) {
        // SAFETY: the owner frees the waiter only after seeing this store,
        // or after unlinking the node itself under the queue lock, which
        // the caller holds with the node already unlinked by it.
        unsafe { self.0.as_ref() }.state.store(state, Release);
    }
}

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

impl Waiter {
    /// A waiter in state WAITING: a recycled one when this thread has one
    /// (see [`Waiter::recycle`]), else a new allocation.
    fn new() -> Box<Waiter> {
        #[cfg(not(loom))]
        if let Some(mut w) = SPARE.with(|s| s.take()) {
            w.state = AtomicUsize::new(WAITING);
            return w;
        }
        Box::new(Waiter {
            state: AtomicUsize::new(WAITING),
        })
    }

    /// Keeps a finished waiter (its node unlinked) for this thread's next
    /// enqueue.
    fn recycle(w: Box<Waiter>) {
        #[cfg(not(loom))]
        SPARE.with(|s| s.set(Some(w)));
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

// ----- the waiter queue: a doubly linked list in a vector ---------------------

const NIL: usize = usize::MAX;

struct Node {
    waiter: WaiterRef,
    /// How to wake the waiter; a task's waker is updated here (under the
    /// queue lock) when it is polled with a new one.
    wake: Wake,
    requested: usize,
    /// Permits still to be handed over.
    remaining: usize,
    /// Higher waits ahead of lower; FIFO among equals.
    priority: i32,
    prev: usize,
    next: usize,
}

/// FIFO with O(1) removal of any node (a cancelled waiter), nodes reused.
struct List {
    nodes: Vec<Option<Node>>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
}

impl List {
    const fn new() -> Self {
        List {
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    fn push_back(&mut self, mut node: Node) -> usize {
        node.prev = self.tail;
        node.next = NIL;
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = Some(node);
                i
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        match self.tail {
            NIL => self.head = i,
            t => self.node_mut(t).next = i,
        }
        self.tail = i;
        i
    }

    /// Links `node` behind every node of the same or higher priority (the
    /// tail, O(1), when all share one priority), but never ahead of a head
    /// that already holds part of its permits (`reserved` is the head's).
    fn insert_by_priority(&mut self, node: Node) -> usize {
        let mut after = self.tail;
        while after != NIL {
            let n = self.nodes[after].as_ref().expect("a linked node");
            let partly_served = after == self.head && n.remaining < n.requested;
            if n.priority >= node.priority || partly_served {
                break;
            }
            after = n.prev;
        }
        if after == self.tail {
            return self.push_back(node);
        }
        self.link_after(after, node)
    }

    /// Links `node` after `after` (`NIL`: at the head), which is not the tail.
    fn link_after(&mut self, after: usize, mut node: Node) -> usize {
        let next = match after {
            NIL => self.head,
            a => self.node_mut(a).next,
        };
        node.prev = after;
        node.next = next;
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = Some(node);
                i
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        match after {
            NIL => self.head = i,
            a => self.node_mut(a).next = i,
        }
        self.node_mut(next).prev = i;
        i
    }

    fn node_mut(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().expect("a linked node")
    }

    fn remove(&mut self, i: usize) -> Node {
        let node = self.nodes[i].take().expect("a linked node");
        match node.prev {
            NIL => self.head = node.next,
            p => self.node_mut(p).next = node.next,
        }
        match node.next {
            NIL => self.tail = node.prev,
            n => self.node_mut(n).prev = node.prev,
        }
        self.free.push(i);
        if self.head == NIL {
            // Empty: give back what a burst of waiters grew.
            if self.nodes.len() > 64 {
                self.nodes = Vec::new();
                self.free = Vec::new();
            }
        }
        node
    }
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

    /// Wakes every waiter without granting it anything: each finds it
    /// still waits and goes on waiting (every acquire future and blocking
    /// wait tolerates such a wake-up). For a caller that checks a deadline
    /// of its own whenever it is polled: the resource pool's coarse acquire
    /// timeout, nudged by its background task instead of one timer per
    /// waiter. Returns how many were woken.
    #[cfg_attr(not(any(feature = "tokio", loom)), allow(dead_code))]
    pub(crate) fn wake_waiters(&self) -> usize {
        let mut wakes = Vec::new();
        {
            let q = self.queue.lock();
            let mut i = q.head;
            while i != NIL {
                let node = q.nodes[i].as_ref().expect("a linked node");
                wakes.push(node.wake.clone());
                i = node.next;
            }
        }
        // Woken outside the lock: a waker may run scheduler code.
        let n = wakes.len();
        for w in wakes {
            w.wake();
        }
        n
    }

    /// The number of permits the semaphore is sized to (what
    /// [`set_permits`](Self::set_permits) last set, plus additions, minus
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
    #[inline]
    pub fn acquire_blocking(&self) -> Result<Permit<'_>, AcquireError> {
        // The uncontended case inline: one load and one CAS.
        if !self.closed.load(SeqCst) && self.take_available(1) {
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
            return Err(TryAcquireError::Closed);
        }
        if !self.take_available(n) {
            return Err(TryAcquireError::NoPermits);
        }
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
        let mut q = self.queue.lock();
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

    /// Resizes the semaphore to `permits` (both ways). Growing adds permits
    /// at once; shrinking removes available ones at once and the rest as
    /// holders release them, so in-use permits are never revoked.
    pub fn set_permits(&self, permits: usize) -> Result<(), TooManyPermits> {
        let current = self.permits();
        if permits >= current {
            return self.add_permits(permits - current);
        }
        let mut q = self.queue.lock();
        let current = self.total.load(SeqCst) - self.debt.load(SeqCst);
        if permits >= current {
            drop(q);
            return self.add_permits(permits - current);
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
        while q.head != NIL {
            let head = q.head;
            let node = q.remove(head);
            let partial = node.requested - node.remaining;
            self.unreserve(partial);
            self.put_available(partial);
            self.count_waiter(false);
            node.waiter.settle(CLOSED);
            woken.push(node.wake);
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
        while q.head != NIL {
            let head = q.head;
            let node = q.node_mut(head);
            let from_hand = in_hand.min(node.remaining);
            in_hand -= from_hand;
            let got = from_hand + self.take_up_to(node.remaining - from_hand);
            node.remaining -= got;
            if node.remaining > 0 {
                if got > 0 {
                    self.reserve(got);
                }
                break;
            }
            let partial = node.requested - got;
            let node = q.remove(head);
            self.unreserve(partial);
            self.count_waiter(false);
            // Release: the waiter that sees GRANTED sees the queue as this
            // lock holder left it; it re-checks under the lock before it
            // touches its node.
            node.waiter.settle(GRANTED);
            woken.push(node.wake);
        }
        if in_hand > 0 {
            // Nobody left to serve (a waiter still short took all it could).
            self.put_available(in_hand);
        }
        if q.head == NIL {
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
            .store(if joined { n + 1 } else { n - 1 }, Relaxed);
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
    fn enqueue(&self, n: usize, wake: Wake, priority: i32) -> Result<Queued, AcquireError> {
        let mut q = self.queue.lock();
        if self.closed.load(SeqCst) {
            return Err(AcquireError::Closed);
        }
        let waiter = Waiter::new();
        let node = Node {
            waiter: WaiterRef(std::ptr::NonNull::from(&*waiter)),
            wake,
            requested: n,
            remaining: n,
            priority,
            prev: NIL,
            next: NIL,
        };
        let index = q.insert_by_priority(node);
        self.count_waiter(true);
        // SLOW is cleared only under this lock: seen set, it stays set until
        // we unlock, and every release meanwhile comes to serve the queue.
        // (Skipping the RMW matters when many wait: it is the one write to
        // the word every acquire and release touches.)
        if self.state.load(SeqCst) & SLOW == 0 {
            self.state.fetch_or(SLOW, SeqCst);
        }
        let woken = self.serve(&mut q);
        drop(q);
        // Waking our own waiter is harmless (a stale unpark, or a wake of
        // the task being polled).
        wake_all(woken);
        Ok(Queued { index, waiter })
    }

    /// Takes a waiter out of the queue (its future was dropped or its
    /// deadline passed). Returns what it had become meanwhile.
    fn cancel(&self, queued: &Queued, n: usize) -> usize {
        let mut q = self.queue.lock();
        let state = queued.waiter.state.load(SeqCst);
        if state != WAITING {
            return state;
        }
        let node = q.remove(queued.index);
        self.count_waiter(false);
        let partial = n - node.remaining;
        if partial > 0 {
            self.unreserve(partial);
            self.put_available(partial);
        }
        // The next waiter may now be first, or the partial permits may
        // satisfy someone.
        let woken = self.serve(&mut q);
        drop(q);
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

    fn extend(&mut self, other: Woken) {
        other
            .first
            .into_iter()
            .chain(other.rest)
            .for_each(|w| self.push(w));
    }
}

fn wake_all(woken: Woken) {
    for w in woken.first.into_iter().chain(woken.rest) {
        w.wake();
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

struct Queued {
    index: usize,
    waiter: Box<Waiter>,
}

struct Request {
    n: usize,
    priority: i32,
    queued: Option<Queued>,
    done: bool,
}

impl Request {
    fn new(n: usize) -> Self {
        Request {
            n,
            priority: 0,
            queued: None,
            done: false,
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
        match sem.enqueue(self.n, wake(), self.priority) {
            Err(e) => Some(Err(e)),
            Ok(queued) => {
                let state = queued.waiter.state.load(SeqCst);
                self.queued = Some(queued);
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
        if let Some(queued) = self.queued.take() {
            Waiter::recycle(queued.waiter);
        }
        r
    }

    #[inline]
    fn poll(&mut self, sem: &Semaphore, cx: &mut Context<'_>) -> Poll<Result<(), AcquireError>> {
        assert!(!self.done, "an Acquire future polled after it completed");
        let Some(queued) = &self.queued else {
            return match self.start(sem, || Wake::Task(cx.waker().clone())) {
                Some(r) => Poll::Ready(self.finish(r)),
                None => Poll::Pending,
            };
        };
        if let Some(r) = Self::outcome(queued.waiter.state.load(SeqCst)) {
            return Poll::Ready(self.finish(r));
        }
        {
            let mut q = sem.queue.lock();
            // Re-checked under the queue lock: a grant (or close) sets the
            // state and unlinks the node under this lock, so while the state
            // says WAITING the node at `index` is still ours.
            if let Some(r) = Self::outcome(queued.waiter.state.load(SeqCst)) {
                drop(q);
                return Poll::Ready(self.finish(r));
            }
            match &mut q.node_mut(queued.index).wake {
                Wake::Task(w) if w.will_wake(cx.waker()) => {}
                other => *other = Wake::Task(cx.waker().clone()),
            }
        }
        Poll::Pending
    }

    fn wait(&mut self, sem: &Semaphore, deadline: Option<Instant>) -> Result<(), AcquireError> {
        // A permit free now needs no clock read; spinning needs time left.
        let may_spin = self.queued.is_none() && self.n <= MAX_PERMITS && !sem.closed.load(SeqCst);
        if may_spin
            && (sem.take_available(self.n)
                || (deadline.map_or(true, |d| Instant::now() < d) && sem.spin_take(self.n)))
        {
            return self.finish(Ok(()));
        }
        if let Some(r) = self.start(sem, || Wake::Thread(thread::current())) {
            return self.finish(r);
        }
        // A grant often comes within a few hundred nanoseconds (a holder
        // releasing right away); spinning that long saves the park and the
        // futex wake-up that would follow, the bulk of a hand-over between
        // two threads. Then park.
        let backoff = crate::sync::Backoff::new();
        while !backoff.is_completed() {
            let queued = self.queued.as_ref().expect("queued after start");
            if let Some(r) = Self::outcome(queued.waiter.state.load(SeqCst)) {
                return self.finish(r);
            }
            backoff.snooze();
        }
        loop {
            let queued = self.queued.as_ref().expect("queued after start");
            if let Some(r) = Self::outcome(queued.waiter.state.load(SeqCst)) {
                return self.finish(r);
            }
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        let state = sem.cancel(queued, self.n);
                        let r = Self::outcome(state).unwrap_or(Err(AcquireError::TimedOut));
                        return self.finish(r);
                    }
                    thread::park_timeout(deadline - now);
                }
            }
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
            Waiter::recycle(queued.waiter);
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

impl<'a> Acquire<'a> {
    /// Blocks the calling thread until the permits are granted.
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

impl Permit<'_> {
    /// How many permits this guard holds.
    pub fn count(&self) -> usize {
        self.n
    }

    /// Drops the guard without returning its permits: the semaphore
    /// shrinks by that many for good.
    pub fn forget(self) {
        self.sem.total.fetch_sub(self.n, SeqCst);
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
    pub fn split(&mut self, n: usize) -> Option<Permit<'_>> {
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
        self.sem.total.fetch_sub(self.n, SeqCst);
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
