//! Misuse, through the public API only: user callbacks that call back into their own pool
//! (re-entry), panics injected at every user-code boundary, and guards, permits, futures and
//! handles kept in thread-locals and dropped as their thread exits. Nothing may deadlock, abort
//! or leak, and the counts must be right afterwards. Waits are bounded (`within`, `eventually`),
//! so a deadlock fails its test instead of hanging the suite. A test marked
//! `#[ignore = "defect: ..."]` pins a defect found this way; run it with `--ignored`.
#![cfg(not(loom))]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier, Mutex, Once};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::thread;
use std::time::Duration;

mod common;
use common::{eventually, eventually_async, within, within_async};

// ----- helpers ----------------------------------------------------------------------

/// How long a test waits for something that should happen at once before it calls it a hang.
const HANG: Duration = Duration::from_secs(10);

/// A message every panic injected on purpose carries (the quiet hook hides them).
const ON_PURPOSE: &str = "on purpose";

/// A panic payload whose own `Drop` panics: whoever catches it and drops it panics again.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("the panic payload's drop panicked {ON_PURPOSE}");
        }
    }
}

/// Installs (once) a panic hook that keeps the panics injected on purpose off stderr.
fn quiet() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            let injected = payload.is::<Bomb>() || text.is_some_and(|t| t.ends_with(ON_PURPOSE));
            if !injected {
                previous(info);
            }
        }));
    });
}

/// Panics with the on-purpose marker.
fn boom(what: &str) -> ! {
    panic!("{what} panicked {ON_PURPOSE}")
}

/// A value whose drop counts, and panics when asked to.
struct DropProbe {
    drops: Arc<AtomicUsize>,
    panic: bool,
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
        if self.panic && !thread::panicking() {
            boom("a drop");
        }
    }
}

/// A handle that a callback living inside its pool can reach without keeping the pool alive
/// for good: the test takes it out at the end, breaking the cycle.
type Slot<P> = Arc<Mutex<Option<P>>>;

fn slot<P>() -> Slot<P> {
    Arc::new(Mutex::new(None))
}

/// A clone of what the slot holds (the lock is not held while the caller uses it).
fn get<P: Clone>(s: &Slot<P>) -> Option<P> {
    s.lock().unwrap().clone()
}

/// A multi-thread tokio runtime of two workers.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// =====================================================================================
// workers
// =====================================================================================

mod workers {
    use super::*;
    use cenote::workers::{Balance, FnPool, MultiPool, Policy, Pool, SubmitError};

    // ----- (a) re-entry ---------------------------------------------------------------

    #[test]
    fn a_panic_handler_may_submit_resize_and_read_its_own_pool() {
        quiet();
        let me: Slot<Pool> = slot();
        let followups = Arc::new(AtomicUsize::new(0));
        let (m, f) = (me.clone(), followups.clone());
        let pool = Pool::builder()
            .capacity(2)
            .panic_handler(move |_| {
                let pool = get(&m).expect("set before the first task");
                let _ = (pool.stats(), pool.running(), pool.queued());
                pool.resize(2).unwrap();
                let f = f.clone();
                pool.submit(move || {
                    f.fetch_add(1, SeqCst);
                })
                .unwrap();
            })
            .build()
            .unwrap();
        *me.lock().unwrap() = Some(pool.clone());
        let p = pool.clone();
        within(move || {
            for _ in 0..20 {
                p.submit(|| boom("a task")).unwrap();
            }
            p.wait_idle();
        });
        assert_eq!(followups.load(SeqCst), 20);
        let s = pool.stats();
        assert_eq!((s.panicked, s.completed), (20, 20), "{s:?}");
        assert!(pool.running() <= pool.capacity());
        me.lock().unwrap().take();
    }

    #[test]
    fn a_panic_handler_run_on_the_submitting_thread_may_submit_again() {
        quiet();
        let me: Slot<Pool> = slot();
        let followups = Arc::new(AtomicUsize::new(0));
        let (m, f) = (me.clone(), followups.clone());
        // One thread, no queue, caller-runs: a busy pool runs the task (and the handler) on the
        // submitting thread, and the handler's own submit runs there too.
        let pool = Pool::builder()
            .capacity(1)
            .queue(0)
            .policy(Policy::CallerRuns)
            .panic_handler(move |_| {
                let f = f.clone();
                get(&m)
                    .unwrap()
                    .submit(move || {
                        f.fetch_add(1, SeqCst);
                    })
                    .unwrap();
            })
            .build()
            .unwrap();
        *me.lock().unwrap() = Some(pool.clone());
        let (tx, rx) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel();
        pool.submit(move || {
            started_tx.send(()).unwrap();
            let _ = rx.recv_timeout(HANG);
        })
        .unwrap();
        started.recv_timeout(HANG).unwrap();
        let p = pool.clone();
        within(move || p.submit(|| boom("a caller-run task")).unwrap());
        assert_eq!(followups.load(SeqCst), 1);
        drop(tx);
        let p = pool.clone();
        within(move || p.wait_idle());
        let s = pool.stats();
        assert_eq!((s.panicked, s.ran_on_caller), (1, 2), "{s:?}");
        me.lock().unwrap().take();
    }

    #[test]
    fn on_thread_start_may_submit_resize_wait_idle_and_open_a_scope_on_its_own_pool() {
        let me: Slot<Pool> = slot();
        let nested = Arc::new(AtomicUsize::new(0));
        let (m, n) = (me.clone(), nested.clone());
        let pool = Pool::builder()
            .capacity(2)
            .on_thread_start(move || {
                let Some(pool) = get(&m) else { return };
                pool.resize(2).unwrap();
                let n2 = n.clone();
                pool.submit(move || {
                    n2.fetch_add(1, SeqCst);
                })
                .unwrap();
                let mut local = 0;
                pool.scope(|s| {
                    let _ = s.spawn(|| local += 1);
                });
                assert_eq!(local, 1);
                // Bounded: tasks may be queued behind this thread (see the wait_idle defect).
                let _ = pool.wait_idle_timeout(Duration::from_millis(20));
            })
            .build()
            .unwrap();
        *me.lock().unwrap() = Some(pool.clone());
        let p = pool.clone();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        within(move || {
            for _ in 0..10 {
                let d = d.clone();
                p.submit(move || {
                    d.fetch_add(1, SeqCst);
                })
                .unwrap();
            }
            p.wait_idle();
        });
        assert_eq!(done.load(SeqCst), 10);
        // (Polled: a thread is counted started by its starter just after it starts.)
        eventually("one nested task per started thread", || {
            nested.load(SeqCst) == pool.stats().threads_started as usize
        });
        assert!(pool.running() <= pool.capacity());
        me.lock().unwrap().take();
        within(move || pool.shutdown_timeout(HANG).unwrap());
    }

    #[test]
    fn on_thread_stop_may_submit_wait_idle_and_shut_down_its_own_pool() {
        let me: Slot<Pool> = slot();
        let stops = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (m, s, r) = (me.clone(), stops.clone(), refused.clone());
        let pool = Pool::builder()
            .capacity(3)
            .prestart(3)
            .on_thread_stop(move || {
                s.fetch_add(1, SeqCst);
                let Some(pool) = get(&m) else { return };
                let _ = (pool.running(), pool.idle(), pool.stats());
                if let Err(SubmitError::Closed) = pool.submit(|| {}) {
                    r.fetch_add(1, SeqCst);
                }
                pool.wait_idle();
                let _ = pool.shutdown_timeout(Duration::from_millis(1));
            })
            .build()
            .unwrap();
        *me.lock().unwrap() = Some(pool.clone());
        // A shrink retires parked threads while the pool is open: the first hook's submit is
        // taken, then that hook shuts the pool down from inside.
        pool.resize(1).unwrap();
        eventually("two threads retired", || stops.load(SeqCst) >= 2);
        let p = pool.clone();
        within(move || p.shutdown_timeout(HANG).unwrap());
        eventually("every thread ran its stop hook", || {
            stops.load(SeqCst) == pool.stats().threads_started as usize
        });
        let st = pool.stats();
        assert_eq!(st.threads_started, st.threads_retired, "{st:?}");
        assert_eq!(pool.running(), 0);
        assert!(
            refused.load(SeqCst) >= 1,
            "the last stops see a closed pool"
        );
        me.lock().unwrap().take();
    }

    #[test]
    fn shutdown_timeout_is_not_ok_while_an_on_thread_stop_hook_still_runs() {
        let (release_tx, release) = mpsc::channel::<()>();
        let release = Mutex::new(release);
        let in_hook = Arc::new(AtomicBool::new(false));
        let h = in_hook.clone();
        let pool = Pool::builder()
            .capacity(1)
            .prestart(1)
            .on_thread_stop(move || {
                h.store(true, SeqCst);
                let _ = release.lock().unwrap().recv_timeout(HANG);
                h.store(false, SeqCst);
            })
            .build()
            .unwrap();
        let r = pool.shutdown_timeout(Duration::from_millis(300));
        let hook_running = in_hook.load(SeqCst);
        drop(release_tx);
        assert!(
            r.is_err() || !hook_running,
            "shutdown_timeout said every thread exited while its stop hook ran"
        );
    }

    #[test]
    fn a_task_calling_wait_idle_on_its_own_single_thread_pool_does_not_deadlock() {
        let pool = Pool::new(1).unwrap();
        let (queued_tx, queued) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let p = pool.clone();
        pool.submit(move || {
            started_tx.send(()).unwrap();
            queued.recv_timeout(HANG).unwrap();
            // Waits for the other tasks; the only other one is queued behind this one.
            p.wait_idle();
            done_tx.send("waiter").unwrap();
        })
        .unwrap();
        started.recv_timeout(HANG).unwrap();
        let d = done.recv_timeout(Duration::ZERO);
        assert!(d.is_err());
        let (other_tx, other) = mpsc::channel();
        pool.submit(move || other_tx.send("other").unwrap())
            .unwrap();
        queued_tx.send(()).unwrap();
        assert_eq!(
            other.recv_timeout(HANG),
            Ok("other"),
            "the queued task never ran"
        );
        assert_eq!(done.recv_timeout(HANG), Ok("waiter"));
    }

