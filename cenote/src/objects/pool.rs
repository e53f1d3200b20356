//! The pool, its guards and the get/return paths (see `DESIGN.md`).

use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::Weak;

use super::builder::Builder;
use super::hooks::{Hooks, Verdict};
use super::local::{current_index, raw_index, register, Counts, Flush, Slot, Slots, UNREGISTERED};
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

/// How a pool makes its objects.
pub(crate) type CreateFn<T> = Box<dyn Fn() -> T + Send + Sync>;

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
    /// This pool, for the exit hooks that threads register.
    me: Weak<Inner<T>>,
    create: CreateFn<T>,
    /// Reset and accept, and the return path compiled for them (see
    /// `hooks.rs`).
    hooks: Box<dyn Hooks<T>>,
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
    name: crate::observe::name::PoolName,
}

pub(crate) struct Parts<T: 'static> {
    pub(crate) create: CreateFn<T>,
    pub(crate) hooks: Box<dyn Hooks<T>>,
    pub(crate) max_idle: usize,
    pub(crate) thread_cache: usize,
    pub(crate) discard_on_panic: bool,
    pub(crate) trim_stop: Option<Arc<TrimStop>>,
    pub(crate) name: Option<String>,
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
            inner: Arc::new_cyclic(|me| Inner {
                me: me.clone(),
                create: p.create,
                hooks: p.hooks,
                shared: Queue::new(p.max_idle),
                slots: Slots::new(),
                cache_cap: p.thread_cache,
                max_idle: p.max_idle,
                discard_on_panic: p.discard_on_panic,
                epoch: AtomicU64::new(0),
                counts: SharedCounts::default(),
                trim_stop: p.trim_stop,
                name: crate::observe::name::PoolName::claim("objects", p.name.as_deref()),
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
        let inner = &*self.inner;
        let (value, home) = match inner.take_cached() {
            Some(taken) => taken,
            None => inner.get_slow(),
        };
        Pooled {
            inner,
            home,
            value: ManuallyDrop::new(value),
        }
    }

    /// Like [`get`](Self::get), but the guard owns a handle to the pool, so
    /// it is `'static`: it can move to another thread or task and return the
    /// object to the pool from there.
    #[inline]
    pub fn get_owned(&self) -> OwnedPooled<T> {
        let (value, home) = match self.inner.take_cached() {
            Some(taken) => taken,
            None => self.inner.get_slow(),
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
        let inner = &*self.inner;
        let (value, home) = match inner.take_cached() {
            Some((value, home)) => (Some(value), home),
            None => inner.take_slow(false),
        };
        value.map(|value| Pooled {
            inner,
            home,
            value: ManuallyDrop::new(value),
        })
    }

    /// Adds `value` to the pool, as if a guard holding it were dropped: it
    /// is reset and checked by `accept`, and dropped if the pool is full.
    pub fn put(&self, value: T) {
        self.inner
            .give_back(Obj::new(CachePadded::new(value)), Home::none());
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
                inner.drop_stale(stale);
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
        self.inner.stats()
    }

    /// The pool's name (see [`Builder::name`]).
    pub fn name(&self) -> &str {
        self.inner.name.as_str()
    }

    /// The bound on objects in the shared store.
    pub fn max_idle(&self) -> usize {
        self.inner.max_idle
    }

    /// Objects each thread may keep in its own cache.
    pub fn thread_cache(&self) -> usize {
        self.inner.cache_cap
    }
}

impl<T: Send + 'static> Pool<T> {
    /// Publishes the pool's metrics from now on (see [`Builder::name`]).
    #[cfg(feature = "metrics")]
    pub(crate) fn register_metrics(&self) {
        crate::observe::publish::register(
            Arc::downgrade(&self.inner) as Weak<dyn crate::observe::publish::Publish>
        );
    }
}

