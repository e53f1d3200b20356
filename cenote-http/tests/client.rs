//! cenote-http against a local hyper server (`common`): reuse, what is
//! never reused, the stale-connection retry and its limits, the cap per
//! origin, the origin cap, bad input, plain threads.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use cenote_http::http::{Method, Request};
use cenote_http::{Body, BuildError, Client, Error, RetrySafe};
use common::{fetch, Opts, Server};

fn client() -> Client {
    Client::builder().build().unwrap()
}

#[tokio::test]
async fn a_connection_is_reused_once_its_body_is_read() {
    let server = Server::start(Opts::default()).await;
    let client = client();
    for _ in 0..10 {
        let r = client.get(&server.url("/")).await.unwrap();
        assert_eq!(r.into_body().bytes().await.unwrap().len(), 1024);
    }
    // Bodiless responses give the connection back at once.
    for _ in 0..3 {
        let r = client.get(&server.url("/empty")).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(server.counts.opened.load(SeqCst), 1);
    let pool = client.pool(&server.url("")).unwrap();
    assert_eq!((pool.size(), pool.in_use()), (1, 0));
}

#[tokio::test]
async fn connection_close_and_a_half_read_body_are_never_reused() {
    let server = Server::start(Opts::default()).await;
    let client = client();
    for _ in 0..3 {
        fetch(&client, &server.url("/close")).await;
    }
    assert_eq!(server.counts.opened.load(SeqCst), 3, "Connection: close");
    // A 64 KiB body dropped after its head costs its connection.
    for _ in 0..3 {
        let r = client.get(&server.url("/big")).await.unwrap();
        drop(r);
    }
    assert_eq!(server.counts.opened.load(SeqCst), 6, "half-read bodies");
    let pool = client.pool(&server.url("")).unwrap();
    assert_eq!((pool.size(), pool.in_use()), (0, 0));
    assert!(pool.stats().destroyed_broken >= 6);
}

#[tokio::test]
async fn a_stale_connection_is_retried_once_for_a_get_and_reported_for_a_post() {
    // The server reads the second request on each connection and closes
    // it unanswered: what a keep-alive race looks like to the client.
    let server = Server::start(Opts {
        drop_second_request: true,
        ..Opts::default()
    })
    .await;
    let client = client();
    fetch(&client, &server.url("/")).await;
    fetch(&client, &server.url("/")).await;
    assert_eq!(
        server.counts.opened.load(SeqCst),
        2,
        "retried on a new connection"
    );
    assert_eq!(server.counts.requests.load(SeqCst), 3);

    let post = Request::post(server.url("/orders"))
        .body(Body::from("order-1"))
        .unwrap();
    let e = client.request(post).await.unwrap_err();
    let Error::NotRetried { method, why, .. } = &e else {
        panic!("not reported as not retried: {e}")
    };
    assert_eq!(
        (method, *why),
        (&Method::POST, "its method is not idempotent")
    );
    assert!(e.to_string().contains("not retried"), "{e}");
    assert_eq!(
        server.counts.bodies.lock().len(),
        1,
        "the POST reached the server once"
    );

    // Marked safe (or with an Idempotency-Key), a POST is sent again.
    let mut post = Request::post(server.url("/orders"))
        .body(Body::from("order-2"))
        .unwrap();
    post.extensions_mut().insert(RetrySafe);
    client
        .request(post)
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    // Streamed bodies are never replayed.
    fetch(&client, &server.url("/")).await;
    let streamed = Body::from_stream(http_body_util::Full::new(bytes::Bytes::from("s")));
    let put = Request::put(server.url("/x")).body(streamed).unwrap();
    let e = client.request(put).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotRetried {
                why: "its body is streamed",
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_never_open_more_than_the_cap() {
    let server = Server::start(Opts::default()).await;
    let client = Client::builder()
        .max_connections_per_origin(8)
        .build()
        .unwrap();
    let url = server.url("/");
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let r = client.get(&url).await.unwrap();
                r.into_body().bytes().await.unwrap().len()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 1024);
    }
    assert!(server.counts.max_open.load(SeqCst) <= 8);
    assert!(server.counts.opened.load(SeqCst) <= 8);
    let pool = client.pool(&url).unwrap();
    assert_eq!(pool.in_use(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_past_the_cap_are_evicted_and_their_connections_closed() {
    let mut servers = Vec::new();
    for _ in 0..12 {
        servers.push(Server::start(Opts::default()).await);
    }
    let client = Client::builder().max_origins(4).build().unwrap();
    for s in &servers {
        fetch(&client, &s.url("/")).await;
        assert!(client.origins() <= 4);
    }
    assert_eq!(client.origins(), 4);
    // The first eight origins' connections are closed; the last four kept.
    let t0 = Instant::now();
    while servers[..8].iter().any(|s| s.counts.open.load(SeqCst) > 0) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "evicted connections stay open"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for s in &servers[8..] {
        assert_eq!(s.counts.open.load(SeqCst), 1);
    }
}

#[tokio::test]
async fn bad_input_is_a_clear_error() {
    let client = client();
    let e = client.get("/relative").await.unwrap_err();
    assert!(matches!(e, Error::NotAbsolute(_)), "{e}");
    let e = client.get("ftp://127.0.0.1/").await.unwrap_err();
    assert!(matches!(e, Error::UnsupportedScheme(_)), "{e}");
    let e = client.get("not a uri").await.unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    let e = Client::builder()
        .max_connections_per_origin(0)
        .build()
        .unwrap_err();
    assert!(
        matches!(e, BuildError::Zero("max_connections_per_origin")),
        "{e}"
    );
    let e = Client::builder().max_origins(0).build().unwrap_err();
    assert!(matches!(e, BuildError::Zero("max_origins")), "{e}");
    #[cfg(not(feature = "tls"))]
    {
        // https without the feature fails at once, not at the timeout.
        let t0 = Instant::now();
        let e = client.get("https://127.0.0.1:1/").await.unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(5));
        let Error::Pool { source, .. } = &e else {
            panic!("{e}")
        };
        let cenote::resources::GetError::Create(cause) = source else {
            panic!("{e}")
        };
        assert!(matches!(**cause, cenote_http::ConnectError::TlsOff), "{e}");
    }
}

#[tokio::test]
async fn a_refused_origin_times_out_with_the_cause() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::builder()
        .acquire_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let e = client
        .get(&format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(350), "took {took:?}");
    let Error::Pool { source, .. } = &e else {
        panic!("{e}")
    };
    let cause = std::error::Error::source(source)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(cause.contains("refused"), "{e}: {cause}");
}

#[tokio::test]
async fn a_request_dropped_midway_costs_its_connection() {
    let server = Server::start(Opts::default()).await;
    let client = client();
    let cut =
        tokio::time::timeout(Duration::from_millis(50), client.get(&server.url("/slow"))).await;
    assert!(cut.is_err());
    fetch(&client, &server.url("/")).await;
    assert_eq!(
        server.counts.opened.load(SeqCst),
        2,
        "the cut-off connection was lent again"
    );
    // The request timeout does the same.
    let client = Client::builder()
        .request_timeout(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    let e = client.get(&server.url("/slow")).await.unwrap_err();
    assert!(matches!(e, Error::TimedOut(_)), "{e}");
}

#[test]
fn plain_threads_use_the_clients_own_runtime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::start(Opts::default()));
    let client = client();
    let url = server.url("/");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let r = client.get_blocking(&url).unwrap();
                    assert_eq!(r.body().len(), 1024);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(server.counts.opened.load(SeqCst) <= 4);
    // On a runtime's thread a blocking call is refused, not a deadlock.
    let e = rt
        .block_on(async { client.get_blocking(&url) })
        .unwrap_err();
    assert!(matches!(e, Error::BlockingInRuntime), "{e}");
}

/// With the `tls` feature, `https` to a server that speaks plain HTTP fails
/// the handshake at once (a permanent error), not at the acquire timeout.
#[cfg(feature = "tls")]
#[tokio::test]
async fn https_to_a_plain_server_fails_the_handshake_at_once() {
    let server = Server::start(Opts::default()).await;
    let client = client();
    let t0 = Instant::now();
    let e = client
        .get(&format!("https://{}/", server.addr))
        .await
        .unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "retried until the timeout"
    );
    let Error::Pool { source, .. } = &e else {
        panic!("{e}")
    };
    let cenote::resources::GetError::Create(cause) = source else {
        panic!("{e}")
    };
    assert!(
        matches!(**cause, cenote_http::ConnectError::Tls { .. }),
        "{e}"
    );
    assert!(cause.is_permanent(), "{e}");
}

/// A streamed request body that panics midway (user code run by the
/// connection's task): the request fails, its connection is destroyed, and
/// the client goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_panics_costs_its_connection_only() {
    struct Panicking(u8);
    impl http_body::Body for Panicking {
        type Data = bytes::Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>>
        {
            self.0 += 1;
            if self.0 > 2 {
                panic!("a request body panicked on purpose");
            }
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from(
                "chunk",
            )))))
        }
    }
    let server = Server::start(Opts::default()).await;
    let client = client();
    let req = Request::post(server.url("/upload"))
        .body(Body::from_stream(Panicking(0)))
        .unwrap();
    let e = within(client.request(req)).await.unwrap_err();
    assert!(
        matches!(e, Error::Request { .. } | Error::NotRetried { .. }),
        "{e}"
    );
    fetch(&client, &server.url("/")).await;
    let pool = client.pool(&server.url("")).unwrap();
    assert_eq!((pool.size(), pool.in_use()), (1, 0));
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("hung")
}
