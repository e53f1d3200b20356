//! The two state words of `cenote::tasks`, kept apart from tokio so that
//! loom can check them (`loom_protocol.rs`; under `--cfg loom` the `tasks`
//! module holds only this file and the run queue).
//!
//! [`LaneSignal`]: how a spawner and a lane's driver agree on "there is new
//! work" and "the lane is parked" or "gone". [`CellState`]: who may queue,
//! poll and drop a spawned future. Both are changed only by
//! read-modify-writes of one word, so every pair of operations on a word is
//! totally ordered, and each argument below is about that order alone.

use crate::sync::{AtomicUsize, Ordering::*};

const NOTIFIED: usize = 1;
const PARKED: usize = 2;
const DEAD: usize = 4;

/// What a push found the lane doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notified {
    /// Running (or already notified): it will see the push.
    Nothing,
    /// Parked: wake its task.
    Wake,
    /// Gone: nobody will pop the queue; the pusher drains it.
    Dead,
}

/// The lane's state word: `NOTIFIED | PARKED | DEAD`.
///
/// - A pusher pushes, then [`notify`](Self::notify) (`fetch_or(NOTIFIED)`).
/// - The driver starts each round with [`begin_round`](Self::begin_round)
///   (`swap(0)`, which acquires every push notified before it), pops, and
///   parks with [`try_park`](Self::try_park) (`CAS 0 -> PARKED`). The CAS
///   fails exactly when a push notified after the swap, so the driver goes
///   round again instead of parking past a push. A push that finds PARKED
///   wakes the driver's task.
/// - A driver that exits calls [`die`](Self::die) (`swap(DEAD)`) and then
///   drains: a push ordered before the swap is drained by it, one after it
///   reads DEAD and drains itself.
#[derive(Debug, Default)]
pub struct LaneSignal {
    state: AtomicUsize,
}

impl LaneSignal {
    /// A running lane.
    pub fn new() -> Self {
        LaneSignal {
            state: AtomicUsize::new(0),
        }
    }

    /// Pusher, after its push.
    pub fn notify(&self) -> Notified {
        let old = self.state.fetch_or(NOTIFIED, AcqRel);
        if old & DEAD != 0 {
            Notified::Dead
        } else if old & PARKED != 0 {
            Notified::Wake
        } else {
            Notified::Nothing
        }
    }

    /// Pusher of work the driver need not run soon (it is filed on the
    /// driver's next round, whenever that comes): like
    /// [`notify`](Self::notify), but a parked driver stays parked. True
    /// when the driver is gone, and the pusher must drain.
    pub fn note(&self) -> bool {
        self.state.fetch_or(NOTIFIED, AcqRel) & DEAD != 0
    }

    /// Driver, before it pops.
    pub fn begin_round(&self) {
        self.state.swap(0, AcqRel);
    }

    /// Driver, with its queue found empty: true when it may return
    /// `Pending` (its waker registered before `begin_round`); false when a
    /// push came meanwhile and it must go round again.
    pub fn try_park(&self) -> bool {
        self.state
            .compare_exchange(0, PARKED, AcqRel, Acquire)
            .is_ok()
    }

    /// Driver, as it exits; it drains its queue afterwards.
    pub fn die(&self) {
        self.state.swap(DEAD, AcqRel);
    }

    /// Whether the driver is gone.
    pub fn is_dead(&self) -> bool {
        self.state.load(Acquire) & DEAD != 0
    }
}

const SCHEDULED: usize = 1;
const RUNNING: usize = 2;
const WOKEN: usize = 4;
const DONE: usize = 8;
const ABORT: usize = 16;
/// Queued only to be filed in its lane's registry (after an eager first
/// poll that was not woken): the driver files it and polls it only if a
/// wake came meanwhile. Set only with SCHEDULED.
const FILE: usize = 32;

