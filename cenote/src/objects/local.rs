//! Per-thread caches: the thread registry and each pool's slot table.
//!
//! Every thread that touches an object pool gets a small *thread index*,
//! unique among live threads and reused after a thread exits (lowest free
//! first, so indices stay dense). A pool keeps one [`Slot`] per index in a
//! table of lazily allocated buckets: one of [`NEAR`] slots for the first
//! indices, then buckets of `2^b` slots. Finding the calling thread's cache
//! is one thread-local read, a comparison, one acquire load and an index
//! (past `NEAR`, a `log2` too): no lock, no hashing.
//!
//! Ownership rule (the one invariant the `unsafe` relies on): a slot's cache
//! is touched only by the live thread that holds the slot's index. An index
//! is released only by its thread's exit hook, after that hook has emptied
//! the thread's slot in every pool still alive, and the release and the next
//! acquisition go through the registry mutex, which orders the old owner's
//! last access before the new owner's first.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::ptr;
use std::sync::Weak;

use crate::sync::{thread_local, AtomicPtr, AtomicU64, Ordering, UnsafeCell};

/// A pool's side of the exit hook: empty the slot of a thread that exits.
pub(crate) trait Flush {
    /// Moves the cache of thread `index` to the shared store (or drops what
    /// does not fit). Runs on the thread holding `index`; `exiting`: from
    /// its exit hook, so the slot's next owner must register anew.
    fn flush(&self, index: usize, exiting: bool);
}

// ----- the registry of thread indices ---------------------------------------

#[derive(Default)]
struct Registry {
    next: usize,
    free: std::collections::BinaryHeap<std::cmp::Reverse<usize>>,
}

impl Registry {
    fn acquire(&mut self) -> usize {
        match self.free.pop() {
            Some(std::cmp::Reverse(i)) => i,
            None => {
                self.next += 1;
                self.next - 1
            }
        }
    }
}

#[cfg(not(loom))]
static REGISTRY: parking_lot::Mutex<Registry> = parking_lot::Mutex::new(Registry {
    next: 0,
    free: std::collections::BinaryHeap::new(),
});

#[cfg(not(loom))]
fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    f(&mut REGISTRY.lock())
}

/// Under loom the registry stays a plain `std` mutex: loom tears its own
/// statics down before the model's main thread runs its thread-local
/// destructors, and the models never reuse an index within one execution
/// (so the release/acquire ordering it provides is not what they check).
#[cfg(loom)]
static REGISTRY: std::sync::Mutex<Registry> = std::sync::Mutex::new(Registry {
    next: 0,
    free: std::collections::BinaryHeap::new(),
});

#[cfg(loom)]
fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    f(&mut REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// This thread's index and the pools whose slot it owns.
pub(crate) struct ThreadEntry {
    index: usize,
    pools: RefCell<Vec<Weak<dyn Flush>>>,
}

impl ThreadEntry {
    fn new() -> Self {
        ThreadEntry {
            index: with_registry(Registry::acquire),
            pools: RefCell::new(Vec::new()),
        }
    }

    /// The calling thread's index.
    #[inline]
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Records that this thread now owns a slot in `pool`, so its exit
    /// empties it. Prunes entries of dropped pools as the list grows, so a
    /// thread that touches many short-lived pools keeps no garbage.
    pub(crate) fn register(&self, pool: Weak<dyn Flush>) {
        let mut pools = self.pools.borrow_mut();
        if pools.len() >= 8 && pools.len().is_power_of_two() {
            pools.retain(|w| w.strong_count() > 0);
        }
        pools.push(pool);
    }
}

impl Drop for ThreadEntry {
    fn drop(&mut self) {
        // From here on this thread has no index: later calls (from other
        // thread-local destructors) take the shared path.
        // (Under loom the cell may already be gone: then it reads as DEAD.)
        let _ = INDEX.try_with(|c| c.set(DEAD));
        // Take the list first: a flush may drop objects whose own drop
        // touches a pool; such a call sees `DEAD` and never lands here.
        let pools = std::mem::take(&mut *self.pools.borrow_mut());
        for pool in pools {
            if let Some(pool) = pool.upgrade() {
                pool.flush(self.index, true);
            }
        }
        let index = self.index;
        with_registry(|r| r.free.push(std::cmp::Reverse(index)));
    }
}

/// `INDEX` before this thread's first use of any pool.
const UNSET: usize = usize::MAX;
/// `INDEX` once this thread's entry is destroyed (thread exit).
const DEAD: usize = usize::MAX - 1;

#[cfg(not(loom))]
thread_local! {
    /// The calling thread's index, cached where reading it is one load (a
    /// `const`-initialised local with no destructor is never torn down).
    static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(UNSET) };
}

