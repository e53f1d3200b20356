//! TLS with native-tls (feature `tls`, off by default): OpenSSL on Linux,
//! the platform's own TLS on macOS and Windows.
//!
//! The connection string's `sslmode` says whether TLS is used: `require`
//! fails a connect to a server without TLS; `prefer` (tokio-postgres's
//! default) falls back to plain text; `disable` never starts it. The
//! connector says how the server's certificate is verified.

use tokio_postgres::NoTls;

pub use native_tls;
pub use postgres_native_tls::MakeTlsConnector;

use crate::error::Error;
use crate::Builder;

impl<T> Builder<T> {
    /// Encrypts connections with `connector`, built with
    /// [`native_tls::TlsConnector::builder`]: extra root certificates, a
    /// client identity, or no verification at all
    /// (`danger_accept_invalid_certs`, what libpq's `sslmode=require`
    /// does).
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn native_tls(self, connector: native_tls::TlsConnector) -> Builder<MakeTlsConnector> {
        self.tls(MakeTlsConnector::new(connector))
    }
}

impl Builder<NoTls> {
    /// Encrypts connections, verifying the server's certificate against
    /// the system's root certificates and its host name (libpq's
    /// `sslmode=verify-full`). Fails only if the system's TLS library
    /// cannot start.
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_system_roots(self) -> Result<Builder<MakeTlsConnector>, Error> {
        let connector = native_tls::TlsConnector::new().map_err(Error::Tls)?;
        Ok(self.native_tls(connector))
    }
}
