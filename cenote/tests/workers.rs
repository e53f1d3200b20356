//! Behaviour of `cenote::workers`, one test per promise (ants' own test
//! list is the checklist). No sleeps as synchronisation and no timing
//! asserts: tests wait on latches, barriers and channels, and poll only for
//! conditions that are asynchronous by nature (an idle timeout firing).
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::eventually;

use cenote::workers::{
    Balance, BuildError, FnPool, JoinError, MultiPool, Policy, Pool, ResizeError, SubmitError,
};

/// A gate tasks block on until the test opens it.
#[derive(Clone)]
struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    fn new() -> Self {
        Gate(Arc::new((Mutex::new(false), std::sync::Condvar::new())))
    }
    fn wait(&self) {
        let (m, c) = &*self.0;
        let mut open = m.lock().unwrap();
        while !*open {
            open = c.wait(open).unwrap();
        }
    }
    fn open(&self) {
        let (m, c) = &*self.0;
        *m.lock().unwrap() = true;
        c.notify_all();
    }
}

/// Fills a pool's `n` threads with tasks blocked on the returned gate and
/// returns once all of them are running.
fn occupy(pool: &Pool, n: usize) -> Gate {
    let gate = Gate::new();
    let started = Arc::new(Barrier::new(n + 1));
    for _ in 0..n {
        let (g, s) = (gate.clone(), started.clone());
        pool.submit(move || {
            s.wait();
            g.wait();
        })
        .unwrap();
    }
    started.wait();
    gate
}

// ----- build --------------------------------------------------------------

#[test]
fn capacity_zero_is_a_build_error_with_a_clear_message() {
    let err = Pool::new(0).unwrap_err();
    assert_eq!(err, BuildError::ZeroCapacity);
    assert!(err.to_string().contains("at least 1"), "{err}");
    assert!(matches!(
        FnPool::new(0, |_: u8| {}),
        Err(BuildError::ZeroCapacity)
    ));
}

#[test]
fn invalid_settings_are_build_errors() {
    let b = || Pool::builder().capacity(2);
    assert!(matches!(
        b().prestart(3).build(),
        Err(BuildError::PrestartAboveCapacity { .. })
    ));
    assert_eq!(
        b().idle_timeout(Some(Duration::ZERO)).build().unwrap_err(),
        BuildError::ZeroIdleTimeout
    );
    assert_eq!(
        b().stack_size(0).build().unwrap_err(),
        BuildError::ZeroStackSize
    );
    assert!(matches!(
        b().queue(usize::MAX).build(),
        Err(BuildError::QueueTooLarge(_))
    ));
    assert!(matches!(
        Pool::new(usize::MAX),
        Err(BuildError::CapacityTooLarge(_))
    ));
}

#[test]
fn huge_durations_mean_no_deadline() {
    let pool = Pool::builder()
        .capacity(1)
        .idle_timeout(Some(Duration::MAX))
        .build()
        .unwrap();
    pool.submit_timeout(|| {}, Duration::MAX).unwrap();
    let mut h = pool.spawn(|| 5).unwrap();
    assert_eq!(h.join_timeout(Duration::MAX).unwrap(), 5);
    assert!(pool.wait_idle_timeout(Duration::MAX));
    pool.shutdown_timeout(Duration::MAX).unwrap();
}

// ----- threads on demand, prestart, idle timeout ---------------------------

#[test]
fn threads_start_on_demand_up_to_capacity() {
    let pool = Pool::new(4).unwrap();
    assert_eq!(pool.running(), 0, "no thread before the first task");
    let gate = occupy(&pool, 4);
    assert_eq!(pool.running(), 4);
    // More work queues instead of starting a fifth thread.
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..10 {
        let r = ran.clone();
        pool.submit(move || {
            r.fetch_add(1, SeqCst);
        })
        .unwrap();
    }
    assert_eq!(pool.running(), 4);
    assert!(pool.queued() > 0);
    gate.open();
    pool.wait_idle();
    assert_eq!(ran.load(SeqCst), 10);
    assert!(pool.stats().threads_started <= 4);
}

#[test]
fn prestart_really_starts_threads() {
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let pool = Pool::builder()
        .capacity(8)
        .prestart(5)
        .on_thread_start(move || {
            s.fetch_add(1, SeqCst);
        })
        .build()
        .unwrap();
    assert_eq!(pool.running(), 5);
    eventually("prestarted threads run their start hook", || {
        started.load(SeqCst) == 5
    });
    eventually("prestarted threads park", || pool.idle() == 5);
}

