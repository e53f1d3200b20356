//! The pool, its guards and the get/return paths (see `DESIGN.md`).

use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Weak;

use super::builder::Builder;
use super::local::{current_index, register, Counts, Flush, Slot, Slots, UNREGISTERED};
use super::Stats;
use crate::sync::{Arc, AtomicU64, Condvar, Mutex, Ordering::*, Queue};
use crossbeam_utils::CachePadded;

/// How the pool holds an object: boxed, so that get and return move a
/// pointer, and padded to its own cache lines (128 bytes on x86-64, the
/// pair the adjacent-line prefetcher fetches together), so that objects in
/// use on different threads never share a line. Unpadded, two 24-byte `Vec`
/// headers created at the same moment on two threads landed 32 bytes apart,
/// and every `push` on one thread invalidated the other's line: 2 threads
/// cost 5x one thread in `cenote-bench objects`.
pub(crate) type Obj<T> = Box<CachePadded<T>>;

/// The callbacks a pool runs on its objects.
pub(crate) type CreateFn<T> = Box<dyn Fn() -> T + Send + Sync>;
pub(crate) type ResetFn<T> = Box<dyn Fn(&mut T) + Send + Sync>;
pub(crate) type AcceptFn<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

/// A pool of reusable objects of type `T`.
///
/// Cloning a `Pool` is cheap and gives another handle to the same pool.
/// `Pool<T>` is `Send` and `Sync` exactly when `T: Send`; a pool of a
/// thread-bound type (`Rc`, `RefCell` handles) still works, on one thread:
///
/// ```compile_fail
/// use cenote::objects::Pool;
/// let pool = Pool::new(|| std::rc::Rc::new(5));
/// std::thread::spawn(move || drop(pool.get())); // Rc is not Send
/// ```
///
/// ```
/// use cenote::objects::Pool;
/// let pool = Pool::new(|| std::rc::Rc::new(5)); // fine on one thread
/// assert_eq!(**pool.get(), 5);
/// ```
///
/// See the [module documentation](super) for the design and an example.
pub struct Pool<T: 'static> {
    inner: Arc<Inner<T>>,
}

// No handle count here: an object pool has nothing to close, and the last
// reference (a handle or an `OwnedPooled`) drops `Inner`, which stops the
// trimmer.
impl<T: 'static> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl<T: 'static> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("max_idle", &self.inner.max_idle)
            .field("thread_cache", &self.inner.cache_cap)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Stops the background trimmer when the pool goes away.
pub(crate) struct TrimStop {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl TrimStop {
    pub(crate) fn new() -> Self {
        TrimStop {
            stopped: Mutex::new(false),
            cv: Condvar::new(),
        }
    }
}

/// Counters for the paths that have no slot (shared store only).
#[derive(Default)]
struct SharedCounts {
    hits: AtomicU64,
    misses: AtomicU64,
    returned: AtomicU64,
    dropped_full: AtomicU64,
    dropped_refused: AtomicU64,
    dropped_panicked: AtomicU64,
    dropped_trimmed: AtomicU64,
}

pub(crate) struct Inner<T: 'static> {
    create: CreateFn<T>,
    reset: Option<ResetFn<T>>,
    accept: Option<AcceptFn<T>>,
    /// Idle objects with the trim epoch at which they came back.
    shared: Queue<(Obj<T>, u64)>,
    slots: Slots<T>,
    /// Objects each thread may keep (0: no thread caches).
    cache_cap: usize,
    max_idle: usize,
    discard_on_panic: bool,
    /// Number of `trim()` calls so far.
    epoch: AtomicU64,
    counts: SharedCounts,
    trim_stop: Option<Arc<TrimStop>>,
}

pub(crate) struct Parts<T: 'static> {
    pub(crate) create: CreateFn<T>,
    pub(crate) reset: Option<ResetFn<T>>,
    pub(crate) accept: Option<AcceptFn<T>>,
    pub(crate) max_idle: usize,
    pub(crate) thread_cache: usize,
    pub(crate) discard_on_panic: bool,
    pub(crate) trim_stop: Option<Arc<TrimStop>>,
}

