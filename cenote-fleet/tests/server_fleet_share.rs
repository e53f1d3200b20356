//! Local-share mode on the shared Redis: blocks of permits leased by each
//! process and served locally. The cap holds across the shares, blocks go
//! back when idle and rotate between busy processes, and a lost block
//! voids the local permits it may back.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use cenote_fleet::{Error, LocalShare};

mod common;
use common::{build, cleanup, expire_leases, name, url, used};

/// `tasks` tasks taking `rounds` local permits each, holding each for
/// `hold`; counts the most holders at once across every share given the
/// same `holding`, and each share's grants in `done`.
async fn load(
    share: LocalShare,
    tasks: u64,
    rounds: u64,
    hold: Duration,
    holding: Arc<AtomicU64>,
    most: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
) {
    let mut all = Vec::new();
    for _ in 0..tasks {
        let (share, holding, most, done) =
            (share.clone(), holding.clone(), most.clone(), done.clone());
        all.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let permit = share.acquire().await.unwrap();
                assert!(permit.is_valid());
                most.fetch_max(holding.fetch_add(1, SeqCst) + 1, SeqCst);
                tokio::time::sleep(hold).await;
                holding.fetch_sub(1, SeqCst);
                done.fetch_add(1, SeqCst);
                drop(permit);
            }
        }));
    }
    for t in all {
        t.await.unwrap();
    }
}

/// Two handles (two processes, as far as the protocol knows) of a
/// semaphore of `cap`, each with a share of blocks of at most 4.
async fn two_shares(url: &str, n: &str, cap: u64, idle: Duration) -> (LocalShare, LocalShare) {
    let a = build(url, n, cap, Duration::from_secs(5)).await;
    let b = build(url, n, cap, Duration::from_secs(5)).await;
    (
        a.local_share(4, idle).unwrap(),
        b.local_share(4, idle).unwrap(),
    )
}