#[test]
fn idle_threads_retire_after_the_idle_timeout() {
    let stopped = Arc::new(AtomicUsize::new(0));
    let s = stopped.clone();
    let pool = Pool::builder()
        .capacity(4)
        .idle_timeout(Some(Duration::from_millis(30)))
        .on_thread_stop(move || {
            s.fetch_add(1, SeqCst);
        })
        .build()
        .unwrap();
    occupy(&pool, 4).open();
    pool.wait_idle();
    eventually("all idle threads retire", || pool.running() == 0);
    eventually("stop hooks ran", || stopped.load(SeqCst) == 4);
    assert_eq!(pool.stats().threads_retired, 4);
    // The pool still works: threads start again on demand.
    assert_eq!(pool.spawn(|| 1).unwrap().join().unwrap(), 1);
}

#[test]
fn without_idle_timeout_threads_are_kept() {
    let pool = Pool::builder()
        .capacity(3)
        .idle_timeout(None)
        .prestart(3)
        .build()
        .unwrap();
    eventually("threads park", || pool.idle() == 3);
    // Nothing to wait on: check that nothing changed after real time passed.
    thread::sleep(Duration::from_millis(50));
    assert_eq!(pool.running(), 3);
}

#[test]
fn thread_name_and_stack_size_apply() {
    let pool = Pool::builder()
        .capacity(1)
        .thread_name("cruncher")
        .stack_size(256 * 1024)
        .build()
        .unwrap();
    let name = pool
        .spawn(|| thread::current().name().map(str::to_owned))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(name.as_deref(), Some("cruncher-0"));
}

// ----- queue and policies ----------------------------------------------------

#[test]
fn queue_zero_is_direct_hand_off() {
    let pool = Pool::builder().capacity(1).queue(0).build().unwrap();
    let gate = occupy(&pool, 1);
    assert_eq!(pool.try_submit(|| {}), Err(SubmitError::Full));
    assert_eq!(
        pool.submit_timeout(|| {}, Duration::from_millis(20)),
        Err(SubmitError::TimedOut(Duration::from_millis(20)))
    );
    assert_eq!(pool.queued(), 0);
    gate.open();
    // Once the thread is free again a hand-off succeeds.
    pool.submit(|| {}).unwrap();
    pool.wait_idle();
    assert_eq!(pool.stats().rejected, 2);
}

#[test]
fn reject_policy_fails_fast_when_full() {
    let pool = Pool::builder()
        .capacity(1)
        .queue(2)
        .policy(Policy::Reject)
        .build()
        .unwrap();
    let gate = occupy(&pool, 1);
    pool.submit(|| {}).unwrap();
    pool.submit(|| {}).unwrap();
    let err = pool.submit(|| {}).unwrap_err();
    assert_eq!(err, SubmitError::Full);
    assert!(err.to_string().contains("full"));
    gate.open();
    pool.wait_idle();
    assert_eq!(pool.stats().completed, 3);
}

#[test]
fn caller_runs_policy_runs_on_the_submitting_thread() {
    let pool = Pool::builder()
        .capacity(1)
        .queue(1)
        .policy(Policy::CallerRuns)
        .build()
        .unwrap();
    let gate = occupy(&pool, 1);
    pool.submit(|| {}).unwrap(); // fills the queue
    let me = thread::current().id();
    let (tx, rx) = mpsc::channel();
    pool.submit(move || tx.send(thread::current().id()).unwrap())
        .unwrap();
    assert_eq!(rx.recv().unwrap(), me);
    assert_eq!(pool.stats().ran_on_caller, 1);
    gate.open();
}

#[test]
fn block_policy_waits_for_room() {
    let pool = Pool::builder().capacity(1).queue(1).build().unwrap();
    let gate = occupy(&pool, 1);
    pool.submit(|| {}).unwrap();
    let p = pool.clone();
    let submitter = thread::spawn(move || p.submit(|| {}));
    eventually("the submitter blocks", || pool.waiting() == 1);
    gate.open();
    submitter.join().unwrap().unwrap();
    pool.wait_idle();
    assert_eq!(pool.waiting(), 0);
    assert_eq!(pool.stats().completed, 3);
}

