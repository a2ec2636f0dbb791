//! Plugin versions and blobs, and their attachments to routes.

use sha2::Digest;
use sqlx::Row;

use super::{now_ms, Store, Tx};
use crate::error::StoreError;
use crate::model::{validate_id, PluginAttachment};

impl Store {
    /// Stores a new immutable version of a tenant's plugin; returns (plugin version, config version).
    /// Bytes are kept once per content hash. Validation (it is a component of the Wharf world)
    /// is the caller's job, before this.
    pub async fn add_plugin_version(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<(i64, i64), StoreError> {
        self.add_plugin_version_from(tenant, name, bytes, None)
            .await
    }

    /// [`Store::add_plugin_version`], recording where the bytes came from (`source`: an OCI
    /// reference pinned to its digest) for the listing.
    pub async fn add_plugin_version_from(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
        source: Option<&str>,
    ) -> Result<(i64, i64), StoreError> {
        validate_id(name)?;
        let sha = hex::encode(sha2::Sha256::digest(bytes));
        let (mut tx, config_version) = self
            .begin_change("plugin.upload", tenant, &format!("{tenant}/{name}"))
            .await?;
        // Versions of one plugin are numbered under the config-version row lock, so concurrent
        // uploads get distinct, gapless numbers; and before pruning, so none is given twice.
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM plugin_versions WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.to_string())
            .bind(name.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let version: i64 = row.try_get::<i64, _>(0)? + 1;
        let pruned = self
            .make_room(
                &mut tx,
                tenant,
                (name, &sha, bytes.len() as u64),
                config_version,
            )
            .await?;
        let known = sqlx::query("SELECT sha256 FROM plugin_blobs WHERE sha256 = $1")
            .bind(sha.clone())
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            sqlx::query("INSERT INTO plugin_blobs (sha256, bytes, size) VALUES ($1, $2, $3)")
                .bind(sha.clone())
                .bind(bytes.to_vec())
                .bind(bytes.len() as i64)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO plugin_versions (tenant_id, name, version, sha256, created_at_ms, source) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant.to_string())
        .bind(name.to_string())
        .bind(version)
        .bind(sha)
        .bind(now_ms())
        .bind(source.map(str::to_string))
        .execute(&mut *tx)
        .await?;
        // Only a prune can leave bytes unreferenced: the scan runs under the version row lock,
        // which holds every writer of the fleet.
        if pruned {
            Self::drop_orphan_blobs(&mut tx).await?;
        }
        tx.commit().await?;
        Ok((version, config_version))
    }

