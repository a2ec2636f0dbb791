//! Wharf's metric definitions and the one Prometheus registry they live in.
//!
//! Every metric Wharf exports is declared here, so the catalog has a single source.
//! Label values that come from tenants are bounded by the caller (see [`UNKNOWN_TENANT`]).

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod allocations;
mod plugin_series;

pub use plugin_series::PluginSeries;

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub use prometheus::proto::MetricFamily;
use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Label value for requests whose Host matched no tenant: one series, not one per host.
pub const UNKNOWN_TENANT: &str = "_unknown";
/// Label value shared by tenants beyond the label cap.
pub const OTHER_TENANTS: &str = "_other";
/// Default cap on distinct tenant label values.
pub const DEFAULT_TENANT_LABEL_CAP: usize = 1000;
/// Label value for requests of a known tenant that matched no route.
pub const NO_ROUTE: &str = "_none";

/// Latency buckets from 100 µs to 10 s: a gateway hop is sub-millisecond, upstreams are not.
pub mod tracing_setup;

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

const FUEL_BUCKETS: &[f64] = &[1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

pub struct Metrics {
    registry: Registry,
    /// Tenant label values admitted so far; past `tenant_label_cap`, tenants share `OTHER_TENANTS`.
    tenant_labels: RwLock<HashMap<String, TenantLabel>>,
    tenant_label_cap: usize,
    other_tenants: TenantLabel,
    // Requests
    pub requests_total: IntCounterVec,
    /// Process-wide, only while counting is on ([`allocations`]).
    pub heap_allocations_total: IntCounter,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub upstream_retries_total: IntCounterVec,
    pub upstream_ejections_total: IntCounterVec,
    pub gateway_duration: HistogramVec,
    pub bytes_total: IntCounterVec,
    pub upstream_target_healthy: IntGaugeVec,
    // Config
    pub config_version: IntGauge,
    pub config_reloads_total: IntCounterVec,
    pub config_store_up: IntGauge,
    pub config_propagation: Histogram,
    // Plugins
    pub plugin_invocations_total: IntCounterVec,
    pub plugin_duration: HistogramVec,
    pub plugin_fuel_consumed: HistogramVec,
    pub plugin_instantiations_total: IntCounterVec,
    pub plugin_logs_total: IntCounterVec,
    pub plugin_instances_in_use: IntGauge,
    pub plugin_vms: IntGauge,
    pub plugin_vm_restarts_total: IntCounterVec,
    pub plugin_module_metric: IntGaugeVec,
    pub plugin_instance_capacity: IntGauge,
    pub plugin_cpu_seconds: CounterVec,
    pub plugin_queue_wait: HistogramVec,
    pub plugin_yields_total: IntCounterVec,
    pub compiled_cache_hits_total: IntCounterVec,
    pub compiled_cache_misses_total: IntCounter,
    pub compiled_components: IntGauge,
    pub compiled_cache_bytes: IntGauge,
    pub compiled_cache_evictions_total: IntCounter,
    pub compiled_disk_bytes: IntGauge,
    pub plugin_compiles_total: IntCounterVec,
    // TLS
    pub tls_handshakes_total: IntCounterVec,
    pub tls_certificate_expiry: IntGaugeVec,
    pub acme_orders_total: IntCounterVec,
    // Host calls and backends
    pub host_calls_total: IntCounterVec,
    pub host_call_duration: HistogramVec,
    pub pool_connections: IntGaugeVec,
    pub pool_wait: HistogramVec,
    pub quota_rejections_total: IntCounterVec,
    pub pool_quota: IntGaugeVec,
    pub rate_limit_fallback_total: IntCounterVec,
    // Upstream names
    pub dns_resolutions_total: IntCounterVec,
    pub dns_names: IntGauge,
    // Clients
    pub client_connections_refused_total: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_tenant_label_cap(DEFAULT_TENANT_LABEL_CAP)
    }

    /// Metrics whose `tenant` label takes at most `cap` distinct values; later tenants are
    /// counted together under `_other` (cardinality control).
    pub fn with_tenant_label_cap(cap: usize) -> Self {
        let r = Registry::new();
        Metrics {
            tenant_labels: RwLock::new(HashMap::new()),
            tenant_label_cap: cap,
            other_tenants: TenantLabel::new(OTHER_TENANTS.into()),
            heap_allocations_total: counter(&r, "wharf_heap_allocations_total", "Heap allocations by the whole process; counted only while WHARF_COUNT_ALLOCATIONS=1 (a benchmark setting), else 0"),
            requests_total: counter_vec(&r, "wharf_requests_total", "Requests answered, by tenant, route and status code", &["tenant", "route", "code"]),
            request_duration: histogram_vec(&r, "wharf_request_duration_seconds", "Time from request header received to response finished, by tenant", &["tenant"], LATENCY_BUCKETS),
            upstream_retries_total: counter_vec(&r, "wharf_upstream_retries_total", "Requests sent to another target after a failed connection (reason connect_failed), or not because the route's retry budget was spent (reason budget_exhausted)", &["tenant", "route", "reason"]),
            upstream_ejections_total: counter_vec(&r, "wharf_upstream_ejections_total", "Targets left out of their route's selection for a while (passive health): after failed connections or 5xx answers in a row", &["tenant", "route", "reason"]),
            upstream_duration: histogram_vec(&r, "wharf_upstream_duration_seconds", "Time from sending the request upstream to its response header, by tenant", &["tenant"], LATENCY_BUCKETS),
            gateway_duration: histogram_vec(&r, "wharf_gateway_duration_seconds", "Time Wharf itself added to a request: total minus the upstream's time to response header, by tenant", &["tenant"], LATENCY_BUCKETS),
            bytes_total: counter_vec(&r, "wharf_bytes_total", "Body bytes, by tenant and direction (in: from clients, out: to clients)", &["tenant", "direction"]),
            upstream_target_healthy: gauge_vec(&r, "wharf_upstream_target_healthy", "1 when a health-checked upstream target passes its check, else 0", &["tenant", "route", "target"]),
            config_version: gauge(&r, "wharf_config_version", "Version of the config snapshot serving traffic on this node"),
            config_reloads_total: counter_vec(&r, "wharf_config_reloads_total", "Config reloads after the store's version moved, by kind (full: the whole snapshot; incremental: only the tenants changed) and outcome (applied, error)", &["kind", "outcome"]),
            config_store_up: gauge(&r, "wharf_config_store_up", "1 when the last poll of the config store succeeded, 0 while serving the last good config"),
            config_propagation: histogram_vec(&r, "wharf_config_propagation_seconds", "Delay between a change being committed to the store and this node applying it", &[], &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]).with_label_values(&[] as &[&str]),
            plugin_invocations_total: counter_vec(&r, "wharf_plugin_invocations_total", "Plugin phase calls, by tenant, plugin, phase and outcome (ok or the error kind)", &["tenant", "plugin", "phase", "outcome"]),
            plugin_duration: histogram_vec(&r, "wharf_plugin_duration_seconds", "Wall time of one plugin phase call, instantiation included for on_request (and, for a request-filter, its teardown)", &["tenant", "phase"], LATENCY_BUCKETS),
            plugin_fuel_consumed: histogram_vec(&r, "wharf_plugin_fuel_consumed", "Fuel one plugin instance used for its whole request", &["tenant"], FUEL_BUCKETS),
            plugin_instantiations_total: counter_vec(&r, "wharf_plugin_instantiations_total", "Plugin instances created (one per plugin per request)", &["tenant"]),
            plugin_logs_total: counter_vec(&r, "wharf_plugin_logs_total", "Plugin log lines, emitted or dropped by the per-request quota", &["tenant", "outcome"]),
            plugin_instances_in_use: gauge(&r, "wharf_plugin_instances_in_use", "Plugin instances alive now, all tenants"),
            plugin_vms: gauge(&r, "wharf_plugin_vms", "proxy-wasm VMs alive now (one per tenant, plugin version and configuration in use), all tenants"),
            plugin_vm_restarts_total: counter_vec(&r, "wharf_plugin_vm_restarts_total", "proxy-wasm VMs started again after one failed (a trap, a limit, an ABI misuse), by tenant", &["tenant"]),
            plugin_module_metric: gauge_vec(&r, "wharf_plugin_module_metric", "Metrics proxy-wasm modules define (proxy_define_metric), by tenant, the module's metric name and its kind (counter, gauge, histogram: the last value recorded); at most 64 per tenant and node", &["tenant", "name", "kind"]),
            plugin_instance_capacity: gauge(&r, "wharf_plugin_instance_capacity", "Plugin instances the pool can hold at once"),
            plugin_cpu_seconds: float_counter_vec(&r, "wharf_plugin_cpu_seconds_total", "Time a tenant's plugins held a plugin thread (running wasm or host code), by tenant", &["tenant"]),
            plugin_queue_wait: histogram_vec(&r, "wharf_plugin_queue_wait_seconds", "Time one plugin instance waited for a plugin thread or its tenant's instance quota, per wait", &["tenant"], LATENCY_BUCKETS),
            plugin_yields_total: counter_vec(&r, "wharf_plugin_yields_total", "Time slices a running plugin handed the CPU to others waiting (one per epoch tick while contended)", &["tenant"]),
            compiled_cache_hits_total: counter_vec(&r, "wharf_compiled_cache_hits_total", "Compiled-component lookups served from cache, by tier (memory, disk)", &["tier"]),
            compiled_cache_misses_total: counter(&r, "wharf_compiled_cache_misses_total", "Compiled-component lookups that had to compile"),
            compiled_components: gauge(&r, "wharf_compiled_components", "Distinct compiled components held in memory"),
            compiled_disk_bytes: gauge(&r, "wharf_compiled_disk_bytes", "Compiled code in this node's disk cache, in bytes, after its last sweep (code of deleted plugin versions and of engines no longer run is removed)"),
            compiled_cache_bytes: gauge(&r, "wharf_compiled_cache_bytes", "Compiled code held in memory, in bytes (plugins in use plus unused ones within compiled_cache_bytes)"),
            plugin_compiles_total: counter_vec(&r, "wharf_plugin_compiles_total", "Plugins compiled, by compiler: winch (proxy-wasm modules' baseline code, served first), cranelift (optimized code; a baseline module's replaces it in the background), dropped (an optimization not queued: its code stays baseline until next loaded)", &["compiler"]),
            compiled_cache_evictions_total: counter(&r, "wharf_compiled_cache_evictions_total", "Compiled plugins no request was running, evicted from memory past the compiled_cache_bytes budget (the next request loads them from the disk cache)"),
            tls_handshakes_total: counter_vec(&r, "wharf_tls_handshakes_total", "TLS handshakes on the HTTPS listener by the tenant owning the SNI name and outcome (tenant_certificate, default_certificate, acme_challenge: a TLS-ALPN-01 validation answered, refused: no certificate for that name)", &["tenant", "outcome"]),
            tls_certificate_expiry: gauge_vec(&r, "wharf_tls_certificate_expiry_timestamp_seconds", "When a tenant's certificate for a hostname expires (Unix time)", &["tenant", "host"]),
            acme_orders_total: counter_vec(&r, "wharf_acme_orders_total", "ACME orders this node placed for tenants' hostnames, by outcome (issued, failed, postponed: over an hourly cap, or an uploaded certificate serves the name)", &["outcome"]),
            host_calls_total: counter_vec(&r, "wharf_host_calls_total", "Host calls from plugins, by tenant, plugin, function and outcome", &["tenant", "plugin", "function", "outcome"]),
            host_call_duration: histogram_vec(&r, "wharf_host_call_duration_seconds", "Duration of host calls from plugins, by tenant and function", &["tenant", "function"], LATENCY_BUCKETS),
            pool_connections: gauge_vec(&r, "wharf_pool_connections", "Connections of a tenant's backend pool, by state (in_use, idle)", &["tenant", "backend", "state"]),
            pool_wait: histogram_vec(&r, "wharf_pool_wait_seconds", "Time a host call waited for a pooled connection", &["tenant", "backend"], LATENCY_BUCKETS),
            quota_rejections_total: counter_vec(&r, "wharf_quota_rejections_total", "Calls refused because a tenant quota was used up, by quota", &["tenant", "quota"]),
            pool_quota: gauge_vec(&r, "wharf_pool_quota", "A tenant's pool size quota, to compare with wharf_pool_connections", &["tenant", "backend"]),
            rate_limit_fallback_total: counter_vec(&r, "wharf_rate_limit_fallback_total", "Fleet-wide rate-limit checks decided by the local limiter because Redis was unreachable", &["tenant"]),
            dns_resolutions_total: counter_vec(&r, "wharf_dns_resolutions_total", "Resolutions of upstream names: ok, stale (failed, last good addresses kept) or failed", &["outcome"]),
            dns_names: gauge(&r, "wharf_dns_names", "Upstream names this node keeps resolved"),
            client_connections_refused_total: counter_vec(&r, "wharf_client_connections_refused_total", "Connections closed before they were served because their client address was over a [clients] budget, by reason (new_connection_rate: closed on accept; open_connections: it held max_connections_per_address)", &["reason"]),
            registry: r,
        }
    }

    /// The label value for a tenant: its id while under the cap, else `_other`.
    pub fn tenant(&self, id: &str) -> Arc<str> {
        self.with_tenant(id, |t| t.label.clone())
    }

    /// The tenant's series in the plugin families, resolved once per label.
    pub fn plugin_series(&self, id: &str) -> Arc<PluginSeries> {
        self.with_tenant(id, |t| {
            t.plugins
                .get_or_init(|| Arc::new(PluginSeries::new(self, t.label.clone())))
                .clone()
        })
    }

    /// `f` on the tenant's entry, admitting it while under the cap (else `_other`'s).
    fn with_tenant<R>(&self, id: &str, f: impl Fn(&TenantLabel) -> R) -> R {
        if let Some(t) = self.tenant_labels.read().get(id) {
            return f(t);
        }
        let mut labels = self.tenant_labels.write();
        if let Some(t) = labels.get(id) {
            return f(t);
        }
        if labels.len() >= self.tenant_label_cap {
            return f(&self.other_tenants);
        }
        let t = labels
            .entry(id.to_string())
            .or_insert_with(|| TenantLabel::new(id.into()));
        f(t)
    }

    /// The label a tenant's series carry, without assigning one: `None` while it has none (no
    /// series yet, under the cap), `_other` once the cap is reached.
    pub fn tenant_label_if_known(&self, id: &str) -> Option<Arc<str>> {
        let labels = self.tenant_labels.read();
        match labels.get(id) {
            Some(t) => Some(t.label.clone()),
            None if labels.len() >= self.tenant_label_cap => Some(self.other_tenants.label.clone()),
            None => None,
        }
    }

    /// The families a tenant's usage is read from (requests, latency, plugin calls and fuel,
    /// host calls, quota refusals), collected alone: gathering the whole registry costs a few
    /// milliseconds per call at a few thousand tenants.
    pub fn usage_families(&self) -> Vec<MetricFamily> {
        use prometheus::core::Collector;
        let collectors: [&dyn Collector; 6] = [
            &self.requests_total,
            &self.request_duration,
            &self.plugin_invocations_total,
            &self.plugin_fuel_consumed,
            &self.host_calls_total,
            &self.quota_rejections_total,
        ];
        collectors.iter().flat_map(|c| c.collect()).collect()
    }

    /// The registry, for crates that add their own metrics (plugins, host calls).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        let counted = allocations::count();
        let exported = self.heap_allocations_total.get();
        if counted > exported {
            self.heap_allocations_total.inc_by(counted - exported);
        }
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding metrics failed: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Registers a metric Wharf defines statically. A bad definition or a duplicate name is a bug
/// every test run hits at start-up, never input: it panics, saying which.
#[allow(clippy::expect_used)]
fn register<C: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    made: prometheus::Result<C>,
) -> C {
    let c = made.expect("static metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(name, help))
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels))
}

