//! What making or checking a Redis connection fails with.

use std::time::Duration;

/// Why the pool could not make, check or reset a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection URL is not valid, or names a transport this crate
    /// does not speak (`rediss://`).
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    /// The TCP connection failed or timed out.
    #[error("connecting to Redis at {addr} failed: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The server answered with an error, or the socket failed, during the
    /// handshake (`AUTH`, `SELECT`, `CLIENT SETNAME`), the check or the
    /// reset.
    #[error("Redis: {0}")]
    Redis(#[source] redis::RedisError),
    /// `PING` was answered with something other than `PONG`.
    #[error("PING answered {0:?}")]
    BadPong(redis::Value),
    /// No answer in time.
    #[error("Redis did not answer {what} within {after:?}")]
    TimedOut { what: &'static str, after: Duration },
}

impl Error {
    /// Whether retrying cannot help: the password or the user is wrong, the
    /// user lacks a permission, or the database number does not exist.
    pub fn is_permanent(&self) -> bool {
        let Error::Redis(e) = self else {
            return matches!(self, Error::Config(_));
        };
        if e.kind() == redis::ErrorKind::AuthenticationFailed {
            return true;
        }
        let code = e.code().unwrap_or_default();
        matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
            || e.detail()
                .is_some_and(|d| d.contains("DB index is out of range"))
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::Redis(e)
    }
}
