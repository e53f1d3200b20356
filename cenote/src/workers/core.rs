//! The engine shared by [`Pool`](super::Pool) and [`FnPool`](super::FnPool):
//! submission, the worker loop, parking, tuning and shutdown.
//!
//! The protocol (states, who moves a worker between them and why no wake-up
//! or task is lost) is described in `DESIGN.md` beside this file; the
//! comments here name the step of that note they implement.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::builder::{Config, Policy};
use super::errors::{BuildError, ResizeError, ShutdownError, SubmitError};
use super::task::Task;
use super::Stats;
use crate::observe::name::PoolName;
use crate::sync::{
    deadline_after, Arc, AtomicBool, AtomicU64, AtomicUsize, Backoff, Condvar, HandleCount,
    HandshakeLoad, Mutex, Ordering::*, Queue,
};
use crate::unwind::{self, Payload};

// ---------------------------------------------------------------------------
// What a pool runs
// ---------------------------------------------------------------------------

/// What the engine does with a job. `Pool` runs closures, `FnPool` calls one
/// function with each argument.
pub(crate) trait Runner: Send + Sync + 'static {
    type Job: Send + 'static;
    /// Runs one job. Returns true when the job panicked and the panic was
    /// already delivered elsewhere (a `JoinHandle`), so it is only counted.
    fn run(&self, job: Self::Job) -> bool;
}

/// Runs type-erased closures.
pub(crate) struct TaskRunner;

impl Runner for TaskRunner {
    type Job = Task;
    #[inline]
    fn run(&self, job: Task) -> bool {
        job.run()
    }
}

/// Calls one function with each argument: no allocation per job.
pub(crate) struct FnRunner<A> {
    f: Box<dyn Fn(A) + Send + Sync>,
}

impl<A> FnRunner<A> {
    pub(crate) fn new(f: impl Fn(A) + Send + Sync + 'static) -> Self {
        FnRunner { f: Box::new(f) }
    }
}

impl<A: Send + 'static> Runner for FnRunner<A> {
    type Job = A;
    #[inline]
    fn run(&self, arg: A) -> bool {
        (self.f)(arg);
        false
    }
}

// ---------------------------------------------------------------------------
// Packed state words (DESIGN.md, "State")
// ---------------------------------------------------------------------------

/// `threads`, low half: threads alive or being started (`running()`).
const RUNNING_MASK: u64 = 0xFFFF_FFFF;
/// `threads`, high half: the capacity in force (`capacity()`). It equals the
/// target set by `resize` except while a shrink waits for busy threads to
/// finish; it never drops below the running count.
const LIMIT_SHIFT: u32 = 32;
/// `idle_word`, low half: workers searching for a job (awake, not running one).
const SEARCHING_ONE: u64 = 1;
/// `idle_word`, high half: workers parked on the idle stack (`idle()`).
const SLEEPER_ONE: u64 = 1 << 32;

#[inline]
fn running_of(threads: u64) -> usize {
    (threads & RUNNING_MASK) as usize
}
#[inline]
fn limit_of(threads: u64) -> usize {
    (threads >> LIMIT_SHIFT) as usize
}
#[inline]
fn pack_threads(limit: usize, running: usize) -> u64 {
    ((limit as u64) << LIMIT_SHIFT) | running as u64
}
#[inline]
fn searching_of(word: u64) -> usize {
    (word & RUNNING_MASK) as usize
}
#[inline]
fn sleepers_of(word: u64) -> usize {
    (word >> 32) as usize
}

/// How many workers may spin while searching before they park; the rest
/// park at once so idle threads never burn the cores busy ones need.
fn max_spinners() -> usize {
    if cfg!(loom) {
        0
    } else {
        (cores() / 2).max(1)
    }
}

/// How many spin-loop hints a submitter waits for a running worker to take
/// its job before waking or starting a thread (step S2a).
const HANDOFF_SPINS: usize = 64;

/// S3a: how many free slots a spinning submitter waits for (at most a
/// quarter of the queue).
const REFILL_GAP: usize = 64;

fn multi_core() -> bool {
    cores() > 1
}

/// The number of cores (1 under loom).
fn cores() -> usize {
    #[cfg(not(loom))]
    {
        static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
    #[cfg(loom)]
    {
        1
    }
}

/// Set in `CURRENT_POOL` beside the engine's address (aligned, so its low
/// bit is free) while the thread exits.
const EXITING_TAG: usize = 1;

#[cfg(not(loom))]
std::thread_local! {
    /// The engine whose worker the current thread is (its address, with
    /// `EXITING_TAG` while it exits), or 0.
    static CURRENT_POOL: Cell<usize> = const { Cell::new(0) };
}

// loom's `thread_local!` (one per model thread) has no `const` form.
#[cfg(loom)]
loom::thread_local! {
    static CURRENT_POOL: Cell<usize> = Cell::new(0);
}

// ---------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------

/// Why a parked worker was woken. Set by the waker under the worker's lock.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Signal {
    /// Nothing yet (or a spurious wake-up).
    None,
    /// Go and search the queue; the waker already counted us as searching.
    Search,
    /// A job was handed over in `Park::job` (direct hand-off).
    Job,
    /// Exit; the signaller already released our thread slot.
    Retire,
}

struct Park<J> {
    signal: Signal,
    job: Option<J>,
}

/// One worker thread's shared half.
pub(crate) struct Worker<J> {
    park: Mutex<Park<J>>,
    cv: Condvar,
    /// Single-writer counters (the worker itself), summed by `stats()`.
    completed: AtomicU64,
    panicked: AtomicU64,
}

impl<J> Worker<J> {
    fn new(first: Option<J>) -> Self {
        Worker {
            park: Mutex::new(Park {
                signal: if first.is_some() {
                    Signal::Job
                } else {
                    Signal::None
                },
                job: first,
            }),
            cv: Condvar::new(),
            completed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
        }
    }

