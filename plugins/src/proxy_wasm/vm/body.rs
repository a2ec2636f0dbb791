//! The body callbacks: `proxy_on_request_body` / `proxy_on_response_body` with what the
//! gateway buffered so far for the request (a piece, or every piece since the module last
//! continued), and `proxy_on_request_body` for a request paused in its headers callback.

use super::{trap, HeadersOutcome, Vm, VmError};
use crate::proxy_wasm::abi::{Action, BufferType, MapType, Pairs};
use crate::proxy_wasm::context::LocalResponse;
use crate::proxy_wasm::env::ProxyHost;

/// What a body callback left.
#[derive(Debug)]
pub struct BodyOutcome {
    /// Continue (0) lets the buffer go on; anything else keeps buffering (Envoy's
    /// `StopIterationAndBuffer` and its kin).
    pub action: Action,
    /// The buffer as the module left it (what it was given when it changed nothing).
    pub body: Vec<u8>,
    /// The module changed the buffer (`proxy_set_buffer_bytes`).
    pub replaced: bool,
    /// The response's headers as the module left them, when they were handed in (a response
    /// whose head is held for the module).
    pub headers: Option<Pairs>,
    pub local_response: Option<LocalResponse>,
    /// The module let the stream go on (`proxy_continue_stream`).
    pub resumed: bool,
}

impl<T: ProxyHost> Vm<T> {
    /// `proxy_on_request_body` / `proxy_on_response_body` on context `id` with `body` (all the
    /// gateway buffered for it) and `end_of_stream`; with `headers`, the response's head held
    /// for the module, which it may still edit. `max`: what the module may grow the buffer to.
    pub async fn body_piece(
        &mut self,
        id: u32,
        response: bool,
        body: Vec<u8>,
        end_of_stream: bool,
        headers: Option<Pairs>,
        max: usize,
    ) -> Result<BodyOutcome, VmError> {
        let started = self.started()?;
        let (callback, buffer) = if response {
            (started.response_body.clone(), BufferType::ResponseBody)
        } else {
            (started.request_body.clone(), BufferType::RequestBody)
        };
        let size = body.len() as i32;
        let held = headers.is_some();
        {
            let ctx = self.store.data_mut().context();
            ctx.effective = id;
            ctx.body_replaced = false;
            ctx.body_max = Some(max);
            ctx.local_response = None;
            ctx.set_buffer(buffer, body);
            if let Some(h) = headers {
                ctx.set_map(MapType::ResponseHeaders, h);
            }
        }
        let action = match callback {
            Some(f) => f
                .call_async(&mut self.store, (id as i32, size, i32::from(end_of_stream)))
                .await
                .map_err(trap)?,
            None => 0,
        };
        let ctx = self.store.data_mut().context();
        ctx.body_max = None;
        // Calls from a body callback are not served (docs/proxy-wasm.md): nothing would wait
        // for their answers.
        ctx.calls.clear();
        Ok(BodyOutcome {
            action: if action == 0 {
                Action::Continue
            } else {
                Action::Pause
            },
            body: ctx.take_buffer(buffer).unwrap_or_default(),
            replaced: std::mem::take(&mut ctx.body_replaced),
            headers: if held {
                ctx.take_map(MapType::ResponseHeaders)
            } else {
                None
            },
            local_response: ctx.local_response.take(),
            resumed: std::mem::take(&mut ctx.resumed),
        })
    }

    /// `proxy_on_request_body` with the whole body, for a request whose module paused in its
    /// headers callback to wait for it: the request's headers (`request`) are still the
    /// module's to edit (Envoy holds them until the body callback continues), and the callback's
    /// action, calls and local reply count as a headers callback's. The body back when the
    /// module replaced any of it.
    pub async fn held_body(
        &mut self,
        id: u32,
        body: Vec<u8>,
        request: Pairs,
    ) -> Result<(HeadersOutcome, Option<Vec<u8>>), VmError> {
        let callback = self.started()?.request_body.clone();
        let size = body.len() as i32;
        {
            let ctx = self.store.data_mut().context();
            ctx.effective = id;
            ctx.body_replaced = false;
            ctx.set_map(MapType::RequestHeaders, request);
            ctx.set_buffer(BufferType::RequestBody, body);
        }
        let action = match callback {
            Some(f) => f
                .call_async(&mut self.store, (id as i32, size, 1))
                .await
                .map_err(trap)?,
            None => 0,
        };
        let ctx = self.store.data_mut().context();
        let body = ctx
            .take_buffer(BufferType::RequestBody)
            .filter(|_| ctx.body_replaced);
        Ok((
            self.outcome(Action::from_i32(action), MapType::RequestHeaders),
            body,
        ))
    }
}