    #[test]
    fn tasks_waiting_idle_on_their_own_pool_never_wait_for_each_other() {
        let pool = Pool::new(2).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (p, b) = (pool.clone(), barrier.clone());
                pool.spawn(move || {
                    b.wait();
                    p.wait_idle();
                })
                .unwrap()
            })
            .collect();
        within(move || hs.into_iter().for_each(|h| h.join().unwrap()));
        let p = pool.clone();
        within(move || p.wait_idle());
        assert_eq!(pool.stats().completed, 2);
    }

    #[test]
    fn multipool_tasks_calling_wait_idle_on_their_multipool_do_not_deadlock() {
        let multi =
            Arc::new(MultiPool::new(2, Pool::builder().capacity(1), Balance::RoundRobin).unwrap());
        let barrier = Arc::new(Barrier::new(2));
        let (tx, rx) = mpsc::channel();
        for i in 0..2 {
            let (m, b, tx) = (multi.clone(), barrier.clone(), tx.clone());
            multi.pools()[i]
                .submit(move || {
                    b.wait();
                    m.wait_idle();
                    tx.send(i).unwrap();
                })
                .unwrap();
        }
        for _ in 0..2 {
            rx.recv_timeout(HANG)
                .expect("a task in multi.wait_idle() never returned");
        }
    }

    #[test]
    fn a_task_may_resize_close_reboot_and_shut_down_its_own_pool() {
        let pool = Pool::new(3).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        // Tune down and up from inside, with other tasks running.
        let p = pool.clone();
        let h = pool
            .spawn(move || {
                p.resize(1).unwrap();
                p.resize(4).unwrap();
                p.capacity()
            })
            .unwrap();
        for _ in 0..20 {
            let r = ran.clone();
            pool.submit(move || {
                r.fetch_add(1, SeqCst);
            })
            .unwrap();
        }
        assert!(within(move || h.join().unwrap()) >= 1);
        let p = pool.clone();
        within(move || p.wait_idle());
        assert_eq!(ran.load(SeqCst), 20);
        assert_eq!(pool.target_capacity(), 4);
        // Close from inside: later submits are refused, queued work still runs; reboot.
        let p = pool.clone();
        pool.spawn(move || p.close()).unwrap().join().unwrap();
        assert_eq!(pool.submit(|| {}), Err(SubmitError::Closed));
        pool.reboot();
        let r = ran.clone();
        pool.submit(move || {
            r.fetch_add(1, SeqCst);
        })
        .unwrap();
        // Shut down from inside: the call waits for the other task, then reports its own.
        let (gate_tx, gate) = mpsc::channel::<()>();
        let r = ran.clone();
        let other = pool
            .spawn(move || {
                let _ = gate.recv_timeout(HANG);
                r.fetch_add(1, SeqCst);
            })
            .unwrap();
        let (p, r) = (pool.clone(), ran.clone());
        let own = pool
            .spawn(move || {
                gate_tx.send(()).unwrap();
                let e = p.shutdown_timeout(HANG).unwrap_err();
                (e.from_own_task, r.load(SeqCst))
            })
            .unwrap();
        let (from_own_task, ran_by_then) = within(move || own.join().unwrap());
        assert!(from_own_task);
        assert_eq!(
            ran_by_then, 22,
            "shutdown_timeout waited for the other task"
        );
        within(move || other.join().unwrap());
        let p = pool.clone();
        within(move || p.shutdown_timeout(HANG).unwrap());
        assert_eq!(pool.running(), 0);
    }

    #[test]
    fn a_task_may_open_a_scope_on_its_own_single_thread_pool() {
        let pool = Pool::new(1).unwrap();
        let p = pool.clone();
        let h = pool
            .spawn(move || {
                let mut parts = [0u32; 4];
                p.scope(|s| {
                    for (i, part) in parts.iter_mut().enumerate() {
                        let _ = s.spawn(move || *part = i as u32 + 1);
                    }
                });
                // And a scope whose task opens one of its own.
                let mut inner = 0;
                p.scope(|s| {
                    let _ = s.spawn(|| p.scope(|s2| s2.spawn(|| inner = 7).join().unwrap()));
                });
                parts.iter().sum::<u32>() + inner
            })
            .unwrap();
        assert_eq!(within(move || h.join().unwrap()), 17);
        let p = pool.clone();
        within(move || p.wait_idle());
        assert_eq!(pool.running(), pool.idle());
    }

    #[test]
    fn an_fn_pool_function_may_resize_wait_idle_and_invoke_its_own_pool() {
        let me: Slot<FnPool<u32>> = slot();
        let seen = Arc::new(AtomicUsize::new(0));
        let (m, s) = (me.clone(), seen.clone());
        let pool = FnPool::new(2, move |x: u32| {
            s.fetch_add(1, SeqCst);
            let pool = get(&m).unwrap();
            match x {
                0 => {
                    pool.resize(1).unwrap();
                    pool.resize(2).unwrap();
                }
                1 => pool.wait_idle(),
                2 => {
                    for y in 100..110 {
                        pool.invoke(y).unwrap();
                    }
                }
                _ => {}
            }
        })
        .unwrap();
        *me.lock().unwrap() = Some(pool.clone());
        let p = pool.clone();
        within(move || {
            for x in 0..20 {
                p.invoke(x).unwrap();
            }
            p.wait_idle();
        });
        assert_eq!(seen.load(SeqCst), 30);
        // (Polled: the outer wait_idle may return while the call in wait_idle is still
        // finishing; see the defect below.)
        eventually("every call counted", || pool.stats().completed == 30);
        me.lock().unwrap().take();
    }

    #[test]
    fn an_outside_wait_idle_waits_for_a_task_that_is_itself_in_wait_idle() {
        // Racy by nature (the window is the waiting task's wake-up): tried many times.
        for round in 0..200 {
            let pool = Pool::new(2).unwrap();
            let finished = Arc::new(AtomicBool::new(false));
            let (p, f) = (pool.clone(), finished.clone());
            pool.submit(move || {
                p.wait_idle();
                // Work after the inner wait: the task has not finished yet.
                for _ in 0..100 {
                    thread::yield_now();
                }
                f.store(true, SeqCst);
            })
            .unwrap();
            pool.submit(|| {
                for _ in 0..100 {
                    thread::yield_now();
                }
            })
            .unwrap();
            let p = pool.clone();
            within(move || p.wait_idle());
            assert!(
                finished.load(SeqCst),
                "round {round}: wait_idle returned while a task was still running"
            );
        }
    }

    #[test]
    fn the_last_pool_handle_dropped_inside_the_panic_handler_closes_the_pool_cleanly() {
        quiet();
        let me: Slot<Pool> = slot();
        let (started, stopped, ran) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (m, st, sp) = (me.clone(), started.clone(), stopped.clone());
        let pool = Pool::builder()
            .capacity(2)
            .on_thread_start(move || {
                st.fetch_add(1, SeqCst);
            })
            .on_thread_stop(move || {
                sp.fetch_add(1, SeqCst);
            })
            .panic_handler(move |_| {
                let last = m.lock().unwrap().take();
                drop(last);
            })
            .build()
            .unwrap();
        *me.lock().unwrap() = Some(pool.clone());
        pool.submit(|| boom("a task")).unwrap();
        for _ in 0..20 {
            let r = ran.clone();
            pool.submit(move || {
                r.fetch_add(1, SeqCst);
            })
            .unwrap();
        }
        drop(pool);
        eventually(
            "accepted tasks ran after the handler closed the pool",
            || ran.load(SeqCst) == 20,
        );
        eventually("every thread exited", || {
            let s = started.load(SeqCst);
            s > 0 && stopped.load(SeqCst) == s
        });
        assert!(me.lock().unwrap().is_none());
    }

    // ----- (b) panics -----------------------------------------------------------------

    #[test]
    fn panicking_task_bodies_and_drops_are_caught_and_counted() {
        quiet();
        let pool = Pool::new(2).unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let ok = Arc::new(AtomicUsize::new(0));
        for i in 0..30 {
            let probe = DropProbe {
                drops: drops.clone(),
                panic: i % 3 == 1,
            };
            let ok = ok.clone();
            pool.submit(move || {
                let _probe = probe;
                match i % 3 {
                    0 => boom("a task"),
                    _ => ok.fetch_add(1, SeqCst),
                };
            })
            .unwrap();
        }
        // A spawned task whose closure's drop panics after it returned a value: the value is
        // delivered or the panic is, never a hang.
        let probe = DropProbe {
            drops: drops.clone(),
            panic: true,
        };
        let h = pool
            .spawn(move || {
                let _p = probe;
                5
            })
            .unwrap();
        let joined = within(move || h.join());
        assert!(matches!(joined, Ok(5)) || joined.as_ref().is_err_and(|e| e.is_panic()));
        let p = pool.clone();
        within(move || p.wait_idle());
        assert_eq!(drops.load(SeqCst), 31);
        assert_eq!(ok.load(SeqCst), 20);
        let s = pool.stats();
        assert_eq!(s.completed + s.panicked, 31, "{s:?}");
        assert_eq!(s.panicked, 10 + 10 + u64::from(joined.is_err()), "{s:?}");
        // Still serving, within its capacity.
        assert_eq!(pool.spawn(|| 1).unwrap().join().unwrap(), 1);
        assert!(pool.running() <= 2);
    }

    #[test]
    fn a_closure_refused_unrun_may_panic_in_its_drop_and_the_pool_stays_usable() {
        quiet();
        let pool = Pool::builder()
            .capacity(1)
            .queue(0)
            .policy(Policy::Reject)
            .build()
            .unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel();
        pool.submit(move || {
            started_tx.send(()).unwrap();
            let _ = rx.recv_timeout(HANG);
        })
        .unwrap();
        started.recv_timeout(HANG).unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let probe = DropProbe {
            drops: drops.clone(),
            panic: true,
        };
        // Refused: the closure comes back to the caller and is dropped there (its panic too).
        let r = catch_unwind(AssertUnwindSafe(|| pool.try_submit(move || drop(probe))));
        assert!(r.is_err() || matches!(r, Ok(Err(SubmitError::Full))));
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(pool.stats().rejected, 1);
        drop(tx);
        let p = pool.clone();
        within(move || p.wait_idle());
        let h = pool.spawn(|| 3).unwrap();
        assert_eq!(within(move || h.join().unwrap()), 3);
        assert_eq!((pool.running(), pool.waiting()), (1, 0));
    }

    #[test]
    fn a_panicking_fn_pool_function_and_argument_drop_leave_it_serving() {
        quiet();
        let drops = Arc::new(AtomicUsize::new(0));
        let pool = FnPool::new(2, |p: DropProbe| {
            if p.panic {
                // Its argument is dropped while unwinding: no second panic there.
                boom("an FnPool function");
            }
        })
        .unwrap();
        for i in 0..20 {
            pool.invoke(DropProbe {
                drops: drops.clone(),
                panic: i % 2 == 0,
            })
            .unwrap();
        }
        let p = pool.clone();
        within(move || p.wait_idle());
        assert_eq!(drops.load(SeqCst), 20);
        let s = pool.stats();
        assert_eq!((s.completed, s.panicked), (10, 10), "{s:?}");
        assert!(pool.running() <= 2);
    }

    #[test]
    fn panicking_scope_tasks_are_reported_after_all_finish_and_the_pool_keeps_serving() {
        quiet();
        let pool = Pool::new(2).unwrap();
        let finished = AtomicUsize::new(0);
        // Joined: the panic is the join's error; the scope returns.
        let joined = pool.scope(|s| {
            let h = s.spawn(|| boom("a scoped task"));
            let _ = s.spawn(|| finished.fetch_add(1, SeqCst));
            h.join()
        });
        assert!(joined.unwrap_err().is_panic());
        // Not joined: the scope panics, after every task finished.
        let drops = Arc::new(AtomicUsize::new(0));
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                let probe = DropProbe {
                    drops: drops.clone(),
                    panic: true,
                };
                let _ = s.spawn(move || drop(probe));
                let _ = s.spawn(|| boom("a scoped task"));
                for _ in 0..5 {
                    let _ = s.spawn(|| {
                        thread::yield_now();
                        finished.fetch_add(1, SeqCst);
                    });
                }
            })
        }));
        assert!(r.is_err(), "an unjoined panic makes the scope panic");
        assert_eq!(finished.load(SeqCst), 6, "every other scoped task ran");
        assert_eq!(drops.load(SeqCst), 1);
        let p = pool.clone();
        within(move || p.wait_idle());
        assert_eq!(pool.spawn(|| 2).unwrap().join().unwrap(), 2);
        assert_eq!(pool.stats().panicked, 3);
    }

    #[test]
    fn panicking_thread_hooks_are_caught_and_threads_keep_serving() {
        quiet();
        let pool = Pool::builder()
            .capacity(2)
            .on_thread_start(|| boom("on_thread_start"))
            .on_thread_stop(|| boom("on_thread_stop"))
            .build()
            .unwrap();
        let hs: Vec<_> = (0..10).map(|i| pool.spawn(move || i).unwrap()).collect();
        let sum = within(move || hs.into_iter().map(|h| h.join().unwrap()).sum::<i32>());
        assert_eq!(sum, 45);
        let p = pool.clone();
        within(move || p.shutdown_timeout(HANG).unwrap());
        assert_eq!(pool.running(), 0);
        // (Polled: a thread is counted retired just after its slot comes back, which is
        // what shutdown_timeout waits for; see the stop-hook defect above.)
        eventually("every thread counted retired", || {
            let s = pool.stats();
            s.threads_started == s.threads_retired
        });
        assert_eq!(pool.stats().completed, 10);
    }

    #[test]
    fn a_panic_handler_that_panics_on_a_caller_run_task_does_not_reach_the_submitter() {
        quiet();
        let pool = Pool::builder()
            .capacity(1)
            .queue(0)
            .policy(Policy::CallerRuns)
            .panic_handler(|_| boom("a panic handler"))
            .build()
            .unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel();
        pool.submit(move || {
            started_tx.send(()).unwrap();
            let _ = rx.recv_timeout(HANG);
        })
        .unwrap();
        started.recv_timeout(HANG).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| pool.submit(|| boom("a task"))));
        assert!(
            matches!(r, Ok(Ok(()))),
            "the submit itself neither failed nor panicked"
        );
        drop(tx);
        let p = pool.clone();
        within(move || p.wait_idle());
        let s = pool.stats();
        assert_eq!(
            (s.panicked, s.ran_on_caller, s.completed),
            (1, 1, 1),
            "{s:?}"
        );
    }

    #[test]
    fn a_task_panic_whose_payload_panics_on_drop_does_not_kill_its_worker() {
        quiet();
        let pool = Pool::new(1).unwrap();
        pool.submit(|| std::panic::panic_any(Bomb)).unwrap();
        // One thread: if the panic killed it without giving its slot back, nothing runs again.
        let mut h = pool.spawn(|| 1).unwrap();
        assert_eq!(
            h.join_timeout(HANG).ok(),
            Some(1),
            "the pool stopped serving"
        );
        let p = pool.clone();
        assert!(within(move || p.wait_idle_timeout(HANG)));
        assert_eq!(pool.stats().panicked, 1);
        let p = pool.clone();
        within(move || p.shutdown_timeout(HANG).unwrap());
        assert_eq!(pool.running(), 0);
    }

    #[test]
    fn a_panic_handler_panicking_with_a_payload_that_panics_on_drop_does_not_kill_its_worker() {
        quiet();
        let pool = Pool::builder()
            .capacity(1)
            .panic_handler(|_| std::panic::panic_any(Bomb))
            .build()
            .unwrap();
        pool.submit(|| boom("a task")).unwrap();
        let mut h = pool.spawn(|| 1).unwrap();
        assert_eq!(
            h.join_timeout(HANG).ok(),
            Some(1),
            "the pool stopped serving"
        );
        let p = pool.clone();
        within(move || p.shutdown_timeout(HANG).unwrap());
        assert_eq!(pool.running(), 0);
    }

    // ----- (c) thread exit ------------------------------------------------------------

    thread_local! {
        static HANDLES: RefCell<Option<Vec<cenote::workers::JoinHandle<u32>>>> =
            const { RefCell::new(None) };
        static POOL_AND_HANDLE: RefCell<Option<(Pool, cenote::workers::JoinHandle<u32>)>> =
            const { RefCell::new(None) };
        static TOUCHED: Cell<u32> = const { Cell::new(0) };
    }

    /// Joins a handle at thread exit, from a thread-local's destructor.
    struct JoinAtExit(Option<cenote::workers::JoinHandle<u32>>, mpsc::Sender<u32>);

    impl Drop for JoinAtExit {
        fn drop(&mut self) {
            if let Some(mut h) = self.0.take() {
                let _ = self.1.send(h.join_timeout(HANG).unwrap_or(0));
            }
        }
    }

    thread_local! {
        static JOIN_AT_EXIT: RefCell<Option<JoinAtExit>> = const { RefCell::new(None) };
    }

    #[test]
    fn workers_join_handles_in_thread_locals_are_dropped_or_joined_at_thread_exit() {
        let pool = Pool::new(2).unwrap();
        let (go_tx, go) = mpsc::channel::<()>();
        let go = Arc::new(Mutex::new(go));
        for late in [false, true] {
            let (p, g) = (pool.clone(), go.clone());
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                if late {
                    // Other locals first: the handles' local is destroyed before them.
                    TOUCHED.with(|t| t.set(1));
                    let _ = thread::current().name();
                }
                let finished = p.spawn(|| 1).unwrap();
                let blocked = p
                    .spawn(move || {
                        let _ = g.lock().unwrap().recv_timeout(HANG);
                        2
                    })
                    .unwrap();
                HANDLES.with(|h| *h.borrow_mut() = Some(vec![finished, blocked]));
                let joined = p.spawn(|| 3).unwrap();
                JOIN_AT_EXIT.with(|j| *j.borrow_mut() = Some(JoinAtExit(Some(joined), tx)));
                if !late {
                    TOUCHED.with(|t| t.set(1));
                }
            })
            .join()
            .unwrap();
            assert_eq!(rx.recv_timeout(HANG), Ok(3), "joined at thread exit");
            go_tx.send(()).unwrap();
        }
        let p = pool.clone();
        within(move || p.wait_idle());
        assert_eq!(pool.stats().completed, 6);
    }

    #[test]
    fn a_pool_reachable_only_from_a_thread_local_closes_at_thread_exit_and_runs_its_work() {
        let ran = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let (r, s, st) = (ran.clone(), stopped.clone(), started.clone());
        thread::spawn(move || {
            TOUCHED.with(|t| t.set(2));
            let pool = Pool::builder()
                .capacity(2)
                .on_thread_start(move || {
                    st.fetch_add(1, SeqCst);
                })
                .on_thread_stop(move || {
                    s.fetch_add(1, SeqCst);
                })
                .build()
                .unwrap();
            for _ in 0..50 {
                let r = r.clone();
                pool.submit(move || {
                    r.fetch_add(1, SeqCst);
                })
                .unwrap();
            }
            let h = pool.spawn(|| 9).unwrap();
            POOL_AND_HANDLE.with(|x| *x.borrow_mut() = Some((pool, h)));
        })
        .join()
        .unwrap();
        eventually("queued work ran after the last handle went", || {
            ran.load(SeqCst) == 50
        });
        eventually("the closed pool's threads exited", || {
            let st = started.load(SeqCst);
            st > 0 && stopped.load(SeqCst) == st
        });
    }
}

