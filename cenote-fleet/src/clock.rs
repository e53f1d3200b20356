//! Redis's clock read on this process's monotonic clock, never late.
//!
//! Leases expire on Redis's clock (`TIME`), so client clocks may be skewed
//! freely; a holder still needs to know locally when its lease ends. Every
//! script reply carries Redis's `now`, read while the script ran, which is
//! after the call was sent. So a Redis instant `T` falls, locally, no
//! earlier than `sent + (T - now)`: a local deadline computed that way is
//! never after the lease's real end. Only durations cross between the
//! clocks; a margin covers their rates differing (parts per million).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// What one sample (the latest) says about Redis's clock.
#[derive(Debug)]
pub(crate) struct RedisClock {
    base: Instant,
    /// `sent - now` of the latest sample, in µs (sent since `base`).
    offset_us: AtomicI64,
    sampled: AtomicBool,
}

impl RedisClock {
    pub(crate) fn new() -> RedisClock {
        RedisClock {
            base: Instant::now(),
            offset_us: AtomicI64::new(0),
            sampled: AtomicBool::new(false),
        }
    }

    /// A reply to a call sent at `sent` said Redis's time was `now_us`.
    pub(crate) fn sample(&self, sent: Instant, now_us: i64) {
        let sent_us = sent.saturating_duration_since(self.base).as_micros() as i64;
        self.offset_us.store(sent_us - now_us, Relaxed);
        self.sampled.store(true, Relaxed);
    }

    /// The local instant no later than Redis's `at_us` (µs since the epoch,
    /// on Redis's clock), less a margin for clock rates: 1 ms plus 0.1% of
    /// the time left. `None` before any sample.
    pub(crate) fn local(&self, at_us: i64) -> Option<Instant> {
        if !self.sampled.load(Relaxed) {
            return None;
        }
        let since_base = at_us + self.offset_us.load(Relaxed);
        let now_since_base = Instant::now()
            .saturating_duration_since(self.base)
            .as_micros() as i64;
        let left = (since_base - now_since_base).max(0);
        let margin = 1_000 + left / 1_000;
        let us = (since_base - margin).max(0) as u64;
        Some(self.base + Duration::from_micros(us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_never_after_the_redis_instant() {
        let c = RedisClock::new();
        assert!(c.local(0).is_none());
        let sent = Instant::now();
        // Redis said 1_000_000_000 µs (some epoch time) when the reply came.
        c.sample(sent, 1_000_000_000);
        // A lease ending 2 s later on Redis's clock ends locally before
        // sent + 2 s (the call's flight counts against the holder).
        let d = c.local(1_002_000_000).unwrap();
        assert!(d <= sent + Duration::from_secs(2));
        assert!(d >= sent + Duration::from_millis(1_990));
    }
}
