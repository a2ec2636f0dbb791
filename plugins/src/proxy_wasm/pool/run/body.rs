//! A request's bodies through its module: the gateway holds a body up to the tenant's
//! `plugin_body_max_bytes` and hands it over whole, as one piece at the end of the stream
//! (`proxy_on_request_body` / `proxy_on_response_body`); what the module sets with
//! `proxy_set_buffer_bytes` replaces it. A body past the quota streams by without the module
//! (the gateway's choice, as for components' response bodies).

use std::time::Instant;

use super::super::ops::{VmDone, VmOp};
use super::ProxyStream;
use crate::cache::Exports;
use crate::error::{Failure, PluginError};

impl ProxyStream {
    /// Whether the module reads request bodies (it exports `proxy_on_request_body`).
    pub fn reads_request_body(&self) -> bool {
        matches!(&self.plugin.exports, Exports::ProxyWasm(c) if c.request_body)
    }

    /// Whether the module reads response bodies (it exports `proxy_on_response_body`).
    pub fn reads_response_body(&self) -> bool {
        matches!(&self.plugin.exports, Exports::ProxyWasm(c) if c.response_body)
    }

    /// The whole request body; `Some`: the module replaced it (at most `max` bytes).
    pub async fn on_request_body(
        &mut self,
        body: Vec<u8>,
        max: u64,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        self.on_body(false, body, max).await
    }

    /// The whole response body; `Some`: the module replaced it (at most `max` bytes).
    pub async fn on_response_body(
        &mut self,
        body: Vec<u8>,
        max: u64,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        self.on_body(true, body, max).await
    }

    async fn on_body(
        &mut self,
        response: bool,
        body: Vec<u8>,
        max: u64,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        let started = Instant::now();
        let phase = if response {
            "on_response_body"
        } else {
            "on_request_body"
        };
        let result = self.body_callback(response, body, max).await;
        self.record(phase, started, &result);
        result
    }

    async fn body_callback(
        &mut self,
        response: bool,
        body: Vec<u8>,
        max: u64,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        let (held, id) = self.own_context().await?;
        let op = VmOp::Body {
            id,
            response,
            body,
            properties: std::mem::take(&mut self.properties),
        };
        match self.call(held, op, self.remaining).await? {
            VmDone::Body {
                replaced,
                local_response,
                properties,
            } => {
                self.properties = properties;
                if local_response {
                    // The upstream has the request's head already (or the client the
                    // response's): too late to answer instead.
                    return Err(self.error(Failure::InvalidOutput(
                        "proxy_send_local_response in a body callback is not served; answer \
                         from the headers callback"
                            .into(),
                    )));
                }
                match replaced {
                    Some(b) if b.len() as u64 > max => {
                        Err(self.error(Failure::InvalidOutput(format!(
                            "a body of {} bytes, over plugin_body_max_bytes ({max})",
                            b.len()
                        ))))
                    }
                    other => Ok(other),
                }
            }
            _ => Err(self.trap("the VM answered another callback".into())),
        }
    }
}
