//! A semaphore's series (the `metrics` facade; nothing until the program
//! installs a recorder), labelled `semaphore`: gauges `cenote.fleet.holders`
//! (leases this process holds) and `cenote.fleet.waiters` (its callers
//! queued); counters `cenote.fleet.grants`, `cenote.fleet.timeouts`,
//! `cenote.fleet.losses` (leases lost), `cenote.fleet.quarantines` (losses
//! of Redis's writes seen: a record gone, or a lease missing from it) and
//! `cenote.fleet.overshoot` (leases refused when registering again after a
//! loss, the cap being full: each was held past the cap until then); the
//! histogram `cenote.fleet.wait` (seconds from
//! acquire to grant).

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

#[derive(Debug)]
pub(crate) struct FleetMetrics {
    pub(crate) holders: Gauge,
    pub(crate) waiters: Gauge,
    pub(crate) grants: Counter,
    pub(crate) timeouts: Counter,
    pub(crate) losses: Counter,
    pub(crate) quarantines: Counter,
    pub(crate) overshoot: Counter,
    wait: Histogram,
}

impl FleetMetrics {
    pub(crate) fn new(name: &str) -> FleetMetrics {
        let label = [("semaphore", name.to_owned())];
        FleetMetrics {
            holders: metrics::gauge!("cenote.fleet.holders", &label),
            waiters: metrics::gauge!("cenote.fleet.waiters", &label),
            grants: metrics::counter!("cenote.fleet.grants", &label),
            timeouts: metrics::counter!("cenote.fleet.timeouts", &label),
            losses: metrics::counter!("cenote.fleet.losses", &label),
            quarantines: metrics::counter!("cenote.fleet.quarantines", &label),
            overshoot: metrics::counter!("cenote.fleet.overshoot", &label),
            wait: metrics::histogram!("cenote.fleet.wait", &label),
        }
    }

    pub(crate) fn granted(&self, waited: Duration) {
        self.grants.increment(1);
        self.holders.increment(1.0);
        self.wait.record(waited.as_secs_f64());
    }
}
