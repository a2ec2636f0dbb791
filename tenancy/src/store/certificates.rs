//! Tenants' TLS certificates. The gateway validates a certificate and seals its key before it
//! gets here; a put replaces the certificate of that name (rotation), in one change.

use super::{now_ms, Store};
use crate::error::StoreError;
use crate::model::{validate_id, TlsCertificate};
use crate::quotas::ConfigQuotas;

impl Store {
    /// Stores (or replaces) `tenant`'s certificate `cert.name`; returns the new config version.
    pub async fn put_certificate(
        &self,
        tenant: &str,
        cert: &TlsCertificate,
    ) -> Result<i64, StoreError> {
        validate_id(&cert.name)?;
        let hostnames = serde_json::to_string(&cert.hostnames)
            .map_err(|e| StoreError::Corrupt(format!("certificate hostnames: {e}")))?;
        let (mut tx, version) = self
            .begin_change(
                "certificate.put",
                tenant,
                &format!("{tenant}/{}", cert.name),
            )
            .await?;
        let quotas = Self::quotas_in(&mut tx, tenant).await?;
        Self::check_count(
            &mut tx,
            "SELECT COUNT(*) FROM certificates WHERE tenant_id = $1 AND name <> $2",
            tenant,
            &cert.name,
            (ConfigQuotas::NAMES.certificates, quotas.config.certificates),
        )
        .await?;
        sqlx::query(
            "INSERT INTO certificates (tenant_id, name, chain_pem, key_sealed, hostnames, \
             not_after_ms, fingerprint, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET chain_pem = excluded.chain_pem, \
             key_sealed = excluded.key_sealed, hostnames = excluded.hostnames, \
             not_after_ms = excluded.not_after_ms, fingerprint = excluded.fingerprint, \
             updated_at_ms = excluded.updated_at_ms",
        )
        .bind(tenant.to_string())
        .bind(cert.name.clone())
        .bind(cert.chain_pem.clone())
        .bind(cert.key_sealed.clone())
        .bind(hostnames)
        .bind(cert.not_after_ms)
        .bind(cert.fingerprint.clone())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Removes `tenant`'s certificate `name`; returns the new config version.
    pub async fn delete_certificate(&self, tenant: &str, name: &str) -> Result<i64, StoreError> {
        let (mut tx, version) = self
            .begin_change("certificate.delete", tenant, &format!("{tenant}/{name}"))
            .await?;
        Self::ensure_tenant(&mut tx, tenant).await?;
        let done = sqlx::query("DELETE FROM certificates WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.to_string())
            .bind(name.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UnknownCertificate {
                tenant: tenant.into(),
                name: name.into(),
            });
        }
        tx.commit().await?;
        Ok(version)
    }
}
