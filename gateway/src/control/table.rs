//! The routing table serving live traffic, compiled from a config snapshot and swapped atomically.
//!
//! One [`CompiledTenant`] per tenant and one [`CompiledRoute`] per route, each behind an `Arc`:
//! a request holds the tenant and route it matched for its whole life, so a reload never changes
//! a request midway, and a reload keeps what did not change (balancers and their health state,
//! rate limiters).

use std::collections::HashSet;
use std::sync::Arc;
use wharf_plugins::proxy_wasm::pool::VmConfigs;
use wharf_tenancy::proxy_config;

use arc_swap::ArcSwap;
use wharf_plugins::capabilities::{Capabilities, TenantCapabilities};
use wharf_plugins::PluginQuotas;
use wharf_tenancy::hostname::MAX_HOSTNAME_LEN;
use wharf_tenancy::model::normalize_host;
use wharf_tenancy::routing::{select_route, wildcard_suffixes};
use wharf_tenancy::{ConfigDelta, ConfigSnapshot, HostPattern, OnError, Quotas, Route, Tenant};

use super::balancer::{build_balancer, hc_interval, Balancer, Upkeep};
use super::in_flight::TenantInFlight;
use super::outliers::Outliers;
use super::plugin_ref::Attached;
use super::rate::TenantRate;
use super::resolve::{PluginRef, PluginSet, Unavailable};
use super::retry_budget::RetryBudget;
use super::shards::Shared;
use super::targets::Targets;
use super::upstream_tls::UpstreamTls;
use crate::tls::resolver::{pick, CertificateLookup, ServedCert};
use crate::tls::seal::KeySealer;
use wharf_plugins::capabilities::networking::{EgressPolicy, Resolver};

pub struct CompiledTenant {
    pub id: Arc<str>,
    /// The hostnames it owns: what a change takes out of the table's index.
    hosts: Vec<HostPattern>,
    /// Sorted by id, as the store keeps them (route selection breaks ties by this order).
    pub routes: Vec<Arc<CompiledRoute>>,
    /// The same routes' specs, in the same order: what route selection matches against.
    specs: Vec<Route>,
    pub plugin_quotas: PluginQuotas,
    /// Redis and SQL for this tenant's plugins (pools open lazily, on first use).
    pub capabilities: Arc<TenantCapabilities>,
    /// Requests per second and burst; `None`: unlimited.
    pub rate: Option<Arc<TenantRate>>,
    /// Its requests in flight on this node (kept across reloads) and their cap.
    pub in_flight: Arc<TenantInFlight>,
    pub max_in_flight: u32,
    /// TLS certificates for its hostnames.
    pub certs: Vec<Arc<ServedCert>>,
}

/// Everything a request on one route needs: where to send it and what runs on the way.
pub struct CompiledRoute {
    pub spec: Route,
    pub balancer: Arc<Balancer>,
    /// Its targets as last discovered (names resolved): why there is no backend, when none.
    pub targets: Arc<Targets>,
    pub retry_budget: RetryBudget,
    /// TLS to its targets, for a route of `https://` targets.
    pub tls: Option<Arc<UpstreamTls>>,
    pub outliers: Outliers,
    /// The route's plugin chain, resolved against the compiled-code cache.
    pub chain: Vec<Attached>,
}

