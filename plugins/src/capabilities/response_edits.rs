//! `wharf:plugin/response-edits`: a `request-filter` declares in its request phase the edits for
//! its request's response (a header set, a status mapped). The filter has no response phase, so
//! its instance still ends before the upstream is called; the proxy takes what it declared
//! ([`crate::PluginInstance::take_declared_response`]) and applies it when the response comes,
//! without a second call. Checked here, at the boundary, by the rules `on-response`'s result
//! follows: the plugin learns at once that an edit is refused, and the proxy never holds one it
//! could not apply.

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, HostError, InstanceContext, NodeContext, SettingsError, TenantContext};
use crate::bindings::wharf::plugin::response_edits::{add_to_linker, Host};
use crate::bindings::wharf::plugin::types::{HostError as WitError, ResponseAction};
use crate::state::PluginState;

pub struct ResponseEdits;

impl Capability for ResponseEdits {
    const NAME: &'static str = "response-edits";
    type Settings = ();
    type Quotas = ();
    type TenantState = ();
    /// What the filter declared in this request, if it did.
    type InstanceState = Option<ResponseAction>;

    fn new(_: (), _: &NodeContext) -> Result<Self, SettingsError> {
        Ok(ResponseEdits)
    }

    fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)
    }

    fn quotas(_: &wharf_tenancy::Quotas) -> &() {
        &()
    }

    fn instance(_: &InstanceContext<'_>) -> Option<ResponseAction> {
        None
    }

    async fn open(&self, _: TenantContext<'_, Self>) -> Result<(), HostError> {
        Ok(())
    }
}

impl Host for PluginState {
    fn declare(&mut self, action: ResponseAction) -> Result<(), WitError> {
        match crate::output::check_response_action(&action) {
            Ok(()) => {
                self.caps.response_edits = Some(action);
                Ok(())
            }
            Err(invalid) => Err(WitError::Invalid(invalid.0)),
        }
    }
}
