//! A spawned future's cell (the one allocation a spawn makes) and the
//! handle to its result.
//!
//! A cell holds the future, its result slot and a state word
//! ([`CellState`], in `protocol.rs`, where the rules are written down and
//! from where loom checks them). Its lane's driver is the only code that
//! polls the future, and exactly one party (the winner of `claim_done`)
//! drops it, so the future sits in an `UnsafeCell` without a lock.

use std::cell::UnsafeCell;
use std::future::Future;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::{addr_of_mut, NonNull};
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::atomic::{fence, AtomicU32, AtomicUsize};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::unwind;

use futures_util::task::{waker_ref, ArcWake};
use parking_lot::lock_api::RawMutex as _;
use parking_lot::RawMutex;

use super::errors::JoinError;
use super::lane::{Job, Lane, Registry};
use super::pool::Inner;
use super::protocol::{Begin, CellState, Woken};
use super::recycle::Recyclable;
use super::runq::Link;

/// Not yet in its lane's registry.
pub(crate) const UNREGISTERED: u32 = u32::MAX;

/// A cell as its lane sees it.
///
/// # Safety
/// Implemented by [`Cell`] alone, which is `#[repr(C)]` and starts with a
/// [`Header`]: a lane's run queue takes a `Job` by its address (the link)
/// and makes it a `Job` again with the header's `job` function
/// ([`into_link`], [`from_link`]).
pub(crate) unsafe trait Runnable: Send + Sync + 'static {
    /// Polls the future once, or only files it (see `Begin::File`); true
    /// when it polled. Driver only.
    fn run(self: Arc<Self>, registry: &mut Registry) -> bool;
    /// Drops the future unfinished (if it is not gone already) and
    /// completes the handle with `outcome`. Driver only, or after the
    /// driver is gone.
    fn cancel(&self, outcome: Outcome);
    /// After an eager first poll returned `Pending` (the cell is still
    /// RUNNING, so no wake could queue it yet): queued on its lane, to be
    /// polled if a wake came meanwhile, otherwise only to be filed in the
    /// registry (`CellState::end_eager`).
    ///
    /// # Safety
    /// The caller holds another reference to the cell (its `JoinHandle`)
    /// across the call.
    unsafe fn settle_eager(self: Arc<Self>, lane: &Lane);
}

/// The start of every cell: its link in a lane's run queue, and how to make
/// a [`Job`] of the cell again when the queue hands the link back.
#[repr(C)]
pub(crate) struct Header {
    link: Link,
    job: unsafe fn(NonNull<Link>) -> Job,
}

/// # Safety
/// `link` is the link (so the address) of a `Cell<F>`, and the caller owns
/// a strong reference to it that `Arc::into_raw` gave.
unsafe fn job_of<F>(link: NonNull<Link>) -> Job
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // SAFETY: per the caller.
    unsafe { Arc::from_raw(link.as_ptr().cast::<Cell<F>>().cast_const()) }
}

/// Hands `job`'s reference over as its cell's queue link.
#[inline]
pub(crate) fn into_link(job: Job) -> NonNull<Link> {
    // The data pointer of a `Job` is its cell's address, which is its
    // link's (`Runnable`'s contract).
    let at = Arc::into_raw(job) as *const Link;
    // SAFETY: `Arc::into_raw` never returns null.
    unsafe { NonNull::new_unchecked(at.cast_mut()) }
}

/// Takes back the reference that [`into_link`] handed over.
///
/// # Safety
/// `link` came from `into_link`, and its reference was not taken back yet.
#[inline]
pub(crate) unsafe fn from_link(link: NonNull<Link>) -> Job {
    // SAFETY: the cell is alive (its reference is ours) and starts with
    // its header (`Runnable`'s contract); `job` is its own type's.
    unsafe {
        let job = (*link.as_ptr().cast::<Header>()).job;
        job(link)
    }
}

/// The handle's view of a cell.
trait JoinSide<T>: Send + Sync {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>>;
    fn is_finished(&self) -> bool;
    fn abort(self: Arc<Self>);
    /// The handle lets go of its reference: the last one, of a finished
    /// cell, recycles it.
    fn release(self: Arc<Self>);
}

/// How a spawned future ended, for the pool's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Panicked,
    Aborted,
    Cancelled,
}

/// The cell's lock, held, giving the handle's waker and the `published`
/// flag. The result itself is in the cell's [`Stage`], written before
/// `published` is set under the lock, and read by the handle only once it
/// sees `published` under the lock. (A byte-sized lock beside the other
/// small fields: `Mutex<{ waker, flag }>` took 32 bytes, this takes 18.)
struct Joiner<'a> {
    lock: &'a RawMutex,
    waker: &'a UnsafeCell<Option<Waker>>,
    published: &'a UnsafeCell<bool>,
}

