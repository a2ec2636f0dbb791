//! A call's answer (`proxy_on_http_call_response`, `proxy_on_redis_call_response`), delivered
//! to the root context as Envoy and Higress do (the SDKs find the caller by token): for a
//! request's call while the request's headers are editable, or for a call the root context
//! dispatched itself (a tick's), as a callback of the VM's own.

use super::{trap, Action, Answer, BufferType, Call, CallAnswer, HeadersOutcome, MapType, Pairs};
use super::{ProxyHost, Vm, VmError, ROOT};

impl<T: ProxyHost> Vm<T> {
    /// A call's answer for request `id`: `proxy_on_http_call_response` or
    /// `proxy_on_redis_call_response`, delivered to the root context as Envoy and Higress do
    /// (the SDKs find the caller by token); the request's headers (`request`) are editable
    /// meanwhile, as the module may change them before resuming.
    pub async fn call_answer(
        &mut self,
        id: u32,
        answer: CallAnswer,
        request: Pairs,
    ) -> Result<HeadersOutcome, VmError> {
        {
            let ctx = self.store.data_mut().context();
            ctx.effective = id;
            ctx.set_map(MapType::RequestHeaders, request);
        }
        self.deliver(answer).await?;
        Ok(self.outcome(Action::Continue, MapType::RequestHeaders))
    }

    /// The answer to a call the root context dispatched (in a tick, a queue delivery, another
    /// answer, or the VM's start); the calls the callback dispatched in turn.
    pub async fn root_call_answer(&mut self, answer: CallAnswer) -> Result<Vec<Call>, VmError> {
        self.store.data_mut().context().effective = ROOT;
        self.deliver(answer).await?;
        Ok(self.root_calls())
    }

    async fn deliver(&mut self, answer: CallAnswer) -> Result<(), VmError> {
        let token = answer.token as i32;
        let (name, args) = {
            let ctx = self.store.data_mut().context();
            match answer.answer {
                Answer::Http(reply) => {
                    let (headers, body) = reply.unwrap_or_default();
                    let args = (
                        ROOT as i32,
                        token,
                        headers.len() as i32,
                        body.len() as i32,
                        0,
                    );
                    ctx.set_map(MapType::HttpCallResponseHeaders, headers);
                    ctx.set_buffer(BufferType::HttpCallResponseBody, body);
                    ("proxy_on_http_call_response", args)
                }
                Answer::Redis(reply) => {
                    let status = i32::from(reply.is_none());
                    let body = reply.unwrap_or_default();
                    let args = (ROOT as i32, token, status, body.len() as i32, 0);
                    ctx.set_buffer(BufferType::RedisCallResponse, body);
                    ("proxy_on_redis_call_response", args)
                }
            }
        };
        let started = self.started()?;
        let (http, redis) = (
            started.http_call_response.clone(),
            started.redis_call_response.clone(),
        );
        if name == "proxy_on_http_call_response" {
            if let Some(f) = http {
                f.call_async(&mut self.store, args).await.map_err(trap)?;
            }
        } else if let Some(f) = redis {
            f.call_async(&mut self.store, (args.0, args.1, args.2, args.3))
                .await
                .map_err(trap)?;
        }
        let ctx = self.store.data_mut().context();
        ctx.take_map(MapType::HttpCallResponseHeaders);
        ctx.set_buffer(BufferType::HttpCallResponseBody, Vec::new());
        ctx.set_buffer(BufferType::RedisCallResponse, Vec::new());
        Ok(())
    }
}
