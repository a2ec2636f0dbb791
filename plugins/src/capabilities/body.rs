//! `wharf:plugin/body`: the request body, for a plugin that imports this interface. The proxy
//! reads the body whole before the chain runs only when one of the route's plugins imports it
//! ([`crate::CompiledPlugin::reads_body`]), so every other route streams bodies untouched. The
//! body arrives with the invocation; a replacement stays in the instance until the proxy takes
//! it ([`crate::PluginInstance::take_request_body`]).

use bytes::Bytes;
use wasmtime::component::{HasSelf, Linker};

use super::{Capability, HostError, InstanceContext, NodeContext, SettingsError, TenantContext};
use crate::bindings::wharf::plugin::body::{add_to_linker, Host};
use crate::bindings::wharf::plugin::types::HostError as WitError;
use crate::state::PluginState;
use wharf_tenancy::PluginQuotas;

/// The interface a component imports to ask for the body (any 0.1.x version).
pub const INTERFACE: &str = "wharf:plugin/body@";

pub struct Body;

/// One instance's view of the body.
#[derive(Clone)]
pub struct RequestBody {
    body: Bytes,
    max_bytes: u64,
    pub(crate) replaced: Option<Vec<u8>>,
}

impl Capability for Body {
    const NAME: &'static str = "body";
    type Settings = ();
    type Quotas = ();
    type TenantState = ();
    type InstanceState = RequestBody;

    fn new(_: (), _: &NodeContext) -> Result<Self, SettingsError> {
        Ok(Body)
    }

    fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)
    }

    fn quotas(_: &wharf_tenancy::Quotas) -> &() {
        &()
    }

    fn instance(ctx: &InstanceContext<'_>) -> RequestBody {
        RequestBody {
            body: ctx.request_body.clone().unwrap_or_default(),
            max_bytes: ctx.quotas.plugin.body_max_bytes,
            replaced: None,
        }
    }

    async fn open(&self, _: TenantContext<'_, Self>) -> Result<(), HostError> {
        Ok(())
    }
}

impl Host for PluginState {
    fn request_body(&mut self) -> Vec<u8> {
        let b = &self.caps.body;
        match &b.replaced {
            Some(r) => r.clone(),
            None => b.body.to_vec(),
        }
    }

    fn set_request_body(&mut self, body: Vec<u8>) -> Result<(), WitError> {
        let max = self.caps.body.max_bytes;
        if body.len() as u64 > max {
            let name = PluginQuotas::NAMES.body_max_bytes;
            return Err(WitError::QuotaExceeded(format!(
                "the new body has {} bytes; {name} is {max}",
                body.len()
            )));
        }
        self.caps.body.replaced = Some(body);
        Ok(())
    }
}
