//! Command-line interface.

pub mod backup;
pub mod certs;
pub mod client;
pub mod commands;
pub mod dev;
pub mod local;
pub mod plugin_new;
pub mod plugin_test;

use std::path::PathBuf;

pub use crate::bootstrap::StoreArgs;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "wharf", version, about = "Wharf: a multi-tenant API gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway: proxy, admin API and /metrics.
    Serve(ServeArgs),
    /// Replace the running node with this binary and bootstrap file without refusing a
    /// connection (`wharf serve --upgrade`).
    Upgrade(ServeArgs),
    /// Manage tenants in the config store.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage a tenant's routes in the config store.
    #[command(subcommand)]
    Route(RouteCmd),
    /// Manage a tenant's plugins in the config store.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// List every quota a tenant has: name, default, bounds, meaning.
    Quotas {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Manage a tenant's TLS certificates.
    #[command(subcommand)]
    Cert(certs::CertCmd),
    /// Export one tenant's whole config (routes, plugins with their bytes, quotas, hostnames,
    /// certificates with sealed keys) as JSON, from the store.
    Backup {
        #[arg(long)]
        tenant: String,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Recreate a tenant from a `wharf backup` file, into the store.
    Restore {
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check a node's health endpoint (container HEALTHCHECK, no curl needed): exit 0 on a 2xx.
    Probe {
        #[arg(default_value = "http://127.0.0.1:9080/readyz")]
        url: String,
    },
    /// Develop a plugin: a local gateway with the demo tenant serving the plugin project in DIR,
    /// rebuilt and re-attached whenever a source changes (config from DIR/dev.config).
    Dev {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        #[arg(long, default_value = "127.0.0.1:9080")]
        admin_listen: String,
        /// Stop after this many looks at the sources (500 ms apart); default: until interrupted.
        #[arg(long, hide = true)]
        rounds: Option<u64>,
    },
    /// Run the built-in echo upstream (for demos and tests).
    Echo {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        #[arg(long, default_value = "echo")]
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Proxy listen address (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<String>,
    /// Admin API and /metrics listen address (default 127.0.0.1:9080).
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Seed a demo tenant (Host demo.localhost) routed to a built-in echo upstream.
    #[arg(long)]
    pub demo: bool,
    /// Take the listening sockets over from the node running on the same data dir, with no
    /// connection refused: this process loads its config first, then signals the old one
    /// (SIGQUIT), which hands over its sockets and drains. Same as `wharf upgrade`.
    #[arg(long)]
    pub upgrade: bool,
}

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant, optionally with hostnames.
    Add {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Hostname to assign (repeatable): api.acme.test or *.acme.test.
        #[arg(long = "host")]
        hosts: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List tenants with their hostnames and route counts.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a tenant and everything it owns.
    Remove {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Assign a hostname to a tenant.
    AddHost {
        id: String,
        host: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Take a hostname away from a tenant.
    RemoveHost {
        id: String,
        host: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change a tenant's quotas: --set NAME=VALUE (repeatable); an unknown NAME lists the known ones
    /// (e.g. plugin_fuel, plugin_deadline_ms, redis_max_connections, sql_statement_timeout_ms).
    SetQuota {
        id: String,
        #[arg(long = "set", required = true)]
        settings: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum PluginCmd {
    /// Validate, compile and store a new version of a plugin (a Wasm component or proxy-wasm
    /// module), from a file or pulled from an OCI registry by the gateway.
    #[command(visible_alias = "push")]
    Add {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long, required_unless_present = "oci", conflicts_with = "oci")]
        file: Option<PathBuf>,
        /// `oci://registry[:port]/repository[:tag][@sha256:digest]`: pulled by the node that
        /// handles the request, under its egress policy.
        #[arg(long)]
        oci: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a tenant's plugins and their versions.
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the versions of one plugin.
    Versions {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Start a plugin project from a template: `wharf plugin new hello --lang c`.
    New {
        /// The folder to create (its name is the plugin's).
        dir: PathBuf,
        /// c, js, python, rust or assemblyscript (a proxy-wasm module).
        #[arg(long, default_value = "c")]
        lang: String,
        /// One of the examples of that language (default: add-header, path-rewrite, cors,
        /// rust-add-header, headers; assemblyscript: headers, local-response, http-call).
        #[arg(long)]
        template: Option<String>,
    },
    /// Build a plugin project into DIR/plugin.wasm with the pinned toolchain (installed into
    /// the cache on first use) and check it as an upload would be.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run a plugin on one request in this process, as the gateway would (same runtime, limits
    /// and quotas), and show what it did: `wharf plugin test add-header.wasm --request 'GET /'`.
    Test(plugin_test::TestArgs),
    /// Move every route running the plugin to another version.
    Rollback {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum RouteCmd {
    /// Create or replace a route.
    Add(RouteAddArgs),
    /// List a tenant's routes.
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Add a plugin to a route's chain (or move it to another version, in place).
    Attach {
        #[arg(long)]
        tenant: String,
        /// The route.
        id: String,
        #[arg(long)]
        plugin: String,
        /// Version to run; default: the newest.
        #[arg(long)]
        version: Option<i64>,
        /// Plugin config entry KEY=VALUE (repeatable).
        #[arg(long = "set")]
        settings: Vec<String>,
        /// A destination the plugin may send HTTP requests to, like https://auth.example.com
        /// or https://*.example.com (repeatable).
        #[arg(long = "allow-outbound")]
        allowed_outbound_hosts: Vec<String>,
        /// A proxy-wasm plugin's configuration: a JSON file (`@rules.json`) or inline JSON.
        #[arg(long)]
        plugin_config: Option<String>,
        /// A proxy-wasm plugin's VM configuration, likewise.
        #[arg(long)]
        vm_config: Option<String>,
        /// Skip the plugin when it fails instead of failing the request.
        #[arg(long)]
        fail_open: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a plugin from a route's chain.
    Detach {
        #[arg(long)]
        tenant: String,
        id: String,
        #[arg(long)]
        plugin: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a route.
    Remove {
        #[arg(long)]
        tenant: String,
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Args, Debug)]
pub struct RouteAddArgs {
    #[arg(long)]
    pub tenant: String,
    /// Route id (a-z, 0-9, '-').
    pub id: String,
    /// Path prefix, matched on whole segments.
    #[arg(long, default_value = "/")]
    pub prefix: String,
    /// Allowed method (repeatable); none means all.
    #[arg(long = "method")]
    pub methods: Vec<String>,
    /// Upstream target ip:port, optionally =WEIGHT (repeatable).
    #[arg(long = "upstream", required = true)]
    pub upstreams: Vec<String>,
    #[arg(long)]
    pub connect_timeout_ms: Option<u64>,
    #[arg(long)]
    pub read_timeout_ms: Option<u64>,
    /// Health check: tcp or http.
    #[arg(long)]
    pub health: Option<String>,
    /// Path probed by the http health check.
    #[arg(long, default_value = "/")]
    pub health_path: String,
    #[arg(long, default_value_t = 1000)]
    pub health_interval_ms: u64,
    /// Speak HTTP/2 (prior knowledge) to the upstream, e.g. for gRPC services.
    #[arg(long)]
    pub upstream_http2: bool,
    /// Send the target's name as Host upstream instead of the client's.
    #[arg(long)]
    pub upstream_host: bool,
    /// Other targets tried after a failed connection (0-5).
    #[arg(long, default_value_t = wharf_tenancy::DEFAULT_RETRIES)]
    pub retries: u32,
    #[command(flatten)]
    pub store: StoreArgs,
}
