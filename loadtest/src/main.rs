//! `wharf-load`: Wharf's load generator and benchmark scenarios.
//! See docs/benchmarks.md for the commands that produced the published numbers.

mod bare_pingora;
mod compile_bench;
mod host_call;
mod http_bench;
mod http_load;
mod memory;
mod node;
mod noisy;
mod plugin_bench;
mod redis_bench;
mod reload;
mod stats;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The gateway's allocator, so that `plugin` measures what a node pays and `bare-pingora` is the
/// framework's ceiling with the same allocator; counted when `WHARF_COUNT_ALLOCATIONS=1`.
#[global_allocator]
static ALLOCATOR: wharf_metrics::allocations::Counting<mimalloc::MiMalloc> =
    wharf_metrics::allocations::Counting(mimalloc::MiMalloc);

#[derive(Parser)]
#[command(
    name = "wharf-load",
    about = "Wharf load generator and benchmark scenarios"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Per-request plugin cost: instantiate + on-request, pooling vs on-demand.
    Plugin {
        /// A built plugin (.wasm component) or WAT text.
        #[arg(long, required_unless_present = "noop")]
        file: Option<std::path::PathBuf>,
        /// Measure a hand-written no-op component instead: the floor of the runtime's cost.
        #[arg(long)]
        noop: bool,
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
        /// The gateway's shape: `on-response` too, with this many instances alive at once (each
        /// held from its `on-request` to its `on-response`, as across an upstream call; a
        /// request-filter's dropped after `on-request`, between the others). 0: the bare floor (a fresh instance's `on-request`, one instance at a time).
        #[arg(long, default_value_t = 0)]
        in_flight: usize,
        /// Only the pooling allocator (what a node runs), e.g. under a profiler.
        #[arg(long)]
        pooling_only: bool,
        /// With --in-flight: bytes written between two calls (untimed), evicting the runtime's
        /// data from the CPU caches as the proxy's own work does in a node.
        #[arg(long, default_value_t = 0)]
        evict: usize,
        /// With --in-flight 0: instantiate in a call of its own before `on-request` (as
        /// measured before the twelfth session) instead of in `on-request`'s trip, as the
        /// gateway does.
        #[arg(long)]
        start_apart: bool,
    },
    /// Compile time of proxy-wasm modules per compiler (Cranelift opt levels, parallel or not,
    /// Winch), with fuel and epochs on, and each compiler's cost per request.
    Compile {
        /// proxy-wasm modules (.wasm), e.g. the Higress plugins scripts/test downloads; the
        /// first is also run per request, as Higress's set-header-pre-route.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
    },
    /// One Redis call per request through a plugin vs directly, same client code.
    Redis {
        #[arg(long, env = "WHARF_TEST_REDIS_URL")]
        redis: String,
        /// The redis-rate-limit plugin component.
        #[arg(long)]
        file: std::path::PathBuf,
        #[arg(long, default_value_t = 5_000)]
        iterations: usize,
    },
    /// One outbound HTTP call per request through a plugin vs directly, same client code,
    /// against a keep-alive server on loopback started here.
    HttpCall {
        /// The hostile example plugin component (its `fetch` mode makes the call).
        #[arg(long)]
        file: std::path::PathBuf,
        #[arg(long, default_value_t = 5_000)]
        iterations: usize,
    },
    /// One tenant's route change until it serves, and its admin read, at each tenant count.
    /// Starts a `wharf` node per count and an upstream itself.
    Reload {
        /// The `wharf` binary (default: next to this one).
        #[arg(long)]
        wharf: Option<std::path::PathBuf>,
        /// Tenant counts to compare, e.g. 100,3000.
        #[arg(long, value_delimiter = ',', default_value = "100,3000")]
        tenants: Vec<usize>,
        /// Route changes timed per count.
        #[arg(long, default_value_t = 20)]
        changes: usize,
        /// Routes per tenant.
        #[arg(long, default_value_t = 1)]
        routes: usize,
        /// TOML appended to each node's bootstrap file, e.g. `store = "postgres://…"`.
        #[arg(long, default_value = "")]
        extra_toml: String,
    },
    /// Resident memory of an idle node, per 1,000 tenants and per distinct compiled plugin.
    /// Starts a `wharf` node and an upstream itself.
    Memory {
        /// The `wharf` binary (default: next to this one).
        #[arg(long)]
        wharf: Option<std::path::PathBuf>,
        /// Where scripts/build-plugins put add-header.wasm.
        #[arg(long, env = "WHARF_PLUGIN_DIR")]
        plugin_dir: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 1000)]
        tenants: usize,
        /// Distinct plugins, one per tenant (at most `tenants`).
        #[arg(long, default_value_t = 100)]
        plugins: usize,
        /// TOML appended to the node's bootstrap file, e.g. a `[plugins]` compiled-code budget.
        #[arg(long, default_value = "")]
        extra_toml: String,
    },
    /// One tenant's hostile plugins under load vs another tenant's requests, alone and under
    /// attack, in one run. Starts a `wharf` node, an upstream and both tenants itself.
    NoisyNeighbour {
        /// The `wharf` binary (default: next to this one).
        #[arg(long)]
        wharf: Option<std::path::PathBuf>,
        /// Where scripts/build-plugins put hostile.wasm and add-header.wasm.
        #[arg(long, env = "WHARF_PLUGIN_DIR")]
        plugin_dir: Option<std::path::PathBuf>,
        /// Seconds per phase (alone, under attack).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Hostile connections per hostile route (five routes).
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// TOML appended to the node's bootstrap file, e.g. $'[plugins]\nnice = 0'.
        #[arg(long, default_value = "")]
        extra_toml: String,
    },
    /// A bare Pingora proxy to one upstream (the framework's ceiling, for comparisons).
    /// Runs until killed.
    BarePingora {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        upstream: std::net::SocketAddr,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Each thread its own runtime, as Wharf's `work_stealing = false`.
        #[arg(long)]
        no_work_stealing: bool,
    },
    /// HTTP load against targets LABEL=ADDR[,HOST[,PATH]], measured one after another.
    Http {
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    wharf_metrics::allocations::enable_from_env();
    match Cli::parse().scenario {
        Scenario::Plugin {
            file,
            noop,
            iterations,
            in_flight,
            pooling_only,
            evict,
            start_apart,
        } => {
            let (plugin, bytes) = match file {
                Some(file) if !noop => (
                    file.file_stem()
                        .map_or("plugin".into(), |s| s.to_string_lossy().into_owned()),
                    std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?,
                ),
                _ => ("noop-wat".to_string(), wharf_plugins::test_support::noop()),
            };
            plugin_bench::run(plugin_bench::Args {
                plugin,
                bytes,
                iterations,
                in_flight,
                pooling_only,
                evict,
                start_apart,
            })
        }
        Scenario::Compile {
            files,
            runs,
            requests,
        } => compile_bench::run(compile_bench::Args {
            files,
            runs,
            requests,
        }),
        Scenario::Redis {
            redis,
            file,
            iterations,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            redis_bench::run(redis, bytes, iterations)
        }
        Scenario::HttpCall { file, iterations } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            http_bench::run(bytes, iterations)
        }
        Scenario::NoisyNeighbour {
            wharf,
            plugin_dir,
            seconds,
            connections,
            extra_toml,
        } => noisy::run(noisy::Args {
            wharf: wharf_binary(wharf)?,
            plugin_dir: plugins_in(plugin_dir, "hostile.wasm"),
            seconds,
            connections,
            extra_toml,
        }),
        Scenario::Reload {
            wharf,
            tenants,
            changes,
            routes,
            extra_toml,
        } => reload::run(reload::Args {
            wharf: wharf_binary(wharf)?,
            tenants,
            changes,
            routes,
            extra_toml,
        }),
        Scenario::Memory {
            wharf,
            plugin_dir,
            tenants,
            plugins,
            extra_toml,
        } => memory::run(memory::Args {
            wharf: wharf_binary(wharf)?,
            plugin_dir: plugins_in(plugin_dir, "add-header.wasm"),
            tenants,
            plugins,
            extra_toml,
        }),
        Scenario::BarePingora {
            listen,
            upstream,
            threads,
            no_work_stealing,
        } => bare_pingora::run(&listen, upstream, threads, !no_work_stealing),
        Scenario::Http {
            targets,
            concurrency,
            seconds,
        } => {
            let targets = targets
                .iter()
                .map(|t| parse_target(t))
                .collect::<anyhow::Result<Vec<_>>>()?;
            http_load::run(http_load::Args {
                targets,
                concurrency,
                duration: Duration::from_secs(seconds),
            })
        }
    }
}

