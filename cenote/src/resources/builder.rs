//! Configuring a resource pool.

use std::time::Duration;

use tokio::runtime::Handle;

use super::errors::BuildError;
use super::hooks::{Hooks, LeakReport};
use super::pool::Pool;
use super::stats::DestroyReason;
use super::Manager;

/// Which idle resource a `get` takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueOrder {
    /// The most recently returned (the default): a small hot set stays in
    /// use and the rest idle out.
    #[default]
    Lifo,
    /// The least recently returned: use spreads over all resources.
    Fifo,
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) capacity: usize,
    pub(crate) min_idle: usize,
    pub(crate) acquire_timeout: Duration,
    pub(crate) create_timeout: Duration,
    pub(crate) check_timeout: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) lifetime_jitter: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) check_on_checkout: bool,
    pub(crate) check_bypass: Duration,
    pub(crate) order: QueueOrder,
    pub(crate) max_waiting: Option<usize>,
    pub(crate) leak_threshold: Option<Duration>,
    pub(crate) maintenance_interval: Duration,
    pub(crate) histograms: bool,
    pub(crate) name: Option<String>,
    pub(crate) warn_slow_get: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            capacity: 10,
            min_idle: 0,
            acquire_timeout: Duration::from_secs(30),
            create_timeout: Duration::from_secs(10),
            check_timeout: Duration::from_secs(5),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            lifetime_jitter: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            keepalive: None,
            check_on_checkout: true,
            check_bypass: Duration::from_millis(500),
            order: QueueOrder::Lifo,
            max_waiting: None,
            leak_threshold: None,
            maintenance_interval: Duration::from_millis(100),
            histograms: false,
            name: None,
            warn_slow_get: None,
        }
    }
}

/// Builds a [`Pool`]; every setting is validated at [`build`](Self::build).
///
/// The defaults follow HikariCP and bb8: at most 10 resources, none kept
/// idle by force, a 30 s acquire timeout, a 10 s create timeout, a 5 s
/// check timeout, a 30 min lifetime (minus up to 30 s of jitter, so
/// resources made together do not expire together), a 10 min idle timeout,
/// a check on checkout unless the resource was used in the last 500 ms,
/// LIFO idle order, no keepalive, no leak detection, no load shedding.
#[must_use = "a builder does nothing until build() is called"]
pub struct Builder<M: Manager> {
    manager: M,
    cfg: Config,
    hooks: Hooks<M::Resource>,
    runtime: Option<Handle>,
}

impl<M: Manager> std::fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl<M: Manager> Builder<M> {
    pub(crate) fn new(manager: M) -> Self {
        Builder {
            manager,
            cfg: Config::default(),
            hooks: Hooks::default(),
            runtime: None,
        }
    }

    /// At most `n` resources live at once (lent, idle or being made).
    pub fn capacity(mut self, n: usize) -> Self {
        self.cfg.capacity = n;
        self
    }

    /// Keeps at least `n` idle resources (as long as fewer than `capacity`
    /// exist), made in the background; [`build_filled`](Self::build_filled)
    /// makes them before it returns.
    pub fn min_idle(mut self, n: usize) -> Self {
        self.cfg.min_idle = n;
        self
    }

