//! Checks a tenant's certificate upload before anything is stored: the chain parses and is in
//! order (each certificate signed by the next), the key is the leaf's, the leaf is valid now,
//! and it names at least one hostname the tenant owns. Errors say what to fix.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls_pemfile::Item;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use wharf_tenancy::HostPattern;

/// Why an upload is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertError {
    #[error("the chain holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    #[error("certificate {index} of the chain does not parse: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error("the key is not a PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    #[error("the key is of an unsupported type: {0}")]
    UnsupportedKey(String),
    #[error("the key does not belong to the first certificate of the chain")]
    KeyMismatch,
    #[error("the chain is out of order: certificate {next} did not issue certificate {index} (put the leaf first, then each issuer)")]
    ChainOrder { index: usize, next: usize },
    #[error("the certificate expired at {0} (Unix time)")]
    Expired(i64),
    #[error("the certificate is not valid before {0} (Unix time)")]
    NotYetValid(i64),
    #[error("the certificate names no DNS name (subjectAltName)")]
    NoNames,
    #[error(
        "the certificate names {names:?}, none of which is a hostname of this tenant ({owned:?})"
    )]
    NotOwned {
        names: Vec<String>,
        owned: Vec<String>,
    },
    #[error("the chain holds a private key: send only certificates as chain_pem and the key as key_pem (a key is stored sealed, never in clear)")]
    KeyInChain,
    #[error("the upload is too large ({0} bytes; at most {MAX_PEM_BYTES})")]
    TooLarge(usize),
}

/// A chain with a few intermediates fits easily; a bigger upload is not a certificate.
pub const MAX_PEM_BYTES: usize = 64 * 1024;

/// What validation learned.
pub struct Validated {
    pub key: Arc<CertifiedKey>,
    /// The tenant's hostnames the certificate serves.
    pub hostnames: Vec<String>,
    /// The leaf's DNS names, lowercased.
    pub names: Vec<String>,
    pub not_after_ms: i64,
    pub fingerprint: String,
}

/// Checks an upload (a stored certificate is only `load`ed, see there).
pub fn validate(
    chain_pem: &str,
    key_pem: &str,
    owned: &[HostPattern],
    now_ms: i64,
) -> Result<Validated, CertError> {
    let v = parse(chain_pem, key_pem)?;
    // A "fullchain + key" bundle: the chain is stored and returned as sent, so a key in it
    // would be kept in clear next to its sealed copy.
    let key_in_chain = rustls_pemfile::read_all(&mut chain_pem.as_bytes()).any(|item| {
        matches!(
            item,
            Ok(Item::Pkcs1Key(_) | Item::Pkcs8Key(_) | Item::Sec1Key(_))
        )
    });
    if key_in_chain || chain_pem.contains("PRIVATE KEY-----") {
        return Err(CertError::KeyInChain);
    }
    let now = now_ms / 1000;
    if v.not_after_ms / 1000 < now {
        return Err(CertError::Expired(v.not_after_ms / 1000));
    }
    if v.not_before > now {
        return Err(CertError::NotYetValid(v.not_before));
    }
    let hostnames: Vec<String> = owned
        .iter()
        .map(|p| p.to_string())
        .filter(|p| v.names.iter().any(|n| covers(n, p)))
        .collect();
    if hostnames.is_empty() {
        return Err(CertError::NotOwned {
            names: v.names,
            owned: owned.iter().map(|p| p.to_string()).collect(),
        });
    }
    Ok(Validated {
        key: v.key,
        hostnames,
        names: v.names,
        not_after_ms: v.not_after_ms,
        fingerprint: v.fingerprint,
    })
}

struct Parsed {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
    not_before: i64,
    not_after_ms: i64,
    fingerprint: String,
}

/// Parses a stored (already validated) certificate for serving; checks only that it still
/// parses and matches its key.
pub fn load(chain_pem: &str, key_pem: &str) -> Result<(Arc<CertifiedKey>, Vec<String>), CertError> {
    let p = parse(chain_pem, key_pem)?;
    Ok((p.key, p.names))
}