#[cfg(loom)]
thread_local! {
    static INDEX: std::cell::Cell<usize> = std::cell::Cell::new(UNSET);
}

thread_local! {
    /// Owns the index and runs the exit hook.
    static THREAD: ThreadEntry = ThreadEntry::new();
}

/// The calling thread's index, or `None` while its thread-locals are being
/// destroyed (the caller then uses the shared store only).
#[inline(always)]
pub(crate) fn current_index() -> Option<usize> {
    let i = raw_index();
    if i < DEAD {
        Some(i)
    } else {
        first_index(i)
    }
}

/// The calling thread's index as cached (one load), or a value no thread
/// holds (`usize::MAX` or `usize::MAX - 1`) before its first use of a pool
/// or once its thread-locals are being destroyed: the hot path's check,
/// which leaves those cases to [`current_index`] on a slow path.
#[inline(always)]
pub(crate) fn raw_index() -> usize {
    #[cfg(not(loom))]
    let i = INDEX.with(|c| c.get());
    #[cfg(loom)]
    let i = INDEX.try_with(|c| c.get()).unwrap_or(DEAD);
    i
}

#[cold]
fn first_index(i: usize) -> Option<usize> {
    if i == DEAD {
        return None;
    }
    let index = THREAD.try_with(ThreadEntry::index).ok()?;
    INDEX.try_with(|c| c.set(index)).ok()?;
    Some(index)
}

/// Registers `pool`'s exit hook for the calling thread (see
/// [`ThreadEntry::register`]). False if the thread is exiting.
pub(crate) fn register(pool: Weak<dyn Flush>) -> bool {
    THREAD.try_with(|t| t.register(pool)).is_ok()
}

// ----- a pool's slot table --------------------------------------------------

/// One thread's cache in one pool, plus counters only its owner writes.
/// Aligned to its own cache lines, so neighbours' slots never share one.
#[repr(align(128))]
pub(crate) struct Slot<T> {
    /// The thread index this slot belongs to (never changes).
    index: usize,
    /// Owner only (see the module's ownership rule).
    cache: UnsafeCell<Cache<T>>,
    /// Counters written only by the owner (a plain load and store, never a
    /// read-modify-write, so the hot path costs no locked instruction) and
    /// read by `stats()` from anywhere.
    pub(crate) counts: Counts,
}

// SAFETY: the cache is reached only through `with_cache`, whose contract
// (the module's ownership rule) gives one thread at a time exclusive
// access; the rest are atomics. Objects do move between threads through a
// slot (the cache is flushed to the shared store, a guard taken on one
// thread is returned on another), hence `T: Send`.
unsafe impl<T: Send> Sync for Slot<T> {}

/// `Cache::epoch` of a slot whose owner has not registered its exit hook
/// with the pool (no trim epoch ever reaches it).
pub(crate) const UNREGISTERED: u64 = u64::MAX;

/// The owner-only part of a slot.
pub(crate) struct Cache<T> {
    /// Idle objects with the trim epoch at which each came back, used as a
    /// LIFO stack (so the epochs never decrease from bottom to top);
    /// capacity reserved on first use.
    pub(crate) items: Vec<(super::pool::Obj<T>, u64)>,
    /// How many `items` may hold: the pool's `thread_cache` once reserved,
    /// 0 before (and after the exit hook took the vector).
    pub(crate) cap: usize,
    /// The pool's trim epoch at the owner's last access, or
    /// [`UNREGISTERED`]: one comparison tells the hot path both that the
    /// exit hook is in place and that no trim happened since.
    pub(crate) epoch: u64,
}

impl<T> Cache<T> {
    /// Reserves room for `cap` objects (once).
    pub(crate) fn reserve(&mut self, cap: usize) {
        self.items
            .reserve_exact(cap.saturating_sub(self.items.len()));
        self.cap = cap;
    }

    /// Pushes if there is room; never allocates.
    #[inline(always)]
    pub(crate) fn push(
        &mut self,
        value: super::pool::Obj<T>,
        stamp: u64,
    ) -> Result<(), super::pool::Obj<T>> {
        let len = self.items.len();
        if len >= self.cap {
            return Err(value);
        }
        // SAFETY: `len < cap <= capacity` (`reserve` made the capacity at
        // least `cap`, and `cap` is reset to 0 whenever the vector is
        // replaced), so the write is in bounds, and it initialises element
        // `len` before the length covers it.
        unsafe {
            self.items.as_mut_ptr().add(len).write((value, stamp));
            self.items.set_len(len + 1);
        }
        Ok(())
    }
}

