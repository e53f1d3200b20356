//! [`Pool`]: at most `capacity` futures in flight on a tokio runtime.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::panic::resume_unwind;
use std::pin::Pin;
use std::sync::atomic::Ordering::{AcqRel, Relaxed, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use std::time::Instant;

use tokio::sync::Notify;

use super::builder::{Builder, PanicHandler, WhenFull};
use super::cell::{cell, Owned};
use super::eager::{first_poll, FirstPoll};
use super::errors::{BuildError, ResizeError, ShutdownError, SpawnError};
use super::join::JoinHandle;
use super::lane::{Batch, Driver, Lane, ABORT, DETACHED};
use super::recycle::Recycler;
use super::runnable::Outcome;
use crate::limit::{Semaphore, TryAcquireError};
use crate::sync::HandleCount;

/// A pool that runs futures on a tokio runtime with at most `capacity` of
/// them in flight (spawned and not finished), whatever the load.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// use cenote::tasks::Pool;
///
/// let pool = Pool::new(100).unwrap();
/// let mut handles = Vec::new();
/// for i in 0..1_000u64 {
///     // Waits for a slot when 100 futures are in flight (back-pressure).
///     handles.push(pool.spawn(async move { i * 2 }).await.unwrap());
/// }
/// let mut sum = 0;
/// for h in handles {
///     sum += h.await.unwrap();
/// }
/// assert_eq!(sum, 999_000);
/// pool.wait_idle().await;
/// assert_eq!(pool.running(), 0);
/// # }
/// ```
///
/// Cloning gives another handle to the same pool. Dropping the last handle
/// does not stop what runs: spawned futures finish, then the lanes exit.
pub struct Pool {
    inner: Arc<Inner>,
}

/// What a pool shares with its lanes' futures.
pub(crate) struct Inner {
    sem: Semaphore,
    lanes: Box<[Arc<Lane>]>,
    when_full: WhenFull,
    max_waiting: usize,
    /// Spawners waiting for a slot (for `max_waiting`).
    waiting_spawners: AtomicUsize,
    /// Futures spawned and not finished (and closures of aborted
    /// `spawn_blocking` futures still running).
    active: AtomicUsize,
    /// The pool's own futures waiting in its `wait_idle` (polled in a
    /// lane, so counted in `active`): they wait for the others only.
    own_idle_waiters: AtomicUsize,
    /// Slots (and `active` counts) of aborted `spawn_blocking` futures
    /// whose closures still run: the next futures to end hand theirs to
    /// those closures, which give them back as they return. The slots are
    /// fungible, so which future hands over does not matter.
    orphans: AtomicUsize,
    /// `wait_idle` callers, so that finishing futures notify only when
    /// someone listens.
    idle_waiters: AtomicUsize,
    idle: Notify,
    /// `Pool` handles alive.
    handles: HandleCount,
    panic_handler: Option<PanicHandler>,
    blocking: Option<crate::workers::Pool>,
    /// The runtime the lanes run on: spawners on it start futures eagerly.
    runtime: tokio::runtime::Id,
    /// `Builder::eager_start`.
    eager: bool,
    /// `Builder::eager_limit`.
    eager_limit: Duration,
    /// Spawns still to queue normally after a long eager first poll.
    eager_pause: AtomicU32,
    panicked: AtomicU64,
    aborted: AtomicU64,
    cancelled: AtomicU64,
    rejected: AtomicU64,
    waited: AtomicU64,
    timed_out: AtomicU64,
    /// Finished cells kept for the next spawns (`recycle.rs`).
    pub(crate) recycler: Recycler,
    pub(crate) name: crate::observe::name::PoolName,
}

/// A snapshot of a pool's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Futures accepted by a spawn.
    pub spawned: u64,
    /// Futures that ran to their end.
    pub completed: u64,
    /// Futures that panicked.
    pub panicked: u64,
    /// Futures dropped by `abort` or `shutdown_timeout`.
    pub aborted: u64,
    /// Futures dropped because the runtime shut down.
    pub cancelled: u64,
    /// Spawns refused: full (reject policy, `try_spawn`) or too many
    /// waiting.
    pub rejected: u64,
    /// Spawns that had to wait for a slot.
    pub waited: u64,
    /// Spawns whose deadline passed while waiting.
    pub timed_out: u64,
    /// Futures in flight now.
    pub running: usize,
    /// Spawners waiting for a slot now.
    pub waiting: usize,
    /// The capacity now.
    pub capacity: usize,
}

