//! The keep-alive race (hyper#2136): the server closes connections idle
//! for 20 ms while requests arrive around that moment. Not one GET fails:
//! each one cut off on a reused connection is sent again, and the retries
//! show in `cenote.http.client.retries`. Its own test binary, for the
//! metrics recorder.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use cenote_http::Client;
use common::{Opts, Server};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// GETs in all (`CENOTE_RACE_GETS` overrides).
fn gets() -> u64 {
    std::env::var("CENOTE_RACE_GETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
}

#[test]
fn no_get_fails_when_the_server_closes_idle_connections_as_they_are_reused() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (total, failed, retries, opened) = rt.block_on(async {
        let server = Server::start(Opts {
            idle_close: Some(Duration::from_millis(20)),
            ..Opts::default()
        })
        .await;
        // Idle connections outlive the server's 20 ms: the race is on.
        let client = Client::builder()
            .max_connections_per_origin(32)
            .idle_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let url = server.url("/");
        let total = gets();
        // Rounds every 20 ms, each task's GET up to 6 ms after the round's
        // tick: a connection's next use comes about 14 to 26 ms after its
        // last response, on both sides of the server's 20 ms, and the
        // connections sit idle between rounds however fast the machine
        // serves one (80 GETs). Free-running tasks keep a slow machine's
        // connections busy, and none ever idles long enough to race.
        let tasks = 80u64;
        let t0 = tokio::time::Instant::now();
        // Whole rounds per task: the count of GETs is exact.
        let total = total / tasks * tasks;
        let failed = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (client, url, failed) = (client.clone(), url.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut seed = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for round in 0..total / tasks {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let tick = Duration::from_millis(20) * round as u32;
                        let jitter = Duration::from_micros(seed % 6_000);
                        tokio::time::sleep_until(t0 + tick + jitter).await;
                        match client.get(&url).await {
                            Ok(r) => {
                                r.into_body().bytes().await.unwrap();
                            }
                            Err(e) => {
                                eprintln!("failed: {e}");
                                failed.fetch_add(1, Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let opened = server.counts.opened.load(Relaxed);
        // The series agree with the pool once the last creates and
        // destroys are through (one snapshot per look: a snapshot drains).
        let pool = client.pool(&url).unwrap();
        let t0 = std::time::Instant::now();
        let mut queued = 0;
        let retries = loop {
            let snap = snapshotter.snapshot().into_vec();
            queued += count(&snap, "http.client.request.time_in_queue");
            let idle = gauge(&snap, "idle");
            if gauge(&snap, "active") == 0.0 && idle as usize == pool.size() {
                break retried(&snap);
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "gauges {idle} vs {:?}",
                pool.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            queued >= total as usize,
            "{queued} waits recorded for {total} GETs"
        );
        (total, failed.load(Relaxed), retries, opened)
    });
    eprintln!("{total} GETs: {failed} failed, {retries} retried, {opened} connections opened");
    assert_eq!(failed, 0);
    assert!(
        opened > 32,
        "the server closed no idle connection: no race was run"
    );
}

type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

fn retried(snap: &Snapshot) -> u64 {
    snap.iter()
        .filter(|(k, ..)| k.key().name() == "cenote.http.client.retries")
        .map(|(_, _, _, v)| match v {
            DebugValue::Counter(n) => *n,
            _ => 0,
        })
        .sum()
}

/// `http.client.open_connections` with `http.connection.state = state`.
fn gauge(snap: &Snapshot, state: &str) -> f64 {
    snap.iter()
        .filter(|(k, ..)| {
            k.key().name() == "http.client.open_connections"
                && k.key()
                    .labels()
                    .any(|l| l.key() == "http.connection.state" && l.value() == state)
        })
        .map(|(_, _, _, v)| match v {
            DebugValue::Gauge(g) => g.into_inner(),
            _ => 0.0,
        })
        .sum()
}

/// How many values the histogram `name` holds.
fn count(snap: &Snapshot, name: &str) -> usize {
    snap.iter()
        .filter(|(k, ..)| k.key().name() == name)
        .map(|(_, _, _, v)| match v {
            DebugValue::Histogram(h) => h.len(),
            _ => 0,
        })
        .sum()
}
