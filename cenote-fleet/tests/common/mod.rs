//! Helpers of the server tests: the shared Redis's URL, per-test
//! semaphore names, reading the protocol's keys, and cleanup.

#![allow(dead_code)]

use std::time::Duration;

use cenote_fleet::Semaphore;

pub fn url() -> Option<String> {
    let url = std::env::var("CENOTE_REDIS_URL").ok();
    if url.is_none() {
        eprintln!("skipped: CENOTE_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)");
    }
    url
}

/// The `host:port` of a `redis://host:port[/db]` URL.
pub fn addr(url: &str) -> std::net::SocketAddr {
    let rest = url.trim_start_matches("redis://");
    let host_port = rest.split('/').next().unwrap();
    std::net::ToSocketAddrs::to_socket_addrs(host_port)
        .unwrap()
        .next()
        .unwrap()
}

pub fn name(test: &str) -> String {
    format!("t-{}-{test}", std::process::id())
}

pub async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Deletes every key of the semaphore `name`.
pub async fn cleanup(url: &str, name: &str) {
    let mut c = redis(url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{cenote:fleet:{name}}}*"))
        .query_async(&mut c)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

/// Ends every lease of `name` on Redis's clock (its expiry set in the
/// past), as when a stalled holder's lease expired and was reclaimed: the
/// next renewal finds each one expired.
pub async fn expire_leases(url: &str, name: &str) {
    let mut c = redis(url).await;
    let key = format!("{{cenote:fleet:{name}}}:holders");
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    for id in ids {
        let _: () = redis::cmd("ZADD")
            .arg(&key)
            .arg("XX")
            .arg(1)
            .arg(id)
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

/// Permits held, as Redis counts them.
pub async fn used(url: &str, name: &str) -> i64 {
    let mut c = redis(url).await;
    let v: Option<i64> = redis::cmd("HGET")
        .arg(format!("{{cenote:fleet:{name}}}:meta"))
        .arg("used")
        .query_async(&mut c)
        .await
        .unwrap();
    v.unwrap_or(0)
}

/// Waiters queued, as Redis counts them.
pub async fn queued(url: &str, name: &str) -> i64 {
    let mut c = redis(url).await;
    redis::cmd("ZCARD")
        .arg(format!("{{cenote:fleet:{name}}}:queue"))
        .query_async(&mut c)
        .await
        .unwrap()
}

/// Waits (10 ms steps, at most 10 s) until `$cond` holds.
#[macro_export]
macro_rules! eventually {
    ($what:expr, $cond:expr) => {{
        let t0 = std::time::Instant::now();
        while !$cond {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "never: {}",
                $what
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }};
}

pub async fn build(url: &str, name: &str, cap: u64, ttl: Duration) -> Semaphore {
    Semaphore::builder(url, name, cap)
        .ttl(ttl)
        .response_timeout(ttl / 4)
        .build()
        .await
        .unwrap()
}
