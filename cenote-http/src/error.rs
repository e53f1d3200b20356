//! What a request, or opening a connection, fails with.

use std::time::Duration;

use http::{Method, Uri};

/// What opening a connection to an origin failed with (the pool's
/// `Manager::Error`; a `get` that times out carries the last one).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The host name did not resolve.
    #[error("resolving {host} failed: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The host name resolved to no address.
    #[error("{0} resolved to no address")]
    NoAddress(String),
    /// Every address refused, or could not be reached.
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        /// The last address tried.
        addr: std::net::SocketAddr,
        /// The socket's error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (feature `tls`).
    #[error("the TLS handshake with {host} failed: {source}")]
    Tls {
        /// The host.
        host: String,
        /// rustls's error.
        #[source]
        source: std::io::Error,
    },
    /// An `https` origin without the `tls` feature.
    #[error("https needs cenote-http's `tls` feature")]
    TlsOff,
    /// The HTTP/1.1 handshake failed.
    #[error("the HTTP/1.1 handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// The connection is closed (found at checkout).
    #[error("the connection is closed")]
    Closed,
}

impl ConnectError {
    /// Whether retrying cannot help: `https` without TLS, or a certificate
    /// that failed verification.
    pub fn is_permanent(&self) -> bool {
        match self {
            ConnectError::TlsOff => true,
            ConnectError::Tls { source, .. } => source.kind() == std::io::ErrorKind::InvalidData,
            _ => false,
        }
    }
}

/// What a request failed with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URI has no scheme or host.
    #[error("not an absolute URI: {0}")]
    NotAbsolute(Box<Uri>),
    /// A scheme other than `http` or `https`.
    #[error("unsupported scheme {0:?} (http or https)")]
    UnsupportedScheme(String),
    /// The URI or request could not be built.
    #[error("invalid request: {0}")]
    Invalid(#[from] http::Error),
    /// No connection within the acquire timeout (with the last connect
    /// error as its source), too many waiting, or the client closed.
    #[error("no connection to {origin}: {source}")]
    Pool {
        /// The origin.
        origin: String,
        /// The pool's error.
        #[source]
        source: cenote::resources::GetError<ConnectError>,
    },
    /// An origin's pool could not start (its maintenance thread).
    #[error("could not start a pool for {origin}: {source}")]
    Start {
        /// The origin.
        origin: String,
        /// The pool's error.
        #[source]
        source: cenote::resources::BuildError<ConnectError>,
    },
    /// The request failed on the connection (sent in part or whole, or
    /// its response cut off).
    #[error("{method} {uri} failed{}: {source}", retried_note(*.retried))]
    Request {
        /// The request's method.
        method: Method,
        /// The request's URI.
        uri: Box<Uri>,
        /// Whether it had been sent once already, on a stale keep-alive
        /// connection.
        retried: bool,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// A reused keep-alive connection was closed by the server as the
    /// request went out, and the request was not retried: its method is
    /// not idempotent (mark it retry-safe with [`RetrySafe`](crate::RetrySafe)
    /// or an `Idempotency-Key` header) or its body cannot be replayed.
    #[error("{method} {uri}: the server closed the reused connection before answering; not retried ({why})")]
    NotRetried {
        /// The request's method.
        method: Method,
        /// The request's URI.
        uri: Box<Uri>,
        /// Why it was not retried.
        why: &'static str,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// No response head within the request timeout.
    #[error("no response within {0:?}")]
    TimedOut(Duration),
    /// Reading the response body failed (the connection is destroyed).
    #[error("reading the response body failed: {0}")]
    Body(#[source] hyper::Error),
    /// A blocking call made on a thread that runs an async runtime
    /// (it would stall the runtime): use the async method.
    #[error("a blocking request on a runtime thread: use the async method")]
    BlockingInRuntime,
}

fn retried_note(retried: bool) -> &'static str {
    if retried {
        " (after one retry)"
    } else {
        ""
    }
}
