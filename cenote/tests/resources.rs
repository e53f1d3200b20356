//! `cenote::resources`: every feature, fault injection (create, check and
//! reset that fail, hang or panic on demand), cancellation, FIFO and
//! priority order, and a stress test that no resource is lent twice.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{eventually, eventually_async, within_async};

use cenote::resources::{BuildError, GetError, Manager, Pool, QueueOrder, ResizeError};

#[derive(Debug, Clone, thiserror::Error)]
enum TestError {
    #[error("connection refused")]
    Refused,
    #[error("password authentication failed")]
    BadPassword,
    #[error("check failed")]
    CheckFailed,
}

/// Behaviour switches for the test manager.
#[derive(Default)]
struct Knobs {
    fail_create: AtomicBool,
    permanent: AtomicBool,
    hang_create: AtomicBool,
    /// Milliseconds each create takes.
    slow_create_ms: AtomicU64,
    /// Creates and checks hanging now (`hang_create`, `hang_check`).
    hanging: AtomicU64,
    panic_create: AtomicBool,
    fail_check: AtomicBool,
    panic_check: AtomicBool,
    hang_check: AtomicBool,
    fail_reset: AtomicBool,
    broken: AtomicBool,
    created: AtomicU64,
    checks: AtomicU64,
    resets: AtomicU64,
    destroyed: AtomicU64,
    /// Resources lent right now (by number): a duplicate means a resource
    /// was lent twice at once.
    lent: Mutex<HashSet<u64>>,
}

/// A connection: its number and some session state a borrower may leave.
#[derive(Debug)]
struct Conn {
    n: u64,
    session: Vec<u8>,
}

#[derive(Clone, Default)]
struct TestManager(Arc<Knobs>);

impl Manager for TestManager {
    type Resource = Conn;
    type Error = TestError;

    async fn create(&self) -> Result<Conn, TestError> {
        let k = &self.0;
        if k.hang_create.load(SeqCst) {
            k.hanging.fetch_add(1, SeqCst);
            std::future::pending::<()>().await;
        }
        let slow = k.slow_create_ms.load(SeqCst);
        if slow > 0 {
            tokio::time::sleep(Duration::from_millis(slow)).await;
        }
        if k.panic_create.load(SeqCst) {
            panic!("create panicked on purpose");
        }
        if k.fail_create.load(SeqCst) {
            return Err(if k.permanent.load(SeqCst) {
                TestError::BadPassword
            } else {
                TestError::Refused
            });
        }
        let n = k.created.fetch_add(1, SeqCst);
        Ok(Conn {
            n,
            session: Vec::new(),
        })
    }

    async fn check(&self, _c: &mut Conn) -> Result<(), TestError> {
        let k = &self.0;
        k.checks.fetch_add(1, SeqCst);
        if k.hang_check.load(SeqCst) {
            k.hanging.fetch_add(1, SeqCst);
            std::future::pending::<()>().await;
        }
        if k.panic_check.load(SeqCst) {
            panic!("check panicked on purpose");
        }
        if k.fail_check.load(SeqCst) {
            return Err(TestError::CheckFailed);
        }
        Ok(())
    }

    fn is_broken(&self, _c: &mut Conn) -> bool {
        self.0.broken.load(SeqCst)
    }

    async fn reset(&self, c: &mut Conn) -> Result<(), TestError> {
        self.0.resets.fetch_add(1, SeqCst);
        if self.0.fail_reset.load(SeqCst) {
            return Err(TestError::CheckFailed);
        }
        c.session.clear();
        Ok(())
    }

    async fn destroy(&self, _c: Conn) {
        self.0.destroyed.fetch_add(1, SeqCst);
    }

    fn is_permanent(&self, e: &TestError) -> bool {
        matches!(e, TestError::BadPassword)
    }
}

fn manager() -> (TestManager, Arc<Knobs>) {
    let m = TestManager::default();
    let k = m.0.clone();
    (m, k)
}

#[tokio::test]
async fn a_returned_resource_is_reused_and_reset_before_the_next_borrower() {
    let (m, k) = manager();
    let pool = Pool::builder(m).capacity(2).build().unwrap();
    let mut c = pool.get().await.unwrap();
    let first = c.n;
    c.session
        .extend_from_slice(b"BEGIN; SET search_path = tenant_a");
    drop(c);
    let c = pool.get().await.unwrap();
    assert_eq!(c.n, first, "the idle resource is reused");
    assert!(c.session.is_empty(), "session state must not leak");
    assert_eq!(k.created.load(SeqCst), 1);
    assert_eq!(k.resets.load(SeqCst), 1);
    let s = pool.stats();
    assert_eq!((s.size, s.idle, s.in_use, s.capacity), (1, 0, 1, 2));
    drop(c);
    assert_eq!(pool.stats().idle, 1);
    let st = pool.stats();
    assert_eq!((st.created, st.served_at_once), (1, 2));
}

#[tokio::test]
async fn a_resource_that_broke_while_idle_is_never_lent_inside_the_bypass_window() {
    let (m, k) = manager();
    // Every checkout inside the bypass window: no check runs.
    let pool = Pool::builder(m)
        .capacity(1)
        .check_bypass(Duration::from_secs(3600))
        .build()
        .unwrap();
    let first = pool.get().await.unwrap().n;
    // Its socket closed while it sat idle.
    k.broken.store(true, SeqCst);
    let c = within_async(pool.get()).await.unwrap();
    k.broken.store(false, SeqCst);
    assert_ne!(c.n, first, "the broken resource was lent");
    assert_eq!(pool.stats().destroyed_broken, 1);
    assert_eq!(k.checks.load(SeqCst), 0, "the test needs the bypass window");
}

