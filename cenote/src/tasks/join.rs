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
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures_util::task::{waker_ref, ArcWake};
use parking_lot::Mutex;

use super::errors::JoinError;
use super::lane::Registry;
use super::pool::Inner;
use super::protocol::{Begin, CellState};

/// Not yet in its lane's registry.
pub(crate) const UNREGISTERED: usize = usize::MAX;

/// A cell as its lane sees it.
pub(crate) trait Runnable: Send + Sync + 'static {
    /// Polls the future once. Driver only.
    fn run(self: Arc<Self>, registry: &mut Registry);
    /// Drops the future unfinished (if it is not gone already) and
    /// completes the handle with `outcome`. Driver only, or after the
    /// driver is gone.
    fn cancel(&self, outcome: Outcome);
}

/// The handle's view of a cell.
trait JoinSide<T>: Send + Sync {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>>;
    fn is_finished(&self) -> bool;
    fn abort(self: Arc<Self>);
}

/// How a spawned future ended, for the pool's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Panicked,
    Aborted,
    Cancelled,
}

struct Slot<T> {
    result: Option<Result<T, JoinError>>,
    joiner: Option<Waker>,
}

pub(crate) struct Cell<F: Future> {
    state: CellState,
    /// Where the driver keeps the cell while it is live.
    index: AtomicUsize,
    lane: usize,
    pool: Arc<Inner>,
    slot: Mutex<Slot<F::Output>>,
    fut: UnsafeCell<Option<F>>,
}

// SAFETY: `fut` is only touched by the lane's driver (one tokio task, so
// one thread at a time, with the runtime ordering its polls), or, after the
// driver is gone, by whoever wins the `DONE` bit; everything else is
// atomics or behind the mutex. So sharing the cell shares `F` only by
// moving it between threads, which `F: Send` allows; the output crosses to
// the handle's thread, which `F::Output: Send` allows.
unsafe impl<F: Future + Send> Sync for Cell<F> where F::Output: Send {}
// SAFETY: as above.
unsafe impl<F: Future + Send> Send for Cell<F> where F::Output: Send {}

/// Makes the cell of a spawned future and the handle to its result.
pub(crate) fn cell<F>(
    fut: F,
    pool: Arc<Inner>,
    lane: usize,
) -> (Arc<Cell<F>>, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let cell = Arc::new(Cell {
        state: CellState::new_scheduled(),
        index: AtomicUsize::new(UNREGISTERED),
        lane,
        pool,
        slot: Mutex::new(Slot {
            result: None,
            joiner: None,
        }),
        fut: UnsafeCell::new(Some(fut)),
    });
    let handle = JoinHandle {
        cell: cell.clone(),
        taken: false,
    };
    (cell, handle)
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
        // SAFETY: the caller won `DONE`, so nobody else touches `fut`
        // again, and the driver (or the code after it) is the only one that
        // touched it before.
        let fut = unsafe { &mut *self.fut.get() };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| *fut = None)) {
            self.pool.report_panic(payload.as_ref());
        }
        let watched = match owner {
            Some((me, registered)) => Arc::strong_count(me) - usize::from(registered) > 1,
            None => true,
        };
        if !watched {
            drop(result);
            self.pool.finished(self.lane, outcome, true);
            return;
        }
        self.pool.finished(self.lane, outcome, false);
        let result = result.unwrap_or(Err(match outcome {
            Outcome::Cancelled => JoinError::Cancelled,
            _ => JoinError::Aborted,
        }));
        let mut slot = self.slot.lock();
        slot.result = Some(result);
        let joiner = slot.joiner.take();
        drop(slot);
        if let Some(w) = joiner {
            w.wake();
        }
    }

    /// Queues the cell on its lane. Takes `&Arc` (and pushes a clone) so
    /// that the caller's reference keeps the pool, and so the lane, alive
    /// while the push runs.
    fn schedule(this: &Arc<Self>) {
        this.pool.lane(this.lane).push(this.clone());
    }
}

