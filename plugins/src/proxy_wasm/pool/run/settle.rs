//! A paused request's waits: the calls its callbacks dispatched (`proxy_http_call`,
//! `proxy_redis_call`) are sent outside the VM's lock, through the tenant's capabilities, and
//! their answers delivered one callback at a time, round after round, until the module answers
//! the client, resumes the request, or has nothing left to wait for.

use std::time::Instant;

use super::super::ops::VmOp;
use super::super::outbound::Sender;
use super::ProxyStream;
use crate::error::{Failure, PluginError};
use crate::proxy_wasm::abi::{Action, Pairs};
use crate::proxy_wasm::context::Call;
use crate::proxy_wasm::vm::{CallAnswer, HeadersOutcome};

/// Rounds of calls (a call answered, another dispatched) one request may go through.
const MAX_CALL_ROUNDS: usize = 8;

impl ProxyStream {
    /// Sends the calls a callback dispatched and delivers their answers, round after round,
    /// until the module answers the client or has nothing left to wait for; `true` with the
    /// outcome: the module still holds the request paused (no local reply, nothing pending,
    /// never resumed), which fails it unless it waits for its body (`held.rs`): Envoy would
    /// hold it until a timeout.
    pub(super) async fn run_calls(
        &mut self,
        mut outcome: HeadersOutcome,
    ) -> Result<(HeadersOutcome, bool), PluginError> {
        let mut paused = outcome.action == Action::Pause && !outcome.resumed;
        let mut rounds = 0;
        while outcome.local_response.is_none() && !outcome.calls.is_empty() {
            rounds += 1;
            if rounds > MAX_CALL_ROUNDS {
                return Err(self.error(Failure::InvalidOutput(format!(
                    "dispatched calls in more than {MAX_CALL_ROUNDS} rounds for one request"
                ))));
            }
            let answers = self.send_calls(std::mem::take(&mut outcome.calls)).await;
            for answer in answers {
                let request = std::mem::take(&mut outcome.headers);
                let next = self.call_answer(answer, request).await?;
                outcome.headers = next.headers;
                outcome.calls.extend(next.calls);
                paused &= !next.resumed;
                if next.local_response.is_some() {
                    outcome.local_response = next.local_response;
                    break;
                }
            }
        }
        let still = paused && outcome.local_response.is_none();
        Ok((outcome, still))
    }

    pub(super) fn paused_for_nothing(&self) -> PluginError {
        self.error(Failure::InvalidOutput(
            "paused the request with nothing to wait for (no call pending) and never \
             resumed it"
                .into(),
        ))
    }

    /// Sends calls at once through the tenant's outbound HTTP, outside the VM's lock; their
    /// time counts against the request's deadline.
    async fn send_calls(&mut self, calls: Vec<Call>) -> Vec<CallAnswer> {
        let started = Instant::now();
        let metrics = self.runtime.metrics().clone();
        let sender = Sender {
            caps: self.who.capabilities.as_ref(),
            allowed: &self.who.outbound,
            tenant: &self.who.tenant,
            plugin: &self.who.plugin,
            metrics: &metrics,
            left: self.remaining,
        };
        let answers = sender.send_all(calls).await;
        self.remaining = self.remaining.saturating_sub(started.elapsed());
        answers
    }

    /// `proxy_on_http_call_response` for one answer.
    async fn call_answer(
        &mut self,
        answer: CallAnswer,
        request: Pairs,
    ) -> Result<HeadersOutcome, PluginError> {
        let (held, id) = self.own_context().await?;
        let op = VmOp::CallAnswer {
            id,
            answer,
            request,
            properties: std::mem::take(&mut self.properties),
        };
        let done = self.call(held, op, self.remaining).await?;
        self.headers_done(done).map(|(_, outcome)| outcome)
    }
}
