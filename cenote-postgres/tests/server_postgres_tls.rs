//! cenote-postgres over TLS (feature `tls`) against the real PostgreSQL
//! server (`CENOTE_PG_URL`), which must have `ssl = on`: the connection is
//! encrypted, a dropped query is cancelled over TLS too, and a certificate
//! that fails verification fails the first `get` at once with the cause.
#![cfg(feature = "tls")]

mod common;

use std::time::{Duration, Instant};

use cenote::resources::GetError;
use cenote_postgres::tls::native_tls::TlsConnector;
use cenote_postgres::{Builder, Error};
use common::{config, unique, wait_pg_sleep_gone};
use tokio_postgres::config::SslMode;

/// `CENOTE_PG_URL` with `sslmode=require`, or `None` when the server has no
/// TLS (said plainly: the tests did not run).
async fn tls_config() -> Option<tokio_postgres::Config> {
    let mut cfg = config()?;
    let (admin, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl != "on" {
        eprintln!("not run: the server at CENOTE_PG_URL has ssl = {ssl}");
        return None;
    }
    cfg.ssl_mode(SslMode::Require);
    Some(cfg)
}

/// Encrypts without verifying the certificate (libpq's `sslmode=require`;
/// the server's certificate is the machine's self-signed one).
fn unverified() -> TlsConnector {
    TlsConnector::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_encrypted() {
    let Some(cfg) = tls_config().await else {
        return;
    };
    let pool = Builder::from_config(cfg)
        .native_tls(unverified())
        .capacity(2)
        .build()
        .unwrap();
    let c = pool.get().await.unwrap();
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the session is not encrypted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_query_is_cancelled_over_tls() {
    let Some(mut cfg) = tls_config().await else {
        return;
    };
    let app = unique("tls_cancel");
    cfg.application_name(&app);
    let (admin, conn) = config()
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let pool = Builder::from_config(cfg)
        .native_tls(unverified())
        .capacity(1)
        .build()
        .unwrap();
    {
        let c = pool.get().await.unwrap();
        let sleep = c.batch_execute("SELECT pg_sleep(10)");
        let cut = tokio::time::timeout(Duration::from_millis(200), sleep).await;
        assert!(cut.is_err(), "pg_sleep(10) returned early");
    }
    wait_pg_sleep_gone(&admin, &app).await;
    // The next borrower gets a fresh, encrypted connection.
    let c = pool.get().await.unwrap();
    c.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(pool.stats().destroyed_broken, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_fails_verification_fails_the_first_get_at_once() {
    let Some(cfg) = tls_config().await else {
        return;
    };
    // The system's roots do not vouch for the machine's self-signed
    // certificate, nor does it name 127.0.0.1.
    let pool = Builder::from_config(cfg)
        .tls_system_roots()
        .unwrap()
        .capacity(1)
        .pool(|b| b.acquire_timeout(Duration::from_secs(10)))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let e = pool.get().await.unwrap_err();
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "took {took:?}: retried until the timeout"
    );
    let GetError::Create(cause) = &e else {
        panic!("not the create error: {e}")
    };
    assert!(matches!(**cause, Error::Connect(_)), "{cause}");
    assert!(cause.is_permanent(), "{cause}");
    let msg = cause.to_string();
    assert!(msg.contains("TLS handshake"), "{msg}");
    eprintln!("a failed verification reads: {msg}");
    assert_eq!(pool.stats().in_use, 0);
}
