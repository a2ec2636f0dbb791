//! Turns the plugin attachments of a config snapshot into plugin references for the routing
//! table. No request waits for a compile: plugins the disk cache lacks are compiled (on the
//! runtime's compile thread) before the table that attaches them serves. A tenant's change also
//! loads its plugins from the disk before serving; a node's boot or full reload does not: each
//! is loaded by its first request ([`PluginRef`]), so boot time does not grow with the plugin
//! count once the disk cache is warm.

use std::collections::HashMap;
use std::sync::Arc;

use wharf_plugins::capabilities::Capabilities;
use wharf_plugins::PluginRuntime;
use wharf_tenancy::Tenant;

pub use super::plugin_ref::{BlobSource, PluginRef, Unavailable};

/// Plugin references by content hash.
pub type PluginSet = HashMap<String, Arc<PluginRef>>;

/// When a reload's plugins are loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loading {
    /// Before the new table serves: a tenant's change, whose new plugin is wanted at once.
    Eager,
    /// From the disk cache by each plugin's first request (compiled now if not on disk): a
    /// boot or full reload, whatever the plugin count.
    Lazy,
}

/// A reference for every plugin attached by `tenants`.
pub async fn resolve_plugins<'a>(
    tenants: impl IntoIterator<Item = &'a Tenant>,
    runtime: &Arc<PluginRuntime>,
    blobs: &Arc<BlobSource>,
    loading: Loading,
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
            let plugin = Arc::new(PluginRef::new(pv.sha256.clone(), blobs.clone()));
            plugin.adopt(runtime);
            if loading == Loading::Eager || !runtime.on_disk(&pv.sha256) {
                if let Err(e) = plugin.load(runtime).await {
                    tracing::error!(tenant = %tenant.id, plugin = %att.plugin, version = att.version, "plugin unavailable: {e}");
                }
            }
            set.insert(pv.sha256.clone(), plugin);
        }
    }
    set
}

/// Provisions the SQL of every tenant whose routes run plugins, before their first request.
/// Failures are logged, not fatal: the first host call retries.
pub async fn prepare_capabilities(tenants: &[Tenant], capabilities: &Capabilities) {
    for tenant in tenants {
        if tenant.routes.iter().all(|r| r.plugins.is_empty()) {
            continue;
        }
        if let Err(e) = capabilities.prepare(&tenant.id, &tenant.quotas).await {
            tracing::warn!(tenant = %tenant.id, "could not provision the tenant's SQL ahead of use: {e}");
        }
    }
}
