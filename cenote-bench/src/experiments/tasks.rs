//! Async experiments: `cenote::tasks::Pool` against the ways tokio users
//! bound futures by hand, and `cenote::limit::Semaphore` against tokio's
//! semaphore and a `Mutex` + `Condvar` one.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use super::{count_label, Case, Column, Experiment, Quantity, Unit};
use crate::harness::Outcome;
use crate::peers::Impl;

pub const OVERHEAD: &str = "tasks/overhead";
pub const SLEEP: &str = "tasks/sleep";
/// Seed 001's shape (100k jobs sleeping, pools of 1,000 and 10,000) with
/// futures instead of threads; part of `cenote-bench seeds`.
pub const SEED001_ASYNC: &str = "seeds/seed001-async";
pub const SEMAPHORE: &str = "limit/semaphore";

/// Parameters of the task-pool measurements.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TasksParams {
    /// Futures to run.
    pub jobs: u64,
    /// At most this many in flight (ignored by `tokio-spawn`).
    pub capacity: usize,
    /// Every job sleeps this long (0: a trivial job).
    pub sleep_ms: u64,
    /// Runtime worker threads (0: one per CPU).
    pub workers: usize,
}

/// How the semaphore is exercised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SemMode {
    /// One plain thread, blocking acquire (tokio: `try_acquire`, its only
    /// way from a thread).
    Thread,
    /// One task on a current-thread runtime, `acquire().await`.
    Task,
    /// Two threads, one permit, blocking acquires.
    Threads2,
    /// Two tasks on a 2-worker runtime, one permit, `acquire().await`.
    Tasks2,
    /// Two tasks on a current-thread runtime, one permit, each holding it
    /// across a yield: every acquire queues and every release hands the
    /// permit over (the hand-over cost alone, without the scheduling luck
    /// of `Tasks2`).
    Turns,
}

/// Parameters of the semaphore measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SemParams {
    pub mode: SemMode,
    /// Acquire + release pairs, in total over all threads or tasks.
    pub ops: u64,
}

/// The async peers: cenote first.
pub const TASK_PEERS: [Impl; 5] = [
    Impl::Cenote,
    Impl::TokioSpawn,
    Impl::TokioSemaphore,
    Impl::BufferUnordered,
    Impl::JoinSet,
];

pub fn plan(smoke: bool) -> Vec<Experiment> {
    vec![overhead(smoke), sleep(smoke), semaphore(smoke)]
}

fn peer_notes() -> String {
    "cenote: tasks::Pool::new(cap), spawn(job).await per job, handle dropped, then \
     wait_idle(); tokio-spawn: tokio::spawn per job, no bound (the cap does not apply), done \
     when a shared counter reaches the last; tokio-semaphore: Arc<Semaphore>(cap), \
     acquire_owned().await then tokio::spawn(job, drops the permit), done when all cap permits \
     are back; buffer-unordered: futures' stream::iter(jobs).buffer_unordered(cap), all in the \
     producer's task; joinset: JoinSet, join_next().await whenever it holds cap, then drained"
        .to_owned()
}

fn overhead(smoke: bool) -> Experiment {
    let (jobs, capacity) = if smoke {
        (2_000, 64)
    } else {
        (1_000_000, 1024)
    };
    let params = TasksParams {
        jobs,
        capacity,
        sleep_ms: 0,
        workers: 0,
    };
    let scenario = format!("{}-trivial/cap={capacity}", count_label(jobs));
    Experiment {
        name: OVERHEAD,
        title: "overhead of a bounded spawn: trivial futures through each async peer".to_owned(),
        notes: vec![
            "job: async { black_box(i) }; one producer task on a multi-thread tokio runtime with \
             one worker per CPU; measured region: from the first spawn to the last job done"
                .to_owned(),
            peer_notes(),
        ],
        headline: Quantity::PerOp,
        per_op_title: "time per future (wall / futures)",
        columns: vec![],
        cases: TASK_PEERS
            .iter()
            .map(|&imp| Case::new(&scenario, imp, &params))
            .collect(),
    }
}

fn sleep(smoke: bool) -> Experiment {
    // (jobs, sleep ms, capacity)
    let shapes: Vec<(u64, u64, usize)> = if smoke {
        vec![(2_000, 2, 500), (1_000, 3, 100)]
    } else {
        vec![
            (1_000_000, 10, 50_000),
            (100_000, 30, 1_000),
            (100_000, 30, 10_000),
        ]
    };
    sleep_experiment(
        SLEEP,
        "I/O-shaped jobs: futures that sleep, at most cap in flight (ants' and seed 001's \
         shapes)"
            .to_owned(),
        shapes,
    )
}

