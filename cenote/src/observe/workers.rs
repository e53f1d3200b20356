//! The thread pool's metrics, named after `dotnet.thread_pool.*` (the
//! table in `observe/mod.rs`).

use super::series::{self, Kind};
use crate::workers::Stats;

const POOL: &str = "cenote.pool.name";

const TABLE: &[(&str, Kind, &str)] = &[
    (
        "cenote.workers.thread.count",
        Kind::Gauge,
        "Threads alive, by state (busy or idle)",
    ),
    (
        "cenote.workers.capacity",
        Kind::Gauge,
        "The most threads at once",
    ),
    ("cenote.workers.queue.length", Kind::Gauge, "Tasks queued"),
    (
        "cenote.workers.waiting",
        Kind::Gauge,
        "Submitters blocked, waiting for room",
    ),
    (
        "cenote.workers.tasks",
        Kind::Counter,
        "Tasks by outcome (completed, panicked, rejected)",
    ),
    (
        "cenote.workers.ran_on_caller",
        Kind::Counter,
        "Tasks run on the submitting thread",
    ),
    (
        "cenote.workers.thread.started",
        Kind::Counter,
        "Threads started",
    ),
    (
        "cenote.workers.thread.retired",
        Kind::Counter,
        "Threads that exited",
    ),
    (
        "cenote.workers.queue_time",
        Kind::Histogram,
        "Time a submitter waited for room",
    ),
];

/// The histogram a blocked submit records its wait into.
pub(crate) fn queue_time(pool: &std::sync::Arc<str>) -> metrics::Histogram {
    series::describe(TABLE);
    series::histogram("cenote.workers.queue_time", POOL, pool)
}

/// Writes a thread pool's levels and counters.
pub(crate) fn publish(pool: &std::sync::Arc<str>, s: &Stats) {
    series::describe(TABLE);
    let l = |extra: &[(&'static str, &'static str)]| series::labels(POOL, pool, extra);
    let busy = s.running.saturating_sub(s.idle);
    series::gauge("cenote.workers.thread.count", l(&[("state", "busy")]), busy);
    series::gauge(
        "cenote.workers.thread.count",
        l(&[("state", "idle")]),
        s.idle,
    );
    series::gauge("cenote.workers.capacity", l(&[]), s.capacity);
    series::gauge("cenote.workers.queue.length", l(&[]), s.queued);
    series::gauge("cenote.workers.waiting", l(&[]), s.waiting);
    for (outcome, n) in [
        ("completed", s.completed),
        ("panicked", s.panicked),
        ("rejected", s.rejected),
    ] {
        series::counter("cenote.workers.tasks", l(&[("outcome", outcome)]), n);
    }
    series::counter("cenote.workers.ran_on_caller", l(&[]), s.ran_on_caller);
    series::counter("cenote.workers.thread.started", l(&[]), s.threads_started);
    series::counter("cenote.workers.thread.retired", l(&[]), s.threads_retired);
}
