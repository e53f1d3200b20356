//! The way to a resource: a permit (at once, or waited for in the FIFO
//! queue within the acquire timeout), then an idle resource made ready
//! (`check.rs`) or a new one (`create.rs`), lent to the caller.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::Either;
use tokio::sync::futures::Notified;

use super::check::Attempt;
use super::core::Idle;
use super::create::{CreateFailure, CreateOutcome};
use super::errors::GetError;
use super::guard::{Lease, Pooled};
use super::hooks::guarded;
use super::pool::Inner;
use super::request::AcquireSpan;
use super::stats::DestroyReason;
use super::timeout::{bounded, CoarseBounded, Elapsed, COARSE_FACTOR};
use super::Manager;

impl<M: Manager> Inner<M> {
    /// The whole `get`, its outcome recorded on its span (see
    /// `request.rs`; the span lives in this future's state, so the get
    /// needs no wrapper future around it). The span is made here, not
    /// passed in: the first poll moves the arguments into the body's
    /// locals, and two adjacent words written separately and copied as one
    /// wide load miss store forwarding.
    pub(super) async fn get(
        this: Arc<Self>,
        priority: i32,
        timeout: Duration,
        at: &'static Location<'static>,
    ) -> Result<Pooled<M>, GetError<M::Error>> {
        let span = AcquireSpan::new(&this);
        let got = 'get: {
            if this.core.is_closed() {
                break 'get Err(GetError::Closed);
            }
            // A deadline is computed only on a path that may wait.
            let mut started: Option<Instant> = None;
            if this.core.try_permit() {
                this.counters.served_at_once.add(1);
                #[cfg(feature = "metrics")]
                if this.cfg.histograms {
                    this.metrics.waited(Duration::ZERO);
                }
            } else {
                match this.wait_for_permit(priority, timeout).await {
                    Ok(t) => started = Some(t),
                    Err(e) => break 'get Err(e),
                }
            }
            // The caller's handle becomes the lease (no second clone on the
            // way to a resource), taken at once so a cancelled reset or check
            // still gives the permit back.
            let lease = Lease::new(this);
            let inner = lease.inner();
            let mut attempt = Attempt::new();
            while let Some(item) = inner.core.pop_idle() {
                if let Some(item) = inner.ready(item, &mut attempt).await {
                    break 'get Self::lend(lease, item, at);
                }
                if attempt.stalled {
                    break;
                }
            }
            let inner = inner.clone();
            inner.checkout(lease, timeout, started, attempt, at).await
        };
        span.end(&got);
        got
    }

    /// Waits in the queue (by `priority`) for a permit, at most `timeout`,
    /// and keeps it; returns when the wait began.
    async fn wait_for_permit(
        &self,
        priority: i32,
        timeout: Duration,
    ) -> Result<Instant, GetError<M::Error>> {
        let t0 = Instant::now();
        self.shed_over_max_waiting()?;
        let mut acquire = self.core.acquire(priority);
        let coarse = (self.cfg.maintenance_interval)
            .checked_mul(COARSE_FACTOR)
            .is_some_and(|floor| timeout >= floor);
        let acquired = if coarse {
            self.acquire_coarse(&mut acquire, t0, timeout).await
        } else {
            bounded(&self.rt.handle, timeout, acquire).await
        };
        match acquired {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(GetError::Closed),
            Err(_) if self.is_runtime_gone() => return Err(GetError::RuntimeGone),
            Err(_) => return Err(self.timed_out(t0, None)),
        }
        self.counters.waited(t0, self.cfg.histograms);
        if let Some(limit) = self.cfg.warn_slow_get {
            let waited = t0.elapsed();
            if waited > limit {
                crate::log::warning!(
                    pool = %self.name,
                    ?waited,
                    "cenote: a get waited longer than {limit:?} for a resource"
                );
            }
        }
        #[cfg(feature = "metrics")]
        if self.cfg.histograms {
            self.metrics.waited(t0.elapsed());
        }
        Ok(t0)
    }

    /// Sheds the get when `max_waiting` callers already wait.
    fn shed_over_max_waiting(&self) -> Result<(), GetError<M::Error>> {
        if let Some(max) = self.cfg.max_waiting {
            let waiting = self.core.waiting();
            if waiting >= max {
                self.counters.shed.fetch_add(1, Relaxed);
                return Err(GetError::TooManyWaiting(waiting));
            }
        }
        Ok(())
    }

    /// `acquire` under a long timeout: checked against the coarse clock
    /// each time the background task nudges the waiters (at most one tick
    /// late, never early), instead of a timer per waiting get. The deadline
    /// is set on the coarse clock, which may lag the real one, so its
    /// passing is confirmed on the real clock before the get gives up (one
    /// clock read at the end, none per get to place the deadline).
    async fn acquire_coarse<F: Future + Unpin>(
        &self,
        acquire: &mut F,
        t0: Instant,
        timeout: Duration,
    ) -> Result<F::Output, Elapsed> {
        let mut deadline_ms = self.now_ms().saturating_add(Self::ms(timeout));
        loop {
            let bounded = CoarseBounded {
                fut: &mut *acquire,
                clock: &self.clock,
                gone: &self.runtime_gone,
                deadline_ms,
            };
            match bounded.await {
                Err(_) if t0.elapsed() < timeout && !self.is_runtime_gone() => {
                    let left = timeout.saturating_sub(t0.elapsed());
                    deadline_ms = self.refresh_clock().saturating_add(Self::ms(left) + 1);
                }
                r => break r,
            }
        }
    }

    /// Hands a ready resource to its caller, unless the pool closed while
    /// it was being made ready: then it goes to `destroy` and the caller
    /// gets `Closed` (every get still under way when `close` is called
    /// fails).
    ///
    /// The pool is reached through the lease (no handle of its own: an
    /// `Arc` clone and drop are two atomic read-modify-writes per get).
    #[inline]
    fn lend(
        lease: Lease<M>,
        item: Idle<M::Resource>,
        at: &'static Location<'static>,
    ) -> Result<Pooled<M>, GetError<M::Error>> {
        let inner = lease.inner();
        if inner.core.is_closed() {
            inner.dispose(item, DestroyReason::Evicted);
            drop(lease);
            return Err(GetError::Closed);
        }
        Ok(Pooled::new(lease, item, at))
    }

    fn timed_out(&self, t0: Instant, mine: Option<Arc<M::Error>>) -> GetError<M::Error> {
        self.counters.timed_out.fetch_add(1, Relaxed);
        GetError::TimedOut {
            waited: t0.elapsed(),
            last_error: mine.or_else(|| self.last_error()),
        }
    }

    /// With a permit: an idle resource that passes its reset and check, or
    /// a new one. After a stalled check (`attempt.stalled`) the next step is a
    /// create if the count has room ([`Core::try_start_create`]; the
    /// stalled resource's destroy made room unless another creator took
    /// it), else the next idle resource.
    ///
    /// [`Core::try_start_create`]: super::core::Core::try_start_create
    async fn checkout(
        self: &Arc<Self>,
        mut lease: Lease<M>,
        timeout: Duration,
        mut started: Option<Instant>,
        mut attempt: Attempt<M::Error>,
        at: &'static Location<'static>,
    ) -> Result<Pooled<M>, GetError<M::Error>> {
        let mut backoff = Duration::from_millis(5);
        loop {
            // Counted here, the create has no await before it starts.
            let counted = std::mem::take(&mut attempt.stalled) && self.core.try_start_create();
            if !counted {
                while let Some(item) = self.core.pop_idle() {
                    if let Some(item) = self.ready(item, &mut attempt).await {
                        return Self::lend(lease, item, at);
                    }
                    if attempt.stalled {
                        break;
                    }
                }
                if attempt.stalled {
                    continue;
                }
            }
            // Made before the check: a `close` after it wakes this.
            let closing = std::pin::pin!(self.closing.notified());
            let refused = if self.core.is_closed() {
                Some(GetError::Closed)
            } else if self.is_runtime_gone() {
                Some(GetError::RuntimeGone)
            } else {
                None
            };
            if let Some(e) = refused {
                if counted {
                    self.core.forget();
                }
                return Err(e);
            }
            // Nothing idle (or a check stalled): make one.
            let t0 = *started.get_or_insert_with(Instant::now);
            match self
                .create_for(lease, counted, closing, t0, timeout, &mut attempt.mine)
                .await?
            {
                Ok(mut created) => {
                    let (l, item) = created.take();
                    if let Some(item) = self.on_checkout_hook(item) {
                        return Self::lend(l, item, at);
                    }
                    // Refused by the checkout hook (and destroyed): again.
                    lease = l;
                }
                Err((failure, l)) => {
                    lease = l;
                    self.take_create_failure(failure, &mut attempt.mine)?;
                    // Transient: try again after a pause, within the
                    // deadline (an idle resource may come back meanwhile).
                    self.back_off(&mut backoff, t0, timeout, &mut attempt.mine)
                        .await?;
                }
            }
        }
    }

    /// Makes a resource for the caller. The permit travels with the create
    /// (so a caller that gives up leaves it to finish in the background,
    /// its resource going idle); the caller waits for it within what is
    /// left of `timeout`, and until the pool closes.
    async fn create_for(
        self: &Arc<Self>,
        lease: Lease<M>,
        counted: bool,
        closing: Pin<&mut Notified<'_>>,
        t0: Instant,
        timeout: Duration,
        mine: &mut Option<Arc<M::Error>>,
    ) -> Result<CreateOutcome<M>, GetError<M::Error>> {
        let left = timeout.saturating_sub(t0.elapsed());
        let rx = self.spawn_create(lease, counted);
        let made = futures_util::future::select(rx, closing);
        match bounded(&self.rt.handle, left, made).await {
            Err(_) => Err(self.timed_out(t0, mine.take())),
            // Closed while the create runs: it finishes in the
            // background and goes to `destroy`.
            Ok(Either::Right(_)) => Err(GetError::Closed),
            Ok(Either::Left((Ok(created), _))) => Ok(created),
            // The create task was dropped unrun or cut off: its
            // runtime shut down.
            Ok(Either::Left((Err(_), _))) => {
                self.runtime_gone.store(true, SeqCst);
                Err(GetError::RuntimeGone)
            }
        }
    }

    /// A failed create: a permanent error (as the manager says) ends the
    /// get; any other is kept in `mine`, for a timeout to report.
    fn take_create_failure(
        &self,
        failure: CreateFailure<M::Error>,
        mine: &mut Option<Arc<M::Error>>,
    ) -> Result<(), GetError<M::Error>> {
        match failure {
            CreateFailure::Failed(e) => {
                if guarded("is_permanent", false, || self.manager.is_permanent(&e)) {
                    // Once until a create succeeds, not once per caller.
                    if !self.permanent_warned.swap(true, Relaxed) {
                        crate::log::warning!(
                            pool = %self.name,
                            "cenote: creating a resource failed for good: {e}"
                        );
                    }
                    return Err(GetError::Create(e));
                }
                *mine = Some(e);
            }
            CreateFailure::TimedOut => {}
        }
        Ok(())
    }

    /// Pauses before the next try, doubling `backoff` (up to a second), or
    /// gives up when the pause would reach the deadline.
    async fn back_off(
        &self,
        backoff: &mut Duration,
        t0: Instant,
        timeout: Duration,
        mine: &mut Option<Arc<M::Error>>,
    ) -> Result<(), GetError<M::Error>> {
        let left = timeout.saturating_sub(t0.elapsed());
        if left <= *backoff {
            return Err(self.timed_out(t0, mine.take()));
        }
        let pause = {
            let _entered = self.rt.handle.enter();
            tokio::time::sleep(*backoff)
        };
        pause.await;
        *backoff = (*backoff * 2).min(Duration::from_secs(1));
        Ok(())
    }
}