    /// Wakes the worker with `signal` (and a job for `Signal::Job`).
    fn signal(&self, signal: Signal, job: Option<J>) {
        let mut p = self.park.lock();
        debug_assert_eq!(p.signal, Signal::None, "a parked worker is signalled once");
        p.signal = signal;
        p.job = job;
        drop(p);
        self.cv.notify_one();
    }
}

#[inline]
fn bump(counter: &AtomicU64) {
    // Single writer: a load and a store, no read-modify-write.
    counter.store(counter.load(Relaxed) + 1, Relaxed);
}

enum Parked<J> {
    Job(J),
    Search,
    Exit,
}

struct Registry<J> {
    live: Vec<Arc<Worker<J>>>,
    retired_completed: u64,
    retired_panicked: u64,
}

// ---------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------

/// How a submit behaves when the pool is full.
#[derive(Clone, Copy, Debug)]
pub(crate) enum How {
    /// As the pool's `Policy` says.
    Policy,
    /// Fail with `Full` (`try_submit`).
    Try,
    /// Wait, up to the deadline (None: no deadline); `Duration` is reported.
    Wait(Option<Instant>, Duration),
}

/// How a blocked submitter's spin for room (S3a) ended.
enum Spun<J> {
    /// The job is placed.
    Placed,
    /// The pool closed: the job comes back.
    Closed(J),
    /// Still no room: the job comes back, to wait with.
    Full(J),
}

/// A blocked submitter's count in `waiting`, taken back when dropped.
struct Unwait<'a>(&'a AtomicUsize);

impl Drop for Unwait<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

pub(crate) struct Inner<R: Runner> {
    runner: R,
    pub(crate) name: PoolName,
    /// Where a blocked submit records its wait (feature `metrics`).
    #[cfg(feature = "metrics")]
    queue_time: metrics::Histogram,
    pub(crate) config: Config,
    /// `None`: direct hand-off (`queue(0)`).
    queue: Option<Queue<R::Job>>,
    /// S4: a pop wakes a blocked submitter once the queue holds at most
    /// this many jobs (three quarters of its length, at least one free slot).
    resume_at: usize,
    /// S3a: a spinning submitter retries once the queue holds at most this
    /// many jobs (a gap of up to `REFILL_GAP` free slots).
    refill_at: usize,
    /// `limit << 32 | running`; see `LIMIT_SHIFT`.
    threads: CachePadded<AtomicU64>,
    /// `sleepers << 32 | searching`; see `SLEEPER_ONE`.
    idle_word: CachePadded<AtomicU64>,
    /// Submitters blocked waiting for room.
    waiting: CachePadded<AtomicUsize>,
    /// The capacity last set by `build` or `resize`.
    target: AtomicUsize,
    closed: AtomicBool,
    /// Parked workers, most recently parked last (LIFO reuse keeps hot
    /// threads busy and lets cold ones reach their idle timeout).
    idle: Mutex<Vec<Arc<Worker<R::Job>>>>,
    /// Generation of "room may have appeared" events, for blocked submitters.
    space: Mutex<u64>,
    space_cv: Condvar,
    quiet: Mutex<()>,
    quiet_cv: Condvar,
    quiet_waiters: AtomicUsize,
    /// Pool threads blocked in `wait_idle` (tasks waiting for the others):
    /// they count as idle, so two such tasks never wait for each other.
    idle_waiting_workers: AtomicUsize,
    /// Threads that gave back their slot and have not finished exiting
    /// (registry, stop hook): `shutdown_timeout` waits for them too.
    exiting: AtomicUsize,
    resize_lock: Mutex<()>,
    registry: Mutex<Registry<R::Job>>,
    rejected: AtomicU64,
    inline_completed: AtomicU64,
    inline_panicked: AtomicU64,
    ran_on_caller: AtomicU64,
    threads_started: AtomicU64,
    threads_retired: AtomicU64,
    thread_seq: AtomicUsize,
    /// Live user handles (`Pool`/`FnPool` clones); the last one closes.
    pub(crate) handles: HandleCount,
}

impl<R: Runner> Inner<R> {
    pub(crate) fn start(config: Config, runner: R) -> Result<Arc<Self>, BuildError> {
        let pool_name = PoolName::claim("workers", config.name.as_deref());
        let inner = Arc::new(Inner {
            runner,
            #[cfg(feature = "metrics")]
            queue_time: crate::observe::workers::queue_time(&pool_name.shared()),
            name: pool_name,
            queue: (config.queue > 0).then(|| Queue::new(config.queue)),
            resume_at: config.queue - (config.queue / 4).max(1).min(config.queue),
            refill_at: config.queue - (config.queue / 4).clamp(1, REFILL_GAP).min(config.queue),
            threads: CachePadded::new(AtomicU64::new(pack_threads(config.capacity, 0))),
            idle_word: CachePadded::new(AtomicU64::new(0)),
            waiting: CachePadded::new(AtomicUsize::new(0)),
            target: AtomicUsize::new(config.capacity),
            closed: AtomicBool::new(false),
            idle: Mutex::new(Vec::new()),
            space: Mutex::new(0),
            space_cv: Condvar::new(),
            quiet: Mutex::new(()),
            quiet_cv: Condvar::new(),
            quiet_waiters: AtomicUsize::new(0),
            idle_waiting_workers: AtomicUsize::new(0),
            exiting: AtomicUsize::new(0),
            resize_lock: Mutex::new(()),
            registry: Mutex::new(Registry {
                live: Vec::new(),
                retired_completed: 0,
                retired_panicked: 0,
            }),
            rejected: AtomicU64::new(0),
            inline_completed: AtomicU64::new(0),
            inline_panicked: AtomicU64::new(0),
            ran_on_caller: AtomicU64::new(0),
            threads_started: AtomicU64::new(0),
            threads_retired: AtomicU64::new(0),
            thread_seq: AtomicUsize::new(0),
            handles: HandleCount::new(),
            config,
        });
        #[cfg(feature = "metrics")]
        crate::observe::publish::register(
            Arc::downgrade(&inner) as std::sync::Weak<dyn crate::observe::publish::Publish>
        );
        for _ in 0..inner.config.prestart {
            if let Err(e) = inner.spawn_worker(None) {
                inner.close();
                return Err(BuildError::Spawn(
                    e.os_error.unwrap_or_else(|| "capacity reached".to_owned()),
                ));
            }
        }
        Ok(inner)
    }

