//! Scenario `plugin`: cost of one plugin request (fresh store + instantiate + `on-request`), with
//! the pooling allocator and with on-demand allocation, side by side in the same run.

use std::sync::Arc;
use std::time::Instant;

use wharf_metrics::Metrics;
use wharf_plugins::types::{Header, Request, Response};
use wharf_plugins::{AttachmentConfig, Invocation, PluginQuotas, PluginRuntime, RuntimeSettings};

use crate::stats::{micros, Summary};

pub(crate) struct Args {
    pub plugin: String,
    pub bytes: Vec<u8>,
    pub iterations: usize,
    /// 0: instantiate + `on-request`, one at a time. N: both phases, N instances alive at once.
    pub in_flight: usize,
    pub pooling_only: bool,
    /// Bytes written between two calls (untimed), as the proxy's own work would.
    pub evict: usize,
    /// With `in_flight` 0: instantiation as a call of its own (`PluginRuntime::instantiate`).
    pub start_apart: bool,
}

/// Writes one byte per cache line of `junk`.
fn evict(junk: &mut [u8]) {
    for i in (0..junk.len()).step_by(64) {
        junk[i] = junk[i].wrapping_add(1);
    }
    std::hint::black_box(junk);
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "plugin {} ({} bytes), {} requests per mode, after 1000 warm-up, {}",
        args.plugin,
        args.bytes.len(),
        args.iterations,
        match args.in_flight {
            0 if args.start_apart => {
                "instantiate, then on-request, two calls, one at a time".to_string()
            }
            // As the gateway runs a request's plugin: instantiated by its first call.
            0 => "instantiate + on-request in one call, one at a time".to_string(),
            n => format!(
                "on-request and on-response, {n} in flight, {} bytes written between calls",
                args.evict
            ),
        }
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "mode", "p50", "p90", "p99", "max", "req/s (1 thread)"
    );
    let mut medians = Vec::new();
    let modes: &[bool] = if args.pooling_only {
        &[true]
    } else {
        &[true, false]
    };
    for &pooling in modes {
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
        let (summary, rps) = match args.in_flight {
            0 => rt.block_on(measure(&runtime, &args))?,
            n => rt.block_on(measure_in_flight(&runtime, &args, n))?,
        };
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

fn config() -> AttachmentConfig {
    wharf_plugins::attachment_config([("request-value", "bench")])
}

fn quotas() -> PluginQuotas {
    PluginQuotas {
        deadline_ms: 1000,
        ..PluginQuotas::default()
    }
}

/// One request's invocation: no capabilities (no backends), no outbound hosts, no body.
fn invocation<'a>(
    tenant: &'a Arc<str>,
    plugin: &'a Arc<str>,
    quotas: PluginQuotas,
    config: &AttachmentConfig,
) -> Invocation<'a> {
    Invocation {
        tenant,
        plugin,
        quotas,
        config: config.clone(),
        outbound: Default::default(),
        request_body: None,
        capabilities: None,
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.as_bytes().to_vec(),
    }
}

fn request() -> Request {
    Request {
        method: "GET".into(),
        path: "/api/users?id=7".into(),
        headers: vec![
            header("host", "api.acme.test"),
            header("user-agent", "wharf-load"),
            header("accept", "*/*"),
        ],
        client_addr: "127.0.0.1".into(),
        tenant_id: "bench".into(),
        route_id: "api".into(),
    }
}