/// A waker that runs `f` when woken (by value or by reference).
struct FnWaker<F: Fn() + Send + Sync + 'static>(F);

impl<F: Fn() + Send + Sync + 'static> std::task::Wake for FnWaker<F> {
    fn wake(self: Arc<Self>) {
        (self.0)();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        (self.0)();
    }
}

fn fn_waker(f: impl Fn() + Send + Sync + 'static) -> Waker {
    Waker::from(Arc::new(FnWaker(f)))
}

/// A waker that sets a flag when woken.
fn flag_waker() -> (Waker, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    (fn_waker(move || f.store(true, SeqCst)), flag)
}

/// Polls `f` once with `waker`.
fn poll_with<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

/// Polls `f` once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    poll_with(f, &fn_waker(|| {}))
}

// =====================================================================================
// limit
// =====================================================================================

mod limit {
    use super::*;
    use cenote::limit::{Acquire, AcquireOwned, Monitor, OwnedPermit, Permit, Semaphore};

    // ----- (a) re-entry ---------------------------------------------------------------

    #[test]
    fn a_waker_that_reenters_the_semaphore_when_woken_does_not_deadlock() {
        within(|| {
            let sem = Arc::new(Semaphore::new(1));
            let held = sem.try_acquire().unwrap();
            let reentries = Arc::new(AtomicUsize::new(0));
            let (s, r) = (sem.clone(), reentries.clone());
            let waker = fn_waker(move || {
                // Woken with the queue lock released: every method may be called.
                r.fetch_add(1, SeqCst);
                s.add_permits(1).unwrap();
                assert_eq!(s.forget_permits(1), 1);
                drop(s.try_acquire());
                let _ = (s.available(), s.in_use(), s.waiting(), s.permits());
            });
            let mut acq = sem.acquire();
            assert!(poll_with(&mut acq, &waker).is_pending());
            drop(held); // hands the permit over and wakes the waker
            assert_eq!(reentries.load(SeqCst), 1);
            let Poll::Ready(Ok(permit)) = poll_with(&mut acq, &waker) else {
                panic!("the permit was handed over")
            };
            assert_eq!((sem.in_use(), sem.waiting(), sem.permits()), (1, 0, 1));
            drop(permit);
            // A close wakes with the lock released too; the waker may close again.
            let held = sem.try_acquire().unwrap();
            let s = sem.clone();
            let closer = fn_waker(move || {
                s.close();
                let _ = s.resize(3);
            });
            let mut acq = sem.acquire_many(1);
            assert!(poll_with(&mut acq, &closer).is_pending());
            sem.close();
            assert!(matches!(poll_with(&mut acq, &closer), Poll::Ready(Err(_))));
            drop(held);
            assert_eq!((sem.in_use(), sem.waiting()), (0, 0));
        });
    }

    /// A waker whose `clone` calls `sem.forget_permits(0)` (which takes the queue lock). Each
    /// call makes a waker of its own (`will_wake` tells them apart).
    fn reentrant_clone_waker(sem: &Arc<Semaphore>) -> Waker {
        struct Holder(Arc<Semaphore>);
        unsafe fn clone(p: *const ()) -> RawWaker {
            // SAFETY: `p` came from `Arc::into_raw` below and is alive while the waker is.
            let holder = unsafe {
                Arc::increment_strong_count(p.cast::<Holder>());
                &*p.cast::<Holder>()
            };
            holder.0.forget_permits(0);
            RawWaker::new(p, &VTABLE)
        }
        unsafe fn noop(_: *const ()) {}
        unsafe fn drop(p: *const ()) {
            // SAFETY: as in `clone`: one strong count per waker.
            unsafe { Arc::decrement_strong_count(p.cast::<Holder>()) };
        }
        unsafe fn wake(p: *const ()) {
            // SAFETY: as in `drop`.
            unsafe { drop(p) }
        }
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, noop, drop);
        let p = Arc::into_raw(Arc::new(Holder(sem.clone()))).cast::<()>();
        // SAFETY: the vtable's functions keep the contract of `RawWaker` (one strong count
        // of the holder per waker).
        unsafe { Waker::from_raw(RawWaker::new(p, &VTABLE)) }
    }

    #[test]
    fn a_waker_whose_clone_reenters_the_semaphore_does_not_deadlock() {
        within(|| {
            let sem = Arc::new(Semaphore::new(1));
            let held = sem.try_acquire().unwrap();
            let first = reentrant_clone_waker(&sem);
            let second = reentrant_clone_waker(&sem);
            let mut acq = sem.acquire();
            assert!(poll_with(&mut acq, &first).is_pending());
            // Moved to another task: polled with another waker, which is cloned and stored.
            assert!(poll_with(&mut acq, &second).is_pending());
            drop(held);
            assert!(matches!(poll_with(&mut acq, &second), Poll::Ready(Ok(_))));
        });
    }

    #[test]
    fn a_monitor_stopped_and_dropped_from_its_own_callback_ends_without_deadlock() {
        let sem = Arc::new(Semaphore::new(2));
        let me: Arc<Mutex<Option<Monitor>>> = Arc::new(Mutex::new(None));
        let reports = Arc::new(AtomicUsize::new(0));
        let gone = Arc::new(AtomicUsize::new(0));
        let probe = DropProbe {
            drops: gone.clone(),
            panic: false,
        };
        let (s1, s2, m, r) = (sem.clone(), sem.clone(), me.clone(), reports.clone());
        let monitor = Monitor::start(
            Duration::from_millis(1),
            move || s1.in_use(),
            move |_in_use| {
                let _keep = &probe;
                // The callback uses the semaphore it samples, then stops its own monitor.
                drop(s2.try_acquire());
                if r.fetch_add(1, SeqCst) >= 2 {
                    if let Some(me) = m.lock().unwrap().take() {
                        me.stop();
                    }
                }
            },
        )
        .unwrap();
        *me.lock().unwrap() = Some(monitor);
        eventually(
            "the monitor's thread ended and dropped its callbacks",
            || gone.load(SeqCst) == 1,
        );
        assert!(reports.load(SeqCst) >= 3);
        assert!(me.lock().unwrap().is_none());
        assert_eq!((sem.in_use(), sem.available()), (0, 2));
    }

    // ----- (b) panics -----------------------------------------------------------------

    #[test]
    fn a_panicking_waker_does_not_lose_the_wake_up_of_the_next_waiter() {
        quiet();
        let sem = Semaphore::new(0);
        let panicking = fn_waker(|| boom("a waker"));
        let mut first = sem.acquire();
        assert!(poll_with(&mut first, &panicking).is_pending());
        let (flag, woken) = flag_waker();
        let mut second = sem.acquire();
        assert!(poll_with(&mut second, &flag).is_pending());
        // Grants both; the first wake-up panics (and the panic reaches the caller).
        let r = catch_unwind(AssertUnwindSafe(|| sem.add_permits(2)));
        assert!(r.is_err());
        assert!(
            woken.load(SeqCst),
            "the second waiter was granted but never woken"
        );
        assert!(matches!(poll_once(&mut second), Poll::Ready(Ok(_))));
        assert!(matches!(poll_once(&mut first), Poll::Ready(Ok(_))));
    }

    #[test]
    fn a_panicking_waker_leaves_the_semaphore_consistent() {
        quiet();
        let sem = Semaphore::new(1);
        let held = sem.try_acquire().unwrap();
        let panicking = fn_waker(|| boom("a waker"));
        let mut acq = sem.acquire();
        assert!(poll_with(&mut acq, &panicking).is_pending());
        let r = catch_unwind(AssertUnwindSafe(|| drop(held)));
        assert!(r.is_err(), "the wake-up's panic reached the releaser");
        // The permit was handed over all the same; nothing leaked.
        assert!(matches!(poll_once(&mut acq), Poll::Ready(Ok(_))));
        drop(acq);
        assert_eq!((sem.in_use(), sem.available(), sem.waiting()), (0, 1, 0));
        // A queued acquire whose waker panics, cancelled by its drop: nothing leaked either.
        let held = sem.try_acquire().unwrap();
        let mut acq = sem.acquire();
        assert!(poll_with(&mut acq, &panicking).is_pending());
        drop(acq);
        drop(held);
        assert_eq!((sem.in_use(), sem.available(), sem.waiting()), (0, 1, 0));
    }

    #[test]
    fn a_monitor_whose_callbacks_panic_ends_and_can_still_be_stopped() {
        quiet();
        for site in ["sample", "report", "output drop"] {
            let gone = Arc::new(AtomicUsize::new(0));
            let probe = DropProbe {
                drops: gone.clone(),
                panic: false,
            };
            let n = Arc::new(AtomicUsize::new(0));
            let n2 = n.clone();
            let monitor = Monitor::start(
                Duration::from_millis(1),
                move || {
                    if site == "sample" && n2.load(SeqCst) == 2 {
                        boom("a monitor's sample");
                    }
                    n2.fetch_add(1, SeqCst)
                },
                move |k| {
                    let _keep = &probe;
                    if k == 2 && site == "report" {
                        boom("a monitor's report");
                    }
                    let drops = Arc::new(AtomicUsize::new(0));
                    DropProbe {
                        drops,
                        panic: k == 2 && site == "output drop",
                    }
                },
            )
            .unwrap();
            eventually("the monitor ended after the panic", || {
                gone.load(SeqCst) == 1
            });
            assert_eq!(n.load(SeqCst), 2 + usize::from(site != "sample"), "{site}");
            within(move || monitor.stop());
        }
    }

    // ----- (c) thread exit ------------------------------------------------------------

    struct Kept {
        permit: Option<OwnedPermit>,
        queued: Option<AcquireOwned>,
        sem: Option<Arc<Semaphore>>,
        borrowed: Option<Permit<'static>>,
        borrowed_queued: Option<Acquire<'static>>,
    }

    thread_local! {
        static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
        static MONITOR: RefCell<Option<Monitor>> = const { RefCell::new(None) };
    }

    #[test]
    fn permits_and_queued_acquires_in_thread_locals_are_given_back_at_thread_exit() {
        // A semaphore that lives as long as the process, for the borrowed guards.
        let shared: &'static Semaphore = Box::leak(Box::new(Semaphore::new(2)));
        let held = shared.try_acquire().unwrap();
        for late in [false, true] {
            let (weak_tx, weak_rx) = mpsc::channel();
            thread::spawn(move || {
                if !late {
                    // The recycled-waiter local first: destroyed after the guards.
                    drop(shared.acquire_timeout(Duration::ZERO));
                }
                // A semaphore reachable only from this thread's local.
                let own = Arc::new(Semaphore::new(1));
                weak_tx.send(Arc::downgrade(&own)).unwrap();
                let permit = own.clone().try_acquire_owned().unwrap();
                let mut queued = own.clone().acquire_owned();
                assert!(poll_once(&mut queued).is_pending());
                let borrowed = shared.try_acquire().unwrap();
                let mut borrowed_queued = shared.acquire();
                assert!(poll_once(&mut borrowed_queued).is_pending());
                KEPT.with(|k| {
                    *k.borrow_mut() = Some(Kept {
                        permit: Some(permit),
                        queued: Some(queued),
                        sem: Some(own),
                        borrowed: Some(borrowed),
                        borrowed_queued: Some(borrowed_queued),
                    })
                });
                if late {
                    drop(shared.acquire_timeout(Duration::ZERO));
                }
            })
            .join()
            .unwrap();
            let weak = weak_rx.recv().unwrap();
            assert!(weak.upgrade().is_none(), "the thread's semaphore was freed");
            assert_eq!(
                (shared.in_use(), shared.waiting(), shared.available()),
                (1, 0, 1),
                "late: {late}"
            );
        }
        drop(held);
        assert_eq!(shared.available(), 2);
        // Keep the fields read (they exist to be dropped at thread exit).
        let _ = |k: Kept| (k.permit, k.queued, k.sem, k.borrowed, k.borrowed_queued);
    }

    #[test]
    fn a_monitor_kept_in_a_thread_local_stops_at_thread_exit() {
        let gone = Arc::new(AtomicUsize::new(0));
        let g = gone.clone();
        thread::spawn(move || {
            let probe = DropProbe {
                drops: g,
                panic: false,
            };
            let sem = Arc::new(Semaphore::new(1));
            let monitor = Monitor::start(
                Duration::from_millis(1),
                move || sem.in_use(),
                move |_| {
                    let _keep = &probe;
                },
            )
            .unwrap();
            MONITOR.with(|m| *m.borrow_mut() = Some(monitor));
        })
        .join()
        .unwrap();
        eventually("the monitor stopped with its thread", || {
            gone.load(SeqCst) == 1
        });
    }
}