/// The chain and key as DER for Pingora's TLS connector (a client certificate for mTLS to an
/// upstream). Called on a pair `load` accepted.
pub fn client_cert_key(
    chain_pem: &str,
    key_pem: &str,
) -> Result<Arc<pingora_core::utils::tls::CertKey>, String> {
    let chain: Vec<Vec<u8>> = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .map(|c| c.map(|der| der.to_vec()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| e.to_string())?
        .ok_or("no private key")?;
    Ok(Arc::new(pingora_core::utils::tls::CertKey::new(
        chain,
        key.secret_der().to_vec(),
    )))
}

fn parse(chain_pem: &str, key_pem: &str) -> Result<Parsed, CertError> {
    let size = chain_pem.len() + key_pem.len();
    if size > MAX_PEM_BYTES {
        return Err(CertError::TooLarge(size));
    }
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .enumerate()
        .map(|(index, c)| {
            c.map_err(|e| CertError::BadCertificate {
                index: index + 1,
                reason: e.to_string(),
            })
        })
        .collect::<Result<_, _>>()?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .enumerate()
        .map(|(index, der)| {
            X509Certificate::from_der(der)
                .map(|(_, c)| c)
                .map_err(|e| CertError::BadCertificate {
                    index: index + 1,
                    reason: e.to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    for (i, pair) in parsed.windows(2).enumerate() {
        let issued_by_next = pair[0].issuer().as_raw() == pair[1].subject().as_raw()
            && pair[0].verify_signature(Some(pair[1].public_key())).is_ok();
        if !issued_by_next {
            return Err(CertError::ChainOrder {
                index: i + 1,
                next: i + 2,
            });
        }
    }
    let leaf = &parsed[0];
    let names = dns_names(leaf);
    if names.is_empty() {
        return Err(CertError::NoNames);
    }
    let not_before = leaf.validity().not_before.timestamp();
    let not_after_ms = leaf.validity().not_after.timestamp().saturating_mul(1000);
    let fingerprint = hex::encode(Sha256::digest(chain[0].as_ref()));

    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .ok()
        .flatten()
        .ok_or(CertError::NoKey)?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertError::UnsupportedKey(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|_| CertError::KeyMismatch)?;
    Ok(Parsed {
        key: Arc::new(certified),
        names,
        not_before,
        not_after_ms,
        fingerprint,
    })
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Whether certificate name `name` (a DNS name or `*.suffix`) serves `host` under TLS's rules:
/// exactly, or a wildcard for one label. A wildcard host pattern needs the same wildcard.
pub fn covers(name: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    if name == host {
        return true;
    }
    match (name.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, rest))) => label != "*" && !label.is_empty() && rest == suffix,
        _ => false,
    }
}

/// `chain_pem` without any private key block: what may be shown of a chain stored before such
/// bundles were refused.
pub fn without_keys(chain_pem: &str) -> String {
    let mut out = String::new();
    let mut in_key = false;
    for line in chain_pem.lines() {
        if line.starts_with("-----BEGIN") && line.contains("PRIVATE KEY") {
            in_key = true;
        }
        if !in_key {
            out.push_str(line);
            out.push('\n');
        }
        if line.starts_with("-----END") && line.contains("PRIVATE KEY") {
            in_key = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{covers, without_keys};

    #[test]
    fn keys_are_cut_from_a_shown_chain() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
                   -----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n\
                   -----BEGIN EC PRIVATE KEY-----\nSECRET\n-----END EC PRIVATE KEY-----\n";
        let shown = without_keys(pem);
        assert!(shown.contains("AAA") && !shown.contains("SECRET") && !shown.contains("KEY"));
    }

    #[test]
    fn tls_name_rules() {
        assert!(covers("api.acme.test", "api.acme.test"));
        assert!(covers("api.acme.test", "API.acme.test"));
        assert!(covers("*.acme.test", "api.acme.test"));
        assert!(covers("*.acme.test", "*.acme.test"));
        assert!(!covers("*.acme.test", "a.b.acme.test"), "one label only");
        assert!(!covers("*.acme.test", "acme.test"));
        assert!(!covers("api.acme.test", "*.acme.test"));
        assert!(!covers("*.other.test", "api.acme.test"));
    }
}