#[test]
fn max_blocked_submitters_sheds_the_excess() {
    let pool = Pool::builder()
        .capacity(1)
        .queue(0)
        .max_waiting(1)
        .build()
        .unwrap();
    let gate = occupy(&pool, 1);
    let p = pool.clone();
    let first = thread::spawn(move || p.submit(|| {}));
    eventually("one submitter blocks", || pool.waiting() == 1);
    assert_eq!(pool.submit(|| {}), Err(SubmitError::TooManyWaiting(1)));
    gate.open();
    first.join().unwrap().unwrap();
    pool.wait_idle();

    let none = Pool::builder()
        .capacity(1)
        .queue(0)
        .max_waiting(0)
        .build()
        .unwrap();
    let gate = occupy(&none, 1);
    assert_eq!(none.submit(|| {}), Err(SubmitError::TooManyWaiting(0)));
    // A timeout that is past before the submit looks at the clock still
    // meets the cap: the answer depends on what was asked, not on how long
    // the submitter was descheduled.
    assert_eq!(
        none.submit_timeout(|| {}, Duration::from_nanos(1)),
        Err(SubmitError::TooManyWaiting(0))
    );
    assert_eq!(
        none.submit_timeout(|| {}, Duration::ZERO),
        Err(SubmitError::TimedOut(Duration::ZERO))
    );
    gate.open();
}

#[test]
fn submit_timeout_zero_never_waits() {
    let pool = Pool::builder().capacity(1).queue(0).build().unwrap();
    let gate = occupy(&pool, 1);
    assert_eq!(
        pool.submit_timeout(|| {}, Duration::ZERO),
        Err(SubmitError::TimedOut(Duration::ZERO))
    );
    gate.open();
}

// ----- results, panics -------------------------------------------------------

#[test]
fn spawn_returns_the_value_through_the_handle() {
    let pool = Pool::new(2).unwrap();
    let h = pool.spawn(|| "done".to_string()).unwrap();
    assert_eq!(h.join().unwrap(), "done");
}

#[test]
fn join_timeout_leaves_the_handle_usable() {
    let pool = Pool::new(1).unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let mut h = pool
        .spawn(move || {
            g.wait();
            7
        })
        .unwrap();
    assert!(matches!(
        h.join_timeout(Duration::from_millis(10)),
        Err(JoinError::TimedOut(_))
    ));
    assert!(!h.is_finished());
    gate.open();
    assert_eq!(h.join_timeout(Duration::from_secs(60)).unwrap(), 7);
    assert!(h.is_finished());
    assert!(matches!(
        h.join_timeout(Duration::ZERO),
        Err(JoinError::AlreadyJoined)
    ));
}

#[test]
fn a_panic_reaches_the_handle_with_its_payload() {
    let pool = Pool::new(1).unwrap();
    let h = pool.spawn(|| -> u32 { panic!("bad input 42") }).unwrap();
    let err = h.join().unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("bad input 42"));
    assert!(err.to_string().contains("bad input 42"));
    // The thread survived and serves the next task.
    assert_eq!(pool.spawn(|| 1).unwrap().join().unwrap(), 1);
    assert_eq!(pool.stats().panicked, 1);
}

#[test]
fn a_join_handle_is_a_future() {
    let pool = Pool::new(2).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let v = rt.block_on(async {
        let h = pool.spawn(|| {
            thread::sleep(Duration::from_millis(5));
            40 + 2
        });
        h.unwrap().await
    });
    assert_eq!(v.unwrap(), 42);
    let err = futures_lite::future::block_on(pool.spawn(|| panic!("async boom")).unwrap());
    assert_eq!(err.unwrap_err().panic_message(), Some("async boom"));
}

#[test]
fn panic_handler_sees_every_panic_and_threads_keep_serving() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let pool = Pool::builder()
        .capacity(2)
        .panic_handler(move |p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|m| m.to_string())
                .unwrap_or_default();
            s.lock().unwrap().push(msg);
        })
        .build()
        .unwrap();
    for i in 0..10 {
        pool.submit(move || {
            if i % 2 == 0 {
                panic!("task panicked");
            }
        })
        .unwrap();
    }
    pool.wait_idle();
    assert_eq!(seen.lock().unwrap().len(), 5);
    let st = pool.stats();
    assert_eq!((st.completed, st.panicked), (5, 5));
    assert!(st.threads_started <= 2, "panics must not cost threads");
}

