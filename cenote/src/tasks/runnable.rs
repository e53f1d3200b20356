//! A cell as its lane sees it: the [`Runnable`] trait, the [`Header`]
//! every cell starts with, and the conversion between a cell's reference
//! and its link in a lane's run queue (`runq.rs`). A lane holds cells of
//! every future type, so it knows them only through this.

use std::future::Future;
use std::ptr::NonNull;
use std::sync::Arc;

use super::cell::Cell;
use super::lane::{Job, Lane, Registry};
use super::runq::Link;

/// Not yet in its lane's registry.
pub(crate) const UNREGISTERED: u32 = u32::MAX;

/// A cell as its lane sees it.
///
/// # Safety
/// Implemented by [`Cell`] alone, which is `#[repr(C)]` and starts with a
/// [`Header`]: a lane's run queue takes a `Job` by its address (the link)
/// and makes it a `Job` again with the header's `job` function
/// ([`into_link`], [`from_link`]).
pub(crate) unsafe trait Runnable: Send + Sync + 'static {
    /// Polls the future once, or only files it (see `Begin::File`); true
    /// when it polled. Driver only.
    fn run(self: Arc<Self>, registry: &mut Registry) -> bool;
    /// Drops the future unfinished (if it is not gone already) and
    /// completes the handle with `outcome`. Driver only, or after the
    /// driver is gone.
    fn cancel(&self, outcome: Outcome);
    /// After an eager first poll returned `Pending` (the cell is still
    /// RUNNING, so no wake could queue it yet): queued on its lane, to be
    /// polled if a wake came meanwhile, otherwise only to be filed in the
    /// registry (`CellState::end_eager`).
    ///
    /// # Safety
    /// The caller holds another reference to the cell (its `JoinHandle`)
    /// across the call.
    unsafe fn settle_eager(self: Arc<Self>, lane: &Lane);
}

/// The start of every cell: its link in a lane's run queue, and how to make
/// a [`Job`] of the cell again when the queue hands the link back.
#[repr(C)]
pub(crate) struct Header {
    link: Link,
    job: unsafe fn(NonNull<Link>) -> Job,
}

impl Header {
    /// The header of a `Cell<F>`: an unlinked link, and `F`'s `job`.
    #[inline]
    pub(super) fn of<F>() -> Header
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Header {
            link: Link::new(),
            job: job_of::<F>,
        }
    }
}

/// # Safety
/// `link` is the link (so the address) of a `Cell<F>`, and the caller owns
/// a strong reference to it that `Arc::into_raw` gave.
unsafe fn job_of<F>(link: NonNull<Link>) -> Job
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // SAFETY: per the caller.
    unsafe { Arc::from_raw(link.as_ptr().cast::<Cell<F>>().cast_const()) }
}

/// Hands `job`'s reference over as its cell's queue link.
#[inline]
pub(crate) fn into_link(job: Job) -> NonNull<Link> {
    // The data pointer of a `Job` is its cell's address, which is its
    // link's (`Runnable`'s contract).
    let at = Arc::into_raw(job) as *const Link;
    // SAFETY: `Arc::into_raw` never returns null.
    unsafe { NonNull::new_unchecked(at.cast_mut()) }
}

/// Takes back the reference that [`into_link`] handed over.
///
/// # Safety
/// `link` came from `into_link`, and its reference was not taken back yet.
#[inline]
pub(crate) unsafe fn from_link(link: NonNull<Link>) -> Job {
    // SAFETY: the cell is alive (its reference is ours) and starts with
    // its header (`Runnable`'s contract); `job` is its own type's.
    unsafe {
        let job = (*link.as_ptr().cast::<Header>()).job;
        job(link)
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