    /// The content hash of every plugin version of every tenant: what a node's compiled-code
    /// cache may still need.
    pub async fn plugin_hashes(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT sha256 FROM plugin_versions")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// The bytes stored under a content hash, verified against it: a damaged row is an error,
    /// never bytes that would run as a plugin they are not.
    pub async fn plugin_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT bytes FROM plugin_blobs WHERE sha256 = $1")
            .bind(sha256.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let bytes: Vec<u8> = row.try_get(0)?;
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(StoreError::Corrupt(format!(
                "plugin bytes stored under sha256 {sha256} hash to {actual}"
            )));
        }
        Ok(Some(bytes))
    }
    pub(super) async fn ensure_plugin_version(
        tx: &mut Tx,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> Result<(), StoreError> {
        let found = sqlx::query("SELECT version FROM plugin_versions WHERE tenant_id = $1 AND name = $2 AND version = $3")
            .bind(tenant.to_string())
            .bind(name.to_string())
            .bind(version)
            .fetch_optional(&mut **tx)
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::UnknownPlugin {
                tenant: tenant.into(),
                name: name.into(),
                version,
            }),
        }
    }
    /// The newest version of a tenant's plugin.
    pub async fn latest_plugin_version(&self, tenant: &str, name: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM plugin_versions WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.to_string())
            .bind(name.to_string())
            .fetch_one(&self.pool)
            .await?;
        match row.try_get::<i64, _>(0)? {
            0 => Err(StoreError::UnknownPlugin {
                tenant: tenant.into(),
                name: name.into(),
                version: 0,
            }),
            v => Ok(v),
        }
    }
    /// Adds `attachment` to the end of a route's chain, or replaces the attachment of the same
    /// plugin in place (which is how a route moves to another version, e.g. a rollback).
    pub async fn attach_plugin(
        &self,
        tenant: &str,
        route_id: &str,
        attachment: PluginAttachment,
    ) -> Result<i64, StoreError> {
        self.attach_plugin_at(tenant, route_id, attachment, None)
            .await
    }
    /// Like [`Store::attach_plugin`], placing the plugin at `position` in the chain (0 = first)
    /// when given; an existing attachment of the same plugin moves there.
    pub async fn attach_plugin_at(
        &self,
        tenant: &str,
        route_id: &str,
        attachment: PluginAttachment,
        position: Option<usize>,
    ) -> Result<i64, StoreError> {
        self.edit_route("plugin.attach", tenant, route_id, |route| {
            let existing = route
                .plugins
                .iter()
                .position(|a| a.plugin == attachment.plugin);
            match (existing, position) {
                (Some(i), None) => route.plugins[i] = attachment,
                (Some(i), Some(p)) => {
                    route.plugins.remove(i);
                    route.plugins.insert(p.min(route.plugins.len()), attachment);
                }
                (None, None) => route.plugins.push(attachment),
                (None, Some(p)) => route.plugins.insert(p.min(route.plugins.len()), attachment),
            }
        })
        .await
    }
    pub async fn detach_plugin(
        &self,
        tenant: &str,
        route_id: &str,
        plugin: &str,
    ) -> Result<i64, StoreError> {
        self.edit_route("plugin.detach", tenant, route_id, |route| {
            route.plugins.retain(|a| a.plugin != plugin)
        })
        .await
    }
    /// Moves every route running `name` to `version`, keeping each attachment's config; returns
    /// the routes moved and the new config version. One transaction: no route is left on
    /// another version by a concurrent rollback.
    pub async fn rollback_plugin(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> Result<(Vec<String>, i64), StoreError> {
        let (mut tx, config_version) = self
            .begin_change(
                "plugin.rollback",
                tenant,
                &format!("{tenant}/{name}@{version}"),
            )
            .await?;
        Self::ensure_tenant(&mut tx, tenant).await?;
        Self::ensure_plugin_version(&mut tx, tenant, name, version).await?;
        let mut moved = Vec::new();
        for mut route in Self::routes_in(&mut tx, tenant).await? {
            let Some(a) = route.plugins.iter_mut().find(|a| a.plugin == name) else {
                continue;
            };
            a.version = version;
            moved.push(route.id.clone());
            Self::write_route(&mut tx, tenant, route).await?;
        }
        tx.commit().await?;
        Ok((moved, config_version))
    }
    /// Deletes every version of a plugin; refused while a route still runs it.
    pub async fn remove_plugin(&self, tenant: &str, name: &str) -> Result<i64, StoreError> {
        let (mut tx, version) = self
            .begin_change("plugin.remove", tenant, &format!("{tenant}/{name}"))
            .await?;
        Self::ensure_tenant(&mut tx, tenant).await?;
        // Checked inside the transaction: an attach racing this delete either lands first (and
        // the delete is refused) or finds the plugin gone.
        if let Some(r) = Self::routes_in(&mut tx, tenant)
            .await?
            .into_iter()
            .find(|r| r.plugins.iter().any(|a| a.plugin == name))
        {
            return Err(StoreError::PluginInUse {
                plugin: name.into(),
                route: r.id,
            });
        }
        let done = sqlx::query("DELETE FROM plugin_versions WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.to_string())
            .bind(name.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UnknownPlugin {
                tenant: tenant.into(),
                name: name.into(),
                version: 0,
            });
        }
        Self::drop_orphan_blobs(&mut tx).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Bytes no version refers to any more (stored once per content, shared across tenants).
    pub(super) async fn drop_orphan_blobs(tx: &mut Tx) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM plugin_blobs WHERE sha256 NOT IN (SELECT sha256 FROM plugin_versions)",
        )
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
