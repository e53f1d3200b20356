//! User hooks and leak reports.

use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::time::Duration;

use super::stats::DestroyReason;

type OnCreate<R> = Box<dyn Fn(&mut R) + Send + Sync>;
type OnCheckout<R> = Box<dyn Fn(&mut R) -> bool + Send + Sync>;
type OnReturn<R> = Box<dyn Fn(&mut R) + Send + Sync>;
type OnDestroy<R> = Box<dyn Fn(&R, DestroyReason) + Send + Sync>;
type OnLeak = Box<dyn Fn(&LeakReport) + Send + Sync>;

pub(crate) struct Hooks<R> {
    pub(crate) on_create: Option<OnCreate<R>>,
    pub(crate) on_checkout: Option<OnCheckout<R>>,
    pub(crate) on_return: Option<OnReturn<R>>,
    pub(crate) on_destroy: Option<OnDestroy<R>>,
    pub(crate) on_leak: Option<OnLeak>,
}

impl<R> Default for Hooks<R> {
    fn default() -> Self {
        Hooks {
            on_create: None,
            on_checkout: None,
            on_return: None,
            on_destroy: None,
            on_leak: None,
        }
    }
}

/// Runs a hook; a panic is reported and turned into `on_panic`.
pub(crate) fn guarded<T>(name: &str, on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            crate::log::error!("cenote: the resource pool's {name} hook panicked");
            crate::unwind::drop_payload(payload);
            on_panic
        }
    }
}

/// A resource lent for longer than the pool's `leak_threshold`.
#[derive(Clone, Debug)]
pub struct LeakReport {
    /// The resource's number in its pool.
    pub resource_id: u64,
    /// How long it has been lent (at the report; coarse, to the pool's
    /// maintenance interval).
    pub lent_for: Duration,
    /// Where `get` was called.
    pub acquired_at: &'static Location<'static>,
}

impl std::fmt::Display for LeakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "resource {} lent for {:?}, acquired at {}",
            self.resource_id, self.lent_for, self.acquired_at
        )
    }
}

/// The lent resources a leak scan looks at (only with `leak_threshold`).
#[derive(Default)]
pub(crate) struct LentTable {
    slots: Vec<Option<Lent>>,
    free: Vec<usize>,
}

pub(crate) struct Lent {
    pub(crate) id: u64,
    pub(crate) since_ms: u64,
    pub(crate) at: &'static Location<'static>,
    pub(crate) reported: bool,
}

impl LentTable {
    pub(crate) fn insert(&mut self, lent: Lent) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(lent);
                i
            }
            None => {
                self.slots.push(Some(lent));
                self.slots.len() - 1
            }
        }
    }

    pub(crate) fn remove(&mut self, i: usize) {
        if self.slots.get_mut(i).and_then(Option::take).is_some() {
            self.free.push(i);
        }
    }

    /// The entries lent at or before `cutoff_ms` and not yet reported,
    /// marked reported.
    pub(crate) fn overdue(
        &mut self,
        cutoff_ms: u64,
    ) -> Vec<(u64, u64, &'static Location<'static>)> {
        let mut out = Vec::new();
        for lent in self.slots.iter_mut().flatten() {
            if !lent.reported && lent.since_ms <= cutoff_ms {
                lent.reported = true;
                out.push((lent.id, lent.since_ms, lent.at));
            }
        }
        out
    }
}