impl<'a> Joiner<'a> {
    fn lock<F: Future>(cell: &'a Cell<F>) -> Self {
        cell.lock.lock();
        Joiner {
            lock: &cell.lock,
            waker: &cell.waker,
            published: &cell.published,
        }
    }

    fn waker(&mut self) -> &mut Option<Waker> {
        // SAFETY: the lock is held while `self` lives.
        unsafe { &mut *self.waker.get() }
    }

    fn published(&mut self) -> &mut bool {
        // SAFETY: the lock is held while `self` lives.
        unsafe { &mut *self.published.get() }
    }
}

impl Drop for Joiner<'_> {
    fn drop(&mut self) {
        // SAFETY: locked by `Joiner::lock`, unlocked once, here.
        unsafe { self.lock.unlock() }
    }
}

/// The future, then its result: one space for both, as the future is
/// dropped before the result is written. Only the polling party (the
/// driver, or the spawner in an eager first poll) and then the winner of
/// `DONE` touch it, until the result is published; then only the handle.
enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Empty,
}

/// A cell's reference to its pool. A cell that reaches a lane owns a
/// counted reference. During an eager first poll the cell borrows the
/// spawner's (no count: two read-modify-writes saved on a line every spawn
/// shares), and it takes a count only if the future is left waiting. A cell
/// that finished in that poll never uses its pool again: only the winner of
/// `DONE` ends a cell, and wakes of a `DONE` cell do nothing.
///
/// One word: the pool's address, its low bit set when counted (`Inner` is
/// aligned to 8). A recycled cell's word, dangling and uncounted, links it
/// in its free list (`recycle.rs`).
struct PoolRef {
    word: AtomicUsize,
}

/// The low bit of a `PoolRef`: the reference is counted.
const COUNTED: usize = 1;

impl PoolRef {
    fn counted(pool: Arc<Inner>) -> Self {
        PoolRef {
            word: AtomicUsize::new(Arc::into_raw(pool) as usize | COUNTED),
        }
    }

    fn ptr(&self) -> *const Inner {
        (self.word.load(Relaxed) & !COUNTED) as *const Inner
    }

    /// # Safety
    /// Until [`count`](Self::count) runs, the cell uses its pool only while
    /// `pool` is alive (the spawner's call).
    unsafe fn borrowed(pool: &Arc<Inner>) -> Self {
        const { assert!(std::mem::align_of::<Inner>() > COUNTED) };
        PoolRef {
            word: AtomicUsize::new(Arc::as_ptr(pool) as usize),
        }
    }

    /// Takes a count. Called once, by the spawner, while its own reference
    /// keeps the pool alive and before the cell can reach a lane.
    fn count(&self) {
        // SAFETY: the address came from an `Arc<Inner>` that is alive (see
        // above).
        unsafe { Arc::increment_strong_count(self.ptr()) };
        // Only the spawner writes the word now: no read-modify-write needed.
        self.word.store(self.word.load(Relaxed) | COUNTED, Relaxed);
    }

    /// Takes the count away (the pool, if the reference was counted): the
    /// reference is left dangling, never to be used again.
    fn take_count(&mut self) -> Option<Arc<Inner>> {
        let word = self.word.get_mut();
        if *word & COUNTED != 0 {
            *word &= !COUNTED;
            // SAFETY: the count taken by `counted` or `count`, handed over
            // once (the bit is now clear).
            Some(unsafe { Arc::from_raw((*word) as *const Inner) })
        } else {
            None
        }
    }
}

impl std::ops::Deref for PoolRef {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        // SAFETY: counted, the reference keeps the pool alive; borrowed, the
        // cell is in its eager first poll, within the spawner's call (see
        // the type's note on why a finished cell never gets here).
        unsafe { &*self.ptr() }
    }
}

impl Drop for PoolRef {
    fn drop(&mut self) {
        drop(self.take_count());
    }
}

/// 56 bytes besides the future (or its result), as many as
/// `FuturesUnordered`'s task, with nothing else per future (no queue slot
/// or block): peak memory at 10,000 futures in flight is mostly cells.
/// `#[repr(C)]`: the header comes first (see [`Runnable`]).
#[repr(C)]
pub(crate) struct Cell<F: Future> {
    header: Header,
    state: CellState,
    pool: PoolRef,
    /// Where the driver keeps the cell while it waits.
    index: AtomicU32,
    lane: u16,
    /// Guards `waker` and `published` (see [`Joiner`]).
    lock: RawMutex,
    published: UnsafeCell<bool>,
    /// The handle waiting for the result.
    waker: UnsafeCell<Option<Waker>>,
    stage: UnsafeCell<Stage<F>>,
}

