//! The background work: every maintenance tick (told by the ticker
//! thread, `ticker.rs`), a task on the pool's runtime for the passes that
//! never wait on the manager (advance the clock, nudge the waiters, retire
//! idle and expired resources, report leaks), and an upkeep task of its
//! own for those that do (keepalive checks, the `min_idle` refill); and the
//! watch that tells the pool when its runtime shuts down.

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::call::{call, Call};
use super::check::{Attempt, CheckFailure, Held};
use super::guard::Lease;
use super::hooks::{guarded, LeakReport};
use super::pool::Inner;
use super::stats::DestroyReason;
use super::Manager;
use crate::sync::ticker::Ticked;

impl<M: Manager> Ticked for Inner<M> {
    /// Runs one [`Inner::tick`] and starts an [`Inner::upkeep`] on the
    /// pool's runtime, unless the last tick's task has not run yet (a busy
    /// runtime gets one tick, not a backlog).
    fn tick(self: Arc<Self>) -> bool {
        if self.core.is_closed() || self.is_runtime_gone() {
            return false;
        }
        if !self.tick_queued.swap(true, AcqRel) {
            let handle = self.rt.handle.clone();
            // If the runtime is shut down the task is dropped unrun; the
            // runtime watch has said so, and the next call returns false.
            handle.spawn(async move {
                self.tick_queued.store(false, Release);
                self.run_tick();
                self.start_upkeep();
            });
        }
        true
    }
}

/// A task on the pool's runtime that waits for `stop` (sent or dropped
/// when the pool closes or goes away). A runtime that shuts down first
/// drops it midway, and the pool then marks its runtime gone
/// ([`Inner::runtime_gone`]).
pub(super) async fn watch_runtime<M: Manager>(
    weak: Weak<Inner<M>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut watch = RuntimeWatch(Some(weak));
    let _ = stop.await;
    watch.0 = None;
}

/// Clears the upkeep flag however the upkeep task ends.
struct UpkeepDone<'a>(&'a AtomicBool);

impl Drop for UpkeepDone<'_> {
    fn drop(&mut self) {
        self.0.store(false, Release);
    }
}

/// Held by the watch task. Dropped with the pool still set means the
/// runtime's shutdown cancels the task.
struct RuntimeWatch<M: Manager>(Option<Weak<Inner<M>>>);

impl<M: Manager> Drop for RuntimeWatch<M> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take().and_then(|w| w.upgrade()) {
            inner.runtime_gone.store(true, SeqCst);
            // Waiters look at the flag when woken.
            inner.core.nudge_waiters();
        }
    }
}

impl<M: Manager> Inner<M> {
    /// One maintenance tick: what never waits on the manager. Nothing
    /// here awaits, so nudges, retirements and leak reports keep their
    /// period however long a create or check hangs.
    fn run_tick(self: &Arc<Self>) {
        let now = self.refresh_clock();
        // Waiters with a coarse deadline look at the clock when woken.
        if self.core.waiting() > 0 {
            self.core.nudge_waiters();
        }
        self.retire_idle(now);
        self.report_leaks(now);
    }

    /// Destroys expired idle resources, and idle-too-long ones down to
    /// `min_idle`.
    fn retire_idle(self: &Arc<Self>, now: u64) {
        let cfg = &self.cfg;
        if cfg.max_lifetime.is_none() && cfg.idle_timeout.is_none() {
            return;
        }
        let idle_ms = cfg.idle_timeout.map(Self::ms);
        let mut removable = self.core.size().saturating_sub(cfg.min_idle);
        let mut reasons = Vec::new();
        let gone = self.core.take_idle_where(|item| {
            if item.meta.expires_ms <= now {
                reasons.push(DestroyReason::Expired);
                removable = removable.saturating_sub(1);
                return true;
            }
            match idle_ms {
                Some(ms) if removable > 0 && now.saturating_sub(item.meta.last_used_ms) >= ms => {
                    reasons.push(DestroyReason::Idle);
                    removable -= 1;
                    true
                }
                _ => false,
            }
        });
        for (item, why) in gone.into_iter().zip(reasons) {
            self.dispose(item, why);
        }
    }

