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
        let span = acquire_span(&inner);
        // The `async fn`'s future itself: wrapped in an `async move` block,
        // its state was copied into the wrapper's on the first poll (about
        // 40 instructions of every get). The span's wrapper is made only
        // when a subscriber wants it.
        traced(span, Inner::get(inner, self.priority, timeout, at))
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
            traced(
                acquire_span(inner),
                Inner::get(inner.clone(), self.priority, timeout, at),
            ),
            || inner.core.waiting() == 1,
        )
        .unwrap_or(Err(GetError::ThreadExiting))
    }
}

/// A DEBUG span `acquire` (the pool's name; how long the get took and its
/// outcome are recorded at its end), if a subscriber is interested.
#[cfg(feature = "tracing")]
fn acquire_span<M: Manager>(inner: &Inner<M>) -> Option<tracing::Span> {
    if !tracing::enabled!(target: "cenote::resources", tracing::Level::DEBUG) {
        return None;
    }
    Some(tracing::debug_span!(
        target: "cenote::resources",
        "acquire",
        pool = inner.name.as_str(),
        waited = tracing::field::Empty,
        outcome = tracing::field::Empty
    ))
}

/// `get` inside `span`; `get` itself when there is none.
#[cfg(feature = "tracing")]
fn traced<M: Manager>(
    span: Option<tracing::Span>,
    get: impl std::future::Future<Output = Result<Pooled<M>, GetError<M::Error>>> + Send + 'static,
) -> impl std::future::Future<Output = Result<Pooled<M>, GetError<M::Error>>> + Send + 'static {
    use futures_util::future::Either;
    use tracing::Instrument;
    let Some(span) = span else {
        return Either::Left(get);
    };
    Either::Right(async move {
        let t0 = std::time::Instant::now();
        let got = get.instrument(span.clone()).await;
        span.record("waited", tracing::field::debug(t0.elapsed()));
        span.record("outcome", outcome(&got));
        got
    })
}

/// Without `tracing`: no span.
#[cfg(not(feature = "tracing"))]
struct NoSpan;

#[cfg(not(feature = "tracing"))]
fn acquire_span<M: Manager>(_inner: &Inner<M>) -> NoSpan {
    NoSpan
}

#[cfg(not(feature = "tracing"))]
fn traced<F>(_span: NoSpan, get: F) -> F {
    get
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
