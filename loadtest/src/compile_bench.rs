//! Scenario `compile`: how long a proxy-wasm module (a Higress Go plugin) takes to compile with
//! each of wasmtime's compilers and settings the gateway could use, with fuel and epoch
//! interruption on as the gateway runs them, and, for the first module given (Higress's
//! set-header-pre-route: the configuration below is its own), what each compiler's code costs
//! per request (its request-headers callback through the ABI host, one context per request, in
//! one long-lived VM as the gateway keeps them). The measurement behind the baseline-then-optimized
//! compile of docs/proxy-wasm.md.

use std::time::{Duration, Instant};

use anyhow::Context;
use wasmtime::{Config, Engine, Linker, Module, OptLevel, Store, Strategy};
use wharf_plugins::proxy_wasm::context::HostContext;
use wharf_plugins::proxy_wasm::{env, vm::Vm, wasi};

pub(crate) struct Args {
    pub files: Vec<std::path::PathBuf>,
    /// Compiles timed per setting (the fastest is reported, and the slowest).
    pub runs: usize,
    /// Requests timed per compiler.
    pub requests: usize,
}

/// A compiler setting measured.
#[derive(Clone, Copy)]
struct Setting {
    name: &'static str,
    strategy: Strategy,
    opt: OptLevel,
    parallel: bool,
}

const SETTINGS: [Setting; 5] = [
    Setting {
        name: "cranelift speed, 1 thread (today)",
        strategy: Strategy::Cranelift,
        opt: OptLevel::Speed,
        parallel: false,
    },
    Setting {
        name: "cranelift none, 1 thread",
        strategy: Strategy::Cranelift,
        opt: OptLevel::None,
        parallel: false,
    },
    Setting {
        name: "cranelift speed, parallel",
        strategy: Strategy::Cranelift,
        opt: OptLevel::Speed,
        parallel: true,
    },
    Setting {
        name: "winch, 1 thread",
        strategy: Strategy::Winch,
        opt: OptLevel::Speed,
        parallel: false,
    },
    Setting {
        name: "winch, parallel",
        strategy: Strategy::Winch,
        opt: OptLevel::Speed,
        parallel: true,
    },
];

fn engine(setting: Setting) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.strategy(setting.strategy);
    config.cranelift_opt_level(setting.opt);
    config.parallel_compilation(setting.parallel);
    Engine::new(&config).map_err(|e| anyhow::anyhow!("{}: {e:#}", setting.name))
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("fuel and epoch interruption on; {threads} cores; parallel = rayon's threads");
    for (i, file) in args.files.iter().enumerate() {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let label = file
            .file_name()
            .map_or("module".into(), |n| n.to_string_lossy());
        println!("== {label} ({} bytes)", bytes.len());
        println!(
            "{:<36} {:>10} {:>10} {:>12} {:>14}",
            "compiler", "fastest", "slowest", "code bytes", "request p50"
        );
        for setting in SETTINGS {
            let engine = engine(setting)?;
            let mut times = Vec::new();
            let mut module = None;
            for _ in 0..args.runs.max(1) {
                let started = Instant::now();
                match Module::new(&engine, &bytes) {
                    Ok(m) => module = Some(m),
                    Err(e) => {
                        println!("{:<36} does not compile: {e:#}", setting.name);
                        break;
                    }
                }
                times.push(started.elapsed());
            }
            let Some(module) = module else { continue };
            let image = module.image_range();
            let code = (image.end as usize).saturating_sub(image.start as usize);
            let request = match i {
                0 => rt
                    .block_on(per_request(&engine, &module, args.requests))
                    .map_or_else(|e| format!("fails: {e:#}"), |d| format!("{d:.1?}")),
                _ => "-".to_string(),
            };
            println!(
                "{:<36} {:>10} {:>10} {:>12} {:>14}",
                setting.name,
                format!("{:.2?}", times.iter().min().copied().unwrap_or_default()),
                format!("{:.2?}", times.iter().max().copied().unwrap_or_default()),
                code,
                request
            );
        }
    }
    Ok(())
}

/// The ABI host on a store of its own, with the properties the Higress header plugin reads.
#[derive(Default)]
struct Host {
    ctx: HostContext,
}

impl wasi::WasiLog for Host {
    fn wasi_log(&mut self, _fd: i32, _line: &str) {}
}

impl env::ProxyHost for Host {
    fn context(&mut self) -> &mut HostContext {
        &mut self.ctx
    }
    fn log(&mut self, _: tracing::Level, _message: &str) {}
}

/// The median of `requests` request-headers callbacks (context created, headers, done) in one
/// started VM, after 200 warm-up requests.
async fn per_request(
    engine: &Engine,
    module: &Module,
    requests: usize,
) -> anyhow::Result<Duration> {
    let mut linker = Linker::<Host>::new(engine);
    wasi::link(&mut linker)?;
    env::link(&mut linker)?;
    env::stub_remaining(&mut linker, module)?;
    let mut host = Host::default();
    for (k, v) in [
        ("route_name", "orders"),
        ("cluster_name", "outbound|8080||orders.svc"),
        ("plugin_name", "set-header"),
        ("plugin_root_id", ""),
    ] {
        host.ctx.properties.insert(k.into(), v.as_bytes().to_vec());
    }
    let mut store = Store::new(engine, host);
    store.set_fuel(u64::MAX)?;
    // Epoch checks are compiled in and run; the epoch never reaches this deadline.
    store.set_epoch_deadline(u64::MAX / 2);
    let pre = linker.instantiate_pre(module)?;
    let mut vm = Vm::new(store);
    let config = br#"{"routeNameHeader": "x-route-name", "clusterNameHeader": "x-cluster-name", "enableOnPathPrefix": ["/"]}"#;
    vm.start(&pre, b"", config)
        .await
        .map_err(|e| anyhow::anyhow!("start: {e}"))?;
    let headers: Vec<(Vec<u8>, Vec<u8>)> = [
        (":authority", "shop.test"),
        (":path", "/orders/7"),
        (":method", "GET"),
        (":scheme", "http"),
        ("user-agent", "wharf-load"),
        ("accept", "*/*"),
    ]
    .iter()
    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    let mut times = Vec::with_capacity(requests);
    for i in 0..requests + 200 {
        let started = Instant::now();
        let (id, out) = vm
            .request_headers(headers.clone(), true)
            .await
            .map_err(|e| anyhow::anyhow!("request headers: {e}"))?;
        vm.finish(id)
            .await
            .map_err(|e| anyhow::anyhow!("done: {e}"))?;
        if i >= 200 {
            times.push(started.elapsed());
        }
        if !out.headers.iter().any(|(k, _)| k == b"x-route-name") {
            anyhow::bail!("the module did not add x-route-name");
        }
    }
    times.sort();
    Ok(times.get(times.len() / 2).copied().unwrap_or_default())
}
