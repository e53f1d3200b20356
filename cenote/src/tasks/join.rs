//! The handle to a spawned future's result, and the wrapper that runs the
//! future inside a lane.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use super::errors::JoinError;
use super::pool::Inner;

/// What the future's side and the handle's side share.
pub(crate) struct Shared<T> {
    /// Set once the result is stored (or the future is gone).
    finished: AtomicBool,
    /// Set by `abort`; the lane drops the future at its next poll.
    aborted: AtomicBool,
    slot: Mutex<Slot<T>>,
}

struct Slot<T> {
    result: Option<Result<T, JoinError>>,
    /// The task awaiting the handle.
    joiner: Option<Waker>,
    /// The lane's waker for this future, kept while it is pending, so that
    /// `abort` can have it polled (and dropped) at once.
    runner: Option<Waker>,
}

impl<T> Shared<T> {
    fn new() -> Self {
        Shared {
            finished: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            slot: Mutex::new(Slot {
                result: None,
                joiner: None,
                runner: None,
            }),
        }
    }

    fn complete(&self, result: Result<T, JoinError>) {
        let mut slot = self.slot.lock();
        slot.result = Some(result);
        slot.runner = None;
        let joiner = slot.joiner.take();
        self.finished.store(true, Release);
        drop(slot);
        if let Some(w) = joiner {
            w.wake();
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
    shared: Arc<Shared<T>>,
    taken: bool,
}

impl<T> JoinHandle<T> {
    /// Whether the future has finished (with a value, a panic, or aborted).
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(Acquire)
    }

    /// Asks for the future to be dropped: it is not polled again, its slot
    /// in the pool comes free, and the handle yields [`JoinError::Aborted`]
    /// (unless it finished first, then it yields its result). A future
    /// waiting on a `spawn_blocking` closure stops waiting, but the closure,
    /// once started, runs to its end on its thread.
    pub fn abort(&self) {
        self.shared.aborted.store(true, Release);
        let runner = self.shared.slot.lock().runner.take();
        if let Some(w) = runner {
            w.wake();
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.taken, "JoinHandle polled after it yielded its result");
        let mut slot = self.shared.slot.lock();
        if let Some(result) = slot.result.take() {
            drop(slot);
            self.taken = true;
            return Poll::Ready(result);
        }
        match &slot.joiner {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.joiner = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

pin_project_lite::pin_project! {
    /// A spawned future as its lane holds it: polls the user's future under
    /// `catch_unwind`, and on the way out (result, panic, abort, or being
    /// dropped unfinished) drops that future, gives the slot back and
    /// publishes the result, in that order.
    pub(crate) struct Task<F: Future> {
        #[pin]
        fut: Option<F>,
        shared: Arc<Shared<F::Output>>,
        pool: Arc<Inner>,
        lane: usize,
    }

    impl<F: Future> PinnedDrop for Task<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if this.fut.is_some() {
                // Dropped unfinished: by abort-all, or by a runtime that shut
                // down (the lane is gone with it).
                let why = if this.shared.aborted.load(Acquire) || this.pool.aborting() {
                    Outcome::Aborted
                } else {
                    Outcome::Cancelled
                };
                finish(this.fut, this.shared, this.pool, *this.lane, why, None);
            }
        }
    }
}

/// How a spawned future ended, for the pool's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Panicked,
    Aborted,
    Cancelled,
}

/// Makes a task and the handle to its result.
pub(crate) fn task<F>(fut: F, pool: Arc<Inner>, lane: usize) -> (Task<F>, JoinHandle<F::Output>)
where
    F: Future,
{
    let shared = Arc::new(Shared::new());
    let handle = JoinHandle {
        shared: shared.clone(),
        taken: false,
    };
    let task = Task {
        fut: Some(fut),
        shared,
        pool,
        lane,
    };
    (task, handle)
}

impl<F: Future> Future for Task<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        if this.shared.aborted.load(Acquire) {
            finish(this.fut, this.shared, this.pool, *this.lane, Outcome::Aborted, None);
            return Poll::Ready(());
        }
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => {
                let mut slot = this.shared.slot.lock();
                match &slot.runner {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => slot.runner = Some(cx.waker().clone()),
                }
                drop(slot);
                // An abort between the check above and the store just made
                // found no waker to wake: look again.
                if this.shared.aborted.load(Acquire) {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
            Ok(Poll::Ready(value)) => {
                let why = Outcome::Completed;
                finish(this.fut, this.shared, this.pool, *this.lane, why, Some(Ok(value)));
                Poll::Ready(())
            }
            Err(payload) => {
                this.pool.report_panic(payload.as_ref());
                let err = Err(JoinError::Panicked(payload));
                finish(this.fut, this.shared, this.pool, *this.lane, Outcome::Panicked, Some(err));
                Poll::Ready(())
            }
        }
    }
}

/// Drops the future (its own drop may panic: caught and reported), gives
/// the slot back, publishes the result, and counts the outcome.
fn finish<F: Future>(
    mut fut: Pin<&mut Option<F>>,
    shared: &Shared<F::Output>,
    pool: &Inner,
    lane: usize,
    outcome: Outcome,
    result: Option<Result<F::Output, JoinError>>,
) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| fut.set(None))) {
        pool.report_panic(payload.as_ref());
    }
    pool.release_slot();
    let result = result.unwrap_or(Err(match outcome {
        Outcome::Cancelled => JoinError::Cancelled,
        _ => JoinError::Aborted,
    }));
    shared.complete(result);
    pool.finished(lane, outcome);
}
