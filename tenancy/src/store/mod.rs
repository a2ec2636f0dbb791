//! The config store (plugin versions in `plugins.rs`, API keys and audit in `access.rs`): tenants, hostnames and routes in SQLite (embedded default) or Postgres (fleets).
//!
//! Every mutation bumps `config_meta.version` first, inside its transaction: that row lock
//! serializes writers on Postgres, and the version is what gateway nodes poll to converge.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
mod access;
pub use access::AuditRetention;
mod acme;
mod acme_shared;
pub use acme::{AcmeHostname, AcmeState, ISSUED_PREFIX};
pub use acme_shared::AcmeChallenge;
mod certificates;
mod hostnames;
mod nodes;
mod plugin_storage;
mod plugins;
mod quota_use;
mod routes;
mod snapshot;

use sqlx::{AnyPool, Row};

use crate::error::StoreError;
use crate::model::{validate_display_name, validate_tenant_id, HostPattern, Tenant};
use crate::quotas::{ConfigQuotas, Quotas};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The tenants changed between two versions: what a node applies instead of a full snapshot.
#[derive(Debug, Clone)]
pub struct ConfigDelta {
    /// The version this delta brings a node to.
    pub version: i64,
    pub changed_at_ms: i64,
    /// Each changed tenant by id, as it is now; `None`: it was removed.
    pub tenants: Vec<(String, Option<Tenant>)>,
}

/// Versions of the change log kept: a node further behind reloads everything once.
const CHANGE_LOG_KEPT: i64 = 100_000;

/// A consistent view of all config at one version.
#[derive(Debug, Clone, Default)]
pub struct ConfigSnapshot {
    pub version: i64,
    /// When the change that produced `version` was committed (ms since the Unix epoch).
    pub changed_at_ms: i64,
    /// Sorted by id; each tenant's routes sorted by id.
    pub tenants: Vec<Tenant>,
}

#[derive(Clone)]
pub struct Store {
    pub(super) pool: AnyPool,
    backend: Backend,
    /// Who the audit log names for this handle's changes.
    actor: std::sync::Arc<str>,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub config_version: i64,
}

/// A tenant API key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    pub created_at_ms: i64,
    pub revoked: bool,
}

/// A gateway node as it last reported itself.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct NodeReport {
    pub id: String,
    pub config_version: i64,
    pub started_at_ms: i64,
    pub seen_at_ms: i64,
}

