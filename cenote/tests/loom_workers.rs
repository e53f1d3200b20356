//! Loom models of the worker pool's hand-off, park/wake, resize and close
//! paths (see `src/workers/DESIGN.md`). Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p cenote --test loom_workers --release`.
//!
//! Under loom every atomic, lock, condition variable, thread and the job
//! queue of the pool are loom's, so each model explores the interleavings
//! of the real code. Loom has no clock: a deadline already passed times out
//! at once (`retiring_pool`'s 1 ns idle timeout explores the retire path),
//! any later one is never reached, so every other wait here must end by a
//! notification: a lost wake-up shows up as a deadlock report.
#![cfg(loom)]

use std::time::Duration;

use cenote::workers::{Pool, SubmitError};
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;

fn pool(capacity: usize, queue: usize) -> Pool {
    Pool::builder()
        .capacity(capacity)
        .queue(queue)
        .idle_timeout(None)
        .build()
        .unwrap()
}

fn counting_task(n: &Arc<AtomicUsize>) -> impl FnOnce() + Send + 'static {
    let n = n.clone();
    move || {
        n.fetch_add(1, SeqCst);
    }
}

/// Submits two counting jobs; both have run once `wait_idle` returns, and
/// nothing else runs by the end of the shutdown.
fn two_jobs_run_before_idle(p: Pool) {
    let n = Arc::new(AtomicUsize::new(0));
    p.submit(counting_task(&n)).unwrap();
    p.submit(counting_task(&n)).unwrap();
    p.wait_idle();
    assert_eq!(n.load(SeqCst), 2);
    p.shutdown_timeout(Duration::MAX).unwrap();
    assert_eq!(n.load(SeqCst), 2);
}

/// Queue mode: the second job arrives while the only worker may be
/// searching, parking or parked; it must be found (S2 vs W3a).
#[test]
fn queued_jobs_are_never_stranded_by_a_parking_worker() {
    loom::model(|| {
        let p = pool(1, 2);
        let n = Arc::new(AtomicUsize::new(0));
        p.submit(counting_task(&n)).unwrap();
        p.submit(counting_task(&n)).unwrap();
        p.shutdown_timeout(Duration::MAX).unwrap();
        assert_eq!(n.load(SeqCst), 2);
    });
}

/// Direct hand-off: the second submit must wait for the worker to park and
/// then hand the job to it (blocked submitter vs W3 notification).
#[test]
fn direct_hand_off_waits_for_the_worker_and_loses_nothing() {
    loom::model(|| two_jobs_run_before_idle(pool(1, 0)));
}

/// A submitter blocked on a full queue is woken when the worker drains it
/// (S3 against S4's hysteresis notification).
#[test]
fn a_submitter_blocked_on_a_full_queue_is_woken() {
    loom::model(|| {
        let p = pool(1, 1);
        let n = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            p.submit(counting_task(&n)).unwrap();
        }
        p.shutdown_timeout(Duration::MAX).unwrap();
        assert_eq!(n.load(SeqCst), 3);
    });
}

/// A submit racing `close`: if it was accepted, it runs; nothing hangs.
#[test]
fn a_submit_racing_close_is_run_or_refused() {
    loom::model(|| {
        let p = pool(1, 1);
        let n = Arc::new(AtomicUsize::new(0));
        let p2 = p.clone();
        let n2 = n.clone();
        let submitter = loom::thread::spawn(move || match p2.submit(counting_task(&n2)) {
            Ok(()) => 1,
            Err(SubmitError::Closed) => 0,
            Err(e) => panic!("unexpected {e}"),
        });
        p.close();
        let accepted = submitter.join().unwrap();
        p.shutdown_timeout(Duration::MAX).unwrap();
        assert_eq!(n.load(SeqCst), accepted);
    });
}

/// `resize` shrinking and growing while a job runs: the capacity in force is
/// never below the running count, and the job runs exactly once.
#[test]
fn resize_racing_a_running_job_keeps_running_within_capacity() {
    loom::model(|| {
        let p = pool(2, 1);
        let n = Arc::new(AtomicUsize::new(0));
        p.submit(counting_task(&n)).unwrap();
        let p2 = p.clone();
        let resizer = loom::thread::spawn(move || {
            p2.resize(1).unwrap();
            let (running, capacity) = p2.running_and_capacity();
            assert!(running <= capacity);
            p2.resize(2).unwrap();
        });
        let (running, capacity) = p.running_and_capacity();
        assert!(running <= capacity);
        resizer.join().unwrap();
        p.wait_idle();
        assert_eq!(n.load(SeqCst), 1);
        p.shutdown_timeout(Duration::MAX).unwrap();
    });
}

/// A result handle: the value crosses from the worker to the joiner.
#[test]
fn a_join_handle_receives_the_value() {
    loom::model(|| {
        let p = pool(1, 1);
        let h = p.spawn(|| 7).unwrap();
        assert_eq!(h.join().unwrap(), 7);
        p.shutdown_timeout(Duration::MAX).unwrap();
    });
}

/// A pool whose idle threads retire as soon as they park (under loom a
/// deadline already passed times out at once).
fn retiring_pool(capacity: usize, queue: usize) -> Pool {
    Pool::builder()
        .capacity(capacity)
        .queue(queue)
        .idle_timeout(Some(Duration::from_nanos(1)))
        .build()
        .unwrap()
}

/// W3c, the idle-timeout exit racing a push: the worker leaves the idle
/// stack, then gives back its slot. A push in between sees no sleeper and
/// no free slot; the leaving worker must see the job after its release.
#[test]
fn a_push_racing_an_idle_retire_is_run() {
    loom::model(|| two_jobs_run_before_idle(retiring_pool(1, 2)));
}

/// W3c, the shrink exit racing a push: a worker above the target leaves
/// as it would park; a job pushed meanwhile still runs.
#[test]
fn a_push_racing_a_shrink_exit_is_run() {
    // Three threads: two preemptions cover the window (one between the
    // worker's release and the push, one inside it) in minutes less.
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let p = pool(2, 1);
        let n = Arc::new(AtomicUsize::new(0));
        p.submit(counting_task(&n)).unwrap();
        p.submit(counting_task(&n)).unwrap();
        p.resize(1).unwrap();
        p.submit(counting_task(&n)).unwrap();
        p.wait_idle();
        assert_eq!(n.load(SeqCst), 3);
        p.shutdown_timeout(Duration::MAX).unwrap();
    });
}
