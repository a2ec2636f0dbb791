//! Certificate selection by SNI: the handshake's server name is looked up in the live routing
//! table, and only the tenant owning that name is asked for a certificate. Another tenant's
//! certificate is never a candidate; a name nobody owns, or whose owner has no certificate for
//! it, gets the operator's default certificate if one is configured, else no handshake.
//!
//! A ClientHello offering only ALPN `acme-tls/1` is an ACME CA validating a TLS-ALPN-01
//! challenge (RFC 8737): it gets the challenge certificate of an order waiting for that name,
//! else no handshake; never a served certificate (and `terminate.rs` never routes it).

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use wharf_metrics::{Metrics, UNKNOWN_TENANT};

use super::seal::{self, KeySealer};
use super::validate::{self, covers};
use wharf_tenancy::TlsCertificate;

/// A tenant's certificate, ready to serve.
pub struct ServedCert {
    pub name: String,
    /// The leaf's DNS names, lowercased.
    pub names: Vec<String>,
    /// The tenant's hostnames it serves (for the expiry gauge).
    pub hostnames: Vec<String>,
    pub key: Arc<CertifiedKey>,
    /// The same certificate and key as Pingora presents them to an upstream (mTLS).
    pub client: Arc<pingora_core::utils::tls::CertKey>,
    pub not_after_ms: i64,
    /// What it was built from: a reload reuses it while these are unchanged.
    pub fingerprint: String,
    pub updated_at_ms: i64,
}

impl ServedCert {
    /// The previous table's certificate if unchanged, else the stored one opened and parsed. A
    /// certificate that no longer opens (another operator key) is logged and not served.
    pub fn keep_or_load(
        old: Option<&[Arc<ServedCert>]>,
        tenant: &str,
        c: &TlsCertificate,
        sealer: &KeySealer,
    ) -> Option<Arc<ServedCert>> {
        if let Some(same) = old.and_then(|certs| {
            certs.iter().find(|s| {
                s.name == c.name
                    && s.fingerprint == c.fingerprint
                    && s.updated_at_ms == c.updated_at_ms
            })
        }) {
            return Some(same.clone());
        }
        let loaded = sealer
            .open(&seal::context(tenant, &c.name), &c.key_sealed)
            .map_err(|e| e.to_string())
            .and_then(|key| String::from_utf8(key).map_err(|e| e.to_string()))
            .and_then(|key_pem| {
                let (key, names) =
                    validate::load(&c.chain_pem, &key_pem).map_err(|e| e.to_string())?;
                let client = validate::client_cert_key(&c.chain_pem, &key_pem)?;
                Ok((key, names, client))
            });
        match loaded {
            Ok((key, names, client)) => Some(Arc::new(ServedCert {
                name: c.name.clone(),
                names,
                hostnames: c.hostnames.clone(),
                key,
                client,
                not_after_ms: c.not_after_ms,
                fingerprint: c.fingerprint.clone(),
                updated_at_ms: c.updated_at_ms,
            })),
            Err(e) => {
                tracing::error!(tenant, certificate = %c.name, "certificate not served: {e}");
                None
            }
        }
    }
}

/// The tenant's certificate for `sni`: an uploaded one first (exact name, else a wildcard),
/// else one issued over ACME: a tenant that uploads its own for a name means it to be served.
pub fn pick<'a>(certs: &'a [Arc<ServedCert>], sni: &str) -> Option<&'a Arc<ServedCert>> {
    let (issued, uploaded): (Vec<_>, Vec<_>) = certs
        .iter()
        .partition(|c| c.name.starts_with(wharf_tenancy::store::ISSUED_PREFIX));
    let exact = |set: &[&'a Arc<ServedCert>]| {
        set.iter()
            .find(|c| c.names.iter().any(|n| n == sni))
            .copied()
    };
    let wildcard = |set: &[&'a Arc<ServedCert>]| {
        set.iter()
            .find(|c| c.names.iter().any(|n| covers(n, sni)))
            .copied()
    };
    exact(&uploaded)
        .or_else(|| wildcard(&uploaded))
        .or_else(|| exact(&issued))
}

/// What the resolver asks of the routing table, and nothing more (the table lives in
/// `control/`, which builds on this module).
pub trait CertificateLookup: Send + Sync {
    /// The tenant owning server name `sni` (its id), and its certificate for that name if it
    /// has one; `None`: no tenant owns the name.
    fn lookup(&self, sni: &str) -> Option<(Arc<str>, Option<Arc<CertifiedKey>>)>;
}

/// The TLS-ALPN-01 answers of the orders waiting (kept by `acme/`, which builds on this module).
pub trait ChallengeCerts: Send + Sync {
    /// The challenge certificate for server name `sni` if an order waits on it.
    fn tls_alpn_certificate(&self, sni: &str) -> Option<Arc<CertifiedKey>>;
}

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Whether the hello is a TLS-ALPN-01 validation: it offers `acme-tls/1` and no HTTP protocol
/// (so `acme-tls/1` is what the listener will negotiate; a hello offering HTTP too negotiates
/// HTTP, the listener preferring it, and is served as any other).
fn acme_validation(hello: &ClientHello<'_>) -> bool {
    let Some(offered) = hello.alpn() else {
        return false;
    };
    let mut acme = false;
    for p in offered {
        match p {
            ACME_TLS_ALPN => acme = true,
            b"h2" | b"http/1.1" | b"http/1.0" => return false,
            _ => {}
        }
    }
    acme
}

pub struct SniResolver {
    pub certs: Arc<dyn CertificateLookup>,
    pub challenges: Arc<dyn ChallengeCerts>,
    pub default: Option<Arc<CertifiedKey>>,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver")
            .field("default", &self.default.is_some())
            .finish_non_exhaustive()
    }
}

impl SniResolver {
    fn count(&self, tenant: Option<&str>, outcome: &str) {
        let label = tenant.map_or_else(|| UNKNOWN_TENANT.into(), |t| self.metrics.tenant(t));
        self.metrics
            .tls_handshakes_total
            .with_label_values(&[&*label, outcome])
            .inc();
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        if acme_validation(&hello) {
            let cert = sni
                .as_deref()
                .and_then(|n| self.challenges.tls_alpn_certificate(n));
            let tenant = sni
                .as_deref()
                .and_then(|n| self.certs.lookup(n))
                .map(|t| t.0);
            let outcome = if cert.is_some() {
                "acme_challenge"
            } else {
                "refused"
            };
            self.count(tenant.as_deref(), outcome);
            return cert;
        }
        let (tenant, own) = match sni.as_deref().and_then(|n| self.certs.lookup(n)) {
            Some((t, own)) => (Some(t), own),
            None => (None, None),
        };
        if own.is_some() {
            self.count(tenant.as_deref(), "tenant_certificate");
            return own;
        }
        match &self.default {
            Some(d) => {
                self.count(tenant.as_deref(), "default_certificate");
                Some(d.clone())
            }
            None => {
                self.count(tenant.as_deref(), "refused");
                None
            }
        }
    }
}

/// The server name a TLS connection's handshake asked for, kept with the connection so each
/// request on it can be checked against its Host.
pub struct Sni(pub String);

/// Records the handshake's SNI on the connection.
pub struct SniCapture;

#[async_trait]
impl TlsAccept for SniCapture {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let name = tls.server_name()?.to_ascii_lowercase();
        Some(Arc::new(Sni(name)))
    }
}