impl<T: 'static> Pool<T> {
    /// A pool with the default settings that makes objects with `create`.
    /// Objects are returned as they are (no reset); see
    /// [`builder`](Self::builder) for reset, bounds and trimming.
    pub fn new(create: impl Fn() -> T + Send + Sync + 'static) -> Pool<T> {
        Builder::new(create)
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder for a pool that makes objects with `create`.
    pub fn builder(create: impl Fn() -> T + Send + Sync + 'static) -> Builder<T> {
        Builder::new(create)
    }

    pub(crate) fn from_parts(p: Parts<T>) -> Pool<T> {
        Pool {
            inner: Arc::new(Inner {
                create: p.create,
                reset: p.reset,
                accept: p.accept,
                shared: Queue::new(p.max_idle),
                slots: Slots::new(),
                cache_cap: p.thread_cache,
                max_idle: p.max_idle,
                discard_on_panic: p.discard_on_panic,
                epoch: AtomicU64::new(0),
                counts: SharedCounts::default(),
                trim_stop: p.trim_stop,
            }),
        }
    }

    /// Creates `n` objects into the shared store (at build).
    pub(crate) fn prefill(&self, n: usize) {
        for _ in 0..n {
            let v = Obj::new(CachePadded::new((self.inner.create)()));
            if let Err((v, _)) = self.inner.shared.push((v, 0)) {
                drop_quietly(v);
                break;
            }
        }
    }

    pub(crate) fn downgrade(&self) -> Weak<Inner<T>> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(weak: &Weak<Inner<T>>) -> Option<Pool<T>> {
        weak.upgrade().map(|inner| Pool { inner })
    }

    /// An object from the pool, or a new one if none is idle. It returns to
    /// the pool when the guard is dropped.
    #[inline(always)]
    pub fn get(&self) -> Pooled<'_, T> {
        let (value, home) = self.take(true);
        let value = match value {
            Some(v) => v,
            None => Obj::new(CachePadded::new((self.inner.create)())),
        };
        Pooled {
            pool: self,
            home,
            value: ManuallyDrop::new(value),
        }
    }

    /// Like [`get`](Self::get), but the guard owns a handle to the pool, so
    /// it is `'static`: it can move to another thread or task and return the
    /// object to the pool from there.
    #[inline]
    pub fn get_owned(&self) -> OwnedPooled<T> {
        let (value, home) = self.take(true);
        let value = match value {
            Some(v) => v,
            None => Obj::new(CachePadded::new((self.inner.create)())),
        };
        OwnedPooled {
            pool: self.clone(),
            home,
            value: ManuallyDrop::new(value),
        }
    }

    /// An idle object from the pool, never a new one.
    #[inline]
    pub fn try_get(&self) -> Option<Pooled<'_, T>> {
        let (value, home) = self.take(false);
        value.map(|value| Pooled {
            pool: self,
            home,
            value: ManuallyDrop::new(value),
        })
    }

    /// Adds `value` to the pool, as if a guard holding it were dropped: it
    /// is reset and checked by `accept`, and dropped if the pool is full.
    pub fn put(&self, value: T) {
        self.give_back(Obj::new(CachePadded::new(value)), Home::NONE);
    }

    /// Drops the idle objects that have not been used for one whole trim
    /// period: those that came back before the previous `trim()` and have
    /// not been taken since (the victim-cache idea of Go's `sync.Pool`, with
    /// the period yours instead of the garbage collector's).
    ///
    /// The shared store is trimmed at once. A thread's own small cache (at
    /// most [`thread_cache`](Builder::thread_cache) objects) is trimmed by
    /// that thread at its next use of the pool, and handed back when it
    /// exits; the calling thread's cache is trimmed now.
    pub fn trim(&self) {
        let inner = &*self.inner;
        let now = inner.epoch.fetch_add(1, SeqCst) + 1;
        let mut keep = Vec::new();
        let mut trimmed = 0u64;
        for _ in 0..inner.shared.len() {
            match inner.shared.pop() {
                // Came back before the previous trim: idle a whole period.
                Some((v, stamp)) if stamp + 1 < now => {
                    drop_quietly(v);
                    trimmed += 1;
                }
                Some(entry) => keep.push(entry),
                None => break,
            }
        }
        inner.counts.dropped_trimmed.fetch_add(trimmed, Relaxed);
        for entry in keep {
            if let Err((v, _)) = inner.shared.push(entry) {
                inner.counts.dropped_full.fetch_add(1, Relaxed);
                drop_quietly(v);
            }
        }
        // The calling thread's own cache: apply the same rule now.
        if inner.cache_cap > 0 {
            let stale = current_index().map(|index| {
                let slot = inner.slots.get(index);
                // SAFETY: the slot of the calling thread's index, on that
                // thread; the closure runs no user code.
                unsafe {
                    slot.with_cache(|c| {
                        if c.epoch != UNREGISTERED {
                            take_stale(c, slot, now)
                        } else {
                            None
                        }
                    })
                }
            });
            if let Some(Some(stale)) = stale {
                self.drop_stale(stale);
            }
        }
    }

    /// Moves the calling thread's cached objects to the shared store (those
    /// that do not fit are dropped), where any thread can take them. A
    /// thread's exit does this by itself; call it before a thread goes
    /// quiet for a long time.
    pub fn flush_thread_cache(&self) {
        if let Some(index) = current_index() {
            self.inner.flush(index, false);
        }
    }

    /// Counters and the number of idle objects.
    pub fn stats(&self) -> Stats {
        let inner = &*self.inner;
        let c = &inner.counts;
        let mut s = Stats {
            hits: c.hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            returned: c.returned.load(Relaxed),
            dropped_full: c.dropped_full.load(Relaxed),
            dropped_refused: c.dropped_refused.load(Relaxed),
            dropped_panicked: c.dropped_panicked.load(Relaxed),
            dropped_trimmed: c.dropped_trimmed.load(Relaxed),
            idle: inner.shared.len(),
        };
        inner.slots.for_each(|slot| {
            let k = &slot.counts;
            s.hits += k.cache_out.load(Relaxed) + k.shared_hits.load(Relaxed);
            s.misses += k.misses.load(Relaxed);
            s.returned += k.cache_in.load(Relaxed) + k.shared_returned.load(Relaxed);
            s.dropped_full += k.dropped_full.load(Relaxed);
            s.dropped_refused += k.dropped_refused.load(Relaxed);
            s.dropped_panicked += k.dropped_panicked.load(Relaxed);
            s.dropped_trimmed += k.dropped_trimmed.load(Relaxed);
            s.idle += k.cached() as usize;
        });
        s
    }

    /// The bound on objects in the shared store.
    pub fn max_idle(&self) -> usize {
        self.inner.max_idle
    }

    /// Objects each thread may keep in its own cache.
    pub fn thread_cache(&self) -> usize {
        self.inner.cache_cap
    }

    // ----- the paths --------------------------------------------------------
    //
    // The hot path (a get served by this thread's cache, a return kept by
    // it) is kept small enough to inline: one thread-local load, the slot,
    // one comparison of epochs (which also says the exit hook is in place),
    // a push or pop and one owner-only counter. A guard remembers the slot
    // its object came from, so a return on the same thread skips finding it
    // again. Everything else (first use, a trim since the last use, a full
    // or empty cache, the shared store) is out of line.

    /// Takes an idle object: this thread's cache, then the shared store.
    /// Counts a hit, or a miss when `counting_miss` (the caller creates).
    /// Also says which slot is this thread's, for the guard.
    #[inline(always)]
    fn take(&self, counting_miss: bool) -> (Option<Obj<T>>, Home<T>) {
        let inner = &*self.inner;
        if inner.cache_cap > 0 {
            if let Some(index) = current_index() {
                let slot = inner.slots.get(index);
                let now = inner.epoch.load(Relaxed);
                // SAFETY: the slot of the calling thread's index, on that
                // thread; the closure runs no user code.
                let hit = unsafe {
                    slot.with_cache(|c| if c.epoch == now { c.items.pop() } else { None })
                };
                let home = Home { index, slot };
                if let Some((v, _)) = hit {
                    Counts::bump(&slot.counts.cache_out, 1);
                    return (Some(v), home);
                }
                return (self.take_slow(slot, now, counting_miss), home);
            }
        }
        (self.take_shared(&inner.counts, counting_miss), Home::NONE)
    }

    /// This thread's cache is empty, or needs registering or trimming.
    #[cold]
    #[inline(never)]
    fn take_slow(&self, slot: &Slot<T>, now: u64, counting_miss: bool) -> Option<Obj<T>> {
        if self.slow_local(slot, now).is_some() {
            // SAFETY: as in `take`.
            let hit = unsafe { slot.with_cache(|c| c.items.pop()) };
            if let Some((v, _)) = hit {
                Counts::bump(&slot.counts.cache_out, 1);
                return Some(v);
            }
        }
        let got = self.inner.shared.pop().map(|(v, _)| v);
        if got.is_some() {
            Counts::bump(&slot.counts.shared_hits, 1);
        } else if counting_miss {
            Counts::bump(&slot.counts.misses, 1);
        }
        got
    }

    /// The shared store, counted in `counts` (read-modify-writes: several
    /// threads may count here at once).
    fn take_shared(&self, counts: &SharedCounts, counting_miss: bool) -> Option<Obj<T>> {
        let got = self.inner.shared.pop().map(|(v, _)| v);
        match got {
            Some(_) => counts.hits.fetch_add(1, Relaxed),
            None if counting_miss => counts.misses.fetch_add(1, Relaxed),
            None => 0,
        };
        got
    }

    /// First use by this thread, or a trim since its last use: registers
    /// the exit hook and drops what sat idle a whole period. `None` if the
    /// slot cannot be used.
    #[cold]
    fn slow_local(&self, slot: &Slot<T>, now: u64) -> Option<()> {
        let inner = &*self.inner;
        // SAFETY: the slot of the calling thread's index, on that thread;
        // the closure runs no user code (reserving memory is not user code).
        let (first, stale) = unsafe {
            slot.with_cache(|c| {
                let first = c.epoch == UNREGISTERED;
                if first {
                    c.items.reserve_exact(inner.cache_cap);
                }
                let stale = take_stale(c, slot, now);
                (first, stale)
            })
        };
        if first {
            let weak: Weak<dyn Flush> = self.downgrade();
            if !register(weak) {
                // Unreachable in practice (an index implies a live entry);
                // keep the slot usable by nobody rather than unflushed.
                // SAFETY: as above.
                unsafe { slot.with_cache(|c| c.epoch = UNREGISTERED) };
                return None;
            }
        }
        if let Some(stale) = stale {
            self.drop_stale(stale);
        }
        Some(())
    }

    fn drop_stale(&self, stale: Vec<Obj<T>>) {
        let n = stale.len() as u64;
        let counted = current_index().map(|index| {
            let slot = self.inner.slots.get(index);
            Counts::bump(&slot.counts.dropped_trimmed, n);
        });
        if counted.is_none() {
            self.inner.counts.dropped_trimmed.fetch_add(n, Relaxed);
        }
        for v in stale {
            drop_quietly(v);
        }
    }

    /// The return path of guards (with the slot the object came from) and
    /// of `put`.
    #[inline(always)]
    fn give_back(&self, mut value: Obj<T>, home: Home<T>) {
        let inner = &*self.inner;
        if inner.discard_on_panic && std::thread::panicking() {
            return self.discard_panicked(value);
        }
        if let Some(reset) = &inner.reset {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| reset(&mut *value))) {
                crate::unwind::drop_payload(payload);
                return self.reset_panicked(value);
            }
        }
        if let Some(accept) = &inner.accept {
            match catch_unwind(AssertUnwindSafe(|| accept(&value))) {
                Ok(true) => {}
                Ok(false) => return self.refused(value),
                Err(payload) => {
                    crate::unwind::drop_payload(payload);
                    return self.accept_panicked(value);
                }
            }
        }
        if inner.cache_cap > 0 {
            if let Some(index) = current_index() {
                let slot = if index == home.index {
                    // SAFETY: `home.slot` is the slot of `home.index` in this
                    // pool (set by `take` from this pool's table), and the
                    // pool outlives the guard that carried it.
                    unsafe { &*home.slot }
                } else {
                    inner.slots.get(index)
                };
                let now = inner.epoch.load(Relaxed);
                let cap = inner.cache_cap;
                // SAFETY: the slot of the calling thread's index, on that
                // thread; the closure runs no user code (the push stays
                // within the reserved capacity, so it does not allocate).
                let kept = unsafe {
                    slot.with_cache(|c| {
                        if c.epoch == now && c.items.len() < cap {
                            c.items.push((value, now));
                            None
                        } else {
                            Some(value)
                        }
                    })
                };
                match kept {
                    None => Counts::bump(&slot.counts.cache_in, 1),
                    Some(v) => self.put_slow(v, slot, now),
                }
                return;
            }
        }
        self.put_shared(value, &inner.counts);
    }

    /// This thread's cache is full, or needs registering or trimming.
    #[cold]
    #[inline(never)]
    fn put_slow(&self, value: Obj<T>, slot: &Slot<T>, now: u64) {
        let inner = &*self.inner;
        let value = if self.slow_local(slot, now).is_some() {
            // SAFETY: as in `give_back`.
            let kept = unsafe {
                slot.with_cache(|c| {
                    if c.items.len() < inner.cache_cap {
                        c.items.push((value, now));
                        None
                    } else {
                        Some(value)
                    }
                })
            };
            match kept {
                None => return Counts::bump(&slot.counts.cache_in, 1),
                Some(v) => v,
            }
        } else {
            value
        };
        match inner.shared.push((value, now)) {
            Ok(()) => Counts::bump(&slot.counts.shared_returned, 1),
            Err((v, _)) => {
                Counts::bump(&slot.counts.dropped_full, 1);
                drop_quietly(v);
            }
        }
    }

    /// A return with no usable thread cache.
    #[cold]
    fn put_shared(&self, value: Obj<T>, counts: &SharedCounts) {
        let stamp = self.inner.epoch.load(Relaxed);
        match self.inner.shared.push((value, stamp)) {
            Ok(()) => counts.returned.fetch_add(1, Relaxed),
            Err((v, _)) => {
                counts.dropped_full.fetch_add(1, Relaxed);
                drop_quietly(v);
                0
            }
        };
    }

    #[cold]
    #[inline(never)]
    fn discard_panicked(&self, value: Obj<T>) {
        // The object may be half-updated by the code that panicked.
        self.inner.counts.dropped_panicked.fetch_add(1, Relaxed);
        drop_quietly(value);
    }

    #[cold]
    #[inline(never)]
    fn reset_panicked(&self, value: Obj<T>) {
        tracing::error!("cenote: an object pool's reset panicked; the object is dropped");
        self.inner.counts.dropped_panicked.fetch_add(1, Relaxed);
        drop_quietly(value);
    }

    #[cold]
    #[inline(never)]
    fn accept_panicked(&self, value: Obj<T>) {
        tracing::error!("cenote: an object pool's accept panicked; the object is dropped");
        self.inner.counts.dropped_panicked.fetch_add(1, Relaxed);
        drop_quietly(value);
    }

    #[inline(never)]
    fn refused(&self, value: Obj<T>) {
        self.inner.counts.dropped_refused.fetch_add(1, Relaxed);
        drop_quietly(value);
    }
}

