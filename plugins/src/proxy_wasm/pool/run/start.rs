//! Starting a stream's VM when it is not running: its initializer, root context and
//! configurations, under the tenant's limits and pool slots, unless it keeps failing and its
//! backoff has not passed.

use std::time::Duration;

use super::super::ops::VmOp;
use super::super::{Held, LiveVm};
use super::ProxyStream;
use crate::cache::Exports;
use crate::error::{Failure, PluginError};
use crate::proxy_wasm::env::ProxyHost;
use crate::proxy_wasm::vm::Vm;

impl ProxyStream {
    /// Starts the VM (its initializer, root context and configuration, under the tenant's
    /// limits), unless it keeps failing and its backoff has not passed.
    pub(super) async fn start(&mut self, mut held: Held) -> Result<Held, PluginError> {
        let (generation, restart) = match self.cell.may_start() {
            Ok(g) => g,
            Err((failures, wait)) => {
                return Err(self.error(Failure::Unavailable(format!(
                    "its VM failed {failures} times in a row; it is started again in {} ms",
                    wait.as_millis()
                ))));
            }
        };
        let Exports::ProxyWasm(code) = &self.plugin.exports else {
            return Err(self.trap("not a proxy-wasm module".into()));
        };
        let pre = code.pre.clone();
        let slot = self.runtime.fair().slot(&self.who.tenant);
        let permits = self
            .runtime
            .permits(&self.who.invocation(), 1, &slot)
            .await?;
        // The code's own engine: baseline (Winch) code runs in a store of the baseline engine.
        let engine = pre.module().engine().clone();
        let mut store = self.runtime.store(&engine, self.who.invocation(), slot)?;
        let metrics = self.runtime.metrics().clone();
        let ctx = store.data_mut().context();
        ctx.shared = Some(self.runtime.vms().shared(&self.who.tenant, &metrics));
        ctx.queue_owner = Some(self.cell.queue_ready.clone());
        metrics.plugin_vms.inc();
        if restart {
            metrics
                .plugin_vm_restarts_total
                .with_label_values(&[&*metrics.tenant(&self.who.tenant)])
                .inc();
        }
        *held = Some(Box::new(LiveVm {
            vm: Vm::new(store),
            generation,
            metrics,
            _permits: permits,
        }));
        let op = VmOp::Start {
            pre,
            configs: self.configs.clone(),
        };
        // Starting a Go runtime takes milliseconds: a start gets at least a second of its own.
        let budget = Duration::from_millis(self.who.quotas.deadline_ms).max(Duration::from_secs(1));
        let fuel = self.fuel_left;
        self.fuel_left = self.who.quotas.fuel;
        self.call(held, op, budget).await?;
        self.fuel_left = fuel;
        self.lock().await
    }
}
