//! cenote-postgres against the real PostgreSQL server (`CENOTE_PG_URL`):
//! dead, cancelled and dirty connections are never lent. Each test makes
//! its own roles and objects, named `cenote_t_<pid>_…`, and drops them.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cenote::resources::GetError;
use cenote_postgres::{Builder, Error, Pool, Reset};
use common::{unique, url, wait_pg_sleep_gone};

/// A plain connection outside any pool, for looking at the server.
async fn admin(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("admin connect");
    tokio::spawn(conn);
    c
}

/// A pool whose connections carry `app` as their application name.
fn pool(url: &str, app: &str, capacity: usize, reset: Reset) -> Pool {
    let mut cfg: tokio_postgres::Config = url.parse().unwrap();
    cfg.application_name(app);
    Builder::from_config(cfg)
        .capacity(capacity)
        .reset(reset)
        .check_timeout(Duration::from_secs(2))
        .pool(|b| b.acquire_timeout(Duration::from_secs(5)))
        .build()
        .unwrap()
}

/// Terminates every backend of `app` and waits until the server has
/// ended them and each client has seen its socket close.
async fn kill_all(admin: &tokio_postgres::Client, app: &str) -> usize {
    let n = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .len();
    let t0 = Instant::now();
    loop {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "backends still alive"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The clients' connection tasks read the server's goodbye.
    tokio::time::sleep(Duration::from_millis(20)).await;
    n
}

/// No permit or slot is left lent once every borrower is gone.
fn assert_settled(pool: &Pool) {
    assert_eq!(pool.in_use(), 0, "a connection is still counted as lent");
    assert!(pool.size() <= pool.capacity());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_killed_while_idle_are_never_lent() {
    let Some(url) = url() else { return };
    let app = unique("killed");
    let pool = pool(&url, &app, 4, Reset::Clean);
    let admin = admin(&url).await;
    // Inside the check-bypass window (used a moment ago) and outside it.
    for pause in [Duration::ZERO, Duration::from_millis(600)] {
        let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| pool.get())).await;
        for c in &held {
            c.as_ref().unwrap().batch_execute("SELECT 1").await.unwrap();
        }
        drop(held);
        assert_eq!(kill_all(&admin, &app).await, 4);
        tokio::time::sleep(pause).await;
        for _ in 0..8 {
            let c = pool.get().await.unwrap();
            assert!(!c.is_closed());
            c.query_one("SELECT 1", &[])
                .await
                .expect("a dead connection was lent");
        }
    }
    assert_settled(&pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_no_query_fails_when_idle_backends_are_killed() {
    let Some(url) = url() else { return };
    let app = unique("load");
    let pool = Arc::new(pool(&url, &app, 4, Reset::Clean));
    let admin = admin(&url).await;
    let failed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    for _round in 0..5 {
        // 16 tasks run queries, then all give their connections back ...
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (pool, failed, done) = (pool.clone(), failed.clone(), done.clone());
                tokio::spawn(async move {
                    for _ in 0..20 {
                        let c = pool.get().await.unwrap();
                        match c.query_one("SELECT 1", &[]).await {
                            Ok(_) => done.fetch_add(1, Relaxed),
                            Err(e) => {
                                eprintln!("failed: {e}");
                                failed.fetch_add(1, Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // ... and the idle backends are killed.
        kill_all(&admin, &app).await;
    }
    assert_eq!(
        failed.load(Relaxed),
        0,
        "queries failed on connections killed while idle"
    );
    assert_eq!(done.load(Relaxed), 5 * 16 * 20);
    assert_settled(&pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_or_role_fails_at_once_with_the_servers_message() {
    let Some(url) = url() else { return };
    for (what, expect) in [("dbname", "does not exist"), ("user", "does not exist")] {
        let mut cfg: tokio_postgres::Config = url.parse().unwrap();
        match what {
            "dbname" => cfg.dbname(unique("nodb")),
            _ => cfg.user(unique("norole")),
        };
        let pool = Builder::from_config(cfg)
            .pool(|b| b.acquire_timeout(Duration::from_secs(5)))
            .build()
            .unwrap();
        let t0 = Instant::now();
        let err = pool.get().await.expect_err("an unknown database or role");
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(100), "took {took:?}: {err}");
        let GetError::Create(e) = &err else {
            panic!("not a create error: {err:?}")
        };
        assert!(e.is_permanent(), "{e}");
        assert!(e.to_string().contains(expect), "{e}");
        // A second get fails as fast, with the same message.
        let t0 = Instant::now();
        assert!(matches!(pool.get().await, Err(GetError::Create(_))));
        assert!(t0.elapsed() < Duration::from_millis(100));
        assert_settled(&pool);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_cancelled_midway_is_stopped_on_the_server() {
    let Some(url) = url() else { return };
    let app = unique("cancel");
    let pool = pool(&url, &app, 1, Reset::Clean);
    let admin = admin(&url).await;
    {
        let c = pool.get().await.unwrap();
        let q = tokio::time::timeout(
            Duration::from_millis(200),
            c.batch_execute("SELECT pg_sleep(10)"),
        );
        assert!(q.await.is_err(), "the query should still be running");
    }
    // The next borrower does not wait for the sleeping query.
    let t0 = Instant::now();
    let c = pool.get().await.unwrap();
    let waited = t0.elapsed();
    c.query_one("SELECT 1", &[]).await.unwrap();
    assert!(waited < Duration::from_millis(100), "waited {waited:?}");
    // The server stopped it.
    wait_pg_sleep_gone(&admin, &app).await;
    assert_eq!(pool.stats().destroyed_broken, 1);
}

/// Whether the connection is inside a transaction.
async fn in_transaction(c: &cenote_postgres::Client) -> bool {
    // One simple query: outside a transaction it is its own, and starts
    // when the statement does.
    let rows = c
        .simple_query("SELECT now() = statement_timestamp()")
        .await
        .unwrap();
    let at_start = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v == "t"),
        _ => None,
    });
    !at_start.expect("one row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_borrower_inherits_a_transaction() {
    let Some(url) = url() else { return };
    for reset in [Reset::Rollback, Reset::Clean, Reset::DiscardAll] {
        let pool = pool(&url, &unique("tx"), 1, reset.clone());
        // Raw BEGIN, with a setting, left open.
        {
            let c = pool.get().await.unwrap();
            c.batch_execute("SET statement_timeout = '1234ms'; BEGIN")
                .await
                .unwrap();
        }
        for _ in 0..4 {
            let c = pool.get().await.unwrap();
            assert!(!in_transaction(&c).await, "{reset:?}: inside a transaction");
        }
        // BEGIN as a cached statement, run in a later borrow.
        {
            let c = pool.get().await.unwrap();
            c.prepare_cached("BEGIN").await.unwrap();
        }
        {
            let c = pool.get().await.unwrap();
            let begin = c.prepare_cached("BEGIN").await.unwrap();
            c.execute(&begin, &[]).await.unwrap();
        }
        let c = pool.get().await.unwrap();
        assert!(
            !in_transaction(&c).await,
            "{reset:?}: a prepared BEGIN was lent"
        );
        drop(c);
        // A transaction taken through the client and forgotten.
        {
            let mut c = pool.get().await.unwrap();
            let tx = c.transaction().await.unwrap();
            std::mem::forget(tx);
        }
        let c = pool.get().await.unwrap();
        assert!(
            !in_transaction(&c).await,
            "{reset:?}: a forgotten transaction was lent"
        );
        drop(c);
        // A BEGIN cut off midway.
        {
            let mut c = pool.get().await.unwrap();
            let begin = c.transaction();
            let _ = tokio::time::timeout(Duration::ZERO, begin).await;
        }
        let c = pool.get().await.unwrap();
        assert!(
            !in_transaction(&c).await,
            "{reset:?}: a cut-off BEGIN was lent"
        );
        drop(c);
        assert_settled(&pool);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_leaves_no_session_state_and_keeps_the_pools_statements() {
    let Some(url) = url() else { return };
    let pool = pool(&url, &unique("clean"), 1, Reset::Clean);
    let id = {
        let c = pool.get().await.unwrap();
        let s = c.prepare_cached("SELECT $1::int").await.unwrap();
        c.query_one(&s, &[&1]).await.unwrap();
        c.batch_execute(
            "SET application_name = 'dirty'; SET search_path = pg_catalog; \
             CREATE TEMP TABLE cenote_left_behind (x int); LISTEN cenote_chan; \
             SELECT pg_advisory_lock(4242); PREPARE cenote_mine AS SELECT 1; \
             SET ROLE pg_read_all_data",
        )
        .await
        .unwrap();
        c.id()
    };
    let c = pool.get().await.unwrap();
    assert_eq!(c.id(), id, "the same connection, reused");
    let row = c
        .query_one(
            "SELECT current_setting('search_path'), \
                    to_regclass('pg_temp.cenote_left_behind') IS NULL, \
                    (SELECT count(*) FROM pg_listening_channels()), \
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), \
                    (SELECT count(*) FROM pg_prepared_statements WHERE from_sql), \
                    current_user = session_user",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "\"$user\", public");
    assert!(row.get::<_, bool>(1), "temporary table left");
    assert_eq!(row.get::<_, i64>(2), 0, "LISTEN left");
    assert_eq!(row.get::<_, i64>(3), 0, "advisory lock left");
    assert_eq!(row.get::<_, i64>(4), 0, "prepared statement left");
    assert!(row.get::<_, bool>(5), "role left");
    // The pool's own statement survives the reset.
    assert_eq!(c.cached_statements(), 1);
    let s = c.prepare_cached("SELECT $1::int").await.unwrap();
    assert_eq!(c.query_one(&s, &[&7]).await.unwrap().get::<_, i32>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_answer_destroys_the_connection() {
    let Some(url) = url() else { return };
    let role = unique("ro");
    let admin = admin(&url).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; ALTER ROLE {role} SET default_transaction_read_only = on"
        ))
        .await
        .unwrap();
    let mut cfg: tokio_postgres::Config = url.parse().unwrap();
    cfg.user(&role);
    let pool = Builder::from_config(cfg.clone())
        .capacity(1)
        .build()
        .unwrap();
    {
        let c = pool.get().await.unwrap();
        let e = c
            .batch_execute("CREATE TABLE cenote_never (x int)")
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
        );
    }
    assert_eq!(pool.size(), 0, "the read-only connection was kept");
    assert_eq!(pool.stats().destroyed_broken, 1);
    // A pool that requires a primary refuses the server, naming why.
    let strict = Builder::from_config(cfg)
        .require_primary(true)
        .pool(|b| b.acquire_timeout(Duration::from_millis(300)))
        .build()
        .unwrap();
    let err = strict.get().await.unwrap_err();
    assert!(
        matches!(
            err,
            GetError::TimedOut {
                last_error: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    drop((pool, strict));
    tokio::time::sleep(Duration::from_millis(200)).await;
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_connection_is_reported_with_the_borrowers_line() {
    let Some(url) = url() else { return };
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s = seen.clone();
    let pool = Builder::new(&url)
        .unwrap()
        .pool(move |b| {
            b.leak_threshold(Duration::from_millis(100))
                .maintenance_interval(Duration::from_millis(20))
                .on_leak(move |r| s.lock().push((r.acquired_at.file(), r.acquired_at.line())))
        })
        .build()
        .unwrap();
    let line = line!() + 1;
    let c = pool.get().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(c);
    let seen = seen.lock();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].0.ends_with("server_postgres.rs"), "{seen:?}");
    assert_eq!(seen[0].1, line);
}

#[test]
fn errors_name_their_cause() {
    let e = Builder::new("postgres://[bad").unwrap_err();
    assert!(matches!(e, Error::Config(_)));
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn huge_timeouts_build_a_pool_instead_of_overflowing() {
    let pool = Builder::new("postgres://nobody@127.0.0.1:1/none")
        .unwrap()
        .create_timeout(Duration::MAX)
        .check_timeout(Duration::MAX)
        .query_timeout(Duration::MAX)
        .build();
    assert!(pool.is_ok(), "{pool:?}");
}
