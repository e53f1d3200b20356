//! A counting global allocator.
//!
//! Every heap allocation of the process goes through [`CountingAlloc`], which
//! forwards to the system allocator. While counting is switched on with
//! [`start`], each `alloc`, `alloc_zeroed` and `realloc` call is counted;
//! [`stop`] switches counting off and returns the total.
//!
//! Counting must not disturb what is being measured, so the counter is
//! sharded: each thread bumps its own cache-line-sized slot, and the slots are
//! summed only when counting stops. While counting is off, the cost is one
//! relaxed load of a flag that is never written on the hot path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Number of counter slots; threads are spread over them round-robin.
const SHARDS: usize = 64;

/// One counter on its own cache line(s), so that threads do not contend.
#[repr(align(128))]
struct Shard(AtomicU64);

/// Whether allocations are being counted right now.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The sharded allocation counter.
static COUNTS: [Shard; SHARDS] = [const { Shard(AtomicU64::new(0)) }; SHARDS];
/// Hands out slot numbers to threads.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const`-initialised and without a destructor: reading it never
    // allocates and stays valid while the thread is being torn down.
    static MY_SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The global allocator of the benchmark binary: the system allocator plus an
/// optional allocation counter.
pub struct CountingAlloc;

impl CountingAlloc {
    #[inline]
    fn record(&self) {
        if ENABLED.load(Relaxed) {
            let slot = MY_SHARD
                .try_with(|slot| {
                    let mut index = slot.get();
                    if index == usize::MAX {
                        index = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
                        slot.set(index);
                    }
                    index
                })
                .unwrap_or(0);
            COUNTS[slot].0.fetch_add(1, Relaxed);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; `record` only touches
// atomics and a const thread-local, and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.record();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.record();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.record();
        // SAFETY: forwarded unchanged; `ptr` was allocated by `System` through
        // this allocator with `layout`, as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` was allocated by `System` through
        // this allocator with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Resets the counter and starts counting allocations on all threads.
pub fn start() {
    for shard in &COUNTS {
        shard.0.store(0, Relaxed);
    }
    ENABLED.store(true, Relaxed);
}

/// Stops counting and returns the number of allocations since [`start`].
///
/// Counting is approximate at the edges only: an allocation racing with
/// `start` or `stop` on another thread may or may not be counted.
pub fn stop() -> u64 {
    ENABLED.store(false, Relaxed);
    COUNTS.iter().map(|shard| shard.0.load(Relaxed)).sum()
}
