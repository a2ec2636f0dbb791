//! `wharf tenant …`, `wharf route …` and `wharf plugin …`: operator and tenant commands, against
//! a gateway's admin API or the same API in this process over the config store (`client.rs`).

use anyhow::{bail, Context};
use wharf_tenancy::{
    HealthCheck, HealthCheckKind, HostHeader, OnError, PluginVersion, Timeouts, UpstreamProtocol,
    UpstreamTarget,
};

use crate::api::schema::{AttachBody, NewTenant, RouteBody};
use crate::cli::client::ApiClient;
use crate::cli::{PluginCmd, RouteAddArgs, RouteCmd, StoreArgs, TenantCmd};

pub use crate::bootstrap::open_store;

pub async fn tenant(cmd: TenantCmd) -> anyhow::Result<()> {
    match cmd {
        TenantCmd::Add {
            id,
            name,
            hosts,
            store,
        } => {
            let t = NewTenant {
                id: id.clone(),
                display_name: name,
                hostnames: hosts,
            };
            let created = ApiClient::open(&store).await?.create_tenant(&t).await?;
            println!(
                "tenant {id} created (config version {})",
                created.config_version
            );
        }
        TenantCmd::List { store } => {
            let list = ApiClient::open(&store).await?.tenants().await?;
            println!("{:<24} {:<28} {:>6}  HOSTNAMES", "ID", "NAME", "ROUTES");
            for t in list.tenants {
                let hosts: Vec<String> = t.hostnames.iter().map(|h| h.to_string()).collect();
                println!(
                    "{:<24} {:<28} {:>6}  {}",
                    t.id,
                    t.display_name,
                    t.route_count,
                    hosts.join(", ")
                );
            }
        }
        TenantCmd::Remove { id, store } => {
            let v = ApiClient::open(&store).await?.remove_tenant(&id).await?;
            println!("tenant {id} removed (config version {})", v.config_version);
        }
        TenantCmd::AddHost { id, host, store } => {
            let v = ApiClient::open(&store)
                .await?
                .add_hostname(&id, &host)
                .await?;
            println!(
                "{host} assigned to {id} (config version {})",
                v.config_version
            );
        }
        TenantCmd::SetQuota {
            id,
            settings,
            store,
        } => {
            let mut updates = serde_json::Map::new();
            for kv in &settings {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("{kv:?} is not NAME=VALUE"))?;
                // Numbers as numbers, anything else (e.g. rate_limit_scope=fleet) as text.
                let value = match v.parse::<u64>() {
                    Ok(n) => serde_json::Value::from(n),
                    Err(_) => serde_json::Value::from(v),
                };
                updates.insert(k.to_string(), value);
            }
            let changed = ApiClient::open(&store)
                .await?
                .set_quotas(&id, &updates.into())
                .await?;
            println!(
                "quotas of {id} updated (config version {}): {}",
                changed.config_version,
                serde_json::to_string(&changed.quotas)?
            );
        }
        TenantCmd::RemoveHost { id, host, store } => {
            let v = ApiClient::open(&store)
                .await?
                .remove_hostname(&id, &host)
                .await?;
            println!(
                "{host} removed from {id} (config version {})",
                v.config_version
            );
        }
    }
    Ok(())
}

/// `wharf quotas`: the quota table.
pub async fn quotas(store: StoreArgs) -> anyhow::Result<()> {
    let table = ApiClient::open(&store).await?.quota_table().await?;
    println!("{:<32} {:>12}  {:<24} MEANING", "QUOTA", "DEFAULT", "RANGE");
    for q in table.quotas {
        let range = match (q.min, q.max) {
            (Some(min), Some(max)) => format!("{min}-{max}"),
            _ => "-".into(),
        };
        println!("{:<32} {:>12}  {:<24} {}", q.name, q.default, range, q.doc);
    }
    Ok(())
}