// SAFETY: `stage` is only touched by the lane's driver (one tokio task, so
// one thread at a time, with the runtime ordering its polls), or, after the
// driver is gone, by whoever wins the `DONE` bit, and once a result is
// published (under the mutex), by the handle; everything else is atomics or
// behind the mutex. So sharing the cell shares `F` only by
// moving it between threads, which `F: Send` allows; the output crosses to
// the handle's thread, which `F::Output: Send` allows.
unsafe impl<F: Future + Send> Sync for Cell<F> where F::Output: Send {}
// SAFETY: as above.
unsafe impl<F: Future + Send> Send for Cell<F> where F::Output: Send {}

/// Makes the cell of a spawned future and the handle to its result.
pub(crate) fn cell<F>(
    fut: &mut Owned<F>,
    pool: Arc<Inner>,
    lane: usize,
) -> (Arc<Cell<F>>, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let cell = Cell::new_arc(
        fut,
        PoolRef::counted(pool),
        lane,
        CellState::new_scheduled(),
    );
    let handle = JoinHandle::of_cell(cell.clone());
    (cell, handle)
}

/// A future on its way from `spawn` into its cell. Spawning passes it down
/// by reference and the cell takes it with one copy: passed by value
/// through four calls, a future of a few hundred bytes was copied at each,
/// a fifth of an eager spawn. Dropped with its holder unless taken (a
/// cancelled or refused spawn drops its future).
pub(crate) struct Owned<F: Future> {
    /// `Running` until taken: shaped as the cell's space for it, so that
    /// the cell takes it with one plain copy.
    fut: ManuallyDrop<Stage<F>>,
    taken: bool,
}

impl<F: Future> Owned<F> {
    #[inline]
    pub(crate) fn new(fut: F) -> Self {
        Owned {
            fut: ManuallyDrop::new(Stage::Running(fut)),
            taken: false,
        }
    }

    /// Moves the future (as `Stage::Running`) to `dst`; called once.
    ///
    /// # Safety
    /// `dst` is valid for a write of a `Stage<F>` and does not overlap
    /// `self`. (Said to the compiler with `copy_nonoverlapping`: a plain
    /// write to a pointer it cannot prove apart, such as a recycled cell's,
    /// became a `memmove` call, 10 ns per spawn, instead of inline moves.)
    #[inline]
    unsafe fn move_to(&mut self, dst: *mut Stage<F>) {
        assert!(!self.taken, "a spawned future is taken once");
        self.taken = true;
        // SAFETY: not taken before (checked above), and `taken` keeps
        // `Drop` from dropping it again; `dst` per the caller.
        unsafe { std::ptr::copy_nonoverlapping(&*self.fut as *const Stage<F>, dst, 1) }
    }
}

impl<F: Future> Drop for Owned<F> {
    fn drop(&mut self) {
        if !self.taken {
            // SAFETY: still ours, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.fut) }
        }
    }
}

/// What a spawner's eager first poll of a future came to.
pub(crate) enum FirstPoll<T> {
    /// The future finished (or panicked) and is dropped; its slot is still
    /// held, for the caller to give back.
    Finished(Result<T, JoinError>, Outcome),
    /// The future waits. Its cell is still RUNNING: the caller counts it
    /// live, then calls [`Runnable::settle_eager`].
    Pending(Job, JoinHandle<T>),
}

/// Makes the cell of a spawned future and polls it once, here (see
/// `Builder::eager_start`). The caller holds a slot for it and runs in a
/// task of the pool's runtime.
#[inline]
pub(crate) fn first_poll<F>(
    fut: &mut Owned<F>,
    pool: &Arc<Inner>,
    lane: usize,
) -> FirstPoll<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // SAFETY: the cell uses its pool uncounted only during this call, in
    // which `pool` is alive; it counts it before it can outlive the call.
    let pool_ref = unsafe { PoolRef::borrowed(pool) };
    let cell = Cell::new_arc(fut, pool_ref, lane, CellState::new_running());
    let polled = {
        let waker = waker_ref(&cell);
        let mut cx = Context::from_waker(&waker);
        // SAFETY: the cell is RUNNING and no lane has it, so this is the
        // only poll.
        let fut = unsafe { cell.running() }.expect("a new cell holds its future");
        catch_unwind(AssertUnwindSafe(|| fut.poll(&mut cx)))
    };
    let (result, outcome) = match polled {
        Ok(Poll::Pending) => {
            cell.pool.count();
            let handle = JoinHandle::of_cell(cell.clone());
            return FirstPoll::Pending(cell, handle);
        }
        Ok(Poll::Ready(value)) => (Ok(value), Outcome::Completed),
        Err(payload) => {
            cell.pool.report_panic(payload.as_ref());
            (Err(JoinError::Panicked(payload)), Outcome::Panicked)
        }
    };
    if Arc::strong_count(&cell) == 1 {
        // The future kept no waker: nobody else can reach the cell (it has
        // no `Weak`s), and this fence orders every earlier use of a clone
        // (since dropped) before what follows. No read-modify-write needed.
        fence(Acquire);
        cell.state.mark_done_unshared();
        cell.drop_future();
        // Its allocation serves this thread's next spawn of the type.
        spare::keep(cell);
    } else {
        // Wakers the future kept find DONE and do nothing.
        let first = cell.state.claim_done();
        debug_assert!(first, "nobody else could end a cell still RUNNING");
        cell.drop_future();
    }
    FirstPoll::Finished(result, outcome)
}

