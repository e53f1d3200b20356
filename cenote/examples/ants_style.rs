//! The ants tour, ported from seed 001 ("Pool goroutine", a walkthrough of
//! `github.com/panjf2000/ants`).
//!
//! The Go tests run 10 000 jobs, each a call to a slow API, through a pool of
//! 1 000 goroutines: once with `ants.NewPool` + `Submit(func)` and once with
//! `ants.NewPoolWithFunc` + `Invoke(arg)`, then print the elapsed time, the
//! running workers and the memory used. The text goes on to `Tune` and
//! `Reboot`. This example does the same with cenote:
//!
//! 1. [`Pool::submit`]: 10 000 closures on a pool of 1 000 threads;
//! 2. [`FnPool::invoke`]: the same 10 000 jobs, the function bound once and
//!    only the argument passed per call (nothing boxed per job);
//! 3. [`Pool::resize`]: down to 100 threads, then up to 2 000, with a burst of
//!    twice as many 50 ms jobs after each to show the new limit in force;
//! 4. [`Pool::close`]: a submit is refused with [`SubmitError::Closed`];
//!    [`Pool::reboot`] reopens the pool and the next submit runs.
//!
//! Each job sleeps 10 ms in place of the seed's API call, so with 1 000
//! threads a phase of 10 000 jobs takes about 10 rounds, ~0.1 s plus the cost
//! of starting the threads. What to look for in the output: both phases finish
//! all 10 000 jobs on exactly 1 000 threads (`threads started`), `max at once`
//! never exceeds the capacity in force (after `resize(2000)` it may stay below
//! 2 000: threads start on demand, only for jobs that find no idle thread),
//! and the peak RSS stays in the tens of MiB although up to 2 000 threads
//! were alive at once: each thread's stack is reserved, barely touched. (The
//! seed's "memory usage" is Go's `TotalAlloc`, bytes allocated over the run,
//! so the numbers do not compare directly.)
//!
//! Run with `cargo run -p cenote --release --example ants_style`.

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cenote::workers::{FnPool, Pool, SubmitError};

const POOL_SIZE: usize = 1_000;
const JOBS: usize = 10_000;
/// Stands in for the seed's `ApiWorker`, a call to a slow HTTP API.
const API_CALL: Duration = Duration::from_millis(10);
/// The jobs of the bursts after `resize`: long enough that the pool has time
/// to start every thread it is allowed before the first jobs finish.
const BURST_JOB: Duration = Duration::from_millis(50);

/// Counts finished jobs and the most jobs seen running at once.
#[derive(Default)]
struct Meter {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    done: AtomicUsize,
}

impl Meter {
    /// One job: the fake API call, measured.
    fn api_worker(&self, i: usize) {
        self.job(i, API_CALL);
    }