/// Holders now, the most at once, and each share's grants.
fn counters() -> [Arc<AtomicU64>; 4] {
    std::array::from_fn(|_| Arc::new(AtomicU64::new(0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shares_keep_the_cap_and_give_their_blocks_back_when_idle() {
    let Some(url) = url() else { return };
    let n = name("share");
    cleanup(&url, &n).await;
    let (sa, sb) = two_shares(&url, &n, 6, Duration::from_millis(200)).await;
    let [holding, most, da, db] = counters();
    let hold = Duration::from_millis(1);
    tokio::join!(
        load(
            sa.clone(),
            10,
            40,
            hold,
            holding.clone(),
            most.clone(),
            da.clone()
        ),
        load(
            sb.clone(),
            10,
            40,
            hold,
            holding.clone(),
            most.clone(),
            db.clone()
        ),
    );
    assert!(
        most.load(SeqCst) <= 6,
        "{} holders at once",
        most.load(SeqCst)
    );
    assert_eq!(da.load(SeqCst) + db.load(SeqCst), 800);
    assert!(sa.held() + sb.held() <= 6);
    // Idle: every block goes back.
    eventually!("blocks given back", sa.held() + sb.held() == 0);
    eventually!("Redis counts none held", used(&url, &n).await == 0);
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_share_rotates_its_blocks_so_another_is_served() {
    let Some(url) = url() else { return };
    let n = name("rotate");
    cleanup(&url, &n).await;
    let (sa, sb) = two_shares(&url, &n, 4, Duration::from_millis(50)).await;
    let [holding, most, da, db] = counters();
    // a takes the whole cap and never idles; b asks after it.
    let busy = tokio::spawn(load(
        sa.clone(),
        8,
        u64::MAX,
        Duration::from_millis(2),
        holding.clone(),
        most.clone(),
        da.clone(),
    ));
    eventually!("a holds the cap", sa.held() == 4);
    // b gets its turn: a's block rotates out (every 8 idle periods).
    load(
        sb.clone(),
        4,
        20,
        Duration::from_millis(1),
        holding,
        most.clone(),
        db.clone(),
    )
    .await;
    busy.abort();
    let _ = busy.await;
    assert_eq!(db.load(SeqCst), 80);
    assert!(
        most.load(SeqCst) <= 4,
        "{} holders at once",
        most.load(SeqCst)
    );
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_block_voids_the_local_permits() {
    let Some(url) = url() else { return };
    let n = name("shareloss");
    cleanup(&url, &n).await;
    let sem = build(&url, &n, 2, Duration::from_secs(5)).await;
    let share = sem.local_share(2, Duration::from_secs(10)).unwrap();
    let permit = share.acquire().await.unwrap();
    assert!(permit.is_valid());
    assert!(permit.token() > 0);
    // The block's lease ends on Redis's clock.
    expire_leases(&url, &n).await;
    sem.renew_now().await;
    tokio::time::timeout(Duration::from_secs(5), permit.lost())
        .await
        .unwrap();
    assert!(!permit.is_valid());
    assert_eq!(share.held(), 0);
    drop(permit);
    // A new block serves the next caller.
    let next = share.acquire().await.unwrap();
    assert!(next.is_valid());
    drop(next);
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused() {
    let Some(url) = url() else { return };
    let n = name("sharebad");
    cleanup(&url, &n).await;
    let sem = build(&url, &n, 3, Duration::from_secs(5)).await;
    assert!(matches!(
        sem.local_share(0, Duration::from_secs(1)),
        Err(Error::TooMany { .. })
    ));
    assert!(matches!(
        sem.local_share(4, Duration::from_secs(1)),
        Err(Error::TooMany { .. })
    ));
    assert!(matches!(
        sem.local_share(2, Duration::ZERO),
        Err(Error::Config(_))
    ));
    let share = sem.local_share(2, Duration::from_secs(1)).unwrap();
    assert!(matches!(share.try_acquire(), Err(Error::Busy)));
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_dropped_while_their_block_is_asked_for_leave_nothing_behind() {
    let Some(url) = url() else { return };
    let n = name("sharedrop");
    cleanup(&url, &n).await;
    let sem = build(&url, &n, 4, Duration::from_secs(5)).await;
    let share = sem.local_share(4, Duration::from_millis(200)).unwrap();
    // Each caller queues locally (the first asks the fleet for a block)
    // and is dropped at once, before any block can come back from Redis.
    for _ in 0..8 {
        tokio::select! {
            biased;
            p = share.acquire() => drop(p),
            () = std::future::ready(()) => {}
        }
    }
    assert_eq!(share.in_use(), 0);
    // The block asked for comes anyway, serves the next caller, and goes
    // back once idle.
    let p = share.acquire().await.unwrap();
    assert!(p.is_valid());
    drop(p);
    assert_eq!(share.in_use(), 0);
    eventually!("the idle block given back", share.held() == 0);
    eventually!("nothing held in Redis", used(&url, &n).await == 0);
    // A share dropped with a block gives it back.
    let p = share.acquire().await.unwrap();
    drop(p);
    assert!(share.held() > 0);
    drop(share);
    eventually!(
        "a dropped share's block given back",
        used(&url, &n).await == 0
    );
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_holder_that_panics_returns_its_permit() {
    let Some(url) = url() else { return };
    let n = name("sharepanic");
    cleanup(&url, &n).await;
    let sem = build(&url, &n, 2, Duration::from_secs(5)).await;
    let share = sem.local_share(2, Duration::from_millis(200)).unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (share, done) = (share.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            for r in 0..20u64 {
                let _permit = share.acquire().await.unwrap();
                if (t * 20 + r) % 17 == 3 {
                    panic!("a local holder's panic");
                }
                tokio::task::yield_now().await;
                done.fetch_add(1, SeqCst);
            }
        }));
    }
    let mut panicked = 0;
    for t in tasks {
        if t.await.is_err_and(|e| e.is_panic()) {
            panicked += 1;
        }
    }
    assert!(panicked > 0, "no holder panicked");
    // The others went on, and no permit went with a panic.
    assert!(done.load(SeqCst) > 0);
    assert_eq!(share.in_use(), 0);
    let all = [
        share.acquire().await.unwrap(),
        share.acquire().await.unwrap(),
    ];
    assert!(share.held() <= 2);
    drop(all);
    eventually!("the idle blocks given back", share.held() == 0);
    eventually!("nothing held in Redis", used(&url, &n).await == 0);
    cleanup(&url, &n).await;
}
