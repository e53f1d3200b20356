//! A local hyper HTTP/1.1 server for the tests, with the faults they
//! need: idle connections closed after a set time (the keep-alive race),
//! `Connection: close`, a request dropped unanswered, slow answers; it
//! counts the connections it saw opened and those open now.
#![allow(dead_code)] // each test file uses its own share

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;

/// What the server does.
#[derive(Clone, Default)]
pub struct Opts {
    /// Closes a connection idle this long after its last response.
    pub idle_close: Option<Duration>,
    /// Reads the second request on each connection and closes it
    /// unanswered.
    pub drop_second_request: bool,
}

/// Counts shared with the test.
#[derive(Default)]
pub struct Counts {
    pub opened: AtomicUsize,
    pub open: AtomicUsize,
    pub max_open: AtomicUsize,
    pub requests: AtomicUsize,
    /// Request bodies seen (POSTs), in order.
    pub bodies: Mutex<Vec<Bytes>>,
}

pub struct Server {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(opts: Opts) -> Server {
        Server::start_on(0, opts).await
    }

    /// On `port` (0: any free one).
    pub async fn start_on(port: u16, opts: Opts) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                let opened = c.opened.fetch_add(1, SeqCst);
                let now = c.open.fetch_add(1, SeqCst) + 1;
                c.max_open.fetch_max(now, SeqCst);
                let _ = opened;
                conns.spawn(serve(stream, opts.clone(), c.clone()));
            }
        });
        Server { addr, counts, task }
    }

    /// `http://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting and closes every connection.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Open-connection count kept right however the connection ends.
struct Open(Arc<Counts>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, SeqCst);
    }
}

async fn serve(stream: tokio::net::TcpStream, opts: Opts, counts: Arc<Counts>) {
    let _open = Open(counts.clone());
    let last = Arc::new(Mutex::new(Instant::now()));
    let seen = Arc::new(AtomicUsize::new(0));
    let (l, s, c) = (last.clone(), seen.clone(), counts.clone());
    let drop_second = opts.drop_second_request;
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (l, s, c) = (l.clone(), s.clone(), c.clone());
        async move {
            let n = s.fetch_add(1, SeqCst);
            c.requests.fetch_add(1, SeqCst);
            let path = req.uri().path().to_owned();
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            if let Ok(b) = &body {
                if !b.is_empty() {
                    c.bodies.lock().push(b.clone());
                }
            }
            if drop_second && n == 1 {
                // Unanswered: the connection closes under it.
                return Err("dropped on purpose");
            }
            let resp = answer(&path).await;
            *l.lock() = Instant::now();
            Ok::<_, &'static str>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let Some(idle) = opts.idle_close else {
        let _ = conn.await;
        return;
    };
    loop {
        let due = *last.lock() + idle;
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep_until(due.into()) => {
                if last.lock().elapsed() >= idle {
                    // Idle: hyper closes it now (keep-alive off).
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                    return;
                }
            }
        }
    }
}

/// `/` → 1 KiB; `/big` → 64 KiB; `/close` → `Connection: close`;
/// `/slow` → after 300 ms; `/empty` → no body.
async fn answer(path: &str) -> Response<Full<Bytes>> {
    let (size, close) = match path {
        "/big" => (64 * 1024, false),
        "/close" => (1024, true),
        "/empty" => (0, false),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            (1024, false)
        }
        _ => (1024, false),
    };
    let mut resp = Response::new(Full::new(Bytes::from(vec![b'x'; size])));
    if close {
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, "close".parse().unwrap());
    }
    resp
}

/// Never-erroring service type for hyper's bound.
pub type NoError = Infallible;

/// `GET url` through `client`, the whole body read.
pub async fn fetch(client: &cenote_http::Client, url: &str) -> Bytes {
    let r = client.get(url).await.unwrap();
    r.into_body().bytes().await.unwrap()
}
