//! Networking: where anything a tenant names may be dialled. The proxy checks its upstream
//! connects and health checks with it, the admin API the targets a route is written with, and a
//! capability that dials out for a plugin (outbound HTTP) depends on it through
//! `ctx.get::<Networking>()`. No WIT of its own: plugins reach the network only through those.

pub mod egress;
pub mod resolve;

use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime::component::Linker;
use wharf_tenancy::Quotas;

use super::{Capability, HostError, InstanceContext, NodeContext, SettingsError, TenantContext};
use crate::state::PluginState;
pub use egress::{EgressError, EgressPolicy};
pub use resolve::{Answer, DnsSettings, Name, Resolver};

/// `egress_allow` and `[dns]` from the bootstrap file, and the node's own listeners.
#[derive(Debug, Clone, Default)]
pub struct NetworkSettings {
    pub dns: resolve::DnsSettings,
    /// Internal ranges (CIDR) tenants may dial although they are internal.
    pub allow: Vec<String>,
    /// The gateway's own listeners: refused whatever `allow` says.
    pub own: Vec<SocketAddr>,
}

/// The capability: the node's egress policy and the resolver of upstream names.
pub struct Networking {
    policy: Arc<EgressPolicy>,
    resolver: Arc<Resolver>,
}

impl Networking {
    pub fn policy(&self) -> &Arc<EgressPolicy> {
        &self.policy
    }

    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
    }
}

/// A tenant's view of networking: the policy every dialled address passes, and the resolver
/// that names go through.
#[derive(Clone)]
pub struct Dialing {
    pub policy: Arc<EgressPolicy>,
    pub resolver: Arc<Resolver>,
}

impl Capability for Networking {
    const NAME: &'static str = "networking";
    type Settings = NetworkSettings;
    type Quotas = ();
    /// What a tenant's capabilities dial under: the node's policy and resolver, today.
    type TenantState = Dialing;
    type InstanceState = ();

    fn new(settings: NetworkSettings, node: &NodeContext) -> Result<Self, SettingsError> {
        let policy =
            EgressPolicy::new(&settings.allow, settings.own).map_err(|e| SettingsError {
                capability: Self::NAME,
                reason: e.to_string(),
            })?;
        Ok(Networking {
            policy: Arc::new(policy),
            resolver: Resolver::start(settings.dns, node.metrics.clone())?,
        })
    }

    fn link(_: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        Ok(())
    }

    fn quotas(_: &Quotas) -> &() {
        &()
    }

    fn instance(_: &InstanceContext<'_>) {}

    async fn open(&self, _: TenantContext<'_, Self>) -> Result<Dialing, HostError> {
        Ok(Dialing {
            policy: self.policy.clone(),
            resolver: self.resolver.clone(),
        })
    }
}