// =====================================================================================
// tasks
// =====================================================================================

mod tasks {
    use super::*;
    use cenote::tasks::{JoinHandle, Pool, SpawnError};

    /// Runs `body` on a fresh two-worker runtime, on a thread of its own, bounded by [`HANG`].
    fn on_runtime<T: Send + 'static, F: Future<Output = T> + 'static>(
        body: impl FnOnce() -> F + Send + 'static,
    ) -> T {
        within(move || runtime().block_on(body()))
    }

    /// Consistency of a pool once it is idle: every spawned future is accounted for.
    fn assert_settled(pool: &Pool) {
        let s = pool.stats();
        assert_eq!(
            s.spawned,
            s.completed + s.panicked + s.aborted + s.cancelled,
            "{s:?}"
        );
        assert_eq!((s.running, s.waiting, pool.running()), (0, 0, 0), "{s:?}");
    }

    // ----- (a) re-entry ---------------------------------------------------------------

    #[test]
    fn a_panic_handler_may_spawn_resize_and_read_its_own_pool() {
        quiet();
        on_runtime(|| async {
            for eager in [true, false] {
                let me: Slot<Pool> = slot();
                let followups = Arc::new(AtomicUsize::new(0));
                let refused = Arc::new(AtomicUsize::new(0));
                let (m, f, r) = (me.clone(), followups.clone(), refused.clone());
                let pool = Pool::builder()
                    .capacity(4)
                    .eager_start(eager)
                    .panic_handler(move |_| {
                        let pool = get(&m).unwrap();
                        let _ = (pool.stats(), pool.running(), pool.capacity());
                        pool.resize(4).unwrap();
                        let f = f.clone();
                        // Called from inside the pool: never wait for a slot there.
                        match pool.try_spawn(async move {
                            f.fetch_add(1, SeqCst);
                        }) {
                            Ok(h) => drop(h),
                            Err(SpawnError::Full) => {
                                r.fetch_add(1, SeqCst);
                            }
                            Err(e) => panic!("{e}"),
                        }
                    })
                    .build()
                    .unwrap();
                *me.lock().unwrap() = Some(pool.clone());
                let mut handles = Vec::new();
                for i in 0..20 {
                    let h = pool
                        .spawn(async move {
                            if i % 2 == 0 {
                                tokio::task::yield_now().await;
                            }
                            boom("a future")
                        })
                        .await
                        .unwrap();
                    handles.push(h);
                }
                for h in handles {
                    assert!(within_async(h).await.unwrap_err().is_panic());
                }
                within_async(pool.wait_idle()).await;
                eventually_async("follow-ups ran", || {
                    followups.load(SeqCst) + refused.load(SeqCst) == 20
                })
                .await;
                within_async(pool.wait_idle()).await;
                assert_eq!(pool.stats().panicked, 20);
                assert_settled(&pool);
                me.lock().unwrap().take();
            }
        });
    }

    #[test]
    fn a_future_may_resize_and_close_its_own_pool() {
        on_runtime(|| async {
            let pool = Pool::new(3).unwrap();
            let p = pool.clone();
            let h = pool
                .spawn(async move {
                    p.resize(1).unwrap();
                    tokio::task::yield_now().await;
                    p.resize(3).unwrap();
                    let inner = p.try_spawn(async { 1 }).unwrap();
                    p.close();
                    let refused = p.try_spawn(async { 2 }).map(drop);
                    (inner.await.unwrap(), refused)
                })
                .await
                .unwrap();
            let (inner, refused) = within_async(h).await.unwrap();
            assert_eq!(inner, 1);
            assert!(matches!(refused, Err(SpawnError::Closed)), "{refused:?}");
            within_async(pool.wait_idle()).await;
            assert!(pool.is_closed());
            assert_eq!(pool.capacity(), 3);
            assert_settled(&pool);
        });
    }

    #[test]
    fn a_future_awaiting_its_own_pools_wait_idle_returns_once_the_others_finish() {
        on_runtime(|| async {
            let pool = Pool::new(4).unwrap();
            let other = pool.spawn(tokio::task::yield_now()).await.unwrap();
            let p = pool.clone();
            let h = pool
                .spawn(async move { tokio::time::timeout(HANG / 2, p.wait_idle()).await.is_ok() })
                .await
                .unwrap();
            within_async(other).await.unwrap();
            assert!(
                within_async(h).await.unwrap(),
                "wait_idle from inside never returned"
            );
        });
    }

    /// The wait begins in the future's eager first poll (where it is not
    /// yet counted as running), and the other future ends only after the
    /// future has gone to its lane: that end must still wake the wait.
    #[test]
    fn a_wait_idle_begun_in_an_eager_first_poll_returns_once_the_others_finish() {
        on_runtime(|| async {
            let pool = Pool::builder()
                .capacity(4)
                .eager_limit(Duration::from_secs(3600))
                .build()
                .unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let other = pool.spawn(async move { rx.await.unwrap() }).await.unwrap();
            let p = pool.clone();
            let h = pool
                .spawn(async move { tokio::time::timeout(HANG / 2, p.wait_idle()).await.is_ok() })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(()).unwrap();
            within_async(other).await.unwrap();
            assert!(
                within_async(h).await.unwrap(),
                "wait_idle from inside never returned"
            );
        });
    }

    #[test]
    fn a_future_shutting_down_its_own_pool_is_aborted_rather_than_hung() {
        on_runtime(|| async {
            // In a lane (after a first wait): the shutdown waits for the other futures only,
            // and says it was called from one of the pool's own.
            let pool = Pool::new(2).unwrap();
            let p = pool.clone();
            let h = pool
                .spawn(async move {
                    tokio::task::yield_now().await;
                    p.shutdown_timeout(Duration::from_secs(5)).await
                })
                .await
                .unwrap();
            let report = within_async(h).await.unwrap();
            let report = report.unwrap_err();
            assert!(report.from_own_task, "{report:?}");
            assert_eq!(report.aborted, 0);
            within_async(pool.wait_idle()).await;
            assert_eq!(pool.stats().aborted, 0);
            assert_settled(&pool);
            // In its eager first poll: whatever it reports, it neither hangs nor leaks.
            let pool = Pool::new(2).unwrap();
            let p = pool.clone();
            let h = pool
                .spawn(async move { p.shutdown_timeout(Duration::from_millis(20)).await })
                .await
                .unwrap();
            let _ = within_async(h).await;
            within_async(pool.wait_idle()).await;
            assert_settled(&pool);
        });
    }

    /// Spawns on its pool when dropped (a future's drop, or an output's).
    struct SpawnsOnDrop {
        pool: Pool,
        spawned: Arc<AtomicUsize>,
    }

    impl Drop for SpawnsOnDrop {
        fn drop(&mut self) {
            let _ = (self.pool.stats(), self.pool.running());
            self.pool.resize(self.pool.capacity()).unwrap();
            let n = self.spawned.clone();
            if let Ok(h) = self.pool.try_spawn(async move {
                n.fetch_add(1, SeqCst);
            }) {
                drop(h);
            }
        }
    }

    #[test]
    fn a_futures_drop_and_its_outputs_drop_may_spawn_on_its_own_pool() {
        on_runtime(|| async {
            for eager in [true, false] {
                let pool = Pool::builder()
                    .capacity(64)
                    .eager_start(eager)
                    .build()
                    .unwrap();
                let ran = Arc::new(AtomicUsize::new(0));
                let mut awaited = Vec::new();
                for i in 0..10 {
                    let fut_guard = SpawnsOnDrop {
                        pool: pool.clone(),
                        spawned: ran.clone(),
                    };
                    let out = SpawnsOnDrop {
                        pool: pool.clone(),
                        spawned: ran.clone(),
                    };
                    let h = pool
                        .spawn(async move {
                            let _guard = fut_guard;
                            if i % 2 == 0 {
                                tokio::task::yield_now().await;
                            }
                            out
                        })
                        .await
                        .unwrap();
                    // Half detached (the pool drops the output), half awaited.
                    if i % 4 < 2 {
                        drop(h);
                    } else {
                        awaited.push(h);
                    }
                }
                for h in awaited {
                    drop(within_async(h).await.unwrap());
                }
                eventually_async("every drop's spawn ran", || ran.load(SeqCst) == 20).await;
                within_async(pool.wait_idle()).await;
                assert_eq!(pool.stats().completed, 30);
                assert_settled(&pool);
            }
        });
    }

    #[test]
    fn a_future_may_abort_or_drop_its_own_handle_from_inside_its_poll() {
        on_runtime(|| async {
            let pool = Pool::new(4).unwrap();
            let drops = Arc::new(AtomicUsize::new(0));
            let polled_after_abort = Arc::new(AtomicBool::new(false));
            for abort in [true, false] {
                let (tx, rx) = tokio::sync::oneshot::channel::<JoinHandle<()>>();
                let probe = DropProbe {
                    drops: drops.clone(),
                    panic: false,
                };
                let after = polled_after_abort.clone();
                let h = pool
                    .spawn(async move {
                        let _probe = probe;
                        let me = rx.await.unwrap();
                        if abort {
                            me.abort();
                            tokio::task::yield_now().await;
                            after.store(true, SeqCst);
                        } else {
                            drop(me);
                            tokio::task::yield_now().await;
                        }
                    })
                    .await
                    .unwrap();
                tx.send(h).ok().unwrap();
            }
            eventually_async("both futures ended", || drops.load(SeqCst) == 2).await;
            within_async(pool.wait_idle()).await;
            assert!(!polled_after_abort.load(SeqCst));
            let s = pool.stats();
            assert_eq!((s.aborted, s.completed), (1, 1), "{s:?}");
            assert_settled(&pool);
        });
    }

    #[test]
    fn a_spawn_blocking_closure_may_resize_and_close_its_own_pool() {
        on_runtime(|| async {
            let pool = Pool::new(2).unwrap();
            let p = pool.clone();
            let h = pool
                .spawn_blocking(move || {
                    p.resize(1).unwrap();
                    let _ = (p.running(), p.stats());
                    p.resize(2).unwrap();
                    p.close();
                    p.is_closed()
                })
                .await
                .unwrap();
            assert!(within_async(h).await.unwrap());
            within_async(pool.wait_idle()).await;
            assert_settled(&pool);
        });
    }

