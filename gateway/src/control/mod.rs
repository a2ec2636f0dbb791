//! The control plane: keeps the live routing table in step with the store, runs upstream health
//! checks, and serves the admin listener. It runs as a Pingora background service on its own
//! runtime, so the store pool and the admin server live and die with that runtime.

mod admin_listener;
pub mod balancer;
pub mod in_flight;
pub mod plugin_ref;
pub mod rate;
pub mod resolve;
mod shards;
pub mod table;

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::{ExecutionPhase, ListenFds, ShutdownWatch};
use pingora_core::services::Service;
use wharf_metrics::Metrics;
use wharf_tenancy::store::now_ms;
use wharf_tenancy::{ConfigDelta, Store, Tenant};

use wharf_plugins::capabilities::networking::EgressPolicy;
use wharf_plugins::capabilities::Capabilities;
use wharf_plugins::PluginRuntime;

use tokio::sync::OnceCell;

use crate::control::balancer::HealthChecked;
use crate::control::resolve::{
    prepare_capabilities, resolve_plugins, BlobSource, Loading, PluginSet,
};
use crate::control::table::{CompileEnv, CompiledTenant, LiveConfig, RoutingTable};
use crate::upgrade::AdminSocket;

/// A delta naming more tenants than this is applied as a full reload (one read instead of
/// thousands of per-tenant reads).
const MAX_DELTA_TENANTS: usize = 1000;

/// How often a node tells the store which config version it serves.
const NODE_REPORT_EVERY: Duration = Duration::from_secs(5);

/// How often a node prunes the audit log to its retention.
const AUDIT_PRUNE_EVERY: Duration = Duration::from_secs(60);

pub struct ControlPlane {
    pub store_url: String,
    pub runtime: Arc<PluginRuntime>,
    /// Plugin bytes for what the disk cache lacks; bound to the store once connected.
    pub blobs: Arc<BlobSource>,
    pub capabilities: Arc<Capabilities>,
    /// Where tenants' upstreams may point.
    pub egress: Arc<EgressPolicy>,
    /// Seals and opens tenants' TLS private keys.
    pub sealer: Arc<crate::tls::seal::KeySealer>,
    /// Per-minute usage snapshots for the console.
    pub usage: Arc<crate::usage::UsageHistory>,
    /// How this node names itself in the store's node list (host name and admin address).
    pub node_id: String,
    /// A Prometheus scraping every node: the console's usage graphs show the whole fleet.
    pub usage_prometheus_url: Option<String>,
    pub live: Arc<LiveConfig>,
    pub metrics: Arc<Metrics>,
    pub poll_interval: Duration,
    /// Where the admin API listens; also its key in the table of sockets an upgrade hands over.
    pub admin_addr: String,
    /// Bound before start-up so a busy port fails `wharf serve` at once; `None` when the
    /// listener comes from the process this one upgrades.
    pub admin_listener: Mutex<Option<std::net::TcpListener>>,
    /// The server's phases: after handing its sockets to a new process, this one stops accepting
    /// admin connections at shutdown (the new process answers on the same socket).
    pub phases: Mutex<Option<tokio::sync::broadcast::Receiver<ExecutionPhase>>>,
    /// The demo's echo upstream, when `--demo` is on.
    pub echo_listener: Mutex<Option<std::net::TcpListener>>,
    pub store_up: Arc<AtomicBool>,
    /// Set when shutdown begins (`/readyz` answers 503).
    pub draining: Arc<AtomicBool>,
    /// The proxy's listen addresses, for `/readyz`.
    pub listeners: Vec<String>,
    /// The operator's API token; `None` disables operator calls.
    pub operator_token: Option<String>,
    pub max_plugin_bytes: usize,
    /// Budgets for tenants' admin API calls and failed authentications.
    pub admin_limits: crate::api::throttle::AdminLimits,
    /// Requests being handled (the proxy's and the admin API's), for draining on shutdown.
    pub in_flight: crate::drain::InFlight,
    pub audit: wharf_tenancy::AuditRetention,
}

#[async_trait]
impl Service for ControlPlane {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let bound = self.admin_listener.lock().take();
        let admin = crate::upgrade::admin_listener(fds.as_ref(), &self.admin_addr, bound)
            .inspect_err(|e| tracing::error!("the admin listener cannot start: {e}"))
            .ok();
        self.run(admin, shutdown).await;
    }

    fn name(&self) -> &str {
        "wharf control plane"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(vec![self.admin_addr.clone()])
    }
}

