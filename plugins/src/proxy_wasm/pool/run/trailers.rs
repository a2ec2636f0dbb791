//! A response's trailers through its module (`proxy_on_response_trailers`, for a module that
//! exports it): the trailer map readable and editable through the header-map functions (map
//! type `RESPONSE_TRAILERS`), what the module leaves checked as header edits are (`output.rs`:
//! names, values, counts and bytes; framing headers are the gateway's).

use std::time::Instant;

use super::super::ops::{VmDone, VmOp};
use super::ProxyStream;
use crate::bindings::types::{HeaderOp, ResponseAction};
use crate::cache::Exports;
use crate::error::PluginError;
use crate::output;
use crate::proxy_wasm::abi::Pairs;
use crate::proxy_wasm::translate;

impl ProxyStream {
    /// Whether the module reads response trailers (it exports `proxy_on_response_trailers`).
    pub fn reads_response_trailers(&self) -> bool {
        matches!(&self.plugin.exports, Exports::ProxyWasm(c) if c.response_trailers)
    }

    /// `proxy_on_response_trailers` on `trailers` ([`translate::trailer_pairs`]): the edits the
    /// module made, checked.
    pub async fn on_response_trailers(
        &mut self,
        trailers: Pairs,
    ) -> Result<Vec<HeaderOp>, PluginError> {
        let started = Instant::now();
        let result = self.response_trailers(trailers).await;
        self.record("on_response_trailers", started, &result);
        result
    }

    async fn response_trailers(&mut self, trailers: Pairs) -> Result<Vec<HeaderOp>, PluginError> {
        let before = trailers.clone();
        let (held, id) = self.own_context().await?;
        let op = VmOp::ResponseTrailers {
            id,
            trailers,
            properties: std::mem::take(&mut self.properties),
        };
        let VmDone::Trailers {
            trailers,
            properties,
        } = self.call(held, op, self.remaining).await?
        else {
            return Err(self.trap("the VM answered another callback".into()));
        };
        self.properties = properties;
        let edits = ResponseAction {
            status: None,
            headers: translate::trailer_edits(&before, &trailers),
        };
        let edits = self.checked(edits, output::check_response_action)?;
        Ok(edits.headers)
    }
}