#[test]
fn a_panicking_panic_handler_does_not_kill_the_pool() {
    let pool = Pool::builder()
        .capacity(1)
        .panic_handler(|_| panic!("handler bug"))
        .build()
        .unwrap();
    pool.submit(|| panic!("task")).unwrap();
    assert_eq!(pool.spawn(|| 3).unwrap().join().unwrap(), 3);
}

// ----- FnPool ---------------------------------------------------------------

#[test]
fn fn_pool_calls_its_function_with_each_argument() {
    let sum = Arc::new(AtomicUsize::new(0));
    let s = sum.clone();
    let pool = Pool::builder()
        .capacity(3)
        .queue(4)
        .build_fn(move |x: usize| {
            s.fetch_add(x, SeqCst);
        })
        .unwrap();
    for i in 1..=1000 {
        pool.invoke(i).unwrap();
    }
    pool.wait_idle();
    assert_eq!(sum.load(SeqCst), 500_500);
    pool.close();
    assert_eq!(pool.invoke(1), Err(SubmitError::Closed));
    pool.reboot();
    pool.invoke(1).unwrap();
    pool.wait_idle();
    assert_eq!(sum.load(SeqCst), 500_501);
}

// ----- resize -------------------------------------------------------------------

#[test]
fn resize_zero_is_an_error_and_changes_nothing() {
    let pool = Pool::new(3).unwrap();
    assert_eq!(pool.resize(0), Err(ResizeError::ZeroCapacity));
    assert_eq!(pool.capacity(), 3);
}

#[test]
fn resize_up_wakes_blocked_submitters_and_starts_threads() {
    let pool = Pool::builder().capacity(1).queue(0).build().unwrap();
    let gate = occupy(&pool, 1);
    let p = pool.clone();
    let g = gate.clone();
    let submitter = thread::spawn(move || p.submit(move || g.wait()));
    eventually("the submitter blocks", || pool.waiting() == 1);
    pool.resize(2).unwrap();
    submitter.join().unwrap().unwrap();
    assert_eq!(pool.running(), 2);
    gate.open();
    pool.wait_idle();
}

#[test]
fn resize_down_retires_parked_threads_at_once() {
    let pool = Pool::builder()
        .capacity(8)
        .prestart(8)
        .idle_timeout(None)
        .build()
        .unwrap();
    eventually("threads park", || pool.idle() == 8);
    pool.resize(2).unwrap();
    assert_eq!(pool.running(), 2);
    assert_eq!(pool.capacity(), 2);
    eventually("retired threads exit", || pool.stats().threads_retired == 6);
}

#[test]
fn resize_down_retires_busy_threads_as_they_finish() {
    let pool = Pool::builder()
        .capacity(4)
        .idle_timeout(None)
        .build()
        .unwrap();
    let gate = occupy(&pool, 4);
    pool.resize(1).unwrap();
    assert_eq!(pool.target_capacity(), 1);
    let (running, cap) = pool.running_and_capacity();
    assert!(running <= cap, "{running} > {cap}");
    gate.open();
    eventually("surplus threads retire", || pool.running() == 1);
    assert_eq!(pool.capacity(), 1);
    // At most one task at a time from now on.
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    for _ in 0..200 {
        let (n, m) = (now.clone(), max.clone());
        pool.submit(move || {
            let c = n.fetch_add(1, SeqCst) + 1;
            m.fetch_max(c, SeqCst);
            n.fetch_sub(1, SeqCst);
        })
        .unwrap();
    }
    pool.wait_idle();
    assert_eq!(max.load(SeqCst), 1);
}

// ----- wait_idle, close, shutdown, reboot, drop ------------------------------

#[test]
fn wait_idle_waits_for_everything_and_keeps_the_pool_open() {
    let pool = Pool::new(3).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..500 {
        let d = done.clone();
        pool.submit(move || {
            d.fetch_add(1, SeqCst);
        })
        .unwrap();
    }
    pool.wait_idle();
    assert_eq!(done.load(SeqCst), 500);
    assert!(!pool.is_closed());
    pool.submit(|| {}).unwrap();
    pool.wait_idle();
}

