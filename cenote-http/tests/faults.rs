//! cenote-http through `cenote-fault-proxy`: a black-holed network, a
//! response cut off midway, a server restarted under load.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cenote_fault_proxy::{Proxy, Toxics};
use cenote_http::{Client, Error};
use common::{fetch, Opts, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_is_cut_by_the_request_timeout_and_the_acquire_timeout() {
    let server = Server::start(Opts::default()).await;
    let proxy = Proxy::start(server.addr).await.unwrap();
    let url = format!("http://{}/", proxy.addr());
    let bound = Duration::from_millis(300);
    let client = Client::builder()
        .max_connections_per_origin(1)
        .request_timeout(Some(bound))
        .acquire_timeout(bound)
        .build()
        .unwrap();
    fetch(&client, &url).await;
    proxy.set(Toxics::none().black_hole());
    let t0 = Instant::now();
    let e = client.get(&url).await.unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, Error::TimedOut(d) if d == bound), "{e}");
    assert!(took < bound + Duration::from_millis(50), "took {took:?}");
    // The cut-off connection is destroyed; a held response makes the next
    // request wait for a connection, and its wait ends at the acquire
    // timeout with a clear error.
    proxy.clear();
    let held = client.get(&url).await.unwrap();
    let t0 = Instant::now();
    let e = client.get(&url).await.unwrap_err();
    let took = t0.elapsed();
    assert!(took < bound + Duration::from_millis(50), "took {took:?}");
    assert!(matches!(e, Error::TimedOut(_) | Error::Pool { .. }), "{e}");
    drop(held);
    let pool = client.pool(&url).unwrap();
    assert_eq!(pool.in_use(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_off_midway_is_an_error_and_its_connection_destroyed() {
    let server = Server::start(Opts::default()).await;
    let proxy = Proxy::start(server.addr).await.unwrap();
    let url = format!("http://{}/big", proxy.addr());
    let client = Client::builder().build().unwrap();
    proxy.set(Toxics::none().limit_data(20_000));
    let r = client.get(&url).await.unwrap();
    let e = r.into_body().bytes().await.unwrap_err();
    assert!(matches!(e, Error::Body(_)), "{e}");
    let pool = client.pool(&url).unwrap();
    assert_eq!((pool.size(), pool.in_use()), (0, 0));
    // The next request gets a new connection and the whole body.
    proxy.clear();
    let r = client.get(&url).await.unwrap();
    assert_eq!(r.into_body().bytes().await.unwrap().len(), 64 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_under_load_fails_requests_with_the_cause_and_recovers() {
    let server = Server::start(Opts::default()).await;
    let port = server.addr.port();
    let url = server.url("/");
    let client = Client::builder()
        .max_connections_per_origin(8)
        .acquire_timeout(Duration::from_millis(500))
        .request_timeout(Some(Duration::from_secs(2)))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(SeqCst) {
                    let t0 = Instant::now();
                    let r = match client.get(&url).await {
                        Ok(r) => r.into_body().bytes().await.map(drop),
                        Err(e) => Err(e),
                    };
                    assert!(t0.elapsed() < Duration::from_secs(3), "a request hung");
                    match r {
                        Ok(()) => ok.fetch_add(1, SeqCst),
                        Err(e) => {
                            // Every failure names its cause.
                            assert!(
                                std::error::Error::source(&e).is_some()
                                    || matches!(e, Error::TimedOut(_)),
                                "{e}"
                            );
                            failed.fetch_add(1, SeqCst)
                        }
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop();
    // Down longer than the acquire timeout: requests fail, with the cause.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let _server = Server::start_on(port, Opts::default()).await;
    let before = ok.load(SeqCst);
    let t0 = Instant::now();
    while ok.load(SeqCst) < before + 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the client did not recover"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(failed.load(SeqCst) > 0, "the restart was not seen");
    let pool = client.pool(&url).unwrap();
    assert_eq!(pool.in_use(), 0);
    assert!(pool.size() <= 8);
}
