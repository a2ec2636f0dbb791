//! A request's context torn down: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`, when the
//! request ends ([`ProxyStream::finish`]) or, when it ends without (the client left, an error),
//! from `Drop` on the plugin threads.

use std::time::Duration;

use super::super::ops::{Properties, VmOp};
use super::{ProxyStream, Who};
use crate::proxy_wasm::abi::Pairs;

impl ProxyStream {
    /// `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`: the request is over. With its own
    /// deadline and fuel (a request that used its budget still gets its teardown).
    pub async fn finish(mut self) {
        self.finish_context().await;
    }

    async fn finish_context(&mut self) {
        if self.context.is_none() || self.failed {
            return;
        }
        self.fuel_left = self.who.quotas.fuel;
        let Ok((held, id)) = self.own_context().await else {
            return;
        };
        self.context = None;
        let budget = Duration::from_millis(self.who.quotas.deadline_ms);
        if let Err(e) = self.call(held, VmOp::Finish { id }, budget).await {
            tracing::debug!(tenant = %self.who.tenant, "proxy-wasm teardown failed: {e}");
        }
    }
}

impl Drop for ProxyStream {
    /// A request that ends without [`ProxyStream::finish`] (the client left, an error) still
    /// tears its context down, on the plugin threads: a context left in the VM would hold the
    /// module's memory for it.
    fn drop(&mut self) {
        if self.context.is_none() || self.failed {
            return;
        }
        let mut rest = ProxyStream {
            runtime: self.runtime.clone(),
            cell: self.cell.clone(),
            plugin: self.plugin.clone(),
            configs: self.configs.clone(),
            who: Who {
                tenant: self.who.tenant.clone(),
                plugin: self.who.plugin.clone(),
                quotas: self.who.quotas,
                config: self.who.config.clone(),
                outbound: self.who.outbound.clone(),
                capabilities: self.who.capabilities.clone(),
            },
            context: self.context.take(),
            fuel_left: 0,
            remaining: Duration::ZERO,
            properties: Properties::new(),
            request_headers: Pairs::new(),
            failed: false,
            request_length_released: false,
            response_length_released: false,
            held_head: None,
            held_response: None,
            method: None,
        };
        self.runtime
            .executor_handle()
            .spawn(async move { rest.finish_context().await });
    }
}
