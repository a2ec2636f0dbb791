//! What a tenant's plugins take in the shared store, and what an upload prunes: every version
//! of every plugin is kept until it is removed, so without a bound one tenant's uploads could
//! fill the store's disk, which stops config changes for every tenant. Each upload keeps the
//! newest `plugin_versions_kept` versions of its plugin and every version a route runs; older
//! ones go (audited as `plugin.prune`), and what is left must fit `plugin_storage_bytes`.

use std::collections::HashSet;

use sqlx::Row;

use super::quota_use::within;
use super::{now_ms, Store, Tx};
use crate::error::StoreError;
use crate::model::Route;
use crate::quotas::StorageQuotas;

/// One stored version and the size of its bytes.
pub(super) struct Stored {
    name: String,
    version: i64,
    sha256: String,
    size: u64,
}

/// What the tenant's store would hold after one more upload of `name`.
pub(super) struct AfterUpload {
    /// Versions of `name` the upload removes.
    pub pruned: Vec<i64>,
    /// Bytes the tenant keeps besides the upload (each distinct content once).
    pub kept_bytes: u64,
    kept_shas: HashSet<String>,
}

impl AfterUpload {
    pub(super) fn plan(stored: &[Stored], routes: &[Route], name: &str, kept: u32) -> AfterUpload {
        let running: HashSet<(&str, i64)> = routes
            .iter()
            .flat_map(|r| r.plugins.iter().map(|a| (a.plugin.as_str(), a.version)))
            .collect();
        let mut of_name: Vec<&Stored> = stored.iter().filter(|s| s.name == name).collect();
        of_name.sort_by_key(|s| std::cmp::Reverse(s.version));
        // The upload is the newest: the old versions keep `kept - 1` places.
        let pruned: Vec<i64> = of_name
            .iter()
            .skip(kept.saturating_sub(1) as usize)
            .filter(|s| !running.contains(&(s.name.as_str(), s.version)))
            .map(|s| s.version)
            .collect();
        let mut kept_shas = HashSet::new();
        let mut kept_bytes = 0;
        for s in stored {
            let gone = s.name == name && pruned.contains(&s.version);
            if !gone && kept_shas.insert(s.sha256.clone()) {
                kept_bytes += s.size;
            }
        }
        AfterUpload {
            pruned,
            kept_bytes,
            kept_shas,
        }
    }

    /// The tenant's total with an upload of `sha256` (`size` bytes) added.
    pub(super) fn total_with(&self, sha256: &str, size: u64) -> u64 {
        if self.kept_shas.contains(sha256) {
            self.kept_bytes
        } else {
            self.kept_bytes + size
        }
    }
}

impl Store {
    /// Bytes the next upload of `tenant`'s plugin `name` may have under its storage quota
    /// (after what that upload would prune): the admin API reads no more of a body than this.
    pub async fn plugin_upload_room(&self, tenant: &str, name: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let quotas = Self::quotas_in(&mut tx, tenant).await?;
        let stored = Self::stored_in(&mut tx, tenant).await?;
        let routes = Self::routes_in(&mut tx, tenant).await?;
        tx.rollback().await?;
        let plan = AfterUpload::plan(&stored, &routes, name, quotas.storage.plugin_versions_kept);
        Ok(quotas.storage.plugin_bytes.saturating_sub(plan.kept_bytes))
    }

    /// Prunes what an upload of `name` (`sha256`, `size` bytes) makes room for, and refuses the
    /// upload when the tenant would still be over its storage quota. `true`: versions were
    /// pruned (their bytes may now be unreferenced).
    pub(super) async fn make_room(
        &self,
        tx: &mut Tx,
        tenant: &str,
        (name, sha256, size): (&str, &str, u64),
        config_version: i64,
    ) -> Result<bool, StoreError> {
        let StorageQuotas {
            plugin_bytes,
            plugin_versions_kept,
        } = Self::quotas_in(tx, tenant).await?.storage;
        let stored = Self::stored_in(tx, tenant).await?;
        let routes = Self::routes_in(tx, tenant).await?;
        let plan = AfterUpload::plan(&stored, &routes, name, plugin_versions_kept);
        within(
            StorageQuotas::NAMES.plugin_bytes,
            plugin_bytes,
            plan.total_with(sha256, size),
        )?;
        for v in &plan.pruned {
            sqlx::query(
                "DELETE FROM plugin_versions WHERE tenant_id = $1 AND name = $2 AND version = $3",
            )
            .bind(tenant.to_string())
            .bind(name.to_string())
            .bind(*v)
            .execute(&mut **tx)
            .await?;
            sqlx::query("INSERT INTO audit_log (at_ms, actor, action, target, config_version) VALUES ($1, $2, $3, $4, $5)")
                .bind(now_ms())
                .bind(self.actor.to_string())
                .bind("plugin.prune")
                .bind(format!("{tenant}/{name}@{v}"))
                .bind(config_version)
                .execute(&mut **tx)
                .await?;
        }
        Ok(!plan.pruned.is_empty())
    }

    async fn stored_in(tx: &mut Tx, tenant: &str) -> Result<Vec<Stored>, StoreError> {
        let rows = sqlx::query(
            "SELECT v.name, v.version, v.sha256, b.size FROM plugin_versions v \
             JOIN plugin_blobs b ON b.sha256 = v.sha256 WHERE v.tenant_id = $1",
        )
        .bind(tenant.to_string())
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Stored {
                    name: r.try_get(0)?,
                    version: r.try_get(1)?,
                    sha256: r.try_get(2)?,
                    size: r.try_get::<i64, _>(3)?.max(0) as u64,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PluginAttachment, UpstreamTarget};

    fn stored(name: &str, version: i64, sha: &str, size: u64) -> Stored {
        Stored {
            name: name.into(),
            version,
            sha256: sha.into(),
            size,
        }
    }

    #[test]
    fn an_upload_prunes_old_unused_versions_and_counts_content_once() {
        let stored = vec![
            stored("p", 1, "a", 100),
            stored("p", 2, "b", 100),
            stored("p", 3, "c", 100),
            stored("p", 4, "c", 100),
            stored("q", 1, "a", 100),
        ];
        let route = Route {
            id: "r".into(),
            path_prefix: "/".into(),
            methods: vec![],
            upstreams: vec![UpstreamTarget {
                addr: "10.0.0.1:80".into(),
                weight: 1,
            }],
            timeouts: Default::default(),
            health_check: None,
            plugins: vec![PluginAttachment {
                plugin: "p".into(),
                version: 1,
                config: Default::default(),
                on_error: Default::default(),
                allowed_outbound_hosts: Vec::new(),
                plugin_config: None,
                vm_config: None,
            }],
            upstream_protocol: Default::default(),
            retries: crate::model::DEFAULT_RETRIES,
            upstream_tls: Default::default(),
            host_header: Default::default(),
        };
        // Keep 2: the upload and version 4; 3 and 2 go; 1 stays, a route runs it.
        let plan = AfterUpload::plan(&stored, &[route], "p", 2);
        assert_eq!(plan.pruned, vec![3, 2]);
        assert_eq!(plan.kept_bytes, 200, "a (p@1, q@1) and c (p@4)");
        assert_eq!(plan.total_with("c", 100), 200, "same content as p@4");
        assert_eq!(plan.total_with("d", 50), 250);
    }
}