#[test]
fn threads_and_tasks_share_one_pool_without_a_runtime_of_their_own() {
    let (m, k) = manager();
    // Built outside any runtime: the pool runs its own.
    let pool = Pool::builder(m).capacity(3).build().unwrap();
    let in_use = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (pool, in_use, peak, k) = (pool.clone(), in_use.clone(), peak.clone(), k.clone());
        threads.push(std::thread::spawn(move || {
            for _ in 0..200 {
                let c = pool.get_blocking().unwrap();
                assert!(k.lent.lock().unwrap().insert(c.n), "lent twice");
                let now = in_use.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(now, SeqCst);
                std::thread::yield_now();
                in_use.fetch_sub(1, SeqCst);
                k.lent.lock().unwrap().remove(&c.n);
            }
        }));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p2 = pool.clone();
    let k2 = k.clone();
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (pool, k) = (p2.clone(), k2.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..200 {
                    let c = pool.get().await.unwrap();
                    assert!(k.lent.lock().unwrap().insert(c.n), "lent twice");
                    tokio::task::yield_now().await;
                    k.lent.lock().unwrap().remove(&c.n);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    for t in threads {
        t.join().unwrap();
    }
    assert!(peak.load(SeqCst) <= 3);
    assert!(k.created.load(SeqCst) <= 3);
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting), (0, 0));
    assert!(s.size <= 3);
}

