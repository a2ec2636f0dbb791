//! A request's headers phase through its module: a context, `proxy_on_request_headers`, the
//! calls it dispatched, and what the module left as a checked request action, or the request
//! held for its body (`held.rs`).

use std::time::Instant;

use super::held::{HeldHead, RequestStep};
use super::ProxyStream;
use crate::bindings::types::RequestAction;
use crate::error::{Failure, PluginError};
use crate::output;
use crate::proxy_wasm::abi::Pairs;
use crate::proxy_wasm::translate;
use crate::proxy_wasm::vm::HeadersOutcome;

impl ProxyStream {
    /// The request phase: a context for the request, `proxy_on_request_headers` on `headers`
    /// ([`translate::request_pairs`]), and what the module did as a request action, checked
    /// like a component's. A module pausing with nothing to wait for fails the request.
    pub async fn on_request(
        &mut self,
        headers: Pairs,
        end_of_stream: bool,
    ) -> Result<RequestAction, PluginError> {
        match self
            .on_request_headers(headers, end_of_stream, false)
            .await?
        {
            RequestStep::Action(action) => Ok(action),
            RequestStep::AwaitsBody => Err(self.paused_for_nothing()),
        }
    }

    /// As [`ProxyStream::on_request`]; with `may_wait_for_body`, a module that reads the body
    /// and pauses with nothing pending on a request with a body waits for it
    /// ([`RequestStep::AwaitsBody`], then [`ProxyStream::on_held_body`]) instead of failing.
    pub async fn on_request_headers(
        &mut self,
        headers: Pairs,
        end_of_stream: bool,
        may_wait_for_body: bool,
    ) -> Result<RequestStep, PluginError> {
        let started = Instant::now();
        let wait = may_wait_for_body && !end_of_stream && self.reads_request_body();
        let result = self.request_phase(headers, end_of_stream, wait).await;
        self.record("on_request", started, &result);
        result
    }

    async fn request_phase(
        &mut self,
        headers: Pairs,
        end_of_stream: bool,
        wait: bool,
    ) -> Result<RequestStep, PluginError> {
        let before = headers.clone();
        let outcome = self.request_headers(headers, end_of_stream).await?;
        let (outcome, paused) = self.run_calls(outcome).await?;
        match (paused, wait) {
            (false, _) => self
                .request_action(&before, &outcome)
                .map(RequestStep::Action),
            (true, true) => {
                self.held_head = Some(Box::new(HeldHead {
                    before,
                    headers: outcome.headers,
                }));
                Ok(RequestStep::AwaitsBody)
            }
            (true, false) => Err(self.paused_for_nothing()),
        }
    }

    /// What the module left of the request's headers (or its local reply), as a checked
    /// request action.
    pub(super) fn request_action(
        &mut self,
        before: &Pairs,
        outcome: &HeadersOutcome,
    ) -> Result<RequestAction, PluginError> {
        self.request_length_released = translate::releases_length(before, &outcome.headers);
        if outcome.local_response.is_none() {
            self.method = translate::method_change(before, &outcome.headers)
                .map_err(|invalid| self.error(Failure::InvalidOutput(invalid)))?
                .map(Box::new);
        }
        let action = translate::request_action(before, outcome);
        self.checked(action, output::check_request_action)
    }
}
