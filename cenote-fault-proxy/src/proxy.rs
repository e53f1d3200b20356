//! [`Proxy`]: listens on a local port, forwards each connection to the
//! upstream server through a [`Link`], and keeps the links by number so
//! a test can fault one of them or all.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::link::Link;
use crate::toxics::Toxics;

/// A connection through the proxy, numbered from 0 in accept order.
pub type ConnId = u64;

/// A TCP proxy in front of one upstream server, with faults switched at
/// run time.
///
/// Runs on the tokio runtime it is started in. Dropping it stops the
/// listener and resets every connection.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    upstream: SocketAddr,
    global: Arc<Mutex<Toxics>>,
    links: Mutex<BTreeMap<ConnId, Arc<Link>>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("toxics", &*self.shared.global.lock())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy on a free local port in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        let listener = listen("127.0.0.1:0".parse().expect("an address"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            global: Arc::new(Mutex::new(Toxics::none())),
            links: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
        });
        let accept = tokio::spawn(shared.clone().accept(listener));
        Ok(Proxy {
            addr,
            shared,
            accept: Mutex::new(Some(accept)),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Faults for every connection, open and new, that has none of its own.
    pub fn set(&self, t: Toxics) {
        *self.shared.global.lock() = t;
    }

    /// Faults for one connection only (replacing the proxy's for it).
    pub fn set_for(&self, id: ConnId, t: Toxics) {
        if let Some(link) = self.shared.links.lock().get(&id) {
            *link.own.lock() = Some(t);
        }
    }

    /// Every connection back to the proxy's faults, and those to none.
    pub fn clear(&self) {
        self.set(Toxics::none());
        for link in self.shared.links.lock().values() {
            *link.own.lock() = None;
        }
    }

    /// The connections open now.
    pub fn connections(&self) -> Vec<ConnId> {
        self.shared.links.lock().keys().copied().collect()
    }

    /// Resets (RST) one connection.
    pub fn reset_peer(&self, id: ConnId) {
        if let Some(link) = self.shared.links.lock().get(&id) {
            link.reset();
        }
    }

    /// Resets (RST) every open connection.
    pub fn reset_all(&self) {
        for link in self.shared.links.lock().values() {
            link.reset();
        }
    }

    /// The server goes away: new connections are refused and open ones
    /// reset.
    pub fn down(&self) {
        if let Some(accept) = self.accept.lock().take() {
            accept.abort();
        }
        self.reset_all();
    }

    /// The server comes back on the same port.
    pub fn up(&self) -> io::Result<()> {
        let mut accept = self.accept.lock();
        if accept.is_none() {
            let listener = listen(self.addr)?;
            *accept = Some(tokio::spawn(self.shared.clone().accept(listener)));
        }
        Ok(())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

/// A listener that can bind the same port again right after the last one
/// closed.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Shared {
    async fn accept(self: Arc<Self>, listener: TcpListener) {
        while let Ok((client, _)) = listener.accept().await {
            let shared = self.clone();
            tokio::spawn(async move {
                // A refused upstream resets the client: the server is down.
                let Ok(upstream) = TcpStream::connect(shared.upstream).await else {
                    let _ = client.set_zero_linger();
                    return;
                };
                let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
                let id = shared.next.fetch_add(1, Relaxed);
                let link = Arc::new(Link::new(shared.global.clone()));
                shared.links.lock().insert(id, link.clone());
                link.run(client, upstream).await;
                shared.links.lock().remove(&id);
            });
        }
    }
}
