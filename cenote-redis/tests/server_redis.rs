//! cenote-redis against the real Redis server (`CENOTE_REDIS_URL`) and
//! private `redis-server`s: killed, blocked and dirty connections are never
//! lent. Keys are prefixed `cenote:t:<pid>:`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cenote_fault_proxy::RedisServer;
use cenote_redis::{Builder, Pool};
use redis::AsyncCommands;

fn url() -> Option<String> {
    match std::env::var("CENOTE_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("skipped: CENOTE_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)");
            None
        }
    }
}

fn key(what: &str) -> String {
    format!("cenote:t:{}:{what}", std::process::id())
}

fn pool(url: &str, capacity: usize) -> Pool {
    Builder::new(url)
        .unwrap()
        .capacity(capacity)
        .pool(|b| b.acquire_timeout(Duration::from_secs(5)))
        .build()
        .unwrap()
}

async fn admin(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// This connection's `CLIENT INFO` field.
async fn info(c: &mut cenote_redis::Pooled, field: &str) -> String {
    let line: String = redis::cmd("CLIENT")
        .arg("INFO")
        .query_async(&mut **c)
        .await
        .unwrap();
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{field}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {field} in {line}"))
}

async fn client_id(c: &mut cenote_redis::Pooled) -> i64 {
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut **c)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_replaced_not_lent() {
    let Some(url) = url() else { return };
    let pool = pool(&url, 1);
    let mut admin = admin(&url).await;
    for pause in [Duration::ZERO, Duration::from_millis(600)] {
        let id = client_id(&mut pool.get().await.unwrap()).await;
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(killed, 1);
        // The server forgot it; the client's driver reads the close.
        let mut gone = false;
        while !gone {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .arg("ID")
                .arg(id)
                .query_async(&mut admin)
                .await
                .unwrap();
            gone = list.trim().is_empty();
        }
        tokio::time::sleep(Duration::from_millis(20) + pause).await;
        let mut c = pool.get().await.unwrap();
        let pong: String = redis::cmd("PING")
            .query_async(&mut *c)
            .await
            .expect("a killed connection was lent");
        assert_eq!(pong, "PONG");
        assert_ne!(client_id(&mut c).await, id);
    }
    assert_eq!(pool.in_use(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_over_session_state_is_reset_or_the_connection_destroyed() {
    let Some(url) = url() else { return };
    let pool = Builder::new(&url)
        .unwrap()
        .capacity(1)
        .client_name("cenote-test")
        .build()
        .unwrap();
    let k = key("watched");
    let id = {
        let mut c = pool.get().await.unwrap();
        let id = client_id(&mut c).await;
        let _: () = redis::cmd("WATCH")
            .arg(&k)
            .query_async(&mut *c)
            .await
            .unwrap();
        let _: () = redis::cmd("SELECT")
            .arg(5)
            .query_async(&mut *c)
            .await
            .unwrap();
        let _: () = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg("borrower")
            .query_async(&mut *c)
            .await
            .unwrap();
        let _: () = redis::cmd("MULTI").query_async(&mut *c).await.unwrap();
        let queued: String = redis::cmd("INCR")
            .arg(&k)
            .query_async(&mut *c)
            .await
            .unwrap();
        assert_eq!(queued, "QUEUED");
        id
    };
    {
        let mut c = pool.get().await.unwrap();
        // The queued INCR was discarded, not run.
        let v: Option<i64> = c.get(&k).await.unwrap();
        assert_eq!(v, None, "the queued INCR ran");
        assert_eq!(client_id(&mut c).await, id, "reset, not replaced");
        assert_eq!(info(&mut c, "db").await, "0");
        assert_eq!(info(&mut c, "multi").await, "-1");
        // A WATCH left behind would make this EXEC fail once the key changed.
        let mut admin = admin(&url).await;
        let _: () = admin.set(&k, 10).await.unwrap();
        let (n,): (i64,) = redis::pipe()
            .atomic()
            .incr(&k, 1)
            .query_async(&mut *c)
            .await
            .unwrap();
        assert_eq!(n, 11, "a WATCH was left");
        let _: () = admin.del(&k).await.unwrap();
        assert_eq!(info(&mut c, "name").await, "cenote-test");
        // Now a subscriber: never lent again.
        let _: redis::Value = redis::cmd("SUBSCRIBE")
            .arg(key("chan"))
            .query_async(&mut *c)
            .await
            .unwrap();
    }
    let mut c = pool.get().await.unwrap();
    assert_ne!(client_id(&mut c).await, id, "a subscriber was lent");
    assert!(pool.stats().destroyed_broken >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blpop_longer_than_the_response_timeout_succeeds() {
    let Some(url) = url() else { return };
    let pool = Builder::new(&url)
        .unwrap()
        .capacity(2)
        .response_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let list = key("jobs");
    let pusher = {
        let (pool, list) = (pool.shared().await.unwrap(), list.clone());
        tokio::spawn(async move {
            let mut pool = pool;
            tokio::time::sleep(Duration::from_millis(600)).await;
            let _: () = pool.rpush(&list, "job").await.unwrap();
        })
    };
    let mut c = pool.get().await.unwrap();
    let t0 = Instant::now();
    let got: Option<(String, String)> = c.blpop(&list, 2.0).await.expect("BLPOP cut off");
    assert_eq!(got.map(|(_, v)| v).as_deref(), Some("job"));
    assert!(t0.elapsed() >= Duration::from_millis(500));
    pusher.await.unwrap();
    // A plain command is still bounded by the response timeout ...
    let t0 = Instant::now();
    let r: redis::RedisResult<()> = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg(1)
        .query_async(&mut *c)
        .await;
    assert!(
        r.is_err() && t0.elapsed() < Duration::from_millis(600),
        "{r:?}"
    );
    let id_before = {
        drop(c);
        let mut c = pool.get().await.unwrap();
        client_id(&mut c).await
    };
    // ... and a dropped BLPOP leaves its reply pending: destroyed.
    {
        let mut c = pool.get().await.unwrap();
        let id = client_id(&mut c).await;
        assert_eq!(id, id_before);
        let blpop = c.blpop::<_, Option<(String, String)>>(key("never"), 5.0);
        assert!(tokio::time::timeout(Duration::from_millis(100), blpop)
            .await
            .is_err());
    }
    let mut c = pool.get().await.unwrap();
    let t0 = Instant::now();
    assert_ne!(
        client_id(&mut c).await,
        id_before,
        "a connection with a pending BLPOP was lent"
    );
    assert!(t0.elapsed() < Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_under_load_is_survived() {
    // Needs only redis-server, not the shared server.
    if url().is_none() {
        return;
    }
    let mut server = RedisServer::start();
    let pool = Arc::new(
        Builder::new(&server.url())
            .unwrap()
            .capacity(4)
            .response_timeout(Duration::from_millis(500))
            .check_timeout(Duration::from_millis(500))
            .create_timeout(Duration::from_millis(500))
            .pool(|b| b.acquire_timeout(Duration::from_millis(300)))
            .build()
            .unwrap(),
    );
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (pool, ok, failed, stop) = (pool.clone(), ok.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Relaxed) {
                    let t0 = Instant::now();
                    let r = match pool.get().await {
                        Ok(mut c) => c
                            .incr::<_, _, i64>("n", 1)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                        Err(e) => {
                            // A timeout says why.
                            assert!(
                                std::error::Error::source(&e).is_some()
                                    || !matches!(e, cenote::resources::GetError::TimedOut { .. }),
                                "{e}"
                            );
                            Err(e.to_string())
                        }
                    };
                    // Every waiter is answered within its bounds.
                    assert!(t0.elapsed() < Duration::from_secs(2), "an operation hung");
                    match r {
                        Ok(()) => ok.fetch_add(1, Relaxed),
                        Err(_) => failed.fetch_add(1, Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = server.port();
    server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ok.load(Relaxed);
    let _server = RedisServer::start_on(port);
    // Recovered: operations succeed again within a second.
    let t0 = Instant::now();
    while ok.load(Relaxed) < before + 100 {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the pool did not recover"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(failed.load(Relaxed) > 0, "the restart was not seen");
    assert_eq!(pool.in_use(), 0);
    assert!(pool.size() <= 4);
}

#[test]
fn usable_from_plain_threads() {
    let Some(url) = url() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = rt.handle().clone();
    let pool = Builder::new(&url)
        .unwrap()
        .capacity(2)
        .pool(move |b| b.runtime(h))
        .build()
        .unwrap();
    let pool = Arc::new(pool);
    let k = key("threads");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    let mut c = pool.get_blocking().unwrap();
                    let _: i64 = pool.handle().block_on(c.incr(&k, 1)).unwrap();
                }
            });
        }
    });
    let mut c = pool.get_blocking().unwrap();
    let n: i64 = pool.handle().block_on(c.get(&k)).unwrap();
    let _: () = pool.handle().block_on(c.del(&k)).unwrap();
    assert_eq!(n, 200);
    drop(rt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_connection_is_reported_with_the_borrowers_line() {
    let Some(url) = url() else { return };
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s = seen.clone();
    let pool = Builder::new(&url)
        .unwrap()
        .pool(move |b| {
            b.leak_threshold(Duration::from_millis(100))
                .maintenance_interval(Duration::from_millis(20))
                .on_leak(move |r| s.lock().push((r.acquired_at.file(), r.acquired_at.line())))
        })
        .build()
        .unwrap();
    let line = line!() + 1;
    let c = pool.get().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(c);
    let seen = seen.lock();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].0.ends_with("server_redis.rs"), "{seen:?}");
    assert_eq!(seen[0].1, line);
}

#[test]
fn huge_timeouts_build_a_pool_instead_of_overflowing() {
    let pool = Builder::new("redis://127.0.0.1:1")
        .unwrap()
        .create_timeout(Duration::MAX)
        .check_timeout(Duration::MAX)
        .response_timeout(Duration::MAX)
        .build();
    assert!(pool.is_ok(), "{pool:?}");
}