async fn measure(runtime: &PluginRuntime, args: &Args) -> anyhow::Result<(Summary, f64)> {
    let compiled = runtime.validate(&args.bytes)?;
    let tenant: Arc<str> = "bench".into();
    let plugin: Arc<str> = args.plugin.as_str().into();
    let (config, quotas, req) = (config(), quotas(), request());
    let mut samples = Vec::with_capacity(args.iterations);
    let total = Instant::now();
    for i in 0..args.iterations + 1000 {
        let start = Instant::now();
        let inv = invocation(&tenant, &plugin, quotas, &config);
        let mut instance = if args.start_apart {
            runtime.instantiate(inv, &compiled).await?
        } else {
            runtime.prepare(inv, &compiled).await?
        };
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

/// The gateway's shape: a request's instance is prepared, runs `on-request`, waits while
/// `in_flight - 1` other requests start (its upstream call), runs `on-response` with the
/// upstream's headers, and is dropped. One sample is one request's two phases and drop. A
/// request-filter's instance is dropped after `on-request` (it has no response phase).
async fn measure_in_flight(
    runtime: &PluginRuntime,
    args: &Args,
    in_flight: usize,
) -> anyhow::Result<(Summary, f64)> {
    let compiled = runtime.validate(&args.bytes)?;
    let tenant: Arc<str> = "bench".into();
    let plugin: Arc<str> = args.plugin.as_str().into();
    let (config, quotas, req) = (config(), quotas(), request());
    let resp = Response {
        status: 200,
        headers: vec![
            header("server", "nginx"),
            header("date", "Sat, 05 Dec 2026 15:00:00 GMT"),
            header("content-type", "text/plain"),
            header("content-length", "2"),
        ],
    };
    let mut waiting = std::collections::VecDeque::with_capacity(in_flight);
    let mut samples = Vec::with_capacity(args.iterations);
    // Heap allocations by phase (counted with WHARF_COUNT_ALLOCATIONS=1): prepare, on-request,
    // on-response, drop.
    let mut allocs = [0u64; 4];
    let mut fuel = 0u64;
    let count = wharf_metrics::allocations::count;
    // In a node, the proxy's own work between two plugin calls (Pingora, the kernel's TCP) evicts
    // the runtime's data from the CPU caches: `--evict BYTES` writes that much between calls.
    let mut junk = vec![0u8; args.evict];
    let total = Instant::now();
    for i in 0..args.iterations + 1000 + in_flight {
        let oldest = (waiting.len() == in_flight)
            .then(|| waiting.pop_front())
            .flatten();
        if let Some((instance, spent)) = oldest {
            let spent: std::time::Duration = spent;
            let mut instance: wharf_plugins::PluginInstance = instance;
            let resp = resp.clone();
            evict(&mut junk);
            let (start, a0) = (Instant::now(), count());
            instance.on_response(resp).await?;
            let a1 = count();
            fuel += instance.fuel_consumed();
            drop(instance);
            allocs[2] += a1 - a0;
            allocs[3] += count() - a1;
            if i >= 1000 + in_flight {
                samples.push(spent + start.elapsed());
            }
        }
        if i >= args.iterations + 1000 {
            continue;
        }
        let req = req.clone();
        evict(&mut junk);
        let start = Instant::now();
        let inv = invocation(&tenant, &plugin, quotas, &config);
        let a0 = count();
        let mut instance = runtime.prepare(inv, &compiled).await?;
        let a1 = count();
        instance.on_request(req).await?;
        allocs[0] += a1 - a0;
        allocs[1] += count() - a1;
        if !instance.has_response_phase() {
            // A request-filter's instance ends before the upstream call, as in the gateway.
            let a2 = count();
            fuel += instance.fuel_consumed();
            drop(instance);
            allocs[3] += count() - a2;
            if i >= 1000 {
                samples.push(start.elapsed());
            }
            continue;
        }
        waiting.push_back((instance, start.elapsed()));
    }
    let n = (args.iterations + 1000) as u64;
    println!("fuel (wasm operators) per request: {}", fuel / n);
    if allocs.iter().any(|&a| a > 0) {
        println!(
            "heap allocations per request: prepare {}, on-request {}, on-response {}, drop {}",
            allocs[0] / n,
            allocs[1] / n,
            allocs[2] / n,
            allocs[3] / n
        );
    }
    let elapsed = total.elapsed().as_secs_f64();
    let rps = (args.iterations + 1000) as f64 / elapsed;
    Ok((Summary::of(&mut samples), rps))
}