pub async fn route(cmd: RouteCmd) -> anyhow::Result<()> {
    match cmd {
        RouteCmd::Add(args) => {
            let api = ApiClient::open(&args.store).await?;
            let (tenant, id) = (args.tenant.clone(), args.id.clone());
            let v = api.put_route(&tenant, &id, &route_from_args(args)?).await?;
            println!(
                "route {id} of {tenant} saved (config version {})",
                v.config_version
            );
        }
        RouteCmd::List { tenant, store } => {
            let routes = ApiClient::open(&store).await?.routes(&tenant).await?.routes;
            println!("{:<20} {:<24} {:<12} UPSTREAMS", "ID", "PREFIX", "METHODS");
            for r in routes {
                let methods = if r.methods.is_empty() {
                    "*".to_string()
                } else {
                    r.methods.join(",")
                };
                let ups: Vec<String> = r
                    .upstreams
                    .iter()
                    .map(|u| format!("{}={}", u.addr, u.weight))
                    .collect();
                println!(
                    "{:<20} {:<24} {:<12} {}",
                    r.id,
                    r.path_prefix,
                    methods,
                    ups.join(" ")
                );
                for p in &r.plugins {
                    println!(
                        "{:<20}   plugin {} v{} {:?} {:?}",
                        "", p.plugin, p.version, p.on_error, p.config
                    );
                }
            }
        }
        RouteCmd::Attach {
            tenant,
            id,
            plugin,
            version,
            settings,
            allowed_outbound_hosts,
            plugin_config,
            vm_config,
            fail_open,
            store,
        } => {
            let mut config = std::collections::BTreeMap::new();
            for kv in &settings {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("config {kv:?} is not KEY=VALUE"))?;
                config.insert(k.to_string(), v.to_string());
            }
            let on_error = if fail_open {
                OnError::FailOpen
            } else {
                OnError::FailClosed
            };
            let body = AttachBody {
                version,
                config,
                on_error,
                position: None,
                allowed_outbound_hosts,
                plugin_config: proxy_config("--plugin-config", plugin_config.as_deref())?,
                vm_config: proxy_config("--vm-config", vm_config.as_deref())?,
            };
            let attached = ApiClient::open(&store)
                .await?
                .attach(&tenant, &id, &plugin, &body)
                .await?;
            println!(
                "plugin {plugin} v{} attached to route {id} of {tenant} (config version {})",
                attached.version, attached.config_version
            );
        }
        RouteCmd::Detach {
            tenant,
            id,
            plugin,
            store,
        } => {
            let v = ApiClient::open(&store)
                .await?
                .detach(&tenant, &id, &plugin)
                .await?;
            println!(
                "plugin {plugin} detached from route {id} of {tenant} (config version {})",
                v.config_version
            );
        }
        RouteCmd::Remove { tenant, id, store } => {
            let v = ApiClient::open(&store)
                .await?
                .remove_route(&tenant, &id)
                .await?;
            println!(
                "route {id} of {tenant} removed (config version {})",
                v.config_version
            );
        }
    }
    Ok(())
}

fn route_from_args(a: RouteAddArgs) -> anyhow::Result<RouteBody> {
    let mut upstreams = Vec::new();
    for u in &a.upstreams {
        let (addr, weight) = match u.split_once('=') {
            Some((addr, w)) => (
                addr,
                w.parse().with_context(|| format!("bad weight in {u:?}"))?,
            ),
            None => (u.as_str(), 1),
        };
        upstreams.push(UpstreamTarget {
            addr: addr.to_string(),
            weight,
        });
    }
    let mut timeouts = Timeouts::default();
    if let Some(ms) = a.connect_timeout_ms {
        timeouts.connect_ms = ms;
    }
    if let Some(ms) = a.read_timeout_ms {
        timeouts.read_ms = ms;
    }
    let health_check = match a.health.as_deref() {
        None => None,
        Some(kind) => Some(HealthCheck {
            kind: match kind {
                "tcp" => HealthCheckKind::Tcp,
                "http" => HealthCheckKind::Http,
                other => bail!("unknown health check {other:?}: use tcp or http"),
            },
            path: a.health_path,
            interval_ms: a.health_interval_ms,
        }),
    };
    Ok(RouteBody {
        path_prefix: a.prefix,
        methods: a.methods,
        upstreams,
        timeouts,
        health_check,
        retries: a.retries,
        upstream_tls: Default::default(),
        host_header: if a.upstream_host {
            HostHeader::Upstream
        } else {
            HostHeader::Client
        },
        upstream_protocol: if a.upstream_http2 {
            UpstreamProtocol::Http2
        } else {
            UpstreamProtocol::Http1
        },
    })
}

