//! Experiments: what is measured, how it is laid out, and the code that runs
//! inside a child process to measure it.
//!
//! The parent builds [`Experiment`]s (a list of [`Case`]s each) from the
//! command line; the harness runs every case in a child, which lands in
//! [`run_case`].

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::harness::{ChildSpec, Outcome};
use crate::peers::{Impl, PoolCfg, WorkerPeer};
use crate::{alloc, with_peer};

pub mod databases;
pub mod fleet;
pub mod headline;
pub mod http;
pub mod objects;
pub mod resources;
pub mod seeds;
pub mod tasks;
pub mod workers;

/// Every experiment (what `cenote-bench all` runs), at smoke or default
/// size.
pub fn full_plan(smoke: bool, seed_opts: &seeds::SeedOpts) -> Vec<Experiment> {
    let mut plan = workers::plan(smoke);
    plan.extend(seeds_plan(smoke, seed_opts));
    plan.extend(objects::plan(smoke));
    plan.extend(tasks::plan(smoke));
    plan.extend(resources::plan(smoke));
    plan.extend(databases::plan(smoke));
    plan.extend(http::plan(smoke));
    plan.extend(fleet::plan(smoke));
    plan
}

/// The seed experiments: seed 002, seed 001 with threads and with futures.
pub fn seeds_plan(smoke: bool, opts: &seeds::SeedOpts) -> Vec<Experiment> {
    let mut plan = seeds::plan(smoke, opts);
    plan.push(tasks::seed001_async(smoke, opts.sleep_ms));
    plan
}

/// One experiment: a table of (scenario, impl) rows, and its charts.
pub struct Experiment {
    /// Stable name, e.g. `workers/throughput`; also the JSON `experiment`.
    pub name: &'static str,
    /// One line saying what is measured.
    pub title: String,
    /// How it is measured, printed under the title.
    pub notes: Vec<String>,
    /// The quantity that the ratio column compares and the first chart shows.
    pub headline: Quantity,
    /// Title of the chart of [`Quantity::PerOp`], saying what an op is.
    pub per_op_title: &'static str,
    /// Measured metrics shown as table columns.
    pub columns: Vec<Column>,
    /// Rows to measure, in display order.
    pub cases: Vec<Case>,
}

/// A table column (and, with `chart`, a chart) of the metric `key`.
pub(crate) fn column(key: &'static str, header: &'static str, unit: Unit, chart: bool) -> Column {
    Column {
        key,
        header,
        unit,
        chart,
    }
}

/// One row to measure: a scenario run by one implementation.
#[derive(Clone, Debug)]
pub struct Case {
    pub scenario: String,
    pub imp: Impl,
    /// Experiment-specific parameters, passed to the child as they are.
    pub params: Value,
}

impl Case {
    fn new(scenario: &str, imp: Impl, params: &impl Serialize) -> Self {
        Case {
            scenario: scenario.to_owned(),
            imp,
            params: serde_json::to_value(params).expect("parameters serialize"),
        }
    }
}

/// A measured quantity of a row.
#[derive(Clone, Copy, Debug)]
pub enum Quantity {
    /// Wall time divided by operations.
    PerOp,
    /// A metric the child reported.
    Metric(Column),
}

/// A metric shown as a table column.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Key in the row's `metrics`.
    pub key: &'static str,
    /// Column header and chart title.
    pub header: &'static str,
    /// How values are printed.
    pub unit: Unit,
    /// Whether the metric also gets a chart of its own.
    pub chart: bool,
}

/// How a metric's values are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Microseconds.
    Micros,
    /// Milliseconds.
    Millis,
    /// Percent (of one core).
    Percent,
    /// A plain number with this many decimals.
    Plain(usize),
}

/// [`Experiment::per_op_title`] of the experiments that run tasks.
pub const PER_TASK: &str = "time per task (wall / tasks)";

