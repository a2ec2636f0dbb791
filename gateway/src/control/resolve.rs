//! Turns the plugin attachments of a config snapshot into compiled plugins, before the snapshot
//! serves traffic: nothing compiles on the request path. Lookups go memory → disk cache → the
//! store's blob (compiled once per content hash, on the runtime's compile thread).

use std::collections::HashMap;
use std::sync::Arc;

use wharf_plugins::capabilities::Backends;
use wharf_plugins::{CompiledPlugin, PluginRuntime};
use wharf_tenancy::{Store, Tenant};

/// Compiled plugins by content hash; `Err` says why a plugin cannot run.
pub type PluginSet = HashMap<String, Result<Arc<CompiledPlugin>, Unavailable>>;

/// Why an attached plugin cannot run; requests through it fail with `plugin_unavailable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("version {version} of plugin {plugin} does not exist")]
    NoSuchVersion { plugin: String, version: i64 },
    #[error("plugin was not loaded")]
    NotLoaded,
    #[error("cannot fetch plugin bytes: {0}")]
    Fetch(String),
    #[error("plugin bytes are missing from the store")]
    MissingBytes,
    #[error("{0}")]
    Compile(String),
}

/// Compiles (or finds) every plugin attached by `tenants`.
pub async fn resolve_plugins<'a>(
    tenants: impl IntoIterator<Item = &'a Tenant>,
    store: &Store,
    runtime: &Arc<PluginRuntime>,
) -> PluginSet {
    let mut set = PluginSet::new();
    for tenant in tenants {
        for att in tenant.routes.iter().flat_map(|r| &r.plugins) {
            let Some(pv) = tenant.plugin_version(&att.plugin, att.version) else {
                continue;
            };
            if set.contains_key(&pv.sha256) {
                continue;
            }
            let resolved = resolve_one(&pv.sha256, store, runtime).await;
            if let Err(e) = &resolved {
                tracing::error!(tenant = %tenant.id, plugin = %att.plugin, version = att.version, "plugin unavailable: {e}");
            }
            set.insert(pv.sha256.clone(), resolved);
        }
    }
    set
}

async fn resolve_one(
    sha: &str,
    store: &Store,
    runtime: &Arc<PluginRuntime>,
) -> Result<Arc<CompiledPlugin>, Unavailable> {
    if let Some(hit) = runtime.cached(sha) {
        return Ok(hit);
    }
    let bytes = store
        .plugin_blob(sha)
        .await
        .map_err(|e| Unavailable::Fetch(e.to_string()))?
        .ok_or(Unavailable::MissingBytes)?;
    runtime
        .compile(None, bytes)
        .await
        .map_err(|e| Unavailable::Compile(e.to_string()))
}

/// Provisions the SQL of every tenant whose routes run plugins, before their first request.
/// Failures are logged, not fatal: the first host call retries.
pub async fn prepare_backends(tenants: &[Tenant], backends: &Backends) {
    for tenant in tenants {
        if tenant.routes.iter().all(|r| r.plugins.is_empty()) {
            continue;
        }
        if let Err(e) = backends.prepare(&tenant.id, &tenant.quotas).await {
            tracing::warn!(tenant = %tenant.id, "could not provision the tenant's SQL ahead of use: {e}");
        }
    }
}
