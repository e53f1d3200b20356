//! The fleet semaphore against real Redis servers: the shared one
//! (`CENOTE_REDIS_URL`, semaphores named `t-<pid>-<test>`, their keys
//! deleted at the end) and private `redis-server`s for the tests that stop
//! the server. A killed holder is a real child process (this test binary,
//! run again in a child mode).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cenote_fault_proxy::{Proxy, RedisServer, Toxics};
use cenote_fleet::{Error, Semaphore};

mod common;
use common::{addr, build, cleanup, expire_leases, name, queued, url, used};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_holds_across_handles_and_every_task_gets_its_turn() {
    let Some(url) = url() else { return };
    let n = name("cap");
    cleanup(&url, &n).await;
    // Three handles: three processes, as far as the protocol knows.
    let mut handles = Vec::new();
    for _ in 0..3 {
        handles.push(build(&url, &n, 2, Duration::from_secs(5)).await);
    }
    let holding = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (sem, holding, most) = (handles[i % 3].clone(), holding.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..4 {
                let lease = sem.acquire().await.unwrap();
                assert!(lease.is_valid());
                let now = holding.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                holding.fetch_sub(1, SeqCst);
                drop(lease);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(most.load(SeqCst), 2, "the cap reached, never passed");
    eventually!("every permit back", used(&url, &n).await == 0);
    assert_eq!(queued(&url, &n).await, 0);
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_granted_in_the_order_they_queued_across_handles() {
    let Some(url) = url() else { return };
    let n = name("fifo");
    cleanup(&url, &n).await;
    let a = build(&url, &n, 1, Duration::from_secs(5)).await;
    let b = build(&url, &n, 1, Duration::from_secs(5)).await;
    let held = a.acquire().await.unwrap();
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let sem = if i % 2 == 0 { a.clone() } else { b.clone() };
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let lease = sem.acquire().await.unwrap();
            order.lock().push((i, lease.token()));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }));
        // Queued before the next one starts.
        eventually!("queued", queued(&url, &n).await == i + 1);
    }
    // A newcomer does not pass the queue.
    assert!(matches!(b.try_acquire().await, Err(Error::Busy)));
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().clone();
    let who: Vec<i64> = order.iter().map(|&(i, _)| i).collect();
    assert_eq!(who, vec![0, 1, 2, 3, 4, 5], "FIFO across handles");
    let tokens: Vec<u64> = order.iter().map(|&(_, t)| t).collect();
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens increase: {tokens:?}"
    );
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cap_for_the_same_name_is_refused() {
    let Some(url) = url() else { return };
    let n = name("capmismatch");
    cleanup(&url, &n).await;
    let _a = build(&url, &n, 3, Duration::from_secs(5)).await;
    let err = Semaphore::builder(&url, &n, 4).build().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::CapMismatch {
                stored: 3,
                asked: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("cap 3, not 4"), "{err}");
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error() {
    let Some(url) = url() else { return };
    let n = name("badinput");
    assert!(matches!(
        Semaphore::builder(&url, &n, 0).build().await,
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Semaphore::builder(&url, "a{b}", 1).build().await,
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Semaphore::builder(&url, &n, 1)
            .ttl(Duration::from_millis(1))
            .build()
            .await,
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Semaphore::builder("redis://127.0.0.1:1", &n, 1)
            .build()
            .await,
        Err(Error::Unreachable(_))
    ));
    let sem = build(&url, &n, 2, Duration::from_secs(5)).await;
    assert!(matches!(
        sem.acquire_many(3).await,
        Err(Error::TooMany { asked: 3, cap: 2 })
    ));
    assert!(matches!(
        sem.acquire_many(0).await,
        Err(Error::TooMany { .. })
    ));
    // Zero timeout: a wait that cannot be, not a hang.
    let held = sem.acquire_many(2).await.unwrap();
    assert!(matches!(
        sem.acquire_timeout(Duration::ZERO).await,
        Err(Error::TimedOut(_))
    ));
    drop(held);
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_times_out_or_is_dropped_leaves_the_queue() {
    let Some(url) = url() else { return };
    let n = name("cancel");
    cleanup(&url, &n).await;
    let sem = build(&url, &n, 1, Duration::from_secs(5)).await;
    let held = sem.acquire().await.unwrap();
    let r = sem.acquire_timeout(Duration::from_millis(100)).await;
    assert!(matches!(r, Err(Error::TimedOut(_))), "{r:?}");
    let dropped = tokio::spawn({
        let sem = sem.clone();
        async move { sem.acquire().await }
    });
    eventually!("queued", queued(&url, &n).await == 1);
    dropped.abort();
    eventually!("left the queue", queued(&url, &n).await == 0);
    drop(held);
    eventually!("released", used(&url, &n).await == 0);
    // Nobody is left waiting: the permit is free at once.
    let again = sem.try_acquire().await.unwrap();
    drop(again);
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_timeouts_drops_and_panics_leaks_no_permit() {
    let Some(url) = url() else { return };
    let n = name("storm");
    cleanup(&url, &n).await;
    // A TTL far above the wait below: every permit must come back by its
    // release, not by its expiry.
    let ttl = Duration::from_secs(60);
    let a = build(&url, &n, 3, ttl).await;
    let b = build(&url, &n, 3, ttl).await;
    let mut tasks = Vec::new();
    for i in 0..60u64 {
        let sem = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for j in 0..5u64 {
                let wait = Duration::from_millis((i * 7 + j * 13) % 40);
                let Ok(lease) = sem.acquire_timeout(wait).await else {
                    continue;
                };
                match (i + j) % 50 {
                    // A holder's panic: the task unwinds with the lease.
                    0 => panic!("a holder's panic"),
                    // A panic in the work the lease guards.
                    25 => {
                        let _ = lease
                            .run_until_lost(async { panic!("the guarded work's panic") })
                            .await;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
        }));
    }
    // Some are cut off midway.
    tokio::time::sleep(Duration::from_millis(30)).await;
    for t in tasks.iter().step_by(5) {
        t.abort();
    }
    let mut panicked = 0;
    for t in tasks {
        if t.await.is_err_and(|e| e.is_panic()) {
            panicked += 1;
        }
    }
    assert!(panicked > 0, "no holder panicked");
    // Well within TTL/3.
    eventually!("every permit back", used(&url, &n).await == 0);
    eventually!("nobody queued", queued(&url, &n).await == 0);
    let all = a.acquire_many(3).await.unwrap();
    drop(all);
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquires_dropped_while_their_batch_is_in_flight_leave_nothing_behind() {
    let Some(url) = url() else { return };
    let n = name("inflight");
    cleanup(&url, &n).await;
    // Expiry would hide a leak: every permit must come back by a cancel.
    let sem = build(&url, &n, 2, Duration::from_secs(60)).await;
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..40u64 {
                // Cut off anywhere within a few round trips.
                let cut = Duration::from_micros((i * 37 + j * 101) % 900);
                if let Ok(Ok(lease)) = tokio::time::timeout(cut, sem.acquire()).await {
                    tokio::task::yield_now().await;
                    drop(lease);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eventually!("every permit back", used(&url, &n).await == 0);
    eventually!("nobody queued", queued(&url, &n).await == 0);
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_releases_and_cancels_sent_in_the_background() {
    let Some(url) = url() else { return };
    let n = name("shutdown");
    cleanup(&url, &n).await;
    let sem = build(&url, &n, 4, Duration::from_secs(30)).await;
    let leases = [
        sem.acquire().await.unwrap(),
        sem.acquire().await.unwrap(),
        sem.acquire_many(2).await.unwrap(),
    ];
    // A waiter dropped while queued: its cancel goes in the background too.
    let waiter = tokio::spawn({
        let sem = sem.clone();
        async move { sem.acquire().await }
    });
    eventually!("queued", queued(&url, &n).await == 1);
    waiter.abort();
    let _ = waiter.await;
    drop(leases);
    sem.shutdown_timeout(Duration::from_secs(5)).await.unwrap();
    // Nothing left to wait for: all reached Redis.
    assert_eq!(used(&url, &n).await, 0);
    assert_eq!(queued(&url, &n).await, 0);
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_redis_no_longer_has_is_lost_and_its_work_cancelled() {
    let Some(url) = url() else { return };
    let n = name("lost");
    cleanup(&url, &n).await;
    let sem = build(&url, &n, 1, Duration::from_secs(5)).await;
    let lease = sem.acquire().await.unwrap();
    assert!(lease.is_valid());
    let deadline = lease.deadline().unwrap();
    assert!(deadline <= Instant::now() + Duration::from_secs(5));
    // It ends on Redis's clock (as when a holder stalled past the TTL and
    // the lease was reclaimed).
    expire_leases(&url, &n).await;
    let work = lease.run_until_lost(std::future::pending::<()>());
    let renew = sem.renew_now();
    let (r, ()) = tokio::join!(work, renew);
    assert!(matches!(r, Err(Error::LeaseLost)));
    assert!(!lease.is_valid());
    assert!(lease.deadline().is_none());
    assert!(matches!(lease.release().await, Err(Error::LeaseLost)));
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_the_lease_is_lost_at_its_local_deadline_not_before() {
    if url().is_none() {
        return;
    }
    let server = RedisServer::start();
    let ttl = Duration::from_millis(600);
    let sem = build(&server.url(), "gone", 1, ttl).await;
    let lease = sem.acquire().await.unwrap();
    let deadline = lease.deadline().unwrap();
    drop(server);
    let t0 = Instant::now();
    let r = lease.run_until_lost(std::future::pending::<()>()).await;
    assert!(matches!(r, Err(Error::LeaseLost)));
    // Cut off at the deadline (renewals failed), not at the first failure.
    assert!(Instant::now() >= deadline);
    assert!(
        t0.elapsed() <= ttl + Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    // A call meanwhile says the server is unreachable, within the response
    // timeout.
    let t0 = Instant::now();
    assert!(matches!(
        sem.try_acquire().await,
        Err(Error::Unreachable(_))
    ));
    assert!(t0.elapsed() < ttl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_holder_stops_its_work_before_anyone_else_is_granted() {
    let Some(url) = url() else { return };
    let n = name("blackhole");
    cleanup(&url, &n).await;
    let ttl = Duration::from_secs(1);
    let proxy = Proxy::start(addr(&url)).await.unwrap();
    let cut_off = build(&format!("redis://{}", proxy.addr()), &n, 1, ttl).await;
    let next = build(&url, &n, 1, ttl).await;
    let lease = cut_off.acquire().await.unwrap();
    let token = lease.token();
    let work = tokio::spawn(async move {
        let r = lease.run_until_lost(std::future::pending::<()>()).await;
        (r, Instant::now())
    });
    let waiter = tokio::spawn(async move { next.acquire().await });
    eventually!("queued", queued(&url, &n).await == 1);
    // The holder's packets go nowhere: its renewals are never answered.
    proxy.set(Toxics::none().black_hole());
    let (r, stopped) = work.await.unwrap();
    assert!(matches!(r, Err(Error::LeaseLost)), "{r:?}");
    let successor = waiter.await.unwrap().unwrap();
    let granted = Instant::now();
    assert!(stopped < granted, "the work ran on past the next grant");
    assert!(successor.token() > token);
    assert_eq!(cut_off.losses().detected, 0);
    drop(successor);
    proxy.clear();
    cleanup(&url, &n).await;
}

/// The child mode: `CENOTE_FLEET_CHILD` is `url|name|cap|queue`; holds
/// one permit of that semaphore until killed, and with `queue` 1 also
/// queues for another.
#[test]
fn child_holder() {
    let Ok(spec) = std::env::var("CENOTE_FLEET_CHILD") else {
        return;
    };
    let [url, n, cap, queue] = spec.split('|').collect::<Vec<_>>()[..] else {
        panic!("bad child spec {spec:?}");
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sem = build(url, n, cap.parse().unwrap(), Duration::from_secs(1)).await;
        let _lease = sem.acquire().await.unwrap();
        let waiting = sem.clone();
        let _waiting = (queue == "1").then(|| tokio::spawn(async move { waiting.acquire().await }));
        std::future::pending::<()>().await;
    });
}

/// A child process holding one permit of `name` (cap `cap`), and queued
/// for another if `queue`.
fn spawn_child(url: &str, name: &str, cap: u64, queue: bool) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_holder", "--test-threads=1"])
        .env(
            "CENOTE_FLEET_CHILD",
            format!("{url}|{name}|{cap}|{}", u8::from(queue)),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holders_permit_goes_to_the_next_waiter_within_the_ttl() {
    let Some(url) = url() else { return };
    let n = name("sigkill");
    cleanup(&url, &n).await;
    let ttl = Duration::from_secs(1);
    let mut child = spawn_child(&url, &n, 1, false);
    eventually!("the child holds", used(&url, &n).await == 1);
    let sem = build(&url, &n, 1, ttl).await;
    let waiter = tokio::spawn({
        let sem = sem.clone();
        async move { sem.acquire().await }
    });
    eventually!("queued", queued(&url, &n).await == 1);
    child.kill().unwrap();
    let killed = Instant::now();
    child.wait().unwrap();
    let lease = waiter.await.unwrap().unwrap();
    let woken = killed.elapsed();
    // The child's last renewal may have been just before the kill.
    assert!(
        woken <= ttl + Duration::from_millis(100),
        "woken after {woken:?}"
    );
    drop(lease);
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_processs_queued_waiter_holds_no_permit_past_its_leases() {
    let Some(url) = url() else { return };
    let n = name("sigkillq");
    cleanup(&url, &n).await;
    let ttl = Duration::from_secs(1);
    let sem = build(&url, &n, 2, ttl).await;
    let mine = sem.acquire().await.unwrap();
    let mut child = spawn_child(&url, &n, 2, true);
    eventually!("the child holds and waits", queued(&url, &n).await == 1);
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let sem = sem.clone();
            tokio::spawn(async move { sem.acquire().await })
        })
        .collect();
    eventually!("queued behind it", queued(&url, &n).await == 3);
    child.kill().unwrap();
    let killed = Instant::now();
    child.wait().unwrap();
    // The permit given back later goes to the dead process's waiter,
    // first in line: both permits are then the dead process's, and both
    // come back when its leases would have ended.
    tokio::time::sleep(ttl / 2).await;
    drop(mine);
    let mut leases = Vec::new();
    for w in waiters {
        leases.push(w.await.unwrap().unwrap());
    }
    let woken = killed.elapsed();
    assert!(
        woken <= ttl + Duration::from_millis(100),
        "both served after {woken:?}"
    );
    drop(leases);
    cleanup(&url, &n).await;
}

#[test]
fn the_blocking_acquire_works_from_a_plain_thread_and_refuses_a_current_thread_runtime() {
    let Some(url) = url() else { return };
    let n = name("blocking");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sem = rt.block_on(async {
        cleanup(&url, &n).await;
        build(&url, &n, 1, Duration::from_secs(5)).await
    });
    let lease = std::thread::spawn({
        let sem = sem.clone();
        move || sem.acquire_blocking()
    })
    .join()
    .unwrap()
    .unwrap();
    assert!(lease.is_valid());
    drop(lease);
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = single.block_on(async { sem.acquire_blocking() });
    assert!(matches!(r, Err(Error::InsideRuntime)));
    rt.block_on(cleanup(&url, &n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_after_the_semaphores_runtime_shut_down_fail_and_never_hang() {
    let Some(url) = url() else { return };
    let n = name("rtgone");
    cleanup(&url, &n).await;
    // Built on a runtime of its own, which then shuts down.
    let (u, nn) = (url.clone(), n.clone());
    let sem = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sem = rt.block_on(build(&u, &nn, 2, Duration::from_secs(5)));
        drop(rt);
        sem
    })
    .join()
    .unwrap();
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(5), sem.acquire()).await;
        assert!(
            matches!(r, Ok(Err(Error::RuntimeGone))),
            "{:?}",
            r.map(|r| r.map(|l| l.token()))
        );
    }
    cleanup(&url, &n).await;
}
