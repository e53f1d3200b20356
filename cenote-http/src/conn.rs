//! One origin's connections: [`Connector`] (the pool's manager: resolve,
//! TCP, TLS, the HTTP/1.1 handshake, the connection's driver task),
//! [`Conn`] (a connection and what the pool must know of it), and
//! [`Lent`] (a connection lent to one request).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cenote::resources::{Manager, Pooled};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::body::Body;
use crate::error::ConnectError;
use crate::metrics::OriginMetrics;
use crate::origin::Origin;

/// How connections are opened (shared by every origin of a client).
pub(crate) struct ConnectConfig {
    /// TCP keepalive idle time (`None`: off).
    pub(crate) tcp_keepalive: Option<Duration>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tokio_rustls::TlsConnector>,
}

/// An open HTTP/1.1 connection.
pub struct Conn {
    pub(crate) sender: SendRequest<Body>,
    driver: JoinHandle<()>,
    /// Whether it may be lent again: false while a request is on it, true
    /// once a response ended cleanly on a connection the server keeps.
    pub(crate) reusable: bool,
    /// Whether the last response let the connection live (no
    /// `Connection: close`).
    pub(crate) keep_alive: bool,
    /// Requests sent on it.
    pub(crate) uses: u64,
    /// When it was last given back (`None`: never lent).
    returned: Option<Instant>,
    opened: Instant,
    metrics: Arc<OriginMetrics>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Closes the socket at once, a request in flight or not.
        self.driver.abort();
        self.metrics.closed(self.opened.elapsed());
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("uses", &self.uses)
            .field("reusable", &self.reusable)
            .field("closed", &self.sender.is_closed())
            .finish()
    }
}

/// Opens, checks and drops one origin's connections.
pub struct Connector {
    origin: Origin,
    cfg: Arc<ConnectConfig>,
    metrics: Arc<OriginMetrics>,
}

impl Connector {
    pub(crate) fn new(
        origin: Origin,
        cfg: Arc<ConnectConfig>,
        metrics: Arc<OriginMetrics>,
    ) -> Self {
        Connector {
            origin,
            cfg,
            metrics,
        }
    }

    /// TCP to the first address that answers.
    async fn tcp(&self) -> Result<TcpStream, ConnectError> {
        let host = self.origin.host();
        let addrs = tokio::net::lookup_host((host, self.origin.port()))
            .await
            .map_err(|source| ConnectError::Resolve {
                host: host.to_owned(),
                source,
            })?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    self.tune(&s);
                    return Ok(s);
                }
                Err(source) => last = Some(ConnectError::Connect { addr, source }),
            }
        }
        Err(last.unwrap_or_else(|| ConnectError::NoAddress(host.to_owned())))
    }

    /// No Nagle delay (requests are written whole); TCP keepalive.
    fn tune(&self, s: &TcpStream) {
        let _ = s.set_nodelay(true);
        if let Some(idle) = self.cfg.tcp_keepalive {
            let ka = socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval(idle);
            let _ = socket2::SockRef::from(s).set_tcp_keepalive(&ka);
        }
    }

    /// The HTTP/1.1 handshake over `io`, and its driver task.
    async fn start<S>(&self, io: S) -> Result<Conn, ConnectError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(ConnectError::Handshake)?;
        let driver = tokio::spawn(async move {
            // Its end (an error or a close) shows as `is_closed`.
            let _ = connection.await;
        });
        self.metrics.opened();
        Ok(Conn {
            sender,
            driver,
            reusable: true,
            keep_alive: true,
            uses: 0,
            returned: None,
            opened: Instant::now(),
            metrics: self.metrics.clone(),
        })
    }

    #[cfg(feature = "tls")]
    async fn open_tls(&self, tcp: TcpStream) -> Result<Conn, ConnectError> {
        let Some(tls) = &self.cfg.tls else {
            return Err(ConnectError::TlsOff);
        };
        let host = self.origin.host().to_owned();
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
            ConnectError::Tls {
                host: host.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            }
        })?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|source| ConnectError::Tls { host, source })?;
        self.start(stream).await
    }

    #[cfg(not(feature = "tls"))]
    async fn open_tls(&self, _tcp: TcpStream) -> Result<Conn, ConnectError> {
        Err(ConnectError::TlsOff)
    }
}

impl Manager for Connector {
    type Resource = Conn;
    type Error = ConnectError;

    async fn create(&self) -> Result<Conn, ConnectError> {
        if self.origin.is_https() && cfg!(not(feature = "tls")) {
            return Err(ConnectError::TlsOff);
        }
        let tcp = self.tcp().await?;
        if self.origin.is_https() {
            self.open_tls(tcp).await
        } else {
            self.start(tcp).await
        }
    }

    /// HTTP has no probe: a connection is fit if its socket is open.
    async fn check(&self, conn: &mut Conn) -> Result<(), ConnectError> {
        if conn.sender.is_closed() {
            return Err(ConnectError::Closed);
        }
        Ok(())
    }

    /// Not lent again: a request left on it, a response not read to its
    /// end, `Connection: close`, or a closed socket.
    fn is_broken(&self, conn: &mut Conn) -> bool {
        !conn.reusable || conn.sender.is_closed()
    }

    fn is_permanent(&self, e: &ConnectError) -> bool {
        e.is_permanent()
    }
}

/// A connection lent to one request, from the `get` until its response
/// body ends (or the request fails): marked unfit to reuse as it goes
/// out, fit again only when a response ended cleanly.
pub(crate) struct Lent {
    conn: Pooled<Connector>,
    metrics: Arc<OriginMetrics>,
    max_idle: usize,
    /// How long it sat idle before this request (zero if new).
    idle_for: Duration,
}

impl Lent {
    pub(crate) fn new(
        mut conn: Pooled<Connector>,
        metrics: Arc<OriginMetrics>,
        max_idle: usize,
        queued: Duration,
    ) -> Lent {
        metrics.lent(queued);
        conn.reusable = false;
        conn.uses += 1;
        let idle_for = conn.returned.map_or(Duration::ZERO, |t| t.elapsed());
        Lent {
            conn,
            metrics,
            max_idle,
            idle_for,
        }
    }

    /// How long it sat idle before this request.
    pub(crate) fn idle_for(&self) -> Duration {
        self.idle_for
    }

    /// Destroyed when given back, whatever its response did.
    pub(crate) fn discard(mut self) {
        self.conn.reusable = false;
    }

    /// Whether it served a request before this one.
    pub(crate) fn reused(&self) -> bool {
        self.conn.uses > 1
    }

    pub(crate) fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// The response ended: reusable if the server keeps the connection.
    pub(crate) fn reusable_after_end(&mut self) {
        self.conn.reusable = self.conn.keep_alive;
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let idle = self.metrics.returned();
        if idle > self.max_idle {
            self.conn.reusable = false;
        }
        self.conn.returned = Some(Instant::now());
    }
}