#[test]
fn close_refuses_new_work_and_finishes_what_is_queued() {
    let pool = Pool::builder().capacity(1).queue(100).build().unwrap();
    let gate = occupy(&pool, 1);
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        let r = ran.clone();
        pool.submit(move || {
            r.fetch_add(1, SeqCst);
        })
        .unwrap();
    }
    pool.close();
    assert!(pool.is_closed());
    let err = pool.submit(|| {}).unwrap_err();
    assert_eq!(err, SubmitError::Closed);
    assert!(err.to_string().contains("reboot"));
    gate.open();
    pool.shutdown_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(ran.load(SeqCst), 100);
    assert_eq!(pool.running(), 0);
}

#[test]
fn close_wakes_blocked_submitters_with_an_error() {
    let pool = Pool::builder().capacity(1).queue(0).build().unwrap();
    let gate = occupy(&pool, 1);
    let p = pool.clone();
    let submitter = thread::spawn(move || p.submit(|| {}));
    eventually("the submitter blocks", || pool.waiting() == 1);
    pool.close();
    assert_eq!(submitter.join().unwrap(), Err(SubmitError::Closed));
    gate.open();
}

#[test]
fn shutdown_timeout_reports_what_is_still_running() {
    let pool = Pool::new(1).unwrap();
    let gate = occupy(&pool, 1);
    let err = pool
        .shutdown_timeout(Duration::from_millis(20))
        .unwrap_err();
    assert_eq!(err.threads, 1);
    assert!(err.to_string().contains("still running"));
    gate.open();
    pool.shutdown_timeout(Duration::from_secs(60)).unwrap();
}

#[test]
fn reboot_reopens_a_closed_pool() {
    let pool = Pool::new(2).unwrap();
    pool.shutdown_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(pool.submit(|| {}), Err(SubmitError::Closed));
    pool.reboot();
    assert!(!pool.is_closed());
    assert_eq!(pool.spawn(|| 9).unwrap().join().unwrap(), 9);
}

#[test]
fn dropping_the_last_handle_closes_the_pool_and_runs_queued_work() {
    let started = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let (s1, s2) = (started.clone(), stopped.clone());
    let pool = Pool::builder()
        .capacity(2)
        .idle_timeout(None)
        .on_thread_start(move || {
            s1.fetch_add(1, SeqCst);
        })
        .on_thread_stop(move || {
            s2.fetch_add(1, SeqCst);
        })
        .build()
        .unwrap();
    let clone = pool.clone();
    for _ in 0..50 {
        let r = ran.clone();
        pool.submit(move || {
            r.fetch_add(1, SeqCst);
        })
        .unwrap();
    }
    drop(pool);
    assert!(!clone.is_closed(), "a clone keeps the pool open");
    drop(clone);
    eventually(
        "queued work runs and threads exit after the last drop",
        || ran.load(SeqCst) == 50 && stopped.load(SeqCst) == started.load(SeqCst),
    );
}

// ----- nested submits, scope ---------------------------------------------------

#[test]
fn a_task_submitting_into_its_own_full_pool_does_not_deadlock() {
    let pool = Pool::builder().capacity(1).queue(1).build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let (p, r) = (pool.clone(), ran.clone());
    pool.spawn(move || {
        for _ in 0..10 {
            let r = r.clone();
            p.submit(move || {
                r.fetch_add(1, SeqCst);
            })
            .unwrap();
        }
    })
    .unwrap()
    .join()
    .unwrap();
    pool.wait_idle();
    assert_eq!(ran.load(SeqCst), 10);
    assert!(pool.stats().ran_on_caller >= 1);
}

#[test]
fn wait_idle_inside_a_task_waits_for_the_others_only() {
    let pool = Pool::new(2).unwrap();
    let p = pool.clone();
    let h = pool
        .spawn(move || {
            p.submit(|| {}).unwrap();
            p.wait_idle();
            p.queued()
        })
        .unwrap();
    assert_eq!(h.join().unwrap(), 0);
}

#[test]
fn two_tasks_waiting_for_idle_at_once_do_not_wait_for_each_other() {
    let pool = Pool::new(2).unwrap();
    let started = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (p, s) = (pool.clone(), started.clone());
            pool.spawn(move || {
                s.wait(); // both tasks are running before either waits
                p.wait_idle();
            })
            .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    pool.wait_idle();
}

