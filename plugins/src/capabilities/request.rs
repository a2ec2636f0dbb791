//! `wharf:plugin/request`: the request's headers for a `request-filter` plugin, read when it asks.
//! A classic plugin (`http-plugin`) gets every header lowered into each call; a filter gets the
//! head only, and each `get(name)` copies one header's values into the guest. The proxy hands
//! the headers over as they are (`http::HeaderMap`, reference-counted values) with the call
//! ([`crate::PluginInstance::handle_request`]), only to a plugin that imports this interface
//! ([`crate::CompiledPlugin::reads_headers`]): no other can ask for them.

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, HostError, InstanceContext, NodeContext, SettingsError, TenantContext};
use crate::bindings::wharf::plugin::request::{add_to_linker, Host};
use crate::bindings::wharf::plugin::types::Header;
use crate::state::PluginState;

/// Its name in a component's imports, up to the version.
pub const INTERFACE: &str = "wharf:plugin/request@";

pub struct Request;

impl Capability for Request {
    const NAME: &'static str = "request";
    type Settings = ();
    type Quotas = ();
    type TenantState = ();
    /// The headers of the request in progress (set before `handle-request`).
    type InstanceState = http::HeaderMap;

    fn new(_: (), _: &NodeContext) -> Result<Self, SettingsError> {
        Ok(Request)
    }

    fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)
    }

    fn quotas(_: &wharf_tenancy::Quotas) -> &() {
        &()
    }

    fn instance(_: &InstanceContext<'_>) -> http::HeaderMap {
        http::HeaderMap::new()
    }

    async fn open(&self, _: TenantContext<'_, Self>) -> Result<(), HostError> {
        Ok(())
    }
}

impl Host for PluginState {
    fn get(&mut self, name: String) -> Vec<Vec<u8>> {
        // Names are case-insensitive; a name that is not a legal header name matches nothing.
        // `get_all(&str)` folds the case on the stack (no copy of the name per call).
        self.caps
            .request
            .get_all(name.as_str())
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    }

    fn entries(&mut self) -> Vec<Header> {
        self.caps
            .request
            .iter()
            .map(|(n, v)| Header {
                name: n.as_str().to_string(),
                value: v.as_bytes().to_vec(),
            })
            .collect()
    }
}