/// How a spawn waits for a slot.
#[derive(Clone, Copy)]
enum How {
    Try,
    Wait,
    Within(Duration),
}

thread_local! {
    /// Where this thread's next spawn goes: spawns rotate over the lanes.
    static CURSOR: Cell<usize> = const { Cell::new(0) };
    /// This thread's eager starts: whether one is under way (they never
    /// nest), and how many more go untimed before the next timed one.
    static EAGER: EagerState = const {
        EagerState {
            inside: Cell::new(false),
            pool: Cell::new(std::ptr::null()),
            untimed: Cell::new(0),
            seen: Cell::new(None),
        }
    };
}

struct EagerState {
    inside: Cell<bool>,
    /// The pool whose future the eager start under way polls.
    pool: Cell<*const Inner>,
    untimed: Cell<u32>,
    /// The last tokio task seen spawning on this thread, and its runtime.
    seen: Cell<Option<(tokio::task::Id, tokio::runtime::Id)>>,
}

/// The runtime whose context this thread is in, if any. Inside a tokio
/// task the answer is cached per task: a task stays on its runtime for life
/// and task ids come from one process-wide counter, while asking tokio
/// clones its handle (two read-modify-writes on a line every spawner
/// shares). Outside a task (a `block_on`, such as `#[tokio::main]`'s body)
/// tokio is asked every time.
#[inline]
fn current_runtime(e: &EagerState) -> Option<tokio::runtime::Id> {
    let Some(task) = tokio::task::try_id() else {
        return tokio::runtime::Handle::try_current().ok().map(|h| h.id());
    };
    match e.seen.get() {
        Some((t, rt)) if t == task => Some(rt),
        _ => {
            let rt = tokio::runtime::Handle::try_current().ok()?.id();
            e.seen.set(Some((task, rt)));
            Some(rt)
        }
    }
}

/// One eager first poll in this many (per spawning thread) is timed.
const EAGER_TIME_EVERY: u32 = 64;
/// A timed first poll longer than the pool's `eager_limit` pauses eager
/// starts for this many spawns.
const EAGER_PAUSE_SPAWNS: u32 = 1024;

impl Pool {
    /// A pool of `capacity` slots with the defaults of [`Builder::new`], on
    /// the current tokio runtime.
    pub fn new(capacity: usize) -> Result<Pool, BuildError> {
        Builder::new().capacity(capacity).build()
    }

    /// A builder, to set the policy, `max_waiting`, the panic handler, ...
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn start(b: Builder, runtime: tokio::runtime::Handle) -> Pool {
        let lanes = b
            .lanes
            .unwrap_or_else(|| runtime.metrics().num_workers())
            .clamp(1, super::MAX_LANES);
        let lanes: Box<[Arc<Lane>]> = (0..lanes).map(|_| Arc::new(Lane::new())).collect();
        let inner = Inner {
            sem: Semaphore::new(b.capacity),
            lanes,
            when_full: b.when_full,
            max_waiting: b.max_waiting.unwrap_or(usize::MAX),
            waiting_spawners: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            orphans: AtomicUsize::new(0),
            own_idle_waiters: AtomicUsize::new(0),
            idle_waiters: AtomicUsize::new(0),
            idle: Notify::new(),
            handles: HandleCount::new(),
            panic_handler: b.panic_handler,
            blocking: b.blocking,
            runtime: runtime.id(),
            eager: b.eager,
            eager_limit: b.eager_limit,
            eager_pause: AtomicU32::new(0),
            panicked: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            recycler: Recycler::new(),
            name: crate::observe::name::PoolName::claim("tasks", b.name.as_deref()),
        };
        let inner = Arc::new(inner);
        #[cfg(feature = "metrics")]
        let _ = inner
            .sem
            .tally
            .queue_time
            .set(Box::new(crate::observe::tasks::queue_time(
                &inner.name.shared(),
            )));
        #[cfg(feature = "metrics")]
        crate::observe::publish::register(
            Arc::downgrade(&inner) as std::sync::Weak<dyn crate::observe::publish::Publish>
        );
        for lane in inner.lanes.iter() {
            // The driver holds its lane and a weak handle to the pool; it
            // exits once the pool's last handle is gone and its futures are
            // done.
            drop(runtime.spawn(Driver::new(lane.clone(), &inner)));
        }
        Pool { inner }
    }

    // ----- spawning ----------------------------------------------------------