/// The slot a guard's object came from: its thread index and address, or
/// [`Home::NONE`]. A return on a thread with that index uses the slot
/// directly.
pub(crate) struct Home<T> {
    index: usize,
    slot: *const Slot<T>,
}

impl<T> Clone for Home<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Home<T> {}

impl<T> Home<T> {
    /// No slot: the return finds the calling thread's own.
    const NONE: Home<T> = Home {
        index: usize::MAX,
        slot: std::ptr::null(),
    };
}

/// Takes the cache's objects that sat unused for a whole trim period (came
/// back before the previous trim), and records the epoch. They are a prefix
/// of the stack: epochs never decrease from bottom to top.
fn take_stale<T>(c: &mut super::local::Cache<T>, slot: &Slot<T>, now: u64) -> Option<Vec<Obj<T>>> {
    c.epoch = now;
    let k = c
        .items
        .iter()
        .position(|&(_, stamp)| stamp + 1 >= now)
        .unwrap_or(c.items.len());
    if k == 0 {
        return None;
    }
    let stale = c.items.drain(..k).map(|(v, _)| v).collect();
    Counts::bump(&slot.counts.drained, k as u64);
    Some(stale)
}

/// Drops an object; a panic in its `Drop` is reported, not propagated (the
/// pool drops objects on paths, such as a guard dropped during unwinding,
/// where a second panic would abort the process).
fn drop_quietly<T>(value: T) {
    if crate::unwind::panicked(move || drop(value)) {
        tracing::error!("cenote: dropping a pooled object panicked");
    }
}

