//! The resource pool's metrics: OpenTelemetry's database-client
//! connection-pool names (semantic conventions v1.44), and cenote's extras
//! under `cenote.resources.*` (the table in `observe/mod.rs`).

use std::sync::Arc;
use std::time::Duration;

use metrics::Histogram;

use super::series::{self, Kind};
use crate::resources::Stats;

const POOL: &str = "db.client.connection.pool.name";

const TABLE: &[(&str, Kind, &str)] = &[
    (
        "db.client.connection.count",
        Kind::Gauge,
        "Live connections, by state (idle or used)",
    ),
    (
        "db.client.connection.idle.max",
        Kind::Gauge,
        "The most idle connections kept",
    ),
    (
        "db.client.connection.idle.min",
        Kind::Gauge,
        "The fewest idle connections kept (min_idle)",
    ),
    (
        "db.client.connection.max",
        Kind::Gauge,
        "The most connections open at once",
    ),
    (
        "db.client.connection.pending_requests",
        Kind::Gauge,
        "Gets waiting for a connection",
    ),
    (
        "db.client.connection.timeouts",
        Kind::Counter,
        "Gets that timed out",
    ),
    (
        "db.client.connection.create_time",
        Kind::Histogram,
        "Time to create a connection",
    ),
    (
        "db.client.connection.wait_time",
        Kind::Histogram,
        "Time a get waited for a permit",
    ),
    (
        "db.client.connection.use_time",
        Kind::Histogram,
        "Time from lending a connection to its return",
    ),
    (
        "cenote.resources.closed",
        Kind::Counter,
        "Connections destroyed, by reason",
    ),
    (
        "cenote.resources.create_errors",
        Kind::Counter,
        "Failed creates, by error type",
    ),
    (
        "cenote.resources.rejected",
        Kind::Counter,
        "Gets refused at max_waiting",
    ),
    ("cenote.resources.leaks", Kind::Counter, "Leak reports"),
    (
        "cenote.resources.check_time",
        Kind::Histogram,
        "Time of each health check",
    ),
];

/// One resource pool's histogram handles (taken at build) and name.
pub(crate) struct ResourceMetrics {
    pool: Arc<str>,
    create_time: Histogram,
    wait_time: Histogram,
    use_time: Histogram,
    check_time: Histogram,
}

impl ResourceMetrics {
    pub(crate) fn new(pool: Arc<str>) -> Self {
        series::describe(TABLE);
        let h = |name: &'static str| series::histogram(name, POOL, &pool);
        ResourceMetrics {
            create_time: h("db.client.connection.create_time"),
            wait_time: h("db.client.connection.wait_time"),
            use_time: h("db.client.connection.use_time"),
            check_time: h("cenote.resources.check_time"),
            pool,
        }
    }

    pub(crate) fn created_in(&self, d: Duration) {
        self.create_time.record(d.as_secs_f64());
    }

    pub(crate) fn waited(&self, d: Duration) {
        self.wait_time.record(d.as_secs_f64());
    }

    pub(crate) fn used_for(&self, d: Duration) {
        self.use_time.record(d.as_secs_f64());
    }

    pub(crate) fn checked_in(&self, d: Duration) {
        self.check_time.record(d.as_secs_f64());
    }

    /// A failed create, by `error_type` (the manager's error type, or
    /// `timeout`).
    pub(crate) fn create_error(&self, error_type: &'static str) {
        metrics::counter!(
            "cenote.resources.create_errors",
            series::labels(POOL, &self.pool, &[("error.type", error_type)])
        )
        .increment(1);
    }

    /// Writes the levels and counters of `s` (and `min_idle`).
    pub(crate) fn publish(&self, s: &Stats, min_idle: usize) {
        series::describe(TABLE);
        let l = |extra: &[(&'static str, &'static str)]| series::labels(POOL, &self.pool, extra);
        let state = "db.client.connection.state";
        series::gauge("db.client.connection.count", l(&[(state, "idle")]), s.idle);
        let used = s.size.saturating_sub(s.idle);
        series::gauge("db.client.connection.count", l(&[(state, "used")]), used);
        series::gauge("db.client.connection.idle.max", l(&[]), s.capacity);
        series::gauge("db.client.connection.idle.min", l(&[]), min_idle);
        series::gauge("db.client.connection.max", l(&[]), s.capacity);
        series::gauge("db.client.connection.pending_requests", l(&[]), s.waiting);
        series::counter("db.client.connection.timeouts", l(&[]), s.timed_out);
        let closed = [
            ("broken", s.destroyed_broken),
            ("expired", s.destroyed_expired),
            ("idle", s.destroyed_idle),
            ("failed_check", s.destroyed_failed_check),
            ("panicked", s.destroyed_panicked),
            ("evicted", s.destroyed_evicted),
        ];
        for (reason, n) in closed {
            series::counter("cenote.resources.closed", l(&[("reason", reason)]), n);
        }
        series::counter("cenote.resources.rejected", l(&[]), s.shed);
        series::counter("cenote.resources.leaks", l(&[]), s.leaks_reported);
    }
}
