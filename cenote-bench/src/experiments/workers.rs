//! Worker-pool experiments: throughput, `FnPool`, idle CPU, wake latency.

use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{count_label, Case, Column, Experiment, Quantity, TasksParams, Unit, DONE};
use crate::harness::{process_cpu_time, process_threads, Outcome};
use crate::peers::{Impl, PoolCfg, WorkerPeer};
use crate::with_peer;

pub const THROUGHPUT: &str = "workers/throughput";
pub const FNPOOL: &str = "workers/fnpool";
pub const IDLE: &str = "workers/idle";
pub const WAKE: &str = "workers/wake";

const BUILD_MS: Column = Column {
    key: "build_ms",
    header: "build",
    unit: Unit::Millis,
    chart: false,
};

/// Note shared by the task experiments.
pub const TASKS_REGION: &str =
    "measured region: build the pool, submit every task from one producer \
                            thread, wait until the last task has run (teardown excluded); \
                            build = the part spent building";

/// All worker experiments, at smoke or default size.
pub fn plan(smoke: bool) -> Vec<Experiment> {
    vec![throughput(smoke), fnpool(smoke), idle(smoke), wake(smoke)]
}

/// Experiment 1: trivial tasks from one producer, by pool size.
fn throughput(smoke: bool) -> Experiment {
    // (tasks, pool size, with a thread-per-task row)
    let scenarios: &[(u64, usize, bool)] = if smoke {
        &[(2_000, 2, false), (2_000, 8, false), (2_000, 32, true)]
    } else {
        &[
            (1_000_000, 2, false),
            (1_000_000, 64, false),
            (100_000, 1000, true),
        ]
    };
    let mut cases = Vec::new();
    for &(tasks, size, with_threads) in scenarios {
        let scenario = format!("trivial-{}/size={size}", count_label(tasks));
        let pool = TasksParams {
            tasks,
            size: Some(size),
            job_sleep_us: 0,
            stack_kib: None,
            count_allocs: false,
        };
        for imp in Impl::POOLS {
            cases.push(Case::new(&scenario, imp, &pool));
        }
        if with_threads {
            let no_pool = TasksParams { size: None, ..pool };
            cases.push(Case::new(&scenario, Impl::ThreadPerTask, &no_pool));
        }
    }
    Experiment {
        name: THROUGHPUT,
        title: "trivial tasks from one producer, by pool size".to_owned(),
        notes: vec![
            TASKS_REGION.to_owned(),
            "task: black_box(index) + count down a shared completion latch".to_owned(),
        ],
        headline: Quantity::PerOp,
        per_op_title: super::PER_TASK,
        columns: vec![BUILD_MS],
        cases,
    }
}

/// Experiment 2: `FnPool::invoke` against `Pool::submit` and a channel pool.
fn fnpool(smoke: bool) -> Experiment {
    let tasks = if smoke { 2_000 } else { 1_000_000 };
    let size = 2;
    let scenario = format!("trivial-{}/size={size}", count_label(tasks));
    let params = TasksParams {
        tasks,
        size: Some(size),
        job_sleep_us: 0,
        stack_kib: None,
        count_allocs: true,
    };
    let cases = [Impl::Cenote, Impl::CenoteFn, Impl::Crossbeam]
        .into_iter()
        .map(|imp| Case::new(&scenario, imp, &params))
        .collect();
    Experiment {
        name: FNPOOL,
        title: "a pool bound to one function (FnPool::invoke) against submitting closures"
            .to_owned(),
        notes: vec![
            TASKS_REGION.to_owned(),
            "allocs/op: heap allocations (alloc + realloc, all threads) in the measured region \
             / tasks, counted by the benchmark's global allocator"
                .to_owned(),
        ],
        headline: Quantity::PerOp,
        per_op_title: super::PER_TASK,
        columns: vec![
            Column {
                key: "allocs_per_op",
                header: "allocs/op",
                unit: Unit::Plain(3),
                chart: true,
            },
            BUILD_MS,
        ],
        cases,
    }
}

/// Parameters of the idle-CPU measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdleParams {
    /// Threads to start and then leave idle.
    pub size: usize,
    /// Length of the idle window.
    pub window_ms: u64,
}

/// Experiment 3a: CPU burnt by a pool whose threads all exist and are idle.
fn idle(smoke: bool) -> Experiment {
    let params = if smoke {
        IdleParams {
            size: 16,
            window_ms: 200,
        }
    } else {
        IdleParams {
            size: 64,
            window_ms: 2_000,
        }
    };
    let scenario = format!("idle-{}ms/size={}", params.window_ms, params.size);
    let cases = Impl::POOLS
        .into_iter()
        .map(|imp| Case::new(&scenario, imp, &params))
        .collect();
    let cpu = Column {
        key: "idle_cpu_pct",
        header: "idle CPU",
        unit: Unit::Percent,
        chart: false,
    };
    Experiment {
        name: IDLE,
        title: format!(
            "CPU used by a pool of {} started, idle threads",
            params.size
        ),
        notes: vec![
            "all threads started first (cenote: builder prestart + idle_timeout(None); peers: \
             one job per thread meeting at a barrier), then the process sleeps for the window"
                .to_owned(),
            "idle CPU = process CPU time (user + sys) in the window / window, in % of one core; \
             threads = OS threads of the process in the window, main thread included"
                .to_owned(),
        ],
        headline: Quantity::Metric(cpu),
        per_op_title: super::PER_TASK,
        columns: vec![
            cpu,
            Column {
                key: "threads",
                header: "threads",
                unit: Unit::Plain(0),
                chart: false,
            },
        ],
        cases,
    }
}

