//! A counting semaphore with a tracker, ported from seed 000 ("Add threadpool
//! to save on thread creation time").
//!
//! The Go original limits concurrency with a buffered channel used as a
//! counting semaphore (`sem <- 1` acquires, `<-sem` releases), starts one
//! goroutine per job, and runs a ticker goroutine that logs the number of
//! running goroutines every second.
//!
//! Here the limit is a cenote [`Pool`] of capacity N with `queue(0)` (direct
//! hand-off) and the default `Policy::Block`: `submit` succeeds only by
//! handing the job to an idle or newly started thread, so once N jobs are
//! running the next `submit` blocks until one finishes, exactly like the send
//! on the full channel. Unlike the Go version, the N threads are reused from
//! job to job instead of one goroutine being created per job.
//!
//! Usage: `cargo run -p cenote --example semaphore_tracker -- [N] [JOBS] [SLEEP_MS]`
//! (defaults: 3 jobs at once, 100 jobs, 125 ms each, about 4-5 s in total).
//!
//! What to look for in the output:
//! - one tracker line per second; `running jobs` (our own atomic counter),
//!   `busy` and `threads` never exceed N, `queued` stays 0 (there is no
//!   queue), and `waiting` is 1 while the main thread is blocked in `submit`;
//! - the final line reports the highest number of jobs seen running at once,
//!   which must be N (or less); the example exits non-zero if it is above N.
//!
//! Issue 4 will switch this example to `cenote::limit`'s `Semaphore` and
//! `Monitor`, which express "acquire a permit, track the holders" directly.

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

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

    // The semaphore: `limit` threads and no queue, so a submit blocks while
    // `limit` jobs are running.
    let pool = Pool::builder().capacity(limit).queue(0).build()?;
    let tracker = Arc::new(Tracker::default());
    let start = Instant::now();

    // The seed's runRoutineTracker: report once per tick until told to stop.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let reporter = {
        let pool = pool.clone();
        let tracker = Arc::clone(&tracker);
        thread::Builder::new()
            .name("tracker".into())
            .spawn(move || {
                // A message or a hang-up both mean stop; a timeout is a tick.
                while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(TICK) {
                    println!(
                        "[{:>4.1}s] running jobs: {} | busy: {} threads: {} queued: {} waiting: {} | finished: {}",
                        start.elapsed().as_secs_f64(),
                        tracker.running.load(Ordering::SeqCst),
                        pool.busy(),
                        pool.running(),
                        pool.queued(),
                        pool.waiting(),
                        tracker.finished.load(Ordering::SeqCst),
                    );
                }
            })?
    };

    for i in 1..=jobs {
        let tracker = Arc::clone(&tracker);
        // Blocks while `limit` jobs are running: the acquire (`sem <- 1`).
        pool.submit(move || {
            tracker.add();
            thread::sleep(sleep); // "Processing: i"
            std::hint::black_box(i);
            tracker.done(); // the release (`<-sem`) is the thread going idle
        })?;
    }

    // The seed's wg.Wait().
    pool.wait_idle();
    let elapsed = start.elapsed();
    // A send error only means the tracker already stopped; nothing to do.
    let _ = stop_tx.send(());
    reporter.join().map_err(|_| "the tracker thread panicked")?;

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
