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
