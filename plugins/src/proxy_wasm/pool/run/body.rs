//! A request's bodies through its module, piece by piece as Envoy delivers them:
//! `proxy_on_request_body` / `proxy_on_response_body` with all the gateway buffered for the
//! module since it last continued, and `end_of_stream`. `Continue` lets the buffer (as the module
//! left it, `proxy_set_buffer_bytes`) go on; anything else keeps it (Envoy's
//! `StopIterationAndBuffer`): the next piece is appended and the next callback sees it all. The
//! gateway holds the buffer to the tenant's `plugin_body_max_bytes` (`gateway/src/proxy/
//! body_stream.rs`). Each piece's callback gets the tenant's per-callback fuel and deadline (how
//! many pieces a body has is the client's or the upstream's doing, not the module's).

use std::time::{Duration, Instant};

use super::super::ops::{VmDone, VmOp};
use super::ProxyStream;
use crate::bindings::types::{Reply, RequestAction, ResponseAction};
use crate::cache::Exports;
use crate::error::{Failure, PluginError};
use crate::output;
use crate::proxy_wasm::abi::Action;
use crate::proxy_wasm::translate;
use crate::proxy_wasm::vm::{BodyOutcome, HeadersOutcome};

/// What a body callback came to.
#[derive(Debug)]
pub enum BodyStep {
    /// The buffer goes on (`replaced`: the module changed it); `head`: the response's head,
    /// held for the module until now, goes out with these edits.
    Continue {
        body: Vec<u8>,
        replaced: bool,
        head: Option<ResponseAction>,
    },
    /// Kept: the gateway appends the next piece and hands it all back.
    Buffer(Vec<u8>),
    /// The module answers instead (`proxy_send_local_response`) while the client has no head
    /// yet: the gateway serves this reply in place of the upstream's.
    Reply(Reply),
}

impl ProxyStream {
    /// Whether the module reads request bodies (it exports `proxy_on_request_body`).
    pub fn reads_request_body(&self) -> bool {
        matches!(&self.plugin.exports, Exports::ProxyWasm(c) if c.request_body)
    }

    /// Whether the module reads response bodies (it exports `proxy_on_response_body`).
    pub fn reads_response_body(&self) -> bool {
        matches!(&self.plugin.exports, Exports::ProxyWasm(c) if c.response_body)
    }

    /// The whole request body as one piece at its end; `Some`: the module replaced it.
    pub async fn on_request_body(
        &mut self,
        body: Vec<u8>,
        max: u64,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        self.on_whole_body(false, body, max).await
    }

    /// The whole response body as one piece at its end; `Some`: the module replaced it.
    pub async fn on_response_body(
        &mut self,
        body: Vec<u8>,
        max: u64,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        self.on_whole_body(true, body, max).await
    }

    /// A body read whole (a component on the route reads it too): one callback at its end, what
    /// the module leaves goes on (there is nothing more to buffer); a local reply is refused
    /// (the upstream has the request's head, or the client the response's).
    async fn on_whole_body(
        &mut self,
        response: bool,
        body: Vec<u8>,
        max: u64,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        let started = Instant::now();
        let result = self
            .body_callback(response, body, true, max)
            .await
            .and_then(|o| {
                if o.local_response.is_some() {
                    return Err(self.error(Failure::InvalidOutput(
                        "proxy_send_local_response in a body callback after the head went on \
                         is not served; answer from the headers callback"
                            .into(),
                    )));
                }
                Ok(o.replaced.then_some(o.body))
            });
        self.record(phase(response), started, &result);
        result
    }

    /// One piece of a streamed body: `buffered` is all the gateway holds for the module (what
    /// it kept before, this piece appended); `max` what it may grow it to.
    pub async fn on_body_piece(
        &mut self,
        response: bool,
        buffered: Vec<u8>,
        end_of_stream: bool,
        max: u64,
    ) -> Result<BodyStep, PluginError> {
        let started = Instant::now();
        let result = match self
            .body_callback(response, buffered, end_of_stream, max)
            .await
        {
            Ok(outcome) => self.body_step(response, outcome, end_of_stream),
            Err(e) => Err(e),
        };
        self.record(phase(response), started, &result);
        result
    }

    fn body_step(
        &mut self,
        response: bool,
        outcome: BodyOutcome,
        end_of_stream: bool,
    ) -> Result<BodyStep, PluginError> {
        let held = response && self.held_response.is_some();
        if let Some(local) = outcome.local_response {
            if response && !held {
                return Err(self.error(Failure::InvalidOutput(
                    "proxy_send_local_response after the response's head went to the client \
                     (pause in proxy_on_response_headers to answer from the body)"
                        .into(),
                )));
            }
            let reply = HeadersOutcome {
                action: Action::Continue,
                headers: Default::default(),
                local_response: Some(local),
                calls: Vec::new(),
                resumed: false,
            };
            let action = translate::request_action(&Default::default(), &reply);
            return match self.checked(action, output::check_request_action)? {
                RequestAction::Respond(reply) => Ok(BodyStep::Reply(reply)),
                RequestAction::Continue(_) => Err(self.trap("a reply went missing".into())),
            };
        }
        if outcome.action == Action::Pause && !outcome.resumed {
            if end_of_stream {
                return Err(self.error(Failure::InvalidOutput(
                    "kept the body buffered at its end and never continued it (calls from body \
                     callbacks are not served)"
                        .into(),
                )));
            }
            return Ok(BodyStep::Buffer(outcome.body));
        }
        let head = match if response {
            self.held_response.take()
        } else {
            None
        } {
            Some(head) => {
                self.response_length_released =
                    translate::releases_length(&head.before, &head.headers);
                let after = HeadersOutcome {
                    action: Action::Continue,
                    headers: head.headers,
                    local_response: None,
                    calls: Vec::new(),
                    resumed: false,
                };
                let action = translate::response_action(&head.before, &after);
                Some(self.checked(action, output::check_response_action)?)
            }
            None => None,
        };
        Ok(BodyStep::Continue {
            body: outcome.body,
            replaced: outcome.replaced,
            head,
        })
    }

    /// The callback on the request's context, with the tenant's per-callback fuel and deadline
    /// (the request's own budget is left as it was for its other callbacks).
    async fn body_callback(
        &mut self,
        response: bool,
        body: Vec<u8>,
        end_of_stream: bool,
        max: u64,
    ) -> Result<BodyOutcome, PluginError> {
        let (held, id) = self.own_context().await?;
        let headers = match self.held_response.as_mut().filter(|_| response) {
            Some(head) => Some(std::mem::take(&mut head.headers)),
            None => None,
        };
        let op = VmOp::Body {
            id,
            response,
            body,
            end_of_stream,
            headers,
            max: usize::try_from(max).unwrap_or(usize::MAX),
            properties: std::mem::take(&mut self.properties),
        };
        let (fuel, remaining) = (self.fuel_left, self.remaining);
        self.fuel_left = self.who.quotas.fuel;
        let budget = Duration::from_millis(self.who.quotas.deadline_ms);
        let done = self.call(held, op, budget).await;
        (self.fuel_left, self.remaining) = (fuel, remaining);
        match done? {
            VmDone::Body {
                mut outcome,
                properties,
            } => {
                self.properties = properties;
                if let (Some(head), Some(headers)) =
                    (self.held_response.as_mut(), outcome.headers.take())
                {
                    head.headers = headers;
                }
                Ok(outcome)
            }
            _ => Err(self.trap("the VM answered another callback".into())),
        }
    }
}

fn phase(response: bool) -> &'static str {
    if response {
        "on_response_body"
    } else {
        "on_request_body"
    }
}