impl<T: 'static> Flush for Inner<T> {
    fn flush(&self, index: usize, exiting: bool) {
        let slot = self.slots.get(index);
        // SAFETY: called by the thread holding `index` (by hand, or by its
        // exit hook before the index is released), on that thread; no user
        // code runs in the closure.
        let items = unsafe {
            slot.with_cache(|c| {
                if exiting {
                    // The index's next owner registers its own exit hook.
                    c.epoch = UNREGISTERED;
                }
                Counts::bump(&slot.counts.drained, c.items.len() as u64);
                if exiting {
                    std::mem::take(&mut c.items)
                } else {
                    // Keep the reserved capacity for the thread's next use.
                    c.items.drain(..).collect::<Vec<_>>()
                }
            })
        };
        for entry in items {
            if let Err((v, _)) = self.shared.push(entry) {
                self.counts.dropped_full.fetch_add(1, Relaxed);
                drop_quietly(v);
            }
        }
    }
}

impl<T: 'static> Drop for Inner<T> {
    fn drop(&mut self) {
        if let Some(stop) = &self.trim_stop {
            *stop.stopped.lock() = true;
            stop.cv.notify_all();
        }
    }
}

/// Runs [`Pool::trim`] every `period` until the pool is dropped.
pub(crate) fn start_trimmer<T: Send + 'static>(
    pool: &Pool<T>,
    period: std::time::Duration,
    stop: Arc<TrimStop>,
) -> std::io::Result<()> {
    let weak = pool.downgrade();
    crate::sync::spawn_thread("cenote-objects-trim".to_owned(), None, move || loop {
        {
            let mut stopped = stop.stopped.lock();
            let deadline = crate::sync::deadline_after(period);
            loop {
                if *stopped {
                    return;
                }
                if stop.cv.wait_until(&mut stopped, deadline) {
                    break;
                }
            }
        }
        match Pool::upgrade(&weak) {
            Some(pool) => pool.trim(),
            None => return,
        }
    })
}

