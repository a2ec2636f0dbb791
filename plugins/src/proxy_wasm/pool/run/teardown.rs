//! A request's context torn down: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`, when the
//! request ends ([`ProxyStream::finish`]) or, when it ends without (the client left, an error),
//! from `Drop` on the plugin threads.

use std::time::Duration;

use super::super::ops::VmOp;
use super::ProxyStream;

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
        // The rest of the stream goes to the teardown task (the budget is renewed there).
        let mut rest = ProxyStream::with(
            self.runtime.clone(),
            self.cell.clone(),
            self.plugin.clone(),
            self.configs.clone(),
            self.who.clone(),
            self.context.take(),
        );
        self.runtime
            .executor_handle()
            .spawn(async move { rest.finish_context().await });
    }
}