/// Two threads taking turns on one resource: every get waits, and the
/// waiter is alone, so it watches for its grant before it parks (and parks
/// when the holder is slow). A lost wake-up on either path stalls both
/// threads (the other queues behind the one that missed its grant): the
/// watchdog fails the test once no turn has been taken for 10 s. (Progress,
/// not total time: on a loaded machine each yield may cost a time slice.)
#[test]
fn two_threads_take_turns_on_one_resource_without_a_lost_wake_up() {
    let (m, k) = manager();
    let pool = Pool::builder(m).capacity(1).build().unwrap();
    let turns = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..2 {
        let (pool, k, turns, done) = (pool.clone(), k.clone(), turns.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            for i in 0..2_000 {
                let c = pool.get_blocking().unwrap();
                assert!(k.lent.lock().unwrap().insert(c.n), "lent twice");
                if i % 200 == t {
                    // Now and then hold it past the watch: the other parks.
                    std::thread::sleep(Duration::from_millis(1));
                } else {
                    std::thread::yield_now();
                }
                k.lent.lock().unwrap().remove(&c.n);
                turns.fetch_add(1, SeqCst);
            }
            done.fetch_add(1, SeqCst);
        }));
    }
    let (mut seen, mut since) = (0, Instant::now());
    while done.load(SeqCst) < 2 {
        let now = turns.load(SeqCst);
        if now != seen {
            (seen, since) = (now, Instant::now());
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "stalled after {seen} turns"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(turns.load(SeqCst), 4_000);
    assert_eq!(k.created.load(SeqCst), 1);
    let s = pool.stats();
    assert_eq!((s.size, s.in_use, s.waiting), (1, 0, 0));
}

#[tokio::test]
async fn build_filled_makes_min_idle_and_fails_fast_with_the_real_error() {
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .capacity(5)
        .min_idle(3)
        .build_filled()
        .await
        .unwrap();
    assert_eq!(pool.stats().idle, 3);
    assert_eq!(k.created.load(SeqCst), 3);

    let (m, k) = manager();
    k.fail_create.store(true, SeqCst);
    let err = Pool::builder(m).build_filled().await.unwrap_err();
    assert!(matches!(&err, BuildError::Create(e) if matches!(**e, TestError::Refused)));
    assert!(err.to_string().contains("first resources"), "{err}");
    let source = std::error::Error::source(&err).expect("the create error is the source");
    assert!(
        source.to_string().contains("connection refused"),
        "{source}"
    );

    let (m, k) = manager();
    k.hang_create.store(true, SeqCst);
    let err = within_async(
        Pool::builder(m)
            .create_timeout(Duration::from_millis(20))
            .build_filled(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BuildError::CreateTimedOut(_)));
}

#[tokio::test]
async fn a_lazy_build_makes_nothing_until_asked_and_min_idle_comes_in_the_background() {
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .capacity(4)
        .min_idle(2)
        .maintenance_interval(Duration::from_millis(5))
        .build()
        .unwrap();
    eventually_async("pool.stats().idle == 2", || pool.stats().idle == 2).await;
    assert_eq!(k.created.load(SeqCst), 2);
}

#[tokio::test]
async fn the_pool_recovers_to_min_idle_after_creates_stop_failing() {
    let (m, k) = manager();
    k.fail_create.store(true, SeqCst);
    let pool = Pool::builder(m)
        .capacity(4)
        .min_idle(2)
        .maintenance_interval(Duration::from_millis(5))
        .build()
        .unwrap();
    eventually_async("pool.stats().create_failures >= 2", || {
        pool.stats().create_failures >= 2
    })
    .await;
    assert_eq!(pool.stats().size, 0);
    k.fail_create.store(false, SeqCst);
    eventually_async("pool.stats().idle == 2", || pool.stats().idle == 2).await;
}

#[tokio::test]
async fn a_long_acquire_timeout_runs_on_the_coarse_clock_and_is_never_early() {
    // 10 ms ticks: a 150 ms timeout is >= 10 ticks, so it is checked on the
    // coarse clock when the background task nudges the waiters (no timer).
    let (m, _k) = manager();
    let pool = Pool::builder(m)
        .capacity(1)
        .maintenance_interval(Duration::from_millis(10))
        .acquire_timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let t0 = Instant::now();
    let err = within_async(pool.get()).await.unwrap_err();
    assert!(matches!(err, GetError::TimedOut { .. }), "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(150), "early");
    // From a plain thread too, and with a request timeout of its own.
    let p2 = pool.clone();
    let t0 = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    // A plain thread (not spawn_blocking, which the runtime would wait for
    // at shutdown if this hung): the test fails instead.
    std::thread::spawn(move || {
        let r = p2
            .request()
            .timeout(Duration::from_millis(120))
            .get_blocking()
            .map(|r| r.id());
        let _ = tx.send(r);
    });
    let mut got = None;
    eventually_async("the waiter's result", || {
        got = rx.try_recv().ok();
        got.is_some()
    })
    .await;
    let err = got.unwrap().unwrap_err();
    assert!(matches!(err, GetError::TimedOut { .. }), "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(120), "early");
    assert_eq!(pool.stats().waiting, 0);
    // A waiter still served within its deadline is not disturbed by the
    // nudges (spurious wake-ups).
    let p3 = pool.clone();
    let waiter = tokio::spawn(async move { p3.get().await.map(|r| r.id()) });
    eventually_async("pool.stats().waiting == 1", || pool.stats().waiting == 1).await;
    tokio::time::sleep(Duration::from_millis(40)).await; // a few nudges
    let id = held.id();
    drop(held);
    assert_eq!(within_async(waiter).await.unwrap().unwrap(), id);
    assert_eq!(pool.stats().timed_out, 2);
}

#[tokio::test]
async fn the_acquire_timeout_is_honoured_and_carries_the_last_create_error() {
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .capacity(1)
        .acquire_timeout(Duration::from_millis(30))
        .build()
        .unwrap();
    // Pool exhausted: a plain timeout, no error to report.
    let held = pool.get().await.unwrap();
    let err = within_async(pool.get()).await.unwrap_err();
    assert!(
        matches!(
            err,
            GetError::TimedOut {
                last_error: None,
                ..
            }
        ),
        "{err}"
    );
    drop(held);
    pool.evict_idle();
    // Creates failing (transiently): retried until the timeout, which says why.
    k.fail_create.store(true, SeqCst);
    let err = within_async(pool.get()).await.unwrap_err();
    match &err {
        GetError::TimedOut {
            last_error: Some(e),
            ..
        } => assert!(matches!(**e, TestError::Refused)),
        other => panic!("expected a timeout with the cause, got {other}"),
    }
    let source = std::error::Error::source(&err).expect("the last error is the source");
    assert!(
        source.to_string().contains("connection refused"),
        "{source}"
    );
    assert!(
        pool.stats().create_failures >= 2,
        "transient errors are retried"
    );
    assert_eq!(pool.stats().size, 0);
    assert_eq!(pool.stats().timed_out, 2);
}

#[tokio::test]
async fn a_permanent_create_error_reaches_the_caller_at_once() {
    let (m, k) = manager();
    k.fail_create.store(true, SeqCst);
    k.permanent.store(true, SeqCst);
    let pool = Pool::builder(m)
        .acquire_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    // An hour-long acquire timeout: only failing fast ends this.
    let err = within_async(pool.get()).await.unwrap_err();
    assert!(matches!(&err, GetError::Create(e) if matches!(**e, TestError::BadPassword)));
    assert!(matches!(err.cause(), Some(TestError::BadPassword)));
    assert_eq!(pool.stats().create_failures, 1);
    let s = pool.stats();
    assert_eq!((s.size, s.in_use), (0, 0));
}

#[tokio::test]
async fn a_hanging_create_is_cut_by_the_create_timeout() {
    let (m, k) = manager();
    k.hang_create.store(true, SeqCst);
    let pool = Pool::builder(m)
        .create_timeout(Duration::from_millis(10))
        .acquire_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = within_async(pool.get()).await.unwrap_err();
    assert!(matches!(err, GetError::TimedOut { .. }));
    // The create's own timeout cuts it, whenever the get gave up (under
    // valgrind the get's 100 ms can pass before the create's 10 ms fire).
    eventually_async("pool.stats().create_failures >= 1", || {
        pool.stats().create_failures >= 1
    })
    .await;
    eventually_async("pool.stats().size == 0 && pool.stats().in_use == 0", || {
        pool.stats().size == 0 && pool.stats().in_use == 0
    })
    .await;
}

#[tokio::test]
async fn a_panicking_create_is_a_failure_not_a_lost_slot() {
    let (m, k) = manager();
    k.panic_create.store(true, SeqCst);
    let pool = Pool::builder(m)
        .capacity(1)
        .acquire_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let err = within_async(pool.get()).await.unwrap_err();
    assert!(matches!(err, GetError::TimedOut { .. }), "{err}");
    eventually_async("pool.stats().create_failures >= 1", || {
        pool.stats().create_failures >= 1
    })
    .await;
    k.panic_create.store(false, SeqCst);
    // The slot came back and nothing is counted live: the next get succeeds.
    eventually_async("pool.stats().in_use == 0", || pool.stats().in_use == 0).await;
    assert_eq!(pool.stats().size, 0);
    let c = within_async(pool.get()).await.unwrap();
    assert_eq!(c.n, 0);
}

#[tokio::test]
async fn a_failing_check_destroys_the_resource_and_get_goes_on() {
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .capacity(2)
        .check_bypass(Duration::ZERO)
        .build()
        .unwrap();
    drop(pool.get().await.unwrap()); // resource 0 now idle
    k.fail_check.store(true, SeqCst);
    let c = pool.get().await.unwrap();
    assert_eq!(c.n, 1, "resource 0 failed its check and was replaced");
    drop(c);
    let st = pool.stats();
    assert_eq!((st.check_failures, st.destroyed_failed_check), (1, 1));
    // A hanging check is cut by the check timeout.
    k.fail_check.store(false, SeqCst);
    k.hang_check.store(true, SeqCst);
    let pool2 = Pool::builder(TestManager(k.clone()))
        .check_bypass(Duration::ZERO)
        .check_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    drop(pool2.get().await.unwrap());
    let c = within_async(pool2.get()).await.unwrap();
    assert!(c.n > 1, "the hung resource was replaced");
    assert_eq!(pool2.stats().destroyed_failed_check, 1);
}

/// Idle resources that all hang (a black-holed network) cost a get one
/// check timeout, not one per idle resource: after a stalled check the get
/// creates, within the capacity.
#[tokio::test]
async fn a_get_waits_out_one_hanging_check_not_one_per_idle_resource() {
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .capacity(4)
        .check_bypass(Duration::ZERO)
        .check_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    let filled: Vec<_> = futures_util::future::join_all((0..4).map(|_| pool.get())).await;
    drop(filled);
    k.hang_check.store(true, SeqCst);
    let c = within_async(pool.get()).await.unwrap();
    assert_eq!(c.n, 4, "a new resource, after one stalled check");
    assert_eq!(k.checks.load(SeqCst), 1);
    let st = pool.stats();
    assert_eq!((st.size, st.idle, st.destroyed_failed_check), (4, 3, 1));
    // Three more at once: each waits out one of the three hanging checks.
    let rest: Vec<_> =
        within_async(futures_util::future::join_all((0..3).map(|_| pool.get()))).await;
    let mut lent: Vec<u64> = rest.iter().map(|r| r.as_ref().unwrap().n).collect();
    lent.sort_unstable();
    assert_eq!(lent, [5, 6, 7]);
    assert_eq!(k.checks.load(SeqCst), 4);
    let st = pool.stats();
    assert_eq!((st.size, st.in_use, st.destroyed_failed_check), (4, 4, 4));
}

#[tokio::test]
async fn a_panicking_check_destroys_the_resource_and_spares_the_caller() {
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .capacity(1)
        .check_bypass(Duration::ZERO)
        .keepalive(Some(Duration::from_millis(5)))
        .maintenance_interval(Duration::from_millis(5))
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    k.panic_check.store(true, SeqCst);
    // Keepalive meets the panic first or the checkout does: either way the
    // resource is destroyed and the caller gets a new one.
    let c = pool.get().await.unwrap();
    assert_eq!(c.n, 1);
    drop(c);
    eventually_async("pool.stats().destroyed_failed_check >= 2", || {
        pool.stats().destroyed_failed_check >= 2
    })
    .await;
    k.panic_check.store(false, SeqCst);
    // The background task survived: it still runs keepalive checks.
    drop(pool.get().await.unwrap());
    let before = k.checks.load(SeqCst);
    eventually_async("k.checks.load(SeqCst) > before", || {
        k.checks.load(SeqCst) > before
    })
    .await;
}

#[tokio::test]
async fn the_check_is_skipped_within_the_bypass_window() {
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .check_bypass(Duration::from_secs(3600))
        .build()
        .unwrap();
    for _ in 0..10 {
        drop(pool.get().await.unwrap());
    }
    assert_eq!(k.checks.load(SeqCst), 0);
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .check_bypass(Duration::ZERO)
        .build()
        .unwrap();
    for _ in 0..10 {
        drop(pool.get().await.unwrap());
    }
    assert_eq!(k.checks.load(SeqCst), 9, "every reuse is checked");
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .check_on_checkout(false)
        .check_bypass(Duration::ZERO)
        .build()
        .unwrap();
    for _ in 0..10 {
        drop(pool.get().await.unwrap());
    }
    assert_eq!(k.checks.load(SeqCst), 0);
}

#[tokio::test]
async fn a_failing_reset_destroys_the_resource() {
    let (m, k) = manager();
    let pool = Pool::builder(m).build().unwrap();
    drop(pool.get().await.unwrap());
    k.fail_reset.store(true, SeqCst);
    let c = pool.get().await.unwrap();
    assert_eq!(c.n, 1);
    assert_eq!(pool.stats().destroyed_failed_check, 1);
}

#[tokio::test]
async fn a_broken_resource_is_destroyed_on_return_and_never_lent_again() {
    let (m, k) = manager();
    let pool = Pool::builder(m).build().unwrap();
    let c = pool.get().await.unwrap();
    k.broken.store(true, SeqCst);
    drop(c);
    k.broken.store(false, SeqCst);
    assert_eq!(pool.stats().destroyed_broken, 1);
    assert_eq!(pool.stats().size, 0);
    assert_eq!(pool.get().await.unwrap().n, 1);
    eventually_async("k.destroyed.load(SeqCst) == 1", || {
        k.destroyed.load(SeqCst) == 1
    })
    .await;
}

#[tokio::test]
async fn a_panicking_borrower_s_resource_is_destroyed_and_replaced() {
    let (m, _k) = manager();
    let pool = Pool::builder(m).capacity(1).build().unwrap();
    let p = pool.clone();
    let r = tokio::spawn(async move {
        let _c = p.get().await.unwrap();
        panic!("the borrower panics");
    })
    .await;
    assert!(r.is_err());
    assert_eq!(pool.stats().destroyed_panicked, 1);
    let s = pool.stats();
    assert_eq!((s.size, s.in_use), (0, 0));
    assert_eq!(pool.get().await.unwrap().n, 1);
}

#[tokio::test]
async fn detach_takes_a_resource_out_for_good() {
    let (m, _k) = manager();
    let pool = Pool::builder(m).capacity(1).build().unwrap();
    let c = pool.get().await.unwrap().detach();
    assert_eq!(c.n, 0);
    let s = pool.stats();
    assert_eq!((s.size, s.in_use), (0, 0));
    assert_eq!(pool.get().await.unwrap().n, 1);
}

#[tokio::test]
async fn lifetimes_and_idle_timeouts_retire_resources_down_to_min_idle() {
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .capacity(4)
        .max_lifetime(Some(Duration::from_millis(40)))
        .lifetime_jitter(Duration::ZERO)
        .idle_timeout(None)
        .maintenance_interval(Duration::from_millis(5))
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    eventually_async("pool.stats().destroyed_expired == 1", || {
        pool.stats().destroyed_expired == 1
    })
    .await;
    assert_eq!(pool.stats().size, 0);

    let (m, _k2) = manager();
    let pool = Pool::builder(m)
        .capacity(4)
        .min_idle(1)
        .idle_timeout(Some(Duration::from_millis(30)))
        .maintenance_interval(Duration::from_millis(5))
        .build_filled()
        .await
        .unwrap();
    let (a, b, c) = (
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    );
    // While all three were lent, the background task may have created a
    // fourth to keep `min_idle` (idle was 0 < 1): it retires too, a pass
    // later.
    drop((a, b, c));
    let idle = pool.stats().idle;
    assert!(
        idle == 3 || idle == 4,
        "the three returned (and maybe a min_idle refill) are idle: {idle}"
    );
    eventually_async(
        "pool.stats().destroyed_idle >= 2 && pool.stats().idle == 1",
        || pool.stats().destroyed_idle >= 2 && pool.stats().idle == 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(pool.stats().idle, 1, "min_idle stays");
    drop(k);
}

#[tokio::test]
async fn keepalive_checks_idle_resources_and_drops_dead_ones() {
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .capacity(2)
        .min_idle(2)
        .keepalive(Some(Duration::from_millis(10)))
        .maintenance_interval(Duration::from_millis(5))
        .build_filled()
        .await
        .unwrap();
    eventually_async("k.checks.load(SeqCst) >= 4", || k.checks.load(SeqCst) >= 4).await;
    k.fail_check.store(true, SeqCst);
    eventually_async("pool.stats().destroyed_failed_check >= 2", || {
        pool.stats().destroyed_failed_check >= 2
    })
    .await;
    k.fail_check.store(false, SeqCst);
    eventually_async("pool.stats().idle == 2", || pool.stats().idle == 2).await;
    // min_idle refilled
}

#[tokio::test]
async fn waiters_are_served_in_fifo_order() {
    let (m, _k) = manager();
    let pool = Pool::builder(m).capacity(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (p, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let c = p.get().await.unwrap();
            order.lock().unwrap().push(i);
            drop(c);
        }));
        // Each one queued before the next starts.
        eventually_async("pool.stats().waiting == i + 1", || {
            pool.stats().waiting == i + 1
        })
        .await;
    }
    drop(held);
    for t in tasks {
        within_async(t).await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_urgent_get_is_served_before_earlier_normal_ones() {
    let (m, _k) = manager();
    let pool = Pool::builder(m).capacity(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (i, prio) in [(0, 0), (1, 0), (2, 10), (3, 5)] {
        let (p, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let c = p.request().priority(prio).get().await.unwrap();
            order.lock().unwrap().push(i);
            drop(c);
        }));
        eventually_async("pool.stats().waiting == i + 1", || {
            pool.stats().waiting == i + 1
        })
        .await;
    }
    drop(held);
    for t in tasks {
        within_async(t).await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [2, 3, 0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_against_a_pool_of_four_all_finish() {
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .capacity(4)
        .acquire_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let in_use = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10_000 {
        let (p, in_use, peak, k) = (pool.clone(), in_use.clone(), peak.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            let c = p.get().await.unwrap();
            assert!(k.lent.lock().unwrap().insert(c.n), "lent twice");
            peak.fetch_max(in_use.fetch_add(1, SeqCst) + 1, SeqCst);
            tokio::task::yield_now().await;
            in_use.fetch_sub(1, SeqCst);
            k.lent.lock().unwrap().remove(&c.n);
        }));
    }
    for t in tasks {
        within_async(t).await.unwrap();
    }
    assert!(peak.load(SeqCst) <= 4);
    assert!(k.created.load(SeqCst) <= 4);
    let st = pool.stats();
    assert_eq!(st.served_at_once + st.served_after_wait, 10_000);
    assert_eq!(
        st.wait_histogram,
        [0; cenote::resources::WAIT_BUCKETS],
        "histograms are off"
    );
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting), (0, 0));
}

#[tokio::test]
async fn max_waiting_sheds_load() {
    let (m, _k) = manager();
    let pool = Pool::builder(m).capacity(1).max_waiting(2).build().unwrap();
    let held = pool.get().await.unwrap();
    let mut waiters = Vec::new();
    for i in 0..2 {
        let p = pool.clone();
        waiters.push(tokio::spawn(async move { p.get().await.map(|c| c.n) }));
        eventually_async("pool.stats().waiting == i + 1", || {
            pool.stats().waiting == i + 1
        })
        .await;
    }
    let err = pool.get().await.unwrap_err();
    assert!(matches!(err, GetError::TooManyWaiting(2)), "{err}");
    assert_eq!(pool.stats().shed, 1);
    drop(held);
    for w in waiters {
        within_async(w).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn cancelled_gets_leave_no_slot_and_no_waiter_behind() {
    let (m, _k) = manager();
    let pool = Pool::builder(m).capacity(2).build().unwrap();
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..1_000 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            let g = p.get();
            if i % 2 == 0 {
                // Cancelled mid-wait.
                let _ = tokio::time::timeout(Duration::from_millis(1), g).await;
            } else {
                drop(g.await.unwrap());
            }
        }));
    }
    eventually_async("pool.stats().waiting >= 400", || {
        pool.stats().waiting >= 400
    })
    .await;
    drop((a, b));
    for t in tasks {
        within_async(t).await.unwrap();
    }
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting), (0, 0));
    assert!(s.size <= 2);
    // Every slot is free: two gets at once succeed.
    let (_x, _y) = (pool.get().await.unwrap(), pool.get().await.unwrap());
}

