//! The client's series, in OpenTelemetry's HTTP client names (semantic
//! conventions v1.44), per origin: `http.client.open_connections` (by
//! `http.connection.state`: `active` or `idle`),
//! `http.client.connection.duration`, `http.client.request.time_in_queue`,
//! and cenote's `cenote.http.client.retries` (by `reason`). The counts
//! behind the gauges also bound the idle connections an origin keeps.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Label};

use crate::origin::Origin;

/// One origin's series and the counts behind them.
pub(crate) struct OriginMetrics {
    open: AtomicUsize,
    active: AtomicUsize,
    active_gauge: Gauge,
    idle_gauge: Gauge,
    duration: Histogram,
    time_in_queue: Histogram,
    retried_stale: Counter,
    retried_unsent: Counter,
}

impl OriginMetrics {
    pub(crate) fn new(origin: &Origin) -> OriginMetrics {
        let base = vec![
            Label::new("server.address", origin.host().to_owned()),
            Label::new("server.port", origin.port().to_string()),
            Label::new(
                "url.scheme",
                if origin.is_https() { "https" } else { "http" },
            ),
        ];
        let with = |k: &'static str, v: &'static str| {
            let mut l = base.clone();
            l.push(Label::new(k, v));
            l
        };
        OriginMetrics {
            open: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            active_gauge: metrics::gauge!(
                "http.client.open_connections",
                with("http.connection.state", "active")
            ),
            idle_gauge: metrics::gauge!(
                "http.client.open_connections",
                with("http.connection.state", "idle")
            ),
            duration: metrics::histogram!("http.client.connection.duration", base.clone()),
            time_in_queue: metrics::histogram!("http.client.request.time_in_queue", base.clone()),
            retried_stale: metrics::counter!(
                "cenote.http.client.retries",
                with("reason", "stale_connection")
            ),
            retried_unsent: metrics::counter!(
                "cenote.http.client.retries",
                with("reason", "not_sent")
            ),
        }
    }

    /// A connection opened (idle until lent).
    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, Relaxed);
        self.idle_gauge.increment(1.0);
    }

    /// A connection closed after `lived`.
    pub(crate) fn closed(&self, lived: Duration) {
        self.open.fetch_sub(1, Relaxed);
        self.idle_gauge.decrement(1.0);
        self.duration.record(lived.as_secs_f64());
    }

    /// A connection lent to a request, after `queued` waiting for it.
    pub(crate) fn lent(&self, queued: Duration) {
        self.active.fetch_add(1, Relaxed);
        self.active_gauge.increment(1.0);
        self.idle_gauge.decrement(1.0);
        self.time_in_queue.record(queued.as_secs_f64());
    }

    /// A lent connection given back (to be kept or destroyed); returns how
    /// many are idle with it.
    pub(crate) fn returned(&self) -> usize {
        let active = self.active.fetch_sub(1, Relaxed) - 1;
        self.active_gauge.decrement(1.0);
        self.idle_gauge.increment(1.0);
        self.open.load(Relaxed).saturating_sub(active)
    }

    /// A request sent again after a stale keep-alive connection.
    pub(crate) fn retried_stale(&self) {
        self.retried_stale.increment(1);
    }

    /// A request that never left moved to another connection.
    pub(crate) fn retried_unsent(&self) {
        self.retried_unsent.increment(1);
    }
}
