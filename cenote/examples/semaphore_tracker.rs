//! A counting semaphore with a tracker, ported from seed 000 ("Add threadpool
//! to save on thread creation time").
//!
//! The Go original limits concurrency with a buffered channel used as a
//! counting semaphore (`sem <- 1` acquires, `<-sem` releases), starts one
//! goroutine per job, and runs a ticker goroutine that logs the number of
//! running goroutines every second.
//!
//! Here the limit is a [`cenote::limit::Semaphore`] of N permits: the main
//! loop acquires an owned permit before each job (`sem <- 1`, blocking
//! while N jobs run) and moves it into the job, whose end drops it (`<-sem`).
//! Jobs run on a cenote worker pool, so threads are reused from job to job
//! instead of one goroutine being created per job. The seed's ticker is a
//! [`cenote::limit::Monitor`] that samples the semaphore and the tracker.
//!
//! Usage: `cargo run -p cenote --example semaphore_tracker -- [N] [JOBS] [SLEEP_MS]`
//! (defaults: 3 jobs at once, 100 jobs, 125 ms each, about 4-5 s in total).
//!
//! What to look for in the output:
//! - one tracker line per second; `running jobs` (our own atomic counter)
//!   and the semaphore's `in use` never exceed N, and `waiting` is 1 while
//!   the main thread is blocked acquiring;
//! - the final line reports the highest number of jobs seen running at once,
//!   which must be N (or less); the example exits non-zero if it is above N.

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cenote::limit::{Monitor, Semaphore};
use cenote::workers::Pool;

/// How often the tracker reports, as in the seed (`time.NewTicker(1 * time.Second)`).
const TICK: Duration = Duration::from_secs(1);

/// The command line: `[N] [JOBS] [SLEEP_MS]`.
struct Args {
    limit: usize,
    jobs: usize,
    sleep: Duration,
}

impl Args {
    fn parse() -> Result<Args, Box<dyn Error>> {
        let mut args = std::env::args().skip(1);
        let limit = parse_arg(args.next(), "N (jobs at once)", 3)?;
        let jobs = parse_arg(args.next(), "JOBS", 100)?;
        let sleep_ms = parse_arg(args.next(), "SLEEP_MS", 125)?;
        if limit == 0 {
            return Err("N (jobs at once) must be at least 1".into());
        }
        Ok(Args {
            limit,
            jobs,
            sleep: Duration::from_millis(sleep_ms as u64),
        })
    }
}

fn parse_arg(arg: Option<String>, name: &str, default: usize) -> Result<usize, Box<dyn Error>> {
    match arg {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|e| format!("{name}: cannot parse {s:?} as a count: {e}").into()),
    }
}

/// The seed's `Add()`/`Done()` pair, plus the highest value ever seen.
#[derive(Default)]
struct Tracker {
    running: AtomicUsize,
    max_running: AtomicUsize,
    finished: AtomicUsize,
}

impl Tracker {
    fn add(&self) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
    }

    fn done(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, Box<dyn Error>> {
    let Args { limit, jobs, sleep } = Args::parse()?;
    println!("{jobs} jobs of {sleep:?} each, at most {limit} at once");

    // The seed's `sem = make(chan int, MAX_GOROUTINES)`.
    let sem = Arc::new(Semaphore::new(limit));
    // Threads to run the jobs; the semaphore, not the pool, sets the limit.
    let pool = Pool::builder().capacity(limit).build()?;
    let tracker = Arc::new(Tracker::default());
    let start = Instant::now();

    // The seed's runRoutineTracker: one report per tick until stopped.
    let monitor = {
        let (sem, tracker) = (Arc::clone(&sem), Arc::clone(&tracker));
        Monitor::start(
            TICK,
            move || {
                (
                    tracker.running.load(Ordering::SeqCst),
                    sem.in_use(),
                    sem.available(),
                    sem.waiting(),
                    tracker.finished.load(Ordering::SeqCst),
                )
            },
            move |(running, in_use, available, waiting, finished)| {
                println!(
                    "[{:>4.1}s] running jobs: {running} | permits in use: {in_use} available: {available} waiting: {waiting} | finished: {finished}",
                    start.elapsed().as_secs_f64(),
                );
            },
        )?
    };

    for i in 1..=jobs {
        // Blocks while `limit` jobs hold permits: the acquire (`sem <- 1`).
        let permit = Arc::clone(&sem).acquire_owned_blocking()?;
        let tracker = Arc::clone(&tracker);
        pool.submit(move || {
            tracker.add();
            thread::sleep(sleep); // "Processing: i"
            std::hint::black_box(i);
            tracker.done();
            drop(permit); // the release (`<-sem`)
        })?;
    }

    // The seed's wg.Wait().
    pool.wait_idle();
    let elapsed = start.elapsed();
    monitor.stop();

    let finished = tracker.finished.load(Ordering::SeqCst);
    let max_running = tracker.max_running.load(Ordering::SeqCst);
    let stats = pool.stats();
    println!(
        "done in {:.2}s: {finished}/{jobs} jobs finished on {} threads started; \
         at most {max_running} jobs ran at once (limit {limit})",
        elapsed.as_secs_f64(),
        stats.threads_started,
    );

    if finished != jobs {
        eprintln!("FAILED: only {finished} of {jobs} jobs finished");
        return Ok(ExitCode::FAILURE);
    }
    if max_running > limit {
        eprintln!("FAILED: {max_running} jobs ran at once, above the limit of {limit}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