pub(super) type Tx = sqlx::Transaction<'static, sqlx::Any>;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Connects and applies migrations. `url` is `sqlite://PATH` or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets the CLI write while a gateway polls.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        let store = Store {
            pool,
            backend,
            actor: "system".into(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The SQLite URL for a data directory (creating the directory).
    pub fn sqlite_url_for(data_dir: &std::path::Path) -> std::io::Result<String> {
        std::fs::create_dir_all(data_dir)?;
        Ok(format!("sqlite://{}", data_dir.join("wharf.db").display()))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let files: [(&'static str, &'static str, &'static str); 10] = [
            (
                "config",
                include_str!("../../migrations/sqlite/0001_config.sql"),
                include_str!("../../migrations/postgres/0001_config.sql"),
            ),
            (
                "plugins",
                include_str!("../../migrations/sqlite/0002_plugins.sql"),
                include_str!("../../migrations/postgres/0002_plugins.sql"),
            ),
            (
                "api",
                include_str!("../../migrations/sqlite/0003_api.sql"),
                include_str!("../../migrations/postgres/0003_api.sql"),
            ),
            (
                "changes",
                include_str!("../../migrations/sqlite/0004_changes.sql"),
                include_str!("../../migrations/postgres/0004_changes.sql"),
            ),
            (
                "certificates",
                include_str!("../../migrations/sqlite/0005_certificates.sql"),
                include_str!("../../migrations/postgres/0005_certificates.sql"),
            ),
            (
                "nodes",
                include_str!("../../migrations/sqlite/0006_nodes.sql"),
                include_str!("../../migrations/postgres/0006_nodes.sql"),
            ),
            (
                "audit retention",
                include_str!("../../migrations/sqlite/0007_audit_retention.sql"),
                include_str!("../../migrations/postgres/0007_audit_retention.sql"),
            ),
            (
                "acme",
                include_str!("../../migrations/sqlite/0008_acme.sql"),
                include_str!("../../migrations/postgres/0008_acme.sql"),
            ),
            (
                "plugin source",
                include_str!("../../migrations/sqlite/0009_plugin_source.sql"),
                include_str!("../../migrations/postgres/0009_plugin_source.sql"),
            ),
            (
                "acme challenge kind",
                include_str!("../../migrations/sqlite/0010_acme_challenge_kind.sql"),
                include_str!("../../migrations/postgres/0010_acme_challenge_kind.sql"),
            ),
        ];
        // Listed by hand rather than with sqlx's macro: it keeps the build lean.
        let migrations = files
            .iter()
            .zip(1..)
            .map(|((name, sqlite, postgres), version)| {
                let sql = if self.backend == Backend::Sqlite {
                    *sqlite
                } else {
                    *postgres
                };
                Migration::new(
                    version,
                    (*name).into(),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// (version, changed_at_ms): cheap enough to poll several times a second.
    pub async fn version(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query("SELECT version, changed_at_ms FROM config_meta WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// This store, recording `actor` as the author of its changes in the audit log.
    pub fn with_actor(&self, actor: &str) -> Store {
        Store {
            actor: actor.into(),
            ..self.clone()
        }
    }

    /// Opens a write transaction, bumps the version, records which tenant the change touches
    /// (nodes reload only that tenant) and audits it; returns the new version.
    pub(super) async fn begin_change(
        &self,
        action: &str,
        tenant: &str,
        target: &str,
    ) -> Result<(Tx, i64), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE config_meta SET version = version + 1, changed_at_ms = $1 WHERE id = 1",
        )
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT version FROM config_meta WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let version: i64 = row.try_get(0)?;
        sqlx::query("INSERT INTO config_changes (version, tenant_id) VALUES ($1, $2)")
            .bind(version)
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM config_changes WHERE version <= $1")
            .bind(version - CHANGE_LOG_KEPT)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO audit_log (at_ms, actor, action, target, config_version) VALUES ($1, $2, $3, $4, $5)")
            .bind(now_ms())
            .bind(self.actor.to_string())
            .bind(action.to_string())
            .bind(target.to_string())
            .bind(version)
            .execute(&mut *tx)
            .await?;
        Ok((tx, version))
    }

    pub(super) async fn ensure_tenant(tx: &mut Tx, id: &str) -> Result<(), StoreError> {
        let found = sqlx::query("SELECT id FROM tenants WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::UnknownTenant(id.to_string())),
        }
    }

    /// Creates a tenant with its hostnames, all or nothing; returns the new config version.
    pub async fn create_tenant(
        &self,
        id: &str,
        display_name: &str,
        hostnames: &[&str],
    ) -> Result<i64, StoreError> {
        validate_tenant_id(id)?;
        validate_display_name(display_name)?;
        let patterns = hostnames
            .iter()
            .map(|h| HostPattern::parse(h))
            .collect::<Result<Vec<_>, _>>()?;
        quota_use::within(
            ConfigQuotas::NAMES.hostnames,
            Quotas::default().config.hostnames.into(),
            patterns.len() as u64,
        )?;
        let (mut tx, version) = self.begin_change("tenant.create", id, id).await?;
        if Self::ensure_tenant(&mut tx, id).await.is_ok() {
            return Err(StoreError::TenantExists(id.to_string()));
        }
        let quotas = serde_json::to_string(&Quotas::default()).unwrap_or_else(|_| "{}".into());
        sqlx::query(
            "INSERT INTO tenants (id, display_name, quotas, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(display_name.to_string())
        .bind(quotas)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        for p in &patterns {
            Self::insert_hostname(&mut tx, id, p).await?;
        }
        tx.commit().await?;
        Ok(version)
    }

    /// Removes a tenant with its hostnames, routes, plugins, keys and certificates.
    pub async fn remove_tenant(&self, id: &str) -> Result<i64, StoreError> {
        let (mut tx, version) = self.begin_change("tenant.remove", id, id).await?;
        Self::ensure_tenant(&mut tx, id).await?;
        for sql in [
            "DELETE FROM routes WHERE tenant_id = $1",
            "DELETE FROM hostnames WHERE tenant_id = $1",
            "DELETE FROM plugin_versions WHERE tenant_id = $1",
            "DELETE FROM api_keys WHERE tenant_id = $1",
            "DELETE FROM certificates WHERE tenant_id = $1",
            // Its orders stop and its issued certificates go (renewals end with the rows).
            "DELETE FROM acme_hostnames WHERE tenant_id = $1",
            "DELETE FROM tenants WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        Self::drop_orphan_blobs(&mut tx).await?;
        tx.commit().await?;
        Ok(version)
    }

    pub async fn rename_tenant(&self, tenant: &str, display_name: &str) -> Result<i64, StoreError> {
        validate_display_name(display_name)?;
        let (mut tx, version) = self.begin_change("tenant.update", tenant, tenant).await?;
        Self::ensure_tenant(&mut tx, tenant).await?;
        sqlx::query("UPDATE tenants SET display_name = $1 WHERE id = $2")
            .bind(display_name.to_string())
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(version)
    }

    pub async fn set_quotas(&self, tenant: &str, quotas: &Quotas) -> Result<i64, StoreError> {
        quotas.validate()?;
        let (mut tx, version) = self.begin_change("tenant.quotas", tenant, tenant).await?;
        Self::ensure_tenant(&mut tx, tenant).await?;
        Self::write_quotas(&mut tx, tenant, quotas).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Applies `updates` (see [`Quotas::patched`]) to the tenant's quotas in one transaction, so
    /// concurrent patches of different quotas all land. Returns the new version and quotas.
    pub async fn patch_quotas(
        &self,
        tenant: &str,
        updates: &serde_json::Value,
    ) -> Result<(i64, Quotas), StoreError> {
        let (mut tx, version) = self.begin_change("tenant.quotas", tenant, tenant).await?;
        let current = Self::quotas_in(&mut tx, tenant).await?;
        let patched = current.patched(updates)?;
        Self::write_quotas(&mut tx, tenant, &patched).await?;
        tx.commit().await?;
        Ok((version, patched))
    }

    async fn write_quotas(tx: &mut Tx, tenant: &str, quotas: &Quotas) -> Result<(), StoreError> {
        let json = serde_json::to_string(quotas)
            .map_err(|e| StoreError::Corrupt(format!("quotas: {e}")))?;
        sqlx::query("UPDATE tenants SET quotas = $1 WHERE id = $2")
            .bind(json)
            .bind(tenant.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