    #[inline]
    fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// True on a worker thread of this pool.
    pub(crate) fn is_own_worker(&self) -> bool {
        CURRENT_POOL.with(|c| c.get()) == self.id()
    }

    /// True on a thread of this pool that is exiting (running its stop
    /// hook): it holds no slot, and `shutdown_timeout` from its hook must
    /// not wait for it.
    fn is_exiting_here(&self) -> bool {
        CURRENT_POOL.with(|c| c.get()) == self.id() | EXITING_TAG
    }

    // ----- submission (DESIGN.md, "Submit (queue mode)") -------------------

    /// Submits one job; `how` decides what happens when the pool is full.
    #[inline]
    pub(crate) fn submit(self: &Arc<Self>, job: R::Job, how: How) -> Result<(), SubmitError> {
        if self.closed.load(Acquire) {
            return Err(SubmitError::Closed);
        }
        match self.try_place(job) {
            Ok(()) => Ok(()),
            Err(job) => self.on_full(job, how),
        }
    }

    /// Places the job if the pool is open and has room; otherwise hands it
    /// back without counting a rejection (`MultiPool` tries the next pool).
    pub(crate) fn offer(self: &Arc<Self>, job: R::Job) -> Result<(), R::Job> {
        if self.closed.load(Acquire) {
            return Err(job);
        }
        self.try_place(job)
    }

    pub(crate) fn count_rejected(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }

    /// Puts the job where a worker will run it, if there is room.
    #[inline]
    fn try_place(self: &Arc<Self>, job: R::Job) -> Result<(), R::Job> {
        match &self.queue {
            Some(q) => match q.push(job) {
                Ok(()) => {
                    self.after_push();
                    Ok(())
                }
                // Full queue: a thread may still be startable (ramp-up).
                Err(job) => self.spawn_worker(Some(job)).map_err(SpawnFailed::job),
            },
            None => {
                let job = match self.hand_off(job) {
                    Ok(()) => return Ok(()),
                    Err(job) => job,
                };
                self.spawn_worker(Some(job)).map_err(SpawnFailed::job)
            }
        }
    }

    /// Step S2: after a push, make sure some worker will look at the queue.
    #[inline]
    fn after_push(self: &Arc<Self>) {
        let word = self.idle_word.handshake_load();
        if searching_of(word) == 0 {
            self.wake_or_spawn(sleepers_of(word) > 0, true);
        }
    }

    /// Makes one more worker search: wakes a parked one or starts a thread.
    /// `may_defer`: a submitter may first give a running worker a moment
    /// (S2a); a worker calling this is itself the running one, so it may not.
    #[cold]
    fn wake_or_spawn(self: &Arc<Self>, sleepers: bool, may_defer: bool) {
        if may_defer && !sleepers && self.running_worker_may_take_it() {
            return;
        }
        if sleepers && self.wake_searcher() {
            return;
        }
        if let Err(e) = self.spawn_worker(None) {
            if e.os_error.is_some() && running_of(self.threads.load(SeqCst)) == 0 {
                // No thread could be started and none exists: run what is
                // queued here rather than strand it.
                self.drain_on_caller();
            }
        }
    }

    /// Step S2a: no worker is searching or parked, a thread could be
    /// started, one is running a task, and the queue holds only the job just
    /// pushed. With short tasks that worker is back at the queue within a
    /// few hundred nanoseconds, far sooner than a new thread starts (tens of
    /// microseconds): watch the queue briefly and start no thread if the job
    /// is taken. This keeps a pool of trivial tasks from growing to its
    /// capacity on a few cores; a long task costs the submitter only this
    /// short wait, once per thread started.
    #[inline]
    fn running_worker_may_take_it(&self) -> bool {
        let q = self.queue.as_ref().expect("only called in queue mode");
        // Only when workers keep up (our job is the only one queued): a
        // backlog means more threads are needed, so wake or start one now.
        let (running, limit) = self.running_and_capacity();
        if !cfg!(loom) && multi_core() && running < limit && self.busy() > 0 && q.len() <= 1 {
            for _ in 0..HANDOFF_SPINS {
                std::hint::spin_loop();
                if q.is_empty() {
                    return true;
                }
            }
        }
        false
    }

    /// Pops a parked worker and tells it to search. False if none was parked.
    fn wake_searcher(&self) -> bool {
        let mut idle = self.idle.lock();
        let Some(w) = idle.pop() else { return false };
        self.idle_word
            .fetch_add(SEARCHING_ONE.wrapping_sub(SLEEPER_ONE), SeqCst);
        drop(idle);
        w.signal(Signal::Search, None);
        true
    }

    /// Direct hand-off: give the job to a parked worker.
    fn hand_off(&self, job: R::Job) -> Result<(), R::Job> {
        if sleepers_of(self.idle_word.handshake_load()) == 0 {
            return Err(job);
        }
        let mut idle = self.idle.lock();
        let Some(w) = idle.pop() else { return Err(job) };
        self.idle_word.fetch_sub(SLEEPER_ONE, SeqCst);
        drop(idle);
        w.signal(Signal::Job, Some(job));
        Ok(())
    }

    #[cold]
    fn on_full(self: &Arc<Self>, job: R::Job, how: How) -> Result<(), SubmitError> {
        match how {
            How::Try => self.reject(SubmitError::Full),
            How::Policy => match self.config.policy {
                Policy::Reject => self.reject(SubmitError::Full),
                Policy::CallerRuns => {
                    self.ran_on_caller.fetch_add(1, Relaxed);
                    self.run_on_caller(job);
                    Ok(())
                }
                Policy::Block => self
                    .block(job, None, Duration::MAX, true)
                    .map_err(|(e, _)| e),
            },
            How::Wait(deadline, d) => self.block(job, deadline, d, true).map_err(|(e, _)| e),
        }
    }

