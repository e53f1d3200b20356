//! A cell's reference to its pool: counted once the cell can outlive the
//! spawner's call, borrowed (uncounted) during an eager first poll, in one
//! word that also links a recycled cell in its free list.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::pool::Inner;

/// A cell's reference to its pool. A cell that reaches a lane owns a
/// counted reference. During an eager first poll the cell borrows the
/// spawner's (no count: two read-modify-writes saved on a line every spawn
/// shares), and it takes a count only if the future is left waiting. A cell
/// that finished in that poll never uses its pool again: only the winner of
/// `DONE` ends a cell, and wakes of a `DONE` cell do nothing.
///
/// One word: the pool's address, its low bit set when counted (`Inner` is
/// aligned to 8). A recycled cell's word, dangling and uncounted, links it
/// in its free list (`recycle.rs`).
pub(super) struct PoolRef {
    word: AtomicUsize,
}

/// The low bit of a `PoolRef`: the reference is counted.
const COUNTED: usize = 1;

impl PoolRef {
    pub(super) fn counted(pool: Arc<Inner>) -> Self {
        PoolRef {
            word: AtomicUsize::new(Arc::into_raw(pool) as usize | COUNTED),
        }
    }

    fn ptr(&self) -> *const Inner {
        (self.word.load(Relaxed) & !COUNTED) as *const Inner
    }

    /// The word itself: a recycled cell's link in its free list
    /// (`Recyclable::link`).
    pub(super) fn word(&self) -> &AtomicUsize {
        &self.word
    }

    /// # Safety
    /// Until [`count`](Self::count) runs, the cell uses its pool only while
    /// `pool` is alive (the spawner's call).
    pub(super) unsafe fn borrowed(pool: &Arc<Inner>) -> Self {
        const { assert!(std::mem::align_of::<Inner>() > COUNTED) };
        PoolRef {
            word: AtomicUsize::new(Arc::as_ptr(pool) as usize),
        }
    }

    /// Takes a count. Called once, by the spawner, while its own reference
    /// keeps the pool alive and before the cell can reach a lane.
    pub(super) fn count(&self) {
        // SAFETY: the address came from an `Arc<Inner>` that is alive (see
        // above).
        unsafe { Arc::increment_strong_count(self.ptr()) };
        // Only the spawner writes the word now: no read-modify-write needed.
        self.word.store(self.word.load(Relaxed) | COUNTED, Relaxed);
    }

    /// Takes the count away (the pool, if the reference was counted): the
    /// reference is left dangling, never to be used again.
    pub(super) fn take_count(&mut self) -> Option<Arc<Inner>> {
        let word = self.word.get_mut();
        if *word & COUNTED != 0 {
            *word &= !COUNTED;
            // SAFETY: the count taken by `counted` or `count`, handed over
            // once (the bit is now clear).
            Some(unsafe { Arc::from_raw((*word) as *const Inner) })
        } else {
            None
        }
    }
}

impl std::ops::Deref for PoolRef {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        // SAFETY: counted, the reference keeps the pool alive; borrowed, the
        // cell is in its eager first poll, within the spawner's call (see
        // the type's note on why a finished cell never gets here).
        unsafe { &*self.ptr() }
    }
}

impl Drop for PoolRef {
    fn drop(&mut self) {
        drop(self.take_count());
    }
}
