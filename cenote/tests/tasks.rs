//! Tests of `cenote::tasks`: one per feature, bad input, the capacity
//! invariant (also across `resize`), cancel-safety, runtime shutdown, and a
//! stress test that counts every future ran exactly once.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cenote::tasks::{BuildError, JoinError, Pool, ResizeError, SpawnError, WhenFull};
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout};

mod common;
use common::eventually_async;

/// Counts futures inside their body and remembers the most at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl InFlight {
    fn enter(&self) -> usize {
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(n, SeqCst);
        n
    }
    fn leave(&self) {
        self.now.fetch_sub(1, SeqCst);
    }
}

/// Leaves an [`InFlight`] when dropped (also when the future is aborted).
struct Leaving<'a>(&'a InFlight);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_returns_results_and_never_exceeds_capacity() {
    let pool = Pool::new(8).unwrap();
    let flight = Arc::new(InFlight::default());
    let mut handles = Vec::new();
    for i in 0..2_000u64 {
        let flight = flight.clone();
        handles.push(
            pool.spawn(async move {
                let n = flight.enter();
                assert!(n <= 8, "{n} futures in flight, capacity 8");
                tokio::task::yield_now().await;
                if i % 7 == 0 {
                    sleep(Duration::from_micros(200)).await;
                }
                flight.leave();
                i * 3
            })
            .await
            .unwrap(),
        );
        assert!(pool.running() <= 8);
    }
    let mut sum = 0;
    for h in handles {
        sum += h.await.unwrap();
    }
    assert_eq!(sum, 3 * (0..2_000u64).sum::<u64>());
    assert!(flight.max.load(SeqCst) <= 8);
    pool.wait_idle().await;
    let s = pool.stats();
    assert_eq!((s.spawned, s.completed, s.running), (2_000, 2_000, 0));
    assert_eq!(pool.capacity(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pool_policies() {
    // Reject.
    let pool = Pool::builder()
        .capacity(1)
        .when_full(WhenFull::Reject)
        .build()
        .unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let first = pool.spawn(async move { rx.await.ok() }).await.unwrap();
    assert!(matches!(
        pool.spawn(async {}).await.unwrap_err(),
        SpawnError::Full
    ));
    assert!(matches!(
        pool.try_spawn(async {}).unwrap_err(),
        SpawnError::Full
    ));
    // spawn_timeout waits whatever the policy; zero is a try.
    assert!(matches!(
        pool.spawn_timeout(async {}, Duration::ZERO).await.unwrap_err(),
        SpawnError::TimedOut(d) if d.is_zero()
    ));
    assert!(matches!(
        pool.spawn_timeout(async {}, Duration::from_millis(30))
            .await
            .unwrap_err(),
        SpawnError::TimedOut(_)
    ));
    assert_eq!(pool.stats().rejected, 2);
    assert_eq!(pool.stats().timed_out, 2);
    tx.send(()).unwrap();
    first.await.unwrap();
    // A huge timeout waits as long as needed and no longer.
    let h = pool
        .spawn_timeout(async { 5 }, Duration::MAX)
        .await
        .unwrap();
    assert_eq!(h.await.unwrap(), 5);

    // WaitFor: waits, then gives up.
    let pool = Pool::builder()
        .capacity(1)
        .when_full(WhenFull::WaitFor(Duration::from_millis(20)))
        .build()
        .unwrap();
    let _busy = pool.spawn(sleep(Duration::from_secs(30))).await.unwrap();
    assert!(matches!(
        pool.spawn(async {}).await.unwrap_err(),
        SpawnError::TimedOut(_)
    ));
    assert_eq!(pool.waiting(), 0, "a timed-out spawner leaves the queue");
    let report = pool.shutdown_timeout(Duration::ZERO).await;
    assert_eq!(report.unwrap_err().aborted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_policy_is_fifo_and_max_waiting_sheds_load() {
    let pool = Pool::builder().capacity(1).max_waiting(3).build().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let gate = pool.spawn(async move { rx.await.ok() }).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut spawners = Vec::new();
    for i in 0..3 {
        let spawner_pool = pool.clone();
        let order = order.clone();
        spawners.push(tokio::spawn(async move {
            let h = spawner_pool
                .spawn(async move { order.lock().unwrap().push(i) })
                .await
                .unwrap();
            h.await.unwrap();
        }));
        // Queue them in a known order.
        let p = pool.clone();
        eventually_async("p.waiting() == i + 1", move || p.waiting() == i + 1).await;
    }
    // The fourth waiter is one too many.
    assert!(matches!(
        pool.spawn(async {}).await.unwrap_err(),
        SpawnError::TooManyWaiting(3)
    ));
    assert_eq!(pool.stats().waited, 3);
    tx.send(()).unwrap();
    gate.await.unwrap();
    for s in spawners {
        s.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_are_carried_to_the_handle_and_the_handler() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let pool = {
        let seen = seen.clone();
        Pool::builder()
            .capacity(2)
            .panic_handler(move |p| {
                let msg = p.downcast_ref::<&str>().copied().unwrap_or("?");
                seen.lock().unwrap().push(msg.to_string());
            })
            .build()
            .unwrap()
    };
    let h = pool
        .spawn(async {
            tokio::task::yield_now().await;
            panic!("boom")
        })
        .await
        .unwrap();
    let err = h.await.unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("boom"));
    assert_eq!(*seen.lock().unwrap(), vec!["boom".to_string()]);
    // The pool goes on, and the slot came back.
    assert_eq!(pool.spawn(async { 1 }).await.unwrap().await.unwrap(), 1);
    pool.wait_idle().await;
    let s = pool.stats();
    assert_eq!((s.panicked, s.completed, s.running), (1, 1, 0));

    // A panicking handler is caught too.
    let pool = Pool::builder()
        .capacity(1)
        .panic_handler(|_| panic!("handler"))
        .build()
        .unwrap();
    let h = pool.spawn(async { panic!("task") }).await.unwrap();
    assert_eq!(h.await.unwrap_err().panic_message(), Some("task"));
    assert_eq!(pool.spawn(async { 2 }).await.unwrap().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_drops_the_future_and_frees_the_slot() {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, SeqCst);
        }
    }
    let pool = Pool::new(1).unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = SetOnDrop(dropped.clone());
    let h = pool
        .spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        })
        .await
        .unwrap();
    eventually_async("pool.running() == 1", || pool.running() == 1).await;
    assert!(!h.is_finished());
    h.abort();
    let p = pool.clone();
    eventually_async("p.running() == 0", move || p.running() == 0).await;
    assert!(dropped.load(SeqCst), "the future was dropped");
    assert!(h.is_finished());
    assert!(h.await.unwrap_err().is_aborted());
    // Abort after the end keeps the result.
    let h = pool.spawn(async { 7 }).await.unwrap();
    pool.wait_idle().await;
    h.abort();
    assert_eq!(h.await.unwrap(), 7);
    assert_eq!(pool.stats().aborted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::async_yields_async)] // the helper returns a JoinHandle
async fn resize_grows_at_once_and_shrinks_without_stopping_anything() {
    let pool = Pool::new(2).unwrap();
    let flight = Arc::new(InFlight::default());
    let release = Arc::new(tokio::sync::Notify::new());
    let spawn_blocked = |pool: Pool, flight: Arc<InFlight>, release: Arc<tokio::sync::Notify>| async move {
        pool.spawn(async move {
            flight.enter();
            release.notified().await;
            flight.leave();
        })
        .await
        .unwrap()
    };
    let mut handles = Vec::new();
    for _ in 0..2 {
        handles.push(spawn_blocked(pool.clone(), flight.clone(), release.clone()).await);
    }
    // Full: a third spawner waits, and gets in as soon as the pool grows.
    let third = tokio::spawn(spawn_blocked(pool.clone(), flight.clone(), release.clone()));
    let p = pool.clone();
    eventually_async("p.waiting() == 1", move || p.waiting() == 1).await;
    pool.resize(4).unwrap();
    handles.push(third.await.unwrap());
    assert_eq!(pool.capacity(), 4);
    let f = flight.clone();
    eventually_async("f.now.load(SeqCst) == 3", move || f.now.load(SeqCst) == 3).await;
    // Shrink to 1 with 3 running: they go on; a new one waits until only
    // 0 run (capacity 1).
    pool.resize(1).unwrap();
    assert_eq!(pool.capacity(), 1);
    assert_eq!(pool.running(), 3);
    assert!(matches!(
        pool.try_spawn(async {}).unwrap_err(),
        SpawnError::Full
    ));
    release.notify_waiters();
    for h in handles {
        h.await.unwrap();
    }
    assert!(flight.max.load(SeqCst) <= 4);
    // Every handle has yielded, so every slot is back: exactly one (the new
    // capacity) can be taken.
    let h = pool.try_spawn(std::future::pending::<()>()).unwrap();
    assert!(matches!(
        pool.try_spawn(async {}).unwrap_err(),
        SpawnError::Full
    ));
    h.abort();
    assert!(h.await.unwrap_err().is_aborted());
    // Bad input.
    assert_eq!(pool.resize(0), Err(ResizeError::ZeroCapacity));
    assert!(matches!(
        pool.resize(usize::MAX),
        Err(ResizeError::CapacityTooLarge(_))
    ));
    pool.close();
    assert_eq!(pool.resize(3), Err(ResizeError::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_holds_while_resize_races_spawners() {
    // Spawners keep the pool full while another task moves the capacity
    // between 1 and 6; in flight never exceeds the largest capacity set,
    // and once the last resize (to 3) has drained, never exceeds 3.
    let pool = Pool::new(4).unwrap();
    let flight = Arc::new(InFlight::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut spawners = Vec::new();
    for _ in 0..3 {
        let (pool, flight, stop) = (pool.clone(), flight.clone(), stop.clone());
        spawners.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                let flight = flight.clone();
                let handle = pool
                    .spawn(async move {
                        flight.enter();
                        tokio::task::yield_now().await;
                        flight.leave();
                    })
                    .await
                    .unwrap();
                drop(handle); // detached
                n += 1;
            }
            n
        }));
    }
    for i in 0..400 {
        pool.resize(1 + (i * 7) % 6).unwrap();
        tokio::task::yield_now().await;
    }
    pool.resize(3).unwrap();
    pool.wait_idle().await;
    flight.max.store(0, SeqCst);
    sleep(Duration::from_millis(50)).await;
    stop.store(true, SeqCst);
    let mut total = 0;
    for s in spawners {
        total += s.await.unwrap();
    }
    pool.wait_idle().await;
    assert!(
        flight.max.load(SeqCst) <= 3,
        "max {}",
        flight.max.load(SeqCst)
    );
    let s = pool.stats();
    assert_eq!(s.completed, total);
    assert_eq!(s.running, 0);
    // Every slot came back: exactly 3 can be taken now.
    let hs: Vec<_> = (0..3)
        .map(|_| pool.try_spawn(std::future::pending::<()>()).unwrap())
        .collect();
    assert!(pool.try_spawn(async {}).is_err());
    hs.iter().for_each(|h| h.abort());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_idle_keeps_the_pool_open_and_close_refuses_new_work() {
    let pool = Pool::new(4).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..20 {
        let done = done.clone();
        let handle = pool
            .spawn(async move {
                sleep(Duration::from_millis(5)).await;
                done.fetch_add(1, SeqCst);
            })
            .await
            .unwrap();
        drop(handle); // detached
    }
    pool.wait_idle().await;
    assert_eq!(done.load(SeqCst), 20);
    assert_eq!(pool.running(), 0);
    // Still open.
    assert_eq!(pool.spawn(async { 3 }).await.unwrap().await.unwrap(), 3);
    // wait_idle on an idle pool returns at once.
    timeout(Duration::from_secs(5), pool.wait_idle())
        .await
        .unwrap();

    // close: running futures finish, waiting spawners and new ones fail.
    let pool = Pool::new(1).unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let running = pool.spawn(async move { rx.await.is_ok() }).await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.spawn(async {}).await.map(|_| ()) })
    };
    let p = pool.clone();
    eventually_async("p.waiting() == 1", move || p.waiting() == 1).await;
    pool.close();
    assert!(pool.is_closed());
    assert!(matches!(waiter.await.unwrap(), Err(SpawnError::Closed)));
    assert!(matches!(
        pool.spawn(async {}).await,
        Err(SpawnError::Closed)
    ));
    assert!(matches!(pool.try_spawn(async {}), Err(SpawnError::Closed)));
    tx.send(()).unwrap();
    assert!(running.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_waits_then_aborts_the_rest() {
    let pool = Pool::new(10).unwrap();
    let quick: Vec<_> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(
                pool.spawn(async move {
                    sleep(Duration::from_millis(10)).await;
                    i
                })
                .await
                .unwrap(),
            );
        }
        v
    };
    let mut slow = Vec::new();
    for _ in 0..3 {
        slow.push(pool.spawn(sleep(Duration::from_secs(60))).await.unwrap());
    }
    let report = pool.shutdown_timeout(Duration::from_millis(300)).await;
    assert_eq!(report.unwrap_err().aborted, 3);
    for (i, h) in quick.into_iter().enumerate() {
        assert_eq!(h.await.unwrap(), i);
    }
    for h in slow {
        assert!(h.await.unwrap_err().is_aborted());
    }
    assert_eq!(pool.running(), 0);
    assert!(matches!(
        pool.spawn(async {}).await,
        Err(SpawnError::Closed)
    ));
    // Nothing left: a second shutdown has nothing to abort.
    assert_eq!(pool.shutdown_timeout(Duration::ZERO).await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_blocking_runs_on_workers_within_the_capacity() {
    let workers = cenote::workers::Pool::new(4).unwrap();
    let pool = Pool::builder()
        .capacity(2)
        .blocking_pool(workers)
        .build()
        .unwrap();
    let flight = Arc::new(InFlight::default());
    let mut handles = Vec::new();
    for i in 0..10u32 {
        let flight = flight.clone();
        handles.push(
            pool.spawn_blocking(move || {
                flight.enter();
                std::thread::sleep(Duration::from_millis(5));
                flight.leave();
                let name = std::thread::current().name().map(str::to_owned);
                (i, name)
            })
            .await
            .unwrap(),
        );
    }
    for (i, h) in handles.into_iter().enumerate() {
        let (v, _name) = h.await.unwrap();
        assert_eq!(v as usize, i);
    }
    assert!(flight.max.load(SeqCst) <= 2);
    // A panic in the closure arrives as a panic.
    let h = pool
        .spawn_blocking(|| panic!("blocking boom"))
        .await
        .unwrap();
    let err: JoinError = h.await.unwrap_err();
    assert_eq!(err.panic_message(), Some("blocking boom"));
    // The default blocking pool works too.
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.spawn_blocking(|| 9).await.unwrap().await.unwrap(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_spawn_futures_leave_no_slot_or_waiter_behind() {
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut blockers = Vec::new();
    for _ in 0..2 {
        let mut rx = rx.clone();
        blockers.push(
            pool.spawn(async move { rx.wait_for(|v| *v).await.is_ok() })
                .await
                .unwrap(),
        );
    }
    // 1000 spawners wait; half are cancelled mid-wait.
    let mut waiters = Vec::new();
    for _ in 0..1_000 {
        let pool = pool.clone();
        waiters.push(tokio::spawn(async move {
            pool.spawn(async {}).await.map(drop).is_ok()
        }));
    }
    let p = pool.clone();
    eventually_async("p.waiting() == 1_000", move || p.waiting() == 1_000).await;
    for w in waiters.iter().step_by(2) {
        w.abort();
    }
    let p = pool.clone();
    eventually_async("p.waiting() == 500", move || p.waiting() == 500).await;
    tx.send(true).unwrap();
    for b in blockers {
        assert!(b.await.unwrap());
    }
    let mut ok = 0;
    for w in waiters {
        if let Ok(true) = w.await {
            ok += 1;
        }
    }
    assert_eq!(ok, 500);
    pool.wait_idle().await;
    assert_eq!((pool.running(), pool.waiting()), (0, 0));
    // All slots are back.
    let a = pool.try_spawn(std::future::pending::<()>()).unwrap();
    let b = pool.try_spawn(std::future::pending::<()>()).unwrap();
    assert!(pool.try_spawn(async {}).is_err());
    a.abort();
    b.abort();
}

#[test]
fn bad_input_is_a_clear_error() {
    // Outside a runtime.
    assert_eq!(Pool::new(4).unwrap_err(), BuildError::NoRuntime);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    assert_eq!(Pool::new(0).unwrap_err(), BuildError::ZeroCapacity);
    assert!(matches!(
        Pool::new(usize::MAX).unwrap_err(),
        BuildError::CapacityTooLarge(_)
    ));
    assert_eq!(
        Pool::builder().lanes(0).build().unwrap_err(),
        BuildError::ZeroLanes
    );
    let too_many = cenote::tasks::MAX_LANES + 1;
    let err = Pool::builder().lanes(too_many).build().unwrap_err();
    assert_eq!(err, BuildError::TooManyLanes(too_many));
    assert!(err.to_string().contains("at most 65535"), "{err}");
    assert!(!format!("{}", BuildError::NoRuntime).is_empty());
}

#[test]
fn a_pool_built_outside_the_runtime_runs_on_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = Pool::builder()
        .capacity(3)
        .runtime(rt.handle().clone())
        .build()
        .unwrap();
    let h = pool.try_spawn(async { 40 + 2 }).unwrap();
    assert_eq!(rt.block_on(h).unwrap(), 42);
}

#[test]
fn runtime_shutdown_cancels_what_runs_and_frees_the_slots() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = Pool::builder()
        .capacity(4)
        .runtime(rt.handle().clone())
        .build()
        .unwrap();
    let pending = pool.try_spawn(std::future::pending::<()>()).unwrap();
    let sleeping = pool
        .try_spawn(async { tokio::time::sleep(Duration::from_secs(60)).await })
        .unwrap();
    let p = pool.clone();
    rt.block_on(eventually_async("p.running() == 2", move || {
        p.running() == 2
    }));
    drop(rt);
    let after = futures_lite::future::block_on(pending);
    assert!(matches!(after, Err(JoinError::Cancelled)));
    assert!(matches!(
        futures_lite::future::block_on(sleeping),
        Err(JoinError::Cancelled)
    ));
    assert_eq!(pool.running(), 0);
    assert_eq!(pool.stats().cancelled, 2);
    assert!(matches!(
        pool.try_spawn(async {}),
        Err(SpawnError::RuntimeGone)
    ));
}

#[test]
fn runtime_shutdown_with_futures_awaiting_each_other_ends_every_one_once() {
    // A chain of pool futures, each awaiting the handle of the one before
    // (half of them also spinning, so they sit in their lane's queue): as
    // the runtime goes, cancelling one wakes the next, which is pushed to a
    // lane that is gone (drained by the pusher, or by the drain already
    // running). Every future ends exactly once, as cancelled, and nothing
    // hangs (a watchdog fails the test instead).
    for eager in [true, false] {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let pool = Pool::builder()
                .capacity(64)
                .eager_start(eager)
                .runtime(rt.handle().clone())
                .build()
                .unwrap();
            const N: usize = 40;
            let mut handles = Vec::new();
            let mut prev = pool.try_spawn(std::future::pending::<usize>()).unwrap();
            for i in 1..N {
                let mut before = prev;
                let spin = i % 2 == 1;
                prev = pool
                    .try_spawn(std::future::poll_fn(
                        move |cx| match std::future::Future::poll(
                            std::pin::Pin::new(&mut before),
                            cx,
                        ) {
                            std::task::Poll::Ready(r) => std::task::Poll::Ready(r.unwrap_or(i)),
                            std::task::Poll::Pending => {
                                if spin {
                                    cx.waker().wake_by_ref();
                                }
                                std::task::Poll::Pending
                            }
                        },
                    ))
                    .unwrap();
                if i % 8 == 0 {
                    handles.push(pool.try_spawn(async { 7usize }).unwrap());
                }
            }
            let p = pool.clone();
            rt.block_on(eventually_async("p.running() == N", move || {
                p.running() == N
            }));
            drop(rt);
            let last = futures_lite::future::block_on(prev);
            assert!(matches!(last, Err(JoinError::Cancelled)), "{last:?}");
            for h in handles {
                assert_eq!(futures_lite::future::block_on(h).unwrap(), 7);
            }
            assert_eq!(pool.running(), 0);
            let stats = pool.stats();
            assert_eq!(stats.cancelled, N as u64, "{stats:?}");
            done_tx.send(()).unwrap();
        });
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the runtime's shutdown ended every future without hanging");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_outlive_the_pool_handle() {
    let pool = Pool::new(4).unwrap();
    let h = pool
        .spawn(async {
            sleep(Duration::from_millis(20)).await;
            "done"
        })
        .await
        .unwrap();
    drop(pool);
    assert_eq!(h.await.unwrap(), "done");
}

#[tokio::test(flavor = "current_thread")]
async fn works_on_a_current_thread_runtime() {
    let pool = Pool::new(16).unwrap();
    let mut hs = Vec::new();
    for i in 0..1_000u32 {
        hs.push(
            pool.spawn(async move {
                tokio::task::yield_now().await;
                i
            })
            .await
            .unwrap(),
        );
    }
    let mut sum = 0;
    for h in hs {
        sum += h.await.unwrap();
    }
    assert_eq!(sum, (0..1_000).sum::<u32>());
}

/// 4 spawner tasks push 200k futures through a pool of 64 (a third of them
/// wait on a timer or yield, a few panic, a few are aborted); every future
/// runs at most once, every unaborted one exactly once, the capacity holds,

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_of_one_pool_run_in_parallel_on_two_workers() {
    // Two futures that each, inside one poll, wait for the other to be
    // inside its poll too: they meet only if their lanes are polled on two
    // threads at once (in one lane, or one worker, the first one waits out
    // its deadline alone).
    let pool = Pool::new(8).unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..2 {
        let inside = inside.clone();
        handles.push(
            pool.spawn(async move {
                // Return from the eager first poll: the meeting happens in
                // the lanes.
                tokio::task::yield_now().await;
                inside.fetch_add(1, SeqCst);
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while inside.load(SeqCst) < 2 {
                    if std::time::Instant::now() > deadline {
                        return false;
                    }
                    std::hint::spin_loop();
                }
                true
            })
            .await
            .unwrap(),
        );
    }
    for h in handles {
        assert!(
            h.await.unwrap(),
            "the other future was never polled meanwhile"
        );
    }
}

#[test]
fn a_lane_of_futures_that_never_stop_waking_themselves_still_yields_and_resumes() {
    // On a one-thread runtime, pool futures that wake themselves on every
    // poll keep their lane busy for ever. The lane must still give the
    // thread back (a timer fires, a plain task runs) and must be polled
    // again afterwards (the futures go on). A lane that never yields hangs
    // the runtime (the watchdog fails the test); one that yields without
    // arranging its next poll stops the futures (the count stalls).
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = Pool::new(4).unwrap();
            let polls = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            for _ in 0..4 {
                let (polls, stop) = (polls.clone(), stop.clone());
                drop(
                    pool.spawn(std::future::poll_fn(move |cx| {
                        polls.fetch_add(1, SeqCst);
                        if stop.load(SeqCst) {
                            return std::task::Poll::Ready(());
                        }
                        cx.waker().wake_by_ref();
                        std::task::Poll::Pending
                    }))
                    .await
                    .unwrap(),
                );
            }
            let ran = tokio::spawn(async { 42 });
            assert_eq!(ran.await.unwrap(), 42, "a plain task ran beside the lane");
            // The lane goes on after yielding: more polls keep coming (as
            // fast as the machine allows; under valgrind, slowly).
            let before = polls.load(SeqCst);
            let t0 = std::time::Instant::now();
            while polls.load(SeqCst) <= before + 128 {
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "the lane stalled after yielding: {before} then {} polls",
                    polls.load(SeqCst)
                );
                sleep(Duration::from_millis(5)).await;
            }
            stop.store(true, SeqCst);
            pool.wait_idle().await;
            assert_eq!(pool.running(), 0);
        });
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the runtime was not held by a busy lane");
}
/// and the counters add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_every_future_runs_exactly_once() {
    stress(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_every_future_runs_exactly_once_without_eager_start() {
    stress(false).await;
}

async fn stress(eager: bool) {
    const PER: usize = 50_000;
    const SPAWNERS: usize = 4;
    let pool = Pool::builder()
        .capacity(64)
        .eager_start(eager)
        .build()
        .unwrap();
    let runs: Arc<Vec<AtomicUsize>> =
        Arc::new((0..PER * SPAWNERS).map(|_| AtomicUsize::new(0)).collect());
    let flight = Arc::new(InFlight::default());
    let mut spawners = Vec::new();
    for s in 0..SPAWNERS {
        let (pool, runs, flight) = (pool.clone(), runs.clone(), flight.clone());
        spawners.push(tokio::spawn(async move {
            let mut aborted = Vec::new();
            for k in 0..PER {
                let id = s * PER + k;
                let (runs, flight) = (runs.clone(), flight.clone());
                let h = pool
                    .spawn(async move {
                        let n = flight.enter();
                        // An abort drops the future mid-body: leave on drop.
                        let _leave = Leaving(&flight);
                        assert!(n <= 64);
                        match id % 3 {
                            0 => tokio::task::yield_now().await,
                            1 if id % 300 == 1 => sleep(Duration::from_micros(100)).await,
                            _ => {}
                        }
                        runs[id].fetch_add(1, SeqCst);
                        if id % 10_007 == 5 {
                            panic!("planned");
                        }
                    })
                    .await
                    .unwrap();
                if id % 5_003 == 2 {
                    h.abort();
                    aborted.push(id);
                }
            }
            aborted
        }));
    }
    let mut aborted = Vec::new();
    for s in spawners {
        aborted.extend(s.await.unwrap());
    }
    pool.wait_idle().await;
    let mut ran = 0;
    for (id, r) in runs.iter().enumerate() {
        let r = r.load(SeqCst);
        assert!(r <= 1, "future {id} ran {r} times");
        if !aborted.contains(&id) {
            assert_eq!(r, 1, "future {id} never ran");
        }
        ran += r;
    }
    assert!(flight.max.load(SeqCst) <= 64);
    let s = pool.stats();
    assert_eq!(s.spawned as usize, PER * SPAWNERS);
    assert_eq!(s.completed + s.panicked + s.aborted, s.spawned);
    assert_eq!(s.running, 0);
    assert!(s.panicked > 0);
    // Aborted futures that had already run still count as run.
    assert!(ran >= PER * SPAWNERS - aborted.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_blocking_reports_a_full_blocking_pool_and_aborts_stop_the_wait() {
    // A blocking pool of one thread and no queue: a second closure is refused
    // with the pool's own error, and the slot it took comes back.
    let workers = cenote::workers::Pool::builder()
        .capacity(1)
        .queue(0)
        .build()
        .unwrap();
    let pool = Pool::builder()
        .capacity(4)
        .blocking_pool(workers)
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let busy = pool
        .spawn_blocking(move || rx.recv().is_ok())
        .await
        .unwrap();
    let p = pool.clone();
    eventually_async("p.running() == 1", move || p.running() == 1).await;
    let refused = pool.spawn_blocking(|| ()).await.unwrap_err();
    assert!(matches!(refused, SpawnError::Blocking(_)), "{refused:?}");
    assert!(!refused.to_string().is_empty());
    assert_eq!(pool.running(), 1, "the refused closure's slot came back");
    // Aborting the handle stops the waiting; the closure runs on, and
    // keeps its slot until it returns: the capacity bounds blocking work.
    busy.abort();
    assert!(busy.await.unwrap_err().is_aborted());
    assert_eq!(pool.running(), 1);
    pool.resize(1).unwrap();
    assert!(matches!(pool.try_spawn(async {}), Err(SpawnError::Full)));
    let p = pool.clone();
    let idle = tokio::spawn(async move { p.wait_idle().await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!idle.is_finished(), "wait_idle waits for the closure");
    tx.send(()).unwrap();
    let p = pool.clone();
    eventually_async("p.running() == 0", move || p.running() == 0).await;
    timeout(Duration::from_secs(10), idle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pool.spawn(async { 5 }).await.unwrap().await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_blocking_closures_keep_their_slots_in_every_order() {
    // Aborted before, during and after their closures, racing them: the
    // slots all come back once, and never more than the capacity run.
    let pool = Pool::builder().capacity(3).build().unwrap();
    let flight = Arc::new(InFlight::default());
    for i in 0..300u64 {
        let f = flight.clone();
        let h = pool
            .spawn_blocking(move || {
                assert!(f.enter() <= 3);
                let _l = Leaving(&f);
                std::thread::sleep(Duration::from_micros(i % 7 * 50));
            })
            .await
            .unwrap();
        if i % 2 == 0 {
            h.abort();
        }
        if i % 3 == 0 {
            drop(h);
        }
    }
    timeout(Duration::from_secs(20), pool.wait_idle())
        .await
        .unwrap();
    assert_eq!(pool.running(), 0);
    assert!(flight.max.load(SeqCst) <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_waiting_zero_refuses_at_once_and_stats_add_up() {
    let pool = Pool::builder().capacity(1).max_waiting(0).build().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let gate = pool.spawn(async move { rx.await.ok() }).await.unwrap();
    assert!(matches!(
        pool.spawn(async {}).await.unwrap_err(),
        SpawnError::TooManyWaiting(0)
    ));
    // A deadline of zero fails at once too, counted as timed out.
    assert!(matches!(
        pool.spawn_timeout(async {}, Duration::ZERO)
            .await
            .unwrap_err(),
        SpawnError::TimedOut(_)
    ));
    tx.send(()).unwrap();
    gate.await.unwrap();
    pool.wait_idle().await;
    let s = pool.stats();
    assert_eq!(
        (s.spawned, s.completed, s.rejected, s.timed_out, s.waited),
        (1, 1, 1, 1, 0)
    );
    assert_eq!((s.running, s.waiting, s.capacity), (0, 0, 1));
    assert!(format!("{pool:?}").contains("capacity"));
}

// ----- eager start -----------------------------------------------------------

/// A pool whose eager starts never pause (so that a slow moment of the test
/// machine cannot turn them off).
fn never_paused(capacity: usize) -> Pool {
    Pool::builder()
        .capacity(capacity)
        .eager_limit(Duration::MAX)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_future_that_finishes_in_its_first_poll_is_done_when_spawn_returns() {
    // On a current-thread runtime no lane runs before this task yields, so a
    // finished handle right after the spawn means the spawner polled it.
    let pool = never_paused(4);
    let h = pool.spawn(async { 7 }).await.unwrap();
    assert!(h.is_finished());
    assert_eq!(pool.running(), 0);
    assert_eq!(h.await.unwrap(), 7);
    let failing = pool.try_spawn(async { panic!("first poll") }).unwrap();
    assert!(failing.is_finished());
    assert_eq!(
        failing.await.unwrap_err().panic_message(),
        Some("first poll")
    );
    // Aborting a finished handle is harmless.
    let h = pool.spawn(async { 1 }).await.unwrap();
    h.abort();
    assert_eq!(h.await.unwrap(), 1);
    let s = pool.stats();
    assert_eq!((s.spawned, s.completed, s.panicked), (3, 2, 1));

    // Turned off, the future waits for a lane.
    let lazy = Pool::builder()
        .capacity(4)
        .eager_start(false)
        .build()
        .unwrap();
    let h = lazy.spawn(async { 7 }).await.unwrap();
    assert!(!h.is_finished());
    assert_eq!(h.await.unwrap(), 7);
}

#[tokio::test(flavor = "current_thread")]
async fn a_waiting_first_poll_goes_to_a_lane_and_can_be_aborted() {
    let pool = never_paused(8);
    let started = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = oneshot::channel::<u32>();
    let s = started.clone();
    let waits = pool
        .spawn(async move {
            s.fetch_add(1, SeqCst);
            rx.await.unwrap() + 1
        })
        .await
        .unwrap();
    // Its body started in the spawn, and it holds its slot.
    assert_eq!(started.load(SeqCst), 1);
    assert_eq!(pool.running(), 1);
    assert!(!waits.is_finished());
    // One that wakes itself in its first poll is polled again by a lane.
    let yields = pool
        .spawn(async {
            tokio::task::yield_now().await;
            5
        })
        .await
        .unwrap();
    // One that never finishes, aborted before its lane ever saw it.
    let forever = pool.spawn(std::future::pending::<()>()).await.unwrap();
    forever.abort();
    tx.send(41).unwrap();
    assert_eq!(waits.await.unwrap(), 42);
    assert_eq!(yields.await.unwrap(), 5);
    assert!(matches!(forever.await, Err(JoinError::Aborted)));
    pool.wait_idle().await;
    assert_eq!(pool.running(), 0);
    let s = pool.stats();
    assert_eq!((s.completed, s.aborted), (2, 1));
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_aborts_first_polled_futures_its_lanes_have_not_filed_yet() {
    let pool = never_paused(100);
    let mut handles = Vec::new();
    for _ in 0..50 {
        handles.push(pool.spawn(std::future::pending::<()>()).await.unwrap());
    }
    // No lane has run yet (this task has not yielded): all 50 sit in their
    // lanes' adopt queues.
    let report = pool.shutdown_timeout(Duration::from_millis(5)).await;
    assert_eq!(report.unwrap_err().aborted, 50);
    assert_eq!(pool.running(), 0);
    for h in handles {
        assert!(matches!(h.await, Err(JoinError::Aborted)));
    }
}

#[test]
fn spawns_from_outside_the_runtime_are_not_polled_there() {
    // A plain thread has no tokio context: a first poll there would find no
    // timer. The pool queues such spawns for its lanes instead.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = Pool::builder()
        .capacity(4)
        .runtime(rt.handle().clone())
        .build()
        .unwrap();
    let on_runtime = pool
        .try_spawn(async {
            sleep(Duration::from_millis(1)).await;
            std::thread::current().name().map(str::to_owned)
        })
        .unwrap();
    let name = rt.block_on(on_runtime).unwrap();
    assert!(name.unwrap_or_default().contains("tokio"));
    // From another runtime: also queued, and runs on the pool's.
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = other
        .block_on(pool.spawn(async {
            sleep(Duration::from_millis(1)).await;
            3
        }))
        .unwrap();
    drop(other);
    assert_eq!(rt.block_on(h).unwrap(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn a_long_first_poll_pauses_eager_starts() {
    // One eager first poll in 32 per thread is timed. These take at least
    // 2 ms, far over a 1 ms limit, so within 32 spawns one is timed and the
    // next spawns (1,024 of them) wait for a lane.
    let pool = Pool::builder()
        .capacity(64)
        .eager_limit(Duration::from_millis(1))
        .build()
        .unwrap();
    for _ in 0..32 {
        drop(
            pool.spawn(async { std::thread::sleep(Duration::from_millis(2)) })
                .await
                .unwrap(),
        );
    }
    let next = pool.spawn(async { 1 }).await.unwrap();
    assert!(
        !next.is_finished(),
        "queued for a lane after a long first poll"
    );
    assert_eq!(next.await.unwrap(), 1);
    pool.wait_idle().await;
}

#[tokio::test(flavor = "current_thread")]
async fn nested_spawns_do_not_recurse() {
    // Each future spawns the next from inside its first poll: started
    // eagerly, 20,000 of them would nest 20,000 polls deep on one stack.
    // (Not an `async fn`: its future would contain its own type.)
    #[allow(clippy::manual_async_fn)]
    fn chain(
        pool: Pool,
        left: u32,
        done: Arc<AtomicUsize>,
    ) -> impl std::future::Future<Output = ()> + Send {
        async move {
            if left == 0 {
                done.fetch_add(1, SeqCst);
                return;
            }
            let next = chain(pool.clone(), left - 1, done);
            drop(pool.try_spawn(next).unwrap());
        }
    }
    let pool = never_paused(100);
    let done = Arc::new(AtomicUsize::new(0));
    drop(
        pool.spawn(chain(pool.clone(), 20_000, done.clone()))
            .await
            .unwrap(),
    );
    pool.wait_idle().await;
    assert_eq!(done.load(SeqCst), 1);
}

#[test]
fn a_waker_kept_by_a_finished_first_poll_outlives_the_pool() {
    static KEPT: Mutex<Option<std::task::Waker>> = Mutex::new(None);
    struct Keep;
    impl std::future::Future for Keep {
        type Output = u8;
        fn poll(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<u8> {
            *KEPT.lock().unwrap() = Some(cx.waker().clone());
            std::task::Poll::Ready(9)
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = never_paused(2);
        assert_eq!(pool.spawn(Keep).await.unwrap().await.unwrap(), 9);
        // Woken after its end: nothing happens.
        KEPT.lock().unwrap().as_ref().unwrap().wake_by_ref();
    });
    drop(rt);
    // The pool and its runtime are gone; waking and dropping the waker
    // touches neither.
    let waker = KEPT.lock().unwrap().take().unwrap();
    waker.wake();
}

/// Panics on drop: a future's output, or the future itself.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("bomb");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_output_that_panics_on_drop_kills_nothing() {
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let pool = Pool::builder()
        .capacity(4)
        .lanes(1)
        // A slow first poll on a loaded machine must not pause eager
        // starts: the eager bomb below is dropped with its handle, on this
        // thread, and so is logged rather than handed to the handler.
        .eager_limit(Duration::from_secs(3600))
        .panic_handler(move |p| {
            if p.downcast_ref::<&str>() == Some(&"bomb") {
                s.fetch_add(1, SeqCst);
            }
        })
        .build()
        .unwrap();
    // A neighbour in the same lane, waiting while the bombs go off.
    let (tx, rx) = oneshot::channel::<u32>();
    let neighbour = pool.spawn(async move { rx.await.unwrap() }).await.unwrap();
    for _ in 0..20 {
        let h = pool
            .spawn(async {
                tokio::task::yield_now().await;
                Bomb
            })
            .await
            .unwrap();
        drop(h); // detached: the lane drops the output
    }
    // Also a bomb from an eager first poll (dropped with its handle, here:
    // caught and logged), and one in a future's own drop (aborted).
    drop(pool.spawn(async { Bomb }).await.unwrap());
    let h = pool
        .spawn(async {
            let _b = Bomb;
            std::future::pending::<()>().await
        })
        .await
        .unwrap();
    h.abort();
    // Every bomb's slot comes back: only the neighbour runs.
    eventually_async("pool.running() == 1", || pool.running() == 1).await;
    tx.send(7).unwrap();
    assert_eq!(
        neighbour.await.unwrap(),
        7,
        "the neighbour is not cancelled"
    );
    timeout(Duration::from_secs(10), pool.wait_idle())
        .await
        .expect("wait_idle returns");
    assert_eq!(pool.running(), 0);
    for i in 0..100u32 {
        assert_eq!(
            pool.spawn(async move { i }).await.unwrap().await.unwrap(),
            i
        );
    }
    assert_eq!(
        seen.load(SeqCst),
        21,
        "every drop panic reaches the handler"
    );
}
