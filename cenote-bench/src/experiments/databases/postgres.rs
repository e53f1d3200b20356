//! The PostgreSQL side of `cenote-bench databases`: each pool's get and
//! the three workloads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, Statement};

use super::{drive, DbParams, Work};
use crate::harness::Outcome;
use crate::peers::Impl;

const LOOKUP: &str = "SELECT abalance FROM cenote_bench_accounts WHERE aid = $1";
const UPDATE: &str = "UPDATE cenote_bench_accounts SET abalance = abalance + 1 WHERE aid = $1";
const ROWS: i32 = 100_000;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn connect(url: &str) -> Result<Client, String> {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.map_err(err)?;
    tokio::spawn(conn);
    Ok(c)
}

/// The pgbench-style table, made once.
async fn table(url: &str) -> Result<(), String> {
    let c = connect(url).await?;
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS cenote_bench_accounts \
         (aid int PRIMARY KEY, abalance int NOT NULL, filler char(84))",
    )
    .await
    .map_err(err)?;
    let n: i64 = c
        .query_one("SELECT count(*) FROM cenote_bench_accounts", &[])
        .await
        .map_err(err)?
        .get(0);
    if n < i64::from(ROWS) {
        c.batch_execute(&format!(
            "INSERT INTO cenote_bench_accounts SELECT g, 0, '' FROM generate_series(1, {ROWS}) g \
             ON CONFLICT DO NOTHING"
        ))
        .await
        .map_err(err)?;
    }
    Ok(())
}

/// A key to look up, spread over the table.
fn aid(task: usize, n: u64) -> i32 {
    ((task as u64 * 7919 + n * 104_729) % ROWS as u64) as i32 + 1
}

/// The statements of a connection that prepares them once.
struct Prepared {
    lookup: Statement,
    update: Statement,
}

async fn prepare(c: &Client) -> Result<Prepared, String> {
    Ok(Prepared {
        lookup: c.prepare(LOOKUP).await.map_err(err)?,
        update: c.prepare(UPDATE).await.map_err(err)?,
    })
}

/// The work on a plain tokio-postgres client: with `prepared` statements,
/// or by SQL text (tokio-postgres prepares it per query).
async fn work(c: &Client, prepared: Option<&Prepared>, w: Work, key: i32) -> Result<(), String> {
    match (w, prepared) {
        (Work::Select1, _) => c.batch_execute("SELECT 1").await.map_err(err),
        (Work::Lookup, Some(p)) => c.query_one(&p.lookup, &[&key]).await.map(drop).map_err(err),
        (Work::Lookup, None) => c.query_one(LOOKUP, &[&key]).await.map(drop).map_err(err),
        (Work::Transaction, p) => {
            c.batch_execute("BEGIN").await.map_err(err)?;
            match p {
                Some(p) => {
                    c.execute(&p.update, &[&key]).await.map_err(err)?;
                    c.query_one(&p.lookup, &[&key]).await.map_err(err)?;
                }
                None => {
                    c.execute(UPDATE, &[&key]).await.map_err(err)?;
                    c.query_one(LOOKUP, &[&key]).await.map_err(err)?;
                }
            }
            c.batch_execute("COMMIT").await.map_err(err)
        }
        _ => Err(format!("{w:?} is not a PostgreSQL workload")),
    }
}

/// The work through cenote-postgres's client (statements cached per
/// connection, a transaction taken through the client).
async fn work_cenote(c: &mut cenote_postgres::Client, w: Work, key: i32) -> Result<(), String> {
    match w {
        Work::Select1 => c.batch_execute("SELECT 1").await.map_err(err),
        Work::Lookup => {
            let s = c.prepare_cached(LOOKUP).await.map_err(err)?;
            c.query_one(&s, &[&key]).await.map(drop).map_err(err)
        }
        Work::Transaction => {
            let (lookup, update) = (
                c.prepare_cached(LOOKUP).await.map_err(err)?,
                c.prepare_cached(UPDATE).await.map_err(err)?,
            );
            let tx = c.transaction().await.map_err(err)?;
            tx.execute(&update, &[&key]).await.map_err(err)?;
            tx.query_one(&lookup, &[&key]).await.map_err(err)?;
            tx.commit().await.map_err(err)
        }
        _ => Err(format!("{w:?} is not a PostgreSQL workload")),
    }
}

/// The work through deadpool-postgres's client (its statement cache).
async fn work_deadpool(c: &deadpool_postgres::Object, w: Work, key: i32) -> Result<(), String> {
    let prepared = match w {
        Work::Select1 => None,
        _ => Some(Prepared {
            lookup: c.prepare_cached(LOOKUP).await.map_err(err)?,
            update: c.prepare_cached(UPDATE).await.map_err(err)?,
        }),
    };
    work(c, prepared.as_ref(), w, key).await
}

