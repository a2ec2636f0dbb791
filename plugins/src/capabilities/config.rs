//! `wharf:plugin/config`: the key/values given where the plugin is attached to a route.
//! Read-only and already bounded by the store's validation, so no quota beyond that.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, HostError, InstanceContext, NodeContext, SettingsError, TenantContext};
use crate::bindings::wharf::plugin::config::{add_to_linker, Host};
use crate::state::PluginState;

/// The capability: the attachment's configuration, shared by the instances of the attachment.
pub struct Config;

impl Capability for Config {
    const NAME: &'static str = "config";
    type Settings = ();
    type Quotas = ();
    type TenantState = ();
    type InstanceState = Arc<BTreeMap<String, String>>;

    fn new(_: (), _: &NodeContext) -> Result<Self, SettingsError> {
        Ok(Config)
    }

    fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)
    }

    fn quotas(_: &wharf_tenancy::Quotas) -> &() {
        &()
    }

    fn instance(ctx: &InstanceContext<'_>) -> Self::InstanceState {
        ctx.config.clone()
    }

    async fn open(&self, _: TenantContext<'_, Self>) -> Result<(), HostError> {
        Ok(())
    }
}

impl Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.caps.config.get(&key).cloned()
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.caps
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