#[cfg(feature = "metrics")]
impl<T: Send + 'static> crate::observe::publish::Publish for Inner<T> {
    fn publish(&self) {
        crate::observe::objects::publish(&self.name.shared(), &self.stats());
    }
}

impl<T: 'static> Inner<T> {
    fn stats(&self) -> Stats {
        let inner = self;
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
}

impl<T: 'static> Inner<T> {
    /// A new object (a miss).
    fn create(&self) -> Obj<T> {
        Obj::new(CachePadded::new((self.create)()))
    }

    /// A get that [`take_cached`](Self::take_cached) could not serve.
    #[cold]
    #[inline(never)]
    fn get_slow(&self) -> (Obj<T>, Home<T>) {
        let (value, home) = self.take_slow(true);
        (value.unwrap_or_else(|| self.create()), home)
    }

    // ----- the paths --------------------------------------------------------
    //
    // The hot path (a get served by this thread's cache, a return kept by
    // it): one thread-local load each way, the slot (an index into the near
    // slots on a get; remembered by the guard on a return), one comparison
    // of epochs (which also says the exit hook is in place), a pop or push
    // and one owner-only counter. The get is inlined into the caller; the
    // return is one call, to the return path compiled for the pool's reset
    // and accept (`Hooks::give_back`, then `give_back_kept`).
    // Everything else (first use, a thread index past the near slots, a
    // trim since the last use, a full or empty cache, the shared store, a
    // miss) is out of line.

    /// Takes an object from this thread's cache if that needs nothing but a
    /// pop: the hot path of a get. Also says which slot is this thread's,
    /// for the guard.
    #[inline(always)]
    fn take_cached(&self) -> Option<(Obj<T>, Home<T>)> {
        let index = raw_index();
        let slot = self.slots.near(index)?;
        let now = self.epoch.load(Relaxed);
        // SAFETY: `index` is the calling thread's own (`raw_index` returns
        // it or a value that `near` refuses), so this is that thread's slot,
        // on that thread; the closure runs no user code.
        let hit = unsafe { slot.with_cache(|c| if c.epoch == now { c.pop() } else { None }) };
        let value = hit?;
        Counts::bump(&slot.counts.cache_out, 1);
        Some((value, Home { slot }))
    }

    /// Takes an idle object when [`take_cached`](Self::take_cached) could
    /// not: this thread's cache, then the shared store. Counts a hit, or a
    /// miss when `counting_miss` (the caller creates).
    #[cold]
    #[inline(never)]
    fn take_slow(&self, counting_miss: bool) -> (Option<Obj<T>>, Home<T>) {
        if self.cache_cap > 0 {
            if let Some(index) = current_index() {
                let slot = self.slots.get(index);
                let now = self.epoch.load(Relaxed);
                // SAFETY: the slot of the calling thread's index, on that
                // thread; the closure runs no user code.
                let hit =
                    unsafe { slot.with_cache(|c| if c.epoch == now { c.pop() } else { None }) };
                let home = Home { slot };
                if let Some(v) = hit {
                    Counts::bump(&slot.counts.cache_out, 1);
                    return (Some(v), home);
                }
                return (self.take_local_slow(slot, now, counting_miss), home);
            }
        }
        (self.take_shared(&self.counts, counting_miss), Home::none())
    }

    /// This thread's cache is empty, or needs registering or trimming.
    fn take_local_slow(&self, slot: &Slot<T>, now: u64, counting_miss: bool) -> Option<Obj<T>> {
        if self.slow_local(slot, now).is_some() {
            // SAFETY: as in `take_slow`.
            let hit = unsafe { slot.with_cache(|c| c.pop()) };
            if let Some(v) = hit {
                Counts::bump(&slot.counts.cache_out, 1);
                return Some(v);
            }
        }
        let got = self.shared.pop().map(|(v, _)| v);
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
        let got = self.shared.pop().map(|(v, _)| v);
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
        // SAFETY: the slot of the calling thread's index, on that thread;
        // the closure runs no user code (reserving memory is not user code).
        let (first, stale) = unsafe {
            slot.with_cache(|c| {
                let first = c.epoch == UNREGISTERED;
                if first {
                    c.reserve(self.cache_cap);
                }
                let stale = take_stale(c, slot, now);
                (first, stale)
            })
        };
        if first {
            let weak: Weak<dyn Flush> = self.me.clone();
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
            let slot = self.slots.get(index);
            Counts::bump(&slot.counts.dropped_trimmed, n);
        });
        if counted.is_none() {
            self.counts.dropped_trimmed.fetch_add(n, Relaxed);
        }
        for v in stale {
            drop_quietly(v);
        }
    }

    /// The return path of guards (with the slot the object came from) and
    /// of `put`: one call, to the return path compiled for this pool's reset
    /// and accept ([`Hooks::give_back`]).
    #[inline(always)]
    fn give_back(&self, value: Obj<T>, home: Home<T>) {
        self.hooks.give_back(self, value, home);
    }

    /// A return on a panicking thread.
    #[inline(always)]
    pub(crate) fn give_back_panicking(&self, value: Obj<T>, home: Home<T>) {
        self.give_back_slow(value, home, Slow::Panicking);
    }

    /// Runs the reset and accept, if any.
    fn prepare(&self, value: &mut T) -> Verdict {
        self.hooks.prepare(value)
    }

    /// Pushes a reset and accepted object onto this thread's cache if the
    /// object came from it and that needs nothing but the push.
    #[inline(always)]
    pub(crate) fn push_home(&self, value: Obj<T>, home: Home<T>) -> Result<(), Obj<T>> {
        let Some(slot) = home.held() else {
            return Err(value);
        };
        let now = self.epoch.load(Relaxed);
        // SAFETY: `held` gives the slot of the calling thread's index, and
        // this runs on that thread.
        unsafe { Self::push_own(slot, value, now) }
    }

    /// Pushes onto `slot`'s cache if the cache is not due a trim (its
    /// epoch is `now`) and has room, and counts the push.
    ///
    /// # Safety
    /// `slot` is the calling thread's own slot.
    #[inline(always)]
    unsafe fn push_own(slot: &Slot<T>, value: Obj<T>, now: u64) -> Result<(), Obj<T>> {
        // SAFETY: the caller's promise; the closure runs no user code
        // (`push` never allocates).
        let kept = unsafe {
            slot.with_cache(|c| {
                if c.epoch == now {
                    c.push(value, now)
                } else {
                    Err(value)
                }
            })
        };
        if kept.is_ok() {
            Counts::bump(&slot.counts.cache_in, 1);
        }
        kept
    }

    /// Every return that [`give_back`](Self::give_back) does not finish.
    #[cold]
    #[inline(never)]
    pub(crate) fn give_back_slow(&self, mut value: Obj<T>, home: Home<T>, why: Slow) {
        match why {
            Slow::Panicking if self.discard_on_panic => self.discard_panicked(value),
            Slow::Panicking => match self.prepare(&mut value) {
                Verdict::Keep => {
                    if let Err(v) = self.push_home(value, home) {
                        self.store_slow(v, home);
                    }
                }
                verdict => self.not_kept(value, verdict),
            },
            Slow::NotKept(verdict) => self.not_kept(value, verdict),
            Slow::Store => self.store_slow(value, home),
        }
    }

    /// Stores a reset, accepted object that this thread's cache could not
    /// take with a push: its home is another thread's slot (or it has none,
    /// or this thread has not used a pool yet), or the cache is full, or it
    /// needs registering or trimming.
    fn store_slow(&self, value: Obj<T>, home: Home<T>) {
        if let Some(slot) = home.held() {
            return self.put_slow(value, slot, self.epoch.load(Relaxed));
        }
        self.store_elsewhere(value);
    }

    /// A return on a thread other than the object's home (or with no
    /// home, or on a thread that has not used a pool yet).
    fn store_elsewhere(&self, value: Obj<T>) {
        if self.cache_cap > 0 {
            if let Some(index) = current_index() {
                let slot = self.slots.get(index);
                let now = self.epoch.load(Relaxed);
                // SAFETY: the slot of the calling thread's own index.
                if let Err(v) = unsafe { Self::push_own(slot, value, now) } {
                    self.put_slow(v, slot, now);
                }
                return;
            }
        }
        self.put_shared(value, &self.counts);
    }

    /// This thread's cache is full, or needs registering or trimming.
    fn put_slow(&self, value: Obj<T>, slot: &Slot<T>, now: u64) {
        let value = if self.slow_local(slot, now).is_some() {
            // SAFETY: as in `push_home`.
            match unsafe { slot.with_cache(|c| c.push(value, now)) } {
                Ok(()) => return Counts::bump(&slot.counts.cache_in, 1),
                Err(v) => v,
            }
        } else {
            value
        };
        match self.shared.push((value, now)) {
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
        let stamp = self.epoch.load(Relaxed);
        match self.shared.push((value, stamp)) {
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
        self.counts.dropped_panicked.fetch_add(1, Relaxed);
        drop_quietly(value);
    }

    #[cold]
    #[inline(never)]
    fn reset_panicked(&self, value: Obj<T>) {
        crate::log::error!("cenote: an object pool's reset panicked; the object is dropped");
        self.counts.dropped_panicked.fetch_add(1, Relaxed);
        drop_quietly(value);
    }

    #[cold]
    #[inline(never)]
    fn accept_panicked(&self, value: Obj<T>) {
        crate::log::error!("cenote: an object pool's accept panicked; the object is dropped");
        self.counts.dropped_panicked.fetch_add(1, Relaxed);
        drop_quietly(value);
    }

    /// An object that reset or accept turned down.
    fn not_kept(&self, value: Obj<T>, verdict: Verdict) {
        match verdict {
            Verdict::Refused => self.refused(value),
            Verdict::ResetPanicked => self.reset_panicked(value),
            Verdict::AcceptPanicked => self.accept_panicked(value),
            Verdict::Keep => unreachable!("a kept object is stored"),
        }
    }

    fn refused(&self, value: Obj<T>) {
        self.counts.dropped_refused.fetch_add(1, Relaxed);
        drop_quietly(value);
    }
}

/// The return path on a thread that is not panicking, for the hooks `H`
/// (see [`Hooks::give_back`]): the reset and accept inline, the push onto
/// the home slot, and every other case through the one call to
/// [`Inner::give_back_slow`]. Out of line, and with its parameters in the
/// order `Hooks::give_back` receives them, so that the latter reaches it
/// with a plain jump.
#[inline(never)]
pub(crate) fn give_back_kept<T: 'static, H: Hooks<T> + ?Sized>(
    hooks: &H,
    inner: &Inner<T>,
    mut value: Obj<T>,
    home: Home<T>,
) {
    let why = match hooks.prepare(&mut value) {
        Verdict::Keep => match inner.push_home(value, home) {
            Ok(()) => return,
            Err(v) => {
                value = v;
                Slow::Store
            }
        },
        verdict => Slow::NotKept(verdict),
    };
    inner.give_back_slow(value, home, why);
}

