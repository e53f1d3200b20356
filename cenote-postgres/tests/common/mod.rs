//! What the server tests share: the server's URL (or a line saying the
//! test is skipped), names no other test uses, and a fault proxy in front
//! of the server.
#![allow(dead_code)] // each test file uses its own share

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use cenote_fault_proxy::Proxy;

/// `CENOTE_PG_URL`, or `None` and a line saying the test is skipped.
pub fn url() -> Option<String> {
    match std::env::var("CENOTE_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!(
                "skipped: CENOTE_PG_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// [`url`], parsed.
pub fn config() -> Option<tokio_postgres::Config> {
    url().map(|u| u.parse().expect("CENOTE_PG_URL"))
}

/// A name no other test or run uses: `cenote_t_<pid>_<what>_<n>`.
pub fn unique(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "cenote_t_{}_{what}_{}",
        std::process::id(),
        N.fetch_add(1, Relaxed)
    )
}

/// The server's TCP address.
fn server(cfg: &tokio_postgres::Config) -> SocketAddr {
    let host = match &cfg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) if h == "localhost" => "127.0.0.1".to_owned(),
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => panic!("CENOTE_PG_URL must name a TCP host"),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}").parse().expect("a socket address")
}

/// A proxy in front of the server, and a config that goes through it.
pub async fn proxied(cfg: &tokio_postgres::Config) -> (Proxy, tokio_postgres::Config) {
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

/// Waits until the server shows no `pg_sleep` running for `app` (a
/// cancelled query stopped), at most 2 s.
pub async fn wait_pg_sleep_gone(admin: &tokio_postgres::Client, app: &str) {
    let t0 = std::time::Instant::now();
    loop {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%pg_sleep%' AND state = 'active'",
                &[&app],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(2),
            "pg_sleep still runs"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
