//! A lane: one tokio task that polls many of the pool's futures.
//!
//! Spawning a tokio task per future costs a task allocation, a trip through
//! the scheduler and, on an idle runtime, a thread wake-up (about 1.5 µs per
//! future on the 2-core test machine, measured with `cenote-bench tasks`).
//! A lane is a small executor inside one tokio task: queues of runnable
//! cells (new ones, woken ones) and a registry of the cells that wait. The
//! queues are intrusive (`runq.rs`: a cell is its own queue node), so
//! spawning allocates one cell and nothing else, pushes it, and wakes the
//! lane only when it is parked. A pool has one lane per runtime worker by default, so
//! its futures still run in parallel. (`FuturesUnordered` was the first
//! version: three allocations per spawn, measured about 6× slower.)
//!
//! A pusher and the lane agree through the lane's [`LaneSignal`] (in
//! `protocol.rs`, with the argument, checked by loom): a push is never
//! missed by a lane about to park, and a push to a lane that is gone is
//! drained by the pusher (its cells end as cancelled and give their slots
//! back).

use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use crossbeam_utils::CachePadded;
use futures_util::task::AtomicWaker;

use super::pool::Inner;
use super::protocol::{LaneSignal, Notified};
use super::runnable::{from_link, into_link, Outcome, Runnable, UNREGISTERED};
use super::runq::{Link, Pop, RunQueue};

/// A spawned future's cell, type-erased.
pub(crate) type Job = Arc<dyn Runnable>;

/// Run normally.
pub(crate) const RUN: u8 = 0;
/// The pool's last handle is gone: exit once empty.
pub(crate) const DETACHED: u8 = 1;
/// Drop every future now (shutdown ran out of time), then exit.
pub(crate) const ABORT: u8 = 2;

/// Cells a lane runs per poll before it yields to the runtime.
const BUDGET: usize = 128;

/// Ends a driver poll that ran out of budget: the driver is to be polled
/// again, after the tasks this worker already has.
///
/// Through tokio's deferred wake-ups (what `tokio::task::yield_now` does),
/// not `wake_by_ref`. A task that wakes itself is pushed to the back of
/// its worker's queue, where another worker may steal it, and the push
/// wakes a parked worker to do so: a futex wake-up on this worker's path
/// (tens of µs on a VM). And the driver's cells spend the task's coop
/// budget, so a task woken into the worker's LIFO slot meanwhile (the
/// spawner the driver's finished futures gave slots back to) would go to
/// the back of the queue too, behind the driver, or run on the other
/// worker only after the driver's next round. A deferred task is woken
/// once this worker has run what it has and looked at its timers and I/O:
/// the spawner refills the slots before the driver ends more futures,
/// as `buffer_unordered` does in its one task. Measured with 1,000 jobs
/// sleeping 30 ms in flight: the driver ended up to 700 futures before the
/// spawner started one; now 128 at most.
fn yield_deferred(cx: &mut Context<'_>) {
    let mut yielded = std::pin::pin!(tokio::task::yield_now());
    // Its first poll hands our waker to the scheduler and returns
    // `Pending`; dropping it then cancels nothing (outside a runtime it
    // wakes at once).
    let _ = yielded.as_mut().poll(cx);
}

/// The lane's queues have one consumer at a time (`runq.rs`): its driver
/// while it lives, then whoever drains them, behind `drain_lock`.
pub(crate) struct Lane {
    /// Cells woken by their futures' wakers.
    queue: RunQueue,
    /// Newly spawned cells, run before the woken ones: a spawn usually
    /// follows a slot coming free, and its first poll (which starts its
    /// I/O or timer) should not wait behind a wave of completions, as a
    /// tokio task spawned from a worker does not (tokio's LIFO slot). Also
    /// the cells whose first poll the spawner made (eager start) and that
    /// wait unwoken: the driver only files them in its registry
    /// (`Begin::File`). Those are not notified: filing is not urgent, and
    /// the driver drains this queue on every round, on abort and when it
    /// dies.
    fresh: RunQueue,
    /// Serializes the drains of a dead or aborting lane, and `drain_asked`
    /// (the most severe outcome asked: 0, or an `Outcome` code) passes a
    /// drain asked while another runs to that one. A lock, not a loop of
    /// `pop`s by everyone: the queues have one consumer at a time.
    drain_lock: parking_lot::Mutex<()>,
    drain_asked: AtomicU8,
    signal: LaneSignal,
    mode: AtomicU8,
    waker: AtomicWaker,
    /// Futures this lane saw complete. Only the lane's driver writes it (a
    /// tokio task is never polled on two threads at once), so a plain
    /// load + store does; others only read it.
    completed: AtomicUsize,
    /// Futures that finished in their eager first poll, counted by their
    /// spawners (so atomically, and on a line of its own).
    completed_eagerly: CachePadded<AtomicUsize>,
}

