//! The routing table serving live traffic, compiled from a config snapshot and swapped atomically.
//!
//! One [`CompiledTenant`] per tenant and one [`CompiledRoute`] per route, each behind an `Arc`:
//! a request holds the tenant and route it matched for its whole life, so a reload never changes
//! a request midway, and a reload keeps what did not change (balancers and their health state,
//! rate limiters).

use std::sync::Arc;

use arc_swap::ArcSwap;
use wharf_plugins::capabilities::{Backends as TenantBackendSet, TenantBackends};
use wharf_plugins::PluginQuotas;
use wharf_tenancy::model::normalize_host;
use wharf_tenancy::routing::{select_route, HostIndex};
use wharf_tenancy::{ConfigSnapshot, OnError, Quotas, Route, Tenant};

use super::balancer::{build_balancer, hc_interval, Balancer, HealthChecked};
use super::resolve::{PluginSet, Unavailable};
use crate::egress::EgressPolicy;
use crate::proxy::chain::Attached;
use crate::proxy::rate_limit::TenantRate;

pub struct CompiledTenant {
    pub id: Arc<str>,
    /// Sorted by id, as the store keeps them (route selection breaks ties by this order).
    pub routes: Vec<Arc<CompiledRoute>>,
    /// The same routes' specs, in the same order: what route selection matches against.
    specs: Vec<Route>,
    pub limits: PluginQuotas,
    /// Redis and SQL for this tenant's plugins (pools open lazily, on first use).
    pub backends: Arc<TenantBackends>,
    /// Requests per second and burst; `None`: unlimited.
    pub rate: Option<Arc<TenantRate>>,
}

/// Everything a request on one route needs: where to send it and what runs on the way.
pub struct CompiledRoute {
    pub spec: Route,
    pub balancer: Arc<Balancer>,
    /// The route's plugin chain, resolved against the compiled-code cache.
    pub chain: Vec<Attached>,
}

#[derive(Default)]
pub struct RoutingTable {
    pub version: i64,
    hosts: HostIndex,
    pub tenants: Vec<Arc<CompiledTenant>>,
}

/// Where a request goes, as far as the config can tell.
pub enum Lookup {
    UnknownHost,
    NoRoute(Arc<CompiledTenant>),
    Route(Arc<CompiledTenant>, Arc<CompiledRoute>),
}

impl RoutingTable {
    pub fn lookup(&self, raw_host: &str, method: &str, path: &str) -> Lookup {
        let host = normalize_host(raw_host);
        let Some(i) = self.hosts.lookup(&host) else {
            return Lookup::UnknownHost;
        };
        let tenant = &self.tenants[i];
        match select_route(&tenant.specs, method, path) {
            Some(r) => Lookup::Route(tenant.clone(), tenant.routes[r].clone()),
            None => Lookup::NoRoute(tenant.clone()),
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
        let tenants = snapshot
            .tenants
            .iter()
            .map(|t| {
                let old = previous.tenants.iter().find(|o| *o.id == *t.id);
                let routes = t
                    .routes
                    .iter()
                    .map(|r| {
                        let balancer = reuse_balancer(old, r).unwrap_or_else(|| {
                            let lb = Arc::new(build_balancer(r, egress));
                            if let Some(hc) = &r.health_check {
                                fresh.push(HealthChecked {
                                    lb: Arc::downgrade(&lb),
                                    interval: hc_interval(hc),
                                });
                            }
                            lb
                        });
                        Arc::new(CompiledRoute {
                            spec: r.clone(),
                            balancer,
                            chain: resolve_chain(t, r, plugins),
                        })
                    })
                    .collect();
                Arc::new(CompiledTenant {
                    id: t.id.as_str().into(),
                    routes,
                    specs: t.routes.clone(),
                    limits: t.quotas.plugin,
                    backends: backends.tenant(&t.id, &t.quotas),
                    rate: keep_or_build_rate(old.map(|o| &**o), &t.quotas),
                })
            })
            .collect();
        let live: Vec<&str> = snapshot.tenants.iter().map(|t| t.id.as_str()).collect();
        backends.retain(&live);
        let table = RoutingTable {
            version: snapshot.version,
            hosts: HostIndex::build(&snapshot.tenants),
            tenants,
        };
        (table, fresh)
    }

    /// Every health-checked balancer, for starting checks on a table built elsewhere.
    pub fn health_checked(&self) -> Vec<HealthChecked> {
        self.routes()
            .filter_map(|(_, r)| {
                let hc = r.spec.health_check.as_ref()?;
                Some(HealthChecked {
                    lb: Arc::downgrade(&r.balancer),
                    interval: hc_interval(hc),
                })
            })
            .collect()
    }

    /// Every route of every tenant.
    pub fn routes(&self) -> impl Iterator<Item = (&CompiledTenant, &CompiledRoute)> {
        self.tenants
            .iter()
            .flat_map(|t| t.routes.iter().map(move |r| (&**t, &**r)))
    }
}

/// The previous table's balancer for this route, if its targets and health check are unchanged.
fn reuse_balancer(old: Option<&Arc<CompiledTenant>>, r: &Route) -> Option<Arc<Balancer>> {
    old?.routes
        .iter()
        .find(|o| {
            o.spec.id == r.id
                && o.spec.upstreams == r.upstreams
                && o.spec.health_check == r.health_check
        })
        .map(|o| o.balancer.clone())
}

fn keep_or_build_rate(old: Option<&CompiledTenant>, q: &Quotas) -> Option<Arc<TenantRate>> {
    let wanted = (
        q.requests.requests_per_second,
        q.requests.burst,
        q.requests.rate_limit_scope,
    );
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
                None => Err(Unavailable::NoSuchVersion {
                    plugin: a.plugin.clone(),
                    version: a.version,
                }),
                Some(pv) => match plugins.get(&pv.sha256) {
                    Some(result) => result.clone(),
                    None => Err(Unavailable::NotLoaded),
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
