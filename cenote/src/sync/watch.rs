//! Watching before parking: a blocked thread that is the next to be served
//! checks for its wake-up for a short while, yielding its core between
//! checks, before it parks. A hand-over to a parked thread leaves what it
//! waits for unused until the thread is back on a core (a futex wake-up and
//! a reschedule, tens of microseconds on a VM), and between two threads
//! taking turns that was nearly all of the time (`limit/DESIGN.md`, "Two
//! threads, one permit"; `resources/DESIGN.md`, Threads).

use std::time::{Duration, Instant};

/// How long a waiter watches before it parks: about what a wake-up of a
/// parked thread costs on a VM.
pub(crate) const WATCH: Duration = Duration::from_micros(50);

/// Calls `ready` until it gives a value, for up to [`WATCH`] (or until
/// `deadline`, if sooner), yielding the core between calls. `None` once the
/// time is up: the caller parks then.
pub(crate) fn watch<T>(
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> Option<T>,
) -> Option<T> {
    let start = Instant::now();
    let limit = deadline.map_or(WATCH, |d| WATCH.min(d.saturating_duration_since(start)));
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::yield_now();
    }
}
