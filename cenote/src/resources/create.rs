//! Making resources: for a caller (a task on the pool's runtime that
//! carries the caller's permit, [`Created`] or a failure sent back), for
//! the build (`fill`) and for the refill; each counted from the start, and
//! uncounted again if it fails or is cut off ([`Unmade`]).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::call::{call, Call};
use super::core::{Dirty, Idle, Meta, Slot};
use super::errors::BuildError;
use super::exec::jitter;
use super::guard::Lease;
use super::hooks::guarded;
use super::pool::{Inner, Pool};
use super::stats::DestroyReason;
use super::Manager;

/// Why a create gave no resource.
pub(crate) enum CreateFailure<E> {
    Failed(Arc<E>),
    /// Timed out, or the manager panicked.
    TimedOut,
}

impl<M: Manager> Pool<M> {
    /// Makes resources up to `max(min_idle, 1)` (at build).
    pub(crate) async fn fill(&self) -> Result<(), BuildError<M::Error>> {
        let inner = &self.inner;
        let want = inner.cfg.min_idle.max(1);
        while inner.core.size() < want {
            if !inner.core.try_permit() {
                break;
            }
            let lease = Lease::new(inner.clone());
            inner.core.start_create();
            match inner.create_one().await {
                Ok(item) => {
                    for item in inner.core.put_idle(item) {
                        inner.dispose(item, DestroyReason::Evicted);
                    }
                    drop(lease);
                }
                Err(CreateFailure::Failed(e)) => return Err(BuildError::Create(e)),
                Err(CreateFailure::TimedOut) => {
                    return Err(BuildError::CreateTimedOut(inner.cfg.create_timeout))
                }
            }
        }
        Ok(())
    }
}

impl<M: Manager> Inner<M> {
    /// Starts a create for a caller, on the pool's runtime, with the
    /// caller's permit; its outcome comes through the receiver. Dropped
    /// unrun or cut off (the runtime shut down), the task still uncounts
    /// the resource it was to make (`Unmade`), so `size` never keeps a
    /// create that will not happen; the sender dropped unsent tells the
    /// caller. `counted`: the caller took the count already
    /// (`try_start_create`).
    pub(super) fn spawn_create(
        self: &Arc<Self>,
        lease: Lease<M>,
        counted: bool,
    ) -> oneshot::Receiver<CreateOutcome<M>> {
        let (tx, rx) = oneshot::channel();
        if !counted {
            self.core.start_create();
        }
        let unmade = Unmade(Some(self.clone()));
        self.rt.handle.spawn(async move {
            // `create_one` covers the count from here.
            let inner = unmade.disarm();
            let result = inner.create_one().await;
            let msg = match result {
                Ok(item) => Ok(Created {
                    lease: Some(lease),
                    item: Some(item),
                }),
                Err(f) => Err((f, lease)),
            };
            // A receiver gone drops `msg`: `Created` puts the resource
            // in the idle store and the lease gives the permit back.
            let _ = tx.send(msg);
        });
        rx
    }