#[tokio::test]
async fn a_get_cancelled_mid_create_leaves_the_new_resource_idle() {
    struct Slow;
    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;
    impl Manager for Slow {
        type Resource = u8;
        type Error = Never;
        async fn create(&self) -> Result<u8, Never> {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok(7)
        }
    }
    let pool = Pool::builder(Slow).capacity(1).build().unwrap();
    let r = tokio::time::timeout(Duration::from_millis(1), pool.get()).await;
    assert!(r.is_err(), "cancelled while creating");
    eventually_async("pool.stats().idle == 1", || pool.stats().idle == 1).await;
    let s = pool.stats();
    assert_eq!((s.size, s.in_use), (1, 0));
    assert_eq!(*pool.get().await.unwrap(), 7);
    assert_eq!(pool.stats().created, 1);
}

#[tokio::test]
async fn a_leak_is_reported_once_with_the_place_that_acquired_it() {
    let (m, _k) = manager();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r2 = reports.clone();
    let pool = Pool::builder(m)
        .leak_threshold(Duration::from_millis(20))
        .maintenance_interval(Duration::from_millis(5))
        .on_leak(move |r| r2.lock().unwrap().push(r.clone()))
        .build()
        .unwrap();
    let line = line!() + 1;
    let held = pool.get().await.unwrap();
    eventually_async("!reports.lock().unwrap().is_empty()", || {
        !reports.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await; // more passes: no second report
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].resource_id, held.id());
    assert!(reports[0].acquired_at.file().ends_with("resources.rs"));
    assert_eq!(reports[0].acquired_at.line(), line);
    assert_eq!(pool.stats().leaks_reported, 1);
    drop(held);
}

