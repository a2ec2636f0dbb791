//! The routing table serving live traffic, compiled from a config snapshot and swapped atomically.
//!
//! Each request pins the table it started with (an `Arc`), so a reload never changes a request
//! midway and never drops one in flight.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora_load_balancing::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{discovery, Backend, Backends, LoadBalancer};
use wharf_plugins::TenantLimits;
use wharf_tenancy::backends::{Backends as TenantBackendSet, TenantBackends};
use wharf_tenancy::model::normalize_host;
use wharf_tenancy::routing::{select_route, HostIndex};
use wharf_tenancy::{ConfigSnapshot, HealthCheck, HealthCheckKind, OnError, Quotas, Route, Tenant};

use crate::chain::Attached;
use crate::egress::EgressPolicy;
use crate::rate_limit::TenantRate;
use crate::resolve::PluginSet;

pub type Balancer = LoadBalancer<RoundRobin>;

pub struct CompiledTenant {
    pub id: Arc<str>,
    pub routes: Vec<Route>,
    /// Parallel to `routes`.
    pub balancers: Vec<Arc<Balancer>>,
    /// Parallel to `routes`: each route's plugin chain, resolved.
    pub chains: Vec<Vec<Attached>>,
    pub limits: TenantLimits,
    /// Redis and SQL for this tenant's plugins (pools open lazily, on the proxy's runtime).
    pub backends: Arc<TenantBackends>,
    /// Requests per second and burst; `None`: unlimited.
    pub rate: Option<Arc<TenantRate>>,
}

#[derive(Default)]
pub struct RoutingTable {
    pub version: i64,
    hosts: HostIndex,
    pub tenants: Vec<CompiledTenant>,
}

/// Where a request goes, as far as the config can tell.
pub enum Lookup {
    UnknownHost,
    /// Index into `RoutingTable::tenants`.
    NoRoute {
        tenant: usize,
    },
    Route {
        tenant: usize,
        route: usize,
    },
}

impl RoutingTable {
    pub fn lookup(&self, raw_host: &str, method: &str, path: &str) -> Lookup {
        let host = normalize_host(raw_host);
        let Some(tenant) = self.hosts.lookup(&host) else {
            return Lookup::UnknownHost;
        };
        match select_route(&self.tenants[tenant].routes, method, path) {
            Some(route) => Lookup::Route { tenant, route },
            None => Lookup::NoRoute { tenant },
        }
    }

    /// Builds the table for `snapshot`, keeping `previous`'s balancers (and so their health
    /// state) for routes whose targets and health check did not change. Returns the balancers
    /// that are new and need health checks started.
    pub fn compile(
        snapshot: &ConfigSnapshot,
        plugins: &PluginSet,
        backends: &TenantBackendSet,
        egress: &EgressPolicy,
        previous: &RoutingTable,
    ) -> (RoutingTable, Vec<HealthChecked>) {
        let mut fresh = Vec::new();
        let mut tenants = Vec::with_capacity(snapshot.tenants.len());
        for t in &snapshot.tenants {
            let old = previous.tenants.iter().find(|o| *o.id == *t.id);
            let mut balancers = Vec::with_capacity(t.routes.len());
            for r in &t.routes {
                let reused = old.and_then(|o| {
                    let i = o.routes.iter().position(|or| {
                        or.id == r.id
                            && or.upstreams == r.upstreams
                            && or.health_check == r.health_check
                    })?;
                    Some(o.balancers[i].clone())
                });
                let lb = match reused {
                    Some(lb) => lb,
                    None => {
                        let lb = Arc::new(build_balancer(r, egress));
                        if let Some(hc) = &r.health_check {
                            fresh.push(HealthChecked {
                                lb: Arc::downgrade(&lb),
                                interval: hc_interval(hc),
                            });
                        }
                        lb
                    }
                };
                balancers.push(lb);
            }
            let chains = t
                .routes
                .iter()
                .map(|r| resolve_chain(t, r, plugins))
                .collect();
            tenants.push(CompiledTenant {
                id: t.id.as_str().into(),
                routes: t.routes.clone(),
                balancers,
                chains,
                limits: tenant_limits(&t.quotas),
                backends: backends.tenant(&t.id, &t.quotas),
                rate: keep_or_build_rate(old, &t.quotas),
            });
        }
        let live: Vec<&str> = snapshot.tenants.iter().map(|t| t.id.as_str()).collect();
        backends.retain(&live);
        let hosts = HostIndex::build(&snapshot.tenants);
        (
            RoutingTable {
                version: snapshot.version,
                hosts,
                tenants,
            },
            fresh,
        )
    }

