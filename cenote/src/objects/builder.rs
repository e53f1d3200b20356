//! Configuration of an object pool.

use std::time::Duration;

use super::hooks::{self, AcceptFn, MakeHooks, TypedReset};
use super::pool::{start_trimmer, Parts, Pool, TrimStop};
use super::Reset;
use crate::sync::Arc;

/// Default bound on idle objects in the shared store.
pub const DEFAULT_MAX_IDLE: usize = 1024;
/// Default number of objects each thread keeps in its own cache.
pub const DEFAULT_THREAD_CACHE: usize = 8;
/// Largest `max_idle` (the shared store is allocated up front).
pub const MAX_IDLE: usize = 1 << 24;
/// Largest `thread_cache`.
pub const MAX_THREAD_CACHE: usize = 1024;

/// Why a pool could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `max_idle(0)` would keep nothing.
    #[error("max_idle must be at least 1 (a pool that keeps no object is plain allocation)")]
    ZeroMaxIdle,
    /// `max_idle` above [`MAX_IDLE`].
    #[error("max_idle({0}) is above the limit of {max} (its store is allocated up front)", max = MAX_IDLE)]
    MaxIdleTooLarge(usize),
    /// `thread_cache` above [`MAX_THREAD_CACHE`].
    #[error("thread_cache({0}) is above the limit of {max}", max = MAX_THREAD_CACHE)]
    ThreadCacheTooLarge(usize),
    /// `prefill(n)` with `n > max_idle`.
    #[error("prefill({prefill}) is above max_idle({max_idle}): the extra objects would be dropped at once")]
    PrefillAboveMaxIdle {
        /// Objects asked for.
        prefill: usize,
        /// The bound.
        max_idle: usize,
    },
    /// `trim_every(Duration::ZERO)`.
    #[error("trim_every needs a period above zero")]
    ZeroTrimPeriod,
    /// The trimming thread could not be started.
    #[error("could not start the trimming thread: {0}")]
    Trimmer(String),
}

type StartTrimmer<T> = fn(&Pool<T>, Duration, Arc<TrimStop>) -> std::io::Result<()>;

/// Builds a [`Pool`]; from [`Pool::builder`].
#[must_use = "a builder does nothing until build() is called"]
pub struct Builder<T: 'static> {
    create: Box<dyn Fn() -> T + Send + Sync>,
    /// Kept typed up to `build` (see `hooks.rs`).
    reset: Option<Box<dyn MakeHooks<T>>>,
    accept: Option<AcceptFn<T>>,
    max_idle: usize,
    thread_cache: usize,
    prefill: usize,
    discard_on_panic: bool,
    trim: Option<(Duration, StartTrimmer<T>)>,
    name: Option<String>,
    /// Registers the pool with the metrics publisher (set by `name`).
    publish: Option<fn(&Pool<T>)>,
}

impl<T: 'static> std::fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("reset", &self.reset.is_some())
            .field("accept", &self.accept.is_some())
            .field("max_idle", &self.max_idle)
            .field("thread_cache", &self.thread_cache)
            .field("prefill", &self.prefill)
            .field("discard_on_panic", &self.discard_on_panic)
            .field("trim_every", &self.trim.as_ref().map(|(d, _)| d))
            .finish()
    }
}