    /// Spawns `fut` once a slot is free. When the pool is full, the
    /// [`WhenFull`] policy decides: wait (default, FIFO), reject, or wait
    /// with a deadline. Cancel-safe: dropping this future while it waits
    /// leaves no slot taken and no waiter queued (and `fut` is dropped).
    pub fn spawn<F>(&self, fut: F) -> Spawn<'_, F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Spawn::new(self, fut, self.policy())
    }

    /// Spawns `fut` only if a slot is free now (and nobody waits for one).
    pub fn try_spawn<F>(&self, fut: F) -> Result<JoinHandle<F::Output>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.try_admit()?;
        self.launch(&mut Owned::new(fut))
    }

    /// Spawns `fut`, waiting at most `timeout` for a slot, whatever the
    /// policy. A zero timeout is a `try_spawn` that reports `TimedOut`; a
    /// huge one never expires. The deadline needs the runtime's timer
    /// (`enable_time`, as `#[tokio::main]` sets).
    pub fn spawn_timeout<F>(&self, fut: F, timeout: Duration) -> Spawn<'_, F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Spawn::new(self, fut, How::Within(timeout))
    }

    /// Runs the blocking closure `f` on a `cenote::workers` pool (see
    /// [`Builder::blocking_pool`]), taking one of this pool's slots until it
    /// returns; the handle is awaitable like any other and carries a panic
    /// of `f`. Waits for a slot as [`spawn`](Self::spawn) does.
    ///
    /// Aborting the handle (or `shutdown_timeout`) stops the waiting, not
    /// the closure: a closure cannot be stopped, so it runs to its end (or,
    /// not yet started, runs when a thread takes it) and keeps its slot
    /// until then. The capacity bounds blocking work too: `running()` and
    /// `wait_idle` count such a closure.
    pub async fn spawn_blocking<F, R>(&self, f: F) -> Result<JoinHandle<R>, SpawnError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.admit(self.policy()).await?;
        let workers = match &self.inner.blocking {
            Some(p) => p,
            None => default_blocking_pool(),
        };
        let ends = Arc::new(AtomicU8::new(0));
        let closure_end = ClosureEnd {
            ends: ends.clone(),
            inner: self.inner.clone(),
        };
        let handle = match workers.try_spawn(move || {
            let _end = closure_end;
            f()
        }) {
            Ok(h) => h,
            Err(e) => {
                self.inner.sem.release(1);
                return Err(SpawnError::Blocking(e));
            }
        };
        let future_end = FutureEnd {
            ends,
            inner: self.inner.clone(),
        };
        self.launch(&mut Owned::new(async move {
            let _end = future_end;
            match handle.await {
                Ok(v) => v,
                // Re-raised inside the task's `catch_unwind`: the payload
                // reaches the handle and the panic handler like any other.
                Err(e) => match e.into_panic() {
                    Some(payload) => resume_unwind(payload),
                    None => resume_unwind(Box::new("the blocking pool dropped the closure")),
                },
            }
        }))
    }

    fn policy(&self) -> How {
        match self.inner.when_full {
            WhenFull::Wait => How::Wait,
            WhenFull::Reject => How::Try,
            WhenFull::WaitFor(d) => How::Within(d),
        }
    }

    /// Takes a slot now or fails.
    fn try_admit(&self) -> Result<(), SpawnError> {
        if self.take_slot()? {
            Ok(())
        } else {
            self.inner.rejected.fetch_add(1, Relaxed);
            Err(SpawnError::Full)
        }
    }

    /// Takes a slot if one is free now: true when taken (it then belongs
    /// to the future, whose end gives it back).
    ///
    /// A spawn from inside one of this pool's futures may find the pool
    /// full only because its lane's driver still holds the slots of
    /// futures that finished earlier in the same poll (batched, see
    /// `Inner::finished`): those are given back first, and it tries again.
    #[inline]
    fn take_slot(&self) -> Result<bool, SpawnError> {
        loop {
            match self.inner.sem.try_acquire() {
                Ok(permit) => {
                    permit.keep();
                    return Ok(true);
                }
                Err(TryAcquireError::Closed) => return Err(SpawnError::Closed),
                Err(_) if Batch::settle_now(&self.inner) => {}
                Err(_) => return Ok(false),
            }
        }
    }

    /// Takes a slot, waiting as `how` says.
    async fn admit(&self, how: How) -> Result<(), SpawnError> {
        let inner = &*self.inner;
        let timeout = match how {
            How::Try => return self.try_admit(),
            How::Wait => None,
            How::Within(d) => Some(d),
        };
        if self.take_slot()? {
            return Ok(());
        }
        if timeout == Some(Duration::ZERO) {
            inner.timed_out.fetch_add(1, Relaxed);
            return Err(SpawnError::TimedOut(Duration::ZERO));
        }
        let _waiting = WaitingSpawner::enter(inner)?;
        inner.waited.fetch_add(1, Relaxed);
        let acquired = match timeout {
            None => inner.sem.acquire().await,
            Some(d) => match tokio::time::timeout(d, inner.sem.acquire()).await {
                Ok(r) => r,
                Err(_) => {
                    inner.timed_out.fetch_add(1, Relaxed);
                    return Err(SpawnError::TimedOut(d));
                }
            },
        };
        match acquired {
            Ok(permit) => {
                permit.keep();
                Ok(())
            }
            Err(_) => Err(SpawnError::Closed),
        }
    }

    /// Starts a future that holds a slot already.
    #[inline]
    fn launch<F>(&self, fut: &mut Owned<F>) -> Result<JoinHandle<F::Output>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let inner = &self.inner;
        let n = inner.lanes.len();
        let i = if n == 1 {
            0
        } else {
            // No `%`: a division was a few percent of a trivial spawn. The
            // cursor is the thread's, shared by its pools, so it may be out
            // of this pool's range.
            CURSOR.with(|c| {
                let i = c.get();
                let i = if i >= n { 0 } else { i };
                c.set(i + 1);
                i
            })
        };
        let lane = &inner.lanes[i];
        if lane.is_dead() {
            inner.sem.release(1);
            return Err(SpawnError::RuntimeGone);
        }
        if inner.eager && self.eager_now() {
            return Ok(self.start_eagerly(fut, i));
        }
        inner.active.fetch_add(1, SeqCst);
        let (cell, handle) = cell(fut, inner.clone(), i);
        lane.push_new(cell);
        Ok(handle)
    }

    /// Whether this spawn makes its future's first poll itself: from a task
    /// of the pool's runtime, not inside another eager poll, and not while a
    /// long first poll paused them (a paused spawn counts the pause down).
    #[inline]
    fn eager_now(&self) -> bool {
        let here =
            EAGER.with(|e| !e.inside.get() && current_runtime(e) == Some(self.inner.runtime));
        if !here {
            return false;
        }
        let pause = &self.inner.eager_pause;
        if pause.load(Relaxed) == 0 {
            return true;
        }
        let _ = pause.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        false
    }

    /// Polls `fut` once here (a task of the pool's runtime); a future that
    /// finishes never reaches a lane. The caller holds its slot.
    #[inline]
    fn start_eagerly<F>(&self, fut: &mut Owned<F>, lane: usize) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let inner = &self.inner;
        let timed = EAGER.with(|e| {
            e.inside.set(true);
            e.pool.set(Arc::as_ptr(inner));
            match e.untimed.get() {
                0 => {
                    e.untimed.set(EAGER_TIME_EVERY - 1);
                    true
                }
                n => {
                    e.untimed.set(n - 1);
                    false
                }
            }
        });
        let started = timed.then(Instant::now);
        let polled = first_poll(fut, inner, lane);
        EAGER.with(|e| e.inside.set(false));
        if let Some(t) = started {
            let took = t.elapsed();
            if took > inner.eager_limit {
                inner.eager_pause.store(EAGER_PAUSE_SPAWNS, Relaxed);
                crate::log::debug!(
                    ?took,
                    "cenote::tasks: a long first poll; the next spawns start in lanes"
                );
            }
        }
        match polled {
            FirstPoll::Finished(result, outcome) => {
                match outcome {
                    Outcome::Completed => inner.lanes[lane].count_completed_eagerly(),
                    _ => drop(inner.panicked.fetch_add(1, Relaxed)),
                }
                inner.sem.release(1);
                JoinHandle::ready(result)
            }
            FirstPoll::Pending(cell, handle) => {
                // Live before it can be queued (and so finish on a lane).
                inner.active.fetch_add(1, SeqCst);
                // SAFETY: `handle` references the cell across the call.
                unsafe { cell.settle_eager(&inner.lanes[lane]) };
                handle
            }
        }
    }

    // ----- control -----------------------------------------------------------

    /// Sets the capacity to `n`, at once, in both directions. Growing lets
    /// waiting spawners in; shrinking never stops a future that runs: no new
    /// one starts until fewer than `n` run.
    pub fn resize(&self, n: usize) -> Result<(), ResizeError> {
        if n == 0 {
            return Err(ResizeError::ZeroCapacity);
        }
        if self.is_closed() {
            return Err(ResizeError::Closed);
        }
        self.inner.sem.resize(n).map_err(|e| match e {
            crate::limit::ResizeError::Closed => ResizeError::Closed,
            _ => ResizeError::CapacityTooLarge(n),
        })
    }

    /// Futures in flight (spawned and not finished). Read from the
    /// semaphore, so it never exceeds the capacity (except after a
    /// shrinking `resize`, until enough futures end).
    pub fn running(&self) -> usize {
        self.inner.sem.in_use()
    }

    /// Spawners waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.inner.sem.waiting()
    }

    /// The capacity (after the last `resize`).
    pub fn capacity(&self) -> usize {
        self.inner.sem.permits()
    }

    /// Whether [`close`](Self::close) ran.
    pub fn is_closed(&self) -> bool {
        self.inner.sem.is_closed()
    }

    /// The pool's counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The pool's name (see [`Builder::name`]).
    pub fn name(&self) -> &str {
        self.inner.name.as_str()
    }
}