// ----- guards -----------------------------------------------------------------

/// An object borrowed from a [`Pool`]; it goes back when dropped.
///
/// Dropped while its thread is panicking, the object is discarded instead
/// (unless the pool was built with `discard_on_panic(false)`): code that
/// panicked may have left it half-updated.
pub struct Pooled<'a, T: 'static> {
    pool: &'a Pool<T>,
    home: Home<T>,
    value: ManuallyDrop<Obj<T>>,
}

// SAFETY: the guard is a `&Pool<T>` and a `T` (the auto traits would say
// so but for `Home`'s raw pointer, which is only compared and, on the
// thread owning that slot, dereferenced): it may go where both may.
unsafe impl<T: Send> Send for Pooled<'_, T> where Pool<T>: Sync {}
// SAFETY: as above; `&Pooled` gives only `&T` (and `home` is never used
// through a shared reference).
unsafe impl<T: Sync> Sync for Pooled<'_, T> where Pool<T>: Sync {}

impl<T: 'static> Pooled<'_, T> {
    /// Takes the object out of the pool for good.
    pub fn detach(self) -> T {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped, so the value is taken exactly once
        // and the guard's `Drop` (which would take it again) never runs.
        CachePadded::into_inner(*unsafe { ManuallyDrop::take(&mut me.value) })
    }
}