    #[test]
    fn the_last_pool_handle_dropped_inside_the_panic_handler_lets_the_others_finish() {
        quiet();
        on_runtime(|| async {
            let me: Slot<Pool> = slot();
            let m = me.clone();
            let pool = Pool::builder()
                .capacity(8)
                .lanes(1)
                .panic_handler(move |_| {
                    let last = m.lock().unwrap().take();
                    drop(last);
                })
                .build()
                .unwrap();
            *me.lock().unwrap() = Some(pool.clone());
            let (go, wait) = tokio::sync::watch::channel(false);
            let mut others = Vec::new();
            for i in 0..4 {
                let mut wait = wait.clone();
                others.push(
                    pool.spawn(async move {
                        let _ = wait.wait_for(|g| *g).await;
                        i
                    })
                    .await
                    .unwrap(),
                );
            }
            let h = pool
                .spawn(async {
                    tokio::task::yield_now().await;
                    boom("a future")
                })
                .await
                .unwrap();
            drop(pool);
            assert!(within_async(h).await.unwrap_err().is_panic());
            assert!(
                me.lock().unwrap().is_none(),
                "the handler dropped the last handle"
            );
            go.send(true).unwrap();
            for (i, h) in others.into_iter().enumerate() {
                assert_eq!(within_async(h).await.unwrap(), i);
            }
        });
    }

    // ----- (b) panics -----------------------------------------------------------------