/// One finished cell per thread, kept for the thread's next eager spawn of
/// the same future type: a future that finishes in its first poll then
/// costs no `malloc` and `free` (about 8% of such a spawn) and finds its
/// cell in cache. Only a cell nobody else references, whose future is gone
/// and whose pool reference was never counted, is kept; it belongs to no
/// pool, and the thread frees it when it exits.
mod spare {
    use super::*;
    use std::any::TypeId;

    struct Spare {
        ty: TypeId,
        cell: NonNull<()>,
        destroy: unsafe fn(NonNull<()>),
    }

    struct Slot(std::cell::Cell<Option<Spare>>);

    impl Drop for Slot {
        fn drop(&mut self) {
            if let Some(s) = self.0.take() {
                // SAFETY: the slot owned it; its type's own `destroy`.
                unsafe { (s.destroy)(s.cell) }
            }
        }
    }

    thread_local! {
        static SPARE: Slot = const { Slot(std::cell::Cell::new(None)) };
    }

    /// # Safety
    /// `cell` came from `Arc::<Cell<F>>::into_raw` and is owned.
    unsafe fn destroy<F>(cell: NonNull<()>)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // SAFETY: per the caller.
        unsafe { <Cell<F> as Recyclable>::destroy(cell.cast()) }
    }

    /// Keeps `cell` (unshared, DONE, future dropped, pool uncounted) if
    /// the thread's slot is free; otherwise it is freed.
    #[inline]
    pub(super) fn keep<F>(cell: Arc<Cell<F>>)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        debug_assert!(Arc::strong_count(&cell) == 1);
        let cell = Arc::into_raw(cell);
        let spare = Spare {
            ty: TypeId::of::<F>(),
            // SAFETY: `Arc::into_raw` never returns null.
            cell: unsafe { NonNull::new_unchecked(cell.cast_mut().cast()) },
            destroy: destroy::<F>,
        };
        let refused = SPARE
            .try_with(|slot| match slot.0.take() {
                None => {
                    slot.0.set(Some(spare));
                    None
                }
                Some(other) => {
                    slot.0.set(Some(other));
                    Some(cell)
                }
            })
            .unwrap_or(Some(cell));
        if let Some(cell) = refused {
            // SAFETY: from `Arc::into_raw` above, not kept.
            drop(unsafe { Arc::from_raw(cell) });
        }
    }

    /// The thread's spare cell, if it is of type `Cell<F>`: owned, its old
    /// fields holding nothing to drop.
    #[inline]
    pub(super) fn take<F>() -> Option<NonNull<Cell<F>>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        SPARE
            .try_with(|slot| match slot.0.take() {
                Some(s) if s.ty == TypeId::of::<F>() => Some(s.cell.cast()),
                other => {
                    slot.0.set(other);
                    None
                }
            })
            .ok()
            .flatten()
    }
}

impl<F: Future> Cell<F> {
    /// A recycled cell (this thread's spare, or one from the pool), or a
    /// fresh allocation.
    #[inline]
    fn allocate(pool: &PoolRef) -> *mut Self
    where
        F: Send + 'static,
        F::Output: Send + 'static,
    {
        if let Some(cell) = spare::take::<F>() {
            return cell.as_ptr();
        }
        match pool.recycler.take::<Self>() {
            Some(cell) => cell.as_ptr(),
            None => Arc::into_raw(Arc::new(MaybeUninit::<Self>::uninit()))
                .cast::<Self>()
                .cast_mut(),
        }
    }

