//! A spawned future's cell, the one allocation a spawn makes: its layout,
//! how it is built (fresh, recycled, or this thread's spare) and how it is
//! dropped.
//!
//! A cell holds the future, its result slot and a state word
//! ([`CellState`], in `protocol.rs`, where the rules are written down and
//! from where loom checks them). Its lane's driver is the only code that
//! polls the future, and exactly one party (the winner of `claim_done`)
//! drops it, so the future sits in an `UnsafeCell` without a lock. How a
//! cell runs and ends is in `run.rs`; the handle to its result in
//! `join.rs`.

use std::cell::UnsafeCell;
use std::future::Future;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::{addr_of_mut, NonNull};
use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::Arc;
use std::task::Waker;

use crate::unwind;

use parking_lot::lock_api::RawMutex as _;
use parking_lot::RawMutex;

use super::errors::JoinError;
use super::join::JoinHandle;
use super::pool::Inner;
use super::pool_ref::PoolRef;
use super::protocol::CellState;
use super::recycle::Recyclable;
use super::runnable::{Header, Outcome, UNREGISTERED};
use super::spare;

/// The future, then its result: one space for both, as the future is
/// dropped before the result is written. Only the polling party (the
/// driver, or the spawner in an eager first poll) and then the winner of
/// `DONE` touch it, until the result is published; then only the handle.
pub(super) enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Empty,
}

/// 56 bytes besides the future (or its result), as many as
/// `FuturesUnordered`'s task, with nothing else per future (no queue slot
/// or block): peak memory at 10,000 futures in flight is mostly cells.
/// `#[repr(C)]`: the header comes first (see
/// [`Runnable`](super::runnable::Runnable)).
#[repr(C)]
pub(crate) struct Cell<F: Future> {
    header: Header,
    pub(super) state: CellState,
    pub(super) pool: PoolRef,
    /// Where the driver keeps the cell while it waits.
    pub(super) index: AtomicU32,
    lane: u16,
    /// Guards `waker` and `published` (see
    /// [`Joiner`](super::join::Joiner)).
    pub(super) lock: RawMutex,
    pub(super) published: UnsafeCell<bool>,
    /// The handle waiting for the result.
    pub(super) waker: UnsafeCell<Option<Waker>>,
    pub(super) stage: UnsafeCell<Stage<F>>,
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
    pub(super) fn new_arc(
        fut: &mut Owned<F>,
        pool: PoolRef,
        lane: usize,
        state: CellState,
    ) -> Arc<Self>
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
            addr_of_mut!((*cell).header).write(Header::of::<F>());
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
    pub(super) unsafe fn running(&self) -> Option<Pin<&mut F>> {
        // SAFETY: per the caller, nobody else touches the stage.
        match unsafe { &mut *self.stage.get() } {
            // SAFETY: see above: pinned in place.
            Stage::Running(fut) => Some(unsafe { Pin::new_unchecked(fut) }),
            _ => None,
        }
    }

    /// The cell's lane, as an index.
    #[inline]
    pub(super) fn lane(&self) -> usize {
        self.lane as usize
    }

    /// Drops the future in place, catching (and reporting) a panicking
    /// drop. The caller won `DONE`.
    #[inline]
    pub(super) fn drop_future(&self) {
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
        self.pool.word()
    }

    unsafe fn destroy(cell: NonNull<Self>) {
        // SAFETY: per the caller, it came from `Arc::into_raw` and is owned.
        drop(unsafe { Arc::from_raw(cell.as_ptr()) });
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
                crate::log::error!("cenote::tasks: a future panicked while being dropped");
            }
            // Dropped: no handle is left to see a result.
            self.pool.finished(self.lane(), Outcome::Cancelled, false);
        }
    }
}
