//! A response's headers phase through its module: `proxy_on_response_headers`, what the module
//! left as a checked response action, its local reply (the client has no head yet: served in
//! place of the upstream's), or the head held for the body (Envoy's `StopIteration` from the
//! response headers callback): it goes out when a body callback continues (`body.rs`).

use std::time::Instant;

use super::held::HeldHead;
use super::ProxyStream;
use crate::bindings::types::{Reply, RequestAction, ResponseAction};
use crate::error::PluginError;
use crate::output;
use crate::proxy_wasm::abi::{Action, Pairs};
use crate::proxy_wasm::translate;

/// What a response's headers callback came to.
#[derive(Debug)]
pub enum ResponseStep {
    Action(ResponseAction),
    /// Paused: the head waits (unsent) for a body callback to continue
    /// ([`ProxyStream::on_body_piece`]).
    Held,
    /// The module answers instead of the upstream.
    Reply(Reply),
}

impl ProxyStream {
    /// The response phase: `proxy_on_response_headers` on `headers`
    /// ([`translate::response_pairs`]). With `may_hold` (the response has a body to wait for),
    /// a module that reads response bodies and pauses holds the head ([`ResponseStep::Held`]);
    /// otherwise a pause is not held (the head goes on as the module left it).
    pub async fn on_response(
        &mut self,
        headers: Pairs,
        may_hold: bool,
    ) -> Result<ResponseStep, PluginError> {
        let started = Instant::now();
        let result = self.response_phase(headers, may_hold).await;
        self.record("on_response", started, &result);
        result
    }

    /// Whether the response's head is held for the module.
    pub fn holds_response(&self) -> bool {
        self.held_response.is_some()
    }

    async fn response_phase(
        &mut self,
        headers: Pairs,
        may_hold: bool,
    ) -> Result<ResponseStep, PluginError> {
        let before = headers.clone();
        let mut outcome = self.response_headers(headers, false).await?;
        if outcome.local_response.is_some() {
            outcome.headers = Pairs::new();
            let action = translate::request_action(&Pairs::new(), &outcome);
            return match self.checked(action, output::check_request_action)? {
                RequestAction::Respond(reply) => Ok(ResponseStep::Reply(reply)),
                RequestAction::Continue(_) => Err(self.trap("a reply went missing".into())),
            };
        }
        let paused = outcome.action == Action::Pause && !outcome.resumed;
        if paused && may_hold && self.reads_response_body() {
            self.held_response = Some(Box::new(HeldHead {
                before,
                headers: outcome.headers,
            }));
            return Ok(ResponseStep::Held);
        }
        self.response_length_released = translate::releases_length(&before, &outcome.headers);
        let action = translate::response_action(&before, &outcome);
        self.checked(action, output::check_response_action)
            .map(ResponseStep::Action)
    }
}
