//! The resource pool's bookkeeping, without any async code: the permits,
//! the idle store and the count of live resources. The pool (`get.rs`,
//! `create.rs`, `release.rs`, `maintenance.rs`) drives it from async code
//! and threads; `loom_core.rs` model-checks it alone
//! (tokio does not build under loom).
//!
//! The invariant (see `DESIGN.md`): every live resource is either in the
//! idle store or owned by exactly one permit holder (a borrower, a getter
//! creating or checking it, the maintenance task checking it), so
//! `size <= idle + permits held <= max` and a getter that holds a permit
//! and finds nothing idle may always create.

use std::collections::VecDeque;
use std::ptr::{self, NonNull};

use crate::limit::{AcquireKept, Semaphore};
use crate::sync::{thread, AtomicBool, AtomicPtr, AtomicUsize, Mutex, Ordering::*};
use crossbeam_utils::CachePadded;

/// A resource and what the pool knows about it, boxed once at creation:
/// from then on it moves between the idle store, the `get` state machine
/// and the guard as one pointer. (Moved by value, its 48-plus bytes were
/// copied through every layer of the `get` future, with loads that missed
/// store forwarding: about a third of an uncontended `get`.)
pub type Idle<R> = Box<Slot<R>>;

/// The contents of an [`Idle`].
pub struct Slot<R> {
    /// The resource.
    pub res: R,
    /// Its bookkeeping.
    pub meta: Meta,
}

/// Per-resource bookkeeping (times are the pool's coarse milliseconds).
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    /// A number unique within the pool.
    pub id: u64,
    /// When it was created.
    pub created_ms: u64,
    /// When its lifetime ends (`u64::MAX`: never).
    pub expires_ms: u64,
    /// When it was last returned or checked.
    pub last_used_ms: u64,
    /// Lent since its last reset: reset before the next borrower.
    pub dirty: Dirty,
}

/// Whether a resource was lent since its last reset. A full word rather
/// than a `bool`: with a one-byte flag at the end, every move of an
/// `Idle` through the `get` state machine copied an odd-sized tail whose
/// overlapping loads stalled on store forwarding (measured: a third of an
/// uncontended `get`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Dirty {
    /// Reset (or never lent).
    No = 0,
    /// Lent since: reset before the next borrower.
    Yes = 1,
}

/// Permits, idle store and live count.
///
/// The idle store is a locked deque plus, in LIFO pools, a few lock-free
/// slots (`hot`, one per stripe of threads) each holding the most recent
/// return of its threads, so that a get + return moves a resource with one
/// atomic exchange each way instead of taking the lock twice, and threads
/// on different cores do not take turns at one cache line. Each slot is
/// null (empty), a pointer from `Box::into_raw` (owned by the slot:
/// whoever exchanges it out owns it), or `disabled()` (FIFO pools, closed
/// pools, and after a shrink until the pool is within its bound again:
/// returns take the lock). A return that published into a slot re-checks
/// the pool (open, within its bound) afterwards and, if not, clears the
/// excess under the lock, so nothing stays idle past `close` or over the
/// bound (see `put_idle`). A resource only ever moves from a slot to the
/// deque (displaced, absorbed, disabled), never back, so a get that looks
/// at every slot before the deque cannot miss one in motion.
pub struct Core<R> {
    sem: Semaphore,
    hot: Box<[CachePadded<AtomicPtr<Slot<R>>>]>,
    idle: Mutex<VecDeque<Idle<R>>>,
    /// Live resources: idle, lent, being checked; counted from the moment a
    /// creation starts until the resource is handed to `destroy`.
    size: AtomicUsize,
    max: AtomicUsize,
    /// Held by `set_max` from the permits' change to `max`'s.
    resizing: Mutex<()>,
    closed: AtomicBool,
    lifo: bool,
}

