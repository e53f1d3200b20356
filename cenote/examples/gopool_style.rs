//! Caller-runs versus blocking submit, ported from seed 002 ("A Go-based open
//! source pool toolkit", gopool).
//!
//! gopool offers two ways to hand a task to a pool:
//! - `TryGo`: "if all the goroutines in the coroutine pool are running, they
//!   are executed synchronously", i.e. on the caller. In cenote that is
//!   [`Policy::CallerRuns`].
//! - `AnywayGo`: "executed asynchronously anyway, and if no goroutine is
//!   available, it will block waiting". In cenote that is [`Policy::Block`],
//!   the default.
//!
//! Both modes run the same 200 tasks of 5 ms on a small pool (4 threads and a
//! queue of 8). Each task compares its thread with the main thread to count
//! where it ran. What to look for in the output:
//! - with `CallerRuns` a share of the tasks runs on the main thread (and
//!   `stats().ran_on_caller` agrees with that count); the caller acts as a
//!   fifth worker, so that mode tends to finish sooner;
//! - with `Block` every task runs on a pool thread and the caller just waits.
//!
//! The last part saturates a `CallerRuns` pool with tasks held on a gate and
//! shows that `try_submit` still never runs a task on the caller: it fails at
//! once with [`SubmitError::Full`], while `submit` runs the task right there.
//!
//! Timings depend on the machine and its load; the counts are what matter.

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use cenote::workers::{Policy, Pool, SubmitError};

const CAPACITY: usize = 4;
const QUEUE: usize = 8;
const TASKS: usize = 200;
const TASK_TIME: Duration = Duration::from_millis(5);

/// What one mode did.
struct Outcome {
    label: &'static str,
    on_pool: usize,
    on_caller: usize,
    ran_on_caller: u64,
    elapsed: Duration,
}

/// Counts where tasks ran, by comparing thread ids with the caller's.
struct Where {
    caller: ThreadId,
    on_caller: AtomicUsize,
    on_pool: AtomicUsize,
}

impl Where {
    fn new() -> Where {
        Where {
            caller: thread::current().id(),
            on_caller: AtomicUsize::new(0),
            on_pool: AtomicUsize::new(0),
        }
    }

    /// Counts the current thread as the caller or as a pool thread.
    fn record(&self) {
        let counter = if thread::current().id() == self.caller {
            &self.on_caller
        } else {
            &self.on_pool
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

fn small_pool(policy: Policy) -> Result<Pool, Box<dyn Error>> {
    Ok(Pool::builder()
        .capacity(CAPACITY)
        .queue(QUEUE)
        .policy(policy)
        .thread_name("gopool")
        .build()?)
}

/// Submits `TASKS` tasks of `TASK_TIME` and waits for them all.
fn run_mode(label: &'static str, policy: Policy) -> Result<Outcome, Box<dyn Error>> {
    let pool = small_pool(policy)?;
    let seen = Arc::new(Where::new());
    let start = Instant::now();
    for i in 0..TASKS {
        let seen = Arc::clone(&seen);
        pool.submit(move || {
            seen.record();
            thread::sleep(TASK_TIME);
            std::hint::black_box(i);
        })?;
    }
    pool.wait_idle();
    let elapsed = start.elapsed();
    Ok(Outcome {
        label,
        on_pool: seen.on_pool.load(Ordering::SeqCst),
        on_caller: seen.on_caller.load(Ordering::SeqCst),
        ran_on_caller: pool.stats().ran_on_caller,
        elapsed,
    })
}

/// A latch the saturating tasks wait on until the main thread opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let _open = self
            .opened
            .wait_while(open, |open| !*open)
            .unwrap_or_else(PoisonError::into_inner);
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.opened.notify_all();
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    println!(
        "{TASKS} tasks of {TASK_TIME:?} on a pool of {CAPACITY} threads with a queue of {QUEUE}\n"
    );
    let outcomes = [
        run_mode("TryGo    (Policy::CallerRuns)", Policy::CallerRuns)?,
        run_mode("AnywayGo (Policy::Block)", Policy::Block)?,
    ];
    println!(
        "{:<30} {:>7} {:>10} {:>13} {:>9}",
        "mode", "on pool", "on caller", "ran_on_caller", "elapsed"
    );
    for o in &outcomes {
        println!(
            "{:<30} {:>7} {:>10} {:>13} {:>7.0}ms",
            o.label,
            o.on_pool,
            o.on_caller,
            o.ran_on_caller,
            o.elapsed.as_secs_f64() * 1e3,
        );
        if o.on_pool + o.on_caller != TASKS {
            return Err(format!(
                "{}: {} tasks ran, not {TASKS}",
                o.label,
                o.on_pool + o.on_caller
            )
            .into());
        }
    }
    saturate()
}

/// Fills a `CallerRuns` pool with gated tasks, then tries `try_submit` and
/// `submit` on it.
fn saturate() -> Result<(), Box<dyn Error>> {
    println!(
        "\nsaturating a CallerRuns pool with {} gated tasks",
        CAPACITY + QUEUE
    );
    let pool = small_pool(Policy::CallerRuns)?;
    let gate = Arc::new(Gate::default());
    let seen = Arc::new(Where::new());
    for _ in 0..CAPACITY + QUEUE {
        let gate = Arc::clone(&gate);
        let seen = Arc::clone(&seen);
        // Not `submit`: on a full CallerRuns pool it would run the task here,
        // and the caller would wait on the gate forever. `submit_timeout`
        // waits for room whatever the policy (the threads may still be
        // starting and picking up their first task).
        pool.submit_timeout(
            move || {
                seen.record();
                gate.wait();
            },
            Duration::from_secs(5),
        )?;
    }

    // Wait until the four threads hold a task each and the queue is full.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.busy() < CAPACITY || pool.queued() < QUEUE {
        if Instant::now() > deadline {
            gate.open();
            return Err(format!(
                "the pool did not saturate within 5 s: busy {}, queued {}",
                pool.busy(),
                pool.queued()
            )
            .into());
        }
        thread::sleep(Duration::from_millis(1));
    }
    println!(
        "  busy {}/{CAPACITY}, queued {}/{QUEUE}",
        pool.busy(),
        pool.queued()
    );

    match pool.try_submit(|| {}) {
        Err(e @ SubmitError::Full) => println!("  try_submit -> {e:?}: {e}"),
        other => {
            gate.open();
            return Err(format!("try_submit on a saturated pool returned {other:?}").into());
        }
    }
    let task_seen = Arc::clone(&seen);
    let start = Instant::now();
    pool.submit(move || {
        task_seen.record();
    })?;
    let waited = start.elapsed();
    let on_caller = seen.on_caller.load(Ordering::SeqCst);
    println!(
        "  submit     -> Ok after {waited:?}; ran on the caller: {}",
        on_caller == 1
    );

    gate.open();
    pool.wait_idle();
    let stats = pool.stats();
    println!(
        "  after opening the gate: completed {}, rejected {}, ran_on_caller {}",
        stats.completed, stats.rejected, stats.ran_on_caller
    );
    if on_caller != 1 || seen.on_pool.load(Ordering::SeqCst) != CAPACITY + QUEUE {
        return Err("the saturated pool did not run the tasks where expected".into());
    }
    Ok(())
}
