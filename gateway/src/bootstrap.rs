//! Process settings: the bootstrap TOML file, overridden by command-line flags.
//! Tenant config lives in the store, not here.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use wharf_plugins::capabilities::CapabilitySettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bootstrap {
    /// Where tenants' traffic arrives (plain HTTP).
    pub listen: String,
    /// HTTPS for tenants' hostnames (certificates by SNI, HTTP/2 by ALPN); unset: no HTTPS.
    pub tls_listen: Option<String>,
    /// Accept HTTP/2 without TLS (prior knowledge, h2c) on `listen`, besides HTTP/1.1.
    pub h2c: bool,
    pub tls: crate::tls::TlsConfig,
    /// Certificates for tenants' hostnames over ACME (`[acme]`: directory, CA bundle, caps).
    pub acme: crate::acme::AcmeSettings,
    /// Budgets for tenants' admin API calls (`[admin]`).
    pub admin: crate::api::throttle::AdminLimits,
    /// New connections per client address on the proxy's listeners (`[clients]`).
    pub clients: crate::clients::ClientLimits,
    /// How long the store keeps its audit log (`[audit]`).
    pub audit: wharf_tenancy::AuditRetention,
    /// Admin API and `/metrics`.
    pub admin_listen: String,
    pub data_dir: PathBuf,
    /// Compiled plugins, by content hash (default: `data_dir/compiled`). Nodes may share one, or
    /// keep it on a faster disk; restarts reuse it instead of compiling again.
    pub compiled_cache: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…`; default: SQLite in `data_dir`.
    pub store: Option<String>,
    /// Pingora worker threads for the proxy.
    pub threads: usize,
    /// Whether the proxy's threads share one work-stealing runtime (`true`), or each runs its
    /// own (`false`: a connection stays on the thread that accepted it, as in nginx's and
    /// haproxy's workers). Unset: stealing with two threads or more, none with one (there is
    /// nothing to steal, and a thread's own runtime does the same work for less). Measured in
    /// docs/benchmarks.md: without stealing a request costs 15 % (plain) to 40 % (through a
    /// plugin) less CPU, but with two threads a tenant flooding the node delays another
    /// tenant's requests queued behind its own on the same thread (p99 under attack 0.5 → 1.2–2.4 ms).
    pub work_stealing: Option<bool>,
    /// Once the node stopped accepting (SIGTERM, or an upgrade handed its sockets over), the
    /// longest it waits for requests in flight; it exits as soon as none remain. Requests still
    /// running after it are cut.
    pub grace_period_seconds: u64,
    /// After that, how long background work gets to stop.
    pub graceful_shutdown_timeout_seconds: u64,
    /// How often the store's version is polled; bounds fleet-wide propagation delay.
    pub config_poll_interval_ms: u64,
    /// The plugin runtime: pool size, memory ceiling, epoch tick, upload cap.
    pub plugins: wharf_plugins::RuntimeSettings,
    /// Redis for plugins' host calls (`redis://…`); unset: Redis calls get `backend-unavailable`.
    pub redis: wharf_plugins::capabilities::redis::RedisSettings,
    /// SQL for plugins: `sqlite` (a file per tenant under data_dir/tenant-sql, the default),
    /// `postgres://ADMIN@HOST/DB` (a schema and role per tenant), or `none`.
    pub sql: String,
    /// Distinct `tenant` label values in metrics; tenants beyond share `_other`.
    pub metrics_tenant_label_cap: usize,
    /// A Prometheus that scrapes every node (e.g. http://prometheus:9090): the console's usage
    /// graphs then show the whole fleet; unset: each node's own.
    pub usage_prometheus_url: Option<String>,
    /// OTLP/HTTP endpoint for traces (e.g. http://collector:4318); env OTEL_EXPORTER_OTLP_ENDPOINT wins.
    pub otlp_endpoint: Option<String>,
    /// Bearer token for operator calls to the admin API (env WHARF_OPERATOR_TOKEN wins).
    pub operator_token: Option<String>,
    /// Internal address ranges (CIDR) tenants' upstreams may use; everything internal
    /// (loopback, private, link-local, …) is refused otherwise. The gateway's own listeners are
    /// refused always.
    pub egress_allow: Vec<String>,
    /// How upstream names are resolved (`[dns]`: servers, TTL clamps, staleness).
    pub dns: wharf_plugins::capabilities::networking::DnsSettings,
    /// Plugins' outbound HTTP (`[outbound_http]`: extra CA certificates).
    pub outbound_http: wharf_plugins::capabilities::http::HttpSettings,
    /// Memory for Redis/SQL results in flight on this node, all tenants (each call reserves its
    /// tenant's result cap).
    pub host_result_budget_bytes: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            listen: "127.0.0.1:8080".into(),
            tls_listen: None,
            h2c: false,
            tls: crate::tls::TlsConfig::default(),
            acme: Default::default(),
            admin: Default::default(),
            clients: Default::default(),
            audit: Default::default(),
            admin_listen: "127.0.0.1:9080".into(),
            data_dir: PathBuf::from("./wharf-data"),
            compiled_cache: None,
            store: None,
            threads: 2,
            work_stealing: None,
            grace_period_seconds: 10,
            graceful_shutdown_timeout_seconds: 5,
            config_poll_interval_ms: 250,
            plugins: wharf_plugins::RuntimeSettings::default(),
            redis: Default::default(),
            sql: "sqlite".into(),
            operator_token: None,
            egress_allow: Vec::new(),
            dns: Default::default(),
            outbound_http: Default::default(),
            host_result_budget_bytes: wharf_plugins::capabilities::DEFAULT_RESULT_BUDGET_BYTES,
            otlp_endpoint: None,
            usage_prometheus_url: None,
            metrics_tenant_label_cap: wharf_metrics::DEFAULT_TENANT_LABEL_CAP,
        }
    }
}

