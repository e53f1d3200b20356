//! Tests of `cenote::limit`: one per feature, bad input, and stress tests
//! of FIFO order and cancel-safety.
#![cfg(not(loom))]

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::eventually;

use cenote::limit::{AcquireError, Monitor, Semaphore, TryAcquireError, MAX_PERMITS};

/// Polls a future once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    std::pin::Pin::new(f).poll(&mut cx)
}

#[test]
fn permits_are_counted_and_released_on_drop() {
    let sem = Semaphore::new(3);
    let a = sem.try_acquire().unwrap();
    let b = sem.acquire_many_blocking(2).unwrap();
    assert_eq!((a.count(), b.count()), (1, 2));
    assert_eq!((sem.available(), sem.in_use(), sem.waiting()), (0, 3, 0));
    assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
    drop(b);
    assert_eq!((sem.available(), sem.in_use()), (2, 1));
    drop(a);
    assert_eq!((sem.available(), sem.in_use(), sem.permits()), (3, 0, 3));
}

#[test]
fn owned_permits_move_to_other_threads() {
    let sem = Arc::new(Semaphore::new(1));
    let p = sem.clone().acquire_owned_blocking().unwrap();
    assert!(sem.try_acquire().is_err());
    thread::spawn(move || drop(p)).join().unwrap();
    assert_eq!(sem.available(), 1);
    let p = sem.clone().try_acquire_owned().unwrap();
    assert!(Arc::ptr_eq(p.semaphore(), &sem));
}

#[test]
fn a_blocked_thread_wakes_when_a_permit_comes_back() {
    let sem = Arc::new(Semaphore::new(1));
    let held = sem.try_acquire().unwrap();
    let s = sem.clone();
    let t = thread::spawn(move || s.acquire_blocking().map(|p| p.count()));
    eventually("sem.waiting() == 1", || sem.waiting() == 1);
    drop(held);
    assert_eq!(t.join().unwrap(), Ok(1));
    assert_eq!((sem.available(), sem.waiting()), (1, 0));
}

