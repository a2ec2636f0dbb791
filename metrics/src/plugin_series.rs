//! One tenant's plugin series, resolved once. Every request's plugin instance touches the same
//! seven series of its tenant (CPU, queue wait, yields, instantiations, fuel, call durations);
//! looking each up by its label values hashes the labels and takes the family's lock, seven
//! times per instance (~0.3 µs of a ~8 µs instance, `wharf-load plugin`). Resolved here once
//! per tenant label, they are a pointer away.

use std::sync::Arc;

use prometheus::{Counter, Histogram, IntCounter};

use crate::Metrics;

/// A tenant's series in the plugin families (its label: its id, or `_other` past the cap).
pub struct PluginSeries {
    pub label: Arc<str>,
    pub cpu_seconds: Counter,
    pub queue_wait: Histogram,
    pub yields: IntCounter,
    pub instantiations: IntCounter,
    pub fuel_consumed: Histogram,
    /// `wharf_plugin_duration_seconds` of a component's phases.
    pub on_request: Histogram,
    pub on_response: Histogram,
    pub on_response_body: Histogram,
}

impl PluginSeries {
    pub(crate) fn new(m: &Metrics, label: Arc<str>) -> PluginSeries {
        let l = &[&*label];
        let phase = |p: &str| m.plugin_duration.with_label_values(&[&*label, p]);
        PluginSeries {
            cpu_seconds: m.plugin_cpu_seconds.with_label_values(l),
            queue_wait: m.plugin_queue_wait.with_label_values(l),
            yields: m.plugin_yields_total.with_label_values(l),
            instantiations: m.plugin_instantiations_total.with_label_values(l),
            fuel_consumed: m.plugin_fuel_consumed.with_label_values(l),
            on_request: phase("on_request"),
            on_response: phase("on_response"),
            on_response_body: phase("on_response_body"),
            label,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Metrics, OTHER_TENANTS};
    use std::sync::Arc;

    #[test]
    fn a_tenants_series_are_the_registry_s_and_capped_like_its_label() {
        let m = Metrics::with_tenant_label_cap(1);
        let a = m.plugin_series("a");
        assert!(Arc::ptr_eq(&a, &m.plugin_series("a")), "resolved once");
        a.instantiations.inc();
        a.on_request.observe(0.001);
        let b = m.plugin_series("b");
        assert_eq!(&*b.label, OTHER_TENANTS);
        assert!(
            Arc::ptr_eq(&b, &m.plugin_series("c")),
            "past the cap: one shared"
        );
        b.fuel_consumed.observe(5.0);
        let text = m.render();
        assert!(text.contains(r#"wharf_plugin_instantiations_total{tenant="a"} 1"#));
        assert!(text
            .contains(r#"wharf_plugin_duration_seconds_count{phase="on_request",tenant="a"} 1"#));
        assert!(text.contains(r#"wharf_plugin_fuel_consumed_count{tenant="_other"} 1"#));
    }
}