fn parse_target(spec: &str) -> anyhow::Result<http_load::Target> {
    let (label, rest) = spec
        .split_once('=')
        .context("target must be LABEL=ADDR[,HOST[,PATH]]")?;
    let mut parts = rest.split(',');
    let addr = parts.next().context("target needs an address")?.to_string();
    let host = parts.next().unwrap_or("localhost").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    Ok(http_load::Target {
        label: label.to_string(),
        addr,
        host,
        path,
    })
}

/// The `wharf` binary a scenario starts: the one given, else the one next to this binary.
fn wharf_binary(given: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    match given {
        Some(w) => Ok(w),
        None => Ok(std::env::current_exe()?.with_file_name("wharf")),
    }
}

/// Where scripts/build-plugins put the plugins: the directory given, else the cache
/// (`$WHARF_CACHE_DIR`, default ~/.cache/wharf, or its `plugins/`) holding `probe`.
fn plugins_in(given: Option<std::path::PathBuf>, probe: &str) -> std::path::PathBuf {
    let dir = given.unwrap_or_else(|| {
        let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
        std::env::var("WHARF_CACHE_DIR")
            .unwrap_or_else(|_| format!("{home}/.cache/wharf"))
            .into()
    });
    if dir.join(probe).exists() {
        dir
    } else {
        dir.join("plugins")
    }
}
