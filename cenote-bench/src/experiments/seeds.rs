//! Seed experiments: the measurements that the pools cenote is modelled on
//! published, redone side by side.
//!
//! * seed002 (bytedance gopool's README): 1M and 10M small tasks, no pool
//!   versus pool, time and memory.
//! * seed001 (ants' test): 100k jobs that each sleep, pool of 1000, 10000 or
//!   unbounded, time and memory.

use super::{count_label, Case, Column, Experiment, Quantity, TasksParams, Unit};
use crate::peers::Impl;

pub const SEED001: &str = "seeds/seed001";
pub const SEED002: &str = "seeds/seed002";

/// The largest task count at which thread-per-task is run in seed002 unless
/// `--full` asks for the whole table (10M threads take about 9 minutes).
const THREAD_PER_TASK_MAX: u64 = 1_000_000;

/// Options of the seed experiments.
#[derive(Clone, Debug)]
pub struct SeedOpts {
    /// Also run seed002 at 10M tasks.
    pub full: bool,
    /// seed002: every small task sleeps this long (0 = trivial task).
    pub small_sleep_us: u64,
    /// seed002: pool size of every pool.
    pub pool_size: usize,
    /// seed001: every job sleeps this long.
    pub sleep_ms: u64,
    /// seed001: stack size of every thread, KiB (0 = platform default).
    pub stack_kib: usize,
}

impl SeedOpts {
    /// The options of a run that sets none: gopool's pool of 100 (the size
    /// in the seed's own example, `SetGopool(100, ...)`), trivial small
    /// tasks, jobs sleeping 10 ms on 64 KiB stacks.
    pub const DEFAULT: SeedOpts = SeedOpts {
        full: false,
        small_sleep_us: 0,
        pool_size: 100,
        sleep_ms: 10,
        stack_kib: 64,
    };
}

/// All seed experiments, at smoke or default size.
pub fn plan(smoke: bool, opts: &SeedOpts) -> Vec<Experiment> {
    vec![seed002(smoke, opts), seed001(smoke, opts)]
}

const BUILD_MS: Column = Column {
    key: "build_ms",
    header: "build",
    unit: Unit::Millis,
    chart: false,
};

fn seed002(smoke: bool, opts: &SeedOpts) -> Experiment {
    let (counts, size): (Vec<u64>, usize) = if smoke {
        (vec![2_000], opts.pool_size.min(16))
    } else if opts.full {
        (vec![1_000_000, 10_000_000], opts.pool_size)
    } else {
        (vec![1_000_000], opts.pool_size)
    };
    let job = if opts.small_sleep_us > 0 {
        format!("+sleep{}us", opts.small_sleep_us)
    } else {
        String::new()
    };
    let mut cases = Vec::new();
    for &tasks in &counts {
        let scenario = format!("small-{}{job}/pool={size}", count_label(tasks));
        let pool = TasksParams {
            tasks,
            size: Some(size),
            job_sleep_us: opts.small_sleep_us,
            stack_kib: None,
            count_allocs: false,
        };
        cases.push(Case::new(&scenario, Impl::Cenote, &pool));
        if tasks <= THREAD_PER_TASK_MAX || opts.full {
            let no_pool = TasksParams {
                size: None,
                ..pool.clone()
            };
            cases.push(Case::new(&scenario, Impl::ThreadPerTask, &no_pool));
        }
        for imp in Impl::POOLS.into_iter().filter(|&i| i != Impl::Cenote) {
            cases.push(Case::new(&scenario, imp, &pool));
        }
    }
    let mut notes = vec![
        format!(
            "gopool's test: small tasks, no pool (a thread per task) versus pools of {size} threads"
        ),
        super::workers::TASKS_REGION.to_owned(),
    ];
    if !opts.full && counts.iter().any(|&n| n > THREAD_PER_TASK_MAX) {
        notes.push(format!(
            "thread-per-task runs only up to {} tasks",
            count_label(THREAD_PER_TASK_MAX)
        ));
    }
    Experiment {
        name: SEED002,
        title: "small tasks: no pool versus pool, time and memory".to_owned(),
        notes,
        headline: Quantity::PerOp,
        per_op_title: super::PER_TASK,
        columns: vec![BUILD_MS],
        cases,
    }
}

fn seed001(smoke: bool, opts: &SeedOpts) -> Experiment {
    let (jobs, sizes, sleep_ms): (u64, [usize; 2], u64) = if smoke {
        (2_000, [32, 256], opts.sleep_ms.min(1))
    } else {
        (100_000, [1_000, 10_000], opts.sleep_ms)
    };
    let stack_kib = (opts.stack_kib > 0).then_some(opts.stack_kib);
    let job = format!("{}-sleep{sleep_ms}ms", count_label(jobs));
    let params = |size: Option<usize>| TasksParams {
        tasks: jobs,
        size,
        job_sleep_us: sleep_ms * 1_000,
        stack_kib,
        count_allocs: false,
    };
    let mut cases = Vec::new();
    for size in sizes {
        let scenario = format!("{job}/pool={size}");
        for imp in Impl::POOLS {
            cases.push(Case::new(&scenario, imp, &params(Some(size))));
        }
    }
    // Unbounded: as many threads as jobs, where an implementation can be
    // sized that high; the OS may refuse (e.g. vm.max_map_count), which makes
    // a failed row.
    let scenario = format!("{job}/unbounded");
    cases.push(Case::new(
        &scenario,
        Impl::Cenote,
        &params(Some(jobs as usize)),
    ));
    cases.push(Case::new(&scenario, Impl::ThreadPerTask, &params(None)));
    for imp in Impl::POOLS.into_iter().filter(|&i| i != Impl::Cenote) {
        cases.push(Case::new(&scenario, imp, &params(Some(jobs as usize))));
    }
    let stack = match stack_kib {
        Some(kib) => format!(
            "every thread of every impl has a {kib} KiB stack (API option where there is one, \
             RUST_MIN_STACK for rusty_pool, which has none)"
        ),
        None => "threads have the platform's default stack size".to_owned(),
    };
    Experiment {
        name: SEED001,
        title: format!(
            "{} jobs sleeping {sleep_ms} ms: pool of {} / {} / unbounded, time and memory",
            count_label(jobs),
            sizes[0],
            sizes[1]
        ),
        notes: vec![
            "ants' test; unbounded = capacity of one thread per job (pools that start every \
             thread up front try to start them all)"
                .to_owned(),
            super::workers::TASKS_REGION.to_owned(),
            stack,
        ],
        headline: Quantity::PerOp,
        per_op_title: super::PER_TASK,
        columns: vec![BUILD_MS],
        cases,
    }
}
