//! [`RedisServer`]: a private `redis-server` on a free port, for a test
//! that stops, restarts or reconfigures its server (never the shared one).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of the test's own (bound to 127.0.0.1; no persistence
/// unless its config asks), killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port; panics if `redis-server` is missing or
    /// does not answer within 5 s.
    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port())
    }

    /// Starts one on `port` (again, after [`stop`](Self::stop)).
    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::start_on_with(port, &[])
    }

    /// Starts one on a free port with `config` (`redis-server` options
    /// such as `["--appendonly", "yes"]`, which override the defaults).
    pub fn start_with(config: &[&str]) -> RedisServer {
        RedisServer::start_on_with(free_port(), config)
    }

    /// Starts one on `port` with `config` (again, after
    /// [`stop`](Self::stop), with the same `--dir` to read back its files).
    pub fn start_on_with(port: u16, config: &[&str]) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        RedisServer {
            port,
            child: Some(child),
        }
    }

    /// Kills the server (SIGKILL: what it holds only in memory is gone).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
