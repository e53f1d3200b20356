//! The pool handle ([`Pool`]) with its public methods, and the state its
//! handles share ([`Inner`]): the manager, the bookkeeping core, the
//! coarse clock and the last error. The way to a resource is in `get.rs`,
//! `check.rs` and `create.rs`, the way back in `release.rs`, the
//! background task in `maintenance.rs` (see `DESIGN.md`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::runtime::Handle;

use super::builder::{Builder, Config, QueueOrder};
use super::core::{Core, Idle, Meta};
use super::errors::{BuildError, GetError, ResizeError, ShutdownError};
use super::exec::{block_on, Rt};
use super::guard::Pooled;
use super::hooks::{Hooks, LentTable};
use super::maintenance::watch_runtime;
use super::request::Request;
use super::stats::{Counters, DestroyReason, Stats};
use super::timeout::bounded;
use super::Manager;
use crate::observe::name::PoolName;
use crate::sync::ticker::{self, Ticked};
use crate::sync::HandleCount;

/// A pool of managed resources (connections, clients), shared by async
/// tasks and plain threads. Cloning gives another handle to the same pool.
/// Dropping the last handle closes the pool: its idle resources go through
/// [`Manager::destroy`] at once (on the pool's runtime), lent ones when
/// their guards drop.
///
/// See the [module documentation](super) for an example and the model.
pub struct Pool<M: Manager> {
    pub(crate) inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        self.inner.handles.cloned();
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl<M: Manager> Drop for Pool<M> {
    /// The last handle closes the pool: nobody can `get` any more, so idle
    /// resources go through `Manager::destroy` now (on the pool's runtime,
    /// if it still runs), and lent ones when their guards drop. Without
    /// this they were only dropped, with the pool's memory, and a
    /// connection never got to say goodbye.
    fn drop(&mut self) {
        if self.inner.handles.dropped() {
            self.close();
        }
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner<M: Manager> {
    pub(crate) manager: M,
    pub(crate) core: Core<M::Resource>,
    pub(crate) cfg: Config,
    pub(crate) hooks: Hooks<M::Resource>,
    pub(crate) counters: Counters,
    /// Milliseconds since `base`, advanced by the maintenance tick and by
    /// the slow paths: reading it is one load (the hot path never reads
    /// the system clock).
    pub(super) clock: AtomicU64,
    pub(super) base: Instant,
    pub(super) next_id: AtomicU64,
    /// The last create or check error since the last successful create.
    pub(super) last_error: Mutex<Option<Arc<M::Error>>>,
    pub(super) has_last_error: AtomicBool,
    /// A permanent create error was logged (cleared by a good create).
    pub(super) permanent_warned: AtomicBool,
    /// `destroy` calls under way.
    pub(super) destroying: AtomicUsize,
    /// `Pool` handles alive; the last one closes the pool.
    pub(super) handles: HandleCount,
    /// Signalled when a resource is destroyed (for `shutdown_timeout`).
    pub(super) gone: tokio::sync::Notify,
    pub(crate) lent: Option<Mutex<LentTable>>,
    /// Consecutive failed background creates (backs the refill off).
    pub(super) refill_failures: AtomicU64,
    pub(super) refill_after_ms: AtomicU64,
    /// `cfg.idle_timeout` and `cfg.check_bypass` in milliseconds (`u64::MAX`:
    /// none), computed once: converting a `Duration` on every get was a
    /// 128-bit division.
    pub(super) idle_timeout_ms: u64,
    pub(super) check_bypass_ms: u64,
    /// An upkeep task (keepalive, refill) is under way.
    pub(super) upkeep_running: AtomicBool,
    /// A tick's task is spawned and has not started yet.
    pub(super) tick_queued: AtomicBool,
    /// Dropped by `close` (or with the pool): ends the runtime watch.
    pub(super) stop_watch: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The runtime shut down under the pool: nothing can be created,
    /// checked or destroyed any more.
    pub(super) runtime_gone: AtomicBool,
    /// Woken by `close`: gets waiting for their create give up at once.
    pub(super) closing: tokio::sync::Notify,
    pub(crate) rt: Rt,
    pub(crate) name: PoolName,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::observe::resources::ResourceMetrics,
}

impl<M: Manager> Pool<M> {
    /// A builder for a pool of `manager`'s resources.
    pub fn builder(manager: M) -> Builder<M> {
        Builder::new(manager)
    }

    pub(crate) fn start(
        manager: M,
        cfg: Config,
        hooks: Hooks<M::Resource>,
        runtime: Option<Handle>,
    ) -> Result<Pool<M>, BuildError<M::Error>> {
        let rt = Rt::new(runtime).map_err(BuildError::Runtime)?;
        let lent = cfg.leak_threshold.map(|_| Mutex::new(LentTable::default()));
        let idle_timeout_ms = cfg.idle_timeout.map_or(u64::MAX, Inner::<M>::ms);
        let check_bypass_ms = Inner::<M>::ms(cfg.check_bypass);
        let (stop_watch, stopped) = tokio::sync::oneshot::channel();
        let name = PoolName::claim("resources", cfg.name.as_deref());
        let inner = Arc::new(Inner {
            manager,
            core: Core::new(cfg.capacity, cfg.order == QueueOrder::Lifo),
            cfg,
            hooks,
            counters: Counters::default(),
            clock: AtomicU64::new(0),
            base: Instant::now(),
            next_id: AtomicU64::new(1),
            last_error: Mutex::new(None),
            has_last_error: AtomicBool::new(false),
            permanent_warned: AtomicBool::new(false),
            destroying: AtomicUsize::new(0),
            handles: HandleCount::new(),
            gone: tokio::sync::Notify::new(),
            lent,
            refill_failures: AtomicU64::new(0),
            refill_after_ms: AtomicU64::new(0),
            idle_timeout_ms,
            check_bypass_ms,
            upkeep_running: AtomicBool::new(false),
            tick_queued: AtomicBool::new(false),
            stop_watch: Mutex::new(Some(stop_watch)),
            runtime_gone: AtomicBool::new(false),
            closing: tokio::sync::Notify::new(),
            rt,
            #[cfg(feature = "metrics")]
            metrics: crate::observe::resources::ResourceMetrics::new(name.shared()),
            name,
        });
        #[cfg(feature = "metrics")]
        crate::observe::publish::register(
            Arc::downgrade(&inner) as Weak<dyn crate::observe::publish::Publish>
        );
        let weak = Arc::downgrade(&inner);
        inner.rt.handle.spawn(watch_runtime(weak.clone(), stopped));
        let ticked: Weak<dyn Ticked> = weak;
        if let Err(e) = ticker::register(ticked, inner.cfg.maintenance_interval) {
            Pool { inner }.close();
            return Err(BuildError::Runtime(e));
        }
        Ok(Pool { inner })
    }

    /// Gets a resource: an idle one (reset, and checked unless used within
    /// the bypass window) or a new one, waiting FIFO for a slot when
    /// `capacity` are lent, at most the acquire timeout. Cancel-safe:
    /// dropping the future at any point leaves no slot and no waiter behind
    /// (a create under way finishes in the background and its resource
    /// goes idle).
    #[track_caller]
    pub fn get(
        &self,
    ) -> impl std::future::Future<Output = Result<Pooled<M>, GetError<M::Error>>> + Send + 'static
    {
        self.request().get()
    }

    /// [`get`](Self::get) from a plain thread, blocking it (at most the
    /// acquire timeout).
    ///
    /// On a worker of a multi-thread tokio runtime it waits in
    /// `block_in_place`; from a thread-local's destructor it may return
    /// [`GetError::ThreadExiting`].
    ///
    /// # Panics
    /// On the thread that drives a current-thread tokio runtime, if it has
    /// to wait: it would never return, as the pool's creates run on that
    /// thread. Use `get().await` there, or `spawn_blocking`.
    #[track_caller]
    pub fn get_blocking(&self) -> Result<Pooled<M>, GetError<M::Error>> {
        self.request().get_blocking()
    }

    /// [`get_blocking`](Self::get_blocking) with a timeout of its own.
    #[track_caller]
    pub fn get_timeout(&self, timeout: Duration) -> Result<Pooled<M>, GetError<M::Error>> {
        self.request().timeout(timeout).get_blocking()
    }

    /// A `get` with a priority or a timeout of its own.
    pub fn request(&self) -> Request<'_, M> {
        Request::new(self)
    }

    /// The pool's runtime.
    pub fn handle(&self) -> &Handle {
        &self.inner.rt.handle
    }

    /// Live resources: idle, lent, and being created or checked.
    pub fn size(&self) -> usize {
        self.inner.core.size()
    }

    /// Idle resources, ready to lend.
    pub fn idle(&self) -> usize {
        self.inner.core.idle()
    }

    /// Resources lent to callers (and being created or checked for them).
    pub fn in_use(&self) -> usize {
        let core = &self.inner.core;
        core.permits_held()
            .min(core.size().saturating_sub(core.idle()))
    }

    /// Callers waiting for a resource.
    pub fn waiting(&self) -> usize {
        self.inner.core.waiting()
    }

    /// The bound on [`size`](Self::size), as last set by the builder or
    /// [`resize`](Self::resize).
    pub fn capacity(&self) -> usize {
        self.inner.core.max()
    }

    /// Counters since the pool was built, and the gauges at this moment.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The pool's name (see [`Builder::name`]).
    pub fn name(&self) -> &str {
        self.inner.name.as_str()
    }

    /// Sets `capacity` to `n`, both ways. Growing lets waiters in at once;
    /// shrinking destroys idle resources over the bound now and lent ones
    /// as they come back.
    pub fn resize(&self, n: usize) -> Result<(), ResizeError> {
        if n == 0 {
            return Err(ResizeError::ZeroCapacity);
        }
        if self.inner.core.is_closed() {
            return Err(ResizeError::Closed);
        }
        let over = self.inner.core.set_max(n).map_err(|e| match e {
            crate::limit::ResizeError::Closed => ResizeError::Closed,
            _ => ResizeError::CapacityTooLarge(n),
        })?;
        for item in over {
            self.inner.dispose(item, DestroyReason::Evicted);
        }
        Ok(())
    }

    /// Destroys the idle resources for which `keep` returns false; returns
    /// how many.
    ///
    /// `keep` runs with no pool lock held, so it may call any method of
    /// the pool (`stats`, `close`, `resize`, even `retain`) or drop a lent
    /// resource. The idle resources are out of the store while it decides:
    /// a `get` meanwhile does not see them (it may create others, within
    /// `capacity`), and the kept ones go back afterwards, also when `keep`
    /// panics (the panic then goes on to the caller).
    pub fn retain(&self, mut keep: impl FnMut(&M::Resource, ResourceInfo) -> bool) -> usize {
        let inner = &self.inner;
        let now = inner.refresh_clock();
        let mut asked = Asked {
            inner,
            items: inner.core.take_idle_where(|_| true).into_iter(),
            kept: Vec::new(),
        };
        let mut gone = 0;
        for item in asked.items.by_ref() {
            // Kept while asked about: a panic in `keep` puts it back too.
            asked.kept.push(item);
            let item = asked.kept.last().expect("pushed");
            if !keep(&item.res, ResourceInfo::of(&item.meta, now)) {
                let item = asked.kept.pop().expect("pushed");
                inner.dispose(item, DestroyReason::Evicted);
                gone += 1;
            }
        }
        gone
    }

    /// Destroys every idle resource; returns how many.
    pub fn evict_idle(&self) -> usize {
        self.retain(|_, _| false)
    }

    /// Stops lending: waiting and later `get`s fail with
    /// `GetError::Closed`, idle resources are destroyed now, lent ones when
    /// they come back.
    pub fn close(&self) {
        for item in self.inner.core.close() {
            self.inner.dispose(item, DestroyReason::Evicted);
        }
        // Gets waiting for their create give up now (it finishes in the
        // background, and its resource goes to `destroy`).
        self.inner.closing.notify_waiters();
        self.inner.stop_watch.lock().take();
    }

    /// Whether the pool is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.core.is_closed()
    }

    /// Closes the pool, then waits at most `d` for lent resources to come
    /// back and every `destroy` to finish.
    pub async fn shutdown_timeout(&self, d: Duration) -> Result<(), ShutdownError> {
        self.close();
        let inner = &self.inner;
        let done = || inner.core.size() == 0 && inner.destroying.load(SeqCst) == 0;
        let wait = async {
            loop {
                let gone = inner.gone.notified();
                if done() {
                    return;
                }
                gone.await;
            }
        };
        match bounded(&inner.rt.handle, d, wait).await {
            Ok(()) => Ok(()),
            Err(_) => Err(ShutdownError {
                lent: inner.core.size(),
                destroying: inner.destroying.load(SeqCst),
            }),
        }
    }

    /// [`shutdown_timeout`](Self::shutdown_timeout) from a plain thread. Called
    /// from a thread-local's destructor it closes and returns at once.
    pub fn shutdown_timeout_blocking(&self, d: Duration) -> Result<(), ShutdownError> {
        self.close();
        let inner = &self.inner;
        block_on(&inner.rt.handle, self.shutdown_timeout(d), || false).unwrap_or(Err(
            ShutdownError {
                lent: inner.core.size(),
                destroying: inner.destroying.load(SeqCst),
            },
        ))
    }
}

/// The idle resources `retain` took out to ask about: the kept ones and
/// those not yet asked about go back to the store when it is dropped
/// (destroyed if the pool closed or shrank meanwhile).
struct Asked<'a, M: Manager> {
    inner: &'a Arc<Inner<M>>,
    items: std::vec::IntoIter<Idle<M::Resource>>,
    kept: Vec<Idle<M::Resource>>,
}