/// Child side of experiment 3a.
pub fn run_idle(imp: Impl, p: &IdleParams) -> Result<Outcome, String> {
    with_peer!(imp, P => idle_on::<P>(p))
}

fn idle_on<P: WorkerPeer>(p: &IdleParams) -> Result<Outcome, String> {
    let pool = P::build(&PoolCfg {
        size: p.size,
        stack_size: None,
        prestart: true,
        keep_idle: true,
    })?;
    pool.start_all(p.size)?;
    let threads = process_threads();
    let cpu_before = process_cpu_time();
    let start = Instant::now();
    thread::sleep(Duration::from_millis(p.window_ms));
    let window = start.elapsed();
    let cpu = process_cpu_time().saturating_sub(cpu_before);
    std::mem::forget(pool);
    let mut outcome = Outcome::new(window, None).metric(
        "idle_cpu_pct",
        100.0 * cpu.as_secs_f64() / window.as_secs_f64(),
    );
    if let Some(threads) = threads {
        outcome = outcome.metric("threads", threads as f64);
    }
    Ok(outcome)
}

/// Parameters of the wake-latency measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WakeParams {
    /// Pool size.
    pub size: usize,
    /// Latency samples taken.
    pub samples: u32,
    /// Pause before each sample, so that the workers park.
    pub gap_ms: u64,
}

/// Experiment 3b: how long a task submitted to an idle pool waits to start.
fn wake(smoke: bool) -> Experiment {
    let params = if smoke {
        WakeParams {
            size: 16,
            samples: 20,
            gap_ms: 5,
        }
    } else {
        WakeParams {
            size: 64,
            samples: 200,
            gap_ms: 5,
        }
    };
    let scenario = format!("wake-{}/size={}", params.samples, params.size);
    let cases = Impl::POOLS
        .into_iter()
        .chain([Impl::ThreadPerTask])
        .map(|imp| Case::new(&scenario, imp, &params))
        .collect();
    let median = Column {
        key: "wake_median_us",
        header: "wake median",
        unit: Unit::Micros,
        chart: false,
    };
    Experiment {
        name: WAKE,
        title: "wake latency of an idle pool: submit to task start".to_owned(),
        notes: vec![format!(
            "pool of {} (default settings) with all threads started by one job per thread \
             meeting at a barrier, then {} samples: sleep {} ms \
             (workers park), take the time, submit a task that takes the time again; \
             thread-per-task: the start latency of a fresh thread; wall = whole sample loop",
            params.size, params.samples, params.gap_ms
        )],
        headline: Quantity::Metric(median),
        per_op_title: super::PER_TASK,
        columns: vec![
            median,
            Column {
                key: "wake_p99_us",
                header: "wake p99",
                unit: Unit::Micros,
                chart: true,
            },
        ],
        cases,
    }
}

/// Child side of experiment 3b.
pub fn run_wake(imp: Impl, p: &WakeParams) -> Result<Outcome, String> {
    with_peer!(imp, P => wake_on::<P>(p))
}

/// When the latest wake-up task started.
static STARTED_AT: Mutex<Option<Instant>> = Mutex::new(None);

fn wake_on<P: WorkerPeer>(p: &WakeParams) -> Result<Outcome, String> {
    let pool = P::build(&PoolCfg {
        size: p.size,
        stack_size: None,
        prestart: false,
        keep_idle: false,
    })?;
    pool.start_all(p.size)?;
    let mut latencies = Vec::with_capacity(p.samples as usize);
    let start = Instant::now();
    for _ in 0..p.samples {
        thread::sleep(Duration::from_millis(p.gap_ms));
        DONE.arm(1);
        let submitted = Instant::now();
        pool.execute(|| {
            let now = Instant::now();
            *STARTED_AT.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
            DONE.count_down();
        })?;
        DONE.wait();
        let started = STARTED_AT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or("wake-up task left no time")?;
        latencies.push(started.saturating_duration_since(submitted));
    }
    let wall = start.elapsed();
    std::mem::forget(pool);
    latencies.sort_unstable();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    Ok(Outcome::new(wall, None)
        .metric("wake_median_us", micros(nearest_rank(&latencies, 0.5)))
        .metric("wake_p99_us", micros(nearest_rank(&latencies, 0.99))))
}

/// The `q` quantile of sorted `values` (zero if empty) by the nearest-rank method.
fn nearest_rank(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}