impl Inner {
    fn stats(&self) -> Stats {
        let i = self;
        let completed: usize = i.lanes.iter().map(|l| l.completed()).sum();
        let active = i.active.load(SeqCst) as u64;
        let (panicked, aborted, cancelled) = (
            i.panicked.load(Relaxed),
            i.aborted.load(Relaxed),
            i.cancelled.load(Relaxed),
        );
        Stats {
            spawned: completed as u64 + panicked + aborted + cancelled + active,
            completed: completed as u64,
            panicked,
            aborted,
            cancelled,
            rejected: i.rejected.load(Relaxed),
            waited: i.waited.load(Relaxed),
            timed_out: i.timed_out.load(Relaxed),
            running: i.sem.in_use(),
            waiting: i.sem.waiting(),
            capacity: i.sem.permits(),
        }
    }
}

#[cfg(feature = "metrics")]
impl crate::observe::publish::Publish for Inner {
    fn publish(&self) {
        crate::observe::tasks::publish(&self.name.shared(), &self.stats());
    }
}

impl Pool {
    /// Waits until every future spawned so far has finished. The pool stays
    /// open; futures spawned meanwhile are waited for too. Awaited inside
    /// one of the pool's own futures, it waits for every *other* future:
    /// such a future counts as finished while it waits (so two of them
    /// never wait for each other), as a task in `workers::Pool::wait_idle`
    /// does.
    pub async fn wait_idle(&self) {
        let inner = &*self.inner;
        inner.idle_waiters.fetch_add(1, SeqCst);
        let _leave = Leave(&inner.idle_waiters);
        let mut own = OwnIdleWait {
            inner,
            counted: false,
        };
        loop {
            let notified = inner.idle.notified();
            if own.is_idle() {
                return;
            }
            if eager_poll_here(inner).1 {
                // In its eager first poll the future is in neither `active`
                // nor `own_idle_waiters`, and no finish would wake it: it
                // wakes itself, to be polled again in its lane, where it
                // counts itself as waiting.
                tokio::task::yield_now().await;
                continue;
            }
            notified.await;
        }
    }

