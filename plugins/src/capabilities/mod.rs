//! Host capabilities: what a plugin may import besides computing. Each capability is one type
//! implementing [`Capability`] (the shape of Spin's factors), in its own module, and one line of
//! the registry at the bottom of this file:
//!
//! | capability | WIT | settings (bootstrap) | tenant state | instance state |
//! |---|---|---|---|---|
//! | [`networking::Networking`] | — (used by the proxy and by capabilities that dial out) | `egress_allow` | — | — |
//! | [`log::Log`] | `wharf:plugin/log` | — | — | lines left |
//! | [`config::Config`] | `wharf:plugin/config` | — | — | the attachment's key/values |
//! | [`redis::Redis`] | `wharf:plugin/redis` | `redis` | pool, namespace, rate, memory quota | — |
//! | [`sql::Sql`] | `wharf:plugin/sql` | `sql` | pool, own database, rate, row/byte/storage caps | — |
//! | [`body::Body`] | `wharf:plugin/body` | — | — | the request body, its replacement |
//! | [`request::Request`] | `wharf:plugin/request` | — | — | the request's headers (filters) |
//! | [`response_edits::ResponseEdits`] | `wharf:plugin/response-edits` | — | — | the response edits a filter declared |
//! | [`http::Http`] | `wharf:plugin/http` | `[outbound_http]` | client pool, rate, requests in flight | the attachment's allowed hosts |
//!
//! What every capability shares lives here once: tenant state is built on first use and kept
//! only on success ([`TenantCapabilities::get`]), so a backend that was down is retried on the
//! next call; the `host_call` span and metrics are [`crate::state::HostCall`]; a tenant's
//! deletion calls every capability's [`Capability::purge`].

pub mod body;
pub mod config;
mod error;
pub mod http;
pub mod log;
pub mod networking;
mod quota;
pub mod redis;
mod registry;
pub mod request;
pub mod response_edits;
pub mod sql;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::OnceCell;
use wasmtime::component::Linker;
use wharf_metrics::Metrics;
use wharf_tenancy::Quotas;

pub use error::HostError;
pub use registry::Registered;

use crate::state::PluginState;

/// One host capability. The node holds one value of it ([`NodeCapabilities`]); each tenant
/// that uses it gets a [`Capability::TenantState`] on first use, and each plugin instance a
/// [`Capability::InstanceState`].
pub trait Capability: Send + Sync + Sized + 'static {
    /// Its name in logs and metrics (`redis`).
    const NAME: &'static str;
    /// Its part of the bootstrap file.
    type Settings: Clone + std::fmt::Debug + Default + Send + Sync;
    /// The group of a tenant's [`Quotas`] it enforces (`()` for none).
    type Quotas: ?Sized;
    /// A tenant's state on this node (pools, rates), built on first use.
    type TenantState: Send + Sync + 'static;
    /// One plugin instance's state, built with every instance: keep it cheap.
    type InstanceState: Clone + Send + 'static;

    fn new(settings: Self::Settings, node: &NodeContext) -> Result<Self, SettingsError>;

    /// Adds its WIT interface to the linker (nothing for a capability without one).
    fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()>;

    /// Its quota group of the tenant's quotas.
    fn quotas(all: &Quotas) -> &Self::Quotas;

    fn instance(ctx: &InstanceContext<'_>) -> Self::InstanceState;

    /// Builds a tenant's state; called on the tenant's first use, again after a failure.
    fn open(
        &self,
        ctx: TenantContext<'_, Self>,
    ) -> impl Future<Output = Result<Self::TenantState, HostError>> + Send;

    /// Work done ahead of a tenant's first call (the control plane calls it when a tenant
    /// appears or its quotas change), so no request pays for it. Idempotent.
    fn prepare(
        &self,
        _tenant: &str,
        _quotas: &Quotas,
    ) -> impl Future<Output = Result<(), HostError>> + Send {
        async { Ok(()) }
    }

    /// Deletes everything a removed tenant kept in the capability's backend; a tenant created
    /// later with the same id starts empty. Idempotent.
    fn purge(&self, _tenant: &str) -> impl Future<Output = Result<(), HostError>> + Send {
        async { Ok(()) }
    }

    /// Work the control plane asks for now and then ([`UPKEEP_EVERY`]) over the fleet's
    /// tenants (e.g. recounting their Redis usage): it decides itself what is due. Safe to run
    /// on every node at once.
    fn upkeep(&self, _tenants: &[String]) -> impl Future<Output = Result<(), HostError>> + Send {
        async { Ok(()) }
    }
}