impl ControlPlane {
    async fn run(&self, admin: Option<AdminSocket>, mut shutdown: ShutdownWatch) {
        for hc in self.live.load().health_checked() {
            hc.spawn();
        }
        self.export_cert_expiry(&RoutingTable::default(), &self.live.load(), None);
        let store_cell: Arc<OnceCell<Store>> = Arc::new(OnceCell::new());
        if let Some(socket) = admin {
            self.spawn_admin(socket, store_cell.clone(), &shutdown);
        }
        if let Some(listener) = take_listener(&self.echo_listener, "demo echo upstream") {
            tokio::spawn(async move {
                if let Err(e) = crate::echo::serve(listener, "demo-echo".into()).await {
                    tracing::error!("demo echo upstream stopped: {e}");
                }
            });
        }

        let usage = self.usage.clone();
        tokio::spawn(async move {
            let mut minute = tokio::time::interval(Duration::from_secs(60));
            minute.tick().await;
            loop {
                minute.tick().await;
                usage.snapshot();
            }
        });
        let mut store: Option<Store> = None;
        let mut first = true;
        let started_at_ms = now_ms();
        let mut last_report: Option<std::time::Instant> = None;
        let mut last_prune: Option<std::time::Instant> = None;
        loop {
            // Connect at once on start (the admin API needs the store), then poll.
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(self.poll_interval) => {}
                    _ = shutdown.changed() => {
                        self.draining.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
            first = false;
            if store.is_none() {
                match Store::connect(&self.store_url).await {
                    Ok(s) => {
                        let _ = store_cell.set(s.clone());
                        self.blobs.connect(&s);
                        store = Some(s);
                    }
                    Err(e) => {
                        self.mark_store(false, &e.to_string());
                        continue;
                    }
                }
            }
            if let Some(s) = &store {
                if last_report.is_none_or(|t: std::time::Instant| t.elapsed() >= NODE_REPORT_EVERY)
                {
                    last_report = Some(std::time::Instant::now());
                    if let Err(e) = s
                        .report_node(&self.node_id, self.live.load().version, started_at_ms)
                        .await
                    {
                        tracing::warn!("cannot report this node to the store: {e}");
                    }
                }
                if last_prune.is_none_or(|t: std::time::Instant| t.elapsed() >= AUDIT_PRUNE_EVERY) {
                    last_prune = Some(std::time::Instant::now());
                    if let Err(e) = s.prune_audit(&self.audit).await {
                        tracing::warn!("cannot prune the audit log: {e}");
                    }
                }
            }
            self.export_target_health();
            // Plugins the last table change let go of leave memory once over budget.
            self.runtime.trim_compiled();
            if let Some(s) = &store {
                match self.poll(s).await {
                    Ok(()) => self.mark_store(true, ""),
                    Err(e) => self.mark_store(false, &e.to_string()),
                }
            }
        }
        // Admin requests still running (an upload compiling, a write committing) need the
        // store: it closes once they are done (the drain ends the process then, or at the grace
        // period's end).
        while self.in_flight.count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(s) = store {
            s.close().await;
        }
    }
}

impl ControlPlane {
    /// Applies the store's config if its version moved: only the tenants changed since the
    /// version in force when the change log covers the gap, else the whole snapshot.
    async fn poll(&self, store: &Store) -> Result<(), wharf_tenancy::StoreError> {
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
    fn export_cert_expiry(&self, old: &RoutingTable, new: &RoutingTable, only: Option<&[&str]>) {
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

    /// Swaps the table in, starts new health checks, provisions the changed tenants' SQL.
    fn install(&self, table: RoutingTable, fresh: Vec<HealthChecked>, changed: Vec<Tenant>) {
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

    /// Health of every health-checked upstream target, as gauges.
    fn export_target_health(&self) {
        let table = self.live.load();
        // In tenant order, so which tenants fit under the metrics' label cap does not depend
        // on the table's (hashed) iteration order.
        let mut checked: Vec<_> = table
            .routes()
            .filter(|(_, r)| r.spec.health_check.is_some())
            .collect();
        checked.sort_by(|a, b| {
            a.0.id
                .cmp(&b.0.id)
                .then_with(|| a.1.spec.id.cmp(&b.1.spec.id))
        });
        for (t, route) in checked {
            let tenant = self.metrics.tenant(&t.id);
            let lb = &route.balancer;
            for backend in lb.backends().get_backend().iter() {
                let healthy = lb.backends().ready(backend) as i64;
                let target = backend.addr.to_string();
                self.metrics
                    .upstream_target_healthy
                    .with_label_values(&[&*tenant, route.spec.id.as_str(), target.as_str()])
                    .set(healthy);
            }
        }
    }

    /// Logs only transitions: a store outage must not flood the log every poll.
    fn mark_store(&self, up: bool, why: &str) {
        self.metrics.config_store_up.set(up as i64);
        let was_up = self.store_up.swap(up, Ordering::Relaxed);
        if was_up && !up {
            tracing::warn!(
                "config store unreachable, serving last good config (version {}): {why}",
                self.live.load().version
            );
        } else if !was_up && up {
            tracing::info!("config store reachable again");
        }
    }
}

/// A listener bound outside tokio, moved onto this runtime.
pub(crate) fn to_tokio(l: std::net::TcpListener) -> std::io::Result<tokio::net::TcpListener> {
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l)
}

/// The listener bound at start-up, moved onto this runtime; `None` if there is none. A listener
/// that cannot move is logged: the service it was for is not running.
fn take_listener(
    slot: &Mutex<Option<std::net::TcpListener>>,
    what: &str,
) -> Option<tokio::net::TcpListener> {
    match to_tokio(slot.lock().take()?) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!("the {what} cannot start: {e}");
            None
        }
    }
}
