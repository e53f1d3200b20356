//! The load half of a Dekker-style hand-shake: SeqCst, or a
//! read-modify-write under loom, whose SeqCst is weaker.

use super::{AtomicU64, AtomicUsize, Ordering};

/// A load that is one half of a Dekker-style hand-shake (see
/// `workers/DESIGN.md`, "Why no wake-up and no job is lost").
///
/// Outside loom it is a SeqCst load, which the C++ memory model orders
/// against the other side's SeqCst read-modify-write (and which costs a
/// plain `mov` on x86). Loom models SeqCst as AcqRel, under which such a
/// hand-shake can fail in the model though not on real hardware, so under
/// loom the load is a read-modify-write (`fetch_add(0)`): RMWs always read
/// the latest value, which restores the guarantee in the model.
pub(crate) trait HandshakeLoad {
    type Value;
    fn handshake_load(&self) -> Self::Value;
}

impl HandshakeLoad for AtomicU64 {
    type Value = u64;
    #[inline]
    fn handshake_load(&self) -> u64 {
        #[cfg(not(loom))]
        {
            self.load(Ordering::SeqCst)
        }
        #[cfg(loom)]
        {
            self.fetch_add(0, Ordering::SeqCst)
        }
    }
}

impl HandshakeLoad for AtomicUsize {
    type Value = usize;
    #[inline]
    fn handshake_load(&self) -> usize {
        #[cfg(not(loom))]
        {
            self.load(Ordering::SeqCst)
        }
        #[cfg(loom)]
        {
            self.fetch_add(0, Ordering::SeqCst)
        }
    }
}
