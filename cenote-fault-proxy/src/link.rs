//! One proxied connection: the client's socket, the upstream one, and the
//! two pumps between them, which apply the connection's toxics to each
//! chunk and end in a reset when told to.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::toxics::Toxics;

/// Shared by a link's two pumps and the proxy's registry.
pub(crate) struct Link {
    /// This connection's own toxics (`None`: the proxy's).
    pub(crate) own: Mutex<Option<Toxics>>,
    pub(crate) global: Arc<Mutex<Toxics>>,
    passed: AtomicU64,
    kill: watch::Sender<bool>,
}

impl Link {
    pub(crate) fn new(global: Arc<Mutex<Toxics>>) -> Link {
        Link {
            own: Mutex::new(None),
            global,
            passed: AtomicU64::new(0),
            kill: watch::channel(false).0,
        }
    }

    fn toxics(&self) -> Toxics {
        match &*self.own.lock() {
            Some(t) => t.clone(),
            None => self.global.lock().clone(),
        }
    }

    /// Ends the connection with a reset on both sides.
    pub(crate) fn reset(&self) {
        self.kill.send_replace(true);
    }

    /// Runs the link until either side closes or it is reset.
    pub(crate) async fn run(self: Arc<Self>, client: TcpStream, upstream: TcpStream) {
        let (client, upstream) = (Arc::new(client), Arc::new(upstream));
        let up = tokio::spawn(self.clone().pump(client.clone(), upstream.clone()));
        let down = tokio::spawn(self.clone().pump(upstream.clone(), client.clone()));
        let _ = tokio::join!(up, down);
        if *self.kill.borrow() {
            // Closing with a zero linger sends RST instead of FIN.
            let _ = client.set_zero_linger();
            let _ = upstream.set_zero_linger();
        }
    }

    /// Passes bytes from `from` to `to` until a close or a reset.
    async fn pump(self: Arc<Self>, from: Arc<TcpStream>, to: Arc<TcpStream>) {
        let mut killed = self.kill.subscribe();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = tokio::select! {
                r = read(&from, &mut buf) => match r {
                    Ok(n) => n,
                    Err(_) => return self.reset(),
                },
                _ = killed.wait_for(|k| *k) => return,
            };
            let t = self.toxics();
            if n == 0 {
                tokio::time::sleep(t.slow_close).await;
                let _ = socket2::SockRef::from(&*to).shutdown(std::net::Shutdown::Write);
                return;
            }
            if t.black_hole {
                continue;
            }
            let mut chunk = &buf[..n];
            let mut cut = false;
            if let Some(limit) = t.limit_data {
                let before = self.passed.fetch_add(n as u64, Relaxed);
                let room = limit.saturating_sub(before) as usize;
                if room < n {
                    chunk = &chunk[..room];
                    cut = true;
                }
            }
            tokio::time::sleep(t.latency).await;
            if let Some(bps) = t.bandwidth {
                tokio::time::sleep(Duration::from_secs_f64(chunk.len() as f64 / bps as f64)).await;
            }
            let wrote = tokio::select! {
                r = write_all(&to, chunk) => r,
                _ = killed.wait_for(|k| *k) => return,
            };
            if wrote.is_err() || cut {
                return self.reset();
            }
        }
    }
}

async fn read(s: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        s.readable().await?;
        match s.try_read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

async fn write_all(s: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