    /// Places a job the caller is owed a run of (a scope's task): waits for
    /// room however many submitters already wait, and hands the job back
    /// if the pool is closed (the caller then runs it).
    pub(crate) fn submit_owed(self: &Arc<Self>, job: R::Job) -> Result<(), R::Job> {
        if self.closed.load(Acquire) {
            return Err(job);
        }
        match self.try_place(job) {
            Ok(()) => Ok(()),
            Err(job) => self
                .block(job, None, Duration::MAX, false)
                .map_err(|(_, job)| job),
        }
    }

    fn reject(&self, e: SubmitError) -> Result<(), SubmitError> {
        self.rejected.fetch_add(1, Relaxed);
        Err(e)
    }

    /// [`reject`](Self::reject), handing the job back.
    fn refuse(&self, e: SubmitError, job: R::Job) -> Result<(), (SubmitError, R::Job)> {
        self.rejected.fetch_add(1, Relaxed);
        Err((e, job))
    }

    /// Step S3: wait for room.
    /// `capped`: the submitter counts against `max_waiting`. A
    /// refusal hands the job back.
    fn block(
        self: &Arc<Self>,
        job: R::Job,
        deadline: Option<Instant>,
        asked: Duration,
        capped: bool,
    ) -> Result<(), (SubmitError, R::Job)> {
        if self.is_own_worker() {
            // A task submitting into its own full pool: waiting could
            // deadlock (every thread may be doing the same), so the task
            // runs the new task itself (DESIGN.md, "Nested submit").
            self.ran_on_caller.fetch_add(1, Relaxed);
            self.run_on_caller(job);
            return Ok(());
        }
        let max = if capped {
            self.config.max_waiting
        } else {
            usize::MAX
        };
        // A zero timeout reports `TimedOut`, whatever the cap on waiters;
        // any other timeout meets the cap first. The rule reads the asked
        // duration, not the clock, so a submitter preempted past a short
        // deadline gets the same answer as one that was not.
        if deadline.is_some() && asked.is_zero() {
            return self.refuse(SubmitError::TimedOut(asked), job);
        }
        if max == 0 {
            return self.refuse(SubmitError::TooManyWaiting(0), job);
        }
        let job = match self.spin_for_room(job, deadline) {
            Spun::Placed => return Ok(()),
            Spun::Closed(job) => return Err((SubmitError::Closed, job)),
            Spun::Full(job) => job,
        };
        let Some(_unwait) = self.enter_waiting(max) else {
            return self.refuse(SubmitError::TooManyWaiting(max), job);
        };
        #[cfg(feature = "metrics")]
        let t0 = Instant::now();
        let placed = self.wait_for_room(job, deadline, asked);
        #[cfg(feature = "metrics")]
        self.queue_time.record(t0.elapsed().as_secs_f64());
        placed
    }

    /// S3a: spin and yield briefly before sleeping. With short tasks a
    /// slot frees within nanoseconds, sooner than a sleep and wake-up.
    fn spin_for_room(self: &Arc<Self>, mut job: R::Job, deadline: Option<Instant>) -> Spun<R::Job> {
        if deadline.map_or(true, |d| Instant::now() < d) {
            let backoff = Backoff::new();
            while !backoff.is_completed() {
                backoff.snooze();
                if self.closed.load(SeqCst) {
                    return Spun::Closed(job);
                }
                if self
                    .queue
                    .as_ref()
                    .is_some_and(|q| q.len() > self.refill_at)
                {
                    // Refill in a burst once a few slots are free, rather
                    // than slot by slot right behind the consumers: pushing
                    // next to the slot a worker is popping makes the two
                    // cores fight over the same cache lines.
                    continue;
                }
                job = match self.try_place(job) {
                    Ok(()) => return Spun::Placed,
                    Err(job) => job,
                };
            }
        }
        Spun::Full(job)
    }