    #[test]
    fn a_panicking_panic_handler_is_caught_in_eager_polls_and_lanes() {
        quiet();
        on_runtime(|| async {
            for eager in [true, false] {
                let pool = Pool::builder()
                    .capacity(4)
                    .lanes(1)
                    .eager_start(eager)
                    .panic_handler(|_| boom("a panic handler"))
                    .build()
                    .unwrap();
                let (go, wait) = tokio::sync::oneshot::channel::<()>();
                let bystander = pool
                    .spawn(async move {
                        let _ = wait.await;
                        7
                    })
                    .await
                    .unwrap();
                for later in [false, true] {
                    let h = pool
                        .spawn(async move {
                            if later {
                                tokio::task::yield_now().await;
                            }
                            boom("a future")
                        })
                        .await
                        .unwrap();
                    assert!(within_async(h).await.unwrap_err().is_panic());
                }
                go.send(()).unwrap();
                assert_eq!(within_async(bystander).await.unwrap(), 7);
                within_async(pool.wait_idle()).await;
                assert_eq!(pool.stats().panicked, 2);
                assert_settled(&pool);
            }
        });
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Site {
        Poll,
        Drop,
        OutputDrop,
    }

    /// A future that panics where it is told to, in its first poll or after one wake.
    struct Faulty {
        site: Site,
        later: bool,
        yielded: bool,
        drops: Arc<AtomicUsize>,
        out_drops: Arc<AtomicUsize>,
    }

    impl Future for Faulty {
        type Output = DropProbe;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DropProbe> {
            if self.later && !self.yielded {
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if self.site == Site::Poll {
                boom("a future's poll");
            }
            Poll::Ready(DropProbe {
                drops: self.out_drops.clone(),
                panic: self.site == Site::OutputDrop,
            })
        }
    }

    impl Drop for Faulty {
        fn drop(&mut self) {
            self.drops.fetch_add(1, SeqCst);
            if self.site == Site::Drop && !thread::panicking() {
                boom("a future's drop");
            }
        }
    }

    #[test]
    fn panics_in_a_futures_poll_drop_and_output_drop_are_caught_and_spare_the_others() {
        quiet();
        on_runtime(|| async {
            for eager in [true, false] {
                let reported = Arc::new(AtomicUsize::new(0));
                let r = reported.clone();
                let pool = Pool::builder()
                    .capacity(64)
                    .lanes(1)
                    .eager_start(eager)
                    .panic_handler(move |_| {
                        r.fetch_add(1, SeqCst);
                    })
                    .build()
                    .unwrap();
                // Another user's futures on the same lane, waiting meanwhile.
                let (go, wait) = tokio::sync::watch::channel(false);
                let mut bystanders = Vec::new();
                for _ in 0..3 {
                    let mut wait = wait.clone();
                    bystanders.push(
                        pool.spawn(async move {
                            let _ = wait.wait_for(|go| *go).await;
                            7
                        })
                        .await
                        .unwrap(),
                    );
                }
                let (drops, out_drops) =
                    (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
                let (mut awaited, mut late) = (Vec::new(), Vec::new());
                let mut n = 0;
                for site in [Site::Poll, Site::Drop, Site::OutputDrop] {
                    for later in [false, true] {
                        for handle in 0..3 {
                            n += 1;
                            let fut = Faulty {
                                site,
                                later,
                                yielded: false,
                                drops: drops.clone(),
                                out_drops: out_drops.clone(),
                            };
                            let h = pool.spawn(fut).await.unwrap();
                            match handle {
                                0 => awaited.push((site, h)),
                                1 => drop(h),
                                _ => late.push(h),
                            }
                        }
                    }
                }
                for (site, h) in awaited {
                    match within_async(h).await {
                        Ok(out) => {
                            assert_ne!(site, Site::Poll);
                            // The output is ours now: its drop panics here, not in the pool.
                            let _ = catch_unwind(AssertUnwindSafe(move || drop(out)));
                        }
                        Err(e) => assert!(site == Site::Poll && e.is_panic(), "{site:?}: {e}"),
                    }
                }
                eventually_async("the faulty futures ended", || drops.load(SeqCst) == n).await;
                drop(late);
                // Poll panics make no output; the other 12 each make one, dropped once.
                eventually_async("every output dropped", || out_drops.load(SeqCst) == 12).await;
                assert!(
                    reported.load(SeqCst) >= 6 + 6,
                    "poll and drop panics reported"
                );
                // The others were not cancelled.
                go.send(true).unwrap();
                for h in bystanders {
                    assert_eq!(within_async(h).await.unwrap(), 7, "eager: {eager}");
                }
                within_async(pool.wait_idle()).await;
                let s = pool.stats();
                assert_eq!(
                    (s.panicked, s.completed),
                    (6, 12 + 3),
                    "eager {eager}: {s:?}"
                );
                assert_settled(&pool);
                assert_eq!(pool.spawn(async { 1 }).await.unwrap().await.unwrap(), 1);
            }
        });
    }

    #[test]
    fn a_panicking_spawn_blocking_closure_and_its_drop_give_the_slot_back() {
        quiet();
        on_runtime(|| async {
            let pool = Pool::new(1).unwrap();
            let h = pool
                .spawn_blocking(|| boom("a blocking closure"))
                .await
                .unwrap();
            assert!(within_async(h).await.unwrap_err().is_panic());
            let drops = Arc::new(AtomicUsize::new(0));
            let probe = DropProbe {
                drops: drops.clone(),
                panic: true,
            };
            let h = pool
                .spawn_blocking(move || {
                    let _probe = probe;
                    5
                })
                .await
                .unwrap();
            let r = within_async(h).await;
            assert!(matches!(r, Ok(5)) || r.is_err_and(|e| e.is_panic()));
            assert_eq!(drops.load(SeqCst), 1);
            within_async(pool.wait_idle()).await;
            assert!(pool.try_spawn(async {}).is_ok(), "the slot came back");
            within_async(pool.wait_idle()).await;
            assert_settled(&pool);
        });
    }

    #[test]
    fn a_panic_handler_panicking_with_a_payload_that_panics_on_drop_spares_the_lane() {
        quiet();
        on_runtime(|| async {
            let pool = Pool::builder()
                .capacity(8)
                .lanes(1)
                .eager_start(false)
                .panic_handler(|_| std::panic::panic_any(Bomb))
                .build()
                .unwrap();
            let (go, wait) = tokio::sync::oneshot::channel::<()>();
            let bystander = pool
                .spawn(async move {
                    let _ = wait.await;
                    7
                })
                .await
                .unwrap();
            let h = pool
                .spawn(async {
                    tokio::task::yield_now().await;
                    boom("a future")
                })
                .await
                .unwrap();
            let r = within_async(h).await;
            let _ = go.send(()); // refused if the bystander is gone already
            let other = within_async(bystander).await;
            assert!(
                matches!(other, Ok(7)),
                "another user's future was lost: {other:?}"
            );
            assert!(r.as_ref().is_err_and(|e| e.is_panic()), "{r:?}");
            assert_eq!(
                within_async(pool.spawn(async { 1 }).await.unwrap())
                    .await
                    .ok(),
                Some(1)
            );
        });
    }

    #[test]
    fn a_panic_handler_panicking_with_a_payload_that_panics_on_drop_in_an_eager_poll() {
        quiet();
        on_runtime(|| async {
            let pool = Pool::builder()
                .capacity(8)
                .panic_handler(|_| std::panic::panic_any(Bomb))
                .build()
                .unwrap();
            let p = pool.clone();
            // From a task of the pool's runtime: the first poll is eager, in this task.
            let spawned = tokio::spawn(async move {
                let h = p.spawn(async { boom("a future") }).await;
                match h {
                    Ok(h) => h.await.is_err_and(|e| e.is_panic()),
                    Err(_) => false,
                }
            })
            .await;
            let idle = tokio::time::timeout(Duration::from_secs(1), pool.wait_idle())
                .await
                .is_ok();
            // (With the active count wrapped below zero, `stats` itself overflows.)
            let stats = catch_unwind(AssertUnwindSafe(|| pool.stats())).map_err(|_| "overflowed");
            let running = pool.running();
            assert!(
                matches!(spawned, Ok(true)) && idle && running == 0,
                "spawn: {spawned:?}, wait_idle returned: {idle}, running: {running}, {stats:?}"
            );
            assert_settled(&pool);
        });
    }

    // ----- (c) thread exit ------------------------------------------------------------

    thread_local! {
        static TASK_HANDLES: RefCell<Vec<JoinHandle<DropProbe>>> = const { RefCell::new(Vec::new()) };
        static TASK_POOL: RefCell<Option<(Pool, Vec<JoinHandle<DropProbe>>)>> =
            const { RefCell::new(None) };
        static OTHER: Cell<u8> = const { Cell::new(0) };
    }

    /// A future that waits for `go`, yields, and ends with an output that counts its drop.
    fn job(
        go: &tokio::sync::watch::Receiver<bool>,
        drops: &Arc<AtomicUsize>,
        out_drops: &Arc<AtomicUsize>,
    ) -> impl Future<Output = DropProbe> + Send + 'static {
        let mut go = go.clone();
        let probe = DropProbe {
            drops: drops.clone(),
            panic: false,
        };
        let out = out_drops.clone();
        async move {
            let _probe = probe;
            let _ = go.wait_for(|g| *g).await;
            tokio::task::yield_now().await;
            DropProbe {
                drops: out,
                panic: false,
            }
        }
    }

    #[test]
    fn task_join_handles_in_thread_locals_are_released_at_thread_exit() {
        let rt = runtime();
        let pool = rt.block_on(async { Pool::new(64).unwrap() });
        let (go, wait) = tokio::sync::watch::channel(false);
        let (drops, out_drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        for late in [false, true] {
            let (p, w, d, o) = (pool.clone(), wait.clone(), drops.clone(), out_drops.clone());
            let h = rt.handle().clone();
            thread::spawn(move || {
                if late {
                    OTHER.with(|x| x.set(1));
                }
                let mut hs = Vec::new();
                for _ in 0..4 {
                    hs.push(p.try_spawn(job(&w, &d, &o)).unwrap());
                }
                // One that finishes before the thread exits (result left in its cell).
                let (tx, rx) = mpsc::channel();
                let o2 = o.clone();
                let done = p
                    .try_spawn(async move {
                        DropProbe {
                            drops: o2,
                            panic: false,
                        }
                    })
                    .unwrap();
                h.spawn(async move {
                    let _ = tx.send(());
                });
                rx.recv_timeout(HANG).unwrap();
                hs.push(done);
                TASK_HANDLES.with(|t| t.borrow_mut().extend(hs));
                if !late {
                    OTHER.with(|x| x.set(1));
                }
            })
            .join()
            .unwrap();
        }
        go.send(true).unwrap();
        let p = pool.clone();
        rt.block_on(async move { within_async(p.wait_idle()).await });
        eventually("every future and output dropped once", || {
            drops.load(SeqCst) == 8 && out_drops.load(SeqCst) == 10
        });
        assert_eq!(pool.stats().completed, 10);
        assert_settled(&pool);
        drop(pool);
        drop(rt);
    }

    #[test]
    fn task_handles_kept_in_runtime_worker_thread_locals_survive_the_runtime_shutting_down() {
        let (drops, out_drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let spawned = Arc::new(AtomicUsize::new(0));
        let (d, o, s) = (drops.clone(), out_drops.clone(), spawned.clone());
        within(move || {
            let rt = runtime();
            let (_go, wait) = tokio::sync::watch::channel(false);
            rt.block_on(async move {
                let pool = Pool::new(64).unwrap();
                let mut tasks = Vec::new();
                for _ in 0..4 {
                    let (p, w, d, o, s) =
                        (pool.clone(), wait.clone(), d.clone(), o.clone(), s.clone());
                    tasks.push(tokio::spawn(async move {
                        // Eager: one finishes in its first poll, the others wait forever.
                        let o2 = o.clone();
                        let ready = p
                            .spawn(async move {
                                DropProbe {
                                    drops: o2,
                                    panic: false,
                                }
                            })
                            .await
                            .unwrap();
                        let waiting = p.spawn(job(&w, &d, &o)).await.unwrap();
                        s.fetch_add(1, SeqCst);
                        TASK_HANDLES.with(|t| t.borrow_mut().extend([ready, waiting]));
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                // The pool itself only in a worker's local too.
                tokio::spawn(async move {
                    TASK_POOL.with(|t| *t.borrow_mut() = Some((pool, Vec::new())));
                })
                .await
                .unwrap();
            });
            // Shutting down: the lanes drop their waiting futures, the workers exit and drop
            // their locals (handles, the pool).
            drop(rt);
        });
        let n = spawned.load(SeqCst);
        assert_eq!(n, 4);
        eventually("every future dropped once", || drops.load(SeqCst) == n);
        eventually("every ready output dropped once", || {
            out_drops.load(SeqCst) == n
        });
    }

    #[test]
    fn a_task_pool_reachable_only_from_a_thread_local_finishes_its_futures_after_thread_exit() {
        let rt = runtime();
        let (go, wait) = tokio::sync::watch::channel(false);
        let (drops, out_drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (d, o, h) = (drops.clone(), out_drops.clone(), rt.handle().clone());
        thread::spawn(move || {
            OTHER.with(|x| x.set(2));
            let pool = Pool::builder().capacity(8).runtime(h).build().unwrap();
            let hs: Vec<_> = (0..8)
                .map(|_| pool.try_spawn(job(&wait, &d, &o)).unwrap())
                .collect();
            TASK_POOL.with(|t| *t.borrow_mut() = Some((pool, hs)));
        })
        .join()
        .unwrap();
        go.send(true).unwrap();
        eventually("the detached pool finished its futures", || {
            drops.load(SeqCst) == 8 && out_drops.load(SeqCst) == 8
        });
        drop(rt);
    }
}

// =====================================================================================
// objects
// =====================================================================================

mod objects {
    use super::*;
    use cenote::objects::{OwnedPooled, Pool, Pooled, Reset};
    use std::sync::atomic::AtomicIsize;
    use std::sync::OnceLock;

    /// A pooled object that counts the live ones, may call back into its pool when dropped,
    /// and may panic there.
    struct Counted {
        live: Arc<AtomicIsize>,
        /// Panics when dropped (and not unwinding already).
        panic_on_drop: bool,
        /// A pool to call from `drop` (`get`, `put`, `stats`), once per nesting.
        call_back: Option<Pool<Counted>>,
    }

    impl Counted {
        fn new(live: &Arc<AtomicIsize>) -> Counted {
            live.fetch_add(1, SeqCst);
            Counted {
                live: live.clone(),
                panic_on_drop: false,
                call_back: None,
            }
        }
    }

    thread_local! {
        /// Re-entry depth of the callbacks on this thread (they nest one level only).
        static DEPTH: Cell<u32> = const { Cell::new(0) };
    }

    /// Runs `f` unless a callback is already running on this thread.
    fn once_nested(f: impl FnOnce()) {
        if DEPTH.with(|d| d.replace(d.get() + 1)) == 0 {
            f();
        }
        DEPTH.with(|d| d.set(d.get() - 1));
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.live.fetch_sub(1, SeqCst);
            if let Some(pool) = self.call_back.take() {
                once_nested(|| {
                    let _ = pool.stats();
                    drop(pool.get());
                    pool.put(Counted::new(&self.live));
                });
            }
            if self.panic_on_drop && !thread::panicking() {
                boom("an object's drop");
            }
        }
    }

    /// Every object the pool holds is idle once nothing is lent: none lost, none kept twice.
    fn assert_no_leak(pool: &Pool<Counted>, live: &AtomicIsize) {
        let s = pool.stats();
        assert_eq!(live.load(SeqCst), s.idle as isize, "{s:?}");
    }

    // ----- (a) re-entry ---------------------------------------------------------------

    #[test]
    fn reset_accept_and_create_may_call_their_own_pool() {
        let me: Slot<Pool<Counted>> = slot();
        let live = Arc::new(AtomicIsize::new(0));
        let (m1, m2, m3, l) = (me.clone(), me.clone(), me.clone(), live.clone());
        let pool = Pool::builder(move || {
            if let Some(pool) = get(&m1) {
                once_nested(|| {
                    let _ = pool.stats();
                    drop(pool.try_get());
                });
            }
            Counted::new(&l)
        })
        .reset(move |_| {
            let pool = get(&m2).unwrap();
            once_nested(|| {
                let _ = (pool.stats(), pool.max_idle(), pool.thread_cache());
                drop(pool.try_get());
                drop(pool.get());
                let fresh = pool.get().detach();
                pool.put(fresh);
                pool.trim();
                pool.flush_thread_cache();
            });
        })
        .accept(move |_| {
            let pool = get(&m3).unwrap();
            once_nested(|| drop(pool.get_owned()));
            true
        })
        .max_idle(8)
        .thread_cache(2)
        .build()
        .unwrap();
        *me.lock().unwrap() = Some(pool.clone());
        let p = pool.clone();
        within(move || {
            thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for i in 0..200 {
                            let a = p.get();
                            let b = p.get_owned();
                            if i % 3 == 0 {
                                drop(b);
                                drop(a);
                            } else {
                                drop(a);
                                drop(b);
                            }
                        }
                        p.flush_thread_cache();
                    });
                }
            });
        });
        pool.flush_thread_cache();
        assert_no_leak(&pool, &live);
        me.lock().unwrap().take();
        drop(pool);
        // A scoped thread's exit hook may still hold the pool for a moment:
        // `thread::scope` returns once the closures end, and thread-local
        // destructors (the hook that flushes a thread's cache) run after.
        // The last of them drops the objects.
        eventually("dropping the pool drops its objects", || {
            live.load(SeqCst) == 0
        });
    }

    /// An object whose `Reset` implementation uses the pool it belongs to (a static).
    struct SelfResetting(Counted);

    static STATIC_POOL: OnceLock<Pool<SelfResetting>> = OnceLock::new();
    static STATIC_LIVE: OnceLock<Arc<AtomicIsize>> = OnceLock::new();

    impl Reset for SelfResetting {
        fn reset(&mut self) {
            assert!(self.0.live.load(SeqCst) > 0);
            let pool = STATIC_POOL.get().unwrap();
            once_nested(|| {
                let _ = pool.stats();
                drop(pool.try_get());
                drop(pool.get());
            });
        }
    }

    #[test]
    fn a_reset_impl_may_call_its_own_pool() {
        let live = STATIC_LIVE.get_or_init(|| Arc::new(AtomicIsize::new(0)));
        let pool = STATIC_POOL.get_or_init(|| {
            let l = live.clone();
            Pool::builder(move || SelfResetting(Counted::new(&l)))
                .auto_reset()
                .max_idle(4)
                .thread_cache(1)
                .build()
                .unwrap()
        });
        within(move || {
            for _ in 0..100 {
                let a = pool.get();
                let b = pool.get();
                drop(a);
                drop(b);
            }
            pool.flush_thread_cache();
        });
        pool.flush_thread_cache();
        assert_eq!(live.load(SeqCst), pool.stats().idle as isize);
    }

    #[test]
    fn an_objects_drop_may_call_back_into_its_pool() {
        let live = Arc::new(AtomicIsize::new(0));
        let me: Slot<Pool<Counted>> = slot();
        let (l, m) = (live.clone(), me.clone());
        let refuse = Arc::new(AtomicBool::new(false));
        let r = refuse.clone();
        let pool = Pool::builder(move || {
            let mut c = Counted::new(&l);
            c.call_back = get(&m);
            c
        })
        .accept(move |_| !r.load(SeqCst))
        .max_idle(1)
        .thread_cache(0)
        .build()
        .unwrap();
        *me.lock().unwrap() = Some(pool.clone());
        let p = pool.clone();
        within(move || {
            // Dropped as the store is full.
            let gs: Vec<_> = (0..5).map(|_| p.get()).collect();
            drop(gs);
            // Dropped as refused.
            refuse.store(true, SeqCst);
            drop(p.get());
            refuse.store(false, SeqCst);
            // Dropped by trimming, and detached then dropped by hand.
            p.trim();
            p.trim();
            drop(p.get().detach());
        });
        assert_no_leak(&pool, &live);
        // The store holds objects that hold the pool: break the cycle to check nothing leaks.
        me.lock().unwrap().take();
        while let Some(g) = pool.try_get() {
            let mut c = g.detach();
            drop(c.call_back.take());
        }
        drop(pool);
        assert_eq!(live.load(SeqCst), 0);
    }

    // ----- (b) panics -----------------------------------------------------------------

    #[test]
    fn panicking_reset_accept_drop_and_create_leave_the_pool_usable_and_counted() {
        quiet();
        let live = Arc::new(AtomicIsize::new(0));
        let fault = Arc::new(AtomicUsize::new(0)); // 1 reset, 2 accept, 3 create
        let (l, f1, f2, f3) = (live.clone(), fault.clone(), fault.clone(), fault.clone());
        let pool = Pool::builder(move || {
            if f1.load(SeqCst) == 3 {
                boom("create");
            }
            Counted::new(&l)
        })
        .reset(move |_| {
            if f2.load(SeqCst) == 1 {
                boom("reset");
            }
        })
        .accept(move |_| {
            if f3.load(SeqCst) == 2 {
                boom("accept");
            }
            true
        })
        .max_idle(2)
        .thread_cache(0)
        .build()
        .unwrap();
        for site in [1, 2] {
            let g = pool.get();
            fault.store(site, SeqCst);
            let r = catch_unwind(AssertUnwindSafe(move || drop(g)));
            fault.store(0, SeqCst);
            assert!(
                r.is_ok(),
                "a {site} panic reached the code that dropped the guard"
            );
        }
        assert_eq!(pool.stats().dropped_panicked, 2);
        assert_no_leak(&pool, &live);
        // A panicking create reaches the caller of `get`, and takes nothing with it.
        fault.store(3, SeqCst);
        assert!(catch_unwind(AssertUnwindSafe(|| drop(pool.get()))).is_err());
        fault.store(0, SeqCst);
        assert_no_leak(&pool, &live);
        // Objects whose drop panics, dropped by the pool (full store): never reaches us.
        let gs: Vec<_> = (0..5).map(|_| pool.get()).collect();
        for mut g in gs {
            g.panic_on_drop = true;
            assert!(catch_unwind(AssertUnwindSafe(move || drop(g))).is_ok());
        }
        assert_eq!(pool.stats().dropped_full, 3);
        assert_no_leak(&pool, &live);
        // A guard dropped while its thread panics is discarded; its object's drop panics
        // then too (a panic inside the unwinding), and the process goes on.
        let p = pool.clone();
        let r = catch_unwind(AssertUnwindSafe(move || {
            let mut g = p.get();
            g.panic_on_drop = true;
            boom("a borrower");
        }));
        assert!(r.is_err());
        assert_eq!(pool.stats().dropped_panicked, 3);
        assert_no_leak(&pool, &live);
        // Still serving.
        drop(pool.get());
        assert_no_leak(&pool, &live);
        while let Some(g) = pool.try_get() {
            g.detach().panic_on_drop = false;
        }
        assert_eq!(live.load(SeqCst), 0);
    }

    #[test]
    fn a_reset_panicking_with_a_payload_that_panics_on_drop_stays_inside_the_pool() {
        quiet();
        // Reset and accept run inside the return path compiled for the
        // reset's closure, which must catch every panic there, in each way
        // the builder can combine them.
        type B = cenote::objects::Builder<Counted>;
        type Config = fn(B) -> B;
        fn bomb_reset(_: &mut Counted) {
            std::panic::panic_any(Bomb)
        }
        fn bomb_accept(_: &Counted) -> bool {
            std::panic::panic_any(Bomb)
        }
        let configs: [(&str, Config); 5] = [
            ("reset", |b| b.reset(bomb_reset)),
            ("reset then accept", |b| {
                b.reset(bomb_reset).accept(|_| true)
            }),
            ("accept then reset", |b| {
                b.accept(|_| true).reset(bomb_reset)
            }),
            ("accept", |b| b.accept(bomb_accept)),
            ("reset, accept panics", |b| {
                b.reset(|_| ()).accept(bomb_accept)
            }),
        ];
        for (name, config) in configs {
            let live = Arc::new(AtomicIsize::new(0));
            let l = live.clone();
            let pool = config(Pool::builder(move || Counted::new(&l)))
                .build()
                .unwrap();
            for owned in [false, true] {
                let r = if owned {
                    let g = pool.get_owned();
                    catch_unwind(AssertUnwindSafe(move || drop(g)))
                } else {
                    let g = pool.get();
                    catch_unwind(AssertUnwindSafe(move || drop(g)))
                };
                assert!(
                    r.is_ok(),
                    "{name}: the panic reached the code that dropped the guard"
                );
            }
            pool.put(Counted::new(&live));
            assert_eq!(pool.stats().dropped_panicked, 3, "{name}");
            assert_no_leak(&pool, &live);
            assert_eq!(live.load(SeqCst), 0, "{name}");
        }
    }

    // ----- (c) thread exit ------------------------------------------------------------

    struct KeptObjects {
        owned: Vec<OwnedPooled<Counted>>,
        borrowed: Vec<Pooled<'static, Counted>>,
        pool: Option<Pool<Counted>>,
    }

    thread_local! {
        static KEPT: RefCell<Option<KeptObjects>> = const { RefCell::new(None) };
        static OTHER: Cell<u8> = const { Cell::new(0) };
    }

    #[test]
    fn object_guards_in_thread_locals_return_at_thread_exit() {
        let live = Arc::new(AtomicIsize::new(0));
        let l = live.clone();
        let pool: &'static Pool<Counted> = Box::leak(Box::new(
            Pool::builder(move || Counted::new(&l))
                .max_idle(64)
                .thread_cache(4)
                .build()
                .unwrap(),
        ));
        for late in [false, true] {
            thread::spawn(move || {
                if !late {
                    // The pool's thread registry first: destroyed after the guards' local.
                    drop(pool.get());
                } else {
                    OTHER.with(|o| o.set(1));
                }
                let owned = (0..3).map(|_| pool.get_owned()).collect();
                let borrowed = (0..3).map(|_| pool.get()).collect();
                KEPT.with(|k| {
                    *k.borrow_mut() = Some(KeptObjects {
                        owned,
                        borrowed,
                        pool: None,
                    })
                });
                if late {
                    // Used after the guards' local: its exit hook runs first.
                    let cached: Vec<_> = (0..2).map(|_| pool.get()).collect();
                    drop(cached);
                }
            })
            .join()
            .unwrap();
            assert_no_leak(pool, &live);
            assert!(live.load(SeqCst) >= 6, "late {late}: the guards came back");
        }
    }

    #[test]
    fn a_pool_reachable_only_from_a_thread_local_drops_everything_at_thread_exit() {
        let live = Arc::new(AtomicIsize::new(0));
        for late in [false, true] {
            let l = live.clone();
            thread::spawn(move || {
                if late {
                    OTHER.with(|o| o.set(2));
                }
                let pool = Pool::builder(move || Counted::new(&l))
                    .thread_cache(2)
                    .build()
                    .unwrap();
                let owned: Vec<_> = (0..4).map(|_| pool.get_owned()).collect();
                // Some in this thread's cache, some in the shared store.
                drop(owned.into_iter().take(2).collect::<Vec<_>>());
                let more = (0..2).map(|_| pool.get_owned()).collect();
                KEPT.with(|k| {
                    *k.borrow_mut() = Some(KeptObjects {
                        owned: more,
                        borrowed: Vec::new(),
                        pool: Some(pool),
                    })
                });
                if !late {
                    OTHER.with(|o| o.set(2));
                }
            })
            .join()
            .unwrap();
            assert_eq!(live.load(SeqCst), 0, "late {late}: every object dropped");
        }
    }

    #[test]
    fn objects_dropped_at_thread_exit_may_call_back_into_their_pool_and_panic() {
        quiet();
        let live = Arc::new(AtomicIsize::new(0));
        let me: Slot<Pool<Counted>> = slot();
        let (l, m) = (live.clone(), me.clone());
        let pool = Pool::builder(move || Counted::new(&l))
            .max_idle(1)
            .thread_cache(4)
            .build()
            .unwrap();
        *me.lock().unwrap() = Some(pool.clone());
        let p = pool.clone();
        thread::spawn(move || {
            // Four objects in this thread's cache; at exit they go to a store with room for
            // one: the rest are dropped there, and call back into the pool or panic.
            let gs: Vec<_> = (0..4).map(|_| p.get()).collect();
            for (i, mut g) in gs.into_iter().enumerate() {
                g.call_back = get(&m);
                g.panic_on_drop = i % 2 == 1;
                drop(g);
            }
            OTHER.with(|o| o.set(3));
        })
        .join()
        .unwrap();
        assert_no_leak(&pool, &live);
        me.lock().unwrap().take();
        while let Some(g) = pool.try_get() {
            let mut c = g.detach();
            c.panic_on_drop = false;
            drop(c.call_back.take());
        }
        assert_eq!(live.load(SeqCst), 0);
        // Keep the fields read (they exist to be dropped at thread exit).
        let _ = |k: KeptObjects| (k.owned, k.borrowed, k.pool);
    }
}

// =====================================================================================
// resources
// =====================================================================================

mod resources {
    use super::*;
    use cenote::resources::{GetError, Manager, Pool, Pooled};
    use std::sync::atomic::AtomicIsize;

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;

