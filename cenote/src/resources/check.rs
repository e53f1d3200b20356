//! Making an idle resource ready to lend: not broken, expired or idle too long,
//! reset, checked (unless used within the bypass window), accepted by the
//! checkout hook. A resource being reset or checked is destroyed if the
//! caller goes away midway ([`Held`]).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::call::{call, Call};
use super::core::{Dirty, Idle};
use super::hooks::guarded;
use super::pool::Inner;
use super::stats::DestroyReason;
use super::Manager;

/// What a get learns on its way to a resource: the last create or check
/// error (for a timeout to report), and whether a reset or check stalled
/// (timed out, or the manager panicked). Idle resources that hang usually
/// share a cause (a black-holed network), so after a stall the get creates
/// a resource rather than wait out one check timeout per idle resource in
/// turn.
pub(super) struct Attempt<E> {
    pub(super) mine: Option<Arc<E>>,
    pub(super) stalled: bool,
}

impl<E> Attempt<E> {
    pub(super) fn new() -> Self {
        Attempt {
            mine: None,
            stalled: false,
        }
    }
}

/// A failed check or reset.
pub(super) enum CheckFailure<E> {
    Failed(E),
    /// Timed out, or the manager panicked.
    TimedOut,
}

impl<M: Manager> Inner<M> {
    /// An idle resource made ready to lend: not expired, reset, checked
    /// (unless used within the bypass window), accepted by the checkout
    /// hook; `None` if it was destroyed instead (`attempt` says why, when
    /// its reset or check failed).
    pub(super) async fn ready(
        self: &Arc<Self>,
        mut item: Idle<M::Resource>,
        attempt: &mut Attempt<M::Error>,
    ) -> Option<Idle<M::Resource>> {
        // A resource that died while idle (a closed socket) is never lent,
        // inside the check-bypass window or out of it.
        if guarded("is_broken", true, || self.manager.is_broken(&mut item.res)) {
            self.dispose(item, DestroyReason::Broken);
            return None;
        }
        let now = self.now_ms();
        if item.meta.expires_ms <= now {
            self.dispose(item, DestroyReason::Expired);
            return None;
        }
        if now.saturating_sub(item.meta.last_used_ms) >= self.idle_timeout_ms {
            self.dispose(item, DestroyReason::Idle);
            return None;
        }
        // From here a cancelled `get` drops `held`, which destroys the
        // resource: a reset or check cut off midway leaves it unknown.
        let mut held = Held {
            inner: self,
            item: Some(item),
        };
        let item = held.item.as_mut().expect("set above");
        if item.meta.dirty == Dirty::Yes {
            let reset = self.manager.reset(&mut item.res);
            match call(&self.rt.handle, self.cfg.check_timeout, "reset", reset).await {
                Call::Done(()) => item.meta.dirty = Dirty::No,
                Call::Failed(e) => return held.fail(CheckFailure::Failed(e), attempt),
                Call::TimedOut | Call::Panicked => {
                    return held.fail(CheckFailure::TimedOut, attempt)
                }
            }
        }
        if self.cfg.check_on_checkout
            && now.saturating_sub(item.meta.last_used_ms) >= self.check_bypass_ms
        {
            let check = self.manager.check(&mut item.res);
            #[cfg(feature = "metrics")]
            let started = std::time::Instant::now();
            let checked = call(&self.rt.handle, self.cfg.check_timeout, "check", check).await;
            #[cfg(feature = "metrics")]
            self.metrics.checked_in(started.elapsed());
            match checked {
                Call::Done(()) => item.meta.last_used_ms = self.now_ms(),
                Call::Failed(e) => return held.fail(CheckFailure::Failed(e), attempt),
                Call::TimedOut | Call::Panicked => {
                    return held.fail(CheckFailure::TimedOut, attempt)
                }
            }
        }
        let item = held.item.take().expect("still held");
        self.on_checkout_hook(item)
    }

    pub(super) fn on_checkout_hook(
        self: &Arc<Self>,
        mut item: Idle<M::Resource>,
    ) -> Option<Idle<M::Resource>> {
        if let Some(hook) = &self.hooks.on_checkout {
            if !guarded("on_checkout", false, || hook(&mut item.res)) {
                self.dispose(item, DestroyReason::FailedCheck);
                return None;
            }
        }
        Some(item)
    }
}

/// A resource being reset or checked for a caller: destroyed if dropped.
pub(super) struct Held<'a, M: Manager> {
    pub(super) inner: &'a Arc<Inner<M>>,
    pub(super) item: Option<Idle<M::Resource>>,
}

impl<M: Manager> Held<'_, M> {
    pub(super) fn fail(
        mut self,
        why: CheckFailure<M::Error>,
        attempt: &mut Attempt<M::Error>,
    ) -> Option<Idle<M::Resource>> {
        self.inner.counters.check_failures.fetch_add(1, Relaxed);
        match why {
            CheckFailure::Failed(e) => {
                let e = Arc::new(e);
                crate::log::debug!("cenote: a pooled resource failed its check: {e}");
                self.inner.record_error(e.clone());
                attempt.mine = Some(e);
            }
            CheckFailure::TimedOut => attempt.stalled = true,
        }
        if let Some(item) = self.item.take() {
            self.inner.dispose(item, DestroyReason::FailedCheck);
        }
        None
    }
}

impl<M: Manager> Drop for Held<'_, M> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.inner.dispose(item, DestroyReason::FailedCheck);
        }
    }
}
