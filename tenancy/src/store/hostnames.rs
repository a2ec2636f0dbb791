//! Hostnames of tenants. A name belongs to one tenant: adding one checks it against the stored
//! names and wildcards it could overlap, inside the change's transaction.

use crate::quotas::ConfigQuotas;
use sqlx::Row;

use super::{Store, Tx};
use crate::error::StoreError;
use crate::model::HostPattern;

impl Store {
    /// Gives `tenant` a hostname, refusing any pattern that overlaps another tenant's.
    pub async fn add_hostname(&self, tenant: &str, pattern: &str) -> Result<i64, StoreError> {
        let pattern = HostPattern::parse(pattern)?;
        let (mut tx, version) = self
            .begin_change("hostname.add", tenant, &format!("{tenant}/{pattern}"))
            .await?;
        let quotas = Self::quotas_in(&mut tx, tenant).await?;
        Self::check_count(
            &mut tx,
            "SELECT COUNT(*) FROM hostnames WHERE tenant_id = $1 AND pattern <> $2",
            tenant,
            &pattern.to_string(),
            (ConfigQuotas::NAMES.hostnames, quotas.config.hostnames),
        )
        .await?;
        Self::insert_hostname(&mut tx, tenant, &pattern).await?;
        tx.commit().await?;
        Ok(version)
    }

    pub(super) async fn insert_hostname(
        tx: &mut Tx,
        tenant: &str,
        pattern: &HostPattern,
    ) -> Result<(), StoreError> {
        let rows = match overlap_candidates(pattern) {
            Some(names) => {
                // Only placeholders are formatted in; every name is a bound parameter.
                let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "SELECT tenant_id, pattern FROM hostnames WHERE pattern IN ({})",
                    marks.join(", ")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for n in names {
                    q = q.bind(n);
                }
                q.fetch_all(&mut **tx).await?
            }
            None => {
                sqlx::query("SELECT tenant_id, pattern FROM hostnames")
                    .fetch_all(&mut **tx)
                    .await?
            }
        };
        for row in rows {
            let owner: String = row.try_get(0)?;
            let existing: String = row.try_get(1)?;
            let Ok(existing_pattern) = HostPattern::parse(&existing) else {
                continue;
            };
            if existing_pattern == *pattern && owner == tenant {
                return Ok(());
            }
            if existing_pattern.overlaps(pattern) && owner != tenant {
                return Err(StoreError::HostnameTaken {
                    hostname: pattern.to_string(),
                    existing,
                    owner,
                });
            }
        }
        sqlx::query("INSERT INTO hostnames (pattern, tenant_id) VALUES ($1, $2)")
            .bind(pattern.to_string())
            .bind(tenant.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub async fn remove_hostname(&self, tenant: &str, pattern: &str) -> Result<i64, StoreError> {
        let pattern = HostPattern::parse(pattern)?;
        let (mut tx, version) = self
            .begin_change("hostname.remove", tenant, &format!("{tenant}/{pattern}"))
            .await?;
        let done = sqlx::query("DELETE FROM hostnames WHERE pattern = $1 AND tenant_id = $2")
            .bind(pattern.to_string())
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        // The name's ACME order and issued certificate go with it: no renewal for a name the
        // tenant no longer owns.
        sqlx::query("DELETE FROM acme_hostnames WHERE hostname = $1 AND tenant_id = $2")
            .bind(pattern.to_string())
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Invalid(
                crate::error::ValidationError::BadHostname(format!(
                    "{pattern} (not a hostname of tenant {tenant})"
                )),
            ));
        }
        tx.commit().await?;
        Ok(version)
    }
}

/// The stored patterns that could overlap `pattern`, so that adding a hostname does not read
/// every tenant's: an exact name can only collide with itself and with a wildcard over one of
/// its parent domains (one candidate per label). `None` for a new wildcard, which can also cover
/// names under it: those are found by reading all hostnames (wildcards are the rare case).
fn overlap_candidates(pattern: &HostPattern) -> Option<Vec<String>> {
    match pattern {
        HostPattern::Exact(name) => {
            let mut names = vec![name.clone()];
            names.extend(
                name.match_indices('.')
                    .map(|(dot, _)| format!("*.{}", &name[dot + 1..])),
            );
            Some(names)
        }
        HostPattern::Wildcard(_) => None,
    }
}