#[tokio::test]
async fn hooks_run_at_each_step() {
    let (m, k) = manager();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (l1, l2, l3, l4) = (log.clone(), log.clone(), log.clone(), log.clone());
    let refuse_next = Arc::new(AtomicBool::new(false));
    let refuse = refuse_next.clone();
    let pool = Pool::builder(m)
        .on_create(move |c: &mut Conn| l1.lock().unwrap().push(format!("create {}", c.n)))
        .on_checkout(move |c: &mut Conn| {
            l2.lock().unwrap().push(format!("checkout {}", c.n));
            !refuse.swap(false, SeqCst)
        })
        .on_return(move |c: &mut Conn| l3.lock().unwrap().push(format!("return {}", c.n)))
        .on_destroy(move |c: &Conn, why| {
            l4.lock().unwrap().push(format!("destroy {} {why:?}", c.n))
        })
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    refuse_next.store(true, SeqCst);
    drop(pool.get().await.unwrap());
    assert_eq!(
        *log.lock().unwrap(),
        [
            "create 0",
            "checkout 0",
            "return 0",
            "checkout 0",
            "destroy 0 FailedCheck",
            "create 1",
            "checkout 1",
            "return 1",
        ]
    );
    assert_eq!(k.created.load(SeqCst), 2);
}

