//! Storing a tenant's certificate: validated against the hostnames it owns, the key sealed,
//! then put in one change. The admin API and the CLI's direct-store mode share this.

use wharf_tenancy::store::now_ms;
use wharf_tenancy::{Store, StoreError, TlsCertificate};

use super::seal::{self, KeySealer, SealError};
use super::validate::{self, CertError};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Invalid(#[from] CertError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Validates and stores `tenant`'s certificate `name` (replacing one of that name); returns
/// the new config version and the stored certificate.
pub async fn put_certificate(
    store: &Store,
    sealer: &KeySealer,
    tenant: &str,
    name: &str,
    chain_pem: &str,
    key_pem: &str,
) -> Result<(i64, TlsCertificate), UploadError> {
    let owned = store.tenant(tenant).await?.hostnames;
    let v = validate::validate(chain_pem, key_pem, &owned, now_ms())?;
    let cert = TlsCertificate {
        name: name.to_string(),
        chain_pem: chain_pem.to_string(),
        hostnames: v.hostnames,
        not_after_ms: v.not_after_ms,
        fingerprint: v.fingerprint,
        updated_at_ms: 0,
        key_sealed: sealer.seal(&seal::context(tenant, name), key_pem.as_bytes())?,
    };
    let version = store.put_certificate(tenant, &cert).await?;
    let stored = store
        .tenant(tenant)
        .await?
        .certificates
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or(cert);
    Ok((version, stored))
}
