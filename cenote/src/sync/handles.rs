//! The count of a pool's user handles (its `Pool` clones, apart from the
//! `Arc` references its workers, tasks and guards hold), so that the last
//! handle's drop can close the pool.

use super::{AtomicUsize, Ordering::*};

/// Live user handles of a pool: one at build, one more per clone.
pub(crate) struct HandleCount(AtomicUsize);

impl HandleCount {
    /// The count of the handle `build` returns.
    pub(crate) fn new() -> Self {
        HandleCount(AtomicUsize::new(1))
    }

    /// A handle was cloned (from a live one, so the count stays above 0).
    #[inline]
    pub(crate) fn cloned(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    /// A handle was dropped; true for the last one, whose drop then closes
    /// the pool (AcqRel: every other handle's use comes before the close).
    #[inline]
    pub(crate) fn dropped(&self) -> bool {
        self.0.fetch_sub(1, AcqRel) == 1
    }
}
