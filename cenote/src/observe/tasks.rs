//! The future pool's metrics, named after `aspnetcore.rate_limiting.*`
//! (the table in `observe/mod.rs`).

use super::series::{self, Kind};
use crate::tasks::Stats;

const POOL: &str = "cenote.pool.name";

const TABLE: &[(&str, Kind, &str)] = &[
    ("cenote.tasks.active", Kind::Gauge, "Futures in flight"),
    (
        "cenote.tasks.capacity",
        Kind::Gauge,
        "The most futures in flight at once",
    ),
    (
        "cenote.tasks.queued",
        Kind::Gauge,
        "Spawners waiting for a slot",
    ),
    (
        "cenote.tasks.spawns",
        Kind::Counter,
        "Spawns by result (accepted, rejected, timed_out)",
    ),
    (
        "cenote.tasks.completions",
        Kind::Counter,
        "Futures ended, by outcome",
    ),
    (
        "cenote.tasks.queue_time",
        Kind::Histogram,
        "Time a spawn waited for a slot",
    ),
];

/// The histogram a waiting spawn records its wait into: the time its
/// acquire spent in the pool semaphore's queue.
pub(crate) fn queue_time(pool: &std::sync::Arc<str>) -> metrics::Histogram {
    series::describe(TABLE);
    series::histogram("cenote.tasks.queue_time", POOL, pool)
}

/// Writes a future pool's levels and counters.
pub(crate) fn publish(pool: &std::sync::Arc<str>, s: &Stats) {
    series::describe(TABLE);
    let l = |extra: &[(&'static str, &'static str)]| series::labels(POOL, pool, extra);
    series::gauge("cenote.tasks.active", l(&[]), s.running);
    series::gauge("cenote.tasks.capacity", l(&[]), s.capacity);
    series::gauge("cenote.tasks.queued", l(&[]), s.waiting);
    for (result, n) in [
        ("accepted", s.spawned),
        ("rejected", s.rejected),
        ("timed_out", s.timed_out),
    ] {
        series::counter("cenote.tasks.spawns", l(&[("result", result)]), n);
    }
    for (outcome, n) in [
        ("completed", s.completed),
        ("panicked", s.panicked),
        ("aborted", s.aborted),
        ("cancelled", s.cancelled),
    ] {
        series::counter("cenote.tasks.completions", l(&[("outcome", outcome)]), n);
    }
}