    /// The longest a `get` waits, for a permit, a create and checks
    /// together (default 30 s). Zero: only a resource free now (the create
    /// or check it may need still runs); a huge one: no limit.
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.cfg.acquire_timeout = d;
        self
    }

    /// The longest one `Manager::create` may take (default 10 s).
    pub fn create_timeout(mut self, d: Duration) -> Self {
        self.cfg.create_timeout = d;
        self
    }

    /// The longest one `Manager::check` or `Manager::reset` may take
    /// (default 5 s).
    pub fn check_timeout(mut self, d: Duration) -> Self {
        self.cfg.check_timeout = d;
        self
    }

    /// Destroys resources older than `d` (when idle or returned), minus a
    /// random jitter (see [`lifetime_jitter`](Self::lifetime_jitter));
    /// `None`: they live until broken or idle too long. Default 30 min.
    pub fn max_lifetime(mut self, d: Option<Duration>) -> Self {
        self.cfg.max_lifetime = d;
        self
    }

    /// Each resource's lifetime is shortened by a random amount up to `d`
    /// (default 30 s, capped at a quarter of the lifetime).
    pub fn lifetime_jitter(mut self, d: Duration) -> Self {
        self.cfg.lifetime_jitter = d;
        self
    }

    /// Destroys resources idle longer than `d`, down to `min_idle`;
    /// `None`: never. Default 10 min.
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.cfg.idle_timeout = d;
        self
    }

    /// Checks idle resources unused for `d` in the background (keeps
    /// firewalls and servers from dropping them silently); `None`: never
    /// (the default).
    pub fn keepalive(mut self, d: Option<Duration>) -> Self {
        self.cfg.keepalive = d;
        self
    }

    /// Whether `get` checks a resource before lending it (default true),
    /// unless it was used within [`check_bypass`](Self::check_bypass).
    pub fn check_on_checkout(mut self, yes: bool) -> Self {
        self.cfg.check_on_checkout = yes;
        self
    }

    /// A resource used within `d` is lent without a check (HikariCP's
    /// bypass window; default 500 ms). Zero: check every time.
    pub fn check_bypass(mut self, d: Duration) -> Self {
        self.cfg.check_bypass = d;
        self
    }

    /// Which idle resource a `get` takes (default LIFO).
    pub fn queue_order(mut self, order: QueueOrder) -> Self {
        self.cfg.order = order;
        self
    }

    /// The pool's name in metrics and log lines (default `resources-<n>`;
    /// a name a live pool already holds gets a `-2` suffix).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.cfg.name = Some(name.into());
        self
    }

    /// Logs a `tracing` warning for every get that waits longer than `d`
    /// for a permit (an early sign of exhaustion). Default: off.
    pub fn warn_slow_get(mut self, d: Duration) -> Self {
        self.cfg.warn_slow_get = Some(d);
        self
    }

    /// At most `n` callers wait; more are refused at once with
    /// `GetError::TooManyWaiting` (load shedding). Default: no limit.
    pub fn max_waiting(mut self, n: usize) -> Self {
        self.cfg.max_waiting = Some(n);
        self
    }

    /// Records how long every waiting get waited, in
    /// [`Stats::wait_histogram`](super::Stats::wait_histogram). Default:
    /// off, and the histogram stays empty; the counts of gets served at once
    /// and after a wait are kept either way. A recorded wait costs a second
    /// clock read and an add to a counter that every waiting thread writes.
    pub fn histograms(mut self, on: bool) -> Self {
        self.cfg.histograms = on;
        self
    }

    /// Reports a resource lent longer than `d`, once, with the place that
    /// acquired it (a `tracing` warning and the
    /// [`on_leak`](Self::on_leak) hook). Default: off.
    pub fn leak_threshold(mut self, d: Duration) -> Self {
        self.cfg.leak_threshold = Some(d);
        self
    }

    /// How often the background task runs (default 100 ms): it keeps
    /// `min_idle`, destroys expired and idle resources, runs keepalive
    /// checks, reports leaks, and advances the pool's coarse clock (the
    /// resolution of the bypass window, idle and lifetime decisions).
    /// One thread of the process (`cenote-ticker`) keeps the time for
    /// every pool, so the pool registers no timer on its runtime; the ticks
    /// follow the real clock, also under tokio's paused test clock.
    pub fn maintenance_interval(mut self, d: Duration) -> Self {
        self.cfg.maintenance_interval = d;
        self
    }

    /// Runs the manager and the background task on `handle` (default: the
    /// runtime `build` is called in, else a runtime of the pool's own on
    /// one thread, so plain-thread programs need none).
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Runs on every new resource before its first use (session settings).
    pub fn on_create(mut self, f: impl Fn(&mut M::Resource) + Send + Sync + 'static) -> Self {
        self.hooks.on_create = Some(Box::new(f));
        self
    }

    /// Runs before a resource is lent; `false` (or a panic) destroys it and
    /// the `get` goes on with another.
    pub fn on_checkout(
        mut self,
        f: impl Fn(&mut M::Resource) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.hooks.on_checkout = Some(Box::new(f));
        self
    }

    /// Runs when a resource comes back, before it is kept or destroyed.
    pub fn on_return(mut self, f: impl Fn(&mut M::Resource) + Send + Sync + 'static) -> Self {
        self.hooks.on_return = Some(Box::new(f));
        self
    }

    /// Runs when the pool gives a resource up, with the reason, before
    /// `Manager::destroy`.
    pub fn on_destroy(
        mut self,
        f: impl Fn(&M::Resource, DestroyReason) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.on_destroy = Some(Box::new(f));
        self
    }

    /// Runs once per leak found by [`leak_threshold`](Self::leak_threshold).
    pub fn on_leak(mut self, f: impl Fn(&LeakReport) + Send + Sync + 'static) -> Self {
        self.hooks.on_leak = Some(Box::new(f));
        self
    }

    fn validate(&self) -> Result<(), BuildError<M::Error>> {
        let c = &self.cfg;
        if c.capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        if c.capacity > crate::limit::MAX_PERMITS {
            return Err(BuildError::CapacityTooLarge(c.capacity));
        }
        if c.min_idle > c.capacity {
            return Err(BuildError::MinIdleAboveCapacity {
                min_idle: c.min_idle,
                capacity: c.capacity,
            });
        }
        let positive = [
            ("create_timeout", Some(c.create_timeout)),
            ("check_timeout", Some(c.check_timeout)),
            ("max_lifetime", c.max_lifetime),
            ("idle_timeout", c.idle_timeout),
            ("keepalive", c.keepalive),
            ("leak_threshold", c.leak_threshold),
            ("maintenance_interval", Some(c.maintenance_interval)),
        ];
        for (name, d) in positive {
            if d == Some(Duration::ZERO) {
                return Err(BuildError::ZeroDuration(name));
            }
        }
        Ok(())
    }

    /// Builds the pool without making any resource (they are made on
    /// demand, and `min_idle` in the background).
    pub fn build(self) -> Result<Pool<M>, BuildError<M::Error>> {
        self.validate()?;
        Pool::start(self.manager, self.cfg, self.hooks, self.runtime)
    }

    /// Builds the pool and makes `max(min_idle, 1)` resources first: if the
    /// first cannot be made, the manager's own error comes back at once
    /// (fail fast: a wrong password is reported as such, not as a timeout
    /// half a minute later).
    pub async fn build_filled(self) -> Result<Pool<M>, BuildError<M::Error>> {
        let pool = self.build()?;
        pool.fill().await?;
        Ok(pool)
    }

    /// [`build_filled`](Self::build_filled) from a plain thread.
    pub fn build_filled_blocking(self) -> Result<Pool<M>, BuildError<M::Error>> {
        let pool = self.build()?;
        let handle = pool.handle().clone();
        super::exec::block_on(&handle, pool.fill(), || false).map_err(|_| {
            BuildError::Runtime(std::io::Error::other(
                "a blocking build cannot wait while its thread exits",
            ))
        })??;
        Ok(pool)
    }
}