/// Event counters of one slot (or of the pool's shared path).
///
/// The hot path bumps one counter each way (`cache_out` on a get served by
/// the cache, `cache_in` on a return kept by it); the number of objects in
/// the cache is `cache_in - cache_out - drained`, so no mirror of its length
/// is stored.
#[derive(Default)]
pub(crate) struct Counts {
    /// Gets served by this thread's cache.
    pub(crate) cache_out: AtomicU64,
    /// Returns kept by this thread's cache.
    pub(crate) cache_in: AtomicU64,
    /// Objects moved out of the cache other than by a get: flushed to the
    /// shared store or trimmed.
    pub(crate) drained: AtomicU64,
    /// Gets served by the shared store.
    pub(crate) shared_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    /// Returns kept by the shared store.
    pub(crate) shared_returned: AtomicU64,
    pub(crate) dropped_full: AtomicU64,
    pub(crate) dropped_refused: AtomicU64,
    pub(crate) dropped_panicked: AtomicU64,
    pub(crate) dropped_trimmed: AtomicU64,
}

impl Counts {
    /// Single-writer increment: only the slot's owner calls this.
    #[inline(always)]
    pub(crate) fn bump(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Objects in the slot's cache, as far as a reader on another thread
    /// can tell (the three counters are read one after another, so a
    /// snapshot taken while the owner works may be off by a few; never
    /// negative).
    pub(crate) fn cached(&self) -> u64 {
        let drained = self.drained.load(Ordering::Relaxed);
        let out = self.cache_out.load(Ordering::Relaxed);
        let kept = self.cache_in.load(Ordering::Relaxed);
        kept.saturating_sub(out).saturating_sub(drained)
    }
}

impl<T> Slot<T> {
    fn new(index: usize) -> Self {
        Slot {
            index,
            cache: UnsafeCell::new(Cache {
                items: Vec::new(),
                cap: 0,
                epoch: UNREGISTERED,
            }),
            counts: Counts::default(),
        }
    }

    /// The thread index this slot belongs to.
    #[inline(always)]
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Runs `f` on the cache.
    ///
    /// # Safety
    /// The caller is the live thread holding this slot's index (the
    /// module's ownership rule), or has exclusive access to the whole table
    /// (`&mut`), and `f` does not call back into anything that could touch
    /// this slot (no user code: no `create`, `reset`, `accept` or `T::drop`).
    #[inline(always)]
    pub(crate) unsafe fn with_cache<R>(&self, f: impl FnOnce(&mut Cache<T>) -> R) -> R {
        // SAFETY: the caller guarantees exclusive access for the duration of
        // `f` (see above), so this is the only reference to the cache.
        self.cache.with_mut(|c| f(unsafe { &mut *c }))
    }
}

/// Thread indices below this have their slots in one bucket, found on the
/// hot path with a comparison and an index (no `log2`).
#[cfg(not(loom))]
pub(crate) const NEAR: usize = 32;

/// Under loom, one: the models' main thread (index 0) takes the near path
/// and the threads it spawns the far one, and `stats()` (which reads every
/// allocated slot's counters, each read a branch of the model) stays within
/// loom's bound on branches.
#[cfg(loom)]
pub(crate) const NEAR: usize = 1;

/// Buckets of the slots of indices from [`NEAR`] on.
const BUCKETS: usize = usize::BITS as usize;

/// Slots indexed by thread index, allocated bucket by bucket on demand.
pub(crate) struct Slots<T> {
    /// The slots of indices `0..NEAR`.
    near: AtomicPtr<Slot<T>>,
    /// Bucket `b` holds the `2^b` slots of indices `NEAR + 2^b - 1 ..= NEAR + 2^(b+1) - 2`.
    far: [AtomicPtr<Slot<T>>; BUCKETS],
    _owns: PhantomData<Box<Slot<T>>>,
}

// SAFETY: the table owns `Slot<T>`s, which hold `T`s; sending the table sends
// them, so it is `Send` exactly when `T` is.
unsafe impl<T: Send> Send for Slots<T> {}
// SAFETY: sharing the table lets several threads reach it at once, but each
// slot's cache is touched only by its owning thread (the module's ownership
// rule) and the counters are atomics; objects do move between threads (a
// guard dropped elsewhere, a thread's cache flushed to the shared store), so
// `T: Send` is required, and suffices: no `&T` is ever shared between threads
// by the table.
unsafe impl<T: Send> Sync for Slots<T> {}

/// Bucket and offset of far index `i` (thread index `NEAR + i`): bucket `b`
/// holds far indices `2^b - 1 ..= 2^(b+1) - 2`.
#[inline(always)]
fn locate(i: usize) -> (usize, usize) {
    let n = i + 1;
    let b = (usize::BITS - 1 - n.leading_zeros()) as usize;
    (b, n - (1 << b))
}

impl<T> Slots<T> {
    pub(crate) fn new() -> Self {
        Slots {
            near: AtomicPtr::new(ptr::null_mut()),
            far: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            _owns: PhantomData,
        }
    }

