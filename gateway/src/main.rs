use clap::Parser;
use wharf_gateway::cli::{Cli, Command};
use wharf_gateway::{commands, echo, serve};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("wharf: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        // Pingora owns its runtimes: `serve` must not run inside one.
        Command::Serve(args) => serve::run(args),
        other => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                match other {
                    Command::Tenant(cmd) => commands::tenant(cmd).await,
                    Command::Route(cmd) => commands::route(cmd).await,
                    Command::Plugin(cmd) => commands::plugin(cmd).await,
                    Command::Echo { listen, name } => {
                        let listener = tokio::net::TcpListener::bind(&listen).await?;
                        eprintln!("wharf: echo upstream {name:?} on http://{}", listener.local_addr()?);
                        echo::serve(listener, name).await?;
                        Ok(())
                    }
                    Command::Serve(_) => unreachable!("handled above"),
                }
            })
        }
    }
}
