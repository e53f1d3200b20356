//! The eager first poll: a spawn from a task of the pool's runtime polls
//! the future once itself (`Builder::eager_start`). A future that finishes
//! there never reaches a lane; its cell ends on the spot and stays with the
//! thread (`spare.rs`) for its next spawn of the same type.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::fence;
use std::sync::atomic::Ordering::Acquire;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::task::waker_ref;

use super::cell::{Cell, Owned};
use super::errors::JoinError;
use super::join::JoinHandle;
use super::lane::Job;
use super::pool::Inner;
use super::pool_ref::PoolRef;
use super::protocol::CellState;
use super::runnable::Outcome;
use super::spare;

/// What a spawner's eager first poll of a future came to.
pub(crate) enum FirstPoll<T> {
    /// The future finished (or panicked) and is dropped; its slot is still
    /// held, for the caller to give back.
    Finished(Result<T, JoinError>, Outcome),
    /// The future waits. Its cell is still RUNNING: the caller counts it
    /// live, then calls
    /// [`Runnable::settle_eager`](super::runnable::Runnable::settle_eager).
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