#[tokio::test]
async fn resize_retain_and_evict_idle() {
    let (m, _k) = manager();
    let pool = Pool::builder(m).capacity(4).build().unwrap();
    let mut all = Vec::new();
    for _ in 0..4 {
        all.push(pool.get().await.unwrap());
    }
    assert!(matches!(
        pool.request().timeout(Duration::ZERO).get().await,
        Err(GetError::TimedOut { .. })
    ));
    pool.resize(6).unwrap();
    let extra = pool.get().await.unwrap();
    drop(all);
    drop(extra);
    assert_eq!(pool.stats().idle, 5);
    pool.resize(2).unwrap();
    let s = pool.stats();
    assert_eq!((s.size, s.idle, s.capacity), (2, 2, 2));
    assert_eq!(pool.stats().destroyed_evicted, 3);
    assert_eq!(pool.retain(|c, _| c.n % 2 == 0), 1);
    assert_eq!(pool.evict_idle(), 1);
    assert_eq!(pool.stats().size, 0);
    assert_eq!(pool.resize(0), Err(ResizeError::ZeroCapacity));
    // A shrink while lent: returned resources over the bound are destroyed.
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    pool.resize(1).unwrap();
    drop((a, b));
    let s = pool.stats();
    assert_eq!((s.size, s.idle), (1, 1));
}

#[tokio::test]
async fn close_wakes_waiters_refuses_gets_and_close_timeout_waits_for_lent_ones() {
    let (m, k) = manager();
    let pool = Pool::builder(m).capacity(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(|c| c.n) });
    eventually_async("pool.stats().waiting == 1", || pool.stats().waiting == 1).await;
    let r = pool.shutdown_timeout(Duration::from_millis(20)).await;
    assert_eq!(r.unwrap_err().lent, 1);
    assert!(matches!(
        within_async(waiter).await.unwrap(),
        Err(GetError::Closed)
    ));
    assert!(matches!(pool.get().await, Err(GetError::Closed)));
    assert!(matches!(pool.resize(3), Err(ResizeError::Closed)));
    drop(held); // destroyed, not kept
    pool.shutdown_timeout(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(pool.stats().size, 0);
    assert_eq!(k.destroyed.load(SeqCst), 1);
}

#[test]
fn bad_input_is_a_clear_error() {
    let b = || Pool::builder(TestManager::default());
    assert!(matches!(
        b().capacity(0).build(),
        Err(BuildError::ZeroCapacity)
    ));
    assert!(matches!(
        b().capacity(usize::MAX).build(),
        Err(BuildError::CapacityTooLarge(_))
    ));
    let err = b().capacity(2).min_idle(3).build().unwrap_err();
    assert_eq!(err.to_string(), "min_idle 3 is above capacity 2");
    for (name, builder) in [
        ("create_timeout", b().create_timeout(Duration::ZERO)),
        ("check_timeout", b().check_timeout(Duration::ZERO)),
        ("idle_timeout", b().idle_timeout(Some(Duration::ZERO))),
        ("leak_threshold", b().leak_threshold(Duration::ZERO)),
    ] {
        match builder.build() {
            Err(BuildError::ZeroDuration(n)) => assert_eq!(n, name),
            other => panic!("{name}: expected an error, got {other:?}"),
        }
    }
    // Huge durations mean "no limit", never a panic.
    let pool = b()
        .acquire_timeout(Duration::MAX)
        .create_timeout(Duration::MAX)
        .check_timeout(Duration::MAX)
        .max_lifetime(Some(Duration::MAX))
        .idle_timeout(Some(Duration::MAX))
        .build()
        .unwrap();
    drop(pool.get_blocking().unwrap());
    drop(pool.get_timeout(Duration::MAX).unwrap());
}

#[test]
fn get_timeout_from_a_thread_times_out_when_all_are_lent() {
    let (m, _k) = manager();
    let pool = Pool::builder(m).capacity(1).build().unwrap();
    let held = pool.get_blocking().unwrap();
    let err = pool.get_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(matches!(err, GetError::TimedOut { .. }));
    let p = pool.clone();
    let t = std::thread::spawn(move || p.get_timeout(Duration::from_secs(10)).map(|c| c.n));
    eventually("pool.stats().waiting == 1", || pool.stats().waiting == 1);
    drop(held);
    assert_eq!(t.join().unwrap().unwrap(), 0);
}

#[tokio::test]
async fn fifo_queue_order_spreads_use_over_all_resources() {
    let (m, _k) = manager();
    let pool = Pool::builder(m)
        .queue_order(QueueOrder::Fifo)
        .build()
        .unwrap();
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    drop(a);
    drop(b);
    assert_eq!(
        pool.get().await.unwrap().n,
        0,
        "FIFO: the oldest return first"
    );
    let (m, _k) = manager();
    let pool = Pool::builder(m).build().unwrap();
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    drop(a);
    drop(b);
    assert_eq!(
        pool.get().await.unwrap().n,
        1,
        "LIFO: the latest return first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_faults_never_lend_a_resource_twice_and_lose_no_slot() {
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .capacity(3)
        .check_bypass(Duration::ZERO)
        .acquire_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // A chaos task flips faults on and off.
    let (k2, stop2) = (k.clone(), stop.clone());
    let chaos = tokio::spawn(async move {
        let mut i = 0u64;
        while !stop2.load(SeqCst) {
            i += 1;
            k2.fail_check.store(i % 3 == 0, SeqCst);
            k2.fail_reset.store(i % 5 == 0, SeqCst);
            k2.broken.store(i % 7 == 0, SeqCst);
            k2.fail_create.store(i % 11 == 0, SeqCst);
            tokio::task::yield_now().await;
        }
        k2.fail_create.store(false, SeqCst);
    });
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (p, k) = (pool.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..300 {
                let c = match p.get().await {
                    Ok(c) => c,
                    Err(GetError::TimedOut { .. }) => continue,
                    Err(e) => panic!("{e}"),
                };
                assert!(k.lent.lock().unwrap().insert(c.n), "lent twice");
                if (t + i) % 97 == 0 {
                    k.lent.lock().unwrap().remove(&c.n);
                    drop(c.detach());
                    continue;
                }
                tokio::task::yield_now().await;
                k.lent.lock().unwrap().remove(&c.n);
            }
        }));
    }
    for t in tasks {
        within_async(t).await.unwrap();
    }
    stop.store(true, SeqCst);
    chaos.await.unwrap();
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting), (0, 0));
    assert!(s.size <= 3 && s.idle == s.size);
    let st = pool.stats();
    // Every resource made is idle, detached, or destroyed.
    let detached = (0..16u64)
        .flat_map(|t| (0..300u64).filter(move |i| (t + i) % 97 == 0))
        .count() as u64;
    assert!(st.created >= st.destroyed() + s.size as u64);
    assert!(st.created <= st.destroyed() + s.size as u64 + detached);
    // And every slot still works.
    let all: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(within_async(pool.get()).await.unwrap());
        }
        v
    };
    assert_eq!(all.len(), 3);
}

