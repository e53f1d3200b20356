//! Seed 004, "Resource Pooling", in Rust: a database-connection pool of 3
//! shared by 5 workers (5 s acquire timeout) and an HTTP-client pool of 2
//! shared by 4 workers (3 s), on simulated resources (creating a
//! connection takes 5 ms, a health check 0.2 ms).
//!
//! Where the Go version pre-fills a channel and discards "stale"
//! connections by hand, `cenote::resources` does the lifecycle: the pool is
//! filled at build (and fails fast with the real error if it cannot
//! connect), every borrower gets a reset connection, idle ones are checked
//! before reuse, and close waits for lent ones. The database workers are
//! plain threads (`get_timeout`), the HTTP workers async tasks
//! (`get().await`); one urgent request shows priority-based allocation.
//!
//! Run with `cargo run --release -p cenote --example resource_pooling`.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cenote::resources::{Manager, Pool};

#[derive(Debug, thiserror::Error)]
#[error("simulated network error")]
struct NetError;

/// A simulated database connection.
struct DbConn {
    id: String,
    /// Statements of the current session (cleared by `reset`).
    session: Vec<String>,
}

struct Db {
    made: AtomicU64,
}

impl Manager for Db {
    type Resource = DbConn;
    type Error = NetError;

    async fn create(&self) -> Result<DbConn, NetError> {
        tokio::time::sleep(Duration::from_millis(5)).await; // TCP + auth
        let n = self.made.fetch_add(1, SeqCst) + 1;
        println!("  created connection db-conn-{n}");
        Ok(DbConn {
            id: format!("db-conn-{n}"),
            session: Vec::new(),
        })
    }

    async fn check(&self, _conn: &mut DbConn) -> Result<(), NetError> {
        tokio::time::sleep(Duration::from_micros(200)).await; // SELECT 1
        Ok(())
    }

    async fn reset(&self, conn: &mut DbConn) -> Result<(), NetError> {
        conn.session.clear(); // ROLLBACK; DISCARD ALL
        Ok(())
    }

    async fn destroy(&self, conn: DbConn) {
        println!("  closed {}", conn.id);
    }
}

/// A simulated HTTP client (a connection-pooling client of its own in real
/// life; here just a name).
struct Http {
    made: AtomicU64,
}

impl Manager for Http {
    type Resource = String;
    type Error = NetError;

    async fn create(&self) -> Result<String, NetError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(format!(
            "http-client-{}",
            self.made.fetch_add(1, SeqCst) + 1
        ))
    }
}

/// A small deterministic pseudo-random sequence (the seed's rand.Intn).
fn spread(i: u64, range_ms: u64) -> u64 {
    (i.wrapping_mul(2_654_435_761) >> 7) % range_ms
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    println!("1. Database Connection Pool Example:");
    let db = Pool::builder(Db {
        made: AtomicU64::new(0),
    })
    .capacity(3)
    .min_idle(3)
    .acquire_timeout(Duration::from_secs(5))
    .histograms(true)
    .build_filled_blocking()?;
    std::thread::scope(|s| {
        for id in 1..=5u64 {
            let db = &db;
            s.spawn(move || match db.get_timeout(Duration::from_secs(5)) {
                Ok(mut conn) => {
                    conn.session.push(format!("worker {id}'s query"));
                    println!("Worker {id}: Using connection {}", conn.id);
                    std::thread::sleep(Duration::from_millis(500 + spread(id, 1000)));
                }
                Err(e) => println!("Worker {id}: {e}"),
            });
        }
    });
    let (status, stats) = (db.stats(), db.stats());
    println!(
        "  db pool: {} connections, {} idle; {} gets served at once, {} after waiting (p99 wait < {:?}), {} created",
        status.size,
        status.idle,
        stats.served_at_once,
        stats.served_after_wait,
        stats.wait_quantile(0.99).unwrap_or_default(),
        stats.created
    );
    db.shutdown_timeout_blocking(Duration::from_secs(5))?;

    println!("\n2. HTTP Client Pool Example:");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let http = Pool::builder(Http {
            made: AtomicU64::new(0),
        })
        .capacity(2)
        .acquire_timeout(Duration::from_secs(3))
        .build_filled()
        .await?;
        let mut tasks = Vec::new();
        for id in 1..=4u64 {
            let http = http.clone();
            tasks.push(tokio::spawn(async move {
                match http.get().await {
                    Ok(client) => {
                        println!("Worker {id}: Using HTTP client {}", *client);
                        tokio::time::sleep(Duration::from_millis(300 + spread(id, 800))).await;
                    }
                    Err(e) => println!("Worker {id}: {e}"),
                }
            }));
        }
        // Priority-based allocation: an urgent request queued last is
        // served before the waiting workers.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let urgent = http.request().priority(10).get().await?;
        println!(
            "Urgent request: Using HTTP client {} ahead of {} waiting worker(s)",
            *urgent,
            http.stats().waiting
        );
        drop(urgent);
        for t in tasks {
            t.await?;
        }
        http.shutdown_timeout(Duration::from_secs(3)).await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    println!("\ndone in {:.2?}", start.elapsed());
    Ok(())
}