    /// Stops accepting futures: spawners waiting now and later get
    /// [`SpawnError::Closed`]. What runs keeps running.
    pub fn close(&self) {
        self.inner.sem.close();
    }

    /// Closes the pool, waits up to `timeout` for what runs to finish, then
    /// aborts what is left (each of their handles yields
    /// [`JoinError::Aborted`](super::JoinError::Aborted)). `Ok` when every
    /// future ended by itself; else the error says how many were aborted.
    /// Needs the runtime's timer. From one of the pool's own futures it
    /// waits for the others, and returns an error with `from_own_task` set
    /// (that future goes on, unless the deadline passed and the abort took
    /// it too).
    pub async fn shutdown_timeout(&self, timeout: Duration) -> Result<(), ShutdownError> {
        self.close();
        let from_own_task = own_future_here(&self.inner);
        let ended = tokio::time::timeout(timeout, self.wait_idle()).await;
        if ended.is_ok() {
            return match from_own_task {
                false => Ok(()),
                true => Err(ShutdownError {
                    aborted: 0,
                    waited: timeout,
                    from_own_task,
                }),
            };
        }
        let inner = &*self.inner;
        let before = inner.aborted.load(SeqCst);
        for lane in inner.lanes.iter() {
            lane.set_mode(ABORT);
        }
        self.wait_idle().await;
        Err(ShutdownError {
            aborted: (inner.aborted.load(SeqCst) - before) as usize,
            waited: timeout,
            from_own_task,
        })
    }
}