    /// Builds the cell in its allocation, field by field. `Arc::new(Cell {
    /// .. })` built it on the stack and copied it over, and with the future
    /// inside (a few hundred bytes is common) those copies were a fifth of
    /// an eager spawn.
    ///
    /// A cell of the same future type that finished and came back to the
    /// pool (`recycle.rs`) is reused; its old fields hold nothing to drop
    /// (see `Cell::let_go`), so they are overwritten as if fresh.
    #[inline]
    fn new_arc(fut: &mut Owned<F>, pool: PoolRef, lane: usize, state: CellState) -> Arc<Self>
    where
        F: Send + 'static,
        F::Output: Send + 'static,
    {
        let lane = u16::try_from(lane).expect("at most MAX_LANES lanes");
        let cell = Self::allocate(&pool);
        // SAFETY: `cell` is the only reference to an allocation laid out
        // for `Self`, either fresh (`MaybeUninit<Self>` has `Self`'s
        // layout) or a recycled `Arc<Self>` with no other reference; its
        // pointer came from `Arc::into_raw` and keeps the allocation's
        // write permission. Every field is written once (a recycled cell's
        // old values own nothing, so not dropping them leaks nothing)
        // before `from_raw` makes it an `Arc<Self>`, which `Arc::from_raw`
        // allows for a pointer from `Arc::<U>::into_raw` with `U` of the
        // same size and alignment.
        unsafe {
            addr_of_mut!((*cell).header).write(Header {
                link: Link::new(),
                job: job_of::<F>,
            });
            addr_of_mut!((*cell).state).write(state);
            addr_of_mut!((*cell).pool).write(pool);
            addr_of_mut!((*cell).index).write(AtomicU32::new(UNREGISTERED));
            addr_of_mut!((*cell).lane).write(lane);
            addr_of_mut!((*cell).lock).write(RawMutex::INIT);
            addr_of_mut!((*cell).published).write(UnsafeCell::new(false));
            addr_of_mut!((*cell).waker).write(UnsafeCell::new(None));
            fut.move_to(UnsafeCell::raw_get(addr_of_mut!((*cell).stage)));
            Arc::from_raw(cell)
        }
    }

    /// The future, pinned, if the cell still holds it.
    ///
    /// # Safety
    /// The caller is the one party that may poll the cell now (the driver,
    /// or the spawner in its eager first poll). The future never moves: it
    /// lives in the `Arc` until it is dropped in place.
    #[inline]
    #[allow(clippy::mut_from_ref)] // exclusive by the contract above
    unsafe fn running(&self) -> Option<Pin<&mut F>> {
        // SAFETY: per the caller, nobody else touches the stage.
        match unsafe { &mut *self.stage.get() } {
            // SAFETY: see above: pinned in place.
            Stage::Running(fut) => Some(unsafe { Pin::new_unchecked(fut) }),
            _ => None,
        }
    }

    /// The cell's lane, as an index.
    #[inline]
    fn lane(&self) -> usize {
        self.lane as usize
    }

    /// Drops the future in place, catching (and reporting) a panicking
    /// drop. The caller won `DONE`.
    #[inline]
    fn drop_future(&self) {
        // SAFETY: the caller won `DONE`, so nobody else touches the stage
        // until a result is published, and whoever polled it before is
        // done with it.
        let stage = unsafe { &mut *self.stage.get() };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| *stage = Stage::Empty)) {
            self.pool.report_panic(payload.as_ref());
            unwind::drop_payload(payload);
        }
    }
}