#[test]
fn acquire_timeout_times_out_and_leaves_nothing_behind() {
    let sem = Semaphore::new(1);
    let _held = sem.try_acquire().unwrap();
    let start = Instant::now();
    let r = sem.acquire_timeout(Duration::from_millis(20));
    assert_eq!(r.unwrap_err(), AcquireError::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!((sem.waiting(), sem.available()), (0, 0));
    // Zero: only what is free now; huge: no deadline overflow.
    assert_eq!(
        sem.acquire_timeout(Duration::ZERO).unwrap_err(),
        AcquireError::TimedOut
    );
    let free = Semaphore::new(1);
    assert!(free.acquire_timeout(Duration::ZERO).is_ok());
    assert!(free.acquire_timeout(Duration::MAX).is_ok());
}

#[test]
fn threads_and_tasks_wait_in_one_fifo_queue() {
    let sem = Arc::new(Semaphore::new(1));
    let held = sem.try_acquire().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut joins = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (s, o) = (sem.clone(), order.clone());
        if i % 2 == 0 {
            joins.push(thread::spawn(move || {
                let _p = s.acquire_blocking().unwrap();
                o.lock().unwrap().push(i);
            }));
        } else {
            tasks.push(rt.spawn(async move {
                let _p = s.acquire().await.unwrap();
                o.lock().unwrap().push(i);
            }));
        }
        // Queue them one after another.
        eventually("sem.waiting() == i + 1", || sem.waiting() == i + 1);
    }
    drop(held);
    joins.into_iter().for_each(|j| j.join().unwrap());
    rt.block_on(async {
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_large_request_keeps_its_place_against_later_small_ones() {
    let sem = Arc::new(Semaphore::new(3));
    let a = sem.try_acquire_many(3).unwrap();
    let s = sem.clone();
    let big = thread::spawn(move || s.acquire_many_blocking(3).map(|p| p.count()));
    eventually("sem.waiting() == 1", || sem.waiting() == 1);
    // Permits come back one by one; a later single request must not take
    // them while the big one waits.
    let mut a = a;
    let one = a.split(1).unwrap();
    drop(one);
    assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
    assert_eq!(
        sem.available(),
        0,
        "the freed permit is reserved for the head"
    );
    let s = sem.clone();
    let small = thread::spawn(move || s.acquire_blocking().map(|p| p.count()));
    eventually("sem.waiting() == 2", || sem.waiting() == 2);
    drop(a);
    assert_eq!(big.join().unwrap(), Ok(3));
    assert_eq!(small.join().unwrap(), Ok(1));
    assert_eq!(sem.available(), 3);
}

#[test]
fn higher_priority_waiters_are_served_first_and_equals_in_order() {
    let sem = Semaphore::new(1);
    let held = sem.try_acquire().unwrap();
    // (label, priority), queued in this order.
    let queued = [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1), ("f", 9)];
    let mut futs: Vec<_> = queued
        .iter()
        .map(|&(label, p)| (label, Box::pin(sem.acquire_prioritized(1, p))))
        .collect();
    for (_, f) in &mut futs {
        assert!(poll_once(f).is_pending());
    }
    assert_eq!(sem.waiting(), 6);
    drop(held);
    let mut order = Vec::new();
    while !futs.is_empty() {
        let i = futs
            .iter_mut()
            .position(|(_, f)| poll_once(f).is_ready())
            .expect("one waiter holds the permit");
        // `poll_once` consumed the permit: hand it back by dropping the
        // permit it returned (it was dropped with the Ready value).
        order.push(futs.remove(i).0);
    }
    assert_eq!(order, ["f", "b", "d", "a", "c", "e"]);
    assert_eq!(sem.available(), 1);
}

#[test]
fn a_priority_waiter_never_overtakes_a_partly_served_head() {
    let sem = Semaphore::new(2);
    let mut held = sem.try_acquire_many(2).unwrap();
    let mut big = Box::pin(sem.acquire_many(2));
    assert!(poll_once(&mut big).is_pending());
    drop(held.split(1).unwrap()); // the head now holds 1 of its 2
    let mut urgent = Box::pin(sem.acquire_prioritized(1, 100));
    assert!(poll_once(&mut urgent).is_pending());
    drop(held);
    assert!(matches!(poll_once(&mut big), Poll::Ready(Ok(ref p)) if p.count() == 2));
    assert!(matches!(poll_once(&mut urgent), Poll::Ready(Ok(_))));
}

#[test]
fn dropping_a_pending_acquire_leaves_no_waiter_and_no_permit() {
    let sem = Semaphore::new(2);
    let held = sem.try_acquire_many(2).unwrap();
    {
        let mut fut = pin!(sem.acquire_many(2));
        assert!(poll_once(&mut fut).is_pending());
        assert_eq!(sem.waiting(), 1);
        // One permit comes back and is reserved for the waiter...
        let mut held = held;
        drop(held.split(1));
        assert!(poll_once(&mut fut).is_pending());
        assert_eq!(sem.available(), 0);
        // ... and returns to the semaphore when the future is dropped.
        drop(held);
    }
    assert_eq!((sem.waiting(), sem.available(), sem.in_use()), (0, 2, 0));
    // Granted but never polled to completion: the permits come back too.
    let held = sem.try_acquire_many(2).unwrap();
    let mut fut = Box::pin(sem.acquire());
    assert!(poll_once(&mut fut).is_pending());
    drop(held);
    assert_eq!(sem.waiting(), 0);
    drop(fut);
    assert_eq!(sem.available(), 2);
}

#[test]
fn close_wakes_every_waiter_with_an_error() {
    let sem = Arc::new(Semaphore::new(1));
    let held = sem.try_acquire().unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let s = sem.clone();
            thread::spawn(move || s.acquire_blocking().map(|p| p.count()))
        })
        .collect();
    let mut fut = Box::pin(sem.acquire());
    assert!(poll_once(&mut fut).is_pending());
    eventually("sem.waiting() == 4", || sem.waiting() == 4);
    sem.close();
    assert!(sem.is_closed());
    for w in waiters {
        assert_eq!(w.join().unwrap(), Err(AcquireError::Closed));
    }
    assert!(matches!(
        poll_once(&mut fut),
        Poll::Ready(Err(AcquireError::Closed))
    ));
    assert_eq!(sem.waiting(), 0);
    // After close: errors at once; held permits still return.
    assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::Closed);
    assert_eq!(sem.acquire_blocking().unwrap_err(), AcquireError::Closed);
    drop(held);
    assert_eq!(sem.available(), 1);
    sem.close(); // idempotent
}

