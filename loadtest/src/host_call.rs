//! What the host-call scenarios (`redis`, `http`) share: the tenant's capabilities, a plugin
//! run once per request in a fresh instance (`on-request` with the tenant's capabilities), and
//! the loop that times the same call made directly and through the plugin, back to back.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use wharf_metrics::Metrics;
use wharf_plugins::capabilities::{
    Capabilities, CapabilitySettings, TenantCapabilities, DEFAULT_RESULT_BUDGET_BYTES,
};
use wharf_plugins::types::{Request, RequestAction};
use wharf_plugins::{CompiledPlugin, Invocation, PluginQuotas, PluginRuntime, RuntimeSettings};
use wharf_tenancy::outbound::OutboundHost;
use wharf_tenancy::Quotas;

use crate::stats::{micros, Summary};

const WARM_UP: usize = 500;

/// Runs a scenario on a current-thread runtime (one thread: calls are sequential).
pub(crate) fn block_on<F: Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Tenant `bench`'s capabilities on a node with these settings.
pub(crate) fn tenant_capabilities(
    settings: CapabilitySettings,
    quotas: &Quotas,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<TenantCapabilities>> {
    let capabilities = Capabilities::new(settings, metrics.clone(), DEFAULT_RESULT_BUDGET_BYTES)?;
    Ok(capabilities.tenant("bench", quotas))
}

/// One plugin attached with `config` (and `outbound`), called with a GET carrying `headers`.
pub(crate) struct PluginCall {
    runtime: Arc<PluginRuntime>,
    compiled: Arc<CompiledPlugin>,
    tenant: Arc<str>,
    plugin: Arc<str>,
    config: wharf_plugins::AttachmentConfig,
    outbound: Arc<[OutboundHost]>,
    caps: Arc<TenantCapabilities>,
    request: Request,
}

impl PluginCall {
    pub(crate) fn new(
        name: &str,
        bytes: &[u8],
        metrics: &Arc<Metrics>,
        caps: Arc<TenantCapabilities>,
        config: &[(&str, &str)],
        outbound: Vec<OutboundHost>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<PluginCall> {
        let runtime = PluginRuntime::new(RuntimeSettings::default(), None, metrics.clone())?;
        let compiled = runtime.validate(bytes)?;
        Ok(PluginCall {
            runtime,
            compiled,
            tenant: "bench".into(),
            plugin: name.into(),
            config: wharf_plugins::attachment_config(config.iter().copied()),
            outbound: outbound.into(),
            caps,
            request: wharf_plugins::test_support::get_request("/", headers, "bench"),
        })
    }

    /// One request: a fresh instance, `on-request`, the instance dropped.
    pub(crate) async fn once(&self) -> anyhow::Result<RequestAction> {
        let inv = Invocation {
            tenant: &self.tenant,
            plugin: &self.plugin,
            quotas: PluginQuotas {
                deadline_ms: 1000,
                ..PluginQuotas::default()
            },
            config: self.config.clone(),
            outbound: self.outbound.clone(),
            request_body: None,
            capabilities: Some(self.caps.clone()),
        };
        let mut instance = self.runtime.instantiate(inv, &self.compiled).await?;
        Ok(instance.on_request(self.request.clone()).await?)
    }
}

/// Times `iterations` (after 500 warm-up) of `direct` and of the plugin, alternating, twice;
/// prints the second pass (`label` names the call) and the p50 and p99 ratios.
pub(crate) async fn compare<F, Fut>(
    label: &str,
    iterations: usize,
    mut direct: F,
    plugin: &PluginCall,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    println!(
        "{iterations} sequential requests each, after {WARM_UP} warm-up; one {label} per request"
    );
    println!("{:<16} {:>10} {:>10} {:>10}", "path", "p50", "p90", "p99");
    for round in 0..2 {
        let mut direct_times = Vec::with_capacity(iterations);
        let mut plugin_times = Vec::with_capacity(iterations);
        for i in 0..iterations + WARM_UP {
            let t = Instant::now();
            direct().await?;
            let d = t.elapsed();
            let t = Instant::now();
            plugin.once().await?;
            let p = t.elapsed();
            if i >= WARM_UP {
                direct_times.push(d);
                plugin_times.push(p);
            }
        }
        if round == 0 {
            continue;
        }
        let (d, p) = (
            Summary::of(&mut direct_times),
            Summary::of(&mut plugin_times),
        );
        for (path, s) in [("direct", &d), ("plugin", &p)] {
            println!(
                "{:<16} {:>10} {:>10} {:>10}",
                format!("{path} {label}"),
                micros(s.p50),
                micros(s.p90),
                micros(s.p99)
            );
        }
        println!(
            "plugin / direct median ratio: {:.2} (p99: {:.2})",
            p.p50.as_secs_f64() / d.p50.as_secs_f64(),
            p.p99.as_secs_f64() / d.p99.as_secs_f64()
        );
    }
    Ok(())
}