    /// The slot of thread index `i` if `i < NEAR` and its bucket exists:
    /// the hot path's lookup.
    #[inline(always)]
    pub(crate) fn near(&self, i: usize) -> Option<&Slot<T>> {
        if i >= NEAR {
            return None;
        }
        let p = self.near.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` points to a live bucket of `NEAR` slots (published with
        // Release by `allocate`, read with Acquire), freed only when the
        // table is dropped, which needs `&mut self`; `i < NEAR`.
        Some(unsafe { &*p.add(i) })
    }

    /// The slot of thread index `i`, allocating its bucket if needed.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &Slot<T> {
        if i < NEAR {
            let mut p = self.near.load(Ordering::Acquire);
            if p.is_null() {
                p = Self::allocate(&self.near, 0, NEAR);
            }
            // SAFETY: as in `near`.
            return unsafe { &*p.add(i) };
        }
        self.get_far(i - NEAR)
    }

    #[inline(never)]
    fn get_far(&self, i: usize) -> &Slot<T> {
        let (b, off) = locate(i);
        let mut p = self.far[b].load(Ordering::Acquire);
        if p.is_null() {
            p = Self::allocate(&self.far[b], NEAR + (1 << b) - 1, 1 << b);
        }
        // SAFETY: `p` points to a live bucket of `2^b` slots (published with
        // Release by `allocate`, read with Acquire), freed only when the
        // table is dropped, which needs `&mut self`; `off < 2^b` by `locate`.
        unsafe { &*p.add(off) }
    }

    /// Allocates a bucket of the `n` slots of indices `first..first + n`
    /// into `bucket`, or returns the one another thread put there first.
    #[cold]
    fn allocate(bucket: &AtomicPtr<Slot<T>>, first: usize, n: usize) -> *mut Slot<T> {
        let slots: Box<[Slot<T>]> = (first..first + n).map(Slot::new).collect();
        let fresh = Box::into_raw(slots) as *mut Slot<T>;
        match bucket.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(winner) => {
                // SAFETY: `fresh` came from `Box::into_raw` of a boxed slice
                // of `n` slots just above and was never published.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, n)) });
                winner
            }
        }
    }

    /// The buckets with their sizes.
    fn buckets(&self) -> impl Iterator<Item = (&AtomicPtr<Slot<T>>, usize)> {
        std::iter::once((&self.near, NEAR))
            .chain(self.far.iter().enumerate().map(|(b, p)| (p, 1 << b)))
    }

    /// Every allocated slot (for statistics).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Slot<T>)) {
        for (bucket, n) in self.buckets() {
            let p = bucket.load(Ordering::Acquire);
            if p.is_null() {
                continue;
            }
            for off in 0..n {
                // SAFETY: `p` points to a live bucket of `n` slots, as in
                // `near` and `get_far`.
                f(unsafe { &*p.add(off) });
            }
        }
    }
}

impl<T> Drop for Slots<T> {
    fn drop(&mut self) {
        for (bucket, n) in self.buckets() {
            let p = bucket.swap(ptr::null_mut(), Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: `p` came from `Box::into_raw` of a boxed slice of
                // `n` slots in `allocate`; `&mut self` means no other
                // reference to any slot exists.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p, n)) });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_indices_densely() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(1), (1, 0));
        assert_eq!(locate(2), (1, 1));
        assert_eq!(locate(3), (2, 0));
        assert_eq!(locate(6), (2, 3));
        assert_eq!(locate(7), (3, 0));
        let (b, off) = locate(usize::MAX - 1);
        assert_eq!(b, BUCKETS - 1);
        assert!(off < 1 << b);
    }

    #[test]
    fn indices_are_reused_lowest_first() {
        let mut r = Registry::default();
        let a = r.acquire();
        let b = r.acquire();
        let c = r.acquire();
        r.free.push(std::cmp::Reverse(c));
        r.free.push(std::cmp::Reverse(a));
        assert_eq!(r.acquire(), a);
        assert_eq!(r.acquire(), c);
        assert_eq!(r.acquire(), b + 2);
    }
}
