//! Tenant API keys (only hashes stored) and the audit log.

use sha2::Digest;
use sqlx::Row;

use super::{now_ms, ApiKeyInfo, AuditEntry, Store};
use crate::error::StoreError;

/// The audit log is kept this long and at most this many entries (the oldest go first), so
/// writes, which each add an entry, cannot fill the store's disk (`[audit]` in the bootstrap
/// file). Every node prunes once a minute ([`Store::prune_audit`]).
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditRetention {
    pub retention_days: u32,
    pub max_rows: u32,
}

impl Default for AuditRetention {
    fn default() -> Self {
        AuditRetention {
            retention_days: 400,
            max_rows: 2_000_000,
        }
    }
}

impl Store {
    /// Issues an API key for a tenant: returns (key id, secret). Only the secret's hash is stored.
    pub async fn create_api_key(&self, tenant: &str) -> Result<(String, String), StoreError> {
        let id = format!("key_{}", hex::encode(rand::random::<[u8; 6]>()));
        let secret = format!("wharf_{}", hex::encode(rand::random::<[u8; 24]>()));
        let (mut tx, _) = self
            .begin_change("apikey.create", tenant, &format!("{tenant}/{id}"))
            .await?;
        Self::ensure_tenant(&mut tx, tenant).await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.clone())
        .bind(tenant.to_string())
        .bind(hash_secret(&secret))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((id, secret))
    }
    pub async fn revoke_api_key(&self, tenant: &str, id: &str) -> Result<(), StoreError> {
        let (mut tx, _) = self
            .begin_change("apikey.revoke", tenant, &format!("{tenant}/{id}"))
            .await?;
        let done = sqlx::query("UPDATE api_keys SET revoked_at_ms = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at_ms IS NULL")
            .bind(now_ms())
            .bind(tenant.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UnknownApiKey(id.to_string()));
        }
        tx.commit().await?;
        Ok(())
    }
    pub async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let rows = sqlx::query("SELECT id, created_at_ms, revoked_at_ms FROM api_keys WHERE tenant_id = $1 ORDER BY created_at_ms, id")
            .bind(tenant.to_string())
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let revoked: Option<i64> = r.try_get(2)?;
            out.push(ApiKeyInfo {
                id: r.try_get(0)?,
                created_at_ms: r.try_get(1)?,
                revoked: revoked.is_some(),
            });
        }
        Ok(out)
    }
    /// The tenant a live (unrevoked) API key belongs to.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at_ms IS NULL",
        )
        .bind(hash_secret(secret))
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }
    /// Records something done outside the config (e.g. a tenant's data purged) in the audit log,
    /// at the current config version.
    pub async fn audit(&self, action: &str, target: &str) -> Result<(), StoreError> {
        let version = self.version().await?.0;
        sqlx::query("INSERT INTO audit_log (at_ms, actor, action, target, config_version) VALUES ($1, $2, $3, $4, $5)")
            .bind(super::now_ms())
            .bind(self.actor.to_string())
            .bind(action.to_string())
            .bind(target.to_string())
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
    /// Removes audit entries older than the retention and all but the newest `max_rows`;
    /// returns how many went. Every node may run it: the deletes are idempotent.
    pub async fn prune_audit(&self, keep: &AuditRetention) -> Result<u64, StoreError> {
        let max_age_ms = i64::from(keep.retention_days) * 86_400_000;
        let max_rows = i64::from(keep.max_rows);
        let old = sqlx::query("DELETE FROM audit_log WHERE at_ms < $1")
            .bind(super::now_ms().saturating_sub(max_age_ms))
            .execute(&self.pool)
            .await?;
        let over =
            sqlx::query("DELETE FROM audit_log WHERE seq <= (SELECT MAX(seq) FROM audit_log) - $1")
                .bind(max_rows)
                .execute(&self.pool)
                .await?;
        Ok(old.rows_affected() + over.rows_affected())
    }
    /// The newest audit entries first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query("SELECT at_ms, actor, action, target, config_version FROM audit_log ORDER BY seq DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(AuditEntry {
                at_ms: r.try_get(0)?,
                actor: r.try_get(1)?,
                action: r.try_get(2)?,
                target: r.try_get(3)?,
                config_version: r.try_get(4)?,
            });
        }
        Ok(out)
    }
}

impl Store {
    /// The audit entries of changes to `tenant`'s config (through the change log), newest first.
    pub async fn tenant_audit_log(
        &self,
        tenant: &str,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.at_ms, a.actor, a.action, a.target, a.config_version FROM audit_log a \
             JOIN config_changes c ON c.version = a.config_version WHERE c.tenant_id = $1 \
             ORDER BY a.seq DESC LIMIT $2",
        )
        .bind(tenant.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at_ms: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    target: r.try_get(3)?,
                    config_version: r.try_get(4)?,
                })
            })
            .collect()
    }
}

fn hash_secret(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}
