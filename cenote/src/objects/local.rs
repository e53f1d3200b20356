//! Per-thread caches: the thread registry and each pool's slot table.
//!
//! Every thread that touches an object pool gets a small *thread index*,
//! unique among live threads and reused after a thread exits (lowest free
//! first, so indices stay dense). A pool keeps one [`Slot`] per index in a
//! table: [`NEAR`] slots for the first indices, allocated with the pool,
//! then lazily allocated buckets of `2^b` slots. Finding the calling
//! thread's cache is one thread-local read, a comparison and an index (past
//! `NEAR`, a `log2` and an acquire load): no lock, no hashing.
//!
//! Ownership rule (the one invariant the `unsafe` relies on): a slot's cache
//! is touched only by the live thread that holds the slot's index. An index
//! is released only by its thread's exit hook, after that hook has emptied
//! the thread's slot in every pool still alive, and the release and the next
//! acquisition go through the registry mutex, which orders the old owner's
//! last access before the new owner's first.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
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
///
/// `repr(C)`: the fields the hot path touches (the index, the cache's
/// pointers and epoch, the two hot counters) come first and share the first
/// 64 bytes, and the index is at offset 0, which [`Home`](super::pool) relies
/// on.
#[repr(C, align(128))]
pub(crate) struct Slot<T> {
    /// The thread index this slot belongs to (never changes). At offset 0.
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

/// An idle object in a thread's cache, with the trim epoch at which it came
/// back.
pub(crate) type Entry<T> = (super::pool::Obj<T>, u64);

/// The owner-only part of a slot: a stack of idle objects (LIFO, so the
/// epochs never decrease from bottom to top) in storage reserved on first
/// use, kept as three pointers so that a push or a pop is a comparison, a
/// move and a pointer bump.
pub(crate) struct Cache<T> {
    /// Start of the storage: `base..top` holds the entries, `top..end` is
    /// free. All three are one dangling pointer while there is no storage.
    base: *mut Entry<T>,
    top: *mut Entry<T>,
    end: *mut Entry<T>,
    /// The pool's trim epoch at the owner's last access, or
    /// [`UNREGISTERED`]: one comparison tells the hot path both that the
    /// exit hook is in place and that no trim happened since.
    pub(crate) epoch: u64,
}

impl<T> Cache<T> {
    fn new() -> Self {
        let none = ptr::NonNull::dangling().as_ptr();
        Cache {
            base: none,
            top: none,
            end: none,
            epoch: UNREGISTERED,
        }
    }

    /// Room for `cap` entries (with none yet, `end == base`).
    fn cap(&self) -> usize {
        // SAFETY: both point into (or one past) the same storage, or are the
        // same dangling pointer.
        unsafe { self.end.offset_from(self.base) as usize }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        // SAFETY: as in `cap`; `base <= top`.
        unsafe { self.top.offset_from(self.base) as usize }
    }

    /// Makes room for `cap` entries if there is no storage yet (first use,
    /// or after [`release`](Self::release)).
    pub(crate) fn reserve(&mut self, cap: usize) {
        if self.cap() > 0 || cap == 0 {
            return;
        }
        let storage: Box<[Block<T>]> = (0..cap.div_ceil(BLOCK)).map(|_| Block::new()).collect();
        let base = Box::into_raw(storage) as *mut Entry<T>;
        self.base = base;
        self.top = base;
        // SAFETY: one past the end of the `cap` entries just allocated.
        self.end = unsafe { base.add(cap) };
    }

    /// Pops the newest entry's object.
    #[inline(always)]
    pub(crate) fn pop(&mut self) -> Option<super::pool::Obj<T>> {
        if self.top == self.base {
            return None;
        }
        // SAFETY: `base < top`, so `top - 1` is in the storage and holds an
        // entry, which is moved out as `top` stops covering it.
        unsafe {
            self.top = self.top.sub(1);
            Some(self.top.read().0)
        }
    }

    /// Pushes if there is room; never allocates.
    #[inline(always)]
    pub(crate) fn push(
        &mut self,
        value: super::pool::Obj<T>,
        stamp: u64,
    ) -> Result<(), super::pool::Obj<T>> {
        if self.top == self.end {
            return Err(value);
        }
        // SAFETY: `top < end`, so `top` is free storage; it is written before
        // `top` covers it.
        unsafe {
            self.top.write((value, stamp));
            self.top = self.top.add(1);
        }
        Ok(())
    }

