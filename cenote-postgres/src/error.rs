//! What making, checking or resetting a connection fails with, and which
//! server errors end a connection's life or a `get`.

use tokio_postgres::error::SqlState;

/// What a query, or making, checking or resetting a connection, failed
/// with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A borrower's query failed (the server's error, or the socket's).
    #[error("{}", describe(.0))]
    Query(#[source] tokio_postgres::Error),
    /// A query ran past the pool's query timeout (the connection is
    /// destroyed when given back, and the query cancelled on the server).
    #[error("the query did not finish within {0:?}")]
    QueryTimedOut(std::time::Duration),
    /// A statement with parameters, or a prepared one, was asked for under
    /// [`Statements::Unnamed`](crate::Statements::Unnamed): pass each
    /// parameter's type with `query_typed` or `execute_typed`.
    #[error("named statements are off (Statements::Unnamed): use query_typed or execute_typed")]
    NamedStatementsOff,
    /// The connection string or configuration is not valid.
    #[error("invalid PostgreSQL configuration: {}", describe(.0))]
    Config(#[source] tokio_postgres::Error),
    /// Connecting failed (refused, unreachable, timed out, or the server
    /// said no: an unknown database or role, a failed password).
    #[error("connecting to PostgreSQL failed: {}", describe(.0))]
    Connect(#[source] tokio_postgres::Error),
    /// The checkout probe failed.
    #[error("the connection failed its check: {}", describe(.0))]
    Check(#[source] tokio_postgres::Error),
    /// The reset before reuse failed.
    #[error("resetting the connection failed: {}", describe(.0))]
    Reset(#[source] tokio_postgres::Error),
    /// The server is read-only (a standby, or `default_transaction_read_only`)
    /// and the pool requires a primary.
    #[error("the server is read-only and the pool requires a primary")]
    ReadOnly,
    /// The connection's socket is closed.
    #[error("the connection is closed")]
    Closed,
    /// The system's TLS library could not start (feature `tls`).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[error("TLS could not start: {0}")]
    Tls(#[source] native_tls::Error),
}

impl Error {
    /// The server's SQLSTATE, if the server answered with an error.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            Error::Query(e)
            | Error::Config(e)
            | Error::Connect(e)
            | Error::Check(e)
            | Error::Reset(e) => e.code(),
            _ => None,
        }
    }

    /// The server's error, with its message, detail and hint.
    pub fn as_db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        match self {
            Error::Query(e)
            | Error::Config(e)
            | Error::Connect(e)
            | Error::Check(e)
            | Error::Reset(e) => e.as_db_error(),
            _ => None,
        }
    }

    /// Whether retrying cannot help: TLS was refused or the server's
    /// certificate failed verification, or the database or the role does not
    /// exist, or authentication failed (SQLSTATE class 28 or 3D000). The
    /// first `get` reports such an error at once, with the server's
    /// message, instead of retrying until its timeout.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Connect(e) => e.code().is_some_and(is_permanent_code) || is_tls_refusal(e),
            #[cfg(feature = "tls")]
            Error::Tls(_) => true,
            _ => false,
        }
    }
}

/// tokio-postgres's message with its cause: the server's own words where
/// it answered (its `Display` says only "db error" then), or the socket's
/// error.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        // tokio-postgres's message names the step; its source, the cause
        // ("Connection refused").
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// A TLS handshake that failed without an I/O error: the server has no
/// TLS under `sslmode=require`, or its certificate failed verification.
/// (tokio-postgres names its error kinds only in the message.)
fn is_tls_refusal(e: &tokio_postgres::Error) -> bool {
    if e.to_string() != "error performing TLS handshake" {
        return false;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return false;
        }
        cause = c.source();
    }
    true
}

fn is_permanent_code(code: &SqlState) -> bool {
    let c = code.code();
    c.starts_with("28") || c == SqlState::INVALID_CATALOG_NAME.code()
}

/// Whether an error seen on a lent connection means it must never be lent
/// again: a connection error (class 08), the server shutting down or the
/// session terminated (57P01, 57P02, 57P03), or a read-only transaction
/// (25006: the server is a standby, or turned read-only after a failover).
pub(crate) fn ends_connection(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    let Some(code) = e.code() else {
        // No SQLSTATE: an I/O error ends it; a conversion error (a bad
        // parameter, an unexpected column type) leaves it usable.
        return std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    };
    let c = code.code();
    c.starts_with("08") || c.starts_with("57P0") || c == SqlState::READ_ONLY_SQL_TRANSACTION.code()
}
