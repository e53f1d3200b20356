//! Redis losing the semaphore's state, on the shared server (semaphores
//! named `t-<pid>-<test>`) and on private `redis-server`s: the record lost
//! whole (a restart without persistence), writes lost after a snapshot (what
//! an AOF `everysec` restart or a failover loses), and keys evicted under
//! `maxmemory`. The cap holds through each; the overshoot a partial loss
//! allows is refused at the next renewals and reported.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cenote_fault_proxy::RedisServer;
use cenote_fleet::{Error, Semaphore};

mod common;
use common::{build, cleanup, name, redis, url, used};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_record_is_quarantined_for_one_ttl_while_live_holders_register_again() {
    let Some(url) = url() else { return };
    let n = name("quarantine");
    cleanup(&url, &n).await;
    let ttl = Duration::from_millis(800);
    let a = build(&url, &n, 1, ttl).await;
    let b = build(&url, &n, 1, ttl).await;
    let held = a.acquire().await.unwrap();
    let old_token = held.token();
    // The whole record vanishes (a restart without persistence).
    cleanup(&url, &n).await;
    let lost_seen = Instant::now();
    match b.try_acquire().await {
        Err(Error::Quarantined { until }) => assert!(until >= lost_seen + ttl / 2),
        r => panic!("{r:?}"),
    }
    // The holder still holds: its renewal registers its lease again.
    a.renew_now().await;
    assert!(held.is_valid());
    assert_eq!(used(&url, &n).await, 1);
    // A waiter queues; the quarantine's end does not pass the holder.
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.acquire().await }
    });
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "granted past a live holder");
    assert!(held.is_valid());
    drop(held);
    let lease = waiter.await.unwrap().unwrap();
    assert!(lost_seen.elapsed() >= ttl);
    // b had seen no token; a's renewal carried its own.
    assert!(
        lease.token() > old_token,
        "{} after {old_token}",
        lease.token()
    );
    drop(lease);
    cleanup(&url, &n).await;
}

/// Holders believed valid at once (grant to the end of the work, or to
/// its cancellation when the lease is lost), and the most seen.
#[derive(Default)]
struct Timeline {
    holding: AtomicU64,
    most: AtomicU64,
    done: AtomicU64,
}

impl Timeline {
    fn enter(&self) {
        let now = self.holding.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
    }
    fn leave(&self) {
        self.holding.fetch_sub(1, SeqCst);
    }
}

