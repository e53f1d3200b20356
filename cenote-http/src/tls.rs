//! HTTPS with rustls (feature `tls`, off by default): the default
//! configuration verifies servers against the webpki roots (Mozilla's) and
//! offers only HTTP/1.1 by ALPN. `Builder::tls_config` takes another one
//! (private roots, client certificates).

use std::sync::Arc;

/// The default: webpki roots, ring, HTTP/1.1.
///
/// ring builds with a C compiler alone (aws-lc-rs, rustls's default, also
/// needs cmake); rustls marks its ring provider deprecated because it has
/// no post-quantum key exchange. A client that needs one passes a
/// configuration on aws-lc-rs to `Builder::tls_config`.
#[allow(deprecated)]
pub(crate) fn default_config() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