    /// A job that takes `d`.
    fn job(&self, i: usize, d: Duration) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        thread::sleep(d);
        std::hint::black_box(i);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
    }

    /// `(done, max_in_flight)`, resetting both for the next phase.
    fn take(&self) -> (usize, usize) {
        (
            self.done.swap(0, Ordering::SeqCst),
            self.max_in_flight.swap(0, Ordering::SeqCst),
        )
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let meter = Arc::new(Meter::default());
    println!("{JOBS} jobs of {API_CALL:?} each, pool of {POOL_SIZE}");
    println!("{}", memory_note());

    // 1. TestPoolWaitToGetWorker: ants.NewPool + Submit.
    let pool = Pool::new(POOL_SIZE)?;
    let start = Instant::now();
    for i in 0..JOBS {
        let meter = Arc::clone(&meter);
        pool.submit(move || meter.api_worker(i))?;
    }
    pool.wait_idle(); // the seed's wg.Wait()
    let elapsed = start.elapsed();
    let (done, max) = meter.take();
    let stats = pool.stats();
    println!(
        "\n[Pool::submit] {done} jobs in {:.3}s",
        elapsed.as_secs_f64()
    );
    println!(
        "  threads started {}, alive {} (idle {}), max at once {max}, completed {}",
        stats.threads_started,
        pool.running(),
        pool.idle(),
        stats.completed,
    );
    println!("  {}", memory_note());
    check(done == JOBS, "Pool::submit lost jobs")?;

    // 2. TestPoolWithFuncWaitToGet: ants.NewPoolWithFunc + Invoke.
    let fn_pool = {
        let meter = Arc::clone(&meter);
        FnPool::new(POOL_SIZE, move |i: usize| meter.api_worker(i))?
    };
    let start = Instant::now();
    for i in 0..JOBS {
        fn_pool.invoke(i)?;
    }
    fn_pool.wait_idle();
    let elapsed = start.elapsed();
    let (done, max) = meter.take();
    let stats = fn_pool.stats();
    println!(
        "\n[FnPool::invoke] {done} jobs in {:.3}s",
        elapsed.as_secs_f64()
    );
    println!(
        "  threads started {}, alive {} (idle {}), max at once {max}, completed {}",
        stats.threads_started,
        fn_pool.running(),
        fn_pool.idle(),
        stats.completed,
    );
    println!("  {}", memory_note());
    check(done == JOBS, "FnPool::invoke lost jobs")?;
    // The seed's `defer p.Release()`: close and wait for the threads to exit.
    fn_pool.shutdown_timeout(Duration::from_secs(5))?;
    println!(
        "  released: closed {}, threads alive {}",
        fn_pool.is_closed(),
        fn_pool.running()
    );

    // 3. pool.Tune(...), on the first pool whose 1 000 threads are parked.
    println!("\n[resize]");
    for new_capacity in [100, 2_000] {
        pool.resize(new_capacity)?;
        println!(
            "  resize({new_capacity}): capacity {}, target {}, threads alive {}",
            pool.capacity(),
            pool.target_capacity(),
            pool.running(),
        );
        let burst = 2 * new_capacity;
        let start = Instant::now();
        for i in 0..burst {
            let meter = Arc::clone(&meter);
            pool.submit(move || meter.job(i, BURST_JOB))?;
        }
        pool.wait_idle();
        let (done, max) = meter.take();
        println!(
            "    burst of {burst} jobs in {:.3}s: max at once {max}; now capacity {}, threads alive {}",
            start.elapsed().as_secs_f64(),
            pool.capacity(),
            pool.running(),
        );
        check(done == burst, "a burst lost jobs")?;
        check(
            max <= new_capacity,
            "more jobs ran at once than the capacity",
        )?;
    }
    println!("  {}", memory_note());

    // 4. Close, then pool.Reboot().
    println!("\n[close / reboot]");
    pool.close();
    match pool.submit(|| {}) {
        Err(e @ SubmitError::Closed) => {
            println!(
                "  after close(): is_closed {}, submit -> {e:?}: {e}",
                pool.is_closed()
            );
        }
        other => return Err(format!("submit on a closed pool returned {other:?}").into()),
    }
    pool.reboot();
    let answer = pool.spawn(|| 6 * 7)?.join()?;
    println!(
        "  after reboot(): is_closed {}, spawn(|| 6 * 7) -> {answer}",
        pool.is_closed()
    );

    let stats = pool.stats();
    println!(
        "\nfirst pool, lifetime: completed {}, threads started {}, retired {}, panicked {}, rejected {}",
        stats.completed, stats.threads_started, stats.threads_retired, stats.panicked, stats.rejected,
    );
    Ok(())
}

fn check(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(what.into())
    }
}

/// Peak and current resident set size from `/proc/self/status` (Linux only).
fn memory_note() -> String {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return "memory: /proc/self/status not available on this platform".to_owned();
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    match (field("VmHWM:"), field("VmRSS:"), field("Threads:")) {
        (Some(peak), Some(now), Some(threads)) => {
            format!("memory: peak RSS {peak}, current RSS {now}, process threads {threads}")
        }
        _ => "memory: VmHWM/VmRSS not found in /proc/self/status".to_owned(),
    }
}
