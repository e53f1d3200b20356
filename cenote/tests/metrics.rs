//! Every pool's metrics, read back from `metrics-util`'s
//! `DebuggingRecorder`: names, units and attributes, the counters against
//! `stats()` after runs with injected faults, and one series per pool.
//!
//! Run with `cargo test -p cenote --features metrics --test metrics`.
#![cfg(feature = "metrics")]
// Each test holds the one-at-a-time lock for its whole run, awaits included
// (every test has a runtime of its own).
#![allow(clippy::await_holding_lock)]

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use cenote::resources::{self, GetError, Manager};
use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;

/// One series: kind, name, labels (sorted).
type Series = (MetricKind, String, Vec<(String, String)>);

struct Seen {
    values: HashMap<Series, DebugValue>,
    units: HashMap<String, Option<Unit>>,
}

/// The recorder (installed once, before any pool is built) and the lock
/// that runs these tests one at a time: a snapshot resets what it reads.
fn recorder() -> (&'static Snapshotter, MutexGuard<'static, ()>) {
    static SNAP: OnceLock<Snapshotter> = OnceLock::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let snap = SNAP.get_or_init(|| {
        let rec = DebuggingRecorder::new();
        let snap = rec.snapshotter();
        rec.install()
            .expect("the first recorder of this test binary");
        snap
    });
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    (snap, guard)
}

/// Publishes every pool, then reads the series of the pool named `pool`.
fn read(snap: &Snapshotter, pool: &str) -> Seen {
    cenote::observe::publish_now();
    let mut values = HashMap::new();
    let mut units = HashMap::new();
    for (key, unit, _desc, value) in snap.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        if !labels.iter().any(|(_, v)| v == pool) {
            continue;
        }
        labels.sort();
        units.insert(key.name().to_owned(), unit);
        values.insert((kind, key.name().to_owned(), labels), value);
    }
    Seen { values, units }
}

impl Seen {
    fn find(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        self.values.get(&(kind, name.to_owned(), labels))
    }