impl<R> Core<R> {
    /// A core for at most `max` resources (`1..=MAX_PERMITS`, checked by
    /// the builder). `lifo`: hand out the most recently returned first.
    pub fn new(max: usize, lifo: bool) -> Self {
        Core {
            sem: Semaphore::new(max),
            hot: (0..HOT)
                .map(|_| {
                    CachePadded::new(AtomicPtr::new(if lifo {
                        ptr::null_mut()
                    } else {
                        disabled()
                    }))
                })
                .collect(),
            idle: Mutex::new(VecDeque::new()),
            size: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
            resizing: Mutex::new(()),
            closed: AtomicBool::new(false),
            lifo,
        }
    }

    /// A permit, now or never (the caller owns it until `release`).
    #[inline]
    pub fn try_permit(&self) -> bool {
        match self.sem.try_acquire() {
            Ok(p) => {
                p.keep();
                true
            }
            Err(_) => false,
        }
    }

    /// The future of a permit (FIFO, ahead of lower priorities), kept once
    /// granted: the caller later calls `release`.
    pub fn acquire(&self, priority: i32) -> AcquireKept<'_> {
        AcquireKept(self.sem.acquire_prioritized(1, priority))
    }

    /// Blocks the calling thread for a permit (kept); `false` if the pool
    /// is closed. The loom models' stand-in for awaiting [`acquire`](Self::acquire)
    /// (the pool's own blocking `get` goes through the async path).
    #[cfg(all(test, loom))]
    pub fn wait_permit(&self) -> bool {
        match self.sem.acquire().wait() {
            Ok(p) => {
                p.keep();
                true
            }
            Err(_) => false,
        }
    }

    /// Gives a permit back.
    #[inline]
    pub fn release(&self) {
        self.sem.release(1);
    }

    /// Takes an idle resource (permit held): the slot's (the most recent
    /// return) first, then the locked store's.
    #[inline]
    pub fn pop_idle(&self) -> Option<Idle<R>> {
        let home = self.home();
        if let Some(item) = take_slot(&self.hot[home]) {
            return Some(item);
        }
        self.pop_idle_slow(home)
    }

    /// [`pop_idle`](Self::pop_idle) when the home slot is empty: the other
    /// slots, then the deque (in that order: resources only move from a
    /// slot to the deque).
    fn pop_idle_slow(&self, home: usize) -> Option<Idle<R>> {
        for (i, slot) in self.hot.iter().enumerate() {
            if i != home {
                if let Some(item) = take_slot(slot) {
                    return Some(item);
                }
            }
        }
        let mut idle = self.idle.lock();
        if self.lifo {
            idle.pop_back()
        } else {
            idle.pop_front()
        }
    }

    /// Counts a resource about to be created (permit held, nothing idle).
    pub fn start_create(&self) {
        self.size.fetch_add(1, SeqCst);
    }

    /// Counts a resource about to be created while idle ones may exist
    /// (the `min_idle` refill; a getter after a stalled check), if the
    /// count stays within the bound; `false` if it would not. One
    /// compare-and-swap, so two such creators never pass the bound
    /// together; a creator under [`start_create`](Self::start_create)'s
    /// rule always finds room left for it (see `DESIGN.md`).
    pub fn try_start_create(&self) -> bool {
        let max = self.max.load(SeqCst);
        self.size
            .fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    /// Puts a resource back in the idle store (the caller still holds its
    /// permit and releases it afterwards). Returns what the store refused,
    /// usually nothing: the resource itself when the pool is closed or
    /// holds more than `max` (after a shrink), rarely more (see below). The
    /// caller destroys each and calls `forget` for each.
    #[inline]
    pub fn put_idle(&self, item: Idle<R>) -> Vec<Idle<R>> {
        let raw = Box::into_raw(item);
        let slot = &self.hot[self.home()];
        let cur = slot.load(Acquire);
        let published =
            cur != disabled() && slot.compare_exchange(cur, raw, AcqRel, Acquire).is_ok();
        if !published {
            // SAFETY: `raw` came from `Box::into_raw` above and was not
            // published: still ours alone.
            return self.put_locked(unsafe { Box::from_raw(raw) });
        }
        // The slot now holds the most recent return; an older one it held
        // moves to the locked store.
        // SAFETY: `cur` was in the slot (not null, not `disabled()`) and
        // the exchange took it out: ours.
        let displaced = (!cur.is_null()).then(|| unsafe { Box::from_raw(cur) });
        // Checked after publishing: `close` and `set_max` write their flag
        // or bound before they empty the slot, so either they found our
        // resource there, or we see what they wrote here.
        if self.is_open_and_within() {
            return match displaced {
                None => Vec::new(),
                Some(old) => self.put_locked(old),
            };
        }
        let mut idle = self.idle.lock();
        self.disable_hot(&mut idle);
        if let Some(old) = displaced {
            idle.push_back(old);
        }
        self.excess(&mut idle)
    }

    /// Whether the pool is open and holds at most `max` resources.
    #[inline]
    fn is_open_and_within(&self) -> bool {
        !self.closed.load(SeqCst) && self.size.load(SeqCst) <= self.max.load(SeqCst)
    }

    /// The lock path of `put_idle`.
    fn put_locked(&self, item: Idle<R>) -> Vec<Idle<R>> {
        let mut idle = self.idle.lock();
        // Both read under the idle lock, which `close` and `set_max` take
        // to drain: nothing enters the store after they drained it.
        if !self.is_open_and_within() {
            return vec![item];
        }
        idle.push_back(item);
        self.rearm_hot();
        Vec::new()
    }

    /// Under the lock: what the store holds beyond what an open pool within
    /// its bound may keep (all of it when closed; else the least recently
    /// used ones over `max`).
    fn excess(&self, idle: &mut VecDeque<Idle<R>>) -> Vec<Idle<R>> {
        if self.closed.load(SeqCst) {
            return idle.drain(..).collect();
        }
        let over = self
            .size
            .load(SeqCst)
            .saturating_sub(self.max.load(SeqCst))
            .min(idle.len());
        let out = idle.drain(..over).collect();
        self.rearm_hot();
        out
    }

    /// Under the lock: moves what the slot holds into the deque, so that
    /// counting, filtering and draining see every idle resource.
    fn absorb_hot(&self, idle: &mut VecDeque<Idle<R>>) {
        for slot in self.hot.iter() {
            if let Some(item) = take_slot(slot) {
                idle.push_back(item);
            }
        }
    }

    /// Under the lock: turns the slots off, keeping what they held.
    fn disable_hot(&self, idle: &mut VecDeque<Idle<R>>) {
        for slot in self.hot.iter() {
            let p = slot.swap(disabled(), AcqRel);
            if !p.is_null() && p != disabled() {
                // SAFETY: as in `take_slot`: the swap made it ours.
                idle.push_back(unsafe { Box::from_raw(p) });
            }
        }
    }

    /// Under the lock: turns the slots back on in a LIFO pool that is open
    /// and within its bound.
    fn rearm_hot(&self) {
        if self.lifo && self.is_open_and_within() {
            for slot in self.hot.iter() {
                let _ = slot.compare_exchange(disabled(), ptr::null_mut(), AcqRel, Relaxed);
            }
        }
    }

    /// The calling thread's slot.
    #[inline]
    fn home(&self) -> usize {
        thread::stripe() % HOT
    }

    /// Counts a resource gone (handed to `destroy`, or its creation
    /// failed). Returns the live count left.
    pub fn forget(&self) -> usize {
        self.size.fetch_sub(1, SeqCst) - 1
    }

    /// Stops lending: waiters wake with an error, later acquires fail, and
    /// the idle resources are handed to the caller to destroy (it calls
    /// `forget` for each). Lent resources are refused by `put_idle`.
    pub fn close(&self) -> Vec<Idle<R>> {
        let mut idle = self.idle.lock();
        self.closed.store(true, SeqCst);
        self.disable_hot(&mut idle);
        self.sem.close();
        idle.drain(..).collect()
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Sets the bound to `max` (both ways; lent resources are never taken
    /// back, they are destroyed when returned while over the bound).
    /// Returns the idle resources over the new bound, to destroy.
    pub fn set_max(&self, max: usize) -> Result<Vec<Idle<R>>, crate::limit::ResizeError> {
        // The permits and `max` change together: two racing resizes must
        // leave both at the same one's value.
        let _resizing = self.resizing.lock();
        self.sem.resize(max)?;
        let mut idle = self.idle.lock();
        self.max.store(max, SeqCst);
        self.disable_hot(&mut idle);
        // The least recently used go first; the slot comes back on only
        // within the bound (else at the first return that finds the pool
        // within it again, through the lock).
        Ok(self.excess(&mut idle))
    }

    /// Removes the idle resources for which `remove` says so.
    pub fn take_idle_where(&self, mut remove: impl FnMut(&Idle<R>) -> bool) -> Vec<Idle<R>> {
        let mut idle = self.idle.lock();
        self.absorb_hot(&mut idle);
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(idle.len());
        for item in idle.drain(..) {
            if remove(&item) {
                taken.push(item);
            } else {
                kept.push_back(item);
            }
        }
        *idle = kept;
        taken
    }

    /// Takes one idle resource for which `pick` says so (the maintenance
    /// task's keepalive check; the caller holds a permit for it).
    pub fn take_one_idle(&self, mut pick: impl FnMut(&Idle<R>) -> bool) -> Option<Idle<R>> {
        let mut idle = self.idle.lock();
        self.absorb_hot(&mut idle);
        let i = idle.iter().position(&mut pick)?;
        idle.remove(i)
    }

    /// Live resources.
    pub fn size(&self) -> usize {
        self.size.load(SeqCst)
    }

    /// Idle resources.
    pub fn idle(&self) -> usize {
        let mut idle = self.idle.lock();
        self.absorb_hot(&mut idle);
        idle.len()
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max.load(SeqCst)
    }

    /// Callers waiting for a permit.
    pub fn waiting(&self) -> usize {
        self.sem.waiting()
    }

    /// Wakes every caller waiting for a permit, granting nothing (each
    /// re-checks its deadline); returns how many.
    pub fn nudge_waiters(&self) -> usize {
        self.sem.wake_waiters()
    }

    /// Permits held (resources lent, being created or checked).
    pub fn permits_held(&self) -> usize {
        self.sem.in_use()
    }
}

impl<R> Drop for Core<R> {
    fn drop(&mut self) {
        for slot in self.hot.iter() {
            // Nothing else can reach the slots any more (`&mut self`).
            drop(take_slot(slot));
        }
    }
}

/// Lock-free slots of a LIFO pool (each on its own cache line); threads are
/// spread over them by [`thread::stripe`]. Two under loom, so that the
/// models see returns and gets on different slots.
#[cfg(not(loom))]
const HOT: usize = 4;
#[cfg(loom)]
const HOT: usize = 2;

/// Takes what `slot` holds, if it holds a resource.
#[inline]
fn take_slot<R>(slot: &AtomicPtr<Slot<R>>) -> Option<Idle<R>> {
    let mut p = slot.load(Acquire);
    while !p.is_null() && p != disabled() {
        match slot.compare_exchange(p, ptr::null_mut(), AcqRel, Acquire) {
            // SAFETY: a slot's value other than null and `disabled()` came
            // from `Box::into_raw` in `put_idle` and is owned by the slot;
            // the exchange took it out, so it is ours alone. (If it was
            // taken and another put at the same address meanwhile, we took
            // that one: whatever the slot holds is an idle resource.)
            Ok(_) => return Some(unsafe { Box::from_raw(p) }),
            // Another return swapped its resource in (or a getter took it):
            // look again rather than fall through with a resource there.
            Err(now) => p = now,
        }
    }
    None
}

/// The `hot` value meaning "off": a well-aligned dangling pointer, never
/// the address of a live allocation (a `Slot` is never zero-sized).
#[inline]
fn disabled<R>() -> *mut Slot<R> {
    NonNull::dangling().as_ptr()
}