/// What a driver taking a queued cell must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Begin {
    /// Poll the future.
    Poll,
    /// Abort was asked: drop the future (if [`CellState::claim_done`]).
    Abort,
    /// The future is gone already (cancelled meanwhile): nothing.
    Done,
    /// Queued by [`CellState::end_eager`] and not woken since: file the cell
    /// in the registry, then [`CellState::end_pending`] (which queues it
    /// again if a wake came while it was being filed).
    File,
}

/// What a wake must do, from [`CellState::mark_woken`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// The cell was idle and is now SCHEDULED: push it onto its lane.
    Push,
    /// The cell was queued only to be filed (by a push that does not wake
    /// the lane) and is now to be polled: notify its lane.
    Notify,
    /// Queued already, running (WOKEN is set), or done: nothing.
    Nothing,
}

/// A spawned future's state word: `SCHEDULED | RUNNING | WOKEN | DONE |
/// ABORT | FILE`.
///
/// - SCHEDULED: in its lane's queue, at most once, because only the wake
///   that sets the bit (from idle) pushes, and a new cell starts with it.
///   A cell's queue link is one field, so "at most once" is also what makes
///   the intrusive queue (`runq.rs`) sound.
/// - RUNNING: its driver polls it ([`begin_run`](Self::begin_run) turns
///   SCHEDULED into RUNNING in one `fetch_xor`). A wake meanwhile sets WOKEN
///   instead of pushing, and [`end_pending`](Self::end_pending) turns
///   RUNNING | WOKEN into SCHEDULED (the driver pushes it again): a wake is
///   never lost and the future is never queued twice.
/// - DONE: its future is gone. [`claim_done`](Self::claim_done) is a
///   `fetch_or`, so exactly one party drops the future; wakes of a DONE cell
///   do nothing.
/// - ABORT: asked by the handle; the next `begin_run` reports it.
/// - FILE: after an eager first poll that returned `Pending` unwoken,
///   [`end_eager`](Self::end_eager) queues the cell anyway (SCHEDULED |
///   FILE) so that its driver files it in its registry; a wake meanwhile
///   clears FILE (the cell is queued already), and the driver then polls it
///   instead.
#[derive(Debug)]
pub struct CellState {
    state: AtomicUsize,
}

impl CellState {
    /// A new cell, about to be pushed onto its lane.
    pub fn new_scheduled() -> Self {
        CellState {
            state: AtomicUsize::new(SCHEDULED),
        }
    }

    /// A new cell whose first poll the spawner makes itself, before any lane
    /// sees it (eager start). It leaves RUNNING by
    /// [`end_pending`](Self::end_pending) (then it is queued by whoever sets
    /// SCHEDULED, as after any poll) or [`claim_done`](Self::claim_done).
    #[inline]
    pub fn new_running() -> Self {
        CellState {
            state: AtomicUsize::new(RUNNING),
        }
    }

    /// Driver, on taking the cell from its queue.
    pub fn begin_run(&self) -> Begin {
        let old = self.state.fetch_xor(SCHEDULED | RUNNING, AcqRel);
        debug_assert!(old & SCHEDULED != 0 && old & RUNNING == 0, "{old:#b}");
        if old & DONE != 0 {
            Begin::Done
        } else if old & ABORT != 0 {
            Begin::Abort
        } else if old & FILE != 0 {
            Begin::File
        } else {
            Begin::Poll
        }
    }

    /// The spawner, after an eager first poll that returned `Pending`: the
    /// cell goes RUNNING -> SCHEDULED, and the caller pushes it. True when a
    /// wake came during the poll (the driver must poll it); otherwise it
    /// is marked FILE (the driver only files it, unless woken meanwhile).
    pub fn end_eager(&self) -> bool {
        let mut state = self.state.load(Acquire);
        loop {
            let woken = state & WOKEN != 0;
            let next = (state & !(RUNNING | WOKEN)) | SCHEDULED | if woken { 0 } else { FILE };
            match self.state.compare_exchange(state, next, AcqRel, Acquire) {
                Ok(_) => return woken,
                Err(s) => state = s,
            }
        }
    }