    /// Reports resources lent longer than `leak_threshold`, once each.
    fn report_leaks(&self, now: u64) {
        let (Some(table), Some(threshold)) = (&self.lent, self.cfg.leak_threshold) else {
            return;
        };
        if now < Self::ms(threshold) {
            return;
        }
        let overdue = table.lock().overdue(now - Self::ms(threshold));
        for (id, since, at) in overdue {
            let report = LeakReport {
                resource_id: id,
                lent_for: Duration::from_millis(now.saturating_sub(since)),
                acquired_at: at,
            };
            self.counters.leaks_reported.fetch_add(1, Relaxed);
            crate::log::warning!("cenote: possible resource leak: {report}");
            if let Some(hook) = &self.hooks.on_leak {
                guarded("on_leak", (), || hook(&report));
            }
        }
    }

    /// Starts an [`upkeep`](Self::upkeep) task unless the last one still
    /// runs.
    fn start_upkeep(self: &Arc<Self>) {
        if !self.upkeep_running.swap(true, AcqRel) {
            let upkeep = self.clone();
            self.rt.handle.spawn(async move {
                let _done = UpkeepDone(&upkeep.upkeep_running);
                upkeep.upkeep().await;
            });
        }
    }

    /// The background work that waits on the manager: keepalive checks,
    /// then the `min_idle` refill. Run as a task of its own, one at a time
    /// (`upkeep_running`), so a create or check that hangs up to its
    /// timeout delays only the next upkeep, never a tick.
    async fn upkeep(self: &Arc<Self>) {
        let now = self.now_ms();
        self.keepalive(now).await;
        self.refill(now).await;
    }

    /// Checks idle resources unused for the keepalive period, one permit
    /// at a time (never more than the bound), a few per pass.
    async fn keepalive(self: &Arc<Self>, now: u64) {
        let Some(every) = self.cfg.keepalive else {
            return;
        };
        let every = Self::ms(every);
        for _ in 0..4 {
            if !self.core.try_permit() {
                break;
            }
            let lease = Lease::new(self.clone());
            let Some(item) = self
                .core
                .take_one_idle(|item| now.saturating_sub(item.meta.last_used_ms) >= every)
            else {
                break;
            };
            let mut held = Held {
                inner: self,
                item: Some(item),
            };
            let item = held.item.as_mut().expect("set above");
            let check = self.manager.check(&mut item.res);
            let mut attempt = Attempt::new();
            match call(&self.rt.handle, self.cfg.check_timeout, "check", check).await {
                Call::Done(()) => {
                    let mut item = held.item.take().expect("held");
                    item.meta.last_used_ms = self.now_ms();
                    for item in self.core.put_idle(item) {
                        self.dispose(item, DestroyReason::Evicted);
                    }
                }
                Call::Failed(e) => drop(held.fail(CheckFailure::Failed(e), &mut attempt)),
                Call::TimedOut | Call::Panicked => {
                    drop(held.fail(CheckFailure::TimedOut, &mut attempt))
                }
            }
            drop(lease);
        }
    }

    /// Creates resources up to `min_idle`, each under a permit, backing off
    /// while creates fail.
    async fn refill(self: &Arc<Self>, now: u64) {
        let min_idle = self.cfg.min_idle;
        if min_idle == 0 || now < self.refill_after_ms.load(Relaxed) {
            return;
        }
        while !self.core.is_closed() && self.core.idle() < min_idle {
            if !self.core.try_permit() {
                break;
            }
            let lease = Lease::new(self.clone());
            if !self.core.try_start_create() {
                break;
            }
            match self.create_one().await {
                Ok(item) => {
                    self.refill_failures.store(0, Relaxed);
                    for item in self.core.put_idle(item) {
                        self.dispose(item, DestroyReason::Evicted);
                    }
                }
                Err(_) => {
                    let n = self.refill_failures.fetch_add(1, Relaxed).min(10);
                    let pause = (50u64 << n).min(5_000);
                    self.refill_after_ms.store(now + pause, Relaxed);
                    break;
                }
            }
            drop(lease);
        }
    }
}
