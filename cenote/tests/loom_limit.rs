//! Loom models of the semaphore's waiter queue: acquire, cancel, release,
//! resize, close, and a blocking waiter mixed with an async one (see
//! `src/limit/DESIGN.md`). Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p cenote --test loom_limit --release`.
//!
//! Under loom the semaphore's atomics, mutexes and thread parking are
//! loom's, so each model explores the interleavings of the real code. Every
//! wait here ends by a wake-up (loom has no clock): a lost wake-up shows up
//! as a deadlock report.
#![cfg(loom)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use cenote::limit::{AcquireError, Semaphore};
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(Noop));
    Pin::new(f).poll(&mut Context::from_waker(&waker))
}

/// Runs a future on the calling loom thread, parking between polls (the
/// waker unparks it), as an executor would.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

fn settled(sem: &Semaphore, permits: usize) {
    assert_eq!(sem.waiting(), 0, "no waiter remains");
    assert_eq!(sem.available(), permits, "every permit is back");
    assert_eq!(sem.in_use(), 0);
}

#[test]
fn two_threads_share_one_permit() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (s, inside) = (sem.clone(), inside.clone());
                thread::spawn(move || {
                    let _p = s.acquire_blocking().unwrap();
                    assert_eq!(inside.fetch_add(1, SeqCst), 0, "two holders of one permit");
                    inside.fetch_sub(1, SeqCst);
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        settled(&sem, 1);
    });
}

#[test]
fn a_blocking_and_an_async_waiter_are_both_served() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.try_acquire().unwrap();
        let s = sem.clone();
        let blocking = thread::spawn(move || drop(s.acquire_blocking().unwrap()));
        let s = sem.clone();
        let task = thread::spawn(move || drop(block_on(s.acquire()).unwrap()));
        drop(held);
        blocking.join().unwrap();
        task.join().unwrap();
        settled(&sem, 1);
    });
}

#[test]
fn a_cancelled_acquire_racing_a_release_leaves_nothing_behind() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.try_acquire().unwrap();
        let s = sem.clone();
        let t = thread::spawn(move || {
            let mut fut = Box::pin(s.acquire());
            // Ready if the release came first; dropped either way.
            let _ = poll_once(&mut fut);
        });
        drop(held);
        t.join().unwrap();
        settled(&sem, 1);
    });
}

#[test]
fn a_partial_grant_cancelled_returns_its_permits() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(2));
        let mut held = sem.try_acquire_many(2).unwrap();
        let one = held.split(1).unwrap().count();
        assert_eq!(one, 1);
        let s = sem.clone();
        let t = thread::spawn(move || {
            let mut fut = Box::pin(s.acquire_many(2));
            let _ = poll_once(&mut fut);
        });
        drop(held);
        t.join().unwrap();
        settled(&sem, 2);
    });
}

#[test]
fn close_racing_a_waiter_wakes_it() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let s = sem.clone();
        let t = thread::spawn(move || s.acquire_blocking().map(|p| p.count()));
        sem.close();
        assert_eq!(t.join().unwrap(), Err(AcquireError::Closed));
        settled(&sem, 0);
    });
}

#[test]
fn shrinking_racing_releases_settles_at_the_new_size() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(2));
        let held = sem.try_acquire_many(2).unwrap();
        let s = sem.clone();
        let t = thread::spawn(move || s.resize(1).unwrap());
        drop(held);
        t.join().unwrap();
        assert_eq!(sem.permits(), 1);
        settled(&sem, 1);
    });
}

#[test]
fn a_many_permit_waiter_gets_permits_released_by_two_threads() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(2));
        let mut a = sem.try_acquire_many(2).unwrap();
        let s = sem.clone();
        let waiter = thread::spawn(move || s.acquire_many_blocking(2).map(|p| p.count()));
        // Both permits come back from different threads.
        let b = a.split(1).unwrap().count();
        assert_eq!(b, 1);
        let s = sem.clone();
        let releaser = thread::spawn(move || {
            // Return one permit from another thread: take it over first.
            let p = s.try_acquire();
            drop(p);
        });
        drop(a);
        releaser.join().unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(2));
        settled(&sem, 2);
    });
}

#[test]
fn a_waiter_repolled_with_a_new_waker_while_a_release_grants_it() {
    // The re-poll updates the waker in the waiter's queue node while the
    // release may be unlinking that node: the node is touched only under
    // the queue lock (loom checks every access to it).
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.clone().try_acquire_owned().unwrap();
        let releaser = thread::spawn(move || drop(held));
        let mut acquire = sem.acquire();
        // A second poll, as after a spurious wake-up, with another waker.
        if poll_once(&mut acquire).is_pending() && poll_once(&mut acquire).is_pending() {
            drop(block_on(acquire).unwrap());
        }
        releaser.join().unwrap();
        settled(&sem, 1);
    });
}

/// An acquire polled (queued with a no-op waker) and then waited on, as a
/// thread, while another thread releases: the one waiter is re-pointed at
/// the thread under the queue lock, so the grant wakes it, whether it lands
/// before, during or after the re-pointing.
#[test]
fn a_polled_acquire_then_waited_on_is_woken_by_the_release() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.clone().try_acquire_owned().unwrap();
        let s = sem.clone();
        let waiter = thread::spawn(move || {
            let mut acq = s.acquire();
            let first = poll_once(&mut acq);
            let got = match first {
                Poll::Ready(r) => r.map(|p| p.count()),
                Poll::Pending => acq.wait().map(|p| p.count()),
            };
            assert_eq!(got, Ok(1));
        });
        drop(held);
        waiter.join().unwrap();
        settled(&sem, 1);
    });
}

/// A waiter counted in `waiting()` is queued for good: a permit released
/// after that count was seen goes to it, never to a later `try_acquire`
/// (the count is published after SLOW is set, so the release takes the
/// queue's path).
#[test]
fn a_waiter_seen_in_waiting_gets_the_next_release() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.try_acquire().unwrap();
        let checked = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let (s, c) = (sem.clone(), checked.clone());
        let waiter = thread::spawn(move || {
            let mut acquire = s.acquire();
            // Queued by its first poll (a task's path: no spin first).
            let permit = match poll_once(&mut acquire) {
                Poll::Ready(p) => p.unwrap(),
                Poll::Pending => acquire.wait().unwrap(),
            };
            // Held until the main thread has looked.
            while !c.load(SeqCst) {
                thread::yield_now();
            }
            drop(permit);
        });
        while sem.waiting() == 0 {
            thread::yield_now();
        }
        drop(held);
        let stolen = sem.try_acquire().is_ok();
        checked.store(true, SeqCst);
        waiter.join().unwrap();
        assert!(
            !stolen,
            "a permit released after the waiter was counted went to a later try_acquire"
        );
        settled(&sem, 1);
    });
}
