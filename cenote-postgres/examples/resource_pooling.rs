//! Seed 004's database-connection pool, made real: a pool of 3 PostgreSQL
//! connections shared by 5 workers with a 5 s acquire timeout, each worker
//! running its query on a connection it borrows.
//!
//! With `CENOTE_PG_URL` set (`postgres://postgres@127.0.0.1:5432/test`) it
//! talks to that server; without it, to an in-memory stand-in (a
//! `cenote::resources::Manager` whose connections take 5 ms to open), and
//! says so.
//!
//! Run with `cargo run -p cenote-postgres --example resource_pooling`.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The seed's random work time (rand.Intn), deterministic.
fn spread(i: u64, range_ms: u64) -> u64 {
    (i.wrapping_mul(2_654_435_761) >> 7) % range_ms
}

/// The stand-in: a connection is a number; its "query" sleeps.
struct StandIn(AtomicU64);

#[derive(Debug, thiserror::Error)]
#[error("stand-in error")]
struct Never;

impl cenote::resources::Manager for StandIn {
    type Resource = u64;
    type Error = Never;
    async fn create(&self) -> Result<u64, Never> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(self.0.fetch_add(1, SeqCst) + 1)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    match std::env::var("CENOTE_PG_URL") {
        Ok(url) if !url.is_empty() => real(&url).await?,
        _ => stand_in().await?,
    }
    println!("done in {:.2?}", start.elapsed());
    Ok(())
}

async fn real(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("Database Connection Pool Example, on PostgreSQL at {url}:");
    let pool = cenote_postgres::Builder::new(url)?
        .capacity(3)
        .pool(|b| b.acquire_timeout(Duration::from_secs(5)).min_idle(3))
        .build()?;
    let workers: Vec<_> = (1..=5u64)
        .map(|id| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let conn = match pool.get().await {
                    Ok(c) => c,
                    Err(e) => return println!("Worker {id}: {e}"),
                };
                let pid: i32 = match conn.query_one("SELECT pg_backend_pid()", &[]).await {
                    Ok(row) => row.get(0),
                    Err(e) => return println!("Worker {id}: {e}"),
                };
                println!("Worker {id}: Using connection to backend {pid}");
                let work = format!(
                    "SELECT pg_sleep({})",
                    (500 + spread(id, 1000)) as f64 / 1000.0
                );
                if let Err(e) = conn.batch_execute(&work).await {
                    println!("Worker {id}: {e}");
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let s = pool.stats();
    println!(
        "  pool: {} connections, {} idle; {} gets served at once, {} after waiting, {} created",
        s.size, s.idle, s.served_at_once, s.served_after_wait, s.created
    );
    pool.shutdown_timeout(Duration::from_secs(5)).await?;
    Ok(())
}

async fn stand_in() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "Database Connection Pool Example, on an in-memory stand-in \
         (set CENOTE_PG_URL=postgres://user@host/db for a real server):"
    );
    let pool = cenote::resources::Pool::builder(StandIn(AtomicU64::new(0)))
        .capacity(3)
        .min_idle(3)
        .acquire_timeout(Duration::from_secs(5))
        .build_filled()
        .await?;
    let workers: Vec<_> = (1..=5u64)
        .map(|id| {
            let pool = pool.clone();
            tokio::spawn(async move {
                match pool.get().await {
                    Ok(conn) => {
                        println!("Worker {id}: Using connection db-conn-{}", *conn);
                        tokio::time::sleep(Duration::from_millis(500 + spread(id, 1000))).await;
                    }
                    Err(e) => println!("Worker {id}: {e}"),
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let s = pool.stats();
    println!(
        "  pool: {} connections, {} idle; {} gets served at once, {} after waiting, {} created",
        s.size, s.idle, s.served_at_once, s.served_after_wait, s.created
    );
    pool.shutdown_timeout(Duration::from_secs(5)).await?;
    Ok(())
}