impl Clone for Pool {
    fn clone(&self) -> Self {
        self.inner.handles.cloned();
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The last handle detaches the lanes instead of closing: the
        // futures in flight run to their end, and each lane then exits.
        if self.inner.handles.dropped() {
            for lane in self.inner.lanes.iter() {
                lane.set_mode(DETACHED);
            }
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("capacity", &self.capacity())
            .field("running", &self.running())
            .field("waiting", &self.waiting())
            .field("lanes", &self.inner.lanes.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Inner {
    /// The capacity (after the last `resize`).
    pub(crate) fn sem_permits(&self) -> usize {
        self.sem.permits()
    }

    pub(crate) fn lane(&self, i: usize) -> &Lane {
        &self.lanes[i]
    }

    /// Counts a finished future, gives its slot back, and wakes `wait_idle`
    /// when it was the last. With `batch`, inside its lane's driver, the
    /// release waits for the end of the driver's poll: one semaphore release
    /// and one counter update per poll instead of one per future, which
    /// keeps those cache lines from bouncing between the spawning thread and
    /// the lane's. (Only futures whose result nobody can see are batched,
    /// see `Cell::finish`.)
    pub(crate) fn finished(&self, lane: usize, outcome: Outcome, batch: bool) {
        match outcome {
            Outcome::Completed => self.lanes[lane].count_completed(),
            Outcome::Panicked => drop(self.panicked.fetch_add(1, Relaxed)),
            Outcome::Aborted => drop(self.aborted.fetch_add(1, SeqCst)),
            Outcome::Cancelled => drop(self.cancelled.fetch_add(1, Relaxed)),
        }
        if !(batch && Batch::add(self)) {
            self.flush(1);
        }
    }

    /// Gives `n` slots back and drops `active` by `n`, less the slots
    /// owed to running closures of aborted `spawn_blocking` futures.
    pub(crate) fn flush(&self, n: usize) {
        let n = n - self.adopt_orphans(n);
        if n > 0 {
            self.release_slots(n);
        }
    }

    /// Takes up to `n` owed slots off `orphans`; how many.
    #[inline]
    fn adopt_orphans(&self, n: usize) -> usize {
        let mut cur = self.orphans.load(Relaxed);
        loop {
            if cur == 0 {
                return 0; // the common case: one load
            }
            let take = cur.min(n);
            match self
                .orphans
                .compare_exchange_weak(cur, cur - take, AcqRel, Relaxed)
            {
                Ok(_) => return take,
                Err(now) => cur = now,
            }
        }
    }

    /// Gives `n` slots back and drops `active` by `n`.
    fn release_slots(&self, n: usize) {
        self.sem.release(n);
        // SeqCst pairs with `wait_idle`: it counts itself in `idle_waiters`
        // and then reads `active`; here `active` drops and then
        // `idle_waiters` is read. In the single order of SeqCst operations
        // one of the two sees the other.
        let left = self.active.fetch_sub(n, SeqCst) - n;
        if self.idle_waiters.load(SeqCst) > 0 && left <= self.own_idle_waiters.load(SeqCst) {
            self.idle.notify_waiters();
        }
    }

    /// Hands a panic payload to the handler (or the log).
    pub(crate) fn report_panic(&self, payload: &(dyn Any + Send)) {
        crate::unwind::report(self.panic_handler.as_ref(), payload, "tasks");
    }
}

/// Counts a spawner in `waiting_spawners` while it waits.
/// The future of [`Pool::spawn`] and [`Pool::spawn_timeout`]: it
/// resolves to the spawned future's handle once a slot is taken.
///
/// Named rather than `async fn`: the spawned future is copied once into it
/// and once into its cell (an `async fn` moved it once more, from its
/// argument into a local), and a free slot is taken in the first poll
/// without building the waiting machinery, which only a full pool needs
/// (one allocation, then). Cancel-safe: dropping it while it waits leaves
/// no slot taken and no waiter queued, and drops the future.
#[must_use = "futures do nothing unless polled; the spawn happens when this is awaited"]
pub struct Spawn<'a, F: Future> {
    pool: &'a Pool,
    fut: Owned<F>,
    how: How,
    /// The wait for a slot, once the first poll found none.
    wait: Option<Admit<'a>>,
    done: bool,
}

/// A spawn's wait for a slot.
type Admit<'a> = Pin<Box<dyn Future<Output = Result<(), SpawnError>> + Send + 'a>>;

// The spawned future is not pinned here (it is moved into its cell, then
// pinned), and the wait is boxed.
impl<F: Future> Unpin for Spawn<'_, F> {}

impl<'a, F> Spawn<'a, F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[inline]
    fn new(pool: &'a Pool, fut: F, how: How) -> Self {
        Spawn {
            pool,
            fut: Owned::new(fut),
            how,
            wait: None,
            done: false,
        }
    }
}

impl<F> Future for Spawn<'_, F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<JoinHandle<F::Output>, SpawnError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.done, "Spawn polled after it completed");
        let pool = this.pool;
        let admitted = match &mut this.wait {
            Some(wait) => ready!(wait.as_mut().poll(cx)),
            None => match pool.take_slot() {
                Ok(true) => Ok(()),
                Err(e) => Err(e),
                Ok(false) => {
                    let mut wait = Box::pin(pool.admit(this.how));
                    let polled = wait.as_mut().poll(cx);
                    this.wait = Some(wait);
                    ready!(polled)
                }
            },
        };
        this.wait = None;
        this.done = true;
        Poll::Ready(admitted.and_then(|()| pool.launch(&mut this.fut)))
    }
}