/// How often the control plane runs the capabilities' [`Capability::upkeep`]; each decides what
/// is due (Redis: a recount per its `recount_every_seconds`, fleet-wide).
pub const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The capability's settings were wrong (a bad CIDR, URL, …).
#[derive(Debug, thiserror::Error)]
#[error("{capability}: {reason}")]
pub struct SettingsError {
    pub capability: &'static str,
    pub reason: String,
}

/// What the node gives every capability when it is built.
pub struct NodeContext {
    pub metrics: Arc<Metrics>,
    /// The node's memory for host-call results in flight, shared by all tenants.
    pub results: quota::ResultBudget,
}

/// What a capability sees when it builds a tenant's state: the tenant, its quotas, and the
/// tenant's other capabilities (typed: `ctx.get::<Networking>()`).
pub struct TenantContext<'a, C: Capability> {
    pub tenant: &'a str,
    pub all_quotas: &'a Quotas,
    caps: &'a TenantCapabilities,
    _capability: std::marker::PhantomData<C>,
}

impl<'a, C: Capability> TenantContext<'a, C> {
    /// This capability's quota group.
    pub fn quotas(&self) -> &'a C::Quotas {
        C::quotas(self.all_quotas)
    }

    pub fn metrics(&self) -> &'a Arc<Metrics> {
        &self.caps.node.context.metrics
    }

    pub fn results(&self) -> &'a quota::ResultBudget {
        &self.caps.node.context.results
    }

    /// Another capability's state of the same tenant (built first if needed).
    pub async fn get<D: Capability>(&self) -> Result<&'a D::TenantState, HostError>
    where
        NodeCapabilities: Registered<D>,
    {
        self.caps.get::<D>().await
    }
}

/// What a capability sees when it builds an instance's state.
pub struct InstanceContext<'a> {
    pub tenant: &'a Arc<str>,
    pub plugin: &'a Arc<str>,
    /// The attachment's configuration.
    pub config: &'a config::AttachmentConfig,
    /// The attachment's `allowed_outbound_hosts`.
    pub outbound: &'a Arc<[wharf_tenancy::outbound::OutboundHost]>,
    /// The request body, read for a plugin that imports `wharf:plugin/body`.
    pub request_body: &'a Option<bytes::Bytes>,
    /// The tenant's quotas (the defaults where the gateway has no capabilities configured).
    pub quotas: &'a Quotas,
}

/// The node's capabilities and every tenant's state of them.
pub struct Capabilities {
    node: Arc<NodeCapabilities>,
    tenants: Mutex<HashMap<String, Arc<TenantCapabilities>>>,
}

/// The node's default memory for host-call results in flight.
pub const DEFAULT_RESULT_BUDGET_BYTES: u64 = 256 << 20;

/// One tenant's capabilities at its quotas.
pub struct TenantCapabilities {
    pub tenant: String,
    pub quotas: Quotas,
    node: Arc<NodeCapabilities>,
    states: TenantStates,
}

impl Capabilities {
    /// `result_budget_bytes`: the node's memory for host-call results in flight, all tenants.
    pub fn new(
        settings: CapabilitySettings,
        metrics: Arc<Metrics>,
        result_budget_bytes: u64,
    ) -> Result<Arc<Capabilities>, SettingsError> {
        let ctx = NodeContext {
            results: quota::ResultBudget::new(result_budget_bytes, metrics.clone()),
            metrics,
        };
        Ok(Arc::new(Capabilities {
            node: Arc::new(NodeCapabilities::new(settings, ctx)?),
            tenants: Mutex::new(HashMap::new()),
        }))
    }

    /// The node-level capabilities (e.g. `node().networking` for the proxy's connects).
    pub fn node(&self) -> &NodeCapabilities {
        &self.node
    }

