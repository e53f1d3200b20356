//! What a handle saw of Redis losing the semaphore's writes (see
//! `DESIGN.md`, "A lost record" and "A partial loss").

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Losses of the semaphore's state in Redis that one handle saw, from
/// [`Semaphore::losses`](crate::Semaphore::losses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Losses {
    /// Losses this handle found: the record gone, or a lease it held
    /// missing from it. Each started (or found) a quarantine of one TTL.
    pub detected: u64,
    /// Leases of this handle refused when registering again after a loss,
    /// the cap being full: each was held past the cap (an overshoot) from
    /// its grant until then, and is lost.
    pub refused: u64,
}

#[derive(Debug, Default)]
pub(crate) struct LossCounts {
    pub(crate) detected: AtomicU64,
    pub(crate) refused: AtomicU64,
}

impl LossCounts {
    pub(crate) fn snapshot(&self) -> Losses {
        Losses {
            detected: self.detected.load(Relaxed),
            refused: self.refused.load(Relaxed),
        }
    }
}
