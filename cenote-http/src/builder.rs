//! [`Builder`]: the client's limits per origin and its timeouts.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::client::{Client, Config};
use crate::conn::ConnectConfig;

/// What building a [`Client`] fails with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A limit of 0 (it would refuse every request).
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The client's own runtime (built outside any runtime) did not start.
    #[error("could not start the client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Builds a [`Client`].
///
/// Defaults: 32 connections per origin, as many kept idle, idle
/// connections closed after 4 s (under the 5 s keep-alive of Node.js and
/// Apache, so the client, not the server, closes an idle connection in the
/// common case), a 30 s acquire timeout, a 10 s connect timeout, no request
/// timeout, 256 origins.
#[must_use = "a Builder does nothing until build()"]
pub struct Builder {
    max_connections: usize,
    max_idle: Option<usize>,
    idle_timeout: Duration,
    acquire_timeout: Duration,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
    max_origins: usize,
    tcp_keepalive: Option<Duration>,
    runtime: Option<Handle>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("max_connections_per_origin", &self.max_connections)
            .field("max_idle_per_origin", &self.max_idle)
            .field("idle_timeout", &self.idle_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_origins", &self.max_origins)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            max_connections: 32,
            max_idle: None,
            idle_timeout: Duration::from_secs(4),
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
            max_origins: 256,
            tcp_keepalive: Some(Duration::from_secs(60)),
            runtime: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl Builder {
    /// The most connections open to one origin at once; requests past it
    /// wait, first come first served.
    pub fn max_connections_per_origin(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The most idle connections kept per origin (default: as many as
    /// `max_connections_per_origin`); one given back past it is closed.
    pub fn max_idle_per_origin(mut self, n: usize) -> Self {
        self.max_idle = Some(n);
        self
    }

    /// How long a connection may sit idle before it is closed. Keep it
    /// under the servers' keep-alive timeout.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// How long a request waits for a connection; the error carries the
    /// last connect error.
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }

    /// How long resolving, connecting and the handshakes may take.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long a request may take until its response head, waiting for
    /// a connection included (`None`, the default: no bound beyond the
    /// acquire timeout). The body is read under the caller's own bound.
    pub fn request_timeout(mut self, d: Option<Duration>) -> Self {
        self.request_timeout = d;
        self
    }

    /// The most origins with a pool; past it the least recently used
    /// idle origin is evicted.
    pub fn max_origins(mut self, n: usize) -> Self {
        self.max_origins = n;
        self
    }

    /// TCP keepalive's idle time (`None`: off).
    pub fn tcp_keepalive(mut self, d: Option<Duration>) -> Self {
        self.tcp_keepalive = d;
        self
    }

    /// The runtime that drives connections (default: the one `build` is
    /// called in, else a runtime of the client's own with one thread).
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// The TLS configuration for `https` origins (feature `tls`; default:
    /// the webpki roots, HTTP/1.1 by ALPN).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// The client.
    pub fn build(self) -> Result<Client, BuildError> {
        for (n, what) in [
            (self.max_connections, "max_connections_per_origin"),
            (self.max_idle.unwrap_or(1), "max_idle_per_origin"),
            (self.max_origins, "max_origins"),
        ] {
            if n == 0 {
                return Err(BuildError::Zero(what));
            }
        }
        let connect = Arc::new(ConnectConfig {
            tcp_keepalive: self.tcp_keepalive,
            #[cfg(feature = "tls")]
            tls: Some(tokio_rustls::TlsConnector::from(
                self.tls.unwrap_or_else(crate::tls::default_config),
            )),
        });
        let cfg = Config {
            max_connections: self.max_connections,
            max_idle: self.max_idle.unwrap_or(self.max_connections),
            idle_timeout: self.idle_timeout,
            acquire_timeout: self.acquire_timeout,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
        };
        Client::start(cfg, connect, self.max_origins, self.runtime)
    }
}