#[tokio::test]
async fn the_last_handle_hands_idle_and_later_returned_resources_to_destroy() {
    let (m, k) = manager();
    let pool = Pool::builder(m).capacity(4).build().unwrap();
    let other = pool.clone();
    let (a, b, c) = (
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    );
    drop((a, b));
    drop(pool);
    // Another handle is alive: nothing is closed or destroyed.
    assert!(!other.is_closed());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(k.destroyed.load(SeqCst), 0);
    drop(other);
    // The two idle ones now, the lent one when its guard drops.
    eventually_async("k.destroyed.load(SeqCst) == 2", || {
        k.destroyed.load(SeqCst) == 2
    })
    .await;
    drop(c);
    eventually_async("k.destroyed.load(SeqCst) == 3", || {
        k.destroyed.load(SeqCst) == 3
    })
    .await;
}

// ----- deadlines that do not depend on the background task -------------------

/// A long ("coarse") acquire timeout is honoured while the background
/// refill's create hangs (for good here: a deadline that waited for it
/// would never come).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coarse_timeout_fires_while_the_refill_create_hangs() {
    let (m, k) = manager();
    let leaks = Arc::new(AtomicUsize::new(0));
    let seen = leaks.clone();
    let pool = Pool::builder(m)
        .capacity(2)
        .min_idle(1)
        .acquire_timeout(Duration::from_millis(600))
        .create_timeout(Duration::from_secs(3600))
        .maintenance_interval(Duration::from_millis(20))
        .leak_threshold(Duration::from_millis(100))
        .on_leak(move |_| {
            seen.fetch_add(1, SeqCst);
        })
        .build()
        .unwrap();
    let lent = pool.get().await.unwrap();
    k.hang_create.store(true, SeqCst);
    // The refill takes the second permit and hangs in its create (one it
    // made before the hang is evicted, so it makes another).
    eventually_async("one create hangs and nothing is idle", || {
        pool.evict_idle();
        k.hanging.load(SeqCst) == 1 && pool.stats().idle == 0
    })
    .await;
    let err = within_async(pool.get()).await.unwrap_err();
    assert!(matches!(err, GetError::TimedOut { .. }), "{err}");
    // Leak reports keep coming too.
    eventually_async("leaks.load(SeqCst) >= 1", || leaks.load(SeqCst) >= 1).await;
    drop(lent);
}

/// The same with a keepalive check that hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coarse_timeout_fires_while_a_keepalive_check_hangs() {
    let (m, k) = manager();
    let pool = Pool::builder(m)
        .capacity(2)
        .acquire_timeout(Duration::from_millis(600))
        .check_timeout(Duration::from_secs(3600))
        .keepalive(Some(Duration::from_millis(30)))
        .maintenance_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    drop(b);
    k.hang_check.store(true, SeqCst);
    // The idle one is taken for its keepalive check, which hangs.
    eventually_async("k.hanging.load(SeqCst) == 1", || {
        k.hanging.load(SeqCst) == 1
    })
    .await;
    let err = within_async(pool.get()).await.unwrap_err();
    assert!(matches!(err, GetError::TimedOut { .. }), "{err}");
    // A waiter is still served at once by a return.
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(|c| c.n) });
    eventually_async("pool.stats().waiting == 1", || pool.stats().waiting == 1).await;
    let n = a.n;
    drop(a);
    assert_eq!(within_async(waiter).await.unwrap().unwrap(), n);
}

// ----- user code never runs under a pool lock ---------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retain_closure_may_use_the_pool() {
    let (m, k) = manager();
    let pool = Pool::builder(m).capacity(4).build().unwrap();
    let held: Vec<_> = futures_lite_join(&pool, 4).await;
    let mut lent = Some(held.into_iter().take(1).collect::<Vec<_>>());
    assert_eq!(pool.stats().idle, 3);
    let p = pool.clone();
    let other = pool.clone();
    let removed = tokio::task::spawn_blocking(move || {
        let mut calls = 0;
        let n = p.retain(|c, _| {
            calls += 1;
            let _ = p.stats();
            let _ = p.stats();
            // A get on another thread is not blocked by this closure.
            let got = std::thread::scope(|s| {
                s.spawn(|| other.get_timeout(Duration::from_millis(300)).map(|c| c.n))
                    .join()
                    .unwrap()
            });
            assert!(got.is_ok() || matches!(got, Err(GetError::TimedOut { .. })));
            assert_eq!(p.retain(|_, _| true), 0, "nested retain");
            drop(lent.take()); // a lent resource comes back
            p.resize(3).unwrap();
            c.n % 2 == 0
        });
        (n, calls)
    });
    let (n, calls) = within_async(removed).await.unwrap();
    assert!(calls >= 1 && n <= calls);
    let s = pool.stats();
    assert!(s.size <= 3, "{s:?}");
    // close and evict_idle from inside, too.
    let p = pool.clone();
    within_async(tokio::task::spawn_blocking(move || {
        p.retain(|_, _| {
            assert_eq!(p.evict_idle(), 0, "the idle ones are out being asked about");
            p.close();
            true
        })
    }))
    .await
    .unwrap();
    assert!(pool.is_closed());
    eventually_async("pool.stats().size == 0", || pool.stats().size == 0).await;
    eventually_async("k.destroyed.load(SeqCst) == k.created.load(SeqCst)", || {
        k.destroyed.load(SeqCst) == k.created.load(SeqCst)
    })
    .await;
}