#[test]
fn resizing_grows_at_once_and_shrinks_as_permits_return() {
    let sem = Semaphore::new(2);
    let a = sem.try_acquire_many(2).unwrap();
    sem.add_permits(1).unwrap();
    assert_eq!((sem.permits(), sem.available()), (3, 1));
    // Shrink to 1 while 2 are held: the free one goes now, one more later.
    sem.resize(1).unwrap();
    assert_eq!((sem.permits(), sem.available()), (1, 0));
    drop(a);
    assert_eq!((sem.permits(), sem.available(), sem.in_use()), (1, 1, 0));
    // Grow again; forget what is free.
    sem.resize(4).unwrap();
    assert_eq!(sem.available(), 4);
    assert_eq!(sem.forget_permits(3), 3);
    assert_eq!(sem.forget_permits(5), 1);
    assert_eq!((sem.permits(), sem.available()), (0, 0));
    sem.add_permits(2).unwrap();
    let p = sem.try_acquire().unwrap();
    p.forget();
    assert_eq!((sem.permits(), sem.available(), sem.in_use()), (1, 1, 0));
}

#[test]
fn growing_serves_waiters() {
    let sem = Arc::new(Semaphore::new(0));
    let s = sem.clone();
    let t = thread::spawn(move || s.acquire_many_blocking(2).map(|p| p.count()));
    eventually("sem.waiting() == 1", || sem.waiting() == 1);
    sem.resize(2).unwrap();
    assert_eq!(t.join().unwrap(), Ok(2));
}