/// Tenants by id and their hostnames, in maps that successive tables share ([`Shared`]): a
/// change costs the tenants it touches, not the fleet's size.
#[derive(Default)]
pub struct RoutingTable {
    pub version: i64,
    tenants: Shared<Arc<CompiledTenant>>,
    exact: Shared<Arc<CompiledTenant>>,
    /// By suffix: `example.com` for `*.example.com`.
    wildcards: Shared<Arc<CompiledTenant>>,
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
        let Some(tenant) = self.owner(&host) else {
            return Lookup::UnknownHost;
        };
        match select_route(&tenant.specs, method, path) {
            Some(r) => Lookup::Route(tenant.clone(), tenant.routes[r].clone()),
            None => Lookup::NoRoute(tenant.clone()),
        }
    }

    /// The tenant owning a host (as a client sent it).
    pub fn host_owner(&self, raw_host: &str) -> Option<Arc<CompiledTenant>> {
        self.owner(&normalize_host(raw_host)).cloned()
    }

    /// The tenant owning a normalized host: its exact name, else the most specific wildcard
    /// (one probe per label).
    fn owner(&self, host: &str) -> Option<&Arc<CompiledTenant>> {
        // No stored name is longer: a client's 8 KB Host of dots costs no probing.
        if host.len() > MAX_HOSTNAME_LEN {
            return None;
        }
        if let Some(t) = self.exact.get(host) {
            return Some(t);
        }
        if self.wildcards.is_empty() {
            return None;
        }
        wildcard_suffixes(host).find_map(|suffix| self.wildcards.get(suffix))
    }

    /// Builds the table for `snapshot`, keeping `previous`'s balancers (and so their health
    /// state) for routes whose targets and health check did not change. Returns the balancers
    /// that are new and need health checks started.
    pub fn compile(
        snapshot: &ConfigSnapshot,
        env: &CompileEnv<'_>,
        previous: &RoutingTable,
    ) -> (RoutingTable, Vec<Upkeep>) {
        let mut table = RoutingTable {
            version: snapshot.version,
            ..RoutingTable::default()
        };
        let mut fresh = Vec::new();
        for t in &snapshot.tenants {
            let compiled = compile_tenant(t, previous.tenants.get(&t.id), env, &mut fresh);
            table.put(compiled);
        }
        let live: HashSet<&str> = snapshot.tenants.iter().map(|t| t.id.as_str()).collect();
        env.capabilities.retain(|id| live.contains(id));
        (table, fresh)
    }

    /// `previous` with the tenants of `delta` recompiled, added or removed; every other tenant
    /// is shared as is (its compiled routes, balancers, limiters and plugin handles).
    pub fn apply(
        delta: &ConfigDelta,
        env: &CompileEnv<'_>,
        previous: &RoutingTable,
    ) -> (RoutingTable, Vec<Upkeep>) {
        let mut table = RoutingTable {
            version: delta.version,
            tenants: previous.tenants.clone(),
            exact: previous.exact.clone(),
            wildcards: previous.wildcards.clone(),
        };
        // Every changed tenant's old hostnames go first: a name may move between tenants
        // within one delta.
        for (id, _) in &delta.tenants {
            if let Some(old) = previous.tenants.get(id) {
                table.unindex(old);
                table.tenants.remove(id);
            }
        }
        let removed: HashSet<&str> = delta
            .tenants
            .iter()
            .filter(|(_, now)| now.is_none())
            .map(|(id, _)| id.as_str())
            .collect();
        if !removed.is_empty() {
            env.capabilities.retain(|id| !removed.contains(id));
        }
        let mut fresh = Vec::new();
        for t in delta.tenants.iter().filter_map(|(_, now)| now.as_ref()) {
            let compiled = compile_tenant(t, previous.tenants.get(&t.id), env, &mut fresh);
            table.put(compiled);
        }
        (table, fresh)
    }

    fn put(&mut self, tenant: Arc<CompiledTenant>) {
        for h in &tenant.hosts {
            match h {
                HostPattern::Exact(name) => self.exact.insert(name.clone(), tenant.clone()),
                HostPattern::Wildcard(suffix) => {
                    self.wildcards.insert(suffix.clone(), tenant.clone())
                }
            }
        }
        self.tenants.insert(tenant.id.to_string(), tenant);
    }

    fn unindex(&mut self, tenant: &CompiledTenant) {
        for h in &tenant.hosts {
            match h {
                HostPattern::Exact(name) => self.exact.remove(name),
                HostPattern::Wildcard(suffix) => self.wildcards.remove(suffix),
            }
        }
    }

    /// Every tenant, in no particular order.
    pub fn tenants(&self) -> impl Iterator<Item = &Arc<CompiledTenant>> {
        self.tenants.values()
    }

    pub fn tenant(&self, id: &str) -> Option<&Arc<CompiledTenant>> {
        self.tenants.get(id)
    }

    /// Every health-checked balancer, for starting checks on a table built elsewhere.
    pub fn upkeep(&self, resolver: &Resolver) -> Vec<Upkeep> {
        self.routes()
            .filter_map(|(_, r)| upkeep_of(r, resolver))
            .collect()
    }

    /// Every distinct plugin the table's routes attach.
    pub fn plugins(&self) -> Vec<Arc<PluginRef>> {
        let mut seen = HashSet::new();
        self.routes()
            .flat_map(|(_, r)| r.chain.iter())
            .filter_map(|a| a.plugin.as_ref().ok())
            .filter(|p| seen.insert(p.sha256.clone()))
            .cloned()
            .collect()
    }

    /// Every route of every tenant.
    pub fn routes(&self) -> impl Iterator<Item = (&CompiledTenant, &CompiledRoute)> {
        self.tenants
            .values()
            .flat_map(|t| t.routes.iter().map(move |r| (&**t, &**r)))
    }
}

/// What compiling a tenant needs besides its config.
pub struct CompileEnv<'a> {
    pub plugins: &'a PluginSet,
    pub capabilities: &'a Capabilities,
    pub egress: &'a Arc<EgressPolicy>,
    /// Opens tenants' sealed private keys.
    pub sealer: &'a KeySealer,
}

