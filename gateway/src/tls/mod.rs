//! HTTPS for tenants' own hostnames: certificates uploaded through the admin API, validated
//! ([`validate`]), their keys sealed at rest ([`seal`]), compiled into the routing table with
//! their tenant, and chosen per handshake by SNI ([`resolver`]), each connection handshaken by
//! [`terminate`] (Pingora's rustls stream; ALPN h2, http/1.1 and ACME's acme-tls/1). rustls
//! because it lets a resolver pick the certificate per connection from the live table, in
//! memory-safe code; TLS 1.2 and 1.3 only, rustls's AEAD-only cipher suites,
//! stateful session resumption (rustls's in-memory session cache).

pub mod ca;
pub mod resolver;
pub mod seal;
pub mod terminate;
pub mod upload;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::sign::CertifiedKey;

use seal::KeySealer;
use serde::Deserialize;

/// The HTTPS listener's operator settings; tenants' certificates live in the store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Served for names no tenant has a certificate for (PEM files); unset: such handshakes
    /// fail.
    pub default_certificate: Option<PathBuf>,
    pub default_key: Option<PathBuf>,
    /// Seals tenants' private keys in the store: 64 hex characters, the same on every node
    /// (env WHARF_TLS_KEY_ENCRYPTION_KEY wins). Unset: generated into `data_dir` (one node).
    pub key_encryption_key: Option<String>,
}

/// The operator's default certificate, for names no tenant has a certificate for.
pub fn default_certificate(cfg: &TlsConfig) -> anyhow::Result<Option<Arc<CertifiedKey>>> {
    let (Some(cert), Some(key)) = (&cfg.default_certificate, &cfg.default_key) else {
        return Ok(None);
    };
    let read = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let (key, _) = validate::load(&read(cert)?, &read(key)?)
        .map_err(|e| anyhow::anyhow!("default certificate {}: {e}", cert.display()))?;
    Ok(Some(key))
}

/// The key-encryption key: from the environment, the bootstrap file, or (a single node's
/// embedded default) generated once into the data dir. Fleet nodes must share one.
pub fn key_sealer(cfg: &TlsConfig, data_dir: &Path) -> anyhow::Result<KeySealer> {
    if let Ok(k) = std::env::var("WHARF_TLS_KEY_ENCRYPTION_KEY") {
        if !k.is_empty() {
            return KeySealer::from_hex(&k).context("WHARF_TLS_KEY_ENCRYPTION_KEY");
        }
    }
    if let Some(k) = &cfg.key_encryption_key {
        return KeySealer::from_hex(k).context("tls.key_encryption_key");
    }
    let path = data_dir.join("tls-key-encryption.key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        return KeySealer::from_hex(&k).with_context(|| format!("{}", path.display()));
    }
    let k = KeySealer::generate_hex()?;
    std::fs::create_dir_all(data_dir)?;
    write_private(&path, &k)?;
    tracing::warn!(
        "generated a TLS key-encryption key in {}; set tls.key_encryption_key on every node of a fleet",
        path.display()
    );
    KeySealer::from_hex(&k).map_err(Into::into)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