impl Bootstrap {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Bootstrap> {
        let Some(path) = path else {
            return Ok(Bootstrap::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read bootstrap file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid bootstrap file {}", path.display()))
    }

    /// Where compiled plugins are cached on disk.
    pub fn compiled_cache_dir(&self) -> PathBuf {
        self.compiled_cache
            .clone()
            .unwrap_or_else(|| self.data_dir.join("compiled"))
    }

    /// The store URL in force: the configured one, or SQLite under the data dir.
    pub fn store_url(&self) -> anyhow::Result<String> {
        match &self.store {
            Some(url) => Ok(url.clone()),
            None => wharf_tenancy::Store::sqlite_url_for(&self.data_dir)
                .with_context(|| format!("cannot create data dir {}", self.data_dir.display())),
        }
    }
}

impl Bootstrap {
    /// Every host capability's settings: their sections of this file, and the node's own
    /// listeners (which the egress policy refuses).
    pub fn capability_settings(&self) -> anyhow::Result<CapabilitySettings> {
        use wharf_plugins::capabilities::networking::NetworkSettings;
        use wharf_plugins::capabilities::sql::SqlBackend;
        let sql = match self.sql.as_str() {
            "none" => SqlBackend::Disabled,
            "sqlite" => SqlBackend::Sqlite(self.data_dir.join("tenant-sql")),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                SqlBackend::Postgres(url.into())
            }
            url if url.starts_with("mysql://") || url.starts_with("mariadb://") => {
                SqlBackend::Mysql(url.into())
            }
            other => {
                anyhow::bail!(
                    "sql = {other:?}: use \"sqlite\", \"none\", a postgres:// or a mysql:// (MariaDB) URL"
                )
            }
        };
        let own = [
            Some(&self.listen),
            Some(&self.admin_listen),
            self.tls_listen.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|a| a.parse().ok())
        .collect();
        Ok(CapabilitySettings {
            networking: NetworkSettings {
                dns: self.dns.clone(),
                allow: self.egress_allow.clone(),
                own,
            },
            log: (),
            config: (),
            redis: self.redis.clone(),
            sql,
            http: self.outbound_http.clone(),
            body: (),
            request: (),
            response_edits: (),
        })
    }

    /// Command-line flags win over the file.
    pub fn with_store_args(mut self, args: &StoreArgs) -> Bootstrap {
        if let Some(d) = &args.data_dir {
            self.data_dir = d.clone();
        }
        if let Some(s) = &args.store {
            self.store = Some(s.clone());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let b: Bootstrap = toml::from_str("listen = \"0.0.0.0:80\"\nthreads = 4").unwrap();
        assert_eq!(b.listen, "0.0.0.0:80");
        assert_eq!(b.threads, 4);
        assert_eq!(b.admin_listen, "127.0.0.1:9080");
        assert!(toml::from_str::<Bootstrap>("lisen = \"x\"").is_err());
    }

    #[test]
    fn redis_is_a_url_or_a_section_with_trusted_scripts() {
        let b: Bootstrap = toml::from_str("redis = \"redis://r:6379\"").unwrap();
        assert_eq!(b.redis.url.as_deref(), Some("redis://r:6379"));
        assert!(b.redis.trusted_scripts.is_empty());
        let b: Bootstrap = toml::from_str(
            "[redis]\nurl = \"redis://r\"\ntrusted_scripts = [\"/etc/wharf/rl.lua\"]",
        )
        .unwrap();
        assert_eq!(b.redis.url.as_deref(), Some("redis://r"));
        assert_eq!(b.redis.trusted_scripts, ["/etc/wharf/rl.lua"]);
        assert_eq!(b.redis.recount_every_seconds, 600);
        assert!(toml::from_str::<Bootstrap>("[redis]\nurl = \"redis://r\"\nscripts = []").is_err());
        let b: Bootstrap =
            toml::from_str("[redis]\nurl = \"redis://r\"\nrecount_every_seconds = 0").unwrap();
        let refused = wharf_plugins::capabilities::Capabilities::new(
            wharf_plugins::capabilities::CapabilitySettings {
                redis: b.redis,
                ..Default::default()
            },
            std::sync::Arc::new(wharf_metrics::Metrics::new()),
            1 << 20,
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("redis: recount_every_seconds: 0 is not between 1 and 86400")
        );
    }
}

/// Where the config lives; shared by `serve` and the store commands.
#[derive(Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// Bootstrap TOML file.
    #[arg(long, env = "WHARF_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (SQLite store, caches).
    #[arg(long, env = "WHARF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config store URL: sqlite://PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "WHARF_STORE")]
    pub store: Option<String>,
    /// Talk to a running gateway's admin API instead of the store (e.g. http://127.0.0.1:9080).
    #[arg(long, env = "WHARF_API")]
    pub api: Option<String>,
    /// Bearer token for --api: a tenant API key or the operator token.
    #[arg(long, env = "WHARF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The config store the bootstrap file and flags name (the CLI's store commands).
pub async fn open_store(args: &StoreArgs) -> anyhow::Result<wharf_tenancy::Store> {
    let boot = Bootstrap::load(args.config.as_deref())?.with_store_args(args);
    let url = boot.store_url()?;
    wharf_tenancy::Store::connect(&url)
        .await
        .with_context(|| format!("cannot open config store {url}"))
}
