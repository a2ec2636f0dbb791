//! Work a node does now and then beside config sync, each task with its own state: telling the
//! store which version it serves, pruning the audit log, the usage snapshot for the console, the
//! capabilities' upkeep, and the gauges of upstream targets' health.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_metrics::Metrics;
use wharf_plugins::capabilities::{Capabilities, UPKEEP_EVERY};
use wharf_plugins::PluginRuntime;
use wharf_tenancy::store::now_ms;
use wharf_tenancy::{AuditRetention, Store};

use super::table::LiveConfig;

/// How often a node tells the store which config version it serves.
const NODE_REPORT_EVERY: Duration = Duration::from_secs(5);

/// How often a node prunes the audit log to its retention.
const AUDIT_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Due once per period, at the first chance.
#[derive(Default)]
struct Every {
    last: Option<Instant>,
}

impl Every {
    fn due(&mut self, period: Duration) -> bool {
        let due = self.last.is_none_or(|t| t.elapsed() >= period);
        if due {
            self.last = Some(Instant::now());
        }
        due
    }
}

/// The tasks that need the store, run on the control plane's poll.
pub struct StoreTasks {
    /// How this node names itself in the store's node list (host name and admin address).
    node_id: String,
    started_at_ms: i64,
    audit: AuditRetention,
    report: Every,
    prune: Every,
    sweep: Every,
}

impl StoreTasks {
    pub fn new(node_id: String, audit: AuditRetention) -> StoreTasks {
        StoreTasks {
            node_id,
            started_at_ms: now_ms(),
            audit,
            report: Every::default(),
            prune: Every::default(),
            sweep: Every::default(),
        }
    }

    /// Whatever is due: failures are logged and retried next period.
    pub async fn run(&mut self, store: &Store, version: i64, runtime: &Arc<PluginRuntime>) {
        if self.sweep.due(runtime.sweep_every()) {
            sweep_compiled(store, runtime).await;
        }
        if self.report.due(NODE_REPORT_EVERY) {
            if let Err(e) = store
                .report_node(&self.node_id, version, self.started_at_ms)
                .await
            {
                tracing::warn!("cannot report this node to the store: {e}");
            }
        }
        if self.prune.due(AUDIT_PRUNE_EVERY) {
            if let Err(e) = store.prune_audit(&self.audit).await {
                tracing::warn!("cannot prune the audit log: {e}");
            }
        }
    }
}

/// Removes compiled code no plugin version in the store needs from this node's disk cache (its
/// files are read and removed off the control plane's thread). Without the store's list nothing
/// is removed.
async fn sweep_compiled(store: &Store, runtime: &Arc<PluginRuntime>) {
    let live = match store.plugin_hashes().await {
        Ok(live) => live,
        Err(e) => {
            tracing::warn!("cannot list plugin versions for the compiled-code sweep: {e}");
            return;
        }
    };
    let runtime = runtime.clone();
    match tokio::task::spawn_blocking(move || runtime.sweep_compiled_disk(&live)).await {
        Ok(swept) if swept.files > 0 => tracing::info!(
            files = swept.files,
            bytes = swept.bytes,
            kept_bytes = swept.kept_bytes,
            "compiled code nothing needs removed from the disk cache"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("the compiled-code sweep failed: {e}"),
    }
}

/// The console's per-minute usage snapshots, on this runtime.
pub fn spawn_usage_ticker(usage: Arc<crate::usage::UsageHistory>) {
    tokio::spawn(async move {
        let mut minute = tokio::time::interval(Duration::from_secs(60));
        minute.tick().await;
        loop {
            minute.tick().await;
            usage.snapshot();
        }
    });
}

/// The capabilities' periodic work (e.g. recounting tenants' Redis usage) over the tenants of
/// the table in force, on this runtime, in a task of its own: a long walk never holds up
/// config sync. The first run waits one period, for the node's first table.
pub fn spawn_capability_upkeep(capabilities: Arc<Capabilities>, live: Arc<LiveConfig>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            let tenants: Vec<String> = live.load().tenants().map(|t| t.id.to_string()).collect();
            if let Err(e) = capabilities.upkeep(&tenants).await {
                tracing::warn!("the capabilities' upkeep failed: {e}");
            }
        }
    });
}

/// Health of every health-checked upstream target, as gauges.
pub fn export_target_health(live: &LiveConfig, metrics: &Metrics) {
    let table = live.load();
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
        let tenant = metrics.tenant(&t.id);
        let lb = &route.balancer;
        for backend in lb.backends().get_backend().iter() {
            let healthy = lb.backends().ready(backend) as i64;
            let target = backend.addr.to_string();
            metrics
                .upstream_target_healthy
                .with_label_values(&[&*tenant, route.spec.id.as_str(), target.as_str()])
                .set(healthy);
        }
    }
}