impl<F: Future> std::fmt::Debug for Spawn<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawn")
            .field("waiting", &self.wait.is_some())
            .field("done", &self.done)
            .finish()
    }
}

struct WaitingSpawner<'a>(&'a AtomicUsize);

impl<'a> WaitingSpawner<'a> {
    fn enter(inner: &'a Inner) -> Result<Self, SpawnError> {
        let before = inner.waiting_spawners.fetch_add(1, AcqRel);
        let me = WaitingSpawner(&inner.waiting_spawners);
        if before >= inner.max_waiting {
            inner.rejected.fetch_add(1, Relaxed);
            return Err(SpawnError::TooManyWaiting(inner.max_waiting));
        }
        Ok(me)
    }
}

impl Drop for WaitingSpawner<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, AcqRel);
    }
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// Whether an eager first poll is under way on this thread, and whether
/// it is of one of `inner`'s futures.
fn eager_poll_here(inner: &Inner) -> (bool, bool) {
    EAGER.with(|e| {
        let inside = e.inside.get();
        (inside, inside && std::ptr::eq(e.pool.get(), inner))
    })
}

/// Whether the calling code runs inside a poll of one of `inner`'s futures
/// (in its eager first poll, or in its lane).
fn own_future_here(inner: &Inner) -> bool {
    match eager_poll_here(inner) {
        (true, here) => here,
        (false, _) => Batch::polling(inner),
    }
}

/// A `wait_idle` call's standing: a future of the pool polled in its lane
/// counts itself among `own_idle_waiters` while it waits.
struct OwnIdleWait<'a> {
    inner: &'a Inner,
    counted: bool,
}

impl OwnIdleWait<'_> {
    /// Whether every future but the pool's own waiting ones has finished
    /// (from outside: every future).
    fn is_idle(&mut self) -> bool {
        let inner = self.inner;
        let (eager, eager_here) = eager_poll_here(inner);
        if !eager && !self.counted && Batch::polling(inner) {
            // One of ours, counted in `active`: count it as waiting, and
            // tell the other waiters (that may complete their wait).
            self.counted = true;
            inner.own_idle_waiters.fetch_add(1, SeqCst);
            inner.idle.notify_waiters();
        }
        if self.counted {
            // Slots this driver poll freed, settled now rather than at its end.
            Batch::settle_now(inner);
        }
        let active = inner.active.load(SeqCst);
        if self.counted || eager_here {
            // (In an eager first poll the future is not yet in `active`,
            // so it is not counted among the waiters either.)
            active <= inner.own_idle_waiters.load(SeqCst)
        } else {
            // From outside: a future waiting in `wait_idle` has not
            // finished.
            active == 0
        }
    }
}