/// Acquires, works (holding the lease until the work ends or the lease is
/// lost) and starts again, until `stop`.
async fn holder(sem: Semaphore, timeline: Arc<Timeline>, stop: Arc<AtomicBool>, mut i: u64) {
    while !stop.load(SeqCst) {
        i += 1;
        let lease = match sem.acquire().await {
            Ok(l) => l,
            Err(Error::Unreachable(_) | Error::TimedOut(_) | Error::Quarantined { .. }) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(e) => panic!("{e:?}"),
        };
        // Jobs that outlast a renewal period (a holder learns of a loss
        // only when it renews); one in ten outlives the TTL.
        let job = if i % 10 == 0 {
            1_500
        } else {
            100 + i * 37 % 500
        };
        timeline.enter();
        let r = lease
            .run_until_lost(tokio::time::sleep(Duration::from_millis(job)))
            .await;
        timeline.leave();
        if r.is_ok() {
            timeline.done.fetch_add(1, SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_persistence_under_load_never_overshoots_the_cap() {
    if url().is_none() {
        return;
    }
    let mut server = RedisServer::start();
    let ttl = Duration::from_secs(1);
    let cap = 3;
    let timeline = Arc::new(Timeline::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..3u64 {
        let sem = build(&server.url(), "restart", cap, ttl).await;
        for t in 0..6u64 {
            let run = holder(sem.clone(), timeline.clone(), stop.clone(), p * 7 + t);
            tasks.push(tokio::spawn(run));
        }
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = timeline.done.load(SeqCst);
    assert!(before > 0, "no work done before the restart");
    // Restarted on the same port: every key gone. A process that starts
    // just after it asks at once, while the earlier holders still hold.
    let port = server.port();
    server.stop();
    let server = RedisServer::start_on(port);
    let late = build(&server.url(), "restart", cap, ttl).await;
    for t in 0..3u64 {
        let run = holder(late.clone(), timeline.clone(), stop.clone(), 100 + t);
        tasks.push(tokio::spawn(run));
    }
    tokio::time::sleep(ttl * 4).await;
    let after = timeline.done.load(SeqCst);
    stop.store(true, SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        timeline.most.load(SeqCst),
        cap,
        "the cap reached, never passed"
    );
    assert!(after > before, "no work done after the restart");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_from_its_aof_everysec_keeps_the_cap() {
    if url().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cenote-fleet-aof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir_arg = dir.to_str().unwrap().to_owned();
    let config = [
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--dir",
        dir_arg.as_str(),
    ];
    let mut server = RedisServer::start_with(&config);
    let ttl = Duration::from_secs(1);
    let cap = 3;
    let timeline = Arc::new(Timeline::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (mut tasks, mut handles) = (Vec::new(), Vec::new());
    for p in 0..3u64 {
        let sem = build(&server.url(), "aof", cap, ttl).await;
        for t in 0..6u64 {
            let run = holder(sem.clone(), timeline.clone(), stop.clone(), p * 7 + t);
            tasks.push(tokio::spawn(run));
        }
        handles.push(sem);
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = timeline.done.load(SeqCst);
    assert!(before > 0, "no work done before the kill");
    // SIGKILL under load, then the same files read back: a write Redis
    // answered is in the AOF (written before the reply; everysec only
    // defers the fsync, which a process kill does not need), so the
    // record comes back whole, with every lease, and nothing is lost.
    let port = server.port();
    server.stop();
    let server = RedisServer::start_on_with(port, &config);
    tokio::time::sleep(ttl * 4).await;
    let after = timeline.done.load(SeqCst);
    stop.store(true, SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let (detected, refused) = handles.iter().fold((0, 0), |(d, r), h| {
        let l = h.losses();
        (d + l.detected, r + l.refused)
    });
    let most = timeline.most.load(SeqCst);
    // Any write lost would be detected, and a holder past the cap refused
    // and told; here none is.
    assert!(
        most <= cap + refused,
        "{most} holders at once, cap {cap}, {refused} refused"
    );
    assert_eq!((detected, most), (0, cap), "a loss after a kill with AOF");
    assert!(after > before, "no work done after the restart");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The semaphore's keys that exist, each with its `DUMP`.
async fn snapshot(url: &str, n: &str) -> Vec<(String, Vec<u8>)> {
    let mut c = redis(url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{cenote:fleet:{n}}}*"))
        .query_async(&mut c)
        .await
        .unwrap();
    let mut out = Vec::new();
    for k in keys {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap();
        out.push((k, dump));
    }
    out
}

/// Puts the semaphore's keys back as `snapshot` had them: every write
/// since is lost.
async fn restore(url: &str, n: &str, snapshot: Vec<(String, Vec<u8>)>) {
    cleanup(url, n).await;
    let mut c = redis(url).await;
    for (k, dump) in snapshot {
        let _: () = redis::cmd("RESTORE")
            .arg(&k)
            .arg(0)
            .arg(dump)
            .arg("REPLACE")
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_lost_after_a_snapshot_are_detected_and_the_overshoot_refused_and_reported() {
    let Some(url) = url() else { return };
    let n = name("partial");
    cleanup(&url, &n).await;
    let ttl = Duration::from_secs(2);
    let a = build(&url, &n, 2, ttl).await;
    let b = build(&url, &n, 2, ttl).await;
    let a1 = a.acquire().await.unwrap();
    // What an AOF `everysec` restart keeps: the state of a moment ago.
    let kept = snapshot(&url, &n).await;
    let a2 = a.acquire().await.unwrap();
    restore(&url, &n, kept).await;
    // Redis counts one permit held, so b is granted the one a2 holds: the
    // overshoot a lost write allows.
    let b1 = b.try_acquire().await.unwrap();
    let lost_seen = Instant::now();
    // a's renewal finds a2 missing: the loss is detected, the record
    // quarantined, and a's leases registered again.
    a.renew_now().await;
    assert!(a1.is_valid() && a2.is_valid());
    assert_eq!(a.losses().detected, 1);
    // b's renewal finds the cap full: b1 is refused, lost and reported.
    b.renew_now().await;
    assert!(!b1.is_valid());
    assert!(matches!(b1.release().await, Err(Error::LeaseLost)));
    assert_eq!(b.losses().refused, 1);
    assert_eq!(used(&url, &n).await, 2);
    match b.try_acquire().await {
        Err(Error::Quarantined { until }) => assert!(until >= lost_seen + ttl / 2),
        r => panic!("{r:?}"),
    }
    // After the quarantine, tokens are above every token handed out.
    let top = a2.token();
    drop((a1, a2));
    let c = b.acquire().await.unwrap();
    assert!(lost_seen.elapsed() >= ttl);
    assert!(c.token() > top, "{} after {top}", c.token());
    drop(c);
    cleanup(&url, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_evicted_under_maxmemory_are_detected_and_the_cap_holds() {
    if url().is_none() {
        return;
    }
    let server = RedisServer::start();
    let ttl = Duration::from_secs(1);
    let a = build(&server.url(), "evict", 2, ttl).await;
    let b = build(&server.url(), "evict", 2, ttl).await;
    let a1 = a.acquire().await.unwrap();
    let a2 = a.acquire().await.unwrap();
    // Random eviction under a small memory limit, filled until one of the
    // semaphore's keys is gone.
    let mut c = redis(&server.url()).await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut c)
        .await
        .unwrap();
    let in_use: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let config = |k: &str, v: String| {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("SET").arg(k.to_owned()).arg(v);
        cmd
    };
    let _: () = config("maxmemory-policy", "allkeys-random".into())
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = config("maxmemory", (in_use + 256 * 1024).to_string())
        .query_async(&mut c)
        .await
        .unwrap();
    let keys = ["meta", "holders", "leases"].map(|k| format!("{{cenote:fleet:evict}}:{k}"));
    let mut i = 0u64;
    let evicted = loop {
        let _: () = redis::cmd("SET")
            .arg(format!("filler:{i}"))
            .arg(vec![b'x'; 8 * 1024])
            .query_async(&mut c)
            .await
            .unwrap();
        i += 1;
        let mut gone = Vec::new();
        for k in &keys {
            let there: bool = redis::cmd("EXISTS")
                .arg(k)
                .query_async(&mut c)
                .await
                .unwrap();
            if !there {
                gone.push(k.clone());
            }
        }
        if !gone.is_empty() {
            break gone;
        }
        assert!(i < 100_000, "nothing of the semaphore evicted");
    };
    let _: () = config("maxmemory", "0".into())
        .query_async(&mut c)
        .await
        .unwrap();
    eprintln!("evicted after {i} writes: {evicted:?}");
    // Whatever went, the holders keep their leases (registered again) and
    // nothing new is granted for one TTL.
    a.renew_now().await;
    assert!(a1.is_valid() && a2.is_valid());
    assert!(matches!(
        b.try_acquire().await,
        Err(Error::Quarantined { .. })
    ));
    b.renew_now().await;
    let mut cc = redis(&server.url()).await;
    let held: Option<i64> = redis::cmd("HGET")
        .arg(&keys[0])
        .arg("used")
        .query_async(&mut cc)
        .await
        .unwrap();
    assert_eq!(held, Some(2));
    // The permits come back whole once released.
    drop((a1, a2));
    let both = b.acquire_many(2).await.unwrap();
    drop(both);
    drop(server);
}