impl<M: Manager> Drop for Asked<'_, M> {
    fn drop(&mut self) {
        for item in self.kept.drain(..).chain(&mut self.items) {
            for item in self.inner.core.put_idle(item) {
                self.inner.dispose(item, DestroyReason::Evicted);
            }
        }
    }
}

/// What `retain` knows about an idle resource.
#[derive(Clone, Copy, Debug)]
pub struct ResourceInfo {
    /// The resource's number in its pool.
    pub id: u64,
    /// Time since it was created (coarse).
    pub age: Duration,
    /// Time since it was last returned or checked (coarse).
    pub idle_for: Duration,
}

impl ResourceInfo {
    fn of(meta: &Meta, now_ms: u64) -> Self {
        ResourceInfo {
            id: meta.id,
            age: Duration::from_millis(now_ms.saturating_sub(meta.created_ms)),
            idle_for: Duration::from_millis(now_ms.saturating_sub(meta.last_used_ms)),
        }
    }
}

impl<M: Manager> Inner<M> {
    pub(crate) fn stats(&self) -> Stats {
        let core = &self.core;
        let size = core.size();
        let idle = core.idle();
        let mut stats = self.counters.snapshot(self.cfg.histograms);
        stats.size = size;
        stats.idle = idle;
        stats.in_use = core.permits_held().min(size.saturating_sub(idle));
        stats.waiting = core.waiting();
        stats.capacity = core.max();
        stats
    }

    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.load(Relaxed)
    }

    /// Reads the system clock into the coarse one (slow paths only).
    pub(crate) fn refresh_clock(&self) -> u64 {
        let now = self.base.elapsed().as_millis() as u64;
        self.clock.fetch_max(now, Relaxed);
        now
    }

    pub(super) fn ms(d: Duration) -> u64 {
        d.as_millis().min(u128::from(u64::MAX / 4)) as u64
    }

    pub(super) fn last_error(&self) -> Option<Arc<M::Error>> {
        if !self.has_last_error.load(Relaxed) {
            return None;
        }
        self.last_error.lock().clone()
    }

    pub(super) fn record_error(&self, e: Arc<M::Error>) {
        *self.last_error.lock() = Some(e);
        self.has_last_error.store(true, Relaxed);
    }

    pub(super) fn clear_error(&self) {
        if self.permanent_warned.load(Relaxed) {
            self.permanent_warned.store(false, Relaxed);
        }
        if self.has_last_error.load(Relaxed) {
            *self.last_error.lock() = None;
            self.has_last_error.store(false, Relaxed);
        }
    }

    /// Whether the runtime shut down under the pool.
    pub(super) fn is_runtime_gone(&self) -> bool {
        self.runtime_gone.load(SeqCst)
    }
}

impl<M: Manager> Drop for Inner<M> {
    fn drop(&mut self) {
        // The last handle closed the pool and handed its idle resources to
        // `destroy`; what is left here (a resource returned while the
        // runtime was gone, say) can only be dropped.
        let _ = self.core.close();
    }
}

#[cfg(feature = "metrics")]
impl<M: Manager> crate::observe::publish::Publish for Inner<M> {
    fn publish(&self) {
        self.metrics.publish(&self.stats(), self.cfg.min_idle);
    }
}