    /// Every capability's work ahead of a tenant's first call (e.g. its Postgres database).
    pub async fn prepare(&self, tenant: &str, quotas: &Quotas) -> Result<(), HostError> {
        self.node.prepare(tenant, quotas).await
    }

    /// The tenant's capabilities; rebuilt (new pools) when its quotas changed.
    pub fn tenant(&self, tenant: &str, quotas: &Quotas) -> Arc<TenantCapabilities> {
        let mut tenants = self.tenants.lock();
        if let Some(t) = tenants.get(tenant) {
            if t.quotas == *quotas {
                return t.clone();
            }
        }
        let t = Arc::new(TenantCapabilities {
            tenant: tenant.to_string(),
            quotas: quotas.clone(),
            node: self.node.clone(),
            states: TenantStates::default(),
        });
        tenants.insert(tenant.to_string(), t.clone());
        t
    }

    /// Deletes everything a removed tenant kept, in every capability. Idempotent; safe to
    /// retry after a failure.
    pub async fn purge(&self, tenant: &str) -> Result<(), HostError> {
        self.tenants.lock().remove(tenant);
        self.node.purge(tenant).await
    }

    /// Every capability's periodic work over `tenants` (the fleet's, from the routing table).
    pub async fn upkeep(&self, tenants: &[String]) -> Result<(), HostError> {
        self.node.upkeep(tenants).await
    }

    /// Drops the state of tenants that no longer exist.
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.tenants.lock().retain(|id, _| live(id));
    }
}

impl TenantCapabilities {
    /// The tenant's state of capability `C`, built on first use. Only success is kept: a
    /// backend that was down at first use is retried on the next call.
    pub async fn get<C: Capability>(&self) -> Result<&C::TenantState, HostError>
    where
        NodeCapabilities: Registered<C>,
    {
        let cell: &OnceCell<C::TenantState> = NodeCapabilities::cell(&self.states);
        if let Some(state) = cell.get() {
            return Ok(state);
        }
        // The first use's future (a pool, a connection, provisioning) is kilobytes: boxed, so
        // the future of every host call that awaits this one does not carry it. Measured: a
        // Redis call's future was 20 KB, copied whole each time a plugin made one.
        // Typed as `dyn Future + Send` here: callers' auto-trait checks stop at the box.
        let open: std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>> =
            Box::pin(self.open::<C>());
        open.await
    }

    async fn open<C: Capability>(&self) -> Result<&C::TenantState, HostError>
    where
        NodeCapabilities: Registered<C>,
    {
        let cell: &OnceCell<C::TenantState> = NodeCapabilities::cell(&self.states);
        let capability = self.node.capability();
        let ctx = TenantContext {
            tenant: &self.tenant,
            all_quotas: &self.quotas,
            caps: self,
            _capability: std::marker::PhantomData,
        };
        // Debug, not warn: while a backend is down every call lands here; the host-call metrics
        // (outcome `backend_unavailable`) are what operators watch.
        cell.get_or_try_init(|| capability.open(ctx))
            .await
            .inspect_err(|e| {
                tracing::debug!(tenant = %self.tenant, capability = C::NAME, "cannot open the tenant's {}: {e}", C::NAME);
            })
    }

    /// Reserves `bytes` of the node's memory for data in flight (host-call results, request
    /// bodies read for plugins), all tenants together: fails at once when it is taken.
    pub fn reserve_memory(
        &self,
        bytes: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, HostError> {
        self.node.context.results.reserve(&self.tenant, bytes)
    }

    /// Whether the tenant's state of `C` is built on this node (its first use is behind it).
    pub fn ready<C: Capability>(&self) -> bool
    where
        NodeCapabilities: Registered<C>,
    {
        NodeCapabilities::cell(&self.states).initialized()
    }
}

registry::registry! {
    networking: networking::Networking,
    log: log::Log,
    config: config::Config,
    redis: redis::Redis,
    sql: sql::Sql,
    http: http::Http,
    body: body::Body,
    request: request::Request,
    response_edits: response_edits::ResponseEdits,
}