impl<T: 'static> Builder<T> {
    pub(crate) fn new(create: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Builder {
            create: Box::new(create),
            reset: None,
            accept: None,
            max_idle: DEFAULT_MAX_IDLE,
            thread_cache: DEFAULT_THREAD_CACHE,
            prefill: 0,
            discard_on_panic: true,
            trim: None,
            name: None,
            publish: None,
        }
    }

    /// Runs `f` on every object that comes back, before it is stored, so no
    /// data (a secret, a previous request) sits in the pool. A panic in `f`
    /// drops the object (counted in `dropped_panicked`) and is reported
    /// through `tracing`; it never reaches the code that dropped the guard.
    pub fn reset(mut self, f: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        self.reset = Some(Box::new(TypedReset(f)));
        self
    }

    /// Refuses an object on return when `f` says false (say, a buffer that
    /// grew past 64 KiB); it is dropped and counted in `dropped_refused`.
    /// Runs after the reset.
    pub fn accept(mut self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.accept = Some(Box::new(f));
        self
    }

    /// The bound on idle objects in the shared store (default
    /// [`DEFAULT_MAX_IDLE`]); an object returned past it is dropped and
    /// counted in `dropped_full`. Each thread using the pool may hold up to
    /// [`thread_cache`](Self::thread_cache) more, so at most
    /// `max_idle + threads × thread_cache` objects are idle at once.
    pub fn max_idle(mut self, n: usize) -> Self {
        self.max_idle = n;
        self
    }

    /// How many objects each thread keeps in its own lock-free cache
    /// (default [`DEFAULT_THREAD_CACHE`], never more than `max_idle`); 0
    /// sends every get and return to the shared store, which makes
    /// `max_idle` an exact bound.
    pub fn thread_cache(mut self, n: usize) -> Self {
        self.thread_cache = n;
        self
    }

    /// Creates `n` objects at build time, into the shared store.
    pub fn prefill(mut self, n: usize) -> Self {
        self.prefill = n;
        self
    }

    /// Whether an object whose guard is dropped while its thread panics is
    /// discarded (the default: the panic may have left it half-updated) or
    /// returned like any other.
    pub fn discard_on_panic(mut self, discard: bool) -> Self {
        self.discard_on_panic = discard;
        self
    }

    /// Builds the pool.
    pub fn build(self) -> Result<Pool<T>, BuildError> {
        if self.max_idle == 0 {
            return Err(BuildError::ZeroMaxIdle);
        }
        if self.max_idle > MAX_IDLE {
            return Err(BuildError::MaxIdleTooLarge(self.max_idle));
        }
        if self.thread_cache > MAX_THREAD_CACHE {
            return Err(BuildError::ThreadCacheTooLarge(self.thread_cache));
        }
        if self.prefill > self.max_idle {
            return Err(BuildError::PrefillAboveMaxIdle {
                prefill: self.prefill,
                max_idle: self.max_idle,
            });
        }
        if matches!(self.trim, Some((d, _)) if d.is_zero()) {
            return Err(BuildError::ZeroTrimPeriod);
        }
        let trim_stop = self.trim.map(|_| Arc::new(TrimStop::new()));
        let pool = Pool::from_parts(Parts {
            create: self.create,
            hooks: hooks::hooks(self.reset, self.accept),
            max_idle: self.max_idle,
            thread_cache: self.thread_cache.min(self.max_idle),
            discard_on_panic: self.discard_on_panic,
            trim_stop: trim_stop.clone(),
            name: self.name,
        });
        if let Some(publish) = self.publish {
            publish(&pool);
        }
        pool.prefill(self.prefill);
        if let (Some((period, start)), Some(stop)) = (self.trim, trim_stop) {
            start(&pool, period, stop).map_err(|e| BuildError::Trimmer(e.to_string()))?;
        }
        Ok(pool)
    }
}

impl<T: Reset + 'static> Builder<T> {
    /// Resets returned objects with their [`Reset`] implementation (for
    /// `Vec`, `String`, the std collections, ...: `clear()`).
    pub fn auto_reset(self) -> Self {
        self.reset(T::reset)
    }
}

impl<T: Send + 'static> Builder<T> {
    /// Calls [`Pool::trim`] every `period` from a background thread, which
    /// ends when the pool is dropped. A period of zero is an error; a huge
    /// one means never.
    pub fn trim_every(mut self, period: Duration) -> Self {
        self.trim = Some((period, start_trimmer::<T>));
        self
    }

    /// The pool's name in metrics and log lines (a name a live pool
    /// already holds gets a `-2` suffix). With the `metrics` feature, a
    /// named pool is published (an unnamed one, called `objects-<n>`, is
    /// not): the publisher reads it from cenote's ticker thread, hence
    /// `T: Send`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        #[cfg(feature = "metrics")]
        {
            self.publish = Some(Pool::<T>::register_metrics);
        }
        self
    }
}
