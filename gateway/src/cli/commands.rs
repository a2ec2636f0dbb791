//! `wharf tenant …`, `wharf route …` and `wharf plugin …`: operator and tenant commands, against
//! the config store or a gateway's admin API (`target.rs`).

use anyhow::{bail, Context};
use reqwest::Method;
use wharf_tenancy::{
    HealthCheck, HealthCheckKind, OnError, PluginVersion, Route, Timeouts, UpstreamProtocol,
    UpstreamTarget,
};

use crate::cli::client::Body;
use crate::cli::target::{PluginAttachmentArgs, Target};

use crate::bootstrap::Bootstrap;
use crate::cli::{PluginCmd, RouteAddArgs, RouteCmd, TenantCmd};
use crate::plugin_add::add_plugin;

pub use crate::bootstrap::open_store;

pub async fn tenant(cmd: TenantCmd) -> anyhow::Result<()> {
    match cmd {
        TenantCmd::Add {
            id,
            name,
            hosts,
            store,
        } => {
            let store = open_store(&store).await?;
            let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let version = store
                .create_tenant(&id, name.as_deref().unwrap_or(&id), &hosts)
                .await?;
            println!("tenant {id} created (config version {version})");
        }
        TenantCmd::List { store } => {
            let snap = open_store(&store).await?.load().await?;
            println!("{:<24} {:<28} {:>6}  HOSTNAMES", "ID", "NAME", "ROUTES");
            for t in snap.tenants {
                let hosts: Vec<String> = t.hostnames.iter().map(|h| h.to_string()).collect();
                println!(
                    "{:<24} {:<28} {:>6}  {}",
                    t.id,
                    t.display_name,
                    t.routes.len(),
                    hosts.join(", ")
                );
            }
        }
        TenantCmd::Remove { id, store } => {
            let v = open_store(&store).await?.remove_tenant(&id).await?;
            println!("tenant {id} removed (config version {v})");
        }
        TenantCmd::AddHost { id, host, store } => {
            let v = open_store(&store).await?.add_hostname(&id, &host).await?;
            println!("{host} assigned to {id} (config version {v})");
        }
        TenantCmd::SetQuota {
            id,
            settings,
            store,
        } => {
            let store = open_store(&store).await?;
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
            let (v, q) = store.patch_quotas(&id, &updates.into()).await?;
            println!(
                "quotas of {id} updated (config version {v}): {}",
                serde_json::to_string(&q)?
            );
        }
        TenantCmd::RemoveHost { id, host, store } => {
            let v = open_store(&store)
                .await?
                .remove_hostname(&id, &host)
                .await?;
            println!("{host} removed from {id} (config version {v})");
        }
    }
    Ok(())
}

pub async fn route(cmd: RouteCmd) -> anyhow::Result<()> {
    match cmd {
        RouteCmd::Add(args) => {
            let target = Target::open(&args.store).await?;
            let tenant = args.tenant.clone();
            let route = route_from_args(args)?;
            let id = route.id.clone();
            let v = target.put_route(&tenant, route).await?;
            println!("route {id} of {tenant} saved (config version {v})");
        }
        RouteCmd::List { tenant, store } => {
            let routes = Target::open(&store).await?.routes(&tenant).await?;
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
            let args = PluginAttachmentArgs {
                plugin: plugin.clone(),
                version,
                config,
                on_error,
            };
            let (version, v) = Target::open(&store)
                .await?
                .attach(&tenant, &id, args)
                .await?;
            println!("plugin {plugin} v{version} attached to route {id} of {tenant} (config version {v})");
        }
        RouteCmd::Detach {
            tenant,
            id,
            plugin,
            store,
        } => {
            let v = Target::open(&store)
                .await?
                .detach(&tenant, &id, &plugin)
                .await?;
            println!("plugin {plugin} detached from route {id} of {tenant} (config version {v})");
        }
        RouteCmd::Remove { tenant, id, store } => {
            let v = Target::open(&store)
                .await?
                .remove_route(&tenant, &id)
                .await?;
            println!("route {id} of {tenant} removed (config version {v})");
        }
    }
    Ok(())
}

fn route_from_args(a: RouteAddArgs) -> anyhow::Result<Route> {
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
    Ok(Route {
        id: a.id,
        path_prefix: a.prefix,
        methods: a.methods,
        upstreams,
        timeouts,
        health_check,
        plugins: vec![],
        upstream_protocol: if a.upstream_http2 {
            UpstreamProtocol::Http2
        } else {
            UpstreamProtocol::Http1
        },
    })
}

pub async fn plugin(cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::Add {
            tenant,
            name,
            file,
            store: args,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let (version, sha) = match Target::open(&args).await? {
                Target::Api(c) => {
                    // The gateway validates and compiles before it stores.
                    let v = c
                        .call(
                            Method::PUT,
                            &format!("/v1/tenants/{tenant}/plugins/{name}"),
                            Body::Bytes(bytes),
                        )
                        .await?;
                    (
                        v["version"].as_i64().unwrap_or_default(),
                        v["sha256"].as_str().unwrap_or_default().to_string(),
                    )
                }
                Target::Store(store) => {
                    let boot = Bootstrap::load(args.config.as_deref())?.with_store_args(&args);
                    let limit = store
                        .tenant(&tenant)
                        .await?
                        .quotas
                        .plugin
                        .max_bytes
                        .min(boot.plugins.max_plugin_bytes as u64);
                    // Compiled here with the gateway's engine settings (this node's disk cache
                    // is then warm), through the same checks as an upload to the API.
                    let metrics = std::sync::Arc::new(wharf_metrics::Metrics::new());
                    let runtime = wharf_plugins::PluginRuntime::new(
                        boot.plugins.clone(),
                        Some(&boot.compiled_cache_dir()),
                        metrics,
                    )?;
                    let added = add_plugin(&store, &runtime, &tenant, &name, &bytes, limit)
                        .await
                        .with_context(|| format!("{} refused", file.display()))?;
                    (added.version, added.sha256)
                }
            };
            println!("plugin {name} v{version} of {tenant} stored, sha256 {sha}");
        }
        PluginCmd::List { tenant, store } => {
            print_versions(Target::open(&store).await?.plugins(&tenant).await?, None)
        }
        PluginCmd::Versions {
            tenant,
            name,
            store,
        } => print_versions(
            Target::open(&store).await?.plugins(&tenant).await?,
            Some(&name),
        ),
        PluginCmd::Rollback {
            tenant,
            name,
            version,
            store,
        } => {
            let moved = Target::open(&store)
                .await?
                .rollback(&tenant, &name, version)
                .await?;
            println!(
                "plugin {name} of {tenant} now runs v{version} on routes: {}",
                moved.join(", ")
            );
        }
    }
    Ok(())
}

fn print_versions(versions: Vec<PluginVersion>, only: Option<&str>) {
    println!("{:<24} {:>7}  SHA256", "NAME", "VERSION");
    for p in versions.iter().filter(|p| only.is_none_or(|n| n == p.name)) {
        println!("{:<24} {:>7}  {}", p.name, p.version, p.sha256);
    }
}
