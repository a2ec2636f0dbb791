//! Reading config: the whole snapshot (what nodes serve) or one tenant (what the admin API and
//! the CLI show), each in one transaction so what it returns matches one version.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Backend, ConfigDelta, ConfigSnapshot, Store, StoreError, Tx};
use crate::model::{HostPattern, PluginVersion, Route, Tenant, TlsCertificate};

/// Which tenants a read covers. Tenant ids are never empty, so `''` stands for all of them.
const ALL: &str = "";

impl Store {
    /// Everything, read in one transaction so the snapshot matches its version.
    pub async fn load(&self) -> Result<ConfigSnapshot, StoreError> {
        let mut tx = self.read_tx().await?;
        let meta = sqlx::query("SELECT version, changed_at_ms FROM config_meta WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let tenants = read_tenants(&mut tx, ALL).await?;
        tx.commit().await?;
        Ok(ConfigSnapshot {
            version: meta.try_get(0)?,
            changed_at_ms: meta.try_get(1)?,
            tenants,
        })
    }

    /// The tenants changed since version `since`, read in one transaction (so the delta matches
    /// its version), when the change log covers the whole gap and names at most `max_tenants`
    /// tenants; `None`: load the whole snapshot instead.
    pub async fn changes_since(
        &self,
        since: i64,
        max_tenants: usize,
    ) -> Result<Option<ConfigDelta>, StoreError> {
        let mut tx = self.read_tx().await?;
        let meta = sqlx::query("SELECT version, changed_at_ms FROM config_meta WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let (version, changed_at_ms): (i64, i64) = (meta.try_get(0)?, meta.try_get(1)?);
        let rows = sqlx::query(
            "SELECT version, tenant_id FROM config_changes WHERE version > $1 AND version <= $2 \
             ORDER BY version",
        )
        .bind(since)
        .bind(version)
        .fetch_all(&mut *tx)
        .await?;
        // Every version in the gap must be logged: a pruned log, or a change written by a
        // binary that predates the log, means the delta would miss something.
        if since <= 0 || since > version || rows.len() as i64 != version - since {
            return Ok(None);
        }
        let mut ids: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            let id: String = row.try_get(1)?;
            if seen.insert(id.clone()) {
                ids.push(id);
            }
            if ids.len() > max_tenants {
                return Ok(None);
            }
        }
        let mut tenants = Vec::with_capacity(ids.len());
        for id in ids {
            let now = read_tenants(&mut tx, &id).await?.pop();
            tenants.push((id, now));
        }
        tx.commit().await?;
        Ok(Some(ConfigDelta {
            version,
            changed_at_ms,
            tenants,
        }))
    }

    /// One tenant with its hostnames, routes and plugin versions; reads only that tenant's rows.
    pub async fn tenant(&self, id: &str) -> Result<Tenant, StoreError> {
        if id == ALL {
            return Err(StoreError::UnknownTenant(id.to_string()));
        }
        let mut tx = self.read_tx().await?;
        let mut found = read_tenants(&mut tx, id).await?;
        tx.commit().await?;
        found
            .pop()
            .ok_or_else(|| StoreError::UnknownTenant(id.to_string()))
    }

    pub async fn route(&self, tenant: &str, route_id: &str) -> Result<Route, StoreError> {
        let mut tx = self.read_tx().await?;
        Self::ensure_tenant(&mut tx, tenant).await?;
        let row = sqlx::query("SELECT spec FROM routes WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(route_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        let row = row.ok_or_else(|| StoreError::UnknownRoute {
            tenant: tenant.into(),
            route: route_id.into(),
        })?;
        route_from_spec(tenant, &row.try_get::<String, _>(0)?)
    }

    async fn read_tx(&self) -> Result<Tx, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }
}