    /// A connection that counts the live ones.
    struct Conn {
        live: Arc<AtomicIsize>,
    }

    impl Drop for Conn {
        fn drop(&mut self) {
            self.live.fetch_sub(1, SeqCst);
        }
    }

    /// Where the manager panics (or calls back into its pool).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum At {
        Create,
        Check,
        Reset,
        Destroy,
        IsBroken,
        IsPermanent,
    }

    #[derive(Default)]
    struct Knobs {
        /// Panics at these calls while set.
        panic_at: Mutex<Vec<At>>,
        /// Closes the pool at these calls.
        close_at: Mutex<Vec<At>>,
        fail_create: AtomicBool,
        /// Calls back into the pool from every method.
        reenter: AtomicBool,
        reentries: AtomicUsize,
        created: AtomicUsize,
        destroyed: AtomicUsize,
    }

    #[derive(Clone)]
    struct Mgr {
        knobs: Arc<Knobs>,
        live: Arc<AtomicIsize>,
        me: Slot<Pool<Mgr>>,
    }

    impl Mgr {
        fn new() -> Mgr {
            Mgr {
                knobs: Arc::default(),
                live: Arc::new(AtomicIsize::new(0)),
                me: slot(),
            }
        }

        fn at(&self, at: At) {
            if self.knobs.panic_at.lock().unwrap().contains(&at) {
                boom(&format!("the manager's {at:?}"));
            }
            if self.knobs.close_at.lock().unwrap().contains(&at) {
                if let Some(pool) = get(&self.me) {
                    pool.close();
                }
            }
            if !self.knobs.reenter.load(SeqCst) {
                return;
            }
            let Some(pool) = get(&self.me) else { return };
            self.knobs.reentries.fetch_add(1, SeqCst);
            let s = pool.stats();
            let _ = pool.stats();
            let _ = pool.retain(|_, _| true);
            if !pool.is_closed() {
                pool.resize(s.capacity).unwrap();
            }
        }
    }

    impl Manager for Mgr {
        type Resource = Conn;
        type Error = Refused;

        async fn create(&self) -> Result<Conn, Refused> {
            self.at(At::Create);
            if self.knobs.fail_create.load(SeqCst) {
                return Err(Refused);
            }
            self.live.fetch_add(1, SeqCst);
            self.knobs.created.fetch_add(1, SeqCst);
            Ok(Conn {
                live: self.live.clone(),
            })
        }

        async fn check(&self, _c: &mut Conn) -> Result<(), Refused> {
            self.at(At::Check);
            Ok(())
        }

        fn is_broken(&self, _c: &mut Conn) -> bool {
            self.at(At::IsBroken);
            false
        }

        async fn reset(&self, _c: &mut Conn) -> Result<(), Refused> {
            self.at(At::Reset);
            Ok(())
        }

        async fn destroy(&self, c: Conn) {
            self.knobs.destroyed.fetch_add(1, SeqCst);
            drop(c);
            self.at(At::Destroy);
        }

        fn is_permanent(&self, _e: &Refused) -> bool {
            self.at(At::IsPermanent);
            false
        }
    }

    /// Once nothing is lent: every live resource is idle, and every one the manager made is
    /// either live in the pool or destroyed.
    fn assert_settled(pool: &Pool<Mgr>, m: &Mgr) {
        eventually("the pool settled", || {
            let s = pool.stats();
            s.in_use == 0
                && s.waiting == 0
                && s.size == s.idle
                && m.live.load(SeqCst) == s.size as isize
        });
    }

    thread_local! {
        static DEPTH: Cell<u32> = const { Cell::new(0) };
    }

    /// Runs `f` unless a callback is already running on this thread.
    fn once_nested(f: impl FnOnce()) {
        if DEPTH.with(|d| d.replace(d.get() + 1)) == 0 {
            f();
        }
        DEPTH.with(|d| d.set(d.get() - 1));
    }

    // ----- (a) re-entry ---------------------------------------------------------------

