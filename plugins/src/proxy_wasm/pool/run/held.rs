//! A request paused in its headers callback to wait for its body (Envoy's `StopIteration` from
//! `proxy_on_request_headers` with nothing pending): its headers are held, the gateway reads the
//! body whole (up to the tenant's `plugin_body_max_bytes`) and hands it to
//! `proxy_on_request_body` as one piece at the end of the stream, while the headers are still
//! the module's to edit. When the body callback continues (or the module resumes the stream),
//! headers and body go on together; a module still paused with nothing pending fails the
//! request, as after its headers callback.

use std::time::Instant;

use super::super::ops::{VmDone, VmOp};
use super::ProxyStream;
use crate::bindings::types::RequestAction;
use crate::error::{Failure, PluginError};
use crate::proxy_wasm::abi::Pairs;

/// What a request's headers callback came to.
#[derive(Debug)]
pub enum RequestStep {
    Action(RequestAction),
    /// Paused, waiting for the whole body: [`ProxyStream::on_held_body`].
    AwaitsBody,
}

/// The request's headers while the module waits for the body.
pub(super) struct HeldHead {
    /// As the gateway gave them (the edits are the difference to what the module leaves).
    pub(super) before: Pairs,
    /// As the module left them so far.
    pub(super) headers: Pairs,
}

impl ProxyStream {
    /// The whole request body for a request that waits for it ([`RequestStep::AwaitsBody`]):
    /// the request's action (the module's header edits since the headers arrived, or its local
    /// reply) and the body when the module replaced it (at most `max` bytes).
    pub async fn on_held_body(
        &mut self,
        body: Vec<u8>,
        max: u64,
    ) -> Result<(RequestAction, Option<Vec<u8>>), PluginError> {
        let started = Instant::now();
        let result = self.held_body(body, max).await;
        self.record("on_request_body", started, &result);
        result
    }

    async fn held_body(
        &mut self,
        body: Vec<u8>,
        max: u64,
    ) -> Result<(RequestAction, Option<Vec<u8>>), PluginError> {
        let Some(head) = self.held_head.take() else {
            return Err(self.trap("no request headers wait for this body".into()));
        };
        let (held, id) = self.own_context().await?;
        let op = VmOp::HeldBody {
            id,
            body,
            request: head.headers,
            properties: std::mem::take(&mut self.properties),
        };
        let VmDone::HeldBody {
            outcome,
            replaced,
            properties,
        } = self.call(held, op, self.remaining).await?
        else {
            return Err(self.trap("the VM answered another callback".into()));
        };
        self.properties = properties;
        let (outcome, paused) = self.run_calls(outcome).await?;
        if paused {
            return Err(self.paused_for_nothing());
        }
        if let Some(b) = replaced.as_ref().filter(|b| b.len() as u64 > max) {
            return Err(self.error(Failure::InvalidOutput(format!(
                "a body of {} bytes, over plugin_body_max_bytes ({max})",
                b.len()
            ))));
        }
        self.request_headers = outcome.headers.clone();
        let action = self.request_action(&head.before, &outcome)?;
        Ok((action, replaced))
    }
}
