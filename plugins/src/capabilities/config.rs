//! `wharf:plugin/config`: the key/values given where the plugin is attached to a route.
//! Read-only and already bounded by the store's validation, so no quota beyond that.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{Linker, WasmStr};
use wasmtime::StoreContextMut;

use super::{Capability, HostError, InstanceContext, NodeContext, SettingsError, TenantContext};
use crate::state::PluginState;

/// Its name in a component's imports (`plugins/wit/world.wit`).
const INTERFACE: &str = "wharf:plugin/config@0.1.0";

/// An attachment's configuration as its instances read it. Each value is shared, so a
/// `config.get` hands it over without a copy in the host: wasmtime lowers an `Arc<str>` as a
/// string, straight into the guest's memory (`header-filter` makes four gets a request).
pub type AttachmentConfig = Arc<BTreeMap<String, Arc<str>>>;

/// An attachment's configuration from its key/value pairs.
pub fn attachment_config<K: Into<String>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> AttachmentConfig {
    Arc::new(
        pairs
            .into_iter()
            .map(|(k, v)| (k.into(), Arc::from(v.as_ref())))
            .collect(),
    )
}

/// The capability: the attachment's configuration, shared by the instances of the attachment.
pub struct Config;

impl Capability for Config {
    const NAME: &'static str = "config";
    type Settings = ();
    type Quotas = ();
    type TenantState = ();
    type InstanceState = AttachmentConfig;

    fn new(_: (), _: &NodeContext) -> Result<Self, SettingsError> {
        Ok(Config)
    }

    /// Linked by hand, not from the bindings: `get`'s key is read where it lies in the guest's
    /// memory (`WasmStr`), not copied into a `String` first. A filter makes several gets per
    /// request (`header-filter`: four).
    fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        let mut config = linker.instance(INTERFACE)?;
        config.func_wrap(
            "get",
            |cx: StoreContextMut<'_, PluginState>, (key,): (WasmStr,)| {
                let key = key.to_str(&cx)?;
                Ok((cx.data().caps.config.get(&*key).cloned(),))
            },
        )?;
        config.func_wrap("entries", |cx: StoreContextMut<'_, PluginState>, ()| {
            let entries: Vec<(String, Arc<str>)> = cx
                .data()
                .caps
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok((entries,))
        })
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
