//! The pool: getting, returning, destroying and controlling resources (see
//! `DESIGN.md`).

use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::future::Either;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::builder::{Builder, Config, QueueOrder};
use super::core::{Core, Dirty, Idle, Meta, Slot};
use super::errors::{BuildError, GetError, ShutdownError};
use super::exec::{block_on, bounded, jitter, Rt};
use super::guard::{Lease, Pooled};
use super::hooks::{guarded, Hooks, LeakReport, Lent, LentTable};
use super::stats::{Counters, DestroyReason, Stats};
use super::Manager;

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
        self.inner.handles.fetch_add(1, Relaxed);
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
        if self.inner.handles.fetch_sub(1, AcqRel) == 1 {
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
    /// Milliseconds since `base`, advanced by the maintenance task and by
    /// the slow paths: reading it is one load (the hot path never reads
    /// the system clock).
    clock: AtomicU64,
    base: Instant,
    next_id: AtomicU64,
    /// The last create or check error since the last successful create.
    last_error: Mutex<Option<Arc<M::Error>>>,
    has_last_error: AtomicBool,
    /// `destroy` calls under way.
    destroying: AtomicUsize,
    /// `Pool` handles alive; the last one closes the pool.
    handles: AtomicUsize,
    /// Signalled when a resource is destroyed (for `shutdown_timeout`).
    gone: tokio::sync::Notify,
    pub(crate) lent: Option<Mutex<LentTable>>,
    /// Consecutive failed background creates (backs the refill off).
    refill_failures: AtomicU64,
    refill_after_ms: AtomicU64,
    /// `cfg.idle_timeout` and `cfg.check_bypass` in milliseconds (`u64::MAX`:
    /// none), computed once: converting a `Duration` on every get was a
    /// 128-bit division.
    idle_timeout_ms: u64,
    check_bypass_ms: u64,
    /// An upkeep task (keepalive, refill) is under way.
    upkeep_running: AtomicBool,
    /// The runtime shut down under the pool: nothing can be created,
    /// checked or destroyed any more.
    runtime_gone: AtomicBool,
    /// Woken by `close`: gets waiting for their create give up at once.
    closing: tokio::sync::Notify,
    pub(crate) rt: Rt,
}

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

impl<M: Manager> Request<'_, M> {
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
            destroying: AtomicUsize::new(0),
            handles: AtomicUsize::new(1),
            gone: tokio::sync::Notify::new(),
            lent,
            refill_failures: AtomicU64::new(0),
            refill_after_ms: AtomicU64::new(0),
            idle_timeout_ms,
            check_bypass_ms,
            upkeep_running: AtomicBool::new(false),
            runtime_gone: AtomicBool::new(false),
            closing: tokio::sync::Notify::new(),
            rt,
        });
        let weak = Arc::downgrade(&inner);
        let tick = inner.cfg.maintenance_interval;
        inner.rt.handle.spawn(maintain(weak, tick));
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
        Request {
            pool: self,
            priority: 0,
            timeout: None,
        }
    }

    /// The pool's runtime.
    pub fn handle(&self) -> &Handle {
        &self.inner.rt.handle
    }

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
        let core = &self.inner.core;
        let size = core.size();
        let idle = core.idle();
        let mut stats = self.inner.counters.snapshot();
        stats.size = size;
        stats.idle = idle;
        stats.in_use = core.permits_held().min(size.saturating_sub(idle));
        stats.waiting = core.waiting();
        stats.capacity = core.max();
        stats
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

/// Why `resize` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResizeError {
    /// `resize(0)`.
    #[error("capacity must be at least 1")]
    ZeroCapacity,
    /// Above [`MAX_PERMITS`](crate::limit::MAX_PERMITS).
    #[error("capacity {0} is above the limit ({max})", max = crate::limit::MAX_PERMITS)]
    CapacityTooLarge(usize),
    /// The pool is closed.
    #[error("the pool is closed")]
    Closed,
}

