//! Soak: 10,000 tasks on 4 PostgreSQL connections for 60 s
//! (`CENOTE_SOAK_SECS`), through a proxy that injects a random fault every
//! 200 ms. No operation hangs past its bounds, every waiter is served or
//! times out, nothing stays lent, and `stats()` agrees with the exported
//! metrics.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cenote::resources::GetError;
use cenote_fault_proxy::Chaos;
use cenote_postgres::Builder;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    timed_out: AtomicU64,
    other_get: AtomicU64,
    query_failed: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_on_four_connections_under_random_faults() {
    let Some(cfg) = common::config() else { return };
    let secs: u64 = std::env::var("CENOTE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let (proxy, via) = common::proxied(&cfg).await;
    let proxy = Arc::new(proxy);
    let acquire = Duration::from_secs(2);
    let query = Duration::from_millis(500);
    let pool = Arc::new(
        Builder::from_config(via)
            .capacity(4)
            .create_timeout(Duration::from_millis(500))
            .check_timeout(Duration::from_millis(300))
            .query_timeout(query)
            .pool(move |b| b.name("soak-postgres").acquire_timeout(acquire).min_idle(2))
            .build()
            .unwrap(),
    );
    let chaos = Chaos::start(proxy.clone(), Duration::from_millis(200), 0x5eed);
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(secs);
    // Generous: the acquire timeout, a create, the query timeout, and a
    // loaded 2-core machine.
    let bound = acquire + query + Duration::from_secs(2);
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let (pool, tally) = (pool.clone(), tally.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match pool.get().await {
                        Ok(c) => match c.query_one("SELECT 1", &[]).await {
                            Ok(_) => tally.ok.fetch_add(1, Relaxed),
                            Err(_) => tally.query_failed.fetch_add(1, Relaxed),
                        },
                        Err(GetError::TimedOut { .. }) => tally.timed_out.fetch_add(1, Relaxed),
                        Err(e) => {
                            eprintln!("get: {e}");
                            tally.other_get.fetch_add(1, Relaxed)
                        }
                    };
                    assert!(t0.elapsed() < bound, "an operation took {:?}", t0.elapsed());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a task failed");
    }
    chaos.stop(&proxy);
    let (ok, to, other, qf) = (
        tally.ok.load(Relaxed),
        tally.timed_out.load(Relaxed),
        tally.other_get.load(Relaxed),
        tally.query_failed.load(Relaxed),
    );
    eprintln!("soak: {ok} served, {to} timed out, {qf} queries failed, {other} other get errors");
    assert!(ok > 0);
    assert_eq!(other, 0, "every get is served or times out");
    // Nothing lent, and the pool works once the faults stop.
    assert_eq!(pool.in_use(), 0);
    pool.get()
        .await
        .unwrap()
        .query_one("SELECT 1", &[])
        .await
        .unwrap();

    // The exported series say what stats() says.
    let s = pool.stats();
    cenote::observe::publish_now();
    let seen: Vec<_> = snapshotter.snapshot().into_vec();
    let value = |kind: MetricKind, name: &str, label: Option<(&str, &str)>| -> u64 {
        let (_, _, _, v) = seen
            .iter()
            .find(|(k, _, _, _)| {
                k.kind() == kind
                    && k.key().name() == name
                    && k.key().labels().any(|l| l.value() == "soak-postgres")
                    && label.is_none_or(|(lk, lv)| {
                        k.key().labels().any(|l| l.key() == lk && l.value() == lv)
                    })
            })
            .unwrap_or_else(|| panic!("no {name}"));
        match v {
            DebugValue::Counter(c) => *c,
            DebugValue::Gauge(g) => g.into_inner() as u64,
            DebugValue::Histogram(_) => panic!("{name} is a histogram"),
        }
    };
    assert_eq!(
        value(MetricKind::Counter, "db.client.connection.timeouts", None),
        s.timed_out
    );
    assert_eq!(
        value(MetricKind::Counter, "db.client.connection.timeouts", None),
        to
    );
    for (reason, n) in [
        ("broken", s.destroyed_broken),
        ("failed_check", s.destroyed_failed_check),
        ("expired", s.destroyed_expired),
    ] {
        assert_eq!(
            value(
                MetricKind::Counter,
                "cenote.resources.closed",
                Some(("reason", reason))
            ),
            n,
            "{reason}"
        );
    }
    let idle = value(
        MetricKind::Gauge,
        "db.client.connection.count",
        Some(("db.client.connection.state", "idle")),
    );
    assert_eq!(idle, s.idle as u64);
}