    /// Counts the submitter in `waiting`, unless `max` already wait; it is
    /// counted until the returned guard drops.
    fn enter_waiting(&self, max: usize) -> Option<Unwait<'_>> {
        let mut n = self.waiting.load(SeqCst);
        loop {
            if n >= max {
                return None;
            }
            match self.waiting.compare_exchange_weak(n, n + 1, SeqCst, SeqCst) {
                Ok(_) => return Some(Unwait(&self.waiting)),
                Err(cur) => n = cur,
            }
        }
    }

    /// Waits for a room event (or the deadline) and tries again, until the
    /// job is placed or refused. The caller is counted in `waiting`.
    fn wait_for_room(
        self: &Arc<Self>,
        mut job: R::Job,
        deadline: Option<Instant>,
        asked: Duration,
    ) -> Result<(), (SubmitError, R::Job)> {
        loop {
            if self.closed.load(SeqCst) {
                return Err((SubmitError::Closed, job));
            }
            // No lock is held while placing (placing may take the idle lock,
            // start a thread or run tasks). A room event between the failed
            // try and the wait bumps the generation, so it is not lost: the
            // notifier saw `waiting > 0` (we registered before trying) and
            // bumps under the lock we then check under.
            let generation = *self.space.lock();
            job = match self.try_place(job) {
                Ok(()) => return Ok(()),
                Err(job) => job,
            };
            let mut g = self.space.lock();
            if *g != generation || self.closed.load(SeqCst) {
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                drop(g);
                return self.refuse(SubmitError::TimedOut(asked), job);
            }
            self.space_cv.wait_until(&mut g, deadline);
        }
    }

    /// Tells one blocked submitter that there may be room.
    #[inline]
    fn notify_space(&self) {
        if self.waiting.handshake_load() > 0 {
            let mut g = self.space.lock();
            *g = g.wrapping_add(1);
            self.space_cv.notify_one();
        }
    }

    fn notify_space_all(&self) {
        let mut g = self.space.lock();
        *g = g.wrapping_add(1);
        self.space_cv.notify_all();
    }

    /// Runs a job on the calling (non-pool or nested) thread.
    pub(crate) fn run_on_caller(&self, job: R::Job) {
        match catch_unwind(AssertUnwindSafe(|| self.runner.run(job))) {
            Ok(false) => {
                self.inline_completed.fetch_add(1, Relaxed);
            }
            Ok(true) => {
                self.inline_panicked.fetch_add(1, Relaxed);
            }
            Err(p) => {
                self.inline_panicked.fetch_add(1, Relaxed);
                self.report_panic(p);
            }
        }
    }

    #[cold]
    fn drain_on_caller(&self) {
        crate::log::error!("cenote: no worker thread could be started; running queued tasks on the submitting thread");
        while let Some(job) = self.pop() {
            self.run_on_caller(job);
        }
    }

    /// Hands a task's panic to the handler (or the log). The payload is
    /// the user's: its drop may panic too, so it is dropped safely.
    #[cold]
    fn report_panic(&self, payload: Payload) {
        unwind::report(
            self.config.panic_handler.as_ref(),
            payload.as_ref(),
            "workers",
        );
        unwind::drop_payload(payload);
    }

    // ----- threads (DESIGN.md, "Threads and capacity") --------------------

    /// Reserves a thread slot and starts a worker, with `first` as its first
    /// job (or searching). On failure returns the job and whether the OS
    /// refused the thread (as opposed to the capacity being reached).
    fn spawn_worker(self: &Arc<Self>, first: Option<R::Job>) -> Result<(), SpawnFailed<R::Job>> {
        if !self.reserve_slot() {
            return Err(SpawnFailed {
                job: first,
                os_error: None,
            });
        }
        let searching = first.is_none();
        if searching {
            self.idle_word.fetch_add(SEARCHING_ONE, SeqCst);
        }
        let worker = Arc::new(Worker::new(first));
        self.registry.lock().live.push(worker.clone());
        let n = self.thread_seq.fetch_add(1, Relaxed);
        let inner = self.clone();
        let w = worker.clone();
        let spawned = crate::sync::spawn_thread(
            format!("{}-{}", self.config.thread_name, n),
            self.config.stack_size,
            move || inner.worker_main(w),
        );
        match spawned {
            Ok(()) => {
                self.threads_started.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(e) => {
                crate::log::error!(error = %e, "cenote: could not start a worker thread");
                let job = worker.park.lock().job.take();
                self.registry
                    .lock()
                    .live
                    .retain(|x| !Arc::ptr_eq(x, &worker));
                if searching {
                    self.idle_word.fetch_sub(SEARCHING_ONE, SeqCst);
                }
                self.release_thread();
                Err(SpawnFailed {
                    job,
                    os_error: Some(e.to_string()),
                })
            }
        }
    }

    /// Takes one thread slot if `running < limit` (one CAS). True if it did.
    fn reserve_slot(&self) -> bool {
        let mut cur = self.threads.load(SeqCst);
        loop {
            if running_of(cur) >= limit_of(cur) {
                return false;
            }
            match self
                .threads
                .compare_exchange_weak(cur, cur + 1, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Step W3c, "leave, then release, then look": a worker leaving (idle
    /// timeout, close, shrink) gives back its thread slot and only then
    /// looks at the queue once more. A push between its last look and the
    /// release found no searcher, no sleeper and no free slot, so nobody
    /// else would run that job: the leaving worker takes a slot back and
    /// searches. If the slot is gone, its taker searches or runs a job and
    /// then searches. Called counted neither as searching nor as a sleeper.
    fn leave(&self) -> Parked<R::Job> {
        self.exiting.fetch_add(1, SeqCst);
        self.release_thread();
        if !self.queue_is_empty() && self.reserve_slot() {
            self.exiting.fetch_sub(1, SeqCst);
            self.idle_word.fetch_add(SEARCHING_ONE, SeqCst);
            return Parked::Search;
        }
        Parked::Exit
    }

    /// Gives back one thread slot and tells whoever may care: blocked
    /// submitters (a slot is room in hand-off mode) and `wait_idle`/shutdown.
    /// Never called with a lock held.
    fn release_thread(&self) {
        self.release_slot();
        self.notify_space();
        self.notify_quiet();
    }

    /// Gives back one thread slot; lowers the capacity in force toward the
    /// target while a shrink is pending. Takes no lock.
    fn release_slot(&self) {
        self.leave_if(|_| true);
    }

    /// Step W1b: a busy worker above the target retires after its task.
    fn try_retire_surplus(&self) -> bool {
        let target = self.target.load(Relaxed);
        if running_of(self.threads.load(Relaxed)) <= target {
            return false; // the common case: two relaxed loads
        }
        self.exiting.fetch_add(1, SeqCst);
        if self.leave_if(|running| running > self.target.load(SeqCst)) {
            self.notify_space();
            self.notify_quiet();
            return true;
        }
        self.exiting.fetch_sub(1, SeqCst);
        false
    }

    /// Takes one thread off `threads` if `cond(running)` holds, lowering a
    /// pending shrink's limit toward the target. True if it did.
    fn leave_if(&self, cond: impl Fn(usize) -> bool) -> bool {
        let mut cur = self.threads.load(SeqCst);
        loop {
            let (limit, running) = (limit_of(cur), running_of(cur));
            if !cond(running) {
                return false;
            }
            let target = self.target.load(SeqCst);
            let new_limit = if limit > target {
                target.max(running - 1)
            } else {
                limit
            };
            let new = pack_threads(new_limit, running - 1);
            match self.threads.compare_exchange_weak(cur, new, SeqCst, SeqCst) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    // ----- the worker loop (DESIGN.md, "Worker") --------------------------

    #[inline]
    fn pop(&self) -> Option<R::Job> {
        let q = self.queue.as_ref()?;
        let job = q.pop()?;
        // S4: wake a blocked submitter only once a quarter of the queue is
        // free (hysteresis): it then refills in a burst, so a producer
        // faster than its workers costs one wake-up per quarter queue, not
        // one per job, and does not compete with the workers for a core;
        // and the queue never runs dry while it sleeps.
        if self.waiting.handshake_load() > 0 && q.len() <= self.resume_at {
            self.wake_blocked_submitter();
        }
        Some(job)
    }

    #[cold]
    fn wake_blocked_submitter(&self) {
        let mut g = self.space.lock();
        *g = g.wrapping_add(1);
        self.space_cv.notify_one();
    }

    fn queue_is_empty(&self) -> bool {
        self.queue.as_ref().map_or(true, |q| q.is_empty())
    }

    fn worker_main(self: Arc<Self>, me: Arc<Worker<R::Job>>) {
        CURRENT_POOL.with(|c| c.set(self.id()));
        if let Some(hook) = &self.config.on_thread_start {
            if unwind::panicked(|| hook()) {
                crate::log::error!("cenote: on_thread_start hook panicked");
            }
        }
        let first = {
            let mut p = me.park.lock();
            p.signal = Signal::None;
            p.job.take()
        };
        let mut searching = first.is_none();
        let mut next = first;
        loop {
            let job = match next.take() {
                Some(job) => job,
                None => match self.find_job(&me, &mut searching) {
                    Some(job) => job,
                    None => break,
                },
            };
            self.execute(&me, job);
            if self.try_retire_surplus() {
                if !self.queue_is_empty() {
                    self.after_push();
                }
                break;
            }
        }
        self.worker_exit(&me);
    }

    /// Finds the next job: pop, spin briefly, then park. `None` means exit
    /// (the thread slot is already released).
    fn find_job(
        self: &Arc<Self>,
        me: &Arc<Worker<R::Job>>,
        searching: &mut bool,
    ) -> Option<R::Job> {
        loop {
            if let Some(job) = self.pop() {
                if *searching {
                    *searching = false;
                    self.end_search();
                }
                return Some(job);
            }
            if !*searching {
                *searching = true;
                self.idle_word.fetch_add(SEARCHING_ONE, SeqCst);
            }
            if self.queue.is_some() && searching_of(self.idle_word.load(Relaxed)) <= max_spinners()
            {
                let backoff = Backoff::new();
                while !backoff.is_completed() {
                    backoff.snooze();
                    if let Some(job) = self.pop() {
                        *searching = false;
                        self.end_search();
                        return Some(job);
                    }
                }
            }
            match self.park(me) {
                Parked::Job(job) => {
                    *searching = false;
                    return Some(job);
                }
                Parked::Search => {}
                Parked::Exit => return None,
            }
        }
    }

    /// Step W2: a searcher found a job. The last searcher to leave wakes a
    /// parked worker, or starts a thread, if more work is waiting, so
    /// parallelism ramps up (one thread starting the next) without the
    /// producer paying a wake-up per push.
    #[inline]
    fn end_search(self: &Arc<Self>) {
        let prev = self.idle_word.fetch_sub(SEARCHING_ONE, SeqCst);
        if searching_of(prev) == 1 && !self.queue_is_empty() {
            self.wake_or_spawn(sleepers_of(prev) > 0, false);
        }
    }

    /// Step W3: park on the idle stack until signalled, or retire.
    /// Called while counted as searching.
    fn park(&self, me: &Arc<Worker<R::Job>>) -> Parked<R::Job> {
        let mut idle = self.idle.lock();
        if self.closed.load(SeqCst)
            || running_of(self.threads.load(SeqCst)) > self.target.load(SeqCst)
        {
            // Exit path: stop searching, then re-check the queue (W3b).
            self.idle_word.fetch_sub(SEARCHING_ONE, SeqCst);
            if !self.queue_is_empty() {
                self.idle_word.fetch_add(SEARCHING_ONE, SeqCst);
                return Parked::Search;
            }
            drop(idle);
            return self.leave();
        }
        idle.push(me.clone());
        self.idle_word
            .fetch_add(SLEEPER_ONE.wrapping_sub(SEARCHING_ONE), SeqCst);
        if !self.queue_is_empty() {
            // A push raced with us and may have seen us searching (W3a).
            idle.pop();
            self.idle_word
                .fetch_sub(SLEEPER_ONE.wrapping_sub(SEARCHING_ONE), SeqCst);
            return Parked::Search;
        }
        drop(idle);
        if self.queue.is_none() {
            // Direct hand-off: an idle worker is room for a blocked submitter.
            self.notify_space();
        }
        self.notify_quiet();

        let mut deadline = self.config.idle_timeout.and_then(deadline_after);
        let mut p = me.park.lock();
        loop {
            match p.signal {
                Signal::None => {}
                Signal::Search => {
                    p.signal = Signal::None;
                    return Parked::Search;
                }
                Signal::Job => {
                    p.signal = Signal::None;
                    return Parked::Job(p.job.take().expect("hand-off carries a job"));
                }
                Signal::Retire => return Parked::Exit,
            }
            let timed_out = me.cv.wait_until(&mut p, deadline);
            if timed_out && p.signal == Signal::None {
                drop(p);
                let mut idle = self.idle.lock();
                if let Some(pos) = idle.iter().position(|w| Arc::ptr_eq(w, me)) {
                    idle.remove(pos);
                    self.idle_word.fetch_sub(SLEEPER_ONE, SeqCst);
                    drop(idle);
                    return self.leave();
                }
                // A waker popped us already; its signal is on its way.
                drop(idle);
                deadline = None;
                p = me.park.lock();
            }
        }
    }

    #[inline]
    fn execute(&self, me: &Worker<R::Job>, job: R::Job) {
        match catch_unwind(AssertUnwindSafe(|| self.runner.run(job))) {
            Ok(false) => bump(&me.completed),
            Ok(true) => bump(&me.panicked),
            Err(p) => {
                bump(&me.panicked);
                self.report_panic(p);
            }
        }
    }

    fn worker_exit(&self, me: &Arc<Worker<R::Job>>) {
        CURRENT_POOL.with(|c| c.set(self.id() | EXITING_TAG));
        {
            let mut reg = self.registry.lock();
            reg.retired_completed += me.completed.load(Relaxed);
            reg.retired_panicked += me.panicked.load(Relaxed);
            reg.live.retain(|w| !Arc::ptr_eq(w, me));
        }
        self.threads_retired.fetch_add(1, Relaxed);
        if let Some(hook) = &self.config.on_thread_stop {
            if unwind::panicked(|| hook()) {
                crate::log::error!("cenote: on_thread_stop hook panicked");
            }
        }
        CURRENT_POOL.with(|c| c.set(0));
        self.exiting.fetch_sub(1, SeqCst);
        self.notify_quiet();
    }

    // ----- helping (scopes) -----------------------------------------------

    /// Runs one queued job on the calling thread, if any. Used by a scope
    /// waiting on a worker thread, so waiting never idles a pool thread.
    pub(crate) fn help_one(&self) -> bool {
        match self.pop() {
            Some(job) => {
                self.run_on_caller(job);
                true
            }
            None => false,
        }
    }

    // ----- control: resize, close, reboot (DESIGN.md, "Close and shutdown") -

    pub(crate) fn resize(self: &Arc<Self>, n: usize) -> Result<(), ResizeError> {
        ResizeError::check(n)?;
        let _t = self.resize_lock.lock();
        if self.is_closed() {
            return Err(ResizeError::Closed);
        }
        let old = self.target.swap(n, SeqCst);
        let mut cur = self.threads.load(SeqCst);
        loop {
            let new = pack_threads(n.max(running_of(cur)), running_of(cur));
            match self.threads.compare_exchange_weak(cur, new, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if n > old {
            // Growth: blocked submitters may now place work, and queued work
            // may use the new threads.
            self.notify_space_all();
            let queued = self.queue.as_ref().map_or(0, |q| q.len());
            for _ in 0..queued.min(n - old) {
                if self.spawn_worker(None).is_err() {
                    break;
                }
            }
        } else if n < old {
            // Shrink: parked threads above the target retire now (oldest
            // first); busy ones retire as they finish their task.
            // Slots are released under the idle lock (so the count is
            // exact), notifications and signals after it (lock order: never
            // take another pool lock while holding `idle`).
            let mut retired = Vec::new();
            {
                let mut idle = self.idle.lock();
                while running_of(self.threads.load(SeqCst)) > n && !idle.is_empty() {
                    retired.push(idle.remove(0));
                    self.idle_word.fetch_sub(SLEEPER_ONE, SeqCst);
                    self.exiting.fetch_add(1, SeqCst);
                    self.release_slot();
                }
            }
            if !retired.is_empty() {
                self.notify_space();
                self.notify_quiet();
            }
            for w in retired {
                w.signal(Signal::Retire, None);
            }
        }
        Ok(())
    }

    pub(crate) fn close(self: &Arc<Self>) {
        self.closed.store(true, SeqCst);
        let parked: Vec<_> = {
            let mut idle = self.idle.lock();
            let ws: Vec<_> = idle.drain(..).collect();
            self.idle_word
                .fetch_sub(SLEEPER_ONE * ws.len() as u64, SeqCst);
            ws
        };
        for w in parked {
            self.exiting.fetch_add(1, SeqCst);
            self.release_thread();
            w.signal(Signal::Retire, None);
        }
        // W3c for the retired sleepers: a submit that passed the `closed`
        // check before the store and pushed after the sleepers were taken,
        // but before their slots came back, started no thread. Its job is
        // still run (closing drains the queue).
        if !self.queue_is_empty() {
            let _ = self.spawn_worker(None);
        }
        self.notify_space_all();
        self.notify_quiet();
    }

    pub(crate) fn reboot(&self) {
        self.closed.store(false, SeqCst);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    // ----- waiting for quiet (DESIGN.md, "Quiet") -------------------------

    #[inline]
    fn notify_quiet(&self) {
        if self.quiet_waiters.handshake_load() > 0 {
            let _g = self.quiet.lock();
            self.quiet_cv.notify_all();
        }
    }

    /// For a caller from outside the pool: the queue is empty and every
    /// thread is parked. (A task blocked in `wait_idle` is still running:
    /// it has not finished.)
    fn is_idle_now(&self) -> bool {
        let threads = running_of(self.threads.handshake_load());
        let sleepers = sleepers_of(self.idle_word.handshake_load());
        self.queue_is_empty() && sleepers >= threads
    }

    /// For a task waiting for the others: the queue is empty and every
    /// thread is parked or itself a task waiting in `wait_idle` (so two
    /// such tasks never wait for each other).
    fn is_idle_for_task(&self) -> bool {
        let waiting_workers = self.idle_waiting_workers.handshake_load();
        let threads = running_of(self.threads.handshake_load());
        let sleepers = sleepers_of(self.idle_word.handshake_load());
        self.queue_is_empty() && sleepers + waiting_workers >= threads
    }

    /// Every thread but the caller has exited (its exit hook run) and the
    /// queue is empty.
    fn is_stopped_now(&self) -> bool {
        let me = usize::from(self.is_own_worker());
        let me_exiting = usize::from(self.is_exiting_here());
        self.queue_is_empty()
            && running_of(self.threads.handshake_load()) <= me
            && self.exiting.handshake_load() <= me_exiting
    }

    /// Waits until `cond` holds or the deadline passes; true if it holds.
    fn wait_for(&self, cond: impl Fn(&Self) -> bool, deadline: Option<Instant>) -> bool {
        loop {
            if cond(self) {
                return true;
            }
            let mut g = self.quiet.lock();
            self.quiet_waiters.fetch_add(1, SeqCst);
            let holds = cond(self);
            let timed_out = !holds && self.quiet_cv.wait_until(&mut g, deadline);
            self.quiet_waiters.fetch_sub(1, SeqCst);
            if holds {
                return true;
            }
            if timed_out {
                return cond(self);
            }
        }
    }

    /// `Pool::wait_idle`: from outside, until everything finished; from a
    /// task of the pool, until every other task finished.
    pub(crate) fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        let own = self.is_own_worker();
        let _waiting = own.then(|| self.enter_idle_wait());
        self.wait_quiet(deadline, own)
    }

    /// Counts the calling pool thread as a task waiting in `wait_idle`
    /// until the guard drops (and says so: that may complete another
    /// waiter's wait).
    pub(crate) fn enter_idle_wait(&self) -> IdleWait<'_, R> {
        self.idle_waiting_workers.fetch_add(1, SeqCst);
        self.notify_quiet();
        IdleWait(self)
    }

    /// Waits for the pool to be idle: as a task that waits for the others
    /// (`as_task`: threads waiting in `wait_idle` count as idle), or as an
    /// outsider. A task of this pool runs queued tasks while it waits: with
    /// no thread free, nobody else would, and it would wait for them
    /// forever.
    pub(crate) fn wait_quiet(&self, deadline: Option<Instant>, as_task: bool) -> bool {
        if !as_task {
            return self.wait_for(Self::is_idle_now, deadline);
        }
        if !self.is_own_worker() {
            return self.wait_for(Self::is_idle_for_task, deadline);
        }
        loop {
            if self.help_while_waiting() {
                continue;
            }
            // Short slices: a push does not wake quiet waiters.
            let slice = Instant::now() + Duration::from_millis(1);
            if self.wait_for(
                Self::is_idle_for_task,
                Some(deadline.map_or(slice, |d| d.min(slice))),
            ) {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
        }
    }

    /// A task in `wait_idle` runs one queued task, counted busy meanwhile.
    fn help_while_waiting(&self) -> bool {
        let Some(job) = self.pop() else { return false };
        self.idle_waiting_workers.fetch_sub(1, SeqCst);
        self.run_on_caller(job);
        self.idle_waiting_workers.fetch_add(1, SeqCst);
        self.notify_quiet();
        true
    }

    /// Closes, then waits for every thread to exit and the queue to empty.
    /// From one of the pool's own tasks it waits for every other thread,
    /// and then reports its own as still running: `Ok` means "all stopped".
    pub(crate) fn shutdown_timeout(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> Result<(), ShutdownError> {
        self.close();
        let started = Instant::now();
        let from_own_task = self.is_own_worker();
        if self.wait_for(Self::is_stopped_now, deadline_after(timeout)) && !from_own_task {
            Ok(())
        } else {
            Err(ShutdownError {
                threads: self.running().max(self.exiting.load(SeqCst)),
                queued: self.queued(),
                waited: started.elapsed(),
                from_own_task,
            })
        }
    }

    // ----- introspection --------------------------------------------------

    pub(crate) fn running(&self) -> usize {
        running_of(self.threads.load(SeqCst))
    }
    pub(crate) fn capacity(&self) -> usize {
        limit_of(self.threads.load(SeqCst))
    }
    /// `(running, capacity)` read together, consistent with each other.
    pub(crate) fn running_and_capacity(&self) -> (usize, usize) {
        let t = self.threads.load(SeqCst);
        (running_of(t), limit_of(t))
    }
    pub(crate) fn target(&self) -> usize {
        self.target.load(SeqCst)
    }
    pub(crate) fn idle(&self) -> usize {
        sleepers_of(self.idle_word.load(SeqCst))
    }
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(SeqCst)
    }
    pub(crate) fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }
    pub(crate) fn busy(&self) -> usize {
        let word = self.idle_word.load(SeqCst);
        self.running()
            .saturating_sub(sleepers_of(word) + searching_of(word))
    }

    pub(crate) fn stats(&self) -> Stats {
        let reg = self.registry.lock();
        let mut completed = reg.retired_completed + self.inline_completed.load(Relaxed);
        let mut panicked = reg.retired_panicked + self.inline_panicked.load(Relaxed);
        for w in &reg.live {
            completed += w.completed.load(Relaxed);
            panicked += w.panicked.load(Relaxed);
        }
        Stats {
            running: self.running(),
            idle: self.idle(),
            waiting: self.waiting(),
            queued: self.queued(),
            capacity: self.capacity(),
            completed,
            panicked,
            rejected: self.rejected.load(Relaxed),
            ran_on_caller: self.ran_on_caller.load(Relaxed),
            threads_started: self.threads_started.load(Relaxed),
            threads_retired: self.threads_retired.load(Relaxed),
        }
    }
}

/// A pool thread counted as a task waiting in `wait_idle`; see
/// [`Inner::enter_idle_wait`].
pub(crate) struct IdleWait<'a, R: Runner>(&'a Inner<R>);

impl<R: Runner> Drop for IdleWait<'_, R> {
    fn drop(&mut self) {
        self.0.idle_waiting_workers.fetch_sub(1, SeqCst);
    }
}

/// A failed `spawn_worker`: the job it was given back, and the OS error
/// when the OS refused the thread (`None`: the capacity was reached).
pub(crate) struct SpawnFailed<J> {
    job: Option<J>,
    os_error: Option<String>,
}

impl<J> SpawnFailed<J> {
    fn job(self) -> J {
        self.job
            .expect("spawn_worker(Some(job)) returns the job on failure")
    }
}

impl<R: Runner> Drop for Inner<R> {
    fn drop(&mut self) {
        // Only reached when no thread and no handle is left; anything still
        // queued (possible only if threads could not be started) is dropped,
        // which cancels its JoinHandle.
        if let Some(q) = &self.queue {
            while q.pop().is_some() {}
        }
    }
}

#[cfg(feature = "metrics")]
impl<R: Runner> crate::observe::publish::Publish for Inner<R> {
    fn publish(&self) {
        crate::observe::workers::publish(&self.name.shared(), &self.stats());
    }
}
