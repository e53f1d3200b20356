//! A cell's life in its lane: the driver's poll, the end of a cell
//! (exactly once, by the winner of `DONE`), and the last reference's
//! recycling of a finished cell. `Cell`'s side of [`Runnable`].

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::fence;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::unwind;

use futures_util::task::waker_ref;

use super::cell::{Cell, Stage};
use super::errors::JoinError;
use super::join::Joiner;
use super::lane::{Lane, Registry};
use super::protocol::{Begin, CellState};
use super::recycle::Recyclable;
use super::runnable::{Outcome, Runnable, UNREGISTERED};

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
    pub(super) fn finish(
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
    pub(super) fn schedule(this: &Arc<Self>) {
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
    pub(super) fn let_go(this: Arc<Self>) {
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
                    crate::log::error!(
                        "cenote::tasks: a future's output panicked while being dropped"
                    )
                }
            }
            unwind::drop_payload(payload);
        }
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
