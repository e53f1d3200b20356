//! `databases/faults`: the same PostgreSQL faults through every pool, at
//! its default settings and at its safest documented ones. Per pool: the
//! operations that failed though a correct pool would have served them,
//! the session state that reached a later borrower, and the time to
//! serve again.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_postgres::NoTls;

use crate::experiments::{Case, Column, Experiment, Quantity, Unit};
use crate::harness::Outcome;
use crate::peers::Impl;

pub const FAULTS: &str = "databases/faults";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// Every idle backend terminated (`pg_terminate_backend`).
    KilledIdle,
    /// A borrower leaves `SET statement_timeout` and an open `BEGIN`.
    LeftState,
    /// A borrower's `pg_sleep(10)` is cut off after 100 ms and its
    /// connection dropped.
    CancelledQuery,
    /// The server refuses connections (and resets open ones) for 2 s.
    Refused2s,
}

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Fault::KilledIdle => "killed-while-idle",
            Fault::LeftState => "left-transaction-and-setting",
            Fault::CancelledQuery => "cancelled-mid-query",
            Fault::Refused2s => "refused-2s",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultParams {
    pub url: String,
    pub fault: Fault,
    /// The pool's safest documented settings instead of its defaults.
    pub safest: bool,
}

pub fn experiment(url: &str) -> Experiment {
    let mut cases = Vec::new();
    for fault in [
        Fault::KilledIdle,
        Fault::LeftState,
        Fault::CancelledQuery,
        Fault::Refused2s,
    ] {
        for safest in [false, true] {
            let scenario = format!(
                "{}/{}",
                fault.label(),
                if safest { "safest" } else { "defaults" }
            );
            let params = FaultParams {
                url: url.to_owned(),
                fault,
                safest,
            };
            for imp in [Impl::Cenote, Impl::DeadpoolPostgres, Impl::Bb8Postgres] {
                cases.push(Case::new(&scenario, imp, &params));
            }
        }
    }
    let failed = Column {
        key: "failed_ops",
        header: "failed ops",
        unit: Unit::Plain(0),
        chart: true,
    };
    Experiment {
        name: FAULTS,
        title: "PostgreSQL faults through each pool: failed operations, leaked state, recovery"
            .to_owned(),
        notes: vec![
            "pool of 4 (1 for the state and cancel faults); killed-while-idle: every backend \
             terminated while idle, then 4 tasks x 25 operations (get + SELECT 1); \
             left-transaction-and-setting: a borrower runs SET statement_timeout and BEGIN and \
             gives the connection back, 4 later borrowers look (leaked = borrowers that saw \
             either); cancelled-mid-query: a pg_sleep(10) cut off at 100 ms, then the next \
             borrower's SELECT 1 within 3 s (leaked = the sleep still running on the server \
             500 ms later; a recovery of 3 s or more: not served within the bound); refused-2s: through a proxy, the server refuses for 2 s under 4 \
             looping tasks (failed = operations begun after it is back that failed). recover = from the end \
             of the fault to the first served operation."
                .to_owned(),
            "defaults: cenote-postgres defaults (Reset::Rollback after a BEGIN; is_closed at \
             every checkout, a probe outside 500 ms); deadpool-postgres RecyclingMethod::Fast; \
             bb8-postgres defaults (test_on_check_out). safest: cenote Reset::Clean and a probe \
             on every checkout; deadpool RecyclingMethod::Clean; bb8 as its defaults (it has \
             no reset)."
                .to_owned(),
        ],
        headline: Quantity::Metric(failed),
        per_op_title: "wall time of the scenario",
        columns: vec![
            failed,
            Column { key: "leaked", header: "leaked", unit: Unit::Plain(0), chart: true },
            Column { key: "recover_ms", header: "recover", unit: Unit::Millis, chart: true },
        ],
        cases,
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// One pool under test, behind one interface: an operation is a get and a
/// statement, bounded by `limit`.
enum Pool {
    Cenote(cenote_postgres::Pool),
    Deadpool(deadpool_postgres::Pool),
    Bb8(bb8::Pool<bb8_postgres::PostgresConnectionManager<NoTls>>),
}

impl Pool {
    async fn build(
        imp: Impl,
        cfg: tokio_postgres::Config,
        size: usize,
        safest: bool,
    ) -> Result<Pool, String> {
        Ok(match imp {
            Impl::Cenote => {
                let mut b = cenote_postgres::Builder::from_config(cfg)
                    .capacity(size)
                    .create_timeout(Duration::from_millis(500));
                if safest {
                    b = b
                        .reset(cenote_postgres::Reset::Clean)
                        .pool(|b| b.check_bypass(Duration::ZERO));
                }
                Pool::Cenote(
                    b.pool(|b| b.acquire_timeout(Duration::from_millis(500)))
                        .build()
                        .map_err(err)?,
                )
            }
            Impl::DeadpoolPostgres => {
                let recycling_method = if safest {
                    deadpool_postgres::RecyclingMethod::Clean
                } else {
                    deadpool_postgres::RecyclingMethod::Fast
                };
                let mgr = deadpool_postgres::Manager::from_config(
                    cfg,
                    NoTls,
                    deadpool_postgres::ManagerConfig { recycling_method },
                );
                let pool = deadpool_postgres::Pool::builder(mgr)
                    .max_size(size)
                    .runtime(deadpool_postgres::Runtime::Tokio1)
                    .wait_timeout(Some(Duration::from_millis(500)))
                    .create_timeout(Some(Duration::from_millis(500)))
                    .build()
                    .map_err(err)?;
                Pool::Deadpool(pool)
            }
            Impl::Bb8Postgres => {
                let mgr = bb8_postgres::PostgresConnectionManager::new(cfg, NoTls);
                let pool = bb8::Pool::builder()
                    .max_size(u32::try_from(size).map_err(err)?)
                    .connection_timeout(Duration::from_millis(500))
                    .build(mgr)
                    .await
                    .map_err(err)?;
                Pool::Bb8(pool)
            }
            other => return Err(format!("{} does not run {FAULTS}", other.name())),
        })
    }

    /// Runs `sql` on a borrowed connection within `limit`; its rows' first
    /// column as text.
    async fn run(&self, sql: &str, limit: Duration) -> Result<Vec<String>, String> {
        let op = async {
            let rows = match self {
                Pool::Cenote(p) => p
                    .get()
                    .await
                    .map_err(err)?
                    .simple_query(sql)
                    .await
                    .map_err(err)?,
                Pool::Deadpool(p) => p
                    .get()
                    .await
                    .map_err(err)?
                    .simple_query(sql)
                    .await
                    .map_err(err)?,
                Pool::Bb8(p) => p
                    .get()
                    .await
                    .map_err(err)?
                    .simple_query(sql)
                    .await
                    .map_err(err)?,
            };
            Ok(rows
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .collect())
        };
        tokio::time::timeout(limit, op)
            .await
            .map_err(|_| "timed out".to_owned())?
    }

    /// Runs `sql` on a borrowed connection, cut off after `cut`, the
    /// connection dropped.
    async fn cut_off(&self, sql: &str, cut: Duration) {
        match self {
            Pool::Cenote(p) => {
                if let Ok(c) = p.get().await {
                    let _ = tokio::time::timeout(cut, c.batch_execute(sql)).await;
                }
            }
            Pool::Deadpool(p) => {
                if let Ok(c) = p.get().await {
                    let _ = tokio::time::timeout(cut, c.batch_execute(sql)).await;
                }
            }
            Pool::Bb8(p) => {
                if let Ok(c) = p.get().await {
                    let _ = tokio::time::timeout(cut, c.batch_execute(sql)).await;
                }
            }
        }
    }

    async fn fill(&self, n: usize) -> Result<(), String> {
        let all = futures_util::future::join_all(
            (0..n).map(|_| self.run("SELECT 1", Duration::from_secs(5))),
        )
        .await;
        all.into_iter().collect::<Result<Vec<_>, _>>().map(drop)
    }
}

pub fn run(imp: Impl, p: &FaultParams) -> Result<Outcome, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    let out = rt.block_on(scenario(imp, p));
    std::mem::forget(rt);
    out
}

struct Measured {
    failed: u64,
    leaked: u64,
    recover: Duration,
}

async fn scenario(imp: Impl, p: &FaultParams) -> Result<Outcome, String> {
    static N: AtomicU64 = AtomicU64::new(0);
    let app = format!(
        "cenote_fault_{}_{}",
        std::process::id(),
        N.fetch_add(1, Relaxed)
    );
    let mut cfg: tokio_postgres::Config = p.url.parse().map_err(err)?;
    cfg.application_name(&app);
    let (admin, conn) = tokio_postgres::connect(&p.url, NoTls).await.map_err(err)?;
    tokio::spawn(conn);
    let start = Instant::now();
    let m = match p.fault {
        Fault::KilledIdle => killed_idle(imp, cfg, p.safest, &admin, &app).await?,
        Fault::LeftState => left_state(imp, cfg, p.safest).await?,
        Fault::CancelledQuery => cancelled(imp, cfg, p.safest, &admin, &app).await?,
        Fault::Refused2s => refused(imp, &cfg, p.safest).await?,
    };
    Ok(Outcome::new(start.elapsed(), None)
        .metric("failed_ops", m.failed as f64)
        .metric("leaked", m.leaked as f64)
        .metric("recover_ms", m.recover.as_secs_f64() * 1e3))
}

async fn killed_idle(
    imp: Impl,
    cfg: tokio_postgres::Config,
    safest: bool,
    admin: &tokio_postgres::Client,
    app: &str,
) -> Result<Measured, String> {
    let pool = Arc::new(Pool::build(imp, cfg, 4, safest).await?);
    pool.fill(4).await?;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .map_err(err)?;
    let killed = Instant::now();
    // The server's goodbye reaches the clients.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (failed, first_ok) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(u64::MAX)),
    );
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (pool, failed, first_ok) = (pool.clone(), failed.clone(), first_ok.clone());
            tokio::spawn(async move {
                for _ in 0..25 {
                    match pool.run("SELECT 1", Duration::from_secs(2)).await {
                        Ok(_) => first_ok.fetch_min(killed.elapsed().as_micros() as u64, Relaxed),
                        Err(_) => failed.fetch_add(1, Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(err)?;
    }
    Ok(Measured {
        failed: failed.load(Relaxed),
        leaked: 0,
        recover: Duration::from_micros(first_ok.load(Relaxed)),
    })
}

async fn left_state(
    imp: Impl,
    cfg: tokio_postgres::Config,
    safest: bool,
) -> Result<Measured, String> {
    let pool = Pool::build(imp, cfg, 1, safest).await?;
    pool.fill(1).await?;
    pool.run(
        "SET statement_timeout = '1234ms'; SELECT 1",
        Duration::from_secs(2),
    )
    .await?;
    pool.run("BEGIN", Duration::from_secs(2)).await?;
    let done = Instant::now();
    let (mut leaked, mut failed, mut recover) = (0, 0, None);
    for _ in 0..4 {
        let seen = pool
            .run(
                "SELECT (current_setting('statement_timeout') = '1234ms' OR now() <> statement_timestamp())::text",
                Duration::from_secs(2),
            )
            .await;
        match seen.as_deref().map(|v| v.first().map(String::as_str)) {
            Ok(Some("true")) => leaked += 1,
            Ok(_) => {
                recover.get_or_insert(done.elapsed());
            }
            Err(_) => failed += 1,
        }
    }
    Ok(Measured {
        failed,
        leaked,
        recover: recover.unwrap_or(done.elapsed()),
    })
}

async fn cancelled(
    imp: Impl,
    cfg: tokio_postgres::Config,
    safest: bool,
    admin: &tokio_postgres::Client,
    app: &str,
) -> Result<Measured, String> {
    let pool = Pool::build(imp, cfg, 1, safest).await?;
    pool.fill(1).await?;
    pool.cut_off("SELECT pg_sleep(10)", Duration::from_millis(100))
        .await;
    let dropped = Instant::now();
    let (mut failed, mut recover) = (0, None);
    let first = pool.run("SELECT 1", Duration::from_secs(3)).await;
    match first {
        Ok(_) => recover = Some(dropped.elapsed()),
        Err(_) => failed += 1,
    }
    tokio::time::sleep(Duration::from_millis(500).saturating_sub(dropped.elapsed())).await;
    let sleeping: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE '%pg_sleep%'",
            &[&app],
        )
        .await
        .map_err(err)?
        .get(0);
    // A pool that lent the busy connection serves again only when the
    // sleep ends (10 s): its recovery is reported as at least the 3 s
    // bound.
    Ok(Measured {
        failed,
        leaked: u64::from(sleeping > 0),
        recover: recover.unwrap_or(dropped.elapsed()),
    })
}

async fn refused(
    imp: Impl,
    cfg: &tokio_postgres::Config,
    safest: bool,
) -> Result<Measured, String> {
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) if h == "localhost" => "127.0.0.1".to_owned(),
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => return Err("the URL must name a TCP host".to_owned()),
    };
    let upstream = format!(
        "{host}:{}",
        cfg.get_ports().first().copied().unwrap_or(5432)
    );
    let proxy = Arc::new(
        cenote_fault_proxy::Proxy::start(upstream.parse().map_err(err)?)
            .await
            .map_err(err)?,
    );
    let mut via = tokio_postgres::Config::new();
    via.host("127.0.0.1")
        .port(proxy.addr().port())
        .user(cfg.get_user().unwrap_or("postgres"));
    if let Some(db) = cfg.get_dbname() {
        via.dbname(db);
    }
    if let Some(app) = cfg.get_application_name() {
        via.application_name(app);
    }
    let pool = Arc::new(Pool::build(imp, via, 4, safest).await?);
    pool.fill(4).await?;
    let t0 = Instant::now();
    let (down_at, up_at, end) = (
        Duration::from_millis(500),
        Duration::from_millis(2500),
        Duration::from_millis(4500),
    );
    let (failed_after, first_ok_after) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(u64::MAX)),
    );
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (pool, failed_after, first_ok_after) =
                (pool.clone(), failed_after.clone(), first_ok_after.clone());
            tokio::spawn(async move {
                while t0.elapsed() < end {
                    // An operation counts after the server is back if it
                    // began after that.
                    let began = t0.elapsed();
                    let r = pool.run("SELECT 1", Duration::from_millis(500)).await;
                    let at = t0.elapsed();
                    if began <= up_at {
                        if r.is_err() {
                            // Failing while the server is down is right;
                            // pace the retries.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        continue;
                    }
                    match r {
                        Ok(_) => first_ok_after.fetch_min((at - up_at).as_micros() as u64, Relaxed),
                        Err(_) => failed_after.fetch_add(1, Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(down_at).await;
    proxy.down();
    tokio::time::sleep(up_at - down_at).await;
    proxy.up().map_err(err)?;
    for t in tasks {
        t.await.map_err(err)?;
    }
    Ok(Measured {
        failed: failed_after.load(Relaxed),
        leaked: 0,
        recover: Duration::from_micros(
            first_ok_after
                .load(Relaxed)
                .min((end - up_at).as_micros() as u64),
        ),
    })
}