impl<F> Runnable for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn run(self: Arc<Self>, registry: &mut Registry) {
        match self.state.begin_run() {
            Begin::Poll => {}
            Begin::Done => return,
            Begin::Abort => {
                if self.state.claim_done() {
                    let registered = self.index.load(Relaxed) != UNREGISTERED;
                    self.finish(Outcome::Aborted, None, Some((&self, registered)));
                }
                registry.remove(self.index.load(Relaxed));
                return;
            }
        }
        let waker = waker_ref(&self);
        let mut cx = Context::from_waker(&waker);
        // SAFETY: only the driver polls `fut`, one poll at a time, and the
        // future never moves: it lives in the `Arc` until `finish` drops it
        // in place.
        let fut = unsafe { Pin::new_unchecked(&mut *self.fut.get()) };
        let polled = match fut.as_pin_mut() {
            Some(fut) => catch_unwind(AssertUnwindSafe(|| fut.poll(&mut cx))),
            None => return,
        };
        let (outcome, result) = match polled {
            Ok(Poll::Pending) => {
                // A future that finishes in its first poll is never
                // registered; one that waits is, so that an abort-all or a
                // runtime shutdown can reach it.
                if self.index.load(Relaxed) == UNREGISTERED {
                    self.index.store(registry.insert(self.clone()), Relaxed);
                }
                // RUNNING -> idle, or, when woken meanwhile, back in line.
                if self.state.end_pending() {
                    Self::schedule(&self);
                }
                return;
            }
            Ok(Poll::Ready(value)) => (Outcome::Completed, Ok(value)),
            Err(payload) => {
                self.pool.report_panic(payload.as_ref());
                (Outcome::Panicked, Err(JoinError::Panicked(payload)))
            }
        };
        if self.state.claim_done() {
            let registered = self.index.load(Relaxed) != UNREGISTERED;
            self.finish(outcome, Some(result), Some((&self, registered)));
        }
        registry.remove(self.index.load(Relaxed));
    }

    fn cancel(&self, outcome: Outcome) {
        if self.state.claim_done() {
            self.finish(outcome, None, None);
        }
    }
}

impl<F> ArcWake for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn wake_by_ref(arc_self: &Arc<Self>) {
        if arc_self.state.mark_woken() {
            Self::schedule(arc_self);
        }
    }
}

impl<F: Future> Drop for Cell<F> {
    fn drop(&mut self) {
        // Every live cell is held by its lane's queue or registry until it
        // is done, so this is a backstop: a cell dropped unfinished still
        // gives its slot back and counts as cancelled.
        if !self.state.take_done() {
            let fut = self.fut.get_mut();
            if catch_unwind(AssertUnwindSafe(|| *fut = None)).is_err() {
                tracing::error!("cenote::tasks: a future panicked while being dropped");
            }
            // Dropped: no handle is left to see a result.
            self.pool.finished(self.lane, Outcome::Cancelled, false);
        }
    }
}

impl<F> JoinSide<F::Output> for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        let mut slot = self.slot.lock();
        if let Some(result) = slot.result.take() {
            return Poll::Ready(result);
        }
        match &slot.joiner {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.joiner = Some(cx.waker().clone()),
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
}

/// An awaitable handle to a future spawned on a
/// [`TaskPool`](super::TaskPool).
///
/// `.await` gives the future's output, or a [`JoinError`] when it panicked
/// (the payload is carried, not lost), was aborted, or was cancelled by the
/// runtime shutting down. Dropping the handle detaches the future: it keeps
/// running. Awaiting a handle again after it yielded is a logic error and
/// panics, as for tokio's handles.
#[must_use = "dropping a JoinHandle detaches the future; `.await` it for the result"]
pub struct JoinHandle<T> {
    cell: Arc<dyn JoinSide<T>>,
    taken: bool,
}

impl<T> JoinHandle<T> {
    /// Whether the future has finished (with a value, a panic, aborted or
    /// cancelled).
    pub fn is_finished(&self) -> bool {
        self.cell.is_finished()
    }

    /// Asks for the future to be dropped: it is not polled again, its slot
    /// in the pool comes free, and the handle yields [`JoinError::Aborted`]
    /// (unless it finished first: then it yields its result). A future
    /// waiting on a `spawn_blocking` closure stops waiting, but the closure,
    /// once started, runs to its end on its thread.
    pub fn abort(&self) {
        self.cell.clone().abort();
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.taken, "JoinHandle polled after it yielded its result");
        let polled = self.cell.poll_join(cx);
        if polled.is_ready() {
            self.taken = true;
        }
        polled
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
