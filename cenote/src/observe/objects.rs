//! The object pool's metrics, named after `aspnetcore.memory_pool.*` (the
//! table in `observe/mod.rs`).

use super::series::{self, Kind};
use crate::objects::Stats;

const POOL: &str = "cenote.pool.name";

const TABLE: &[(&str, Kind, &str)] = &[
    (
        "cenote.objects.pooled",
        Kind::Gauge,
        "Objects idle in the pool",
    ),
    ("cenote.objects.rented", Kind::Counter, "Gets"),
    ("cenote.objects.allocated", Kind::Counter, "Objects created"),
    (
        "cenote.objects.returned",
        Kind::Counter,
        "Objects taken back for reuse",
    ),
    (
        "cenote.objects.evicted",
        Kind::Counter,
        "Idle objects trimmed",
    ),
    (
        "cenote.objects.dropped",
        Kind::Counter,
        "Returns not kept, by reason",
    ),
];

/// Writes an object pool's levels and counters.
pub(crate) fn publish(pool: &std::sync::Arc<str>, s: &Stats) {
    series::describe(TABLE);
    let l = |extra: &[(&'static str, &'static str)]| series::labels(POOL, pool, extra);
    series::gauge("cenote.objects.pooled", l(&[]), s.idle);
    series::counter("cenote.objects.rented", l(&[]), s.hits + s.misses);
    series::counter("cenote.objects.allocated", l(&[]), s.misses);
    series::counter("cenote.objects.returned", l(&[]), s.returned);
    series::counter("cenote.objects.evicted", l(&[]), s.dropped_trimmed);
    for (reason, n) in [
        ("full", s.dropped_full),
        ("refused", s.dropped_refused),
        ("panicked", s.dropped_panicked),
    ] {
        series::counter("cenote.objects.dropped", l(&[("reason", reason)]), n);
    }
}