#[test]
fn scope_tasks_borrow_from_the_stack() {
    let pool = Pool::new(3).unwrap();
    let data: Vec<u64> = (1..=100).collect();
    let mut sums = [0u64; 4];
    pool.scope(|s| {
        for (chunk, out) in data.chunks(25).zip(sums.iter_mut()) {
            let _ = s.spawn(move || *out = chunk.iter().sum());
        }
    });
    assert_eq!(sums.iter().sum::<u64>(), 5050);
}

#[test]
fn scope_waits_for_its_tasks_even_when_the_body_panics() {
    let pool = Pool::new(2).unwrap();
    let finished = AtomicBool::new(false);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.scope(|s| {
            let _ = s.spawn(|| {
                thread::sleep(Duration::from_millis(20));
                finished.store(true, SeqCst);
            });
            panic!("body");
        })
    }));
    assert!(r.is_err());
    assert!(
        finished.load(SeqCst),
        "the scope returned before its task finished"
    );
}

#[test]
fn an_unjoined_panic_in_a_scope_propagates() {
    let pool = Pool::new(2).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.scope(|s| {
            let _ = s.spawn(|| panic!("scoped"));
        })
    }));
    assert!(r.is_err());
    // A joined panic does not.
    let joined = pool.scope(|s| s.spawn(|| panic!("seen")).join().is_err());
    assert!(joined);
}

