//! The resource pool's bookkeeping, without any async code: the permits,
//! the idle store and the count of live resources. `pool.rs` drives it from
//! async code and threads; `tests/loom_resources.rs` model-checks it alone
//! (tokio does not build under loom).
//!
//! The invariant (see `DESIGN.md`): every live resource is either in the
//! idle store or owned by exactly one permit holder (a borrower, a getter
//! creating or checking it, the maintenance task checking it), so
//! `size <= idle + permits held <= max` and a getter that holds a permit
//! and finds nothing idle may always create.

use std::collections::VecDeque;

use crate::limit::{Acquire, Semaphore};
use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering::*};

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
pub struct Core<R> {
    sem: Semaphore,
    idle: Mutex<VecDeque<Idle<R>>>,
    /// Live resources: idle, lent, being checked; counted from the moment a
    /// creation starts until the resource is handed to `destroy`.
    size: AtomicUsize,
    max: AtomicUsize,
    closed: AtomicBool,
    lifo: bool,
}

impl<R> Core<R> {
    /// A core for at most `max` resources (`1..=MAX_PERMITS`, checked by
    /// the builder). `lifo`: hand out the most recently returned first.
    pub fn new(max: usize, lifo: bool) -> Self {
        Core {
            sem: Semaphore::new(max),
            idle: Mutex::new(VecDeque::new()),
            size: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
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

    /// The future of a permit (FIFO, ahead of lower priorities). The caller
    /// `keep()`s the permit it yields and later calls `release`.
    pub fn acquire(&self, priority: i32) -> Acquire<'_> {
        self.sem.acquire_prioritized(1, priority)
    }

    /// Blocks the calling thread for a permit (kept); `false` if the pool
    /// is closed. (The pool's own blocking `get` goes through the async
    /// path; the loom models use this one.)
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

    /// Takes an idle resource (permit held).
    #[inline]
    pub fn pop_idle(&self) -> Option<Idle<R>> {
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

    /// Puts a resource back in the idle store (the caller still holds its
    /// permit and releases it afterwards). `Err` gives it back when the
    /// pool is closed or holds more than `max` resources (after a shrink):
    /// the caller destroys it and calls `forget`.
    #[inline]
    pub fn put_idle(&self, item: Idle<R>) -> Result<(), Idle<R>> {
        let mut idle = self.idle.lock();
        // Both read under the idle lock, which `close` and `set_max` take
        // to drain: nothing enters the store after they drained it.
        if self.closed.load(Relaxed) || self.size.load(Relaxed) > self.max.load(Relaxed) {
            return Err(item);
        }
        idle.push_back(item);
        Ok(())
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
        self.closed.store(true, Relaxed);
        self.sem.close();
        idle.drain(..).collect()
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Sets the bound to `max` (both ways; lent resources are never taken
    /// back, they are destroyed when returned while over the bound).
    /// Returns the idle resources over the new bound, to destroy.
    pub fn set_max(&self, max: usize) -> Result<Vec<Idle<R>>, crate::limit::TooManyPermits> {
        self.sem.set_permits(max)?;
        let mut idle = self.idle.lock();
        self.max.store(max, Relaxed);
        let over = self.size.load(SeqCst).saturating_sub(max).min(idle.len());
        // The least recently used go first.
        Ok(idle.drain(..over).collect())
    }

    /// Removes the idle resources for which `remove` says so.
    pub fn take_idle_where(&self, mut remove: impl FnMut(&Idle<R>) -> bool) -> Vec<Idle<R>> {
        let mut idle = self.idle.lock();
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
        let i = idle.iter().position(&mut pick)?;
        idle.remove(i)
    }

    /// Live resources.
    pub fn size(&self) -> usize {
        self.size.load(SeqCst)
    }

    /// Idle resources.
    pub fn idle(&self) -> usize {
        self.idle.lock().len()
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max.load(Relaxed)
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
