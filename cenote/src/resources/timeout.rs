//! Timeouts: a timer made only when a future is still pending after its
//! first poll ([`LazyTimer`], behind [`Bounded`] and the manager calls'
//! `Guarded`), and long acquire timeouts checked on the pool's coarse clock
//! instead of a timer each ([`CoarseBounded`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Handle;

/// The time ran out.
#[derive(Debug)]
pub(crate) struct Elapsed;

/// A timer of `limit` from the first time it is polled: a future that
/// completes at once and so never polls it costs no timer (no wheel
/// insert, removal, or boxed `Sleep`).
pub(super) struct LazyTimer<'h> {
    limit: Duration,
    handle: &'h Handle,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<'h> LazyTimer<'h> {
    pub(super) fn new(handle: &'h Handle, limit: Duration) -> Self {
        LazyTimer {
            limit,
            handle,
            sleep: None,
        }
    }

    /// Ready once the time ran out; starts the timer on the first call.
    pub(super) fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.sleep.is_none() {
            let Some(deadline) = tokio::time::Instant::now().checked_add(self.limit) else {
                // Beyond any representable instant: no deadline.
                return Poll::Pending;
            };
            // Made inside the runtime's context, so any executor can poll it.
            let _entered = self.handle.enter();
            self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
        self.sleep.as_mut().expect("made above").as_mut().poll(cx)
    }
}

pin_project_lite::pin_project! {
    /// `fut`, bounded by `limit`. The timer is made (and registered) only if
    /// the first poll is pending: a check or reset that completes at once
    /// costs no timer.
    pub(crate) struct Bounded<'h, F> {
        #[pin]
        fut: F,
        timer: LazyTimer<'h>,
    }
}

/// Bounds `fut` by `limit` (a huge limit: unbounded).
pub(crate) fn bounded<F: Future>(handle: &Handle, limit: Duration, fut: F) -> Bounded<'_, F> {
    Bounded {
        fut,
        timer: LazyTimer::new(handle, limit),
    }
}

impl<F: Future> Future for Bounded<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        this.timer.poll_elapsed(cx).map(|()| Err(Elapsed))
    }
}

/// An acquire timeout at least this many maintenance ticks long is checked
/// on the coarse clock (late by at most one tick: 10% at worst), a shorter
/// one by a timer of its own.
pub(super) const COARSE_FACTOR: u32 = 10;

pin_project_lite::pin_project! {
    /// `fut`, given up once the pool's coarse clock reaches `deadline_ms`.
    /// Costs nothing while `fut` is ready or woken by its own event; the
    /// deadline is looked at whenever it is polled, which the maintenance
    /// task makes happen every tick while anyone waits.
    pub(super) struct CoarseBounded<'c, F> {
        #[pin]
        pub(super) fut: F,
        pub(super) clock: &'c AtomicU64,
        // The pool's runtime shut down: no tick will ever come.
        pub(super) gone: &'c AtomicBool,
        pub(super) deadline_ms: u64,
    }
}

impl<F: Future> Future for CoarseBounded<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if this.clock.load(Relaxed) >= *this.deadline_ms || this.gone.load(Relaxed) {
            return Poll::Ready(Err(Elapsed));
        }
        Poll::Pending
    }
}
