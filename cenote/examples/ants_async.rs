//! Seed 001 (ants: "100k jobs sleeping 10 ms through a pool of 1,000") with
//! futures: a [`cenote::tasks::Pool`] of 1,000 slots on a tokio runtime.
//!
//! In Go each job is a goroutine parked in `time.Sleep`; in Rust an I/O-bound
//! job is a future, and the pool bounds how many are in flight. The producer
//! waits for a slot before each spawn (back-pressure), a
//! [`cenote::limit::Monitor`] prints the pool's counts every 100 ms, and the
//! end shows the wall time against the floor (jobs / capacity waves of the
//! sleep) and the pool's stats. A few jobs panic on purpose: the panics are
//! counted and reported, and the pool carries on.
//!
//! Usage: `cargo run --release -p cenote --example ants_async -- [JOBS] [CAPACITY] [SLEEP_MS]`
//! (defaults: 100,000 jobs, capacity 1,000, 10 ms; about 1 s).
//!
//! The example exits non-zero if more than CAPACITY jobs ever ran at once or
//! a job ran a number of times other than once.

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cenote::limit::Monitor;
use cenote::tasks::Pool;

fn arg(n: usize, default: u64) -> Result<u64, Box<dyn Error>> {
    match std::env::args().nth(n) {
        Some(v) => Ok(v.parse()?),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn Error>> {
    let jobs = arg(1, 100_000)?;
    let capacity = usize::try_from(arg(2, 1_000)?)?;
    let sleep = Duration::from_millis(arg(3, 10)?);
    let pool = Pool::builder()
        .capacity(capacity)
        // The payload also reaches each job's handle; here only count them.
        .panic_handler(|_| {})
        .build()?;

    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let pool = pool.clone();
        Monitor::start(
            Duration::from_millis(100),
            move || (pool.running(), pool.waiting(), pool.stats().completed),
            |(running, waiting, done)| {
                println!(
                    "in flight {running:>6}   spawners waiting {waiting}   completed {done:>7}"
                )
            },
        )?
    };

    let start = Instant::now();
    for i in 0..jobs {
        let (running, peak, ran) = (running.clone(), peak.clone(), ran.clone());
        let handle = pool
            .spawn(async move {
                let now = running.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(now, SeqCst);
                tokio::time::sleep(sleep).await;
                running.fetch_sub(1, SeqCst);
                ran.fetch_add(1, SeqCst);
                if i % 25_000 == 7 {
                    panic!("job {i} fails on purpose");
                }
            })
            .await?;
        drop(handle); // detached: wait_idle below waits for it
    }
    pool.wait_idle().await;
    let wall = start.elapsed();
    monitor.stop();

    let stats = pool.stats();
    let waves = jobs.div_ceil(capacity as u64);
    println!(
        "{jobs} jobs of {sleep:?}, capacity {capacity}: {:.3} s (floor {:.3} s = {waves} waves)",
        wall.as_secs_f64(),
        (sleep * u32::try_from(waves)?).as_secs_f64()
    );
    println!(
        "most in flight at once: {} (capacity {capacity}); completed {}, panicked {}, spawns that waited {}",
        peak.load(SeqCst),
        stats.completed,
        stats.panicked,
        stats.waited
    );
    let ok = peak.load(SeqCst) <= capacity
        && ran.load(SeqCst) as u64 == jobs
        && stats.completed + stats.panicked == jobs;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the capacity was exceeded or a job was lost or run twice");
        ExitCode::FAILURE
    })
}