/// Tenants sorted by id, each with its rows; `only` names one tenant, or is [`ALL`].
async fn read_tenants(tx: &mut Tx, only: &str) -> Result<Vec<Tenant>, StoreError> {
    // Two spellings per query: with the tenant filter as its own statement, the database uses
    // the tenant's index (an `($1 = '' OR tenant_id = $1)` filter would scan every tenant).
    let one = only != ALL;
    let query = |all: &'static str, filtered: &'static str| {
        if one {
            sqlx::query(filtered).bind(only.to_string())
        } else {
            sqlx::query(all)
        }
    };
    let tenant_rows = query(
        "SELECT id, display_name, quotas FROM tenants ORDER BY id",
        "SELECT id, display_name, quotas FROM tenants WHERE id = $1",
    )
    .fetch_all(&mut **tx)
    .await?;
    let host_rows = query(
        "SELECT tenant_id, pattern FROM hostnames ORDER BY pattern",
        "SELECT tenant_id, pattern FROM hostnames WHERE tenant_id = $1 ORDER BY pattern",
    )
    .fetch_all(&mut **tx)
    .await?;
    let route_rows = query(
        "SELECT tenant_id, spec FROM routes ORDER BY tenant_id, id",
        "SELECT tenant_id, spec FROM routes WHERE tenant_id = $1 ORDER BY id",
    )
    .fetch_all(&mut **tx)
    .await?;
    let plugin_rows = query(
        "SELECT tenant_id, name, version, sha256, created_at_ms, source FROM plugin_versions \
         ORDER BY tenant_id, name, version",
        "SELECT tenant_id, name, version, sha256, created_at_ms, source FROM plugin_versions \
         WHERE tenant_id = $1 ORDER BY name, version",
    )
    .fetch_all(&mut **tx)
    .await?;
    let cert_rows = query(
        "SELECT tenant_id, name, chain_pem, key_sealed, hostnames, not_after_ms, fingerprint, \
         updated_at_ms FROM certificates ORDER BY tenant_id, name",
        "SELECT tenant_id, name, chain_pem, key_sealed, hostnames, not_after_ms, fingerprint, \
         updated_at_ms FROM certificates WHERE tenant_id = $1 ORDER BY name",
    )
    .fetch_all(&mut **tx)
    .await?;
    // After the uploads: a tenant's uploaded certificate for a name wins (`pick` in the
    // gateway's resolver). `issued_at_ms` stands for the update time: a failed renewal
    // touches the row but not the certificate served.
    let issued_rows = query(
        "SELECT tenant_id, hostname, chain_pem, key_sealed, not_after_ms, fingerprint, \
         issued_at_ms FROM acme_hostnames WHERE chain_pem <> '' ORDER BY tenant_id, hostname",
        "SELECT tenant_id, hostname, chain_pem, key_sealed, not_after_ms, fingerprint, \
         issued_at_ms FROM acme_hostnames WHERE tenant_id = $1 AND chain_pem <> '' \
         ORDER BY hostname",
    )
    .fetch_all(&mut **tx)
    .await?;

    let mut tenants = tenant_rows
        .iter()
        .map(tenant_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let position = |id: &str| {
        tenants
            .binary_search_by(|t: &Tenant| t.id.as_str().cmp(id))
            .ok()
    };
    let mut hosts: Vec<(usize, HostPattern)> = Vec::new();
    for row in &host_rows {
        let tenant_id: String = row.try_get(0)?;
        let pattern: String = row.try_get(1)?;
        let pattern = HostPattern::parse(&pattern)
            .map_err(|e| StoreError::Corrupt(format!("hostname row: {e}")))?;
        if let Some(i) = position(&tenant_id) {
            hosts.push((i, pattern));
        }
    }
    let mut routes: Vec<(usize, Route)> = Vec::new();
    for row in &route_rows {
        let tenant_id: String = row.try_get(0)?;
        let route = route_from_spec(&tenant_id, &row.try_get::<String, _>(1)?)?;
        if let Some(i) = position(&tenant_id) {
            routes.push((i, route));
        }
    }
    let mut plugins: Vec<(usize, PluginVersion)> = Vec::new();
    for row in &plugin_rows {
        let tenant_id: String = row.try_get(0)?;
        let version = PluginVersion {
            name: row.try_get(1)?,
            version: row.try_get(2)?,
            sha256: row.try_get(3)?,
            created_at_ms: row.try_get(4)?,
            source: row.try_get(5)?,
        };
        if let Some(i) = position(&tenant_id) {
            plugins.push((i, version));
        }
    }
    let mut certs: Vec<(usize, TlsCertificate)> = Vec::new();
    for row in &cert_rows {
        let tenant_id: String = row.try_get(0)?;
        let hostnames: String = row.try_get(4)?;
        let cert = TlsCertificate {
            name: row.try_get(1)?,
            chain_pem: row.try_get(2)?,
            key_sealed: row.try_get(3)?,
            hostnames: serde_json::from_str(&hostnames)
                .map_err(|e| StoreError::Corrupt(format!("certificate of {tenant_id}: {e}")))?,
            not_after_ms: row.try_get(5)?,
            fingerprint: row.try_get(6)?,
            updated_at_ms: row.try_get(7)?,
        };
        if let Some(i) = position(&tenant_id) {
            certs.push((i, cert));
        }
    }
    for row in &issued_rows {
        let (tenant_id, cert) = super::acme::issued_from_row(row)?;
        if let Some(i) = position(&tenant_id) {
            certs.push((i, cert));
        }
    }
    for (i, c) in certs {
        tenants[i].certificates.push(c);
    }
    for (i, h) in hosts {
        tenants[i].hostnames.push(h);
    }
    for (i, r) in routes {
        tenants[i].routes.push(r);
    }
    for (i, p) in plugins {
        tenants[i].plugins.push(p);
    }
    Ok(tenants)
}

pub(super) fn route_from_spec(tenant: &str, spec: &str) -> Result<Route, StoreError> {
    serde_json::from_str(spec).map_err(|e| StoreError::Corrupt(format!("route of {tenant}: {e}")))
}

fn tenant_from_row(row: &AnyRow) -> Result<Tenant, StoreError> {
    let id: String = row.try_get(0)?;
    let quotas: String = row.try_get(2)?;
    let quotas = serde_json::from_str(&quotas)
        .map_err(|e| StoreError::Corrupt(format!("quotas of tenant {id}: {e}")))?;
    Ok(Tenant {
        display_name: row.try_get(1)?,
        id,
        hostnames: vec![],
        routes: vec![],
        quotas,
        plugins: vec![],
        certificates: vec![],
    })
}
