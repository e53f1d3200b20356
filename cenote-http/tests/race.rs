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
    let (failed, retries, opened) = rt.block_on(async {
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
        let tasks = 256u64;
        let failed = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (client, url, failed) = (client.clone(), url.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut seed = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..total / tasks {
                        match client.get(&url).await {
                            Ok(r) => {
                                r.into_body().bytes().await.unwrap();
                            }
                            Err(e) => {
                                eprintln!("failed: {e}");
                                failed.fetch_add(1, Relaxed);
                            }
                        }
                        // Pauses of 17 to 23 ms: reuse lands on both sides of
                        // the server's 20 ms.
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let pause = 17_000 + seed % 6_000;
                        tokio::time::sleep(Duration::from_micros(pause)).await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let opened = server.counts.opened.load(Relaxed);
        (failed.load(Relaxed), retried(&snapshotter), opened)
    });
    eprintln!(
        "{} GETs: {failed} failed, {retries} retried, {opened} connections opened",
        gets()
    );
    assert_eq!(failed, 0);
    assert!(
        opened > 32,
        "the server closed no idle connection: no race was run"
    );
}

fn retried(s: &metrics_util::debugging::Snapshotter) -> u64 {
    s.snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == "cenote.http.client.retries")
        .map(|(_, _, _, v)| match v {
            DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum()
}