pub async fn plugin(cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::New {
            dir,
            lang,
            template,
        } => crate::cli::plugin_new::new(&dir, &lang, template.as_deref())?,
        PluginCmd::Build { dir } => {
            crate::cli::plugin_new::build(&dir, || {
                let boot = crate::bootstrap::Bootstrap::default();
                let metrics = std::sync::Arc::new(wharf_metrics::Metrics::new());
                wharf_plugins::PluginRuntime::new(boot.plugins, None, metrics)
            })?;
        }
        PluginCmd::Test(args) => {
            if !crate::cli::plugin_test::run(args).await? {
                // Scripts tell a plugin failure from a run that worked.
                std::process::exit(2);
            }
        }
        PluginCmd::Add {
            tenant,
            name,
            file,
            oci,
            store,
        } => {
            let api = ApiClient::open(&store).await?;
            // Validated and compiled before it is stored, by the gateway or in this process.
            let added = match (file, oci) {
                (_, Some(reference)) => api
                    .pull_plugin(&tenant, &name, &reference)
                    .await
                    .with_context(|| format!("{reference} refused"))?,
                (Some(file), None) => {
                    let bytes = std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    api.upload_plugin(&tenant, &name, bytes)
                        .await
                        .with_context(|| format!("{} refused", file.display()))?
                }
                (None, None) => anyhow::bail!("--file or --oci"),
            };
            println!(
                "plugin {name} v{} of {tenant} stored, sha256 {}",
                added.version, added.sha256
            );
            if let Some(source) = added.source {
                println!("pulled from {source}");
            }
        }
        PluginCmd::List { tenant, store } => print_versions(
            ApiClient::open(&store)
                .await?
                .plugins(&tenant)
                .await?
                .plugins,
            None,
        ),
        PluginCmd::Versions {
            tenant,
            name,
            store,
        } => print_versions(
            ApiClient::open(&store)
                .await?
                .plugins(&tenant)
                .await?
                .plugins,
            Some(&name),
        ),
        PluginCmd::Rollback {
            tenant,
            name,
            version,
            store,
        } => {
            let moved = ApiClient::open(&store)
                .await?
                .rollback(&tenant, &name, version)
                .await?;
            println!(
                "plugin {name} of {tenant} now runs v{version} on routes: {}",
                moved.routes.join(", ")
            );
        }
    }
    Ok(())
}

fn print_versions(versions: Vec<PluginVersion>, only: Option<&str>) {
    println!("{:<24} {:>7}  {:<64}  SOURCE", "NAME", "VERSION", "SHA256");
    for p in versions.iter().filter(|p| only.is_none_or(|n| n == p.name)) {
        let source = p.source.as_deref().unwrap_or("upload");
        println!("{:<24} {:>7}  {}  {source}", p.name, p.version, p.sha256);
    }
}

/// `--plugin-config`: `@FILE` or inline JSON (a value that is not JSON is passed as its text).
fn proxy_config(
    flag: &str,
    given: Option<&str>,
) -> anyhow::Result<Option<wharf_tenancy::proxy_config::ProxyConfig>> {
    let Some(given) = given else {
        return Ok(None);
    };
    let text = match given.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("{flag} {path}"))?,
        None => given.to_string(),
    };
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok(Some(wharf_tenancy::proxy_config::ProxyConfig(value)))
}