impl<F> Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Ends the cell: drops the future (a panicking drop is caught and
    /// reported), gives the slot back, publishes the result, counts. The
    /// caller has won the `DONE` bit.
    ///
    /// `owner`: the driver's reference, and whether the registry holds
    /// another. If, once the future is dropped, no other reference is left
    /// (no handle, no waker), nobody can ever see the result: it is dropped
    /// and the slot's release waits for the end of the driver's poll,
    /// batched with the others (`Inner::finished`). Otherwise the slot is
    /// given back before the result is published, so a handle that yields
    /// always finds its slot free. `None` (cancel paths): the latter.
    fn finish(
        &self,
        outcome: Outcome,
        result: Option<Result<F::Output, JoinError>>,
        owner: Option<(&Arc<Self>, bool)>,
    ) {
        self.drop_future();
        let watched = match owner {
            Some((me, registered)) => Arc::strong_count(me) - usize::from(registered) > 1,
            None => true,
        };
        if !watched {
            // The output's drop is user code: a panic in it is caught and
            // reported, and the slot still comes back (unwinding here
            // would kill the lane's driver).
            if let Some(payload) = unwind::drop_caught(result) {
                self.pool.report_panic(payload.as_ref());
                unwind::drop_payload(payload);
            }
            self.pool.finished(self.lane(), outcome, true);
            return;
        }
        self.pool.finished(self.lane(), outcome, false);
        let result = result.unwrap_or(Err(match outcome {
            Outcome::Cancelled => JoinError::Cancelled,
            _ => JoinError::Aborted,
        }));
        // SAFETY: we won `DONE` and the future is gone, and the handle
        // reads the stage only once `published` (set below, under the
        // lock, which orders this write before its read).
        unsafe { *self.stage.get() = Stage::Finished(result) };
        let mut joiner = Joiner::lock(self);
        *joiner.published() = true;
        let waker = joiner.waker().take();
        drop(joiner);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Queues the cell on its lane. Takes `&Arc` (and pushes a clone) so
    /// that the caller's reference keeps the pool, and so the lane, alive
    /// while the push runs.
    fn schedule(this: &Arc<Self>) {
        this.pool.lane(this.lane()).push(this.clone());
    }

    /// Files the cell in its lane's registry, unless it is there already.
    /// Only its driver files or finishes a cell while its lane lives, so
    /// neither can change between the read and the insert.
    fn file(this: &Arc<Self>, registry: &mut Registry) {
        if this.index.load(Relaxed) == UNREGISTERED {
            this.index.store(registry.insert(this.clone()), Relaxed);
        }
    }

    /// One poll of the future, by its lane's driver; true when it polled
    /// (not for a cell queued only to be filed, or gone).
    fn poll_in_lane(this: &Arc<Self>, registry: &mut Registry) -> bool {
        match this.state.begin_run() {
            Begin::Poll => {}
            Begin::Done => return false,
            Begin::Abort => {
                if this.state.claim_done() {
                    let registered = this.index.load(Relaxed) != UNREGISTERED;
                    this.finish(Outcome::Aborted, None, Some((this, registered)));
                }
                registry.remove(this.index.load(Relaxed));
                return false;
            }
            Begin::File => {
                // Left waiting by an eager first poll: filed now, and
                // queued again if a wake came while it was being filed.
                Self::file(this, registry);
                if this.state.end_pending() {
                    Self::schedule(this);
                }
                return false;
            }
        }
        let waker = waker_ref(this);
        let mut cx = Context::from_waker(&waker);
        // SAFETY: only the driver polls, one poll at a time (the cell is
        // RUNNING).
        let polled = match unsafe { this.running() } {
            Some(fut) => catch_unwind(AssertUnwindSafe(|| fut.poll(&mut cx))),
            None => return false,
        };
        let (outcome, result) = match polled {
            Ok(Poll::Pending) => {
                // A future that finishes in its first poll is never
                // registered; one that waits is, so that an abort-all or a
                // runtime shutdown can reach it.
                Self::file(this, registry);
                // RUNNING -> idle, or, when woken meanwhile, back in line.
                if this.state.end_pending() {
                    Self::schedule(this);
                }
                return true;
            }
            Ok(Poll::Ready(value)) => (Outcome::Completed, Ok(value)),
            Err(payload) => {
                this.pool.report_panic(payload.as_ref());
                (Outcome::Panicked, Err(JoinError::Panicked(payload)))
            }
        };
        if this.state.claim_done() {
            let registered = this.index.load(Relaxed) != UNREGISTERED;
            this.finish(outcome, Some(result), Some((this, registered)));
        }
        registry.remove(this.index.load(Relaxed));
        true
    }

    /// Lets go of a reference to the cell: the last one to a finished
    /// cell gives the allocation back to its pool for the next spawn of
    /// the same future type (see `recycle.rs`); any other is just dropped.
    fn let_go(this: Arc<Self>) {
        // Relaxed: 1 means nobody else holds a reference (there are no
        // `Weak`s), so nobody can make one; the fence below orders the
        // others' uses before their drops (Release) before ours.
        if Arc::strong_count(&this) != 1 || !this.state.is_done() {
            return;
        }
        fence(Acquire);
        let cell = Arc::into_raw(this).cast_mut();
        // SAFETY: the only reference (above), so `&mut` is ours alone, as
        // `Arc::get_mut` would give it; the pointer keeps the allocation's
        // write permission.
        let me = unsafe { &mut *cell };
        // A result nobody took, a handle's stale waker: dropped below,
        // after the cell is safe in its list (a panicking drop loses
        // nothing then).
        let leftover = (
            std::mem::replace(me.stage.get_mut(), Stage::Empty),
            me.waker.get_mut().take(),
        );
        debug_assert!(
            !matches!(leftover.0, Stage::Running(_)),
            "a DONE cell's future is dropped"
        );
        let pool = me.pool.take_count();
        match &pool {
            Some(pool) => {
                let limit = pool.sem_permits();
                // SAFETY: ours alone, finished, future and result gone.
                let kept = unsafe { pool.recycler.put(NonNull::from(me), limit) };
                if let Err(cell) = kept {
                    // SAFETY: from `Arc::into_raw` above, not kept.
                    unsafe { Self::destroy(cell) };
                }
            }
            // An uncounted reference: the pool is not ours to reach.
            // SAFETY: from `Arc::into_raw` above.
            None => unsafe { Self::destroy(NonNull::from(me)) },
        }
        // The result's drop is user code, and this may run in a lane's
        // driver: a panic is caught and reported, never unwound into it.
        if let Some(payload) = unwind::drop_caught(leftover) {
            match &pool {
                Some(pool) => pool.report_panic(payload.as_ref()),
                None => {
                    tracing::error!("cenote::tasks: a future's output panicked while being dropped")
                }
            }
            unwind::drop_payload(payload);
        }
    }
}

// SAFETY: the link is the pool word, which a cell in a free list no longer
// uses (`let_go` took its count first; `new_arc` writes a new one), and
// which nobody else can reach (the list holds the only reference). A cell
// freed from the list drops its word as an uncounted reference, since a
// link (a cell's address, or 0) never has the low bit set. `destroy` frees
// what `Arc::into_raw` gave.
unsafe impl<F> Recyclable for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn link(&self) -> &AtomicUsize {
        &self.pool.word
    }

    unsafe fn destroy(cell: NonNull<Self>) {
        // SAFETY: per the caller, it came from `Arc::into_raw` and is owned.
        drop(unsafe { Arc::from_raw(cell.as_ptr()) });
    }
}