    /// The entries, oldest first.
    pub(crate) fn entries(&self) -> &[Entry<T>] {
        // SAFETY: `base..top` holds `len` initialised entries (or is empty at
        // a dangling, aligned pointer).
        unsafe { std::slice::from_raw_parts(self.base, self.len()) }
    }

    /// Moves the `k` oldest entries out (`k <= len`) and the others down.
    pub(crate) fn take_oldest(&mut self, k: usize) -> Vec<Entry<T>> {
        let len = self.len();
        assert!(k <= len);
        let mut out = Vec::with_capacity(k);
        // SAFETY: `base..base + k` holds `k` entries, moved into `out`'s
        // spare capacity; the `len - k` after them move down to `base`
        // (`copy` allows the overlap), and `top` then covers exactly those.
        unsafe {
            ptr::copy_nonoverlapping(self.base, out.as_mut_ptr(), k);
            out.set_len(k);
            ptr::copy(self.base.add(k), self.base, len - k);
            self.top = self.base.add(len - k);
        }
        out
    }

    /// Moves every entry out and frees the storage (a thread's exit).
    pub(crate) fn release(&mut self) -> Vec<Entry<T>> {
        let all = self.take_oldest(self.len());
        let cap = self.cap();
        if cap > 0 {
            // SAFETY: the storage came from `Box::into_raw` of a boxed slice
            // of `cap.div_ceil(BLOCK)` blocks in `reserve`; it holds no entry
            // now (and a block's drop drops nothing).
            drop(unsafe {
                Box::from_raw(ptr::slice_from_raw_parts_mut(
                    self.base as *mut Block<T>,
                    cap.div_ceil(BLOCK),
                ))
            });
        }
        let none = ptr::NonNull::dangling().as_ptr();
        self.base = none;
        self.top = none;
        self.end = none;
        all
    }
}

/// Entries in one cache-line pair.
const BLOCK: usize = 8;

/// The unit of a cache's storage: [`BLOCK`] entries of 16 bytes, aligned to
/// 128 bytes, so that two threads' stacks (each the newest entries of its
/// own storage) never share a cache line. Blocks hold no padding, so the
/// entries of consecutive blocks are contiguous.
#[repr(C, align(128))]
struct Block<T>([MaybeUninit<Entry<T>>; BLOCK]);

const _: () = assert!(std::mem::size_of::<Entry<()>>() * BLOCK == 128);

impl<T> Block<T> {
    fn new() -> Self {
        Block([const { MaybeUninit::uninit() }; BLOCK])
    }
}

impl<T> Drop for Cache<T> {
    fn drop(&mut self) {
        drop(self.release());
    }
}

/// Event counters of one slot (or of the pool's shared path).
///
/// The hot path bumps one counter each way (`cache_out` on a get served by
/// the cache, `cache_in` on a return kept by it); the number of objects in
/// the cache is `cache_in - cache_out - drained`, so no mirror of its length
/// is stored.
#[derive(Default)]
#[repr(C)] // the hot two first (see `Slot`)
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
            cache: UnsafeCell::new(Cache::new()),
            counts: Counts::default(),
        }
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

/// Slots indexed by thread index: the first [`NEAR`] allocated with the
/// pool (so the hot path finds them with no check for a missing bucket),
/// the others bucket by bucket on demand.
pub(crate) struct Slots<T> {
    /// The slots of indices `0..NEAR`.
    near: Box<[Slot<T>; NEAR]>,
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
        let near: Box<[Slot<T>]> = (0..NEAR).map(Slot::new).collect();
        Slots {
            near: near.try_into().ok().expect("NEAR slots"),
            far: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            _owns: PhantomData,
        }
    }

    /// The slot of thread index `i` if `i < NEAR`: the hot path's lookup.
    #[inline(always)]
    pub(crate) fn near(&self, i: usize) -> Option<&Slot<T>> {
        self.near.get(i)
    }

    /// The slot of thread index `i`, allocating its bucket if needed.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &Slot<T> {
        match self.near.get(i) {
            Some(slot) => slot,
            None => self.get_far(i - NEAR),
        }
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

    /// Every allocated slot (for statistics).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Slot<T>)) {
        self.near.iter().for_each(&mut f);
        for (b, bucket) in self.far.iter().enumerate() {
            let p = bucket.load(Ordering::Acquire);
            if p.is_null() {
                continue;
            }
            for off in 0..1usize << b {
                // SAFETY: `p` points to a live bucket of `2^b` slots, as in
                // `get_far`.
                f(unsafe { &*p.add(off) });
            }
        }
    }
}

