//! The bench's HTTP/1.1 server: hyper, in a child process of its own
//! (`cenote-bench __http-server`) so that its CPU is not the clients'.
//! `GET /1k` and `/64k` answer 1 KiB and 64 KiB; `GET /__opened` answers
//! how many connections it has accepted. With `--idle-close-ms` it closes
//! a connection idle that long after its last response (the keep-alive
//! race).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A server child; killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
}

impl ServerProcess {
    /// Starts one and waits for its port.
    pub fn start(idle_close_ms: Option<u64>) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg("__http-server");
        if let Some(ms) = idle_close_ms {
            cmd.arg("--idle-close-ms").arg(ms.to_string());
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the HTTP server: {e}"))?;
        let mut line = String::new();
        let out = child.stdout.take().ok_or("no stdout")?;
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("the HTTP server said {line:?}"))?;
        Ok(ServerProcess { child, port })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's main (the `__http-server` command).
pub fn main(idle_close_ms: Option<u64>) -> std::process::ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(serve(idle_close_ms.map(Duration::from_millis)));
    std::process::ExitCode::SUCCESS
}

async fn serve(idle_close: Option<Duration>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let port = listener.local_addr().expect("bound").port();
    let mut out = std::io::stdout();
    writeln!(out, "port {port}").expect("stdout");
    out.flush().expect("stdout");
    let opened = Arc::new(AtomicU64::new(0));
    let bodies = Arc::new((
        Bytes::from(vec![b'x'; 1024]),
        Bytes::from(vec![b'x'; 64 * 1024]),
    ));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        opened.fetch_add(1, Relaxed);
        let (opened, bodies) = (opened.clone(), bodies.clone());
        tokio::spawn(connection(stream, opened, bodies, idle_close));
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    opened: Arc<AtomicU64>,
    bodies: Arc<(Bytes, Bytes)>,
    idle_close: Option<Duration>,
) {
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let l = last.clone();
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let body = match req.uri().path() {
            "/64k" => bodies.1.clone(),
            "/__opened" => Bytes::from(opened.load(Relaxed).to_string()),
            _ => bodies.0.clone(),
        };
        *l.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        async move { Ok::<_, std::convert::Infallible>(Response::new(Full::new(body))) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let Some(idle) = idle_close else {
        let _ = conn.await;
        return;
    };
    loop {
        let due = *last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            + idle;
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep_until(due.into()) => {
                if last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed() >= idle {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                    return;
                }
            }
        }
    }
}