    /// Driver, after a poll that returned `Pending` (or after filing a
    /// [`Begin::File`] cell): true when a wake came meanwhile, and the cell
    /// (now SCHEDULED again) must be pushed.
    pub fn end_pending(&self) -> bool {
        let mut state = self.state.load(Acquire);
        loop {
            let next = if state & WOKEN != 0 {
                (state & !(RUNNING | WOKEN | FILE)) | SCHEDULED
            } else {
                state & !(RUNNING | FILE)
            };
            match self.state.compare_exchange(state, next, AcqRel, Acquire) {
                Ok(_) => return state & WOKEN != 0,
                Err(s) => state = s,
            }
        }
    }

    /// A waker: what the caller must do. [`Woken::Push`]: the cell was
    /// idle (now SCHEDULED): push it. [`Woken::Notify`]: it was queued only
    /// to be filed, and its lane may be parked (that push does not wake the
    /// lane): now that it is to be polled, notify the lane.
    ///
    /// When the cell is queued or already woken this still writes the word
    /// (the same value back): the waker's own writes before the wake (the
    /// event the future waits for) are then released to the driver's next
    /// `begin_run` / `end_pending`, which read-modify-write the same word.
    /// With a plain load here, the driver could take the cell, poll, and
    /// miss the event while this wake saw "queued" and did nothing: loom
    /// found that lost wake-up (`loom_protocol.rs`).
    pub fn mark_woken(&self) -> Woken {
        let mut state = self.state.load(Acquire);
        loop {
            let next = if state & DONE != 0 {
                return Woken::Nothing;
            } else if state & SCHEDULED != 0 {
                // Queued already; queued only to be filed, it is now to be
                // polled.
                state & !FILE
            } else if state & RUNNING != 0 {
                state | WOKEN
            } else {
                state | SCHEDULED
            };
            match self
                .state
                .compare_exchange_weak(state, next, AcqRel, Acquire)
            {
                Ok(_) => {
                    return if state & SCHEDULED == 0 && next & SCHEDULED != 0 {
                        Woken::Push
                    } else if state & FILE != 0 && next & FILE == 0 {
                        Woken::Notify
                    } else {
                        Woken::Nothing
                    }
                }
                Err(s) => state = s,
            }
        }
    }

    /// Whoever is about to drop the future: true for exactly one caller.
    #[inline]
    pub fn claim_done(&self) -> bool {
        self.state.fetch_or(DONE, AcqRel) & DONE == 0
    }

    /// The handle asks for an abort: true when the future is not gone yet
    /// (the caller then wakes the cell, so that its driver looks at it).
    pub fn request_abort(&self) -> bool {
        self.state.fetch_or(ABORT, AcqRel) & DONE == 0
    }

    /// The spawner, after pushing a cell that [`end_eager`](Self::end_eager)
    /// marked FILE: true when a wake has since turned it into a cell to
    /// poll (SCHEDULED, neither FILE nor RUNNING nor DONE) that the driver
    /// has not taken yet. That wake's notify may have come before the push
    /// was linked, so the caller notifies the lane again. (A cell the driver
    /// took or filed meanwhile needs nothing: the driver saw it.)
    #[inline]
    pub fn woken_while_filing(&self) -> bool {
        self.state.load(Acquire) & (SCHEDULED | FILE | RUNNING | DONE) == SCHEDULED
    }

    /// Whether the future is gone.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.state.load(Acquire) & DONE != 0
    }

    /// Marks the future gone, with a plain store: only for a cell that
    /// nobody else can reach (its spawner saw no other reference to it).
    #[inline]
    pub fn mark_done_unshared(&self) {
        self.state.store(self.state.load(Relaxed) | DONE, Relaxed);
    }
}
