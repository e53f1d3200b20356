//! Writing one pool's series: the label that names the pool, and the
//! descriptions (unit and meaning) given to the recorder with every
//! publish (so a recorder installed after the pool was built has them).

use std::sync::Arc;

use metrics::{Label, SharedString, Unit};

/// The labels of one series: the pool's name under `key`, then `extra`.
pub(crate) fn labels(
    key: &'static str,
    pool: &Arc<str>,
    extra: &[(&'static str, &'static str)],
) -> Vec<Label> {
    let mut labels = Vec::with_capacity(1 + extra.len());
    labels.push(Label::new(key, SharedString::from(pool.clone())));
    labels.extend(extra.iter().map(|&(k, v)| Label::new(k, v)));
    labels
}

/// A histogram handle of the pool named `pool` (label `key`), taken once
/// and recorded into at each event.
pub(crate) fn histogram(
    name: &'static str,
    key: &'static str,
    pool: &Arc<str>,
) -> metrics::Histogram {
    metrics::histogram!(name, labels(key, pool, &[]))
}

/// Sets a gauge.
pub(crate) fn gauge(name: &'static str, labels: Vec<Label>, value: usize) {
    metrics::gauge!(name, labels).set(value as f64);
}

/// Sets a counter to its absolute value.
pub(crate) fn counter(name: &'static str, labels: Vec<Label>, value: u64) {
    metrics::counter!(name, labels).absolute(value);
}

/// What a metric is: gauge, counter or histogram, its unit and meaning.
pub(crate) enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// Describes every metric of `table` to the recorder.
pub(crate) fn describe(table: &[(&'static str, Kind, &'static str)]) {
    for (name, kind, meaning) in table {
        match kind {
            Kind::Gauge => metrics::describe_gauge!(*name, Unit::Count, *meaning),
            Kind::Counter => metrics::describe_counter!(*name, Unit::Count, *meaning),
            Kind::Histogram => metrics::describe_histogram!(*name, Unit::Seconds, *meaning),
        }
    }
}