    fn get(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> &DebugValue {
        self.find(kind, name, labels).unwrap_or_else(|| {
            panic!(
                "no series {name} {labels:?}; seen: {:#?}",
                self.values.keys()
            )
        })
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(MetricKind::Counter, name, labels) {
            DebugValue::Counter(n) => *n,
            v => panic!("{name}: not a counter: {v:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.get(MetricKind::Gauge, name, labels) {
            DebugValue::Gauge(v) => v.into_inner(),
            v => panic!("{name}: not a gauge: {v:?}"),
        }
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.get(MetricKind::Histogram, name, labels) {
            DebugValue::Histogram(v) => v.iter().map(|x| x.into_inner()).collect(),
            v => panic!("{name}: not a histogram: {v:?}"),
        }
    }

    fn unit(&self, name: &str) -> Option<Unit> {
        *self
            .units
            .get(name)
            .unwrap_or_else(|| panic!("no unit seen for {name}"))
    }

    /// No series of `name` carries a deprecated or stray label set.
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.values.keys().map(|(_, n, _)| n.as_str()).collect();
        names.sort();
        names.dedup();
        names
    }
}

// ----- resources ----------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

#[derive(Default)]
struct Knobs {
    fail_creates: AtomicBool,
    fail_checks: AtomicBool,
    panic_creates: AtomicBool,
    made: AtomicU64,
}

struct Conns(Arc<Knobs>);

impl Manager for Conns {
    type Resource = u64;
    type Error = Refused;
    async fn create(&self) -> Result<u64, Refused> {
        if self.0.panic_creates.load(SeqCst) {
            panic!("injected create panic");
        }
        if self.0.fail_creates.load(SeqCst) {
            return Err(Refused);
        }
        Ok(self.0.made.fetch_add(1, SeqCst))
    }
    async fn check(&self, _: &mut u64) -> Result<(), Refused> {
        if self.0.fail_checks.load(SeqCst) {
            return Err(Refused);
        }
        Ok(())
    }
    fn is_broken(&self, r: &mut u64) -> bool {
        *r % 7 == 3
    }
}

const POOL: &str = "db.client.connection.pool.name";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_pool_reports_opentelemetry_names_units_and_attributes() {
    let (snap, _one) = recorder();
    let knobs = Arc::new(Knobs::default());
    let pool = resources::Pool::builder(Conns(knobs.clone()))
        .name("otel-db")
        .capacity(2)
        .min_idle(1)
        .histograms(true)
        .check_bypass(Duration::ZERO)
        .build()
        .unwrap();
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let timed_out = pool.request().timeout(Duration::from_millis(5)).get().await;
    assert!(matches!(timed_out, Err(GetError::TimedOut { .. })));
    drop(a);
    knobs.fail_checks.store(true, SeqCst);
    knobs.fail_creates.store(true, SeqCst);
    // The idle one fails its check and is closed; the create fails.
    let failed = pool
        .request()
        .timeout(Duration::from_millis(50))
        .get()
        .await;
    assert!(failed.is_err());
    knobs.fail_checks.store(false, SeqCst);
    knobs.fail_creates.store(false, SeqCst);
    let held = b;

    let seen = read(snap, "otel-db");
    let stats = pool.stats();
    let l = [(POOL, "otel-db")];
    let state = |s| [(POOL, "otel-db"), ("db.client.connection.state", s)];
    assert_eq!(
        seen.gauge("db.client.connection.count", &state("idle")),
        stats.idle as f64
    );
    assert_eq!(
        seen.gauge("db.client.connection.count", &state("used")),
        (stats.size - stats.idle) as f64
    );
    assert_eq!(seen.gauge("db.client.connection.max", &l), 2.0);
    assert_eq!(seen.gauge("db.client.connection.idle.max", &l), 2.0);
    assert_eq!(seen.gauge("db.client.connection.idle.min", &l), 1.0);
    assert_eq!(
        seen.gauge("db.client.connection.pending_requests", &l),
        stats.waiting as f64
    );
    assert_eq!(
        seen.counter("db.client.connection.timeouts", &l),
        stats.timed_out
    );
    assert!(stats.timed_out >= 2);
    assert_eq!(
        seen.counter(
            "cenote.resources.closed",
            &[(POOL, "otel-db"), ("reason", "failed_check")]
        ),
        stats.destroyed_failed_check
    );
    assert!(stats.destroyed_failed_check >= 1);
    let error_type = std::any::type_name::<Refused>();
    assert_eq!(
        seen.counter(
            "cenote.resources.create_errors",
            &[(POOL, "otel-db"), ("error.type", error_type)]
        ),
        stats.create_failures
    );
    assert!(!seen
        .histogram("db.client.connection.create_time", &l)
        .is_empty());
    assert!(!seen
        .histogram("db.client.connection.wait_time", &l)
        .is_empty());
    assert!(!seen
        .histogram("db.client.connection.use_time", &l)
        .is_empty());
    assert!(!seen.histogram("cenote.resources.check_time", &l).is_empty());
    for name in [
        "db.client.connection.create_time",
        "db.client.connection.wait_time",
        "db.client.connection.use_time",
        "cenote.resources.check_time",
    ] {
        assert_eq!(seen.unit(name), Some(Unit::Seconds), "{name}");
    }
    for name in [
        "db.client.connection.count",
        "db.client.connection.timeouts",
        "cenote.resources.closed",
    ] {
        assert_eq!(seen.unit(name), Some(Unit::Count), "{name}");
    }
    for name in seen.names() {
        assert!(
            !name.starts_with("db.client.connections."),
            "deprecated name {name}"
        );
        assert!(
            name.starts_with("db.client.connection.") || name.starts_with("cenote.resources."),
            "{name}"
        );
    }
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_faulty_run_the_exported_series_equal_stats() {
    let (snap, _one) = recorder();
    let knobs = Arc::new(Knobs::default());
    let pool = resources::Pool::builder(Conns(knobs.clone()))
        .name("faulty-db")
        .capacity(3)
        .check_bypass(Duration::ZERO)
        .create_timeout(Duration::from_millis(50))
        .max_waiting(4)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let (pool, knobs) = (pool.clone(), knobs.clone());
            tokio::spawn(async move {
                for i in 0..200u64 {
                    let n = t * 1000 + i;
                    knobs.fail_checks.store(n % 13 == 0, SeqCst);
                    knobs.fail_creates.store(n % 17 == 0, SeqCst);
                    knobs.panic_creates.store(n % 29 == 0, SeqCst);
                    let timeout = Duration::from_millis(if n % 5 == 0 { 1 } else { 50 });
                    if let Ok(r) = pool.request().timeout(timeout).get().await {
                        if n % 11 == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        drop(r);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        common::within_async(t).await.unwrap();
    }
    knobs.panic_creates.store(false, SeqCst);
    common::eventually_async("creates and destroys to settle", || {
        let s = pool.stats();
        s.in_use == 0 && s.waiting == 0
    })
    .await;
    let seen = read(snap, "faulty-db");
    let s = pool.stats();
    let l = [(POOL, "faulty-db")];
    assert_eq!(
        seen.counter("db.client.connection.timeouts", &l),
        s.timed_out
    );
    assert_eq!(seen.counter("cenote.resources.rejected", &l), s.shed);
    let reasons = [
        ("broken", s.destroyed_broken),
        ("expired", s.destroyed_expired),
        ("idle", s.destroyed_idle),
        ("failed_check", s.destroyed_failed_check),
        ("panicked", s.destroyed_panicked),
        ("evicted", s.destroyed_evicted),
    ];
    for (reason, n) in reasons {
        assert_eq!(
            seen.counter(
                "cenote.resources.closed",
                &[(POOL, "faulty-db"), ("reason", reason)]
            ),
            n,
            "{reason}"
        );
    }
    let errors: u64 = ["timeout", "panic", std::any::type_name::<Refused>()]
        .iter()
        .map(|t| {
            let labels = [(POOL, "faulty-db"), ("error.type", *t)];
            match seen.find(
                MetricKind::Counter,
                "cenote.resources.create_errors",
                &labels,
            ) {
                Some(DebugValue::Counter(n)) => *n,
                _ => 0,
            }
        })
        .sum();
    assert_eq!(errors, s.create_failures);
    assert!(s.create_failures > 0 && s.destroyed_failed_check > 0 && s.timed_out > 0);
    let state = |st| [(POOL, "faulty-db"), ("db.client.connection.state", st)];
    assert_eq!(
        seen.gauge("db.client.connection.count", &state("idle")),
        s.idle as f64
    );
    assert_eq!(
        seen.gauge("db.client.connection.count", &state("used")),
        (s.size - s.idle) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_histograms_a_get_records_no_wait_or_use_time() {
    let (snap, _one) = recorder();
    let pool = resources::Pool::builder(Conns(Arc::default()))
        .name("quiet-db")
        .build()
        .unwrap();
    for _ in 0..10 {
        drop(pool.get().await.unwrap());
    }
    let seen = read(snap, "quiet-db");
    let l = [(POOL, "quiet-db")];
    assert!(seen
        .histogram("db.client.connection.wait_time", &l)
        .is_empty());
    assert!(seen
        .histogram("db.client.connection.use_time", &l)
        .is_empty());
    assert_eq!(
        seen.histogram("db.client.connection.create_time", &l).len(),
        1
    );
}

// ----- the other pools ----------------------------------------------------------

#[test]
fn the_thread_pool_reports_threads_queue_and_tasks_by_outcome() {
    let (snap, _one) = recorder();
    let pool = cenote::workers::Pool::builder()
        .name("m-workers")
        .capacity(2)
        .panic_handler(|_| {})
        .build()
        .unwrap();
    for i in 0..20 {
        pool.submit(move || assert!(i % 5 != 0, "injected"))
            .unwrap();
    }
    pool.wait_idle();
    let seen = read(snap, "m-workers");
    let s = pool.stats();
    let l = [("cenote.pool.name", "m-workers")];
    let o = |outcome| [("cenote.pool.name", "m-workers"), ("outcome", outcome)];
    assert_eq!(
        seen.counter("cenote.workers.tasks", &o("completed")),
        s.completed
    );
    assert_eq!(
        seen.counter("cenote.workers.tasks", &o("panicked")),
        s.panicked
    );
    assert_eq!(
        seen.counter("cenote.workers.tasks", &o("rejected")),
        s.rejected
    );
    assert_eq!((s.completed, s.panicked), (16, 4));
    assert_eq!(seen.gauge("cenote.workers.capacity", &l), 2.0);
    assert_eq!(seen.gauge("cenote.workers.queue.length", &l), 0.0);
    let threads = seen.gauge(
        "cenote.workers.thread.count",
        &[("cenote.pool.name", "m-workers"), ("state", "idle")],
    ) + seen.gauge(
        "cenote.workers.thread.count",
        &[("cenote.pool.name", "m-workers"), ("state", "busy")],
    );
    assert_eq!(threads, s.running as f64);
    assert_eq!(
        seen.counter("cenote.workers.thread.started", &l),
        s.threads_started
    );
    assert_eq!(seen.unit("cenote.workers.tasks"), Some(Unit::Count));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_future_pool_reports_spawns_by_result_and_completions_by_outcome() {
    let (snap, _one) = recorder();
    let pool = cenote::tasks::Pool::builder()
        .name("m-tasks")
        .capacity(4)
        .panic_handler(|_| {})
        .build()
        .unwrap();
    for i in 0..12u32 {
        let h = pool
            .spawn(async move {
                tokio::task::yield_now().await;
                assert!(i % 4 != 0, "injected");
            })
            .await
            .unwrap();
        drop(h);
    }
    pool.wait_idle().await;
    let seen = read(snap, "m-tasks");
    let s = pool.stats();
    let r = |result| [("cenote.pool.name", "m-tasks"), ("result", result)];
    let o = |outcome| [("cenote.pool.name", "m-tasks"), ("outcome", outcome)];
    assert_eq!(
        seen.counter("cenote.tasks.spawns", &r("accepted")),
        s.spawned
    );
    assert_eq!(
        seen.counter("cenote.tasks.spawns", &r("rejected")),
        s.rejected
    );
    assert_eq!(
        seen.counter("cenote.tasks.completions", &o("completed")),
        s.completed
    );
    assert_eq!(
        seen.counter("cenote.tasks.completions", &o("panicked")),
        s.panicked
    );
    assert_eq!((s.spawned, s.panicked), (12, 3));
    let l = [("cenote.pool.name", "m-tasks")];
    assert_eq!(seen.gauge("cenote.tasks.capacity", &l), 4.0);
    assert_eq!(seen.gauge("cenote.tasks.active", &l), 0.0);
}

#[test]
fn the_object_pool_reports_pooled_rented_and_dropped_by_reason() {
    let (snap, _one) = recorder();
    let pool = cenote::objects::Pool::builder(Vec::<u8>::new)
        .name("m-objects")
        .max_idle(4)
        .thread_cache(0)
        .build()
        .unwrap();
    let held: Vec<_> = (0..6).map(|_| pool.get()).collect();
    drop(held);
    let seen = read(snap, "m-objects");
    let s = pool.stats();
    let l = [("cenote.pool.name", "m-objects")];
    assert_eq!(seen.gauge("cenote.objects.pooled", &l), s.idle as f64);
    assert_eq!(seen.counter("cenote.objects.rented", &l), s.hits + s.misses);
    assert_eq!(seen.counter("cenote.objects.allocated", &l), s.misses);
    assert_eq!(
        seen.counter(
            "cenote.objects.dropped",
            &[("cenote.pool.name", "m-objects"), ("reason", "full")]
        ),
        s.dropped_full
    );
    assert_eq!((s.idle, s.dropped_full), (4, 2));
}

#[test]
fn two_pools_never_share_a_series() {
    let (snap, _one) = recorder();
    let a = cenote::workers::Pool::builder()
        .name("twin")
        .build()
        .unwrap();
    let b = cenote::workers::Pool::builder()
        .name("twin")
        .build()
        .unwrap();
    assert_eq!(a.name(), "twin");
    assert_eq!(b.name(), "twin-2");
    a.submit(|| {}).unwrap();
    a.wait_idle();
    let first = read(snap, "twin");
    let o = |pool| [("cenote.pool.name", pool), ("outcome", "completed")];
    assert_eq!(first.counter("cenote.workers.tasks", &o("twin")), 1);
    let second = read(snap, "twin-2");
    assert_eq!(second.counter("cenote.workers.tasks", &o("twin-2")), 0);
    let unnamed = cenote::workers::Pool::new(1).unwrap();
    assert!(unnamed.name().starts_with("workers-"), "{}", unnamed.name());
}

#[test]
fn a_published_semaphore_reports_its_levels_until_it_is_dropped() {
    let (snap, _one) = recorder();
    let sem = Arc::new(cenote::limit::Semaphore::new(3));
    assert_eq!(sem.publish_metrics("m-limit"), "m-limit");
    let held = sem.try_acquire_many(2).unwrap();
    let one = sem.acquire_blocking().unwrap();
    assert!(sem.try_acquire().is_err(), "none free");
    // Queued, then given up: one timed out, one dropped while queued.
    assert!(sem
        .acquire()
        .wait_timeout(Duration::from_millis(5))
        .is_err());
    {
        let mut queued = std::pin::pin!(sem.acquire());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(queued.as_mut().poll(&mut cx).is_pending());
    }
    let seen = read(snap, "m-limit");
    let l = [("cenote.pool.name", "m-limit")];
    let r = |result| [("cenote.pool.name", "m-limit"), ("result", result)];
    assert_eq!(seen.gauge("cenote.limit.leases", &l), 3.0);
    assert_eq!(seen.gauge("cenote.limit.capacity", &l), 3.0);
    assert_eq!(seen.gauge("cenote.limit.queued", &l), 0.0);
    assert_eq!(seen.counter("cenote.limit.requests", &r("acquired")), 2);
    assert_eq!(seen.counter("cenote.limit.requests", &r("rejected")), 1);
    assert_eq!(seen.counter("cenote.limit.requests", &r("abandoned")), 2);
    assert_eq!(seen.counter("cenote.limit.requests.queued", &l), 2);
    // The acquire that timed out left the queue through its end; the one
    // dropped while queued records nothing.
    assert_eq!(seen.histogram("cenote.limit.queue_time", &l).len(), 1);
    assert_eq!(seen.unit("cenote.limit.requests"), Some(Unit::Count));
    assert_eq!(seen.unit("cenote.limit.queue_time"), Some(Unit::Seconds));
    drop((held, one));
    sem.close();
    assert!(sem.try_acquire().is_err());
    let seen = read(snap, "m-limit");
    assert_eq!(seen.counter("cenote.limit.requests", &r("closed")), 1);
    drop(sem);
    // Gone: the next publishing forgets it, and its name is free again.
    cenote::observe::publish_now();
    let again = Arc::new(cenote::limit::Semaphore::new(1));
    assert_eq!(again.publish_metrics("m-limit"), "m-limit");
}

#[test]
fn the_dashboard_charts_documented_series_of_every_pool_kind() {
    // The table in `observe/mod.rs`, in Prometheus spelling (dots become
    // underscores, as metrics-exporter-prometheus writes them).
    let docs = include_str!("../src/observe/mod.rs");
    let documented: Vec<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `"))
        .filter_map(|l| l.split('`').next())
        .map(|name| name.replace('.', "_"))
        .collect();
    assert!(documented.len() > 30, "{documented:?}");
    let dashboard = include_str!("../../dashboards/cenote.json");
    let labels = [
        "cenote_pool_name",
        "db_client_connection_pool_name",
        "db_client_connection_state",
    ];
    let mut charted = Vec::new();
    for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if !(word.starts_with("cenote_") || word.starts_with("db_client_connection_")) {
            continue;
        }
        if labels.contains(&word) {
            continue;
        }
        // A histogram's series carry a suffix (`_bucket`, ...); a name such
        // as `db_client_connection_count` is itself documented.
        let known = |n: &str| documented.iter().any(|d| d == n);
        let name = std::iter::once(word)
            .chain(
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .filter_map(|s| word.strip_suffix(s)),
            )
            .find(|n| known(n))
            .unwrap_or_else(|| panic!("the dashboard charts {word}, which no pool publishes"));
        charted.push(name.to_owned());
    }
    for kind in [
        "db_client_connection_",
        "cenote_resources_",
        "cenote_workers_",
        "cenote_tasks_",
        "cenote_limit_",
        "cenote_objects_",
    ] {
        assert!(
            charted.iter().any(|n| n.starts_with(kind)),
            "no panel for {kind}*"
        );
    }
}

#[test]
fn a_submit_that_waits_for_room_records_its_wait() {
    let (snap, _one) = recorder();
    let pool = cenote::workers::Pool::builder()
        .name("m-blocked")
        .capacity(1)
        .queue(0)
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    pool.submit(move || {
        let _ = rx.recv();
    })
    .unwrap();
    let blocked = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.submit(|| {}))
    };
    common::eventually("the second submit to block", || pool.waiting() == 1);
    tx.send(()).unwrap();
    blocked.join().unwrap().unwrap();
    pool.wait_idle();
    let seen = read(snap, "m-blocked");
    let l = [("cenote.pool.name", "m-blocked")];
    assert_eq!(seen.histogram("cenote.workers.queue_time", &l).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_that_waits_for_a_slot_records_its_wait() {
    let (snap, _one) = recorder();
    let pool = cenote::tasks::Pool::builder()
        .name("m-waiting")
        .capacity(1)
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let first = pool
        .spawn(async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    let second = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.spawn(async {}).await.map(drop) })
    };
    common::eventually_async("the second spawn to wait", || pool.waiting() == 1).await;
    tx.send(()).unwrap();
    first.await.unwrap();
    second.await.unwrap().unwrap();
    pool.wait_idle().await;
    let seen = read(snap, "m-waiting");
    let l = [("cenote.pool.name", "m-waiting")];
    assert_eq!(seen.histogram("cenote.tasks.queue_time", &l).len(), 1);
}