/// Parameters of a "run N tasks" measurement, shared by the throughput,
/// fnpool and seed experiments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TasksParams {
    /// Tasks submitted by the one producer.
    pub tasks: u64,
    /// Pool size; `None` for thread-per-task.
    pub size: Option<usize>,
    /// Every task sleeps this long (the I/O stand-in); 0 = trivial task.
    pub job_sleep_us: u64,
    /// Stack size of every thread, KiB; `None` = platform default.
    pub stack_kib: Option<usize>,
    /// Whether allocations in the measured region are counted.
    pub count_allocs: bool,
}

/// Runs the measurement `spec` describes, in this (child) process.
pub fn run_case(spec: &ChildSpec) -> Result<Outcome, String> {
    let imp = Impl::from_name(&spec.imp).ok_or_else(|| format!("unknown impl {}", spec.imp))?;
    match spec.experiment.as_str() {
        workers::THROUGHPUT | workers::FNPOOL | seeds::SEED001 | seeds::SEED002 => {
            run_tasks(imp, &params(spec)?)
        }
        workers::IDLE => workers::run_idle(imp, &params(spec)?),
        workers::WAKE => workers::run_wake(imp, &params(spec)?),
        objects::GETPUT => objects::run_getput(imp, &params(spec)?),
        tasks::OVERHEAD | tasks::SLEEP | tasks::SEED001_ASYNC => {
            tasks::run_tasks(imp, &params(spec)?)
        }
        tasks::SEMAPHORE => tasks::run_semaphore(imp, &params(spec)?),
        resources::UNCONTENDED | resources::CONTENDED => resources::run(imp, &params(spec)?),
        databases::POSTGRES | databases::REDIS => databases::run(imp, &params(spec)?),
        databases::faults::FAULTS => databases::faults::run(imp, &params(spec)?),
        http::GET | http::RACE => http::run(&spec.experiment, imp, &params(spec)?),
        fleet::DIRECT => fleet::run(imp, &params(spec)?),
        fleet::faults::FAULTS => fleet::faults::run(imp, &params(spec)?),
        other => Err(format!("unknown experiment {other}")),
    }
}

fn params<T: DeserializeOwned>(spec: &ChildSpec) -> Result<T, String> {
    serde_json::from_value(spec.params.clone()).map_err(|e| format!("bad parameters: {e}"))
}

/// Runs `p.tasks` tasks on `imp`, from this thread as the only producer.
pub fn run_tasks(imp: Impl, p: &TasksParams) -> Result<Outcome, String> {
    let stack_size = p.stack_kib.map(|kib| kib * 1024);
    if let Some(bytes) = stack_size {
        // Threads of APIs without a stack-size option (rusty_pool) get the
        // same stack through std's default. No thread has been spawned yet,
        // so nothing reads the environment concurrently.
        std::env::set_var("RUST_MIN_STACK", bytes.to_string());
    }
    let cfg = PoolCfg {
        size: p.size.unwrap_or(0),
        stack_size,
        prestart: false,
        keep_idle: false,
    };
    let sleep = (p.job_sleep_us > 0).then(|| Duration::from_micros(p.job_sleep_us));
    if imp == Impl::CenoteFn {
        return tasks_on_fn_pool(&cfg, p.tasks, sleep, p.count_allocs);
    }
    with_peer!(imp, P => tasks_on::<P>(&cfg, p.tasks, sleep, p.count_allocs))
}

/// The measured region of [`run_tasks`]: build the pool, submit every task,
/// wait for the last one. Teardown is left out (the child exits instead).
fn tasks_on<P: WorkerPeer>(
    cfg: &PoolCfg,
    tasks: u64,
    sleep: Option<Duration>,
    count_allocs: bool,
) -> Result<Outcome, String> {
    DONE.arm(tasks);
    if count_allocs {
        alloc::start();
    }
    let start = Instant::now();
    let pool = P::build(cfg)?;
    let built = start.elapsed();
    match sleep {
        None => {
            for i in 0..tasks {
                pool.execute(move || trivial_task(i))?;
            }
        }
        Some(nap) => {
            for i in 0..tasks {
                pool.execute(move || sleep_task(i, nap))?;
            }
        }
    }
    let submitted = start.elapsed();
    DONE.wait();
    let wall = start.elapsed();
    let allocs = count_allocs.then(alloc::stop);
    std::mem::forget(pool);
    Ok(tasks_outcome(wall, built, submitted, tasks, allocs))
}

