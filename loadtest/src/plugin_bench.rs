//! Scenario `plugin`: cost of one plugin request (fresh store + instantiate + `on-request`), with
//! the pooling allocator and with on-demand allocation, side by side in the same run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wharf_metrics::Metrics;
use wharf_plugins::types::{Header, Request};
use wharf_plugins::{Invocation, PluginQuotas, PluginRuntime, RuntimeSettings};

use crate::stats::{micros, Summary};

pub(crate) struct Args {
    pub plugin: String,
    pub bytes: Vec<u8>,
    pub iterations: usize,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "plugin {} ({} bytes), {} requests per mode, after 1000 warm-up",
        args.plugin,
        args.bytes.len(),
        args.iterations
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "mode", "p50", "p90", "p99", "max", "req/s (1 thread)"
    );
    let mut medians = Vec::new();
    for pooling in [true, false] {
        let settings = RuntimeSettings {
            pooling,
            max_instances: 100,
            ..RuntimeSettings::default()
        };
        let runtime = PluginRuntime::new(settings, None, Arc::new(Metrics::new()))?;
        let mode = if runtime.pooled() {
            "pooling"
        } else if pooling {
            "pooling?"
        } else {
            "on-demand"
        };
        let (summary, rps) = rt.block_on(measure(&runtime, &args))?;
        println!(
            "{:<10} {:>10} {:>10} {:>10} {:>10} {:>12.0}",
            mode,
            micros(summary.p50),
            micros(summary.p90),
            micros(summary.p99),
            micros(summary.max),
            rps
        );
        medians.push(summary.p50);
    }
    if let [pool, demand] = medians[..] {
        println!(
            "on-demand / pooling median ratio: {:.2}",
            demand.as_secs_f64() / pool.as_secs_f64()
        );
    }
    Ok(())
}

async fn measure(runtime: &PluginRuntime, args: &Args) -> anyhow::Result<(Summary, f64)> {
    let compiled = runtime.validate(&args.bytes)?;
    let tenant: Arc<str> = "bench".into();
    let plugin: Arc<str> = args.plugin.as_str().into();
    let config = Arc::new(BTreeMap::from([(
        "request-value".to_string(),
        "bench".to_string(),
    )]));
    let req = Request {
        method: "GET".into(),
        path: "/api/users?id=7".into(),
        headers: vec![
            Header {
                name: "host".into(),
                value: b"api.acme.test".to_vec(),
            },
            Header {
                name: "user-agent".into(),
                value: b"wharf-load".to_vec(),
            },
            Header {
                name: "accept".into(),
                value: b"*/*".to_vec(),
            },
        ],
        client_addr: "127.0.0.1".into(),
        tenant_id: "bench".into(),
        route_id: "api".into(),
    };
    let quotas = PluginQuotas {
        deadline_ms: 1000,
        ..PluginQuotas::default()
    };
    let mut samples = Vec::with_capacity(args.iterations);
    let total = Instant::now();
    for i in 0..args.iterations + 1000 {
        let start = Instant::now();
        let inv = Invocation {
            tenant: &tenant,
            plugin: &plugin,
            quotas,
            config: config.clone(),
            outbound: Default::default(),
            request_body: None,
            capabilities: None,
        };
        let mut instance = runtime.instantiate(inv, &compiled).await?;
        instance.on_request(req.clone()).await?;
        drop(instance);
        if i >= 1000 {
            samples.push(start.elapsed());
        }
    }
    let elapsed = total.elapsed().as_secs_f64();
    let rps = (args.iterations + 1000) as f64 / elapsed;
    Ok((Summary::of(&mut samples), rps))
}
