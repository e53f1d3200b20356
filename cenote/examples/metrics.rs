//! A short workload through all five pools, observed with
//! metrics-exporter-prometheus: when it ends it prints the Prometheus
//! exposition; with `--serve ADDR` it also serves `/metrics` on ADDR while
//! it runs (for `--seconds N`, default 3; 60 with `--serve`).
//!
//! ```text
//! cargo run -p cenote --features metrics --example metrics
//! cargo run -p cenote --features metrics --example metrics -- --serve 127.0.0.1:9464
//! ```
//!
//! `dashboards/cenote.json` (Grafana) charts every pool of this output: in
//! use against capacity, waiters, wait-time percentiles, timeouts and
//! closes by reason.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cenote::resources::{self, Manager};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (serve, seconds) = args()?;
    // The injected panics are counted in the metrics (cenote_workers_tasks
    // {outcome="panicked"}); here only their number, at the end.
    static PANICS: AtomicU64 = AtomicU64::new(0);
    std::panic::set_hook(Box::new(|_| {
        PANICS.fetch_add(1, Relaxed);
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let prometheus = install(&rt, serve)?;
    if let Some(addr) = serve {
        eprintln!("serving http://{addr}/metrics for {seconds} s");
    }
    rt.block_on(workload(Duration::from_secs(seconds)))?;
    eprintln!("{} injected panics caught", PANICS.load(Relaxed));
    println!("{}", prometheus.render());
    Ok(())
}

/// `--serve ADDR` and `--seconds N`.
fn args() -> Result<(Option<SocketAddr>, u64), Box<dyn std::error::Error>> {
    let mut serve = None;
    let mut seconds = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--serve" => serve = Some(args.next().ok_or("--serve needs ADDR")?.parse()?),
            "--seconds" => seconds = Some(args.next().ok_or("--seconds needs N")?.parse()?),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let seconds = seconds.unwrap_or(if serve.is_some() { 60 } else { 3 });
    Ok((serve, seconds))
}

/// The recorder, installed before any pool is built (the pools take their
/// histogram handles when they are built).
fn install(
    rt: &tokio::runtime::Runtime,
    serve: Option<SocketAddr>,
) -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    let seconds = &[
        0.000_01, 0.000_1, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
    ];
    let builder = PrometheusBuilder::new().set_buckets(seconds)?;
    let Some(addr) = serve else {
        return Ok(builder.install_recorder()?);
    };
    let _entered = rt.enter();
    let (recorder, exporter) = builder.with_http_listener(addr).build()?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    rt.spawn(exporter);
    Ok(handle)
}

/// A connection that fails now and then (every 9th create, every 7th
/// check) and breaks now and then (every 11th return).
struct FlakyDb {
    made: AtomicU64,
    checked: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("connection refused")]
struct Refused;

impl Manager for FlakyDb {
    type Resource = u64;
    type Error = Refused;
    async fn create(&self) -> Result<u64, Refused> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let n = self.made.fetch_add(1, Relaxed);
        if n % 9 == 8 {
            return Err(Refused);
        }
        Ok(n)
    }
    async fn check(&self, _: &mut u64) -> Result<(), Refused> {
        if self.checked.fetch_add(1, Relaxed) % 7 == 6 {
            return Err(Refused);
        }
        Ok(())
    }
    fn is_broken(&self, conn: &mut u64) -> bool {
        *conn % 11 == 10
    }
}

async fn workload(run_for: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let workers = cenote::workers::Pool::builder()
        .name("thumbnails")
        .capacity(4)
        .panic_handler(|_| {})
        .build()?;
    let tasks = cenote::tasks::Pool::builder()
        .name("fetches")
        .capacity(8)
        .build()?;
    let limit = Arc::new(cenote::limit::Semaphore::new(3));
    limit.publish_metrics("uploads");
    let buffers = cenote::objects::Pool::builder(|| Vec::<u8>::with_capacity(4096))
        .name("buffers")
        .auto_reset()
        .max_idle(16)
        .build()?;
    let db = resources::Pool::builder(FlakyDb {
        made: AtomicU64::new(0),
        checked: AtomicU64::new(0),
    })
    .name("orders-db")
    .capacity(4)
    .check_bypass(Duration::from_millis(5))
    .histograms(true)
    .build()?;

    let end = Instant::now() + run_for;
    let mut round = 0u64;
    while Instant::now() < end {
        round += 1;
        for i in 0..16u64 {
            // Every 13th thumbnail panics (caught, counted, logged).
            workers
                .try_submit(move || assert!(i != 13, "bad image"))
                .ok();
            let buf = buffers.get();
            drop(buf);
        }
        for _ in 0..12 {
            let (db, limit) = (db.clone(), limit.clone());
            let detached = tasks
                .spawn(async move {
                    let _upload = limit.acquire().await;
                    // A short timeout now and then: some gets time out.
                    let timeout = Duration::from_millis(if round % 5 == 0 { 1 } else { 200 });
                    if let Ok(conn) = db.request().timeout(timeout).get().await {
                        tokio::time::sleep(Duration::from_millis(3)).await;
                        drop(conn);
                    }
                })
                .await?;
            drop(detached);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tasks.wait_idle().await;
    workers.wait_idle();
    // The pools' final state (they publish once a second on their own).
    cenote::observe::publish_now();
    Ok(())
}