pub(super) async fn run(imp: Impl, p: &DbParams) -> Result<Outcome, String> {
    table(&p.url).await?;
    let (w, url) = (p.work, p.url.clone());
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let next = move |t: usize| {
        aid(
            t,
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        )
    };
    match imp {
        Impl::Cenote => {
            let pool = Arc::new(
                cenote_postgres::Builder::new(&url)
                    .map_err(err)?
                    .capacity(p.size)
                    .build()
                    .map_err(err)?,
            );
            fill(p.size, || async { pool.get().await.map_err(err) }).await?;
            drive(p.tasks, p.ops, move |t| {
                let (pool, next) = (pool.clone(), next.clone());
                async move {
                    let t0 = Instant::now();
                    let mut c = pool.get().await.map_err(err)?;
                    let waited = t0.elapsed();
                    work_cenote(&mut c, w, next(t)).await?;
                    Ok(waited)
                }
            })
            .await
        }
        Impl::DeadpoolPostgres => {
            let cfg: tokio_postgres::Config = url.parse().map_err(err)?;
            let mgr = deadpool_postgres::Manager::from_config(
                cfg,
                NoTls,
                deadpool_postgres::ManagerConfig {
                    recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                },
            );
            let pool = deadpool_postgres::Pool::builder(mgr)
                .max_size(p.size)
                .build()
                .map_err(err)?;
            fill(p.size, || async { pool.get().await.map_err(err) }).await?;
            drive(p.tasks, p.ops, move |t| {
                let (pool, next) = (pool.clone(), next.clone());
                async move {
                    let t0 = Instant::now();
                    let c = pool.get().await.map_err(err)?;
                    let waited = t0.elapsed();
                    work_deadpool(&c, w, next(t)).await?;
                    Ok(waited)
                }
            })
            .await
        }
        Impl::Bb8Postgres => {
            let cfg: tokio_postgres::Config = url.parse().map_err(err)?;
            let mgr = bb8_postgres::PostgresConnectionManager::new(cfg, NoTls);
            let pool = bb8::Pool::builder()
                .max_size(u32::try_from(p.size).map_err(err)?)
                .build(mgr)
                .await
                .map_err(err)?;
            fill(p.size, || async { pool.get().await.map_err(err) }).await?;
            drive(p.tasks, p.ops, move |t| {
                let (pool, next) = (pool.clone(), next.clone());
                async move {
                    let t0 = Instant::now();
                    let c = pool.get().await.map_err(err)?;
                    let waited = t0.elapsed();
                    work(&c, None, w, next(t)).await?;
                    Ok(waited)
                }
            })
            .await
        }
        Impl::Dedicated => {
            let mut own = Vec::with_capacity(p.tasks);
            for _ in 0..p.tasks {
                let c = connect(&url).await?;
                let prepared = prepare(&c).await?;
                own.push(Arc::new((c, prepared)));
            }
            let own = Arc::new(own);
            drive(p.tasks, p.ops, move |t| {
                let (own, next) = (own.clone(), next.clone());
                async move {
                    let (c, prepared) = &*own[t];
                    work(c, Some(prepared), w, next(t)).await?;
                    Ok(Duration::ZERO)
                }
            })
            .await
        }
        Impl::DeadpoolUnmanaged => {
            // The least a pool does: a semaphore and a locked list of
            // connections (no check, no reset, statements prepared once):
            // what moving connections between tasks costs by itself.
            let pool = deadpool::unmanaged::Pool::new(p.size);
            for _ in 0..p.size {
                let c = connect(&url).await?;
                let prepared = prepare(&c).await?;
                pool.add((c, prepared)).await.map_err(|(_, e)| err(e))?;
            }
            drive(p.tasks, p.ops, move |t| {
                let (pool, next) = (pool.clone(), next.clone());
                async move {
                    let t0 = Instant::now();
                    let held = pool.get().await.map_err(err)?;
                    let waited = t0.elapsed();
                    let (c, prepared) = &*held;
                    work(c, Some(prepared), w, next(t)).await?;
                    Ok(waited)
                }
            })
            .await
        }
        Impl::ConnectPerRequest => {
            drive(p.tasks, p.ops, move |t| {
                let (url, next) = (url.clone(), next.clone());
                async move {
                    let t0 = Instant::now();
                    let c = connect(&url).await?;
                    let waited = t0.elapsed();
                    work(&c, None, w, next(t)).await?;
                    Ok(waited)
                }
            })
            .await
        }
        other => Err(format!("{} does not run databases/postgres", other.name())),
    }
}

/// Holds `n` connections from `get` at once, then gives them back.
pub(super) async fn fill<F, Fut, T>(n: usize, get: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let held = futures_util::future::join_all((0..n).map(|_| get())).await;
    for h in held {
        h?;
    }
    Ok(())
}