// SAFETY: `Cell` is `#[repr(C)]` with its `Header` first, and writes the
// header's `job` as `job_of::<F>`, its own type's.
unsafe impl<F> Runnable for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn run(self: Arc<Self>, registry: &mut Registry) -> bool {
        let polled = Self::poll_in_lane(&self, registry);
        Self::let_go(self);
        polled
    }

    fn cancel(&self, outcome: Outcome) {
        if self.state.claim_done() {
            self.finish(outcome, None, None);
        }
    }

    unsafe fn settle_eager(self: Arc<Self>, lane: &Lane) {
        if self.state.end_eager() {
            lane.push(self);
            return;
        }
        let state: *const CellState = &self.state;
        lane.push_file(self);
        // A wake between `end_eager` and the push saw the cell queued (so
        // pushed nothing) and notified the lane, possibly before the push
        // was linked: the lane may have looked, found nothing, and parked,
        // and `push_file` does not wake it. So look: if the cell is now to
        // be polled and the driver has not taken it, notify again. (The
        // other order, this load before that wake's write, puts the wake's
        // notify after our push's signal, so the lane sees the push: the
        // two read-modify-write the lane's signal word, so one reads the
        // other.)
        // SAFETY: the caller's handle keeps the cell alive (and out of the
        // recycler, which takes only unshared cells).
        if unsafe { (*state).woken_while_filing() } {
            lane.poke();
        }
    }
}

impl<F> ArcWake for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn wake_by_ref(arc_self: &Arc<Self>) {
        match arc_self.state.mark_woken() {
            Woken::Push => Self::schedule(arc_self),
            Woken::Notify => arc_self.pool.lane(arc_self.lane()).poke(),
            Woken::Nothing => {}
        }
    }
}

impl<F: Future> Drop for Cell<F> {
    fn drop(&mut self) {
        // Every live cell is held by its lane's queue or registry until it
        // is done, so this is a backstop: a cell dropped unfinished still
        // gives its slot back and counts as cancelled. (`&mut self`: a plain
        // load does.)
        if !self.state.is_done() {
            let stage = self.stage.get_mut();
            if unwind::panicked(|| *stage = Stage::Empty) {
                tracing::error!("cenote::tasks: a future panicked while being dropped");
            }
            // Dropped: no handle is left to see a result.
            self.pool.finished(self.lane(), Outcome::Cancelled, false);
        }
    }
}

impl<F> JoinSide<F::Output> for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        let mut joiner = Joiner::lock(self);
        if *joiner.published() {
            drop(joiner);
            // SAFETY: published: the finisher is done with the stage (its
            // write is ordered before by the lock), and only the handle
            // reads it now, once (`JoinHandle` polls no more after Ready).
            let stage = unsafe { &mut *self.stage.get() };
            return match std::mem::replace(stage, Stage::Empty) {
                Stage::Finished(result) => Poll::Ready(result),
                _ => unreachable!("a published cell holds its result until taken"),
            };
        }
        let waker = joiner.waker();
        match waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn is_finished(&self) -> bool {
        self.state.is_done()
    }

    fn abort(self: Arc<Self>) {
        if self.state.request_abort() {
            // Have the driver look at it (now, or after its current poll).
            ArcWake::wake(self);
        }
    }

    fn release(self: Arc<Self>) {
        Self::let_go(self);
    }
}

/// An awaitable handle to a future spawned on a
/// [`Pool`](super::Pool).
///
/// `.await` gives the future's output, or a [`JoinError`] when it panicked
/// (the payload is carried, not lost), was aborted, or was cancelled by the
/// runtime shutting down. Dropping the handle detaches the future: it keeps
/// running. Awaiting a handle again after it yielded is a logic error and
/// panics, as for tokio's handles.
#[must_use = "dropping a JoinHandle detaches the future; `.await` it for the result"]
pub struct JoinHandle<T> {
    repr: Repr<T>,
}

