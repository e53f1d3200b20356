//! A lane: one tokio task that polls many of the pool's futures.
//!
//! Spawning a tokio task per future costs a task allocation, a trip through
//! the scheduler and, on an idle runtime, a thread wake-up (about 1.5 µs per
//! future on the 2-core test machine). A lane instead owns a
//! `FuturesUnordered` and a queue of new futures; spawning pushes onto the
//! queue and wakes the lane only when it is parked. A pool has one lane per
//! runtime worker by default, so its futures still run in parallel.
//!
//! The lane's state word (`NOTIFIED | PARKED | DEAD`) is what a pusher and
//! the lane agree on; each side changes it with a read-modify-write, so the
//! two are totally ordered:
//! - pusher: push the job, then `fetch_or(NOTIFIED)`; if the old word had
//!   `PARKED`, wake the lane; if it had `DEAD`, nobody will poll the queue:
//!   drain it here (the jobs finish as cancelled and give their slots back).
//! - lane: `swap(0)` (clears `NOTIFIED`; acquires every push before it),
//!   drain the queue, poll; then `compare_exchange(0, PARKED)`: it fails
//!   exactly when a push notified after the swap, and the lane goes round
//!   again instead of parking.
//! - lane exit (done, or dropped by a runtime shutting down): `swap(DEAD)`,
//!   then drain; a push ordered before the swap is drained by the lane, one
//!   after it sees `DEAD` and drains itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use crossbeam_queue::SegQueue;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;

/// A spawned future, type-erased.
pub(crate) type Job = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

const NOTIFIED: usize = 1;
const PARKED: usize = 2;
const DEAD: usize = 4;

/// Run normally.
pub(crate) const RUN: u8 = 0;
/// The pool's last handle is gone: exit once empty.
pub(crate) const DETACHED: u8 = 1;
/// Drop every future now (shutdown ran out of time), then exit.
pub(crate) const ABORT: u8 = 2;

/// Futures a lane completes per poll before it yields to the runtime.
const BUDGET: usize = 128;

pub(crate) struct Lane {
    queue: SegQueue<Job>,
    state: AtomicUsize,
    mode: AtomicU8,
    waker: AtomicWaker,
    /// Futures this lane saw complete. Only the lane's driver writes it (a
    /// tokio task is never polled on two threads at once), so a plain
    /// load + store does; others only read it.
    completed: AtomicUsize,
}

impl Lane {
    pub(crate) fn new() -> Self {
        Lane {
            queue: SegQueue::new(),
            state: AtomicUsize::new(0),
            mode: AtomicU8::new(RUN),
            waker: AtomicWaker::new(),
            completed: AtomicUsize::new(0),
        }
    }

    /// Hands a job to the lane. If the lane is gone, the job is dropped here
    /// (it finishes as cancelled).
    #[inline]
    pub(crate) fn push(&self, job: Job) {
        self.queue.push(job);
        self.notify();
    }

    fn notify(&self) {
        let old = self.state.fetch_or(NOTIFIED, AcqRel);
        if old & DEAD != 0 {
            self.drain();
        } else if old & PARKED != 0 {
            self.waker.wake();
        }
    }

    fn drain(&self) {
        while let Some(job) = self.queue.pop() {
            drop(job);
        }
    }

    /// Whether the lane's driver has exited (or was dropped).
    pub(crate) fn is_dead(&self) -> bool {
        self.state.load(Acquire) & DEAD != 0
    }

    /// Switches the lane to `mode` (only ever upwards: RUN, DETACHED, ABORT)
    /// and wakes it to act on it.
    pub(crate) fn set_mode(&self, mode: u8) {
        self.mode.fetch_max(mode, AcqRel);
        self.notify();
    }

    pub(crate) fn completed(&self) -> usize {
        self.completed.load(Relaxed)
    }

    /// Called from a job's poll when it completed normally (so from this
    /// lane's driver).
    #[inline]
    pub(crate) fn count_completed(&self) {
        self.completed
            .store(self.completed.load(Relaxed) + 1, Relaxed);
    }
}

/// The tokio task that runs a lane.
pub(crate) struct Driver {
    lane: Arc<Lane>,
    set: FuturesUnordered<Job>,
}

impl Driver {
    pub(crate) fn new(lane: Arc<Lane>) -> Self {
        Driver {
            lane,
            set: FuturesUnordered::new(),
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let lane = &*this.lane;
        lane.waker.register(cx.waker());
        let mut budget = BUDGET;
        loop {
            lane.state.swap(0, AcqRel);
            let mode = lane.mode.load(Acquire);
            if mode == ABORT {
                // Dropping a job finishes it as aborted (see `Task`).
                this.set.clear();
                lane.drain();
            }
            while let Some(job) = lane.queue.pop() {
                this.set.push(job);
            }
            while let Poll::Ready(Some(())) = this.set.poll_next_unpin(cx) {
                budget -= 1;
                if budget == 0 {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            if mode != RUN && this.set.is_empty() {
                // Exit; `Drop` marks the lane dead and drains what raced in.
                return Poll::Ready(());
            }
            if lane
                .state
                .compare_exchange(0, PARKED, AcqRel, Acquire)
                .is_ok()
            {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.lane.state.swap(DEAD, AcqRel);
        // Dropping the jobs finishes them (cancelled or aborted) and gives
        // their slots back.
        self.set.clear();
        self.lane.drain();
    }
}