impl Drop for OwnIdleWait<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.inner.own_idle_waiters.fetch_sub(1, SeqCst);
        }
    }
}

/// `spawn_blocking`'s two ends: whichever of the closure and its future
/// ends last gives the slot back. The future's slot goes back with the
/// future as usual; a future that ends (aborted) before its closure owes
/// its slot to the closure instead (`Inner::orphans`).
const CLOSURE_DONE: u8 = 1;
const FUTURE_DONE: u8 = 2;

/// Held by the closure (dropped when it returns, panics, or is dropped
/// unrun).
struct ClosureEnd {
    ends: Arc<AtomicU8>,
    inner: Arc<Inner>,
}

impl Drop for ClosureEnd {
    fn drop(&mut self) {
        if self.ends.fetch_or(CLOSURE_DONE, AcqRel) & FUTURE_DONE != 0 {
            // The future ended first and left its slot to us.
            self.inner.release_slots(1);
        }
    }
}

/// Held by the future (dropped when it ends: awaited to the end, or
/// aborted).
struct FutureEnd {
    ends: Arc<AtomicU8>,
    inner: Arc<Inner>,
}

impl Drop for FutureEnd {
    fn drop(&mut self) {
        if self.ends.fetch_or(FUTURE_DONE, AcqRel) & CLOSURE_DONE == 0 {
            // The closure still runs: the slot this future gives back as
            // it ends goes to the closure.
            self.inner.orphans.fetch_add(1, AcqRel);
        }
    }
}

/// The blocking pool task pools share unless given their own.
fn default_blocking_pool() -> &'static crate::workers::Pool {
    static POOL: OnceLock<crate::workers::Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        crate::workers::Pool::builder()
            .capacity(512)
            .thread_name("cenote-blocking")
            .build()
            .expect("a valid configuration")
    })
}

#[cfg(test)]
mod recycle_tests {
    use super::*;

    /// Polls `cond` until it holds (a lane lets go of a cell just after
    /// the future's end is counted), failing after 10 s.
    async fn eventually(mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "condition never held"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// A future that waits once (so it finishes in a lane), then gives `id`.
    async fn job(id: usize, payload: Box<[u8]>) -> (usize, usize) {
        tokio::task::yield_now().await;
        (id, payload.len())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finished_cells_are_reused_bounded_by_capacity_with_results_intact() {
        let pool = Pool::builder()
            .capacity(8)
            .eager_limit(Duration::MAX)
            .build()
            .unwrap();
        // Detached: each cell's lane lets go of it last.
        for id in 0..200 {
            drop(pool.spawn(job(id, vec![0; id].into())).await.unwrap());
        }
        pool.wait_idle().await;
        eventually(|| pool.inner.recycler.kept() >= 1).await;
        let kept = pool.inner.recycler.kept();
        assert!(kept <= 8, "at most the capacity is kept, kept {kept}");
        // Awaited: the handle lets go last; every reused cell carries its
        // own future's result, once.
        for round in 0..20 {
            let mut handles = Vec::new();
            for k in 0..8 {
                let id = round * 8 + k;
                handles.push((id, pool.spawn(job(id, vec![1; k].into())).await.unwrap()));
            }
            for (id, h) in handles {
                assert_eq!(h.await.unwrap(), (id, id % 8));
            }
            assert!(pool.inner.recycler.kept() <= 8);
        }
        assert!(pool.inner.recycler.kept() >= 1);
        // A smaller capacity bounds what is kept from then on.
        pool.resize(2).unwrap();
        for id in 0..50 {
            drop(pool.spawn(job(id, Box::new([]))).await.unwrap());
        }
        pool.wait_idle().await;
        let stats = pool.stats();
        assert_eq!(stats.completed, 200 + 160 + 50);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handle_dropped_with_an_untaken_result_frees_it() {
        let pool = Pool::new(4).unwrap();
        let payload = Arc::new(());
        let p = payload.clone();
        let h = pool
            .spawn(async move {
                tokio::task::yield_now().await;
                p
            })
            .await
            .unwrap();
        pool.wait_idle().await;
        assert!(h.is_finished());
        assert_eq!(
            Arc::strong_count(&payload),
            2,
            "the result waits in the cell"
        );
        drop(h);
        // Whoever lets go last (the handle, or the lane just after the
        // future's end) drops the result and keeps the cell.
        eventually(|| Arc::strong_count(&payload) == 1).await;
        eventually(|| pool.inner.recycler.kept() == 1).await;
    }
}
