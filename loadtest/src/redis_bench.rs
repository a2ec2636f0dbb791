//! Scenario `redis`: a plugin making one Redis call per request (`redis-rate-limit`: one INCR)
//! vs the same INCR issued directly through the same client code (the tenant's pool), back to
//! back in one run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wharf_metrics::Metrics;
use wharf_plugins::capabilities::redis::{Redis, RedisSettings};
use wharf_plugins::capabilities::sql::SqlBackend;
use wharf_plugins::capabilities::{Capabilities, CapabilitySettings, DEFAULT_RESULT_BUDGET_BYTES};
use wharf_plugins::types::{Header, Request};
use wharf_plugins::{Invocation, PluginQuotas, PluginRuntime, RuntimeSettings};
use wharf_tenancy::Quotas;

use crate::stats::{micros, Summary};

pub(crate) fn run(redis_url: String, bytes: Vec<u8>, iterations: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let capabilities = Capabilities::new(
            CapabilitySettings {
                redis: RedisSettings {
                    url: Some(redis_url),
                },
                sql: SqlBackend::Disabled,
                ..Default::default()
            },
            metrics.clone(),
            DEFAULT_RESULT_BUDGET_BYTES,
        )?;
        let quotas = Quotas {
            redis: wharf_tenancy::RedisQuotas {
                commands_per_second: 1_000_000,
                ..Default::default()
            },
            ..Quotas::default()
        };
        let tenant_caps = capabilities.tenant("bench", &quotas);
        let redis = tenant_caps
            .get::<Redis>()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let runtime = PluginRuntime::new(RuntimeSettings::default(), None, metrics.clone())?;
        let compiled = runtime.validate(&bytes)?;
        let tenant: Arc<str> = "bench".into();
        let plugin: Arc<str> = "redis-rate-limit".into();
        let config = Arc::new(BTreeMap::from([(
            "limit".to_string(),
            "1000000000".to_string(),
        )]));
        let req = Request {
            method: "GET".into(),
            path: "/".into(),
            headers: vec![Header {
                name: "x-api-key".into(),
                value: b"bench".to_vec(),
            }],
            client_addr: "127.0.0.1".into(),
            tenant_id: "bench".into(),
            route_id: "api".into(),
        };
        let quotas = PluginQuotas {
            deadline_ms: 1000,
            ..PluginQuotas::default()
        };
        println!("{iterations} sequential requests each, after 500 warm-up; one INCR per request");
        println!("{:<14} {:>10} {:>10} {:>10}", "path", "p50", "p90", "p99");
        let mut results = Vec::new();
        for round in 0..2 {
            let mut direct = Vec::with_capacity(iterations);
            let mut via_plugin = Vec::with_capacity(iterations);
            for i in 0..iterations + 500 {
                let t = Instant::now();
                redis
                    .command("INCR", vec![b"rl:bench-direct".to_vec()])
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let d = t.elapsed();
                let t = Instant::now();
                let inv = Invocation {
                    tenant: &tenant,
                    plugin: &plugin,
                    quotas,
                    config: config.clone(),
                    outbound: Default::default(),
                    request_body: None,
                    capabilities: Some(tenant_caps.clone()),
                };
                let mut instance = runtime.instantiate(inv, &compiled).await?;
                instance.on_request(req.clone()).await?;
                drop(instance);
                let p = t.elapsed();
                if i >= 500 {
                    direct.push(d);
                    via_plugin.push(p);
                }
            }
            let (d, p) = (Summary::of(&mut direct), Summary::of(&mut via_plugin));
            if round == 1 {
                println!(
                    "{:<14} {:>10} {:>10} {:>10}",
                    "direct INCR",
                    micros(d.p50),
                    micros(d.p90),
                    micros(d.p99)
                );
                println!(
                    "{:<14} {:>10} {:>10} {:>10}",
                    "plugin INCR",
                    micros(p.p50),
                    micros(p.p90),
                    micros(p.p99)
                );
                results.push(p.p50.as_secs_f64() / d.p50.as_secs_f64());
            }
        }
        println!("plugin / direct median ratio: {:.2}", results[0]);
        anyhow::Ok(())
    })
}