    /// Makes one resource (the caller counted it with `start_create`);
    /// on failure, or cut off, it is counted gone again.
    pub(crate) async fn create_one(
        self: &Arc<Self>,
    ) -> Result<Idle<M::Resource>, CreateFailure<M::Error>> {
        // Cut off midway (its task dropped by a runtime shutting down), the
        // create is uncounted all the same.
        let unmade = Unmade(Some(self.clone()));
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let created = call(
            &self.rt.handle,
            self.cfg.create_timeout,
            "create",
            self.manager.create(),
        );
        #[cfg(feature = "tracing")]
        let span = create_span(self.name.as_str());
        #[cfg(feature = "tracing")]
        let created = tracing::Instrument::instrument(created, span.clone());
        let created = created.await;
        #[cfg(feature = "tracing")]
        span.record(
            "error_type",
            match &created {
                Call::Done(_) => "none",
                Call::Failed(_) => std::any::type_name::<M::Error>(),
                Call::TimedOut => "timeout",
                Call::Panicked => "panic",
            },
        );
        drop(unmade.disarm());
        #[cfg(feature = "metrics")]
        self.metrics.created_in(started.elapsed());
        let now = self.refresh_clock();
        match created {
            Call::Done(mut res) => {
                self.counters.created.fetch_add(1, Relaxed);
                self.clear_error();
                if let Some(hook) = &self.hooks.on_create {
                    guarded("on_create", (), || hook(&mut res));
                }
                let id = self.next_id.fetch_add(1, Relaxed);
                Ok(Box::new(Slot {
                    res,
                    meta: Meta {
                        id,
                        created_ms: now,
                        expires_ms: self.expiry(id, now),
                        last_used_ms: now,
                        dirty: Dirty::No,
                    },
                }))
            }
            Call::Failed(e) => {
                self.core.forget();
                self.counters.create_failures.fetch_add(1, Relaxed);
                #[cfg(feature = "metrics")]
                self.metrics.create_error(std::any::type_name::<M::Error>());
                let e = Arc::new(e);
                crate::log::debug!("cenote: creating a pooled resource failed: {e}");
                self.record_error(e.clone());
                self.gone.notify_waiters();
                Err(CreateFailure::Failed(e))
            }
            _cut @ (Call::TimedOut | Call::Panicked) => {
                self.core.forget();
                self.counters.create_failures.fetch_add(1, Relaxed);
                #[cfg(feature = "metrics")]
                self.metrics
                    .create_error(if matches!(_cut, Call::TimedOut) {
                        "timeout"
                    } else {
                        "panic"
                    });
                self.gone.notify_waiters();
                Err(CreateFailure::TimedOut)
            }
        }
    }

    fn expiry(&self, id: u64, now: u64) -> u64 {
        match self.cfg.max_lifetime {
            None => u64::MAX,
            Some(life) => {
                let life = Self::ms(life);
                let spread = Self::ms(self.cfg.lifetime_jitter).min(life / 4);
                let seed = id ^ (self.base.elapsed().as_nanos() as u64);
                now + life - jitter(seed, spread + 1)
            }
        }
    }
}

/// What a caller's create task sends back.
pub(super) type CreateOutcome<M> =
    Result<Created<M>, (CreateFailure<<M as Manager>::Error>, Lease<M>)>;

/// A create counted with `start_create` that has not run to its end yet:
/// dropped armed (its task dropped by a runtime shutting down), it
/// uncounts the resource.
struct Unmade<M: Manager>(Option<Arc<Inner<M>>>);

impl<M: Manager> Unmade<M> {
    /// The create ran to its end (or its next guard took over).
    fn disarm(mut self) -> Arc<Inner<M>> {
        self.0.take().expect("armed once")
    }
}

impl<M: Manager> Drop for Unmade<M> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            inner.core.forget();
            inner.gone.notify_waiters();
        }
    }
}

/// A resource made for a caller, with the caller's permit. Dropped unread
/// (the caller gave up), it goes to the idle store.
pub(crate) struct Created<M: Manager> {
    lease: Option<Lease<M>>,
    item: Option<Idle<M::Resource>>,
}

impl<M: Manager> Created<M> {
    pub(super) fn take(&mut self) -> (Lease<M>, Idle<M::Resource>) {
        (
            self.lease.take().expect("taken once"),
            self.item.take().expect("taken once"),
        )
    }
}

impl<M: Manager> Drop for Created<M> {
    fn drop(&mut self) {
        if let (Some(lease), Some(item)) = (self.lease.take(), self.item.take()) {
            let inner = lease.inner().clone();
            for item in inner.core.put_idle(item) {
                inner.dispose(item, DestroyReason::Evicted);
            }
            drop(lease);
        }
    }
}

/// A DEBUG span `create` (the pool's name, and the error type at its end),
/// or a disabled one when no subscriber is interested.
#[cfg(feature = "tracing")]
fn create_span(pool: &str) -> tracing::Span {
    tracing::debug_span!(
        target: "cenote::resources",
        "create",
        pool,
        error_type = tracing::field::Empty
    )
}