/// Why a return left the hot path.
#[derive(Clone, Copy)]
pub(crate) enum Slow {
    /// The thread is panicking.
    Panicking,
    /// Reset or accept turned the object down.
    NotKept(Verdict),
    /// Reset and accepted, but this thread's cache could not take it with a
    /// push.
    Store,
}

/// The slot a guard's object came from, or none: a return on the thread
/// that holds that slot's index pushes onto it directly.
///
/// "None" points at [`NO_HOME`] instead of being null, so that the hot path
/// reads an index through either kind of home without a null check: a
/// slot's index is its first field (`Slot` is `repr(C)`), and `NO_HOME` is
/// an index no thread holds. The pointer is only ever read as a `usize`
/// unless that index is the calling thread's, which proves it a slot.
pub(crate) struct Home<T> {
    slot: *const Slot<T>,
}

/// The index read through [`Home::none`]: `usize::MAX - 2`, which no thread
/// holds (the registry hands out indices from 0, densely, to live threads)
/// and which is neither of the cached index's markers for a thread with no
/// index (`usize::MAX`, `usize::MAX - 1`).
static NO_HOME: usize = usize::MAX - 2;

impl<T> Clone for Home<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Home<T> {}

impl<T> Home<T> {
    /// No slot: the return finds the calling thread's own.
    fn none() -> Home<T> {
        Home {
            slot: std::ptr::addr_of!(NO_HOME).cast(),
        }
    }

