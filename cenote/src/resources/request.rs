//! [`Request`]: a `get` with options, a priority and a timeout of its own.

use std::panic::Location;
use std::time::Duration;

use super::errors::GetError;
use super::exec::block_on;
use super::guard::Pooled;
use super::pool::{Inner, Pool};
use super::Manager;

/// A `get` with options: a priority and a timeout of its own.
#[must_use = "a Request does nothing until get() or get_blocking()"]
pub struct Request<'a, M: Manager> {
    pool: &'a Pool<M>,
    priority: i32,
    timeout: Option<Duration>,
}

impl<M: Manager> std::fmt::Debug for Request<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<'a, M: Manager> Request<'a, M> {
    /// A plain `get`'s options: priority 0, the pool's acquire timeout.
    pub(super) fn new(pool: &'a Pool<M>) -> Self {
        Request {
            pool,
            priority: 0,
            timeout: None,
        }
    }

    /// Waits ahead of every caller of lower priority (plain `get`s have
    /// priority 0); FIFO among equals.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// This call's acquire timeout instead of the pool's.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Gets a resource (async).
    #[track_caller]
    pub fn get(
        self,
    ) -> impl std::future::Future<Output = Result<Pooled<M>, GetError<M::Error>>> + Send + 'static
    {
        let at = Location::caller();
        let inner = self.pool.inner.clone();
        let timeout = self.timeout.unwrap_or(inner.cfg.acquire_timeout);
        // The `async fn`'s future itself: wrapped in an `async move` block,
        // its state was copied into the wrapper's on the first poll (about
        // 40 instructions of every get).
        Inner::get(inner, self.priority, timeout, at)
    }

    /// Gets a resource, blocking the calling thread (not for async code:
    /// use [`get`](Self::get) there).
    #[track_caller]
    pub fn get_blocking(self) -> Result<Pooled<M>, GetError<M::Error>> {
        let at = Location::caller();
        let inner = &self.pool.inner;
        let timeout = self.timeout.unwrap_or(inner.cfg.acquire_timeout);
        // The only waiter is served next: it watches before it parks.
        block_on(
            &inner.rt.handle,
            Inner::get(inner.clone(), self.priority, timeout, at),
            || inner.core.waiting() == 1,
        )
        .unwrap_or(Err(GetError::ThreadExiting))
    }
}

/// The DEBUG span `acquire` of one get (the pool's name; how long the get
/// took and its outcome, recorded at its end), made only when a subscriber
/// is interested. It is not entered: it carries the get's outcome and
/// duration, and events inside the get stand on their own. Entering it at
/// every poll takes a wrapper future, and moving the get's state into one
/// cost about 50 instructions of every get, traced or not.
pub(super) struct AcquireSpan(
    #[cfg(feature = "tracing")] Option<Box<(tracing::Span, std::time::Instant)>>,
);

impl AcquireSpan {
    #[cfg(feature = "tracing")]
    #[inline]
    pub(super) fn new<M: Manager>(inner: &Inner<M>) -> AcquireSpan {
        // The global level filter first: one load, where `enabled!` looks
        // up the thread's dispatcher.
        if !tracing::level_enabled!(tracing::Level::DEBUG) {
            return AcquireSpan(None);
        }
        AcquireSpan(Self::make(inner))
    }

    #[cfg(feature = "tracing")]
    #[cold]
    fn make<M: Manager>(inner: &Inner<M>) -> Option<Box<(tracing::Span, std::time::Instant)>> {
        if !tracing::enabled!(target: "cenote::resources", tracing::Level::DEBUG) {
            return None;
        }
        let span = tracing::debug_span!(
            target: "cenote::resources",
            "acquire",
            pool = inner.name.as_str(),
            waited = tracing::field::Empty,
            outcome = tracing::field::Empty
        );
        Some(Box::new((span, std::time::Instant::now())))
    }

    #[cfg(not(feature = "tracing"))]
    #[inline]
    pub(super) fn new<M: Manager>(_inner: &Inner<M>) -> AcquireSpan {
        AcquireSpan()
    }

    /// Records the get's duration and outcome.
    #[inline]
    pub(super) fn end<M: Manager>(&self, got: &Result<Pooled<M>, GetError<M::Error>>) {
        #[cfg(feature = "tracing")]
        if let Some(traced) = &self.0 {
            let (span, t0) = &**traced;
            span.record("waited", tracing::field::debug(t0.elapsed()));
            span.record("outcome", outcome(got));
        }
        #[cfg(not(feature = "tracing"))]
        let _ = got;
    }
}

/// The `outcome` of an `acquire` span.
#[cfg(feature = "tracing")]
fn outcome<M: Manager>(got: &Result<Pooled<M>, GetError<M::Error>>) -> &'static str {
    match got {
        Ok(_) => "ok",
        Err(GetError::TimedOut { .. }) => "timed_out",
        Err(GetError::Closed) => "closed",
        Err(GetError::TooManyWaiting(_)) => "rejected",
        Err(GetError::Create(_)) => "create_failed",
        Err(_) => "error",
    }
}