/// Seed 001 with futures: 100k jobs sleeping `sleep_ms` (the seed's
/// `--sleep-ms`, 10 by default), at most 1,000 and 10,000 in flight.
pub fn seed001_async(smoke: bool, sleep_ms: u64) -> Experiment {
    let shapes = if smoke {
        vec![(2_000, sleep_ms.min(1), 32), (2_000, sleep_ms.min(1), 256)]
    } else {
        vec![(100_000, sleep_ms, 1_000), (100_000, sleep_ms, 10_000)]
    };
    sleep_experiment(
        SEED001_ASYNC,
        "seed 001 with futures: jobs sleeping on a tokio runtime, at most cap in flight".to_owned(),
        shapes,
    )
}

fn sleep_experiment(
    name: &'static str,
    title: String,
    shapes: Vec<(u64, u64, usize)>,
) -> Experiment {
    let mut cases = Vec::new();
    for (jobs, sleep_ms, capacity) in shapes {
        let scenario = format!("{}x{sleep_ms}ms/cap={capacity}", count_label(jobs));
        let params = TasksParams {
            jobs,
            capacity,
            sleep_ms,
            workers: 0,
        };
        for imp in TASK_PEERS {
            cases.push(Case::new(&scenario, imp, &params));
        }
    }
    Experiment {
        name,
        title,
        notes: vec![
            "job: tokio::time::sleep(ms).await; one producer task on a multi-thread tokio \
             runtime with one worker per CPU; measured region: from the first spawn to the \
             last job done; the floor is jobs / cap waves × ms"
                .to_owned(),
            peer_notes(),
            "in flight: the most jobs inside their body at once, counted by the job (tokio-spawn \
             has no cap, so it is the one peer that may exceed it)"
                .to_owned(),
        ],
        headline: Quantity::PerOp,
        per_op_title: "time per job (wall / jobs)",
        columns: vec![Column {
            key: "peak_in_flight",
            header: "in flight",
            unit: Unit::Plain(0),
            chart: false,
        }],
        cases,
    }
}

fn semaphore(smoke: bool) -> Experiment {
    let ops = |n: u64| if smoke { 10_000 } else { n };
    let shapes = [
        (SemMode::Thread, "1-thread", ops(10_000_000)),
        (SemMode::Task, "1-task", ops(10_000_000)),
        (SemMode::Threads2, "2-threads/permits=1", ops(1_000_000)),
        (SemMode::Tasks2, "2-tasks/permits=1", ops(1_000_000)),
        (SemMode::Turns, "2-tasks-1-thread/turns", ops(1_000_000)),
    ];
    let mut cases = Vec::new();
    for (mode, label, ops) in shapes {
        let scenario = format!("{label}/{}", count_label(ops));
        let params = SemParams { mode, ops };
        let peers: &[Impl] = match mode {
            SemMode::Thread => &[Impl::Cenote, Impl::TokioSemaphore, Impl::MutexCondvar],
            SemMode::Threads2 => &[Impl::Cenote, Impl::MutexCondvar],
            SemMode::Task | SemMode::Tasks2 | SemMode::Turns => {
                &[Impl::Cenote, Impl::TokioSemaphore]
            }
        };
        for &imp in peers {
            cases.push(Case::new(&scenario, imp, &params));
        }
    }
    Experiment {
        name: SEMAPHORE,
        title: "semaphore acquire + release, alone and with two contenders".to_owned(),
        notes: vec![
            "1-thread: a plain thread, cenote acquire_blocking(), tokio try_acquire() (tokio has \
             no blocking acquire), mutex-condvar: std Mutex<usize> + Condvar; 1-task: one task \
             on a current-thread runtime, acquire().await; the permit is dropped at once"
                .to_owned(),
            "2-threads/2-tasks: one permit, two threads (or two tasks on a 2-worker runtime) \
             each acquire, bump a shared counter, release, ops/2 times; both semaphores are \
             FIFO, the Mutex + Condvar one lets a releasing thread take the permit straight \
             back (unfair)"
                .to_owned(),
            "2-tasks-1-thread/turns: one permit, two tasks on a current-thread runtime, each \
             acquires, yields while holding it, releases, ops/2 times: every acquire queues \
             and every release hands the permit to the other task (deterministic)"
                .to_owned(),
        ],
        headline: Quantity::PerOp,
        per_op_title: "time per acquire + release (wall / pairs)",
        columns: vec![],
        cases,
    }
}

// ----- child side: task pools ----------------------------------------------

fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.enable_all().build().map_err(|e| e.to_string())
}