fn float_counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    register(r, CounterVec::new(Opts::new(name, help), labels))
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(r, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    register(
        r,
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        ),
    )
}

/// A tenant's label value, and its plugin series once a plugin of it ran.
struct TenantLabel {
    label: Arc<str>,
    plugins: OnceLock<Arc<PluginSeries>>,
}

impl TenantLabel {
    fn new(label: Arc<str>) -> TenantLabel {
        TenantLabel {
            label,
            plugins: OnceLock::new(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_labels_are_capped() {
        let m = Metrics::with_tenant_label_cap(2);
        assert_eq!(&*m.tenant("a"), "a");
        assert_eq!(&*m.tenant("b"), "b");
        assert_eq!(&*m.tenant("c"), OTHER_TENANTS);
        assert_eq!(&*m.tenant("a"), "a", "admitted tenants keep their label");
        assert_eq!(&*m.tenant(UNKNOWN_TENANT), OTHER_TENANTS);
    }

    #[test]
    fn renders_declared_families() {
        let m = Metrics::new();
        m.requests_total
            .with_label_values(&["acme", "api", "200"])
            .inc();
        m.config_version.set(7);
        let text = m.render();
        assert!(text.contains(r#"wharf_requests_total{code="200",route="api",tenant="acme"} 1"#));
        assert!(text.contains("wharf_config_version 7"));
    }
}