pub(crate) enum CreateFailure<E> {
    Failed(Arc<E>),
    /// Timed out, or the manager panicked.
    TimedOut,
}

/// A failed check or reset.
enum CheckFailure<E> {
    Failed(E),
    /// Timed out, or the manager panicked.
    TimedOut,
}

/// How a call into the manager ended.
enum Call<T, E> {
    Done(T),
    Failed(E),
    TimedOut,
    Panicked,
}

/// Runs a manager future bounded by `limit`, catching a panic (reported,
/// and treated as a failure: a panicking manager never takes a slot or
/// the background task down).
///
/// One hand-written layer (the timeout, made only if the first poll is
/// pending, and the panic guard), not an `async fn` around a timeout
/// around `catch_unwind`: every `get` of a returned resource runs the
/// manager's reset through it, so its layers were paid on each one.
fn call<'h, F, T, E>(
    handle: &'h Handle,
    limit: Duration,
    what: &'static str,
    fut: F,
) -> Guarded<'h, F>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    Guarded {
        fut,
        what,
        limit,
        handle,
        sleep: None,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`call`].
    struct Guarded<'h, F> {
        #[pin]
        fut: F,
        what: &'static str,
        limit: Duration,
        handle: &'h Handle,
        sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F, T, E> std::future::Future for Guarded<'_, F>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    type Output = Call<T, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = self.project();
        let fut = this.fut;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(Ok(v))) => return Poll::Ready(Call::Done(v)),
            Ok(Poll::Ready(Err(e))) => return Poll::Ready(Call::Failed(e)),
            Ok(Poll::Pending) => {}
            Err(payload) => {
                tracing::error!("cenote: the resource manager's {} panicked", this.what);
                crate::unwind::drop_payload(payload);
                return Poll::Ready(Call::Panicked);
            }
        }
        if this.sleep.is_none() {
            let Some(deadline) = tokio::time::Instant::now().checked_add(*this.limit) else {
                // Beyond any representable instant: no deadline.
                return Poll::Pending;
            };
            // Made inside the runtime's context, so any executor can poll it.
            let _entered = this.handle.enter();
            *this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
        match this.sleep.as_mut().expect("made above").as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Call::TimedOut),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<M: Manager> Inner<M> {
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

    fn ms(d: Duration) -> u64 {
        d.as_millis().min(u128::from(u64::MAX / 4)) as u64
    }

    fn last_error(&self) -> Option<Arc<M::Error>> {
        if !self.has_last_error.load(Relaxed) {
            return None;
        }
        self.last_error.lock().clone()
    }

    fn record_error(&self, e: Arc<M::Error>) {
        *self.last_error.lock() = Some(e);
        self.has_last_error.store(true, Relaxed);
    }

    fn clear_error(&self) {
        if self.has_last_error.load(Relaxed) {
            *self.last_error.lock() = None;
            self.has_last_error.store(false, Relaxed);
        }
    }

    /// The whole `get`.
    async fn get(
        this: Arc<Self>,
        priority: i32,
        timeout: Duration,
        at: &'static Location<'static>,
    ) -> Result<Pooled<M>, GetError<M::Error>> {
        if this.core.is_closed() {
            return Err(GetError::Closed);
        }
        // A deadline is computed only on a path that may wait.
        let mut started: Option<Instant> = None;
        if this.core.try_permit() {
            this.counters.served_at_once.add(1);
        } else {
            let t0 = Instant::now();
            started = Some(t0);
            if let Some(max) = this.cfg.max_waiting {
                let waiting = this.core.waiting();
                if waiting >= max {
                    this.counters.shed.fetch_add(1, Relaxed);
                    return Err(GetError::TooManyWaiting(waiting));
                }
            }
            let mut acquire = this.core.acquire(priority);
            let coarse = (this.cfg.maintenance_interval)
                .checked_mul(COARSE_FACTOR)
                .is_some_and(|floor| timeout >= floor);
            let acquired = if coarse {
                // A long timeout: checked against the coarse clock each time
                // the background task nudges the waiters (at most one tick
                // late, never early), instead of a timer per waiting get.
                // The deadline is set on the coarse clock, which may lag
                // the real one, so its passing is confirmed on the real
                // clock before the get gives up (one clock read at the end,
                // none per get to place the deadline).
                let mut deadline_ms = this.now_ms().saturating_add(Self::ms(timeout));
                loop {
                    let bounded = CoarseBounded {
                        fut: &mut acquire,
                        clock: &this.clock,
                        gone: &this.runtime_gone,
                        deadline_ms,
                    };
                    match bounded.await {
                        Err(_) if t0.elapsed() < timeout && !this.is_runtime_gone() => {
                            let left = timeout.saturating_sub(t0.elapsed());
                            deadline_ms = this.refresh_clock().saturating_add(Self::ms(left) + 1);
                        }
                        r => break r,
                    }
                }
            } else {
                bounded(&this.rt.handle, timeout, acquire).await
            };
            match acquired {
                Ok(Ok(permit)) => permit.keep(),
                Ok(Err(_)) => return Err(GetError::Closed),
                Err(_) if this.is_runtime_gone() => return Err(GetError::RuntimeGone),
                Err(_) => return Err(this.timed_out(t0, None)),
            }
            this.counters.waited(t0.elapsed());
        }
        // The caller's handle becomes the lease (no second clone on the
        // way to a resource), taken at once so a cancelled reset or check
        // still gives the permit back.
        let lease = Lease::new(this);
        let inner = lease.inner();
        let mut mine = None;
        while let Some(item) = inner.core.pop_idle() {
            if let Some(item) = inner.ready(item, &mut mine).await {
                return inner.clone().lend(lease, item, at);
            }
        }
        let inner = inner.clone();
        inner.checkout(lease, timeout, started, mine, at).await
    }

    /// Hands a ready resource to its caller, unless the pool closed while
    /// it was being made ready: then it goes to `destroy` and the caller
    /// gets `Closed` (every get still under way when `close` is called
    /// fails).
    #[inline]
    fn lend(
        self: Arc<Self>,
        lease: Lease<M>,
        item: Idle<M::Resource>,
        at: &'static Location<'static>,
    ) -> Result<Pooled<M>, GetError<M::Error>> {
        if self.core.is_closed() {
            self.dispose(item, DestroyReason::Evicted);
            drop(lease);
            return Err(GetError::Closed);
        }
        Ok(Pooled::new(lease, item, at))
    }

    /// Whether the runtime shut down under the pool.
    fn is_runtime_gone(&self) -> bool {
        self.runtime_gone.load(SeqCst)
    }

    fn timed_out(&self, t0: Instant, mine: Option<Arc<M::Error>>) -> GetError<M::Error> {
        self.counters.timed_out.fetch_add(1, Relaxed);
        GetError::TimedOut {
            waited: t0.elapsed(),
            last_error: mine.or_else(|| self.last_error()),
        }
    }

    /// With a permit: an idle resource that passes its reset and check, or
    /// a new one.
    async fn checkout(
        self: &Arc<Self>,
        mut lease: Lease<M>,
        timeout: Duration,
        mut started: Option<Instant>,
        mut mine: Option<Arc<M::Error>>,
        at: &'static Location<'static>,
    ) -> Result<Pooled<M>, GetError<M::Error>> {
        let mut backoff = Duration::from_millis(5);
        loop {
            while let Some(item) = self.core.pop_idle() {
                if let Some(item) = self.ready(item, &mut mine).await {
                    return self.clone().lend(lease, item, at);
                }
            }
            // Made before the check: a `close` after it wakes this.
            let closing = std::pin::pin!(self.closing.notified());
            if self.core.is_closed() {
                return Err(GetError::Closed);
            }
            if self.is_runtime_gone() {
                return Err(GetError::RuntimeGone);
            }
            // Nothing idle: make one. The permit travels with the create
            // (so a caller that gives up leaves it to finish in the
            // background, its resource going idle).
            let t0 = *started.get_or_insert_with(Instant::now);
            let left = timeout.saturating_sub(t0.elapsed());
            let rx = self.spawn_create(lease);
            let made = futures_util::future::select(rx, closing);
            let created = match bounded(&self.rt.handle, left, made).await {
                Err(_) => return Err(self.timed_out(t0, mine)),
                // Closed while the create runs: it finishes in the
                // background and goes to `destroy`.
                Ok(Either::Right(_)) => return Err(GetError::Closed),
                Ok(Either::Left((created, _))) => created,
            };
            match created {
                // The create task was dropped unrun or cut off: its
                // runtime shut down.
                Err(_) => {
                    self.runtime_gone.store(true, SeqCst);
                    return Err(GetError::RuntimeGone);
                }
                Ok(Ok(mut created)) => {
                    let (l, item) = created.take();
                    let item = match self.on_checkout_hook(item) {
                        Some(item) => item,
                        None => {
                            lease = l;
                            continue;
                        }
                    };
                    return self.clone().lend(l, item, at);
                }
                Ok(Err((failure, l))) => {
                    lease = l;
                    match failure {
                        CreateFailure::Failed(e) => {
                            if guarded("is_permanent", false, || self.manager.is_permanent(&e)) {
                                return Err(GetError::Create(e));
                            }
                            mine = Some(e);
                        }
                        CreateFailure::TimedOut => {}
                    }
                    // Transient: try again after a pause, within the
                    // deadline (an idle resource may come back meanwhile).
                    let left = timeout.saturating_sub(t0.elapsed());
                    if left <= backoff {
                        return Err(self.timed_out(t0, mine));
                    }
                    let pause = {
                        let _entered = self.rt.handle.enter();
                        tokio::time::sleep(backoff)
                    };
                    pause.await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Starts a create for a caller, on the pool's runtime, with the
    /// caller's permit; its outcome comes through the receiver. Dropped
    /// unrun or cut off (the runtime shut down), the task still uncounts
    /// the resource it was to make (`Unmade`), so `size` never keeps a
    /// create that will not happen; the sender dropped unsent tells the
    /// caller.
    fn spawn_create(self: &Arc<Self>, lease: Lease<M>) -> oneshot::Receiver<CreateOutcome<M>> {
        let (tx, rx) = oneshot::channel();
        self.core.start_create();
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

    /// An idle resource made ready to lend: not expired, reset, checked
    /// (unless used within the bypass window), accepted by the checkout
    /// hook; `None` if it was destroyed instead.
    async fn ready(
        self: &Arc<Self>,
        item: Idle<M::Resource>,
        mine: &mut Option<Arc<M::Error>>,
    ) -> Option<Idle<M::Resource>> {
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
                Call::Failed(e) => return held.fail(CheckFailure::Failed(e), mine),
                Call::TimedOut | Call::Panicked => return held.fail(CheckFailure::TimedOut, mine),
            }
        }
        if self.cfg.check_on_checkout
            && now.saturating_sub(item.meta.last_used_ms) >= self.check_bypass_ms
        {
            let check = self.manager.check(&mut item.res);
            match call(&self.rt.handle, self.cfg.check_timeout, "check", check).await {
                Call::Done(()) => item.meta.last_used_ms = self.now_ms(),
                Call::Failed(e) => return held.fail(CheckFailure::Failed(e), mine),
                Call::TimedOut | Call::Panicked => return held.fail(CheckFailure::TimedOut, mine),
            }
        }
        let item = held.item.take().expect("still held");
        self.on_checkout_hook(item)
    }

    fn on_checkout_hook(
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

    /// Makes one resource (the caller counted it with `start_create`);
    /// on failure, or cut off, it is counted gone again.
    pub(crate) async fn create_one(
        self: &Arc<Self>,
    ) -> Result<Idle<M::Resource>, CreateFailure<M::Error>> {
        // Cut off midway (its task dropped by a runtime shutting down), the
        // create is uncounted all the same.
        let unmade = Unmade(Some(self.clone()));
        let created = call(
            &self.rt.handle,
            self.cfg.create_timeout,
            "create",
            self.manager.create(),
        )
        .await;
        drop(unmade.disarm());
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
                let e = Arc::new(e);
                tracing::debug!("cenote: creating a pooled resource failed: {e}");
                self.record_error(e.clone());
                self.gone.notify_waiters();
                Err(CreateFailure::Failed(e))
            }
            Call::TimedOut | Call::Panicked => {
                self.core.forget();
                self.counters.create_failures.fetch_add(1, Relaxed);
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

    /// Hands a resource to `destroy` (counted gone now, so a replacement
    /// may be made while it closes).
    pub(crate) fn dispose(self: &Arc<Self>, item: Idle<M::Resource>, why: DestroyReason) {
        self.core.forget();
        self.counters.destroyed(why);
        if let Some(hook) = &self.hooks.on_destroy {
            guarded("on_destroy", (), || hook(&item.res, why));
        }
        self.destroying.fetch_add(1, SeqCst);
        let inner = self.clone();
        struct Done<M: Manager>(Arc<Inner<M>>);
        impl<M: Manager> Drop for Done<M> {
            fn drop(&mut self) {
                self.0.destroying.fetch_sub(1, SeqCst);
                self.0.gone.notify_waiters();
            }
        }
        // Spawned, so a guard's drop never waits for it; if the runtime is
        // gone, the task is dropped unrun and the resource with it.
        self.rt.handle.spawn(async move {
            let done = Done(inner);
            done.0.manager.destroy(item.res).await;
        });
    }

    /// A guard's return path (see `Pooled::drop`).
    pub(crate) fn give_back(self: &Arc<Self>, mut item: Idle<M::Resource>, lent_slot: usize) {
        if let Some(lent) = &self.lent {
            lent.lock().remove(lent_slot);
        }
        if std::thread::panicking() {
            self.dispose(item, DestroyReason::Panicked);
            return;
        }
        if guarded("is_broken", true, || self.manager.is_broken(&mut item.res)) {
            self.dispose(item, DestroyReason::Broken);
            return;
        }
        if let Some(hook) = &self.hooks.on_return {
            guarded("on_return", (), || hook(&mut item.res));
        }
        let now = self.now_ms();
        if item.meta.expires_ms <= now {
            self.dispose(item, DestroyReason::Expired);
            return;
        }
        item.meta.dirty = Dirty::Yes;
        item.meta.last_used_ms = now;
        let excess = self.core.put_idle(item);
        // Usually empty: skip building and dropping an iterator.
        if !excess.is_empty() {
            for item in excess {
                self.dispose(item, DestroyReason::Evicted);
            }
        }
    }

    pub(crate) fn register_lent(&self, id: u64, at: &'static Location<'static>) -> usize {
        match &self.lent {
            None => usize::MAX,
            Some(table) => table.lock().insert(Lent {
                id,
                since_ms: self.now_ms(),
                at,
                reported: false,
            }),
        }
    }

    /// One tick of the background task: what never waits on the manager.
    /// Nothing here awaits, so nudges, retirements and leak reports keep
    /// their period however long a create or check hangs.
    fn tick(self: &Arc<Self>) {
        let now = self.refresh_clock();
        // Waiters with a coarse deadline look at the clock when woken.
        if self.core.waiting() > 0 {
            self.core.nudge_waiters();
        }
        self.retire_idle(now);
        self.report_leaks(now);
    }

    /// Destroys expired idle resources, and idle-too-long ones down to
    /// `min_idle`.
    fn retire_idle(self: &Arc<Self>, now: u64) {
        let cfg = &self.cfg;
        if cfg.max_lifetime.is_none() && cfg.idle_timeout.is_none() {
            return;
        }
        let idle_ms = cfg.idle_timeout.map(Self::ms);
        let mut removable = self.core.size().saturating_sub(cfg.min_idle);
        let mut reasons = Vec::new();
        let gone = self.core.take_idle_where(|item| {
            if item.meta.expires_ms <= now {
                reasons.push(DestroyReason::Expired);
                removable = removable.saturating_sub(1);
                return true;
            }
            match idle_ms {
                Some(ms) if removable > 0 && now.saturating_sub(item.meta.last_used_ms) >= ms => {
                    reasons.push(DestroyReason::Idle);
                    removable -= 1;
                    true
                }
                _ => false,
            }
        });
        for (item, why) in gone.into_iter().zip(reasons) {
            self.dispose(item, why);
        }
    }

    /// Reports resources lent longer than `leak_threshold`, once each.
    fn report_leaks(&self, now: u64) {
        let (Some(table), Some(threshold)) = (&self.lent, self.cfg.leak_threshold) else {
            return;
        };
        if now < Self::ms(threshold) {
            return;
        }
        let overdue = table.lock().overdue(now - Self::ms(threshold));
        for (id, since, at) in overdue {
            let report = LeakReport {
                resource_id: id,
                lent_for: Duration::from_millis(now.saturating_sub(since)),
                acquired_at: at,
            };
            self.counters.leaks_reported.fetch_add(1, Relaxed);
            tracing::warn!("cenote: possible resource leak: {report}");
            if let Some(hook) = &self.hooks.on_leak {
                guarded("on_leak", (), || hook(&report));
            }
        }
    }

    /// The background work that waits on the manager: keepalive checks,
    /// then the `min_idle` refill. Run as a task of its own, one at a time
    /// (`upkeep_running`), so a create or check that hangs up to its
    /// timeout delays only the next upkeep, never a tick.
    async fn upkeep(self: &Arc<Self>) {
        let now = self.now_ms();
        self.keepalive(now).await;
        self.refill(now).await;
    }

    /// Checks idle resources unused for the keepalive period, one permit
    /// at a time (never more than the bound), a few per pass.
    async fn keepalive(self: &Arc<Self>, now: u64) {
        let Some(every) = self.cfg.keepalive else {
            return;
        };
        let every = Self::ms(every);
        for _ in 0..4 {
            if !self.core.try_permit() {
                break;
            }
            let lease = Lease::new(self.clone());
            let Some(item) = self
                .core
                .take_one_idle(|item| now.saturating_sub(item.meta.last_used_ms) >= every)
            else {
                break;
            };
            let mut held = Held {
                inner: self,
                item: Some(item),
            };
            let item = held.item.as_mut().expect("set above");
            let check = self.manager.check(&mut item.res);
            let mut mine = None;
            match call(&self.rt.handle, self.cfg.check_timeout, "check", check).await {
                Call::Done(()) => {
                    let mut item = held.item.take().expect("held");
                    item.meta.last_used_ms = self.now_ms();
                    for item in self.core.put_idle(item) {
                        self.dispose(item, DestroyReason::Evicted);
                    }
                }
                Call::Failed(e) => drop(held.fail(CheckFailure::Failed(e), &mut mine)),
                Call::TimedOut | Call::Panicked => {
                    drop(held.fail(CheckFailure::TimedOut, &mut mine))
                }
            }
            drop(lease);
        }
    }

    /// Creates resources up to `min_idle`, each under a permit, backing off
    /// while creates fail.
    async fn refill(self: &Arc<Self>, now: u64) {
        let min_idle = self.cfg.min_idle;
        if min_idle == 0 || now < self.refill_after_ms.load(Relaxed) {
            return;
        }
        while !self.core.is_closed()
            && self.core.idle() < min_idle
            && self.core.size() < self.core.max()
        {
            if !self.core.try_permit() {
                break;
            }
            let lease = Lease::new(self.clone());
            self.core.start_create();
            match self.create_one().await {
                Ok(item) => {
                    self.refill_failures.store(0, Relaxed);
                    for item in self.core.put_idle(item) {
                        self.dispose(item, DestroyReason::Evicted);
                    }
                }
                Err(_) => {
                    let n = self.refill_failures.fetch_add(1, Relaxed).min(10);
                    let pause = (50u64 << n).min(5_000);
                    self.refill_after_ms.store(now + pause, Relaxed);
                    break;
                }
            }
            drop(lease);
        }
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

/// A resource being reset or checked for a caller: destroyed if dropped.
struct Held<'a, M: Manager> {
    inner: &'a Arc<Inner<M>>,
    item: Option<Idle<M::Resource>>,
}

impl<M: Manager> Held<'_, M> {
    fn fail(
        mut self,
        why: CheckFailure<M::Error>,
        mine: &mut Option<Arc<M::Error>>,
    ) -> Option<Idle<M::Resource>> {
        self.inner.counters.check_failures.fetch_add(1, Relaxed);
        if let CheckFailure::Failed(e) = why {
            let e = Arc::new(e);
            tracing::debug!("cenote: a pooled resource failed its check: {e}");
            self.inner.record_error(e.clone());
            *mine = Some(e);
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

/// What a caller's create task sends back.
type CreateOutcome<M> = Result<Created<M>, (CreateFailure<<M as Manager>::Error>, Lease<M>)>;

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
    fn take(&mut self) -> (Lease<M>, Idle<M::Resource>) {
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

/// The background task: every `tick`, one [`Inner::tick`], and an
/// [`Inner::upkeep`] task started unless the last one still runs; for as
/// long as the pool lives and is open. Dropped unfinished, it was cancelled
/// by its runtime shutting down: the pool says so ([`Inner::runtime_gone`]).
async fn maintain<M: Manager>(weak: Weak<Inner<M>>, tick: Duration) {
    let mut watch = RuntimeWatch(Some(weak.clone()));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = weak.upgrade() else { break };
        if inner.core.is_closed() {
            break;
        }
        inner.tick();
        if !inner.upkeep_running.swap(true, AcqRel) {
            let upkeep = inner.clone();
            inner.rt.handle.spawn(async move {
                let _done = UpkeepDone(&upkeep.upkeep_running);
                upkeep.upkeep().await;
            });
        }
    }
    watch.0 = None;
}

/// Clears the upkeep flag however the upkeep task ends.
struct UpkeepDone<'a>(&'a AtomicBool);

impl Drop for UpkeepDone<'_> {
    fn drop(&mut self) {
        self.0.store(false, Release);
    }
}

/// Held by the background task; dropped with the pool still set, the task
/// was cancelled by its runtime's shutdown.
struct RuntimeWatch<M: Manager>(Option<Weak<Inner<M>>>);

impl<M: Manager> Drop for RuntimeWatch<M> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take().and_then(|w| w.upgrade()) {
            inner.runtime_gone.store(true, SeqCst);
            // Waiters look at the flag when woken.
            inner.core.nudge_waiters();
        }
    }
}

/// An acquire timeout at least this many maintenance ticks long is checked
/// on the coarse clock (late by at most one tick: 10% at worst), a shorter
/// one by a timer of its own.
const COARSE_FACTOR: u32 = 10;

pin_project_lite::pin_project! {
    /// `fut`, given up once the pool's coarse clock reaches `deadline_ms`.
    /// Costs nothing while `fut` is ready or woken by its own event; the
    /// deadline is looked at whenever it is polled, which the maintenance
    /// task makes happen every tick while anyone waits.
    struct CoarseBounded<'c, F> {
        #[pin]
        fut: F,
        clock: &'c AtomicU64,
        // The pool's runtime shut down: no tick will ever come.
        gone: &'c AtomicBool,
        deadline_ms: u64,
    }
}

impl<F: std::future::Future> std::future::Future for CoarseBounded<'_, F> {
    type Output = Result<F::Output, super::exec::Elapsed>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        if let std::task::Poll::Ready(v) = this.fut.poll(cx) {
            return std::task::Poll::Ready(Ok(v));
        }
        if this.clock.load(Relaxed) >= *this.deadline_ms || this.gone.load(Relaxed) {
            return std::task::Poll::Ready(Err(super::exec::Elapsed));
        }
        std::task::Poll::Pending
    }
}