impl<T> Drop for Slots<T> {
    fn drop(&mut self) {
        for (b, bucket) in self.far.iter().enumerate() {
            let n = 1usize << b;
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

    /// An object that counts the live ones.
    struct Live(std::rc::Rc<std::cell::Cell<usize>>, u32);

    impl Live {
        fn new(n: &std::rc::Rc<std::cell::Cell<usize>>, id: u32) -> super::super::pool::Obj<Live> {
            n.set(n.get() + 1);
            Box::new(crossbeam_utils::CachePadded::new(Live(n.clone(), id)))
        }
    }

    impl Drop for Live {
        fn drop(&mut self) {
            self.0.set(self.0.get() - 1);
        }
    }

    #[test]
    fn the_cache_is_a_bounded_stack_that_never_loses_an_object() {
        let live = std::rc::Rc::new(std::cell::Cell::new(0));
        for cap in [0, 1, 3, 8, 9, 17] {
            let mut c = Cache::new();
            assert!(c.pop().is_none());
            assert!(
                c.push(Live::new(&live, 0), 0).is_err(),
                "no room before reserve"
            );
            c.reserve(cap);
            assert_eq!((c.len(), c.cap()), (0, cap));
            for i in 0..cap as u32 {
                assert!(c.push(Live::new(&live, i), u64::from(i)).is_ok());
            }
            assert!(c.push(Live::new(&live, 99), 99).is_err(), "full at {cap}");
            assert_eq!(live.get(), cap);
            // A second reserve keeps what is there.
            c.reserve(cap);
            assert_eq!(c.len(), cap);
            let stamps: Vec<u64> = c.entries().iter().map(|e| e.1).collect();
            assert_eq!(stamps, (0..cap as u64).collect::<Vec<_>>());
            // The oldest two go; the rest move down, in order.
            let k = cap.min(2);
            let old = c.take_oldest(k);
            assert_eq!(
                old.iter().map(|e| e.0 .1).collect::<Vec<_>>(),
                (0..k as u32).collect::<Vec<_>>()
            );
            drop(old);
            assert_eq!((c.len(), live.get()), (cap - k, cap - k));
            if cap > k {
                assert_eq!(c.entries().first().map(|e| e.1), Some(k as u64));
                assert_eq!(c.pop().map(|v| v.1), Some(cap as u32 - 1), "LIFO");
            }
            // Room again, up to cap.
            while c.push(Live::new(&live, 7), 7).is_ok() {}
            assert_eq!(c.len(), cap);
            let all = c.release();
            assert_eq!((all.len(), c.len(), c.cap()), (cap, 0, 0));
            drop(all);
            assert_eq!(live.get(), 0);
            // Released: reserve again, fill part, and let the drop free it.
            c.reserve(cap);
            for i in 0..cap as u32 / 2 {
                assert!(c.push(Live::new(&live, i), 0).is_ok());
            }
            drop(c);
            assert_eq!(live.get(), 0, "dropping a cache drops its objects");
        }
    }

    #[test]
    fn a_slots_index_is_its_first_field() {
        let slots: Slots<u8> = Slots::new();
        for i in [0, 1, NEAR - 1, NEAR, NEAR + 1, NEAR + 6, 1000] {
            let slot = slots.get(i);
            // SAFETY: a slot is `repr(C)` with the index first.
            assert_eq!(
                unsafe { (slot as *const Slot<u8>).cast::<usize>().read() },
                i
            );
            assert_eq!(slots.near(i).is_some(), i < NEAR);
        }
        let mut n = 0;
        slots.for_each(|_| n += 1);
        // NEAR, then far buckets 0 (1), 1 (2), 2 (4), 9 (512) for 1000.
        assert_eq!(n, NEAR + 1 + 2 + 4 + 512);
    }
}
