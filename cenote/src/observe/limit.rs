//! The semaphore's metrics, named after `aspnetcore.rate_limiting.*` (the
//! table in `observe/mod.rs`): its levels, read from the semaphore at each
//! publishing, and its requests by result (its `Tally`, kept only with
//! the `metrics` feature).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use super::name::PoolName;
use super::publish;
use super::series::{self, Kind};
use crate::limit::Semaphore;

const POOL: &str = "cenote.pool.name";

const TABLE: &[(&str, Kind, &str)] = &[
    ("cenote.limit.leases", Kind::Gauge, "Permits held"),
    ("cenote.limit.capacity", Kind::Gauge, "Permits in all"),
    (
        "cenote.limit.queued",
        Kind::Gauge,
        "Requests waiting for a permit",
    ),
    ("cenote.limit.requests", Kind::Counter, "Requests by result"),
    (
        "cenote.limit.requests.queued",
        Kind::Counter,
        "Acquires that had to wait",
    ),
    (
        "cenote.limit.queue_time",
        Kind::Histogram,
        "Time a queued acquire waited",
    ),
];

/// Publishes `sem`'s levels under `name` for as long as it lives; returns
/// the name it got.
pub(crate) fn register(sem: &Arc<Semaphore>, name: Option<&str>) -> String {
    let name = PoolName::claim("limit", name);
    let claimed = name.as_str().to_owned();
    series::describe(TABLE);
    let queue_time = series::histogram("cenote.limit.queue_time", POOL, &name.shared());
    let _ = sem.tally.queue_time.set(Box::new(queue_time));
    let sem: Weak<Semaphore> = Arc::downgrade(sem);
    publish::register_fn(Box::new(move || {
        let Some(sem) = sem.upgrade() else {
            return false;
        };
        series::describe(TABLE);
        let pool = name.shared();
        let l = || series::labels(POOL, &pool, &[]);
        series::gauge("cenote.limit.leases", l(), sem.in_use());
        series::gauge("cenote.limit.capacity", l(), sem.permits());
        series::gauge("cenote.limit.queued", l(), sem.waiting());
        let t = &sem.tally;
        let r = |result| series::labels(POOL, &pool, &[("result", result)]);
        for (result, n) in [
            ("acquired", &t.acquired),
            ("rejected", &t.rejected),
            ("abandoned", &t.abandoned),
            ("closed", &t.closed),
        ] {
            series::counter("cenote.limit.requests", r(result), n.load(Relaxed));
        }
        series::counter("cenote.limit.requests.queued", l(), t.queued.load(Relaxed));
        true
    }));
    claimed
}