enum Repr<T> {
    /// The future runs (or ran) in a lane: its result comes through the
    /// cell.
    Cell {
        /// Given up in `Drop` (to `JoinSide::release`).
        cell: ManuallyDrop<Arc<dyn JoinSide<T>>>,
        taken: bool,
    },
    /// The future finished in its eager first poll: here is its result
    /// (`None` once yielded).
    Ready(Option<Result<T, JoinError>>),
}

// The result is only ever moved in and out through `&mut self` (`poll`), so
// pinning the handle never pins it.
impl<T> Unpin for JoinHandle<T> {}

// SAFETY: through `&JoinHandle` nothing reaches a stored result (only
// `is_finished`, `abort` and `Debug`, which read the repr's tag or the
// shared cell, itself `Sync`), so sharing the handle never shares a `T` or
// a panic payload.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    fn of_cell(cell: Arc<dyn JoinSide<T>>) -> Self {
        JoinHandle {
            repr: Repr::Cell {
                cell: ManuallyDrop::new(cell),
                taken: false,
            },
        }
    }

    /// The handle of a future that finished in its eager first poll.
    pub(crate) fn ready(result: Result<T, JoinError>) -> Self {
        JoinHandle {
            repr: Repr::Ready(Some(result)),
        }
    }

    /// Whether the future has finished (with a value, a panic, aborted or
    /// cancelled).
    pub fn is_finished(&self) -> bool {
        match &self.repr {
            Repr::Cell { cell, .. } => cell.is_finished(),
            Repr::Ready(_) => true,
        }
    }

    /// Asks for the future to be dropped: it is not polled again, its slot
    /// in the pool comes free, and the handle yields [`JoinError::Aborted`]
    /// (unless it finished first: then it yields its result). A future
    /// waiting on a `spawn_blocking` closure stops waiting, but the closure,
    /// once started, runs to its end on its thread.
    pub fn abort(&self) {
        if let Repr::Cell { cell, .. } = &self.repr {
            Arc::clone(cell).abort();
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        match &mut self.repr {
            Repr::Cell { cell, .. } => {
                // SAFETY: taken once, here, and the handle is gone after.
                unsafe { ManuallyDrop::take(cell) }.release();
            }
            // An output nobody took is dropped here, as the lane drops a
            // detached one: a panic in its drop is caught (and logged: this
            // handle does not know its pool's panic handler), so dropping a
            // handle never unwinds, however the future finished.
            Repr::Ready(result) => {
                let result = result.take();
                if unwind::panicked(|| drop(result)) {
                    tracing::error!(
                        "cenote::tasks: a future's output panicked while being dropped with its handle"
                    );
                }
            }
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        const AGAIN: &str = "JoinHandle polled after it yielded its result";
        match &mut self.repr {
            Repr::Cell { cell, taken } => {
                assert!(!*taken, "{AGAIN}");
                let polled = cell.poll_join(cx);
                *taken = polled.is_ready();
                polled
            }
            Repr::Ready(result) => Poll::Ready(result.take().expect(AGAIN)),
        }
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn trivial(n: u64) -> u64 {
        n + 1
    }

    /// Whether this thread's spare cell is a `Cell<F>` (freed if so).
    fn spare_is<F>(_: &F) -> bool
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match spare::take::<F>() {
            Some(cell) => {
                // SAFETY: taken, so owned.
                unsafe { <Cell<F> as Recyclable>::destroy(cell) };
                true
            }
            None => false,
        }
    }

    #[test]
    fn an_eagerly_finished_cell_serves_the_threads_next_spawn() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = crate::tasks::Pool::builder()
                .capacity(4)
                .eager_limit(std::time::Duration::MAX)
                .build()
                .unwrap();
            let probe = trivial(0);
            assert!(!spare_is(&probe), "nothing kept yet");
            // From a task of the runtime, so the first poll is eager.
            let pool2 = pool.clone();
            tokio::spawn(async move {
                for n in 0..3 {
                    let h = pool2.spawn(trivial(n)).await.unwrap();
                    assert!(h.is_finished());
                    assert_eq!(h.await.unwrap(), n + 1);
                    assert!(spare_is(&trivial(0)), "the finished cell is kept");
                }
                // A kept cell is reused, and results stay right.
                for n in 0..100 {
                    assert_eq!(pool2.spawn(trivial(n)).await.unwrap().await.unwrap(), n + 1);
                }
                assert!(spare_is(&trivial(0)));
                assert!(!spare_is(&trivial(0)), "one cell per thread");
            })
            .await
            .unwrap();
            drop(probe);
        });
    }
}
