//! Counts of the resource pool: `stats()`, counters since the pool was
//! built and the gauges at that moment.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Why a resource was destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DestroyReason {
    /// The manager's `is_broken` said so when it came back or at checkout.
    Broken,
    /// Past its `max_lifetime`.
    Expired,
    /// Idle longer than `idle_timeout`.
    Idle,
    /// A check or reset failed or timed out (or a checkout hook refused it).
    FailedCheck,
    /// Its borrower panicked while holding it.
    Panicked,
    /// Removed by `retain`, `evict_idle`, a shrinking `resize`, or the pool
    /// being closed or dropped.
    Evicted,
}

/// Wait-time buckets: bucket `i` counts waits below `2^i` µs (the last
/// bucket, everything longer).
pub const WAIT_BUCKETS: usize = 24;

/// Counters since the pool was built, and the gauges at the moment of the
/// snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live resources (idle, lent, being created or checked).
    pub size: usize,
    /// Idle resources.
    pub idle: usize,
    /// Resources lent to callers (and being created or checked for them).
    pub in_use: usize,
    /// Callers waiting for a resource.
    pub waiting: usize,
    /// The bound on `size`.
    pub capacity: usize,
    /// Gets served without waiting for a permit.
    pub served_at_once: u64,
    /// Gets served after waiting.
    pub served_after_wait: u64,
    /// Gets that timed out.
    pub timed_out: u64,
    /// Gets refused because `max_waiting` callers waited.
    pub shed: u64,
    /// Wait histogram, recorded only with
    /// [`Builder::histograms`](super::Builder::histograms) (else all zero):
    /// `wait_histogram[i]` counts gets whose wait for a permit was below
    /// `2^i` µs (the last bucket: longer). Gets served at once count in
    /// bucket 0.
    pub wait_histogram: [u64; WAIT_BUCKETS],
    /// Resources created.
    pub created: u64,
    /// Creates that failed or timed out.
    pub create_failures: u64,
    /// Checks and resets that failed or timed out.
    pub check_failures: u64,
    /// Destroyed because broken.
    pub destroyed_broken: u64,
    /// Destroyed because past their lifetime.
    pub destroyed_expired: u64,
    /// Destroyed because idle too long.
    pub destroyed_idle: u64,
    /// Destroyed because a check or reset failed.
    pub destroyed_failed_check: u64,
    /// Destroyed because their borrower panicked.
    pub destroyed_panicked: u64,
    /// Destroyed by `retain`, `evict_idle`, `resize` or close.
    pub destroyed_evicted: u64,
    /// Leaks reported (a resource lent longer than `leak_threshold`).
    pub leaks_reported: u64,
}

impl Stats {
    /// Resources destroyed, for every reason.
    pub fn destroyed(&self) -> u64 {
        self.destroyed_broken
            + self.destroyed_expired
            + self.destroyed_idle
            + self.destroyed_failed_check
            + self.destroyed_panicked
            + self.destroyed_evicted
    }

    /// The wait below which `q` (0 to 1) of the gets were served, as a
    /// bucket's upper bound (`None` if no get was served).
    pub fn wait_quantile(&self, q: f64) -> Option<Duration> {
        let served: u64 = self.wait_histogram.iter().sum();
        if served == 0 {
            return None;
        }
        let want = ((served as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.wait_histogram.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some(Duration::from_micros(1u64 << i));
            }
        }
        Some(Duration::from_micros(1u64 << (WAIT_BUCKETS - 1)))
    }
}

/// A counter that every get bumps, from any thread: one cache line per
/// stripe, each thread adding to its own, readers summing. A single atomic
/// bounced between the cores on every get: dropping it made a pool with as
/// many resources as borrowing tasks on two workers about 7% faster.
pub(crate) struct Striped([crossbeam_utils::CachePadded<AtomicU64>; STRIPES]);

const STRIPES: usize = 8;

impl Default for Striped {
    fn default() -> Self {
        Striped(std::array::from_fn(|_| Default::default()))
    }
}

impl Striped {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0[crate::sync::thread::stripe() % STRIPES].fetch_add(n, Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0.iter().map(|c| c.load(Relaxed)).sum()
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) served_at_once: Striped,
    pub(crate) served_after_wait: Striped,
    pub(crate) timed_out: AtomicU64,
    pub(crate) shed: AtomicU64,
    pub(crate) wait_histogram: [AtomicU64; WAIT_BUCKETS],
    pub(crate) created: AtomicU64,
    pub(crate) create_failures: AtomicU64,
    pub(crate) check_failures: AtomicU64,
    pub(crate) destroyed: [AtomicU64; 6],
    pub(crate) leaks_reported: AtomicU64,
}

impl Counters {
    /// A get served after a wait that began at `t0`; its duration goes to
    /// the histogram if `histogram`.
    #[inline]
    pub(crate) fn waited(&self, t0: Instant, histogram: bool) {
        self.served_after_wait.add(1);
        if histogram {
            self.record_wait(t0.elapsed());
        }
    }

    fn record_wait(&self, wait: Duration) {
        // Microseconds in 64-bit arithmetic (`as_micros` is a 128-bit
        // division).
        let us = wait
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(wait.subsec_micros()));
        // Bucket i: below 2^i µs.
        let i = (u64::BITS - us.leading_zeros()) as usize;
        self.wait_histogram[i.min(WAIT_BUCKETS - 1)].fetch_add(1, Relaxed);
    }

    pub(crate) fn destroyed(&self, reason: DestroyReason) {
        self.destroyed[reason as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, histogram: bool) -> Stats {
        let at_once = self.served_at_once.sum();
        let mut hist = [0; WAIT_BUCKETS];
        if histogram {
            for (h, a) in hist.iter_mut().zip(&self.wait_histogram) {
                *h = a.load(Relaxed);
            }
            hist[0] += at_once;
        }
        let d = |r: DestroyReason| self.destroyed[r as usize].load(Relaxed);
        Stats {
            served_at_once: at_once,
            served_after_wait: self.served_after_wait.sum(),
            timed_out: self.timed_out.load(Relaxed),
            shed: self.shed.load(Relaxed),
            wait_histogram: hist,
            created: self.created.load(Relaxed),
            create_failures: self.create_failures.load(Relaxed),
            check_failures: self.check_failures.load(Relaxed),
            destroyed_broken: d(DestroyReason::Broken),
            destroyed_expired: d(DestroyReason::Expired),
            destroyed_idle: d(DestroyReason::Idle),
            destroyed_failed_check: d(DestroyReason::FailedCheck),
            destroyed_panicked: d(DestroyReason::Panicked),
            destroyed_evicted: d(DestroyReason::Evicted),
            leaks_reported: self.leaks_reported.load(Relaxed),
            ..Stats::default()
        }
    }
}