/// Tracks how many jobs are inside their body, and the most at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// One job: trivial, or a sleep counted in `flight`.
async fn job(i: u64, sleep: Option<(Duration, Arc<InFlight>)>) {
    match sleep {
        None => {
            black_box(i);
        }
        Some((d, flight)) => {
            let n = flight.now.fetch_add(1, Relaxed) + 1;
            flight.peak.fetch_max(n, Relaxed);
            tokio::time::sleep(d).await;
            flight.now.fetch_sub(1, Relaxed);
        }
    }
}

/// Child side of [`OVERHEAD`] and [`SLEEP`].
pub fn run_tasks(imp: Impl, p: &TasksParams) -> Result<Outcome, String> {
    let rt = runtime(p.workers)?;
    let flight = Arc::new(InFlight::default());
    let sleep = (p.sleep_ms > 0).then(|| (Duration::from_millis(p.sleep_ms), flight.clone()));
    let p2 = p.clone();
    let wall = rt.block_on(async move {
        tokio::spawn(async move { produce(imp, &p2, sleep).await })
            .await
            .map_err(|e| e.to_string())?
    })?;
    let mut outcome = Outcome::new(wall, Some(p.jobs));
    if p.sleep_ms > 0 {
        outcome = outcome.metric("peak_in_flight", flight.peak.load(Relaxed) as f64);
    }
    // Teardown is not measured (the child exits).
    std::mem::forget(rt);
    Ok(outcome)
}

async fn produce(
    imp: Impl,
    p: &TasksParams,
    sleep: Option<(Duration, Arc<InFlight>)>,
) -> Result<Duration, String> {
    let (n, cap) = (p.jobs, p.capacity);
    let start = Instant::now();
    match imp {
        Impl::Cenote => {
            let pool = cenote::tasks::Pool::new(cap).map_err(|e| e.to_string())?;
            for i in 0..n {
                let handle = pool
                    .spawn(job(i, sleep.clone()))
                    .await
                    .map_err(|e| e.to_string())?;
                drop(handle);
            }
            pool.wait_idle().await;
        }
        Impl::TokioSpawn => {
            let left = Arc::new(AtomicUsize::new(n as usize));
            let done = Arc::new(tokio::sync::Notify::new());
            for i in 0..n {
                let (left, done, sleep) = (left.clone(), done.clone(), sleep.clone());
                tokio::spawn(async move {
                    job(i, sleep).await;
                    if left.fetch_sub(1, Relaxed) == 1 {
                        done.notify_one();
                    }
                });
            }
            if n > 0 {
                done.notified().await;
            }
        }
        Impl::TokioSemaphore => {
            let sem = Arc::new(tokio::sync::Semaphore::new(cap));
            for i in 0..n {
                let permit = sem
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| e.to_string())?;
                let sleep = sleep.clone();
                tokio::spawn(async move {
                    job(i, sleep).await;
                    drop(permit);
                });
            }
            let all = u32::try_from(cap).map_err(|_| "cap too large for tokio".to_owned())?;
            drop(sem.acquire_many(all).await.map_err(|e| e.to_string())?);
        }
        Impl::BufferUnordered => {
            stream::iter(0..n)
                .map(|i| job(i, sleep.clone()))
                .buffer_unordered(cap)
                .for_each(|()| async {})
                .await;
        }
        Impl::JoinSet => {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..n {
                if set.len() >= cap {
                    set.join_next().await;
                }
                set.spawn(job(i, sleep.clone()));
            }
            while set.join_next().await.is_some() {}
        }
        other => return Err(format!("{} is not an async peer", other.name())),
    }
    Ok(start.elapsed())
}

// ----- child side: semaphores ------------------------------------------------

/// A counting semaphore made of a `Mutex` and a `Condvar`.
struct MutexSemaphore {
    permits: Mutex<usize>,
    freed: Condvar,
}

impl MutexSemaphore {
    fn new(n: usize) -> Self {
        MutexSemaphore {
            permits: Mutex::new(n),
            freed: Condvar::new(),
        }
    }
    fn acquire(&self) {
        let mut p = self.permits.lock().unwrap_or_else(PoisonError::into_inner);
        while *p == 0 {
            p = self.freed.wait(p).unwrap_or_else(PoisonError::into_inner);
        }
        *p -= 1;
    }
    fn release(&self) {
        *self.permits.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.freed.notify_one();
    }
}

/// Two tasks on a 2-worker runtime share the semaphore `$sem` (cenote's or
/// tokio's: the same `acquire().await` API) and each acquire, bump a shared
/// counter and release `$ops / 2` times.
macro_rules! contended_tasks {
    ($sem:expr, $ops:expr) => {{
        let sem = Arc::new($sem);
        let counter = Arc::new(AtomicUsize::new(0));
        let ops: u64 = $ops;
        two_tasks(move || {
            let (sem, counter) = (sem.clone(), counter.clone());
            async move {
                for _ in 0..ops / 2 {
                    let permit = sem.acquire().await.expect("open");
                    counter.fetch_add(1, Relaxed);
                    drop(permit);
                }
            }
        })?
    }};
}

