//! Spin-then-yield back-off for short searches and waits: crossbeam's, or
//! under loom one that gives up at once.

/// Spin-then-yield back-off for short searches.
#[cfg(not(loom))]
pub(crate) use crossbeam_utils::Backoff;

/// Under loom a search gives up at once (spinning only multiplies states).
#[cfg(loom)]
pub(crate) struct Backoff;

#[cfg(loom)]
impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff
    }
    pub(crate) fn snooze(&self) {
        loom::thread::yield_now();
    }
    pub(crate) fn is_completed(&self) -> bool {
        true
    }
}
