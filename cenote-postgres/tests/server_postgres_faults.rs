//! cenote-postgres against the real PostgreSQL server (`CENOTE_PG_URL`)
//! failing: sessions the server closes, a black-holed network, a server
//! that refuses connections for 2 s. Faults come from the server itself
//! (a role's `idle_session_timeout`) or from `cenote-fault-proxy` between
//! the pool and the server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use cenote::resources::GetError;
use cenote_fault_proxy::{Proxy, Toxics};
use cenote_postgres::{Builder, Error, Pool};

fn config() -> Option<tokio_postgres::Config> {
    match std::env::var("CENOTE_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u.parse().expect("CENOTE_PG_URL")),
        _ => {
            eprintln!(
                "skipped: CENOTE_PG_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

fn unique(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "cenote_f_{}_{}_{}",
        std::process::id(),
        what,
        N.fetch_add(1, Relaxed)
    )
}

/// The server's TCP address.
fn server(cfg: &tokio_postgres::Config) -> SocketAddr {
    let host = match &cfg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => panic!("CENOTE_PG_URL must name a TCP host"),
    };
    let host = if host == "localhost" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    format!(
        "{host}:{}",
        cfg.get_ports().first().copied().unwrap_or(5432)
    )
    .parse()
    .unwrap()
}

/// A proxy in front of the server and a config that goes through it.
async fn proxied(cfg: &tokio_postgres::Config) -> (Proxy, tokio_postgres::Config) {
    let proxy = Proxy::start(server(cfg)).await.unwrap();
    // A new config: `host` and `port` add to a config's lists.
    let mut via = tokio_postgres::Config::new();
    via.host("127.0.0.1").port(proxy.addr().port());
    if let Some(user) = cfg.get_user() {
        via.user(user);
    }
    if let Some(db) = cfg.get_dbname() {
        via.dbname(db);
    }
    if let Some(pw) = cfg.get_password() {
        via.password(pw);
    }
    (proxy, via)
}

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
async fn a_black_holed_idle_connection_is_replaced_within_the_check_timeout() {
    let Some(cfg) = config() else { return };
    let (proxy, via) = proxied(&cfg).await;
    let check = Duration::from_millis(300);
    let pool = Builder::from_config(via)
        .capacity(1)
        .check_timeout(check)
        .pool(|b| b.check_bypass(Duration::ZERO))
        .build()
        .unwrap();
    fill(&pool, 1).await;
    for id in proxy.connections() {
        proxy.set_for(id, Toxics::none().black_hole());
    }
    let t0 = Instant::now();
    let c = pool.get().await.unwrap();
    let took = t0.elapsed();
    c.query_one("SELECT 1", &[]).await.unwrap();
    assert!(took < check + Duration::from_millis(50), "took {took:?}");
    assert_eq!(pool.stats().destroyed_failed_check, 1);
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
