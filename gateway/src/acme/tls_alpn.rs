//! The TLS-ALPN-01 challenge certificate (RFC 8737 §3): self-signed, for the one name being
//! validated, carrying the critical acmeIdentifier extension with the SHA-256 of the key
//! authorization. It proves control of the name to the CA only; no client trusts it.

use std::sync::Arc;

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub(super) enum ChallengeCertError {
    #[error("{0}")]
    Build(#[from] rcgen::Error),
    #[error("signing key: {0}")]
    Key(#[from] rustls::Error),
}

/// The certificate answering a TLS-ALPN-01 challenge for `host` with `key_authorization`.
pub(super) fn certificate(
    host: &str,
    key_authorization: &str,
) -> Result<Arc<CertifiedKey>, ChallengeCertError> {
    let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
    let mut params = CertificateParams::new(vec![host.to_string()])?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest.as_ref())];
    // A fresh P-256 key per challenge: cheap, and never the key of a served certificate.
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn names_the_host_and_carries_the_digest() {
        let c = certificate("shop.example.test", "tok.thumb").unwrap();
        let (_, x509) = X509Certificate::from_der(&c.cert[0]).unwrap();
        let ext = x509
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        let digest = ring::digest::digest(&ring::digest::SHA256, b"tok.thumb");
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], digest.as_ref());
        let san = x509.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::DNSName("shop.example.test")]
        );
    }
}
