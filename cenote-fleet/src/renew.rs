//! The renewer: one task per handle that renews all of its leases (and
//! keeps its waiters queued) in one script every third of the TTL. The
//! same call hands each waiter a grant whose notification was lost, wakes
//! the head waiters to watch the soonest expiry, and has a waiter whose
//! entry was lost queue again: no waiter polls. A
//! failed renewal loses nothing by itself: a lease is lost when its local
//! deadline passes, or when Redis says it expired.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::acquire::WATCHING_RANKS;
use crate::lease::LeaseState;
use crate::shared::{Renewed, Shared, WaiterState};
use crate::trace;

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
/// here are renewed, and the waiters kept queued. A valid lease Redis has
/// no record of (and that was not released meanwhile: a release takes it
/// out of the map before it goes to Redis) shows that writes were lost:
/// the loss is reported and the round run again, which registers the
/// leases again in the quarantine the report started.
pub(crate) async fn renew_once(shared: &Shared) {
    for _ in 0..2 {
        if !round(shared).await {
            return;
        }
        if shared.report_loss().await.is_err() {
            return;
        }
    }
}

/// One renewal; whether it found a loss.
async fn round(shared: &Shared) -> bool {
    let all: Vec<Arc<LeaseState>> = shared.leases.lock().values().cloned().collect();
    let (leases, expired): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|l| l.valid_until().is_some());
    for lease in expired {
        if lease.deadline.send_replace(None).is_some() {
            shared.metrics.losses.increment(1);
            trace::lease_lost(&shared.name, lease.token, "not renewed before its deadline");
        }
    }
    let waiters: Vec<String> = shared.waiters.lock().keys().cloned().collect();
    if leases.is_empty() && waiters.is_empty() {
        return false;
    }
    let Ok((renewed, waiting)) = shared.renew(&leases, &waiters).await else {
        return false;
    };
    for (id, w) in waiters.iter().zip(waiting) {
        match w {
            WaiterState::Granted(g) => shared.deliver(id, g),
            WaiterState::Queued(rank) if rank < WATCHING_RANKS => shared.nudge(id),
            WaiterState::Queued(_) => {}
            WaiterState::Gone => shared.nudge(id),
        }
    }
    let mut loss = false;
    for (lease, r) in leases.iter().zip(renewed) {
        let (until, why) = match r {
            Renewed::Until(e) => (shared.clock.local(e), "its renewal came too late"),
            Renewed::Missing if held(shared, lease) => {
                loss = true;
                continue;
            }
            Renewed::Refused => {
                shared.losses.refused.fetch_add(1, Relaxed);
                shared.metrics.overshoot.increment(1);
                (
                    None,
                    "refused after a loss: the cap was full (an overshoot)",
                )
            }
            Renewed::Missing | Renewed::Expired => (None, "expired on Redis's clock"),
        };
        match until {
            Some(until) if until > Instant::now() => lease.extend(until),
            _ => {
                if lease.lose() {
                    shared.metrics.losses.increment(1);
                    trace::lease_lost(&shared.name, lease.token, why);
                }
            }
        }
    }
    loss
}

/// Still this process's and valid: not released while the renewal ran.
fn held(shared: &Shared, lease: &Arc<LeaseState>) -> bool {
    lease.valid_until().is_some() && shared.leases.lock().contains_key(&lease.id)
}
