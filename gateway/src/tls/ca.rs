//! CA bundles a tenant gives for its upstreams, parsed for Pingora's TLS connector.

use pingora_core::utils::tls::WrappedX509;

/// The PEM bundle's certificates that parse as X.509 (others are left out).
pub fn parse_ca(pem: &str) -> Vec<WrappedX509> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .filter_map(Result::ok)
        .filter(|der| x509_parser::parse_x509_certificate(der).is_ok())
        .map(|der| WrappedX509::new(der.to_vec(), pingora_core::utils::tls::parse_x509))
        .collect()
}
