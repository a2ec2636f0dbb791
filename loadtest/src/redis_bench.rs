//! Scenario `redis`: a plugin making one Redis call per request (`redis-rate-limit`: one INCR)
//! vs the same INCR issued directly through the same client code (the tenant's pool), back to
//! back in one run.

use std::sync::Arc;

use wharf_metrics::Metrics;
use wharf_plugins::capabilities::redis::{Redis, RedisSettings};
use wharf_plugins::capabilities::sql::SqlBackend;
use wharf_plugins::capabilities::CapabilitySettings;
use wharf_tenancy::Quotas;

use crate::host_call::{block_on, compare, tenant_capabilities, PluginCall};

pub(crate) fn run(redis_url: String, bytes: Vec<u8>, iterations: usize) -> anyhow::Result<()> {
    block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let settings = CapabilitySettings {
            redis: RedisSettings {
                url: Some(redis_url),
                ..Default::default()
            },
            sql: SqlBackend::Disabled,
            ..Default::default()
        };
        let quotas = Quotas {
            redis: wharf_tenancy::RedisQuotas {
                commands_per_second: 1_000_000,
                ..Default::default()
            },
            ..Quotas::default()
        };
        let caps = tenant_capabilities(settings, &quotas, &metrics)?;
        let redis = caps
            .get::<Redis>()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let plugin = PluginCall::new(
            "redis-rate-limit",
            &bytes,
            &metrics,
            caps.clone(),
            &[("limit", "1000000000")],
            Vec::new(),
            &[("x-api-key", "bench")],
        )?;
        let direct = move || async move {
            redis
                .command("INCR", vec![b"rl:bench-direct".to_vec()])
                .await
                .map(drop)
                .map_err(|e| anyhow::anyhow!("{e}"))
        };
        compare("INCR", iterations, direct, &plugin).await
    })
}
