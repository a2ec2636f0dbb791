use clap::Parser;
use wharf_gateway::cli::commands;
use wharf_gateway::cli::{Cli, Command};
use wharf_gateway::{echo, serve};

/// glibc's malloc was ~14 % of the proxy's CPU under load (docs/benchmarks.md, #12): requests
/// allocate and free many small buffers across threads, which mimalloc serves from per-thread
/// pages.
/// Wrapped to count allocations when asked to (`WHARF_COUNT_ALLOCATIONS=1`, benchmarks only).
#[global_allocator]
static ALLOCATOR: wharf_metrics::allocations::Counting<mimalloc::MiMalloc> =
    wharf_metrics::allocations::Counting(mimalloc::MiMalloc);

fn main() {
    // Before any file exists: the store, tenants' data, keys and the cache are wharf's alone.
    wharf_gateway::private_files::owner_only_from_now_on();
    wharf_metrics::allocations::enable_from_env();
    let cli = Cli::parse();
    // Traces go to OTLP when configured (bootstrap `otlp_endpoint` or OTEL_EXPORTER_OTLP_ENDPOINT).
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .or_else(|| match &cli.command {
            Command::Serve(args) | Command::Upgrade(args) => {
                wharf_gateway::bootstrap::Bootstrap::load(args.store.config.as_deref())
                    .ok()?
                    .otlp_endpoint
            }
            _ => None,
        });
    let _tracing = wharf_metrics::tracing_setup::init(endpoint.as_deref());
    if let Err(e) = run(cli) {
        eprintln!("wharf: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        // Pingora owns its runtimes: `serve` must not run inside one.
        Command::Serve(args) => serve::run(args),
        Command::Upgrade(args) => serve::run(wharf_gateway::cli::ServeArgs {
            upgrade: true,
            ..args
        }),
        other => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                match other {
                    Command::Tenant(cmd) => commands::tenant(cmd).await,
                    Command::Route(cmd) => commands::route(cmd).await,
                    Command::Plugin(cmd) => commands::plugin(cmd).await,
                    Command::Quotas { store } => commands::quotas(store).await,
                    Command::Cert(cmd) => wharf_gateway::cli::certs::cert(cmd).await,
                    Command::Backup { tenant, out, store } => {
                        let store = wharf_gateway::cli::commands::open_store(&store).await?;
                        wharf_gateway::cli::backup::backup(&store, &tenant, out).await
                    }
                    Command::Restore { file, store } => {
                        let store = wharf_gateway::cli::commands::open_store(&store).await?;
                        wharf_gateway::cli::backup::restore(&store, file).await
                    }
                    Command::Probe { url } => {
                        let resp = reqwest::Client::builder()
                            .timeout(std::time::Duration::from_secs(3))
                            .build()?
                            .get(&url)
                            .send()
                            .await?;
                        anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
                        Ok(())
                    }
                    Command::Echo { listen, name } => {
                        let listener = tokio::net::TcpListener::bind(&listen).await?;
                        eprintln!(
                            "wharf: echo upstream {name:?} on http://{}",
                            listener.local_addr()?
                        );
                        echo::serve(listener, name).await?;
                        Ok(())
                    }
                    Command::Dev {
                        dir,
                        listen,
                        admin_listen,
                        rounds,
                    } => wharf_gateway::cli::dev::run(&dir, &listen, &admin_listen, rounds).await,
                    Command::Serve(_) | Command::Upgrade(_) => unreachable!("handled above"),
                }
            })
        }
    }
}