impl Lane {
    pub(crate) fn new() -> Self {
        Lane {
            queue: RunQueue::new(),
            fresh: RunQueue::new(),
            drain_lock: parking_lot::Mutex::new(()),
            drain_asked: AtomicU8::new(0),
            signal: LaneSignal::new(),
            mode: AtomicU8::new(RUN),
            waker: AtomicWaker::new(),
            completed: AtomicUsize::new(0),
            completed_eagerly: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// Hands a woken cell to the lane. If the lane is gone, the cell is
    /// cancelled here.
    ///
    /// The cell must be SCHEDULED by the caller (`CellState`): that is what
    /// keeps it in one queue at a time, as its one link requires.
    #[inline]
    pub(crate) fn push(&self, job: Job) {
        // SAFETY: a SCHEDULED cell is in no queue (see above), and the
        // queue owns the reference until a pop hands it back.
        unsafe { self.queue.push(into_link(job)) };
        self.notify();
    }

    /// Hands a new (SCHEDULED) cell to the lane (run before the woken ones).
    #[inline]
    pub(crate) fn push_new(&self, job: Job) {
        // SAFETY: as in `push`.
        unsafe { self.fresh.push(into_link(job)) };
        self.notify();
    }

    /// Hands the lane a waiting cell that it has not seen yet (its first
    /// poll was eager; SCHEDULED | FILE), to file in its registry. The lane
    /// is not woken for it; if the lane is gone, the cell is cancelled here.
    #[inline]
    pub(crate) fn push_file(&self, job: Job) {
        // SAFETY: as in `push`.
        unsafe { self.fresh.push(into_link(job)) };
        if self.signal.note() {
            self.drain(Outcome::Cancelled);
        }
    }

    /// The next cell to run: new ones first. `None` also while a push is
    /// half done; its pusher signals the lane once it is linked.
    ///
    /// # Safety
    /// The caller is the lane's one consumer: its driver while it lives
    /// (before `die`), or a holder of `drain_lock`.
    unsafe fn pop(&self) -> Option<Job> {
        for queue in [&self.fresh, &self.queue] {
            // SAFETY: one consumer, per the caller.
            if let Pop::Node(link) = unsafe { queue.pop() } {
                // SAFETY: every link in the queues came from `into_link`,
                // and the pop handed its reference back to us.
                return Some(unsafe { from_link(link) });
            }
        }
        None
    }

    /// Tells the lane that a cell it holds (queued to be filed) is now to
    /// be polled (`Woken::Notify`).
    #[inline]
    pub(crate) fn poke(&self) {
        self.notify();
    }

    fn notify(&self) {
        match self.signal.notify() {
            Notified::Nothing => {}
            Notified::Wake => self.waker.wake(),
            Notified::Dead => self.drain(Outcome::Cancelled),
        }
    }

    /// Cancels every queued cell with `outcome`. Called by the driver (on
    /// abort, and as it dies) and by pushers that find it dead. A drain
    /// asked while another runs (on another thread, or from inside it: a
    /// cancelled cell's handle can wake a cell of this lane) is left to
    /// that one, which looks again before it lets go of the lock.
    fn drain(&self, outcome: Outcome) {
        let code = match outcome {
            Outcome::Aborted => 2,
            _ => 1,
        };
        self.drain_asked.fetch_max(code, AcqRel);
        loop {
            let Some(guard) = self.drain_lock.try_lock() else {
                return;
            };
            loop {
                let asked = self.drain_asked.swap(0, AcqRel);
                if asked == 0 {
                    break;
                }
                let outcome = if asked == 2 {
                    Outcome::Aborted
                } else {
                    Outcome::Cancelled
                };
                // SAFETY: we hold `drain_lock`, and a driver that still
                // pops is running this very drain (abort) or pops no more.
                while let Some(job) = unsafe { self.pop() } {
                    job.cancel(outcome);
                }
            }
            drop(guard);
            // Asked after our last look, while the lock was still ours.
            if self.drain_asked.load(Acquire) == 0 {
                return;
            }
        }
    }

    /// Whether the lane's driver has exited (or was dropped).
    #[inline]
    pub(crate) fn is_dead(&self) -> bool {
        self.signal.is_dead()
    }

    /// Switches the lane to `mode` (only ever upwards: RUN, DETACHED, ABORT)
    /// and wakes it to act on it.
    pub(crate) fn set_mode(&self, mode: u8) {
        self.mode.fetch_max(mode, AcqRel);
        self.notify();
    }

    pub(crate) fn completed(&self) -> usize {
        self.completed.load(Relaxed) + self.completed_eagerly.load(Relaxed)
    }

    /// A spawner's eager first poll finished its future.
    #[inline]
    pub(crate) fn count_completed_eagerly(&self) {
        self.completed_eagerly.fetch_add(1, Relaxed);
    }

    /// Called from a job's poll when it completed normally (so from this
    /// lane's driver).
    #[inline]
    pub(crate) fn count_completed(&self) {
        self.completed
            .store(self.completed.load(Relaxed) + 1, Relaxed);
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        // Every queued cell holds its pool, which holds its lanes, so a lane
        // goes only once its queues are empty. Were one left, it would leak
        // (dropping it here could reach its pool, which is gone).
        // SAFETY: `&mut self`: nobody else pops.
        debug_assert!(
            unsafe { self.pop() }.is_none(),
            "a lane dropped with queued cells"
        );
    }
}

/// The cells of a lane that wait (were polled and returned `Pending`): the
/// lane owns them, so that an abort-all or a runtime shutdown can drop
/// their futures. Driver only.
///
/// A slot is one word: a registered cell's link (its reference, handed
/// over by `into_link`; aligned, so its low bit is clear), or a vacant
/// slot: the next vacant index, shifted left, with the low bit set. So the
/// free list costs nothing besides the slots (a `Vec<Option<Job>>` and a
/// `Vec<u32>` of vacant indices took 20 bytes a slot; this takes 8).
pub(crate) struct Registry {
    slots: Vec<usize>,
    /// The first vacant slot, or `NO_SLOT`.
    vacant: usize,
    live: usize,
}

/// The end of the vacant list.
const NO_SLOT: usize = usize::MAX >> 1;

impl Default for Registry {
    fn default() -> Self {
        Registry {
            slots: Vec::new(),
            vacant: NO_SLOT,
            live: 0,
        }
    }
}

impl Registry {
    pub(crate) fn insert(&mut self, job: Job) -> u32 {
        let link = into_link(job).as_ptr() as usize;
        debug_assert!(link & 1 == 0, "a cell is aligned");
        self.live += 1;
        if self.vacant != NO_SLOT {
            let i = self.vacant;
            self.vacant = self.slots[i] >> 1;
            self.slots[i] = link;
            // Indices below `NO_SLOT` that were handed out fit in a u32.
            return i as u32;
        }
        let i = self.slots.len();
        let index = u32::try_from(i)
            .ok()
            .filter(|&n| n != UNREGISTERED && (n as usize) < NO_SLOT)
            .expect("fewer than 2^31 futures wait in one lane");
        self.slots.push(link);
        index
    }

    pub(crate) fn remove(&mut self, index: u32) {
        if index == UNREGISTERED {
            return;
        }
        let i = index as usize;
        let Some(&slot) = self.slots.get(i) else {
            return;
        };
        if slot & 1 != 0 {
            return;
        }
        self.slots[i] = (self.vacant << 1) | 1;
        self.vacant = i;
        self.live -= 1;
        // SAFETY: an occupied slot holds a link from `into_link` whose
        // reference the registry owned, and no longer holds.
        drop(unsafe { from_link(NonNull::new_unchecked(slot as *mut Link)) });
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Takes every registered cell out, as `Job`s.
    fn take_all(&mut self) -> Vec<Job> {
        let slots = std::mem::take(&mut self.slots);
        self.vacant = NO_SLOT;
        self.live = 0;
        slots
            .into_iter()
            .filter(|slot| slot & 1 == 0)
            // SAFETY: as in `remove`; each occupied slot is taken once.
            .map(|slot| unsafe { from_link(NonNull::new_unchecked(slot as *mut Link)) })
            .collect()
    }

    /// Cancels every registered cell and forgets them.
    fn cancel_all(&mut self, outcome: Outcome) {
        for job in self.take_all() {
            job.cancel(outcome);
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The driver cancels its registry before it goes; this only gives
        // back the references of cells still here.
        drop(self.take_all());
    }
}

/// Slots and `active` decrements of the futures that finished during one
/// driver poll, settled in one go at its end (see `Inner::finished`).
pub(crate) struct Batch {
    pool: *const Inner,
    finished: usize,
}

thread_local! {
    /// The batch of the driver polling on this thread, if any.
    static BATCH: std::cell::Cell<*mut Batch> = const { std::cell::Cell::new(std::ptr::null_mut()) };
}

impl Batch {
    /// Adds a finished future of `pool` to the batch of the driver polling
    /// on this thread; false when there is none, or it is another pool's.
    pub(crate) fn add(pool: &Inner) -> bool {
        BATCH.with(|b| {
            let batch = b.get();
            if batch.is_null() {
                return false;
            }
            // SAFETY: a non-null pointer is the batch of the driver that is
            // polling on this thread (set and cleared by `Driver::poll`
            // around its work); nothing else holds a reference to it now.
            let batch = unsafe { &mut *batch };
            if !std::ptr::eq(batch.pool, pool) {
                return false;
            }
            batch.finished += 1;
            true
        })
    }
}

impl Batch {
    /// Whether a driver of `pool` is polling one of its futures on this
    /// thread now.
    pub(crate) fn polling(pool: &Inner) -> bool {
        BATCH.with(|b| {
            let batch = b.get();
            // SAFETY: as in `add`; only the pool pointer is read.
            !batch.is_null() && std::ptr::eq(unsafe { (*batch).pool }, pool)
        })
    }

    /// Gives back now the slots held by the batch of the driver polling on
    /// this thread, if it is `pool`'s and holds any; whether it did.
    pub(crate) fn settle_now(pool: &Inner) -> bool {
        BATCH.with(|b| {
            let batch = b.get();
            if batch.is_null() {
                return false;
            }
            // SAFETY: as in `add`: the batch of the driver polling on this
            // thread, not otherwise referenced while this runs.
            let batch = unsafe { &mut *batch };
            if !std::ptr::eq(batch.pool, pool) || batch.finished == 0 {
                return false;
            }
            let n = std::mem::take(&mut batch.finished);
            pool.flush(n);
            true
        })
    }
}

/// Installs a driver's batch for the length of one poll, and settles it
/// when dropped.
struct BatchScope<'a> {
    batch: &'a mut Batch,
    pool: &'a Inner,
    previous: *mut Batch,
}

impl<'a> BatchScope<'a> {
    fn enter(batch: &'a mut Batch, pool: &'a Inner) -> Self {
        let previous = BATCH.with(|b| b.replace(batch as *mut Batch));
        BatchScope {
            batch,
            pool,
            previous,
        }
    }
}

impl Drop for BatchScope<'_> {
    fn drop(&mut self) {
        BATCH.with(|b| b.set(self.previous));
        let n = std::mem::take(&mut self.batch.finished);
        if n > 0 {
            self.pool.flush(n);
        }
    }
}

/// The tokio task that runs a lane.
pub(crate) struct Driver {
    lane: Arc<Lane>,
    registry: Registry,
    pool: std::sync::Weak<Inner>,
    batch: Batch,
}

// SAFETY: `batch.pool` is only compared, never dereferenced, and the driver
// is otherwise made of `Send` parts.
unsafe impl Send for Driver {}

impl Driver {
    pub(crate) fn new(lane: Arc<Lane>, pool: &Arc<Inner>) -> Self {
        Driver {
            lane,
            registry: Registry::default(),
            pool: Arc::downgrade(pool),
            batch: Batch {
                pool: Arc::as_ptr(pool),
                finished: 0,
            },
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let lane = &*this.lane;
        lane.waker.register(cx.waker());
        // Futures hold the pool, so while any is queued or registered the
        // upgrade succeeds; when it fails, none is left to run.
        let Some(pool) = this.pool.upgrade() else {
            return Poll::Ready(());
        };
        let _batch = BatchScope::enter(&mut this.batch, &pool);
        let mut budget = BUDGET;
        loop {
            lane.signal.begin_round();
            let mode = lane.mode.load(Acquire);
            if mode == ABORT {
                this.registry.cancel_all(Outcome::Aborted);
                lane.drain(Outcome::Aborted);
            }
            // SAFETY: the driver is the lanes' consumer while it lives.
            while let Some(job) = unsafe { lane.pop() } {
                if job.run(&mut this.registry) {
                    budget -= 1;
                    if budget == 0 {
                        yield_deferred(cx);
                        return Poll::Pending;
                    }
                }
            }
            if mode != RUN && this.registry.is_empty() {
                // Exit; `Drop` marks the lane dead and drains what raced in.
                return Poll::Ready(());
            }
            if lane.signal.try_park() {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.lane.signal.die();
        // Unfinished futures dropped now count as aborted when a shutdown
        // ran out of time, as cancelled when the runtime is going away.
        let outcome = if self.lane.mode.load(Acquire) == ABORT {
            Outcome::Aborted
        } else {
            Outcome::Cancelled
        };
        self.registry.cancel_all(outcome);
        self.lane.drain(outcome);
    }
}