    /// The home slot, if it is the calling thread's.
    ///
    /// The caller passes a home that a take from this pool's table made (or
    /// [`Home::none`]), and holds the pool (it does: through the guard that
    /// carried the home), so the slot is alive.
    #[inline(always)]
    fn held<'a>(self) -> Option<&'a Slot<T>> {
        // SAFETY: `slot` points at `NO_HOME` or at a slot of the table of the
        // pool that the caller holds (see above), which frees its slots only
        // when the pool is dropped; a slot's first field is its index (a
        // `usize` that never changes), so either way this reads an
        // initialised, aligned `usize` that nobody writes.
        let index = unsafe { self.slot.cast::<usize>().read() };
        if index != raw_index() {
            return None;
        }
        // SAFETY: the index is the calling thread's, which `NO_HOME` never
        // is: `slot` is a live slot (see above).
        Some(unsafe { &*self.slot })
    }
}

/// Takes the cache's objects that sat unused for a whole trim period (came
/// back before the previous trim), and records the epoch. They are a prefix
/// of the stack: epochs never decrease from bottom to top.
fn take_stale<T>(c: &mut super::local::Cache<T>, slot: &Slot<T>, now: u64) -> Option<Vec<Obj<T>>> {
    c.epoch = now;
    let k = c
        .entries()
        .iter()
        .position(|&(_, stamp)| stamp + 1 >= now)
        .unwrap_or(c.len());
    if k == 0 {
        return None;
    }
    let stale = c.take_oldest(k).into_iter().map(|(v, _)| v).collect();
    Counts::bump(&slot.counts.drained, k as u64);
    Some(stale)
}

