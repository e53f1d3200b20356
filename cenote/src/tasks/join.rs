//! The handle to a spawned future's result ([`JoinHandle`]) and the side
//! of a cell it sees ([`JoinSide`]): the result, published under the
//! cell's byte-sized lock ([`Joiner`]), and abort.

use std::cell::UnsafeCell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::unwind;

use futures_util::task::ArcWake;
use parking_lot::lock_api::RawMutex as _;
use parking_lot::RawMutex;

use super::cell::{Cell, Stage};
use super::errors::JoinError;

/// The handle's view of a cell.
pub(super) trait JoinSide<T>: Send + Sync {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>>;
    fn is_finished(&self) -> bool;
    fn abort(self: Arc<Self>);
    /// The handle lets go of its reference: the last one, of a finished
    /// cell, recycles it.
    fn release(self: Arc<Self>);
}

/// The cell's lock, held, giving the handle's waker and the `published`
/// flag. The result itself is in the cell's [`Stage`], written before
/// `published` is set under the lock, and read by the handle only once it
/// sees `published` under the lock. (A byte-sized lock beside the other
/// small fields: `Mutex<{ waker, flag }>` took 32 bytes, this takes 18.)
pub(super) struct Joiner<'a> {
    lock: &'a RawMutex,
    waker: &'a UnsafeCell<Option<Waker>>,
    published: &'a UnsafeCell<bool>,
}

impl<'a> Joiner<'a> {
    pub(super) fn lock<F: Future>(cell: &'a Cell<F>) -> Self {
        cell.lock.lock();
        Joiner {
            lock: &cell.lock,
            waker: &cell.waker,
            published: &cell.published,
        }
    }

    pub(super) fn waker(&mut self) -> &mut Option<Waker> {
        // SAFETY: the lock is held while `self` lives.
        unsafe { &mut *self.waker.get() }
    }

    pub(super) fn published(&mut self) -> &mut bool {
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
    pub(super) fn of_cell(cell: Arc<dyn JoinSide<T>>) -> Self {
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
                    crate::log::error!(
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
