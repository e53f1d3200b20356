//! Stress: 1M tasks, 1% of them panicking, while another thread flips
//! `resize` between 1 and 64 and a checker asserts `running() <= capacity()`
//! on every read. Afterwards every task that did not panic ran exactly once
//! and the pool's counters add up.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::thread;

use cenote::workers::{Policy, Pool};

const TASKS: usize = 1_000_000;
const PANIC_EVERY: usize = 100;

fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let planned = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|m| m.starts_with("planned"));
        if !planned {
            default(info);
        }
    }));
}

fn run(policy: Policy, queue: usize) {
    let pool = Pool::builder()
        .capacity(64)
        .queue(queue)
        .policy(policy)
        .panic_handler(|_| {})
        .build()
        .unwrap();
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..TASKS).map(|_| AtomicU8::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));

    let resizer = {
        let (pool, stop) = (pool.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                pool.resize(if n % 2 == 0 { 1 } else { 64 }).unwrap();
                n += 1;
                thread::yield_now();
            }
            pool.resize(64).unwrap();
            n
        })
    };
    let checker = {
        let (pool, stop, checks) = (pool.clone(), stop.clone(), checks.clone());
        thread::spawn(move || {
            while !stop.load(Relaxed) {
                let (running, capacity) = pool.running_and_capacity();
                assert!(
                    running <= capacity,
                    "running {running} > capacity {capacity}"
                );
                assert!(
                    capacity <= 64,
                    "capacity {capacity} above the largest resize"
                );
                checks.fetch_add(1, Relaxed);
                thread::yield_now();
            }
        })
    };

    let mut rejected = 0;
    for i in 0..TASKS {
        let task_runs = runs.clone();
        let r = pool.submit(move || {
            task_runs[i].fetch_add(1, Relaxed);
            if i % PANIC_EVERY == 0 {
                panic!("planned panic {i}");
            }
        });
        if r.is_err() {
            // Only a Reject pool may refuse; mark the task as never run.
            assert_eq!(policy, Policy::Reject);
            rejected += 1;
            runs[i].fetch_add(100, Relaxed);
        }
    }
    pool.wait_idle();
    stop.store(true, Relaxed);
    let resizes = resizer.join().unwrap();
    checker.join().unwrap();

    let mut ran = 0;
    for (i, r) in runs.iter().enumerate() {
        match r.load(Relaxed) {
            1 => ran += 1,
            100 => {} // refused at submit, never run: fine
            n => panic!("task {i} ran {n} times"),
        }
    }
    let st = pool.stats();
    let panicked = (0..TASKS)
        .step_by(PANIC_EVERY)
        .filter(|&i| runs[i].load(Relaxed) == 1)
        .count();
    assert_eq!(ran + rejected, TASKS);
    assert_eq!(st.panicked as usize, panicked);
    assert_eq!(st.completed as usize, ran - panicked);
    assert_eq!(st.rejected as usize, rejected);
    assert!(resizes > 10, "the resizer should have raced the submitters");
    assert!(checks.load(Relaxed) > 10);
    pool.shutdown_timeout(std::time::Duration::from_secs(60))
        .unwrap();
}

#[test]
fn a_million_tasks_with_panics_while_resize_flips_block_policy() {
    quiet_panics();
    run(Policy::Block, 1024);
}

#[test]
fn a_million_tasks_with_panics_while_resize_flips_direct_hand_off() {
    quiet_panics();
    run(Policy::Block, 0);
}

#[test]
fn a_million_tasks_with_panics_while_resize_flips_reject_and_caller_runs() {
    quiet_panics();
    run(Policy::Reject, 64);
    run(Policy::CallerRuns, 64);
}
