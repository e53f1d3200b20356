//! The fleet semaphore as a second gate: resource pools in several
//! "processes" (handles) keep at most the fleet's cap of resources
//! between them, a resource whose lease is lost is never lent again, and
//! futures run under a permit each.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use cenote::resources::{Manager, Pool};
use cenote_fleet::{Error, GateError};

mod common;
use common::{build, cleanup, expire_leases, name, url, used};

/// Counts the resources alive at once (a stand-in for connections).
#[derive(Clone, Default)]
struct Counting {
    live: Arc<AtomicU64>,
    most: Arc<AtomicU64>,
    made: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
#[error("never fails")]
struct Never;

impl Manager for Counting {
    type Resource = u64;
    type Error = Never;

    async fn create(&self) -> Result<u64, Never> {
        let now = self.live.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        Ok(self.made.fetch_add(1, SeqCst))
    }

    async fn destroy(&self, _r: u64) {
        self.live.fetch_sub(1, SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_in_three_processes_keep_at_most_the_fleet_cap_of_resources() {
    let Some(url) = url() else { return };
    let n = name("gate-cap");
    cleanup(&url, &n).await;
    let counting = Counting::default();
    let mut pools = Vec::new();
    for _ in 0..3 {
        // A create waits for a fleet permit at most 200 ms: a get whose
        // create cannot pass the gate then takes a resource its pool got
        // back meanwhile (see `Gated`).
        let fleet = cenote_fleet::Semaphore::builder(&url, &n, 5)
            .acquire_timeout(Duration::from_millis(200))
            .build()
            .await
            .unwrap();
        // Each pool keeps up to 2: 6 in all without the fleet's cap (and
        // each pool gets at least one of the 5).
        let pool = Pool::builder(fleet.gate(counting.clone()))
            .capacity(2)
            .build()
            .unwrap();
        pools.push(pool);
    }
    let mut tasks = Vec::new();
    for i in 0..24 {
        let pool = pools[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let r = pool.get().await.unwrap();
                assert!(r.lease().is_valid());
                tokio::time::sleep(Duration::from_millis(2)).await;
                drop(r);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let most = counting.most.load(SeqCst);
    assert!((3..=5).contains(&most), "{most} alive at once");
    for p in &pools {
        p.close();
    }
    eventually!("every resource destroyed", counting.live.load(SeqCst) == 0);
    eventually!("every fleet permit back", used(&url, &n).await == 0);
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_whose_lease_is_lost_is_destroyed_not_lent_again() {
    let Some(url) = url() else { return };
    let n = name("gate-lost");
    cleanup(&url, &n).await;
    let fleet = build(&url, &n, 2, Duration::from_secs(5)).await;
    let counting = Counting::default();
    let pool = Pool::builder(fleet.gate(counting.clone()))
        .capacity(2)
        .build()
        .unwrap();
    let r = pool.get().await.unwrap();
    let (first, token) = (**r, r.lease().token());
    drop(r);
    // The lease vanishes from Redis; the next renewal says so.
    expire_leases(&url, &n).await;
    fleet.renew_now().await;
    let r = pool.get().await.unwrap();
    assert_ne!(**r, first, "the resource of a lost lease was lent");
    assert!(r.lease().token() > token);
    drop(r);
    eventually!(
        "the old resource destroyed",
        counting.live.load(SeqCst) == 1
    );
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_that_cannot_be_passed_fails_the_create_with_the_cause() {
    let Some(url) = url() else { return };
    let n = name("gate-timeout");
    cleanup(&url, &n).await;
    let fleet = cenote_fleet::Semaphore::builder(&url, &n, 1)
        .acquire_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let held = fleet.acquire().await.unwrap();
    let pool = Pool::builder(fleet.gate(Counting::default()))
        .capacity(2)
        .acquire_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = pool.get().await.unwrap_err();
    let cause = err.cause().expect("the create's error");
    assert!(
        matches!(cause, GateError::Fleet(Error::TimedOut(_))),
        "{cause:?}"
    );
    drop(held);
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_gated_by_the_fleet_run_at_most_cap_at_once() {
    let Some(url) = url() else { return };
    let n = name("gate-tasks");
    cleanup(&url, &n).await;
    let fleet = build(&url, &n, 3, Duration::from_secs(5)).await;
    let pool = cenote::tasks::Pool::builder().capacity(16).build().unwrap();
    let running = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..32 {
        let (running, most) = (running.clone(), most.clone());
        let work = fleet.gated(async move {
            let now = running.fetch_add(1, SeqCst) + 1;
            most.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(3)).await;
            running.fetch_sub(1, SeqCst);
        });
        handles.push(pool.spawn(work).await.unwrap());
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(most.load(SeqCst), 3);
    cleanup(&url, &n).await;
}