impl<T: 'static> Deref for Pooled<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: 'static> DerefMut for Pooled<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: 'static> Drop for Pooled<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and nothing reads `value` afterwards.
        let value = unsafe { ManuallyDrop::take(&mut self.value) };
        self.pool.give_back(value, self.home);
    }
}

impl<T: fmt::Debug + 'static> fmt::Debug for Pooled<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.value, f)
    }
}

/// An object from [`Pool::get_owned`]: like [`Pooled`], but `'static`, so
/// it can be sent to another thread (when `T: Send`) and returned there.
pub struct OwnedPooled<T: 'static> {
    pool: Pool<T>,
    home: Home<T>,
    value: ManuallyDrop<Obj<T>>,
}

// SAFETY: the guard is a `Pool<T>` and a `T` (the auto traits would say so
// but for `Home`'s raw pointer, which is only compared and, on the thread
// owning that slot, dereferenced; the pool handle keeps the slot alive).
unsafe impl<T: Send> Send for OwnedPooled<T> where Pool<T>: Send {}
// SAFETY: as above; `&OwnedPooled` gives only `&T` and `&Pool<T>`.
unsafe impl<T: Sync> Sync for OwnedPooled<T> where Pool<T>: Sync {}

impl<T: 'static> OwnedPooled<T> {
    /// Takes the object out of the pool for good.
    pub fn detach(self) -> T {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped, so the value is taken exactly once;
        // the pool handle is dropped here by hand instead.
        let value = unsafe { ManuallyDrop::take(&mut me.value) };
        // SAFETY: `me.pool` is read exactly once and `me` is never dropped.
        drop(unsafe { std::ptr::read(&me.pool) });
        CachePadded::into_inner(*value)
    }

    /// The pool this object returns to.
    pub fn pool(&self) -> &Pool<T> {
        &self.pool
    }
}

impl<T: 'static> Deref for OwnedPooled<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: 'static> DerefMut for OwnedPooled<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: 'static> Drop for OwnedPooled<T> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and nothing reads `value` afterwards.
        let value = unsafe { ManuallyDrop::take(&mut self.value) };
        self.pool.give_back(value, self.home);
    }
}

impl<T: fmt::Debug + 'static> fmt::Debug for OwnedPooled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.value, f)
    }
}
