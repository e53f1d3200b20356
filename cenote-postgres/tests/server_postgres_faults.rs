//! cenote-postgres against the real PostgreSQL server (`CENOTE_PG_URL`)
//! failing: sessions the server closes, a black-holed network, a server
//! that refuses connections for 2 s. Faults come from the server itself
//! (a role's `idle_session_timeout`) or from `cenote-fault-proxy` between
//! the pool and the server.

mod common;

use std::time::{Duration, Instant};

use cenote::resources::GetError;
use cenote_fault_proxy::Toxics;
use cenote_postgres::{Builder, Error, Pool};
use common::{config, proxied, unique};

async fn fill(pool: &Pool, n: usize) {
    let held: Vec<_> = futures_util::future::join_all((0..n).map(|_| pool.get())).await;
    for c in &held {
        c.as_ref().unwrap().batch_execute("SELECT 1").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_the_server_closed_while_idle_are_never_lent() {
    let Some(cfg) = config() else { return };
    let role = unique("idle");
    let (admin, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; ALTER ROLE {role} SET idle_session_timeout = '200ms'"
        ))
        .await
        .unwrap();
    let mut as_role = cfg.clone();
    as_role.user(&role);
    // Inside the bypass window: only the socket test stands between a
    // closed session and the borrower.
    let pool = Builder::from_config(as_role)
        .capacity(3)
        .pool(|b| b.check_bypass(Duration::from_secs(3600)))
        .build()
        .unwrap();
    for _ in 0..3 {
        fill(&pool, 3).await;
        // The server ends each session 200 ms into its idleness.
        tokio::time::sleep(Duration::from_millis(400)).await;
        for _ in 0..3 {
            let c = pool.get().await.unwrap();
            c.query_one("SELECT 1", &[])
                .await
                .expect("a closed session was lent");
        }
    }
    assert!(pool.stats().destroyed_broken >= 3);
    drop(pool);
    tokio::time::sleep(Duration::from_millis(200)).await;
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_idle_connections_are_replaced_within_the_check_timeout() {
    let Some(cfg) = config() else { return };
    let (proxy, via) = proxied(&cfg).await;
    let check = Duration::from_millis(300);
    let pool = Builder::from_config(via)
        .capacity(4)
        .check_timeout(check)
        .pool(|b| b.check_bypass(Duration::ZERO))
        .build()
        .unwrap();
    fill(&pool, 4).await;
    for id in proxy.connections() {
        proxy.set_for(id, Toxics::none().black_hole());
    }
    // Every idle connection hangs; each get waits out one check, not four.
    let mut held = Vec::new();
    for n in 1..=4 {
        let t0 = Instant::now();
        let c = pool.get().await.unwrap();
        let took = t0.elapsed();
        c.query_one("SELECT 1", &[]).await.unwrap();
        assert!(
            took < check + Duration::from_millis(50),
            "get {n} took {took:?}"
        );
        held.push(c);
    }
    let st = pool.stats();
    assert_eq!((st.size, st.in_use, st.destroyed_failed_check), (4, 4, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_on_a_black_holed_connection_fails_within_the_query_timeout() {
    let Some(cfg) = config() else { return };
    let (proxy, via) = proxied(&cfg).await;
    let limit = Duration::from_millis(400);
    let pool = Builder::from_config(via)
        .capacity(1)
        .query_timeout(limit)
        .build()
        .unwrap();
    {
        let c = pool.get().await.unwrap();
        c.query_one("SELECT 1", &[]).await.unwrap();
        proxy.set(Toxics::none().black_hole());
        let t0 = Instant::now();
        let e = c.query_one("SELECT 1", &[]).await.unwrap_err();
        let took = t0.elapsed();
        assert!(matches!(e, Error::QueryTimedOut(d) if d == limit), "{e}");
        assert!(took < limit + Duration::from_millis(50), "took {took:?}");
    }
    assert_eq!(pool.size(), 0, "the connection was kept");
    assert_eq!(pool.stats().destroyed_broken, 1);
    proxy.clear();
    pool.get()
        .await
        .unwrap()
        .query_one("SELECT 1", &[])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refused_for_two_seconds_times_out_with_the_cause_and_refills() {
    let Some(cfg) = config() else { return };
    let (proxy, via) = proxied(&cfg).await;
    let acquire = Duration::from_millis(500);
    let pool = Builder::from_config(via)
        .capacity(2)
        .create_timeout(Duration::from_millis(300))
        .pool(move |b| {
            b.min_idle(2)
                .acquire_timeout(acquire)
                .maintenance_interval(Duration::from_millis(50))
        })
        .build()
        .unwrap();
    fill(&pool, 2).await;
    proxy.down();
    let down_at = Instant::now();
    // The reset reaches the clients' connection tasks.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t0 = Instant::now();
    let e = pool.get().await.unwrap_err();
    let took = t0.elapsed();
    assert!(took < acquire + Duration::from_millis(50), "took {took:?}");
    let GetError::TimedOut {
        last_error: Some(cause),
        ..
    } = &e
    else {
        panic!("not a timeout with its cause: {e:?}")
    };
    assert!(cause.to_string().contains("refused"), "{cause}");
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(down_at.elapsed())).await;
    proxy.up().unwrap();
    // Back to min_idle without any get.
    let t0 = Instant::now();
    while pool.idle() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no refill: {:?}",
            pool.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pool.get()
        .await
        .unwrap()
        .query_one("SELECT 1", &[])
        .await
        .unwrap();
    assert_eq!(pool.in_use(), 0);
}

/// A connection that dies while its reset is pending fails the probe and
/// is replaced. Run on a thread of its own and watched from a plain one:
/// a poll that spins never yields to a timer in its own runtime.
#[test]
fn a_connection_that_dies_while_its_reset_is_pending_is_replaced_not_spun_on() {
    let Some(cfg) = config() else { return };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _ = tx.send(rt.block_on(dies_while_reset_is_pending(cfg)));
    });
    let served = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the get hung on a dead connection's pending reset");
    served.expect("a new connection serves the get");
}

async fn dies_while_reset_is_pending(cfg: tokio_postgres::Config) -> Result<(), String> {
    let (proxy, via) = proxied(&cfg).await;
    let pool = Builder::from_config(via)
        .capacity(1)
        .reset(cenote_postgres::Reset::Clean)
        .check_timeout(Duration::from_millis(300))
        .pool(|b| b.check_bypass(Duration::ZERO))
        .build()
        .unwrap();
    fill(&pool, 1).await;
    // The reset goes out at the next checkout and is never answered; the
    // socket then dies under the probe that waits for it.
    proxy.set(Toxics::none().black_hole());
    let proxy = std::sync::Arc::new(proxy);
    let killer = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            proxy.reset_all();
            proxy.clear();
        })
    };
    let c = pool.get().await.map_err(|e| e.to_string())?;
    c.query_one("SELECT 1", &[])
        .await
        .map_err(|e| e.to_string())?;
    killer.await.map_err(|e| e.to_string())
}