#[test]
fn bad_input_is_a_clear_error() {
    assert!(Semaphore::try_new(MAX_PERMITS + 1).is_err());
    let msg = std::panic::catch_unwind(|| Semaphore::new(usize::MAX))
        .err()
        .and_then(|e| e.downcast_ref::<String>().cloned())
        .unwrap();
    assert!(msg.contains("exceed the limit"), "{msg}");
    let sem = Semaphore::new(MAX_PERMITS);
    let e = sem.add_permits(1).unwrap_err();
    assert!(e.to_string().contains("exceed"), "{e}");
    assert_eq!(
        sem.try_acquire_many(usize::MAX).unwrap_err(),
        TryAcquireError::TooMany {
            requested: usize::MAX
        }
    );
    assert!(matches!(
        sem.acquire_many_blocking(MAX_PERMITS + 1),
        Err(AcquireError::TooMany { .. })
    ));
    // Zero permits: a semaphore that blocks until permits are added.
    let zero = Semaphore::new(0);
    assert_eq!(zero.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
    // A request for zero permits succeeds at once.
    assert_eq!(zero.try_acquire_many(0).unwrap().count(), 0);
}

#[test]
fn async_acquire_on_tokio_bounds_concurrency() {
    let sem = Arc::new(Semaphore::new(4));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let (s, r, p) = (sem.clone(), running.clone(), peak.clone());
            set.spawn(async move {
                let _permit = s.acquire_owned().await.unwrap();
                let now = r.fetch_add(1, SeqCst) + 1;
                p.fetch_max(now, SeqCst);
                tokio::task::yield_now().await;
                r.fetch_sub(1, SeqCst);
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    assert!(peak.load(SeqCst) <= 4);
    assert_eq!((sem.available(), sem.waiting()), (4, 0));
}

#[test]
fn stress_cancel_safety_half_of_100k_acquires_dropped_mid_wait() {
    let sem = Arc::new(Semaphore::new(8));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let completed = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..100_000u64 {
            let (s, c) = (sem.clone(), completed.clone());
            // A cheap deterministic scramble picks the half that is dropped.
            let dropped = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 63) == 1;
            set.spawn(async move {
                let n = 1 + (i % 3) as usize;
                if dropped {
                    // Dropped after being queued (if it had to wait).
                    let mut fut = Box::pin(s.acquire_many(n));
                    let _ = futures_lite::future::poll_once(&mut fut).await;
                    tokio::task::yield_now().await;
                    drop(fut);
                } else {
                    let _p = s.acquire_many(n).await.unwrap();
                    tokio::task::yield_now().await;
                    c.fetch_add(1, SeqCst);
                }
            });
            if i % 1000 == 0 {
                tokio::task::yield_now().await;
            }
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    assert!(completed.load(SeqCst) > 40_000);
    assert_eq!(
        (sem.available(), sem.waiting(), sem.in_use()),
        (8, 0, 0),
        "every permit is back and no waiter remains"
    );
}

#[test]
fn stress_threads_and_timeouts_never_exceed_the_limit() {
    let sem = Arc::new(Semaphore::new(3));
    let inside = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (s, inside) = (sem.clone(), inside.clone());
            thread::spawn(move || {
                for i in 0..2_000 {
                    let permit = if (t + i) % 4 == 0 {
                        s.acquire_timeout(Duration::from_micros(50)).ok()
                    } else {
                        Some(s.acquire_blocking().unwrap())
                    };
                    if let Some(_p) = permit {
                        let now = inside.fetch_add(1, SeqCst) + 1;
                        assert!(now <= 3, "{now} holders of 3 permits");
                        inside.fetch_sub(1, SeqCst);
                    }
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!((sem.available(), sem.waiting(), sem.in_use()), (3, 0, 0));
}

#[test]
fn monitor_samples_on_its_period_and_stops() {
    let sem = Arc::new(Semaphore::new(2));
    let _p = sem.try_acquire().unwrap();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let (s, out) = (sem.clone(), samples.clone());
    let monitor = Monitor::start(
        Duration::from_millis(2),
        move || (s.in_use(), s.available()),
        move |v| out.lock().unwrap().push(v),
    )
    .unwrap();
    eventually("samples.lock().unwrap().len() >= 3", || {
        samples.lock().unwrap().len() >= 3
    });
    monitor.stop();
    let n = samples.lock().unwrap().len();
    thread::sleep(Duration::from_millis(10));
    assert_eq!(samples.lock().unwrap().len(), n, "no sample after stop");
    assert!(samples.lock().unwrap().iter().all(|&v| v == (1, 1)));
    assert!(Monitor::start(Duration::ZERO, || (), |_| ()).is_err());
}

// ----- misuse: call sequences off the happy path, thread exit ------------------

#[test]
fn an_acquire_polled_then_waited_on_queues_once_and_gets_the_permit() {
    let sem = Arc::new(Semaphore::new(1));
    let held = sem.clone().try_acquire_owned().unwrap();
    let s = sem.clone();
    let (queued_tx, queued_rx) = std::sync::mpsc::channel();
    let t = thread::spawn(move || {
        let mut acq = s.acquire();
        assert!(poll_once(&mut acq).is_pending());
        queued_tx.send(()).unwrap();
        // The same waiter goes on waiting, now as this thread.
        acq.wait().map(|p| p.count())
    });
    queued_rx.recv().unwrap();
    eventually("sem.waiting() == 1", || sem.waiting() == 1);
    thread::sleep(Duration::from_millis(20));
    assert_eq!(sem.waiting(), 1, "one acquire counts as one waiter");
    drop(held);
    assert_eq!(t.join().unwrap(), Ok(1));
    assert_eq!((sem.available(), sem.waiting(), sem.in_use()), (1, 0, 0));
}

#[test]
fn an_acquire_polled_then_timed_out_leaves_no_waiter_behind() {
    let sem = Arc::new(Semaphore::new(1));
    let held = sem.clone().try_acquire_owned().unwrap();
    let s = sem.clone();
    thread::spawn(move || {
        let mut acq = s.clone().acquire_owned();
        assert!(poll_once(&mut acq).is_pending());
        let r = acq.wait_timeout(Duration::from_millis(30));
        assert_eq!(r.unwrap_err(), AcquireError::TimedOut);
        // Reuse the freed memory: a waiter left linked would be overwritten.
        let junk: Vec<Vec<u64>> = (0..4096).map(|i| vec![i; 8]).collect();
        drop(junk);
        let mut acq = s.acquire_many(1);
        assert!(poll_once(&mut acq).is_pending());
        assert_eq!(
            acq.wait_timeout(Duration::ZERO).unwrap_err(),
            AcquireError::TimedOut
        );
    })
    .join()
    .unwrap();
    assert_eq!(sem.waiting(), 0);
    drop(held);
    assert_eq!((sem.available(), sem.in_use()), (1, 0));
    // A future polled to a grant, then waited on, is a caller's bug: it
    // says so instead of acquiring twice.
    let mut acq = sem.acquire();
    assert!(poll_once(&mut acq).is_ready());
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| acq.wait())).unwrap_err();
    assert!(e
        .downcast_ref::<&str>()
        .unwrap()
        .contains("after it completed"));
    assert_eq!(sem.available(), 1);
}

#[test]
fn forgetting_permits_owed_to_a_shrink_pays_its_debt() {
    let sem = Semaphore::new(2);
    let held = sem.try_acquire_many(2).unwrap();
    sem.resize(0).unwrap();
    held.forget();
    assert_eq!((sem.permits(), sem.available(), sem.in_use()), (0, 0, 0));
    sem.resize(2).unwrap();
    assert_eq!((sem.permits(), sem.available()), (2, 2));
    sem.add_permits(1).unwrap();
    assert_eq!(sem.available(), 3);
    // Partly owed: 1 of the 3 pays the debt, the other 2 lower the size
    // from 2 to 0.
    let a = sem.try_acquire_many(3).unwrap();
    sem.resize(2).unwrap();
    assert!(sem.try_acquire().is_err());
    a.forget();
    assert_eq!((sem.permits(), sem.available(), sem.in_use()), (0, 0, 0));
    // Nothing left owed: the size grows back, owned permits forget alike.
    sem.add_permits(2).unwrap();
    assert_eq!((sem.permits(), sem.available()), (2, 2));
    let sem = Arc::new(sem);
    let p = sem.clone().try_acquire_owned().unwrap();
    let q = sem.clone().try_acquire_owned().unwrap();
    sem.resize(1).unwrap();
    p.forget();
    assert_eq!((sem.permits(), sem.available(), sem.in_use()), (1, 0, 1));
    drop(q);
    assert_eq!((sem.permits(), sem.available(), sem.in_use()), (1, 1, 0));
}

#[test]
fn acquires_and_permits_dropped_during_thread_exit_are_safe() {
    use std::cell::RefCell;
    struct Kept {
        sem: Arc<Semaphore>,
        acq: Option<cenote::limit::AcquireOwned>,
        permit: Option<cenote::limit::OwnedPermit>,
    }
    impl Drop for Kept {
        fn drop(&mut self) {
            // Runs while the thread's locals are destroyed: a new acquire
            // and a blocking wait must not abort the process either.
            drop(self.acq.take());
            drop(self.permit.take());
            let late = self
                .sem
                .clone()
                .acquire_owned()
                .wait_timeout(Duration::from_millis(5));
            assert!(late.is_ok());
        }
    }
    thread_local! {
        static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
    }
    let sem = Arc::new(Semaphore::new(2));
    let held = sem.clone().try_acquire_owned().unwrap();
    let s = sem.clone();
    thread::spawn(move || {
        let permit = s.clone().try_acquire_owned().unwrap();
        let mut acq = s.clone().acquire_owned();
        assert!(poll_once(&mut acq).is_pending());
        // Touch the recycled-waiter local first, so it is destroyed early.
        drop(s.clone().acquire_owned().wait_timeout(Duration::ZERO));
        KEPT.with(|k| {
            *k.borrow_mut() = Some(Kept {
                sem: s,
                acq: Some(acq),
                permit: Some(permit),
            })
        });
    })
    .join()
    .unwrap();
    assert_eq!((sem.waiting(), sem.in_use(), sem.available()), (0, 1, 1));
    drop(held);
    assert_eq!(sem.available(), 2);
}

#[test]
fn zero_permits_are_always_free_and_a_split_permit_lives_as_long_as_its_source() {
    let sem = Semaphore::new(2);
    let mut held = sem.try_acquire_many(2).unwrap();
    sem.resize(1).unwrap(); // a shrink owed one permit
    assert_eq!(sem.try_acquire_many(0).unwrap().count(), 0);
    // Both halves kept side by side, each released on its own.
    let half = held.split(1).unwrap();
    let both = (held, half);
    assert_eq!(sem.in_use(), 2);
    drop(both);
    assert_eq!((sem.permits(), sem.available()), (1, 1));
}