/// Drops an object; a panic in its `Drop` is reported, not propagated (the
/// pool drops objects on paths, such as a guard dropped during unwinding,
/// where a second panic would abort the process).
fn drop_quietly<T>(value: T) {
    if crate::unwind::panicked(move || drop(value)) {
        crate::log::error!("cenote: dropping a pooled object panicked");
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
                Counts::bump(&slot.counts.drained, c.len() as u64);
                if exiting {
                    c.release()
                } else {
                    // Keep the storage for the thread's next use.
                    c.take_oldest(c.len())
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
    inner: &'a Inner<T>,
    home: Home<T>,
    value: ManuallyDrop<Obj<T>>,
}

// SAFETY: the guard is a `&Pool<T>` and a `T` (the auto traits would say
// so but for `Home`'s raw pointer: a slot of the pool's table or the
// `NO_HOME` static, through which any thread reads only an immutable index,
// and only the thread owning that slot touches its cache): it may go where
// both may.
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
        self.inner.give_back(value, self.home);
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
// but for `Home`'s raw pointer: a slot of the pool's table or the `NO_HOME`
// static, through which any thread reads only an immutable index, and only
// the thread owning that slot touches its cache; the pool handle keeps the
// slot alive).
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
        self.pool.inner.give_back(value, self.home);
    }
}

impl<T: fmt::Debug + 'static> fmt::Debug for OwnedPooled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.value, f)
    }
}