/// Two tasks on a current-thread runtime share the one-permit semaphore
/// `$sem` and take turns: each holds the permit across a yield, so the
/// other always finds it taken and queues.
macro_rules! turns {
    ($sem:expr, $ops:expr) => {{
        let rt = current_thread()?;
        let sem = std::rc::Rc::new($sem);
        let ops: u64 = $ops;
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let start = Instant::now();
            let tasks: Vec<_> = (0..2)
                .map(|_| {
                    let sem = sem.clone();
                    tokio::task::spawn_local(async move {
                        for _ in 0..ops / 2 {
                            let permit = sem.acquire().await.expect("open");
                            tokio::task::yield_now().await;
                            drop(black_box(permit));
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(start.elapsed())
        })?
    }};
}

/// Child side of [`SEMAPHORE`].
pub fn run_semaphore(imp: Impl, p: &SemParams) -> Result<Outcome, String> {
    let ops = p.ops;
    let wall = match (p.mode, imp) {
        (SemMode::Thread, Impl::Cenote) => {
            let sem = cenote::limit::Semaphore::new(1);
            timed(|| {
                for _ in 0..ops {
                    drop(black_box(sem.acquire_blocking().expect("open")));
                }
            })
        }
        (SemMode::Thread, Impl::TokioSemaphore) => {
            let sem = tokio::sync::Semaphore::new(1);
            timed(|| {
                for _ in 0..ops {
                    drop(black_box(sem.try_acquire().expect("free")));
                }
            })
        }
        (SemMode::Thread, Impl::MutexCondvar) => {
            let sem = MutexSemaphore::new(1);
            timed(|| {
                for _ in 0..ops {
                    sem.acquire();
                    sem.release();
                }
            })
        }
        (SemMode::Task, Impl::Cenote) => {
            let rt = current_thread()?;
            let sem = cenote::limit::Semaphore::new(1);
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..ops {
                    drop(black_box(sem.acquire().await.expect("open")));
                }
                start.elapsed()
            })
        }
        (SemMode::Task, Impl::TokioSemaphore) => {
            let rt = current_thread()?;
            let sem = tokio::sync::Semaphore::new(1);
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..ops {
                    drop(black_box(sem.acquire().await.expect("open")));
                }
                start.elapsed()
            })
        }
        (SemMode::Threads2, Impl::Cenote) => {
            let sem = cenote::limit::Semaphore::new(1);
            let counter = AtomicUsize::new(0);
            two_threads(ops, || {
                let permit = sem.acquire_blocking().expect("open");
                counter.fetch_add(1, Relaxed);
                drop(permit);
            })
        }
        (SemMode::Threads2, Impl::MutexCondvar) => {
            let sem = MutexSemaphore::new(1);
            let counter = AtomicUsize::new(0);
            two_threads(ops, || {
                sem.acquire();
                counter.fetch_add(1, Relaxed);
                sem.release();
            })
        }
        (SemMode::Tasks2, Impl::Cenote) => {
            contended_tasks!(cenote::limit::Semaphore::new(1), ops)
        }
        (SemMode::Tasks2, Impl::TokioSemaphore) => {
            contended_tasks!(tokio::sync::Semaphore::new(1), ops)
        }
        (SemMode::Turns, Impl::Cenote) => turns!(cenote::limit::Semaphore::new(1), ops),
        (SemMode::Turns, Impl::TokioSemaphore) => turns!(tokio::sync::Semaphore::new(1), ops),
        (mode, other) => return Err(format!("{} does not run {mode:?}", other.name())),
    };
    Ok(Outcome::new(wall, Some(ops)))
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn current_thread() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())
}

/// Two threads each run `cycle` ops/2 times, released together.
fn two_threads(ops: u64, cycle: impl Fn() + Sync) -> Duration {
    let barrier = std::sync::Barrier::new(3);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..ops / 2 {
                    cycle();
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins both threads before returning.
        start
    })
    .elapsed()
}

/// Two tasks on a 2-worker runtime, each the future `make` returns.
fn two_tasks<F, Fut>(make: F) -> Result<Duration, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let rt = runtime(2)?;
    let wall = rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..2).map(|_| tokio::spawn(make())).collect();
        for t in tasks {
            t.await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(start.elapsed())
    })?;
    std::mem::forget(rt);
    Ok(wall)
}
