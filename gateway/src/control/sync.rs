//! Config sync: keeps this node's routing table in step with the store. Each poll reads the
//! version; when it moved, only the tenants changed since (or the whole snapshot), compiled and
//! swapped in, with what a change starts (health checks, capabilities' provisioning) and what it
//! shows (certificate expiry, reload metrics).

use std::sync::Arc;

use wharf_metrics::Metrics;
use wharf_plugins::capabilities::networking::EgressPolicy;
use wharf_plugins::capabilities::Capabilities;
use wharf_plugins::PluginRuntime;
use wharf_tenancy::store::now_ms;
use wharf_tenancy::{ConfigDelta, Store, Tenant};

use super::balancer::Upkeep;
use super::resolve::{prepare_capabilities, resolve_plugins, BlobSource, Loading, PluginSet};
use super::table::{CompileEnv, CompiledTenant, LiveConfig, RoutingTable};

/// A delta naming more tenants than this is applied as a full reload (one read instead of
/// thousands of per-tenant reads).
const MAX_DELTA_TENANTS: usize = 1000;

pub struct ConfigSync {
    pub live: Arc<LiveConfig>,
    pub runtime: Arc<PluginRuntime>,
    /// Plugin bytes for what the disk cache lacks; bound to the store once connected.
    pub blobs: Arc<BlobSource>,
    pub capabilities: Arc<Capabilities>,
    /// Where tenants' upstreams may point.
    pub egress: Arc<EgressPolicy>,
    /// Seals and opens tenants' TLS private keys.
    pub sealer: Arc<crate::tls::seal::KeySealer>,
    pub metrics: Arc<Metrics>,
}

impl ConfigSync {
    /// Applies the store's config if its version moved: only the tenants changed since the
    /// version in force when the change log covers the gap, else the whole snapshot.
    pub async fn poll(&self, store: &Store) -> Result<(), wharf_tenancy::StoreError> {
        let (version, _) = store.version().await?;
        let current = self.live.load();
        if version == current.version {
            return Ok(());
        }
        let delta = if current.version > 0 {
            store
                .changes_since(current.version, MAX_DELTA_TENANTS)
                .await
                .inspect_err(|_| self.count_reload("incremental", "error"))?
        } else {
            None
        };
        match delta {
            Some(delta) => self.apply_delta(delta, &current).await,
            None => self.apply_full(store, &current).await,
        }
    }

    async fn apply_full(
        &self,
        store: &Store,
        current: &RoutingTable,
    ) -> Result<(), wharf_tenancy::StoreError> {
        let snapshot = store
            .load()
            .await
            .inspect_err(|_| self.count_reload("full", "error"))?;
        let plugins =
            resolve_plugins(&snapshot.tenants, &self.runtime, &self.blobs, Loading::Lazy).await;
        let (table, fresh) = RoutingTable::compile(&snapshot, &self.env(&plugins), current);
        self.export_cert_expiry(current, &table, None);
        self.install(table, fresh, snapshot.tenants.clone());
        self.applied("full", snapshot.version, snapshot.changed_at_ms);
        Ok(())
    }

    async fn apply_delta(
        &self,
        delta: ConfigDelta,
        current: &RoutingTable,
    ) -> Result<(), wharf_tenancy::StoreError> {
        let changed: Vec<Tenant> = delta
            .tenants
            .iter()
            .filter_map(|(_, t)| t.clone())
            .collect();
        let plugins = resolve_plugins(&changed, &self.runtime, &self.blobs, Loading::Eager).await;
        let (table, fresh) = RoutingTable::apply(&delta, &self.env(&plugins), current);
        let ids: Vec<&str> = delta.tenants.iter().map(|(id, _)| id.as_str()).collect();
        self.export_cert_expiry(current, &table, Some(&ids));
        self.install(table, fresh, changed);
        self.applied("incremental", delta.version, delta.changed_at_ms);
        Ok(())
    }

    fn env<'a>(&'a self, plugins: &'a PluginSet) -> CompileEnv<'a> {
        CompileEnv {
            plugins,
            capabilities: &self.capabilities,
            egress: &self.egress,
            sealer: &self.sealer,
        }
    }

    /// Expiry of tenants' certificates per host: every tenant's after a full reload, only the
    /// changed tenants' after an incremental one.
    pub fn export_cert_expiry(
        &self,
        old: &RoutingTable,
        new: &RoutingTable,
        only: Option<&[&str]>,
    ) {
        let gauge = &self.metrics.tls_certificate_expiry;
        // Only tenants with certificates take a tenant label (the labels are capped).
        let set = |t: &CompiledTenant| {
            if t.certs.is_empty() {
                return;
            }
            let label = self.metrics.tenant(&t.id);
            for c in &t.certs {
                for host in &c.hostnames {
                    gauge
                        .with_label_values(&[&*label, host])
                        .set(c.not_after_ms / 1000);
                }
            }
        };
        match only {
            None => {
                gauge.reset();
                new.tenants().for_each(|t| set(t));
            }
            Some(ids) => {
                for id in ids {
                    if let Some(t) = old.tenant(id).filter(|t| !t.certs.is_empty()) {
                        let label = self.metrics.tenant(&t.id);
                        for host in t.certs.iter().flat_map(|c| &c.hostnames) {
                            let _ = gauge.remove_label_values(&[&*label, host]);
                        }
                    }
                    if let Some(t) = new.tenant(id) {
                        set(t);
                    }
                }
            }
        }
    }

    /// Swaps the table in, starts the new balancers' upkeep, provisions the changed tenants'
    /// capabilities. It does not wait for a new route's names: one tenant's name that never
    /// answers must not hold every tenant's change back. Such a route answers
    /// `upstream_unresolvable` until its first answer, which its upkeep picks up at once.
    fn install(&self, table: RoutingTable, fresh: Vec<Upkeep>, changed: Vec<Tenant>) {
        self.live.store(table);
        for hc in fresh {
            hc.spawn();
        }
        let capabilities = self.capabilities.clone();
        tokio::spawn(async move { prepare_capabilities(&changed, &capabilities).await });
    }

    fn applied(&self, kind: &str, version: i64, changed_at_ms: i64) {
        self.metrics.config_version.set(version);
        self.count_reload(kind, "applied");
        if changed_at_ms > 0 {
            let delay = (now_ms() - changed_at_ms).max(0) as f64 / 1000.0;
            self.metrics.config_propagation.observe(delay);
        }
        tracing::info!(version, kind, "config applied");
    }

    fn count_reload(&self, kind: &str, outcome: &str) {
        self.metrics
            .config_reloads_total
            .with_label_values(&[kind, outcome])
            .inc();
    }
}