/// [`tasks_on`] for cenote's `FnPool`, which takes an argument, not a job.
fn tasks_on_fn_pool(
    cfg: &PoolCfg,
    tasks: u64,
    sleep: Option<Duration>,
    count_allocs: bool,
) -> Result<Outcome, String> {
    DONE.arm(tasks);
    if count_allocs {
        alloc::start();
    }
    let start = Instant::now();
    let pool = match sleep {
        None => crate::peers::cenote::fn_pool(cfg.size, trivial_task)?,
        Some(nap) => crate::peers::cenote::fn_pool(cfg.size, move |i| sleep_task(i, nap))?,
    };
    let built = start.elapsed();
    for i in 0..tasks {
        crate::peers::cenote::invoke(&pool, i)?;
    }
    let submitted = start.elapsed();
    DONE.wait();
    let wall = start.elapsed();
    let allocs = count_allocs.then(alloc::stop);
    std::mem::forget(pool);
    Ok(tasks_outcome(wall, built, submitted, tasks, allocs))
}

fn tasks_outcome(
    wall: Duration,
    built: Duration,
    submitted: Duration,
    tasks: u64,
    allocs: Option<u64>,
) -> Outcome {
    let mut outcome = Outcome::new(wall, Some(tasks))
        .metric("build_ms", built.as_secs_f64() * 1e3)
        .metric("submit_ms", submitted.as_secs_f64() * 1e3);
    if let Some(allocs) = allocs {
        outcome = outcome.metric("allocs_per_op", allocs as f64 / tasks.max(1) as f64);
    }
    outcome
}

/// The trivial task every implementation runs: look at the index, count
/// down the completion latch.
#[inline]
pub fn trivial_task(i: u64) {
    black_box(i);
    DONE.count_down();
}

/// The I/O stand-in: sleep, then as [`trivial_task`].
pub fn sleep_task(i: u64, nap: Duration) {
    thread::sleep(nap);
    trivial_task(i);
}

/// Completion latch shared by all tasks of a measurement: the task that
/// brings the count to zero wakes the waiting producer. All implementations
/// are waited for in exactly this way.
pub static DONE: Latch = Latch::new();

/// A count-down latch: one atomic on the hot path, a mutex and condition
/// variable only for the final wake-up.
pub struct Latch {
    remaining: AtomicU64,
    fired: Mutex<bool>,
    cond: Condvar,
}

impl Latch {
    const fn new() -> Self {
        Latch {
            remaining: AtomicU64::new(0),
            fired: Mutex::new(false),
            cond: Condvar::new(),
        }
    }

    /// Expects `n` count-downs. Only call while no count-down is pending.
    pub fn arm(&self, n: u64) {
        *self.fired.lock().unwrap_or_else(PoisonError::into_inner) = n == 0;
        self.remaining.store(n, Ordering::SeqCst);
    }

    /// Counts one down; the last one wakes the waiter.
    #[inline]
    pub fn count_down(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut fired = self.fired.lock().unwrap_or_else(PoisonError::into_inner);
            *fired = true;
            self.cond.notify_all();
        }
    }

    /// Blocks until the count reaches zero.
    pub fn wait(&self) {
        let mut fired = self.fired.lock().unwrap_or_else(PoisonError::into_inner);
        while !*fired {
            fired = self
                .cond
                .wait(fired)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A count in short form: `2k`, `100k`, `1M`, `10M`, `1500`.
pub fn count_label(n: u64) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n % 1_000 == 0 {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_labels() {
        assert_eq!(count_label(2_000), "2k");
        assert_eq!(count_label(100_000), "100k");
        assert_eq!(count_label(1_000_000), "1M");
        assert_eq!(count_label(1_500), "1500");
    }

    #[test]
    fn latch_fires_on_the_last_count_down() {
        DONE.arm(3);
        let workers: Vec<_> = (0..3)
            .map(|i| thread::spawn(move || trivial_task(i)))
            .collect();
        DONE.wait();
        for w in workers {
            w.join().unwrap();
        }
    }
}