    /// Every health-checked balancer, for starting checks on a table built elsewhere.
    pub fn health_checked(&self) -> Vec<HealthChecked> {
        let mut out = Vec::new();
        for t in &self.tenants {
            for (r, lb) in t.routes.iter().zip(&t.balancers) {
                if let Some(hc) = &r.health_check {
                    out.push(HealthChecked {
                        lb: Arc::downgrade(lb),
                        interval: hc_interval(hc),
                    });
                }
            }
        }
        out
    }
}

fn keep_or_build_rate(old: Option<&CompiledTenant>, q: &Quotas) -> Option<Arc<TenantRate>> {
    let wanted = (q.requests_per_second, q.burst, q.rate_limit_scope);
    match old.and_then(|o| o.rate.clone()) {
        Some(r) if r.setting == wanted => Some(r),
        _ => TenantRate::for_quotas(q).map(Arc::new),
    }
}

fn resolve_chain(tenant: &Tenant, route: &Route, plugins: &PluginSet) -> Vec<Attached> {
    route
        .plugins
        .iter()
        .map(|a| {
            let compiled = match tenant.plugin_version(&a.plugin, a.version) {
                None => Err(format!(
                    "version {} of plugin {} does not exist",
                    a.version, a.plugin
                )),
                Some(pv) => match plugins.get(&pv.sha256) {
                    Some(result) => result.clone(),
                    None => Err("plugin was not loaded".to_string()),
                },
            };
            Attached {
                name: a.plugin.as_str().into(),
                compiled,
                config: Arc::new(a.config.clone()),
                fail_open: a.on_error == OnError::FailOpen,
            }
        })
        .collect()
}

/// A tenant's quotas as the plugin runtime's limits.
pub fn tenant_limits(q: &Quotas) -> TenantLimits {
    TenantLimits {
        fuel: q.plugin_fuel,
        deadline_ms: q.plugin_deadline_ms,
        memory_bytes: q.plugin_memory_bytes,
        max_instances: q.plugin_max_instances,
    }
}

fn hc_interval(hc: &HealthCheck) -> Duration {
    Duration::from_millis(hc.interval_ms)
}

/// Targets the egress policy refuses are left out: never dialled, never health-checked.
fn build_balancer(route: &Route, egress: &EgressPolicy) -> Balancer {
    let mut set = BTreeSet::new();
    for u in &route.upstreams {
        if let Err(why) = egress.check_target(&u.addr) {
            tracing::warn!(route = %route.id, addr = %u.addr, "upstream refused by the egress policy: {why}");
            continue;
        }
        match Backend::new_with_weight(&u.addr, u.weight as usize) {
            Ok(b) => {
                set.insert(b);
            }
            Err(e) => tracing::warn!(route = %route.id, addr = %u.addr, "skipping upstream: {e}"),
        }
    }
    let mut backends = Backends::new(discovery::Static::new(set));
    if let Some(hc) = &route.health_check {
        match hc.kind {
            HealthCheckKind::Tcp => backends.set_health_check(TcpHealthCheck::new()),
            HealthCheckKind::Http => {
                let mut check = HttpHealthCheck::new("wharf-health-check", false);
                if let Ok(mut req) =
                    pingora_http::RequestHeader::build("GET", hc.path.as_bytes(), None)
                {
                    let _ = req.insert_header("Host", "wharf-health-check");
                    check.req = req;
                }
                backends.set_health_check(Box::new(check));
            }
        }
    }
    let lb = LoadBalancer::from_backends(backends);
    // Static discovery never blocks, so this completes on the first poll.
    let updated = futures_now(lb.update());
    if let Some(Err(e)) = updated {
        tracing::warn!(route = %route.id, "load balancer update failed: {e}");
    }
    lb
}

/// Polls a future once; static discovery resolves immediately.
fn futures_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// A balancer whose targets are probed in the background while it is in use.
pub struct HealthChecked {
    lb: Weak<Balancer>,
    interval: Duration,
}

impl HealthChecked {
    /// Runs on the caller's runtime until the balancer is dropped with the last table using it.
    pub fn spawn(self) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            loop {
                tick.tick().await;
                let Some(lb) = self.lb.upgrade() else { break };
                lb.backends().run_health_check(true).await;
            }
        });
    }
}

/// The table in force, shared by the proxy (readers) and the control plane (the one writer).
pub struct LiveConfig {
    current: ArcSwap<RoutingTable>,
}

impl LiveConfig {
    pub fn new(table: RoutingTable) -> Self {
        LiveConfig {
            current: ArcSwap::from_pointee(table),
        }
    }

    pub fn load(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }

    pub fn store(&self, table: RoutingTable) {
        self.current.store(Arc::new(table));
    }
}
