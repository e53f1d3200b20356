//! `JoinHandle`: the result of a task started with `spawn`, to `join` from a
//! thread or `.await` from async code.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::core::{Inner, TaskRunner};
use super::errors::JoinError;
use crate::sync::{deadline_after, Arc, AtomicBool, Condvar, Mutex, Ordering::*};

enum Slot<T> {
    Pending(Option<Waker>),
    Done(Result<T, JoinError>),
    Taken,
}

/// The state shared by a task and its handle: one allocation per `spawn`.
pub(crate) struct JoinState<T> {
    done: AtomicBool,
    slot: Mutex<Slot<T>>,
    cv: Condvar,
    /// Set by a scope: a panic nobody joined is reported to the scope.
    on_unjoined_panic: Option<Arc<AtomicBool>>,
}

impl<T> JoinState<T> {
    pub(crate) fn new(on_unjoined_panic: Option<Arc<AtomicBool>>) -> Arc<Self> {
        Arc::new(JoinState {
            done: AtomicBool::new(false),
            slot: Mutex::new(Slot::Pending(None)),
            cv: Condvar::new(),
            on_unjoined_panic,
        })
    }

    /// Stores the task's outcome and wakes whoever waits.
    pub(crate) fn complete(&self, result: Result<T, JoinError>) {
        let mut slot = self.slot.lock();
        let waker = match std::mem::replace(&mut *slot, Slot::Done(result)) {
            Slot::Pending(w) => w,
            // Completed twice cannot happen: a task runs at most once.
            Slot::Done(_) | Slot::Taken => None,
        };
        self.done.store(true, Release);
        drop(slot);
        self.cv.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for JoinState<T> {
    fn drop(&mut self) {
        if let Some(flag) = &self.on_unjoined_panic {
            if let Slot::Done(Err(JoinError::Panicked(_))) = &*self.slot.lock() {
                flag.store(true, SeqCst);
            }
        }
    }
}

/// Completes the handle with `Cancelled` if the task is dropped unrun.
pub(crate) struct CompleteOnDrop<T>(pub(crate) Option<Arc<JoinState<T>>>);

impl<T> CompleteOnDrop<T> {
    pub(crate) fn finish(mut self, result: Result<T, JoinError>) {
        if let Some(s) = self.0.take() {
            s.complete(result);
        }
    }
}

impl<T> Drop for CompleteOnDrop<T> {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.complete(Err(JoinError::Cancelled));
        }
    }
}

/// An owned handle to a task started with [`Pool::spawn`](super::Pool::spawn).
///
/// `join()` blocks the calling thread; `join_timeout(d)` bounds the wait and
/// leaves the handle usable on timeout; `is_finished()` polls; and the
/// handle is a `Future`, so async code can `.await` a blocking job without
/// blocking its executor. A panic in the task arrives as
/// [`JoinError::Panicked`] carrying the payload. Dropping the handle detaches
/// the task: it still runs.
#[must_use = "dropping a JoinHandle detaches the task; join it to see its result or panic"]
pub struct JoinHandle<T> {
    state: Arc<JoinState<T>>,
    /// The pool that runs the task: a `join` on one of its own threads runs
    /// queued tasks while it waits, so joining never idles a pool thread
    /// (with one thread, it is the only way the task can run).
    pool: Option<Arc<Inner<TaskRunner>>>,
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(state: Arc<JoinState<T>>, pool: Option<Arc<Inner<TaskRunner>>>) -> Self {
        JoinHandle { state, pool }
    }

    /// True once the task has finished (returned, panicked or was dropped).
    pub fn is_finished(&self) -> bool {
        self.state.done.load(Acquire)
    }

    /// Blocks until the task finishes and returns its value.
    pub fn join(mut self) -> Result<T, JoinError> {
        self.wait(None, Duration::MAX)
    }

    /// Waits at most `timeout`. On `Err(JoinError::TimedOut(_))` the task keeps
    /// running and the handle can be joined again. A huge duration means no
    /// deadline.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<T, JoinError> {
        self.wait(deadline_after(timeout), timeout)
    }

    fn wait(&mut self, deadline: Option<Instant>, asked: Duration) -> Result<T, JoinError> {
        let helper = self.pool.as_ref().filter(|p| p.is_own_worker());
        let mut slot = self.state.slot.lock();
        loop {
            match std::mem::replace(&mut *slot, Slot::Taken) {
                Slot::Done(r) => return r,
                Slot::Taken => return Err(JoinError::AlreadyJoined),
                pending @ Slot::Pending(_) => *slot = pending,
            }
            let mut until = deadline;
            if let Some(pool) = helper {
                drop(slot);
                let helped = pool.help_one();
                slot = self.state.slot.lock();
                if helped {
                    continue;
                }
                // Nothing queued now; look again soon (new work may arrive).
                let soon = Instant::now() + Duration::from_millis(1);
                until = Some(deadline.map_or(soon, |d| d.min(soon)));
            }
            let woke_by_deadline = self.state.cv.wait_until(&mut slot, until);
            if woke_by_deadline
                && !matches!(&*slot, Slot::Done(_))
                && deadline.is_some_and(|d| Instant::now() >= d)
            {
                return Err(JoinError::TimedOut(asked));
            }
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.state.slot.lock();
        match std::mem::replace(&mut *slot, Slot::Taken) {
            Slot::Done(r) => Poll::Ready(r),
            Slot::Taken => Poll::Ready(Err(JoinError::AlreadyJoined)),
            Slot::Pending(w) => {
                let w = match w {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                *slot = Slot::Pending(Some(w));
                Poll::Pending
            }
        }
    }
}
