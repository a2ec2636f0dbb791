//! Certificates issued and renewed over ACME (RFC 8555) for tenants' hostnames, so a tenant's
//! custom domain gets HTTPS without handling certificates.
//!
//! A tenant asks for one per exact hostname it owns (`api/acme.rs`); the row in the store
//! (`tenancy/src/store/acme.rs`) is the order's state. Every node runs a [`worker`]: it takes
//! the due orders whose lease is free (one node orders a name, however many run), orders at the
//! CA ([`order`], through the fleet's one account, [`client`]), publishes each challenge's
//! answer in the store so that whichever node the CA reaches answers it ([`challenges`]: HTTP-01
//! by the proxy before routing, TLS-ALPN-01 by the TLS listener's certificate resolver), and stores the chain with its key sealed by the key-encryption key.
//! That write is a config change: every node serves the certificate on its next apply, after
//! the tenant's uploads (which win).

pub mod challenges;
mod client;
mod order;
mod tls_alpn;
pub mod worker;

use std::path::PathBuf;

use serde::Deserialize;

/// The operator's ACME settings (`[acme]` in the bootstrap file): the same on every node.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeSettings {
    /// The CA's directory, e.g. Let's Encrypt's staging
    /// `https://acme-staging-v02.api.letsencrypt.org/directory` while trying it out, then
    /// production `https://acme-v02.api.letsencrypt.org/directory`. Unset: no ACME.
    pub directory_url: Option<String>,
    /// PEM file of the CA certificates the directory's HTTPS is checked against (a private CA,
    /// such as pebble in tests); unset: the system's bundle.
    pub ca_bundle: Option<PathBuf>,
    /// The challenge offered to the CA: `http-01` (the plain listener must be reachable on
    /// port 80) or `tls-alpn-01` (the TLS listener on port 443; needs `tls_listen`).
    pub challenge: ChallengeKind,
    /// The account's contacts (`mailto:ops@example.com`), where the CA sends expiry notices.
    pub contact: Vec<String>,
    /// The operator's default: every exact hostname of every tenant gets a certificate
    /// without asking (a tenant opts a name out by uploading its own certificate for it).
    pub all_hostnames: bool,
    /// Whether this node places orders; `false`: it only answers the CA's challenges for the
    /// orders other nodes place (e.g. nodes without a route to the CA).
    pub place_orders: bool,
    /// Orders the whole fleet places per hour (first certificates, renewals and retries):
    /// below the CA's own limit (Let's Encrypt: 300 new orders per 3 hours per account).
    pub orders_per_hour: u32,
    /// How often each node looks for due orders.
    pub check_interval_ms: u64,
    /// How often each node reads the HTTP-01 answers other nodes published; an order waits
    /// twice this before telling the CA to validate, so every node can answer.
    pub challenge_refresh_ms: u64,
    /// Orders one node runs at once.
    pub max_concurrent_orders: usize,
    /// The wait after a first failure, doubled per failure in a row up to `retry_max_seconds`
    /// (with jitter).
    pub retry_min_seconds: u64,
    pub retry_max_seconds: u64,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            directory_url: None,
            ca_bundle: None,
            challenge: ChallengeKind::Http01,
            contact: Vec::new(),
            place_orders: true,
            all_hostnames: false,
            orders_per_hour: 100,
            check_interval_ms: 5_000,
            challenge_refresh_ms: 1_000,
            max_concurrent_orders: 4,
            retry_min_seconds: 60,
            retry_max_seconds: 6 * 3600,
        }
    }
}

/// Which challenge an order answers (RFC 8555 §8.3, RFC 8737).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ChallengeKind {
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl ChallengeKind {
    /// As the store and the operator name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => challenges::HTTP_01,
            ChallengeKind::TlsAlpn01 => challenges::TLS_ALPN_01,
        }
    }
}
