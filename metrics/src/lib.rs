//! Wharf's metric definitions and the one Prometheus registry they live in.
//!
//! Every metric Wharf exports is declared here, so the catalog has a single source.
//! Label values that come from tenants are bounded by the caller (see [`UNKNOWN_TENANT`]).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Label value for requests whose Host matched no tenant: one series, not one per host.
pub const UNKNOWN_TENANT: &str = "_unknown";
/// Label value for requests of a known tenant that matched no route.
pub const NO_ROUTE: &str = "_none";

/// Latency buckets from 100 µs to 10 s: a gateway hop is sub-millisecond, upstreams are not.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    pub requests_total: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub config_version: IntGauge,
    pub config_reloads_total: IntCounterVec,
    pub config_store_up: IntGauge,
    pub config_propagation: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests_total = IntCounterVec::new(
            Opts::new("wharf_requests_total", "Requests answered, by tenant, route and status code"),
            &["tenant", "route", "code"],
        )
        .expect("static metric definition");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "wharf_request_duration_seconds",
                "Time from request header received to response finished, by tenant",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["tenant"],
        )
        .expect("static metric definition");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "wharf_upstream_duration_seconds",
                "Time from sending the request upstream to its response header, by tenant",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["tenant"],
        )
        .expect("static metric definition");
        let config_version = IntGauge::new(
            "wharf_config_version",
            "Version of the config snapshot serving traffic on this node",
        )
        .expect("static metric definition");
        let config_reloads_total = IntCounterVec::new(
            Opts::new(
                "wharf_config_reloads_total",
                "Config reload attempts, by outcome (applied, unchanged is not counted, error)",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let config_store_up = IntGauge::new(
            "wharf_config_store_up",
            "1 when the last poll of the config store succeeded, 0 while serving the last good config",
        )
        .expect("static metric definition");
        let config_propagation = Histogram::with_opts(
            HistogramOpts::new(
                "wharf_config_propagation_seconds",
                "Delay between a change being committed to the store and this node applying it",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("static metric definition");

        let metrics = Metrics {
            registry,
            requests_total,
            request_duration,
            upstream_duration,
            config_version,
            config_reloads_total,
            config_store_up,
            config_propagation,
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.requests_total.clone()),
            Box::new(self.request_duration.clone()),
            Box::new(self.upstream_duration.clone()),
            Box::new(self.config_version.clone()),
            Box::new(self.config_reloads_total.clone()),
            Box::new(self.config_store_up.clone()),
            Box::new(self.config_propagation.clone()),
        ];
        for c in collectors {
            self.registry.register(c).expect("metric names are unique");
        }
    }

    /// The registry, for crates that add their own metrics (plugins, host calls).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding metrics failed: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
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
    fn renders_declared_families() {
        let m = Metrics::new();
        m.requests_total.with_label_values(&["acme", "api", "200"]).inc();
        m.config_version.set(7);
        let text = m.render();
        assert!(text.contains(r#"wharf_requests_total{code="200",route="api",tenant="acme"} 1"#));
        assert!(text.contains("wharf_config_version 7"));
    }
}