fn compile_tenant(
    t: &Tenant,
    old: Option<&Arc<CompiledTenant>>,
    env: &CompileEnv<'_>,
    fresh: &mut Vec<Upkeep>,
) -> Arc<CompiledTenant> {
    // Before the routes: a route may present one of them to its upstream (mTLS).
    let certs: Vec<Arc<ServedCert>> = t
        .certificates
        .iter()
        .filter_map(|c| {
            ServedCert::keep_or_load(old.map(|o| o.certs.as_slice()), &t.id, c, env.sealer)
        })
        .collect();
    let routes = t
        .routes
        .iter()
        .map(|r| {
            let resolver = env.capabilities.node().networking.resolver();
            let (balancer, targets) = reuse_balancer(old, r).unwrap_or_else(|| {
                let targets = Arc::new(Targets::new(r, env.egress, resolver));
                let lb = Arc::new(build_balancer(r, &targets));
                (lb, targets)
            });
            let route = Arc::new(CompiledRoute {
                spec: r.clone(),
                balancer,
                targets,
                retry_budget: RetryBudget::default(),
                tls: UpstreamTls::of(r, &certs),
                outliers: Outliers::default(),
                chain: resolve_chain(t, r, env.plugins),
            });
            // A balancer new to this table starts its upkeep; a reused one has it running.
            if !reused_from(old, &route) {
                fresh.extend(upkeep_of(&route, resolver));
            }
            route
        })
        .collect();
    Arc::new(CompiledTenant {
        id: t.id.as_str().into(),
        hosts: t.hostnames.clone(),
        routes,
        specs: t.routes.clone(),
        plugin_quotas: t.quotas.plugin,
        capabilities: env.capabilities.tenant(&t.id, &t.quotas),
        rate: keep_or_build_rate(old.map(|o| &**o), &t.quotas),
        in_flight: old.map(|o| o.in_flight.clone()).unwrap_or_default(),
        max_in_flight: t.quotas.requests.max_in_flight,
        certs,
    })
}

/// The previous table's balancer for this route, if its targets and health check are unchanged.
fn reuse_balancer(
    old: Option<&Arc<CompiledTenant>>,
    r: &Route,
) -> Option<(Arc<Balancer>, Arc<Targets>)> {
    old?.routes
        .iter()
        .find(|o| {
            o.spec.id == r.id
                && o.spec.upstreams == r.upstreams
                && o.spec.health_check == r.health_check
        })
        .map(|o| (o.balancer.clone(), o.targets.clone()))
}

/// Whether the route's balancer is one `old` already had (its upkeep runs already).
fn reused_from(old: Option<&Arc<CompiledTenant>>, route: &CompiledRoute) -> bool {
    old.is_some_and(|o| {
        o.routes
            .iter()
            .any(|r| Arc::ptr_eq(&r.balancer, &route.balancer))
    })
}

/// What a route's balancer needs in the background: health checks, re-discovery of names.
fn upkeep_of(r: &CompiledRoute, resolver: &Resolver) -> Option<Upkeep> {
    let health = r.spec.health_check.as_ref().map(hc_interval);
    let waits_on = r.targets.names();
    let names = (!waits_on.is_empty()).then(|| resolver.changes());
    (health.is_some() || names.is_some()).then(|| Upkeep {
        lb: Arc::downgrade(&r.balancer),
        health,
        names,
        waits_on,
    })
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
            let plugin = match tenant.plugin_version(&a.plugin, a.version) {
                None => Err(Unavailable::NoSuchVersion {
                    plugin: a.plugin.clone(),
                    version: a.version,
                }),
                Some(pv) => plugins
                    .get(&pv.sha256)
                    .cloned()
                    .ok_or(Unavailable::NotLoaded),
            };
            Attached {
                name: a.plugin.as_str().into(),
                plugin,
                config: wharf_plugins::attachment_config(&a.config),
                outbound: a.allowed_outbound_hosts.as_slice().into(),
                proxy: VmConfigs::new(
                    proxy_config::bytes(&a.vm_config),
                    proxy_config::bytes(&a.plugin_config),
                ),
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

#[cfg(test)]
#[path = "table_tests.rs"]
pub(crate) mod tests;

impl crate::api::LiveRoutes for LiveConfig {
    fn targets(&self, tenant: &str, route: &str) -> Vec<crate::api::schema::TargetState> {
        let table = self.load();
        let Some(r) = table
            .tenant(tenant)
            .and_then(|t| t.routes.iter().find(|r| r.spec.id == route).cloned())
        else {
            return Vec::new();
        };
        let backends = r.balancer.backends();
        backends
            .get_backend()
            .iter()
            .map(|b| crate::api::schema::TargetState {
                addr: b.addr.to_string(),
                name: b
                    .ext
                    .get::<super::targets::TargetName>()
                    .map(|n| n.0.to_string()),
                healthy: backends.ready(b),
                ejected: b.addr.as_inet().is_some_and(|a| r.outliers.ejected(a)),
            })
            .collect()
    }
}

impl CertificateLookup for LiveConfig {
    fn lookup(&self, sni: &str) -> Option<(Arc<str>, Option<Arc<rustls::sign::CertifiedKey>>)> {
        let table = self.load();
        let tenant = table.host_owner(sni)?;
        let own = pick(&tenant.certs, sni).map(|c| c.key.clone());
        Some((tenant.id.clone(), own))
    }
}