#[test]
fn a_scope_inside_a_task_of_the_same_pool_does_not_deadlock() {
    let pool = Pool::builder().capacity(1).queue(8).build().unwrap();
    let p = pool.clone();
    let total = pool
        .spawn(move || {
            let xs = [1u32, 2, 3, 4, 5, 6, 7, 8, 9, 10];
            p.scope(|s| {
                let hs: Vec<_> = xs.iter().map(|x| s.spawn(move || x * 2)).collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u32>()
            })
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(total, 110);
}

// ----- MultiPool ---------------------------------------------------------------

#[test]
fn multi_pool_of_zero_pools_is_a_build_error() {
    let err = MultiPool::new(0, Pool::builder(), Balance::RoundRobin).unwrap_err();
    assert_eq!(err, BuildError::NoPools);
    assert!(err.to_string().contains("at least 1 sub-pool"));
}

#[test]
fn multi_pool_round_robin_spreads_tasks() {
    let m = MultiPool::new(3, Pool::builder().capacity(1), Balance::RoundRobin).unwrap();
    for _ in 0..30 {
        m.submit(|| {}).unwrap();
    }
    m.wait_idle();
    for p in m.pools() {
        assert_eq!(p.stats().completed, 10);
    }
    assert_eq!(m.stats().completed, 30);
}

#[test]
fn multi_pool_least_tasks_avoids_the_busy_pool() {
    let m = MultiPool::new(2, Pool::builder().capacity(1), Balance::LeastTasks).unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let started = Arc::new(Barrier::new(2));
    let s = started.clone();
    m.pools()[0]
        .submit(move || {
            s.wait();
            g.wait();
        })
        .unwrap();
    started.wait();
    let (tx, rx) = mpsc::channel();
    for _ in 0..5 {
        let tx = tx.clone();
        m.submit(move || {
            tx.send(thread::current().name().map(str::to_owned))
                .unwrap()
        })
        .unwrap();
        rx.recv().unwrap();
        // Let pool 1's thread park, so its load reads 0 again.
        m.pools()[1].wait_idle();
    }
    assert_eq!(m.pools()[1].stats().completed, 5);
    gate.open();
    m.shutdown_timeout(Duration::from_secs(60)).unwrap();
    assert!(m.is_closed());
}

#[test]
fn multi_pool_try_submit_falls_over_to_a_free_pool() {
    let m = MultiPool::new(2, Pool::builder().capacity(1).queue(0), Balance::RoundRobin).unwrap();
    let gate = occupy(&m.pools()[0], 1);
    for _ in 0..4 {
        // Whichever pool round-robin picks, the free one takes it.
        let (tx, rx) = mpsc::channel();
        m.try_submit(move || tx.send(()).unwrap()).unwrap();
        rx.recv().unwrap();
        m.pools()[1].wait_idle();
    }
    let _g2 = occupy(&m.pools()[1], 1);
    assert_eq!(m.try_submit(|| {}), Err(SubmitError::Full));
    gate.open();
    _g2.open();
    m.close();
    assert_eq!(m.try_submit(|| {}), Err(SubmitError::Closed));
}

// ----- misuse and races off the happy path ----------------------------------

/// Threads retiring on a 1 ms idle timeout while submits keep arriving: a
/// push that falls between a thread leaving the idle stack and giving back
/// its slot must still run (W3c; `tests/loom_workers.rs` models the window).
#[test]
fn tasks_submitted_while_threads_retire_are_all_run() {
    let pools: Vec<Pool> = (0..16)
        .map(|_| {
            Pool::builder()
                .capacity(1)
                .queue(4)
                .idle_timeout(Some(Duration::from_millis(1)))
                .build()
                .unwrap()
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(3);
    let mut handles = Vec::new();
    while Instant::now() < until {
        for p in &pools {
            handles.push(p.spawn(|| 1u32).unwrap());
        }
        thread::sleep(Duration::from_micros(900));
    }
    let n = handles.len();
    let mut stranded = 0;
    for mut h in handles {
        // A stranded task waits until the next submit to its pool: none
        // comes, so it would never finish.
        match h.join_timeout(Duration::from_secs(10)) {
            Ok(v) => assert_eq!(v, 1),
            Err(_) => stranded += 1,
        }
    }
    assert_eq!(stranded, 0, "{stranded} of {n} accepted tasks never ran");
}

#[test]
fn a_scope_runs_every_task_whatever_the_waiting_cap() {
    for cap in [0, 1] {
        let pool = Pool::builder()
            .capacity(1)
            .queue(1)
            .max_waiting(cap)
            .build()
            .unwrap();
        let ran = AtomicUsize::new(0);
        thread::scope(|ts| {
            for _ in 0..4 {
                ts.spawn(|| {
                    pool.scope(|s| {
                        for _ in 0..40 {
                            let _detached = s.spawn(|| {
                                ran.fetch_add(1, SeqCst);
                            });
                        }
                    })
                });
            }
        });
        assert_eq!(ran.load(SeqCst), 160, "max_waiting({cap})");
        assert_eq!(pool.stats().rejected, 0);
        // On a closed pool the scope runs its tasks itself.
        pool.close();
        let here = thread::current().id();
        let on = pool.scope(|s| s.spawn(|| thread::current().id()).join().unwrap());
        assert_eq!(on, here);
    }
}

#[test]
fn multi_pool_never_picks_a_closed_sub_pool_while_one_is_open() {
    for balance in [Balance::LeastTasks, Balance::RoundRobin] {
        let multi = MultiPool::new(3, Pool::builder().capacity(1), balance).unwrap();
        multi.pools()[1].close();
        for _ in 0..300 {
            multi.submit(|| {}).unwrap();
            multi.spawn(|| ()).unwrap().join().unwrap();
        }
        assert_eq!(multi.pools()[1].stats().completed, 0);
        multi.pools()[0].close();
        multi.pools()[2].close();
        assert!(multi.is_closed());
        assert_eq!(multi.submit(|| {}), Err(SubmitError::Closed));
    }
}

#[test]
fn shutdown_from_a_task_of_the_pool_says_its_own_thread_still_runs() {
    let pool = Pool::new(2).unwrap();
    let other_done = Arc::new(AtomicBool::new(false));
    let flag = other_done.clone();
    pool.submit(move || {
        thread::sleep(Duration::from_millis(50));
        flag.store(true, SeqCst);
    })
    .unwrap();
    let p = pool.clone();
    let seen = other_done.clone();
    let r = pool
        .spawn(move || {
            let r = p.shutdown_timeout(Duration::from_secs(30));
            (r, seen.load(SeqCst))
        })
        .unwrap()
        .join()
        .unwrap();
    let (r, other_finished) = r;
    let e = r.unwrap_err();
    assert!(e.from_own_task);
    assert!(other_finished, "it waits for the other tasks first");
    assert_eq!((e.threads, e.queued), (1, 0));
    assert!(e.to_string().contains("own tasks"), "{e}");
    pool.shutdown_timeout(Duration::from_secs(30)).unwrap();
}

#[test]
fn a_zero_timeout_reports_timeout_whatever_the_waiting_cap() {
    let pool = Pool::builder()
        .capacity(1)
        .queue(0)
        .max_waiting(0)
        .build()
        .unwrap();
    let gate = occupy(&pool, 1);
    assert_eq!(
        pool.submit_timeout(|| {}, Duration::ZERO),
        Err(SubmitError::TimedOut(Duration::ZERO))
    );
    gate.open();
}
