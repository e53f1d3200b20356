//! The semaphore's series read back through a recorder: holders and
//! waiters gauges, grants, timeouts and losses counters, the wait
//! histogram. (A test binary of its own: the recorder is process-wide.)

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

mod common;
use common::{build, cleanup, expire_leases, name, url};

/// Running totals of a semaphore's series. A look at the recorder drains
/// it (counters, gauges and histograms start again from zero), so each
/// look adds what changed since the last: a counter's count, a gauge's
/// value and a histogram's number of values are the sums.
struct Totals {
    snapshotter: Snapshotter,
    sem: String,
    sums: HashMap<String, f64>,
}

impl Totals {
    fn get(&mut self, series: &str) -> f64 {
        for (k, _, _, v) in self.snapshotter.snapshot().into_vec() {
            if !k
                .key()
                .labels()
                .any(|l| l.key() == "semaphore" && l.value() == self.sem)
            {
                continue;
            }
            let add = match v {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            };
            *self.sums.entry(k.key().name().to_owned()).or_default() += add;
        }
        self.sums.get(series).copied().unwrap_or(0.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_follow_grants_waits_timeouts_and_losses() {
    let Some(url) = url() else { return };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let n = name("metrics");
    cleanup(&url, &n).await;
    let mut seen = Totals {
        snapshotter,
        sem: n.clone(),
        sums: HashMap::new(),
    };
    let sem = build(&url, &n, 1, Duration::from_secs(5)).await;
    let held = sem.acquire().await.unwrap();
    assert_eq!(seen.get("cenote.fleet.wait"), 1.0);
    assert_eq!(seen.get("cenote.fleet.holders"), 1.0);
    assert_eq!(seen.get("cenote.fleet.grants"), 1.0);
    let waiter = tokio::spawn({
        let sem = sem.clone();
        async move { sem.acquire().await }
    });
    eventually!(
        "one waiter counted",
        seen.get("cenote.fleet.waiters") == 1.0
    );
    assert!(matches!(
        sem.acquire_timeout(Duration::from_millis(50)).await,
        Err(cenote_fleet::Error::TimedOut(_))
    ));
    assert_eq!(seen.get("cenote.fleet.timeouts"), 1.0);
    drop(held);
    let second = waiter.await.unwrap().unwrap();
    assert_eq!(seen.get("cenote.fleet.waiters"), 0.0);
    assert_eq!(seen.get("cenote.fleet.grants"), 2.0);
    // Lost: its entry gone from Redis, found at the next renewal.
    expire_leases(&url, &n).await;
    sem.renew_now().await;
    assert!(!second.is_valid());
    assert_eq!(seen.get("cenote.fleet.losses"), 1.0);
    drop(second);
    assert_eq!(seen.get("cenote.fleet.holders"), 0.0);
    cleanup(&url, &n).await;
}
