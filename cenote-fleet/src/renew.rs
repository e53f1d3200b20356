//! The renewer: one task per handle that renews all of its leases (and
//! keeps its waiters queued) in one script every third of the TTL. A
//! failed renewal loses nothing by itself: a lease is lost when its local
//! deadline passes, or when Redis says it expired.

use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::lease::LeaseState;
use crate::shared::Shared;

pub(crate) async fn run(shared: Weak<Shared>) {
    let Some(period) = shared.upgrade().map(|s| s.ttl / 3) else {
        return;
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        renew_once(&shared).await;
    }
}

/// One round: leases whose deadline passed are lost; the ones still valid
/// here are renewed, and the waiters kept queued.
pub(crate) async fn renew_once(shared: &Shared) {
    let all: Vec<Arc<LeaseState>> = shared.leases.lock().values().cloned().collect();
    let (leases, expired): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|l| l.valid_until().is_some());
    for lease in expired {
        if lease.deadline.send_replace(None).is_some() {
            shared.metrics.losses.increment(1);
        }
    }
    let waiters: Vec<String> = shared.waiters.lock().keys().cloned().collect();
    if leases.is_empty() && waiters.is_empty() {
        return;
    }
    let Ok(expiries) = shared.renew(&leases, &waiters).await else {
        return;
    };
    for (lease, expiry) in leases.iter().zip(expiries) {
        match expiry.and_then(|e| shared.clock.local(e)) {
            Some(until) if until > Instant::now() => lease.extend(until),
            _ => {
                if lease.lose() {
                    shared.metrics.losses.increment(1);
                }
            }
        }
    }
}