/// Gets `n` resources at once, then returns all but the first to the pool.
async fn futures_lite_join(
    pool: &Pool<TestManager>,
    n: usize,
) -> Vec<cenote::resources::Pooled<TestManager>> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(pool.get().await.unwrap());
    }
    all.truncate(1);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_retain_closure_loses_no_resource() {
    let (m, _k) = manager();
    let pool = Pool::builder(m).capacity(3).build().unwrap();
    drop(futures_lite_join(&pool, 3).await);
    assert_eq!(pool.stats().idle, 3);
    let p = pool.clone();
    let r = tokio::task::spawn_blocking(move || p.retain(|_, _| panic!("keep?"))).await;
    assert!(r.is_err());
    let s = pool.stats();
    assert_eq!((s.size, s.idle), (3, 3));
}

// ----- close, a runtime that goes away, blocking in the wrong place ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_fails_a_get_waiting_for_its_create_and_destroys_what_it_makes() {
    let (m, k) = manager();
    let pool = Pool::builder(m).capacity(2).build().unwrap();
    k.slow_create_ms.store(300, SeqCst);
    let p = pool.clone();
    let waiting = tokio::spawn(async move { p.get().await.map(|c| c.n) });
    eventually_async("pool.stats().size == 1", || pool.stats().size == 1).await;
    pool.close();
    let r = within_async(waiting).await.unwrap();
    assert!(matches!(r, Err(GetError::Closed)), "{r:?}");
    // The create finishes later: its resource goes to destroy.
    eventually_async(
        "k.created.load(SeqCst) == 1 && k.destroyed.load(SeqCst) == 1",
        || k.created.load(SeqCst) == 1 && k.destroyed.load(SeqCst) == 1,
    )
    .await;
    assert_eq!(pool.stats().size, 0);
    assert!(matches!(pool.get().await, Err(GetError::Closed)));
}

#[test]
fn a_pool_whose_runtime_is_gone_says_so_and_stays_within_its_bound() {
    let (m, _k) = manager();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pool = Pool::builder(m)
        .capacity(2)
        .runtime(rt.handle().clone())
        .build()
        .unwrap();
    drop(rt);
    for _ in 0..5 {
        let err = pool.get_timeout(Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, GetError::RuntimeGone), "{err}");
        assert!(err.to_string().contains("runtime has shut down"), "{err}");
        let s = pool.stats();
        assert!(s.size <= s.capacity, "{s:?}");
    }
    assert_eq!(pool.stats().size, 0);
}

#[test]
fn a_blocking_get_on_a_current_thread_runtime_panics_with_advice() {
    let (m, _k) = manager();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = Pool::builder(m)
        .capacity(1)
        .runtime(rt.handle().clone())
        .build()
        .unwrap();
    let p = pool.clone();
    let r = rt.block_on(async move {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.get_timeout(Duration::from_secs(2)).map(|c| c.n)
        }))
    });
    let payload = r.unwrap_err();
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap();
    assert!(
        msg.contains("get().await") && msg.contains("spawn_blocking"),
        "{msg}"
    );
    // From a blocking thread of the same runtime it works.
    let p = pool.clone();
    let n = rt
        .block_on(rt.spawn_blocking(move || p.get_blocking().map(|c| c.n)))
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_get_on_a_runtime_worker_does_not_starve_its_create() {
    let (m, _k) = manager();
    let pool = Pool::builder(m).capacity(2).build().unwrap();
    // Both workers block in get_timeout at once; their creates still run.
    let a = pool.clone();
    let b = pool.clone();
    let (x, y) = tokio::join!(
        tokio::spawn(async move { a.get_timeout(Duration::from_secs(5)).map(|c| c.n) }),
        tokio::spawn(async move { b.get_timeout(Duration::from_secs(5)).map(|c| c.n) }),
    );
    assert!(x.unwrap().is_ok());
    assert!(y.unwrap().is_ok());
}

// ----- thread exit ----------------------------------------------------------------

#[test]
fn guards_and_blocking_gets_in_thread_local_destructors_never_abort() {
    use std::cell::RefCell;
    struct Late {
        pool: Pool<TestManager>,
        guard: Option<cenote::resources::Pooled<TestManager>>,
    }
    impl Drop for Late {
        fn drop(&mut self) {
            drop(self.guard.take());
            // May fail (ThreadExiting) or succeed, never abort.
            match self.pool.get_timeout(Duration::from_millis(200)) {
                Ok(_) | Err(GetError::ThreadExiting) | Err(GetError::TimedOut { .. }) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
    }
    thread_local! {
        static LATE: RefCell<Option<Late>> = const { RefCell::new(None) };
    }
    let (m, _k) = manager();
    let pool = Pool::builder(m).capacity(2).build().unwrap();
    for order in 0..2 {
        let p = pool.clone();
        std::thread::spawn(move || {
            let guard = p.get_blocking().unwrap();
            let late = Late {
                pool: p.clone(),
                guard: Some(guard),
            };
            if order == 0 {
                // Registered before tokio's context and the pool's waker:
                // destroyed after them.
                LATE.with(|l| *l.borrow_mut() = Some(late));
                drop(p.get_blocking().unwrap());
            } else {
                drop(p.get_blocking().unwrap());
                LATE.with(|l| *l.borrow_mut() = Some(late));
            }
        })
        .join()
        .unwrap();
    }
    let s = pool.stats();
    assert_eq!(s.in_use, 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histograms_record_every_get_with_its_wait() {
    let (m, _) = manager();
    let pool = Pool::builder(m)
        .capacity(1)
        .histograms(true)
        .build()
        .unwrap();
    // One get is sure to wait: the resource is held until a second get queues.
    let held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { drop(pool.get().await.unwrap()) }
    });
    within_async(async {
        while pool.stats().waiting == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    drop(held);
    within_async(waiter).await.unwrap();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..499 {
                    let r = pool.get().await.unwrap();
                    tokio::task::yield_now().await;
                    drop(r);
                }
            })
        })
        .collect();
    for t in tasks {
        within_async(t).await.unwrap();
    }
    let st = pool.stats();
    assert_eq!(st.served_at_once + st.served_after_wait, 1_000);
    assert!(st.served_after_wait > 0, "the queued get waited");
    assert_eq!(st.wait_histogram.iter().sum::<u64>(), 1_000);
    assert!(st.wait_quantile(0.5).is_some());
}
