//! [`Origin`]: the key of a per-origin pool (scheme, host, port), read
//! from a request's absolute URI.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use http::Uri;

use crate::error::Error;

/// Where a request goes: its scheme, host and port. Each origin has a
/// pool of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    https: bool,
    host: Arc<str>,
    port: u16,
}

impl Origin {
    /// The origin of an absolute `http://` or `https://` URI.
    pub fn of(uri: &Uri) -> Result<Origin, Error> {
        OriginKey::of(uri).map(|k| k.to_origin())
    }

    /// The origin a map key stands for.
    pub(crate) fn of_key(key: &dyn AsKey) -> Origin {
        let (https, host, port) = key.key();
        Origin {
            https,
            host: Arc::from(host),
            port,
        }
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (80 or 443 when the URI names none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `Host` header's value: the port only when not the scheme's
    /// default.
    pub(crate) fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.to_string()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// An origin read from a URI without copying its host (unless it has
/// capitals): what finds the origin's pool on every request.
#[derive(Clone, Debug)]
pub(crate) struct OriginKey<'a> {
    https: bool,
    host: Cow<'a, str>,
    port: u16,
}

impl<'a> OriginKey<'a> {
    pub(crate) fn of(uri: &'a Uri) -> Result<OriginKey<'a>, Error> {
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => return Err(Error::UnsupportedScheme(other.to_owned())),
            None => return Err(Error::NotAbsolute(Box::new(uri.clone()))),
        };
        let host = uri
            .host()
            .ok_or_else(|| Error::NotAbsolute(Box::new(uri.clone())))?;
        // An IPv6 literal keeps no brackets for the connect.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        Ok(OriginKey {
            https,
            host,
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        })
    }

    pub(crate) fn to_origin(&self) -> Origin {
        Origin::of_key(self)
    }
}

/// What the map of origins hashes and compares, for [`Origin`] and
/// [`OriginKey`] alike (a lookup by key allocates nothing).
pub(crate) trait AsKey {
    fn key(&self) -> (bool, &str, u16);
}

impl AsKey for Origin {
    fn key(&self) -> (bool, &str, u16) {
        (self.https, &self.host, self.port)
    }
}

impl AsKey for OriginKey<'_> {
    fn key(&self) -> (bool, &str, u16) {
        (self.https, &self.host, self.port)
    }
}

impl<'a> Borrow<dyn AsKey + 'a> for Origin {
    fn borrow(&self) -> &(dyn AsKey + 'a) {
        self
    }
}

impl Hash for dyn AsKey + '_ {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.key().hash(h);
    }
}

impl PartialEq for dyn AsKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for dyn AsKey + '_ {}

impl Hash for Origin {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // The same as the key's, so a lookup by key finds it.
        self.key().hash(h);
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_uris() {
        let o = Origin::of(&"http://Example.com/a?b".parse().unwrap()).unwrap();
        assert_eq!(
            (o.host(), o.port(), o.is_https()),
            ("example.com", 80, false)
        );
        assert_eq!(o.host_header(), "example.com");
        let o = Origin::of(&"https://[::1]:8443/".parse().unwrap()).unwrap();
        assert_eq!((o.host(), o.port()), ("::1", 8443));
        assert_eq!(o.host_header(), "[::1]:8443");
        assert_eq!(o.to_string(), "https://[::1]:8443");
        assert!(matches!(
            Origin::of(&"/relative".parse().unwrap()),
            Err(Error::NotAbsolute(_))
        ));
        assert!(matches!(
            Origin::of(&"ftp://h/".parse().unwrap()),
            Err(Error::UnsupportedScheme(s)) if s == "ftp"
        ));
    }
}