    #[test]
    fn every_manager_method_may_call_its_own_pool() {
        let m = Mgr::new();
        let pool = Pool::builder(m.clone())
            .capacity(2)
            .check_bypass(Duration::ZERO)
            .acquire_timeout(HANG)
            .build()
            .unwrap();
        *m.me.lock().unwrap() = Some(pool.clone());
        m.knobs.reenter.store(true, SeqCst);
        let p = pool.clone();
        within(move || {
            thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for i in 0..30 {
                            let a = p.get_blocking().unwrap();
                            if i % 10 == 0 {
                                p.evict_idle();
                            }
                            drop(a);
                        }
                    });
                }
            });
            runtime().block_on(async {
                for _ in 0..10 {
                    drop(within_async(p.get()).await.unwrap());
                }
            });
        });
        assert!(m.knobs.reentries.load(SeqCst) > 0);
        assert_settled(&pool, &m);
        m.me.lock().unwrap().take();
        drop(pool);
        eventually("dropping the last handle destroys what is idle", || {
            m.live.load(SeqCst) == 0
        });
    }

    #[test]
    fn hooks_may_call_their_own_pool_and_drop_guards() {
        let m = Mgr::new();
        let me: Slot<Pool<Mgr>> = slot();
        let parked: Arc<Mutex<Option<Pooled<Mgr>>>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let hook = {
            let (me, parked, calls) = (me.clone(), parked.clone(), calls.clone());
            move || {
                calls.fetch_add(1, SeqCst);
                let Some(pool) = get(&me) else { return };
                once_nested(|| {
                    let _ = (pool.stats(), pool.stats());
                    let _ = pool.retain(|_, _| true);
                    // A guard dropped inside the callback (taken out of the lock first).
                    let g = parked.lock().unwrap().take();
                    drop(g);
                });
            }
        };
        let (h1, h2, h3, h4, h5) = (hook.clone(), hook.clone(), hook.clone(), hook.clone(), hook);
        let pool = Pool::builder(m.clone())
            .capacity(3)
            .check_bypass(Duration::ZERO)
            .acquire_timeout(HANG)
            .leak_threshold(Duration::from_millis(20))
            .maintenance_interval(Duration::from_millis(5))
            .on_create(move |_| h1())
            .on_checkout(move |_| {
                h2();
                true
            })
            .on_return(move |_| h3())
            .on_destroy(move |_, _| h4())
            .on_leak(move |_| h5())
            .build()
            .unwrap();
        *me.lock().unwrap() = Some(pool.clone());
        let (p, pk) = (pool.clone(), parked.clone());
        within(move || {
            for i in 0..20 {
                let a = p.get_blocking().unwrap();
                // Park a guard for the next hook to drop.
                *pk.lock().unwrap() = Some(p.get_blocking().unwrap());
                if i % 5 == 0 {
                    p.evict_idle();
                }
                drop(a);
            }
            // One left lent past the leak threshold: the leak hook drops it.
            let g = p.get_blocking().unwrap();
            let old = pk.lock().unwrap().replace(g);
            drop(old);
            eventually("the leak hook dropped the leaked guard", || {
                pk.lock().unwrap().is_none()
            });
        });
        assert!(pool.stats().leaks_reported >= 1);
        assert!(calls.load(SeqCst) > 20);
        assert_settled(&pool, &m);
        me.lock().unwrap().take();
    }

    #[test]
    fn a_check_or_checkout_hook_that_closes_its_pool_fails_the_get_and_leaks_nothing() {
        for in_hook in [false, true] {
            let m = Mgr::new();
            let me: Slot<Pool<Mgr>> = slot();
            let armed = Arc::new(AtomicBool::new(false));
            let (me2, a) = (me.clone(), armed.clone());
            let pool = Pool::builder(m.clone())
                .capacity(2)
                .check_bypass(Duration::ZERO)
                .acquire_timeout(HANG)
                .on_checkout(move |_| {
                    if a.load(SeqCst) {
                        get(&me2).unwrap().close();
                    }
                    true
                })
                .build()
                .unwrap();
            *me.lock().unwrap() = Some(pool.clone());
            *m.me.lock().unwrap() = Some(pool.clone());
            drop(pool.get_blocking().unwrap()); // one idle, checked on its next checkout
            if in_hook {
                armed.store(true, SeqCst);
            } else {
                *m.knobs.close_at.lock().unwrap() = vec![At::Check];
            }
            let p = pool.clone();
            let r = within(move || p.get_blocking().map(drop));
            assert!(
                matches!(r, Err(GetError::Closed)),
                "in hook {in_hook}: {r:?}"
            );
            assert!(pool.is_closed());
            eventually("everything destroyed", || {
                pool.stats().size == 0 && m.live.load(SeqCst) == 0
            });
            assert_eq!(pool.stats().in_use, 0);
            me.lock().unwrap().take();
            m.me.lock().unwrap().take();
        }
    }

    #[test]
    fn on_destroy_may_close_and_evict_its_own_pool() {
        let m = Mgr::new();
        let me: Slot<Pool<Mgr>> = slot();
        let me2 = me.clone();
        let pool = Pool::builder(m.clone())
            .capacity(4)
            .on_destroy(move |_, _| {
                if let Some(pool) = get(&me2) {
                    let _ = pool.evict_idle();
                    pool.close();
                    let _ = pool.resize(1);
                }
            })
            .build()
            .unwrap();
        *me.lock().unwrap() = Some(pool.clone());
        let p = pool.clone();
        within(move || {
            let gs: Vec<_> = (0..4).map(|_| p.get_blocking().unwrap()).collect();
            let mut gs = gs.into_iter();
            drop(gs.next());
            drop(gs.next());
            assert_eq!(p.evict_idle(), 2);
            // Closed by the hook: the rest are destroyed as they come back.
            drop(gs);
            assert!(matches!(p.get_blocking(), Err(GetError::Closed)));
        });
        eventually("everything destroyed", || {
            pool.stats().size == 0 && m.live.load(SeqCst) == 0
        });
        assert_eq!(m.knobs.destroyed.load(SeqCst), 4);
        me.lock().unwrap().take();
    }

    #[test]
    fn retain_may_call_every_pool_method_and_drop_lent_guards_from_its_closure() {
        let m = Mgr::new();
        let pool = Pool::builder(m.clone())
            .capacity(4)
            .acquire_timeout(HANG)
            .build()
            .unwrap();
        let p = pool.clone();
        within(move || {
            let mut lent: Vec<_> = (0..4).map(|_| p.get_blocking().unwrap()).collect();
            lent.drain(..2).for_each(drop);
            let asked = Cell::new(0);
            let gone = p.retain(|_, _| {
                asked.set(asked.get() + 1);
                let _ = (p.stats(), p.stats());
                // Nested: the idle resources are out of the store while we decide.
                assert_eq!(p.retain(|_, _| true), 0);
                // A resource may be lent meanwhile (made anew), and returned.
                drop(p.get_timeout(Duration::from_millis(100)));
                drop(lent.pop());
                p.resize(4).unwrap();
                asked.get() % 2 == 0
            });
            assert_eq!((asked.get(), gone), (2, 1));
            drop(lent);
            p.close();
        });
        eventually("everything destroyed", || {
            pool.stats().size == 0 && m.live.load(SeqCst) == 0
        });
    }

    #[test]
    fn on_return_may_get_from_its_own_full_pool_without_deadlock() {
        let m = Mgr::new();
        let me: Slot<Pool<Mgr>> = slot();
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let (me2, o) = (me.clone(), outcomes.clone());
        let pool = Pool::builder(m.clone())
            .capacity(1)
            .on_return(move |_| {
                let Some(pool) = get(&me2) else { return };
                once_nested(|| {
                    // Its own permit is still held: at most a timeout, never a hang.
                    let r = pool.get_timeout(Duration::from_millis(50));
                    o.lock().unwrap().push(r.is_ok());
                });
            })
            .build()
            .unwrap();
        *me.lock().unwrap() = Some(pool.clone());
        let p = pool.clone();
        within(move || {
            for _ in 0..3 {
                drop(p.get_blocking().unwrap());
            }
        });
        assert_eq!(outcomes.lock().unwrap().len(), 3);
        assert_settled(&pool, &m);
        me.lock().unwrap().take();
    }

    #[test]
    fn the_last_pool_handle_dropped_inside_on_return_closes_the_pool_cleanly() {
        let m = Mgr::new();
        let me: Slot<Pool<Mgr>> = slot();
        let me2 = me.clone();
        let pool = Pool::builder(m.clone())
            .capacity(3)
            .on_return(move |_| {
                let last = me2.lock().unwrap().take();
                drop(last);
            })
            .build()
            .unwrap();
        let (a, b) = (pool.get_blocking().unwrap(), pool.get_blocking().unwrap());
        drop(pool.get_blocking().unwrap()); // one idle
        *me.lock().unwrap() = Some(pool.clone());
        drop(pool);
        // This return drops the last handle: the pool closes mid-return.
        within(move || drop(a));
        within(move || drop(b));
        eventually("every resource went through destroy", || {
            m.live.load(SeqCst) == 0 && m.knobs.destroyed.load(SeqCst) == 3
        });
    }

    // ----- (b) panics -----------------------------------------------------------------

    #[test]
    fn every_manager_method_and_hook_may_panic_and_the_pool_stays_consistent() {
        quiet();
        #[derive(Clone, Copy, Debug, PartialEq)]
        enum Site {
            Manager(At),
            OnCreate,
            OnCheckout,
            OnReturn,
            OnDestroy,
            OnLeak,
        }
        let sites = [
            Site::Manager(At::Create),
            Site::Manager(At::Check),
            Site::Manager(At::Reset),
            Site::Manager(At::Destroy),
            Site::Manager(At::IsBroken),
            Site::OnCreate,
            Site::OnCheckout,
            Site::OnReturn,
            Site::OnDestroy,
            Site::OnLeak,
        ];
        for site in sites {
            let m = Mgr::new();
            let armed = Arc::new(AtomicBool::new(false));
            let hook_panics = move |armed: &AtomicBool, here: Site| {
                if armed.load(SeqCst) && site == here {
                    boom(&format!("the {here:?} hook"));
                }
            };
            let (a1, a2, a3, a4, a5) = (
                armed.clone(),
                armed.clone(),
                armed.clone(),
                armed.clone(),
                armed.clone(),
            );
            let pool = Pool::builder(m.clone())
                .capacity(3)
                .check_bypass(Duration::ZERO)
                .acquire_timeout(Duration::from_millis(300))
                .leak_threshold(Duration::from_millis(10))
                .maintenance_interval(Duration::from_millis(5))
                .on_create(move |_| hook_panics(&a1, Site::OnCreate))
                .on_checkout(move |_| {
                    hook_panics(&a2, Site::OnCheckout);
                    true
                })
                .on_return(move |_| hook_panics(&a3, Site::OnReturn))
                .on_destroy(move |_, _| hook_panics(&a4, Site::OnDestroy))
                .on_leak(move |_| hook_panics(&a5, Site::OnLeak))
                .build()
                .unwrap();
            // Another user's resource, lent across the faults: it stays good.
            let bystander = pool.get_timeout(HANG).unwrap();
            let kept_id = bystander.id();
            drop(pool.get_timeout(HANG).unwrap()); // one idle, to reset and check
            armed.store(true, SeqCst);
            if let Site::Manager(at) = site {
                *m.knobs.panic_at.lock().unwrap() = vec![at];
            }
            let p = pool.clone();
            let leaks_before = pool.stats().leaks_reported;
            within(move || {
                // Reuse (reset, check, checkout), create, return, destroy, leak.
                let a = p.get_timeout(Duration::from_millis(300));
                let b = p.get_timeout(Duration::from_millis(300));
                drop(a);
                drop(b);
                let _ = p.evict_idle();
                if let Ok(g) = p.get_timeout(Duration::from_millis(300)) {
                    eventually("a leak report", || p.stats().leaks_reported > leaks_before);
                    drop(g);
                }
            });
            armed.store(false, SeqCst);
            m.knobs.panic_at.lock().unwrap().clear();
            // Still serving, and the bystander's resource was left alone.
            let p = pool.clone();
            within(move || drop(p.get_timeout(HANG).unwrap()));
            assert_eq!(bystander.id(), kept_id);
            drop(bystander);
            assert_settled(&pool, &m);
            let s = pool.stats();
            assert!(s.size <= 3, "{site:?}: {s:?}");
            let _ = pool.evict_idle();
            eventually("evicted resources destroyed", || m.live.load(SeqCst) == 0);
            assert_eq!(pool.stats().size, 0, "{site:?}");
        }
    }

    #[test]
    fn a_panicking_is_permanent_fails_the_get_instead_of_unwinding() {
        quiet();
        let m = Mgr::new();
        let pool = Pool::builder(m.clone())
            .capacity(2)
            .acquire_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        m.knobs.fail_create.store(true, SeqCst);
        *m.knobs.panic_at.lock().unwrap() = vec![At::IsPermanent];
        let p = pool.clone();
        let r = within(move || catch_unwind(AssertUnwindSafe(|| p.get_blocking().map(drop))));
        m.knobs.fail_create.store(false, SeqCst);
        m.knobs.panic_at.lock().unwrap().clear();
        // The pool itself is fine either way.
        assert_settled(&pool, &m);
        assert_eq!(pool.stats().size, 0);
        assert!(
            matches!(r, Ok(Err(GetError::TimedOut { .. } | GetError::Create(_)))),
            "the get unwound instead of failing"
        );
    }

    #[test]
    fn a_hook_panicking_with_a_payload_that_panics_on_drop_loses_nothing() {
        quiet();
        let m = Mgr::new();
        let once = AtomicBool::new(true);
        let pool = Pool::builder(m.clone())
            .capacity(1)
            .acquire_timeout(Duration::from_millis(300))
            .on_return(move |_| {
                if once.swap(false, SeqCst) {
                    std::panic::panic_any(Bomb)
                }
            })
            .build()
            .unwrap();
        let g = pool.get_timeout(HANG).unwrap();
        let r = catch_unwind(AssertUnwindSafe(move || drop(g)));
        let s = pool.stats();
        let live = m.live.load(SeqCst);
        // Then a resource is lent and returned: it must be kept idle.
        drop(pool.get_timeout(HANG).unwrap());
        let after = pool.stats();
        assert!(
            r.is_ok() && s.size == s.idle + s.in_use && live == s.size as isize && after.idle == 1,
            "drop unwound: {}; then {s:?} with {live} live; after one more get: {after:?}",
            r.is_err()
        );
    }

    // ----- (c) thread exit ------------------------------------------------------------

    /// A pool and guards of it, kept together.
    type PoolAndGuards = (Pool<Mgr>, Vec<Pooled<Mgr>>);

    thread_local! {
        static GUARDS: RefCell<Vec<Pooled<Mgr>>> = const { RefCell::new(Vec::new()) };
        static POOL_AND_GUARDS: RefCell<Option<PoolAndGuards>> = const { RefCell::new(None) };
        static OTHER: Cell<u8> = const { Cell::new(0) };
    }

    #[test]
    fn resource_guards_in_thread_locals_return_at_thread_exit() {
        let m = Mgr::new();
        let pool = Pool::builder(m.clone()).capacity(4).build().unwrap();
        for late in [false, true] {
            let p = pool.clone();
            thread::spawn(move || {
                if !late {
                    // The blocking get's own locals (runtime context, waker) first.
                    drop(p.get_blocking().unwrap());
                } else {
                    OTHER.with(|o| o.set(1));
                }
                let gs: Vec<_> = (0..2).map(|_| p.get_blocking().unwrap()).collect();
                GUARDS.with(|g| g.borrow_mut().extend(gs));
                if late {
                    drop(p.get_blocking().unwrap());
                }
            })
            .join()
            .unwrap();
            assert_settled(&pool, &m);
        }
        // A guard kept in a runtime worker's local, dropped as the runtime shuts down.
        let rt = runtime();
        let p = pool.clone();
        rt.block_on(async move {
            tokio::spawn(async move {
                let g = p.get().await.unwrap();
                GUARDS.with(|gs| gs.borrow_mut().push(g));
            })
            .await
            .unwrap();
        });
        within(move || drop(rt));
        assert_settled(&pool, &m);
    }

    #[test]
    fn a_resource_pool_reachable_only_from_a_thread_local_destroys_everything_at_thread_exit() {
        for late in [false, true] {
            let m = Mgr::new();
            let m2 = m.clone();
            thread::spawn(move || {
                if late {
                    OTHER.with(|o| o.set(2));
                }
                // No runtime here: the pool runs one of its own.
                let pool = Pool::builder(m2).capacity(4).min_idle(1).build().unwrap();
                let gs: Vec<_> = (0..3).map(|_| pool.get_blocking().unwrap()).collect();
                let mut gs = gs.into_iter();
                drop(gs.next());
                let rest: Vec<_> = gs.collect();
                POOL_AND_GUARDS.with(|x| *x.borrow_mut() = Some((pool, rest)));
                if !late {
                    OTHER.with(|o| o.set(2));
                }
            })
            .join()
            .unwrap();
            eventually("every resource destroyed after the thread exited", || {
                m.live.load(SeqCst) == 0
            });
            assert_eq!(
                m.knobs.destroyed.load(SeqCst),
                m.knobs.created.load(SeqCst),
                "late {late}: every one through destroy"
            );
        }
    }
}
