//! One plugin instance's state: who it runs for, what it may still spend, and the per-request
//! state of each capability; plus what every host call does alike (span, metrics, leaving the
//! plugin CPU while it waits on I/O).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capabilities::{
    Capability, HostError, InstanceStates, NodeCapabilities, Registered, TenantCapabilities,
};
use wharf_metrics::Metrics;

use crate::clock::CallClock;
use crate::fair::CpuSlot;
use crate::limits::StoreLimiter;

/// `wharf:plugin/types` has only types, no functions to provide.
impl crate::bindings::types::Host for PluginState {}

/// The data of one plugin instance's store: who it runs for and what it may still spend.
pub struct PluginState {
    pub tenant: Arc<str>,
    pub plugin: Arc<str>,
    pub limiter: StoreLimiter,
    /// This instance's claim on the plugin CPU, and the clock of the call in progress.
    pub cpu: Arc<CpuSlot>,
    /// Some host call of the current call waited on I/O ([`off_cpu`]).
    pub waited_on_io: std::sync::atomic::AtomicBool,
    pub call: CallClock,
    /// Cap on this instance's total waiting for the CPU or an instance permit.
    pub queue_cap: Duration,
    /// Why the epoch tick interrupted the plugin, for the error it gets.
    pub timed_out: bool,
    pub queue_exceeded: bool,
    /// The call in progress runs on the caller's stack, without a fiber: it cannot yield, so
    /// the tick that ends its slice ends the call, to be restarted on a fiber (`fiberless.rs`).
    pub fiberless: bool,
    /// A tick ended the slice of a call without a fiber: restart it on one.
    pub slice_over: bool,
    /// The call in progress ran past a time slice (yielded it, or restarted on a fiber).
    pub ran_long: bool,
    /// Each capability's state of this instance (`caps.log`, `caps.config`, …).
    pub caps: InstanceStates,
    pub metrics: Arc<Metrics>,
    /// The tenant's capabilities; `None` where the gateway has none configured (tools, tests).
    pub tenant_caps: Option<Arc<TenantCapabilities>>,
    /// A proxy-wasm VM's ABI state (maps, buffers, properties of the callback in progress);
    /// `None` in a component's store.
    pub proxy: Option<Box<crate::proxy_wasm::context::HostContext>>,
    /// The tenant's plugin quotas this store runs under.
    pub quotas: wharf_tenancy::PluginQuotas,
}

impl PluginState {
    /// The state a restarted call starts from (`fiberless.rs`): the same request, clock and
    /// capabilities, with nothing the ended attempt did (a declared response edit, a replaced
    /// body, held log lines) and a fresh memory count for the fresh store.
    pub(crate) fn for_restart(&self) -> PluginState {
        let mut caps = self.caps.clone();
        caps.body.replaced = None;
        caps.response_edits = None;
        caps.log.drop_held();
        PluginState {
            tenant: self.tenant.clone(),
            plugin: self.plugin.clone(),
            limiter: StoreLimiter::new(self.quotas.memory_bytes),
            cpu: self.cpu.clone(),
            waited_on_io: Default::default(),
            call: self.call,
            queue_cap: self.queue_cap,
            timed_out: false,
            queue_exceeded: false,
            fiberless: false,
            slice_over: false,
            ran_long: false,
            caps,
            metrics: self.metrics.clone(),
            tenant_caps: self.tenant_caps.clone(),
            proxy: None,
            quotas: self.quotas,
        }
    }
}

/// Waits for a host call's I/O without holding a plugin CPU slot (other tenants' plugins run
/// meanwhile), then waits for the CPU again. The I/O counts against the plugin's deadline; the
/// wait for the CPU does not.
pub async fn off_cpu<T>(state: &PluginState, io: impl Future<Output = T>) -> T {
    let slot = &state.cpu;
    state
        .waited_on_io
        .store(true, std::sync::atomic::Ordering::Relaxed);
    slot.release();
    let out = io.await;
    slot.acquire().await;
    out
}

/// One host call in flight: a tracing span and the start time for the metrics.
pub struct HostCall {
    function: &'static str,
    started: Instant,
    span: tracing::Span,
}

impl PluginState {
    /// The tenant's state of capability `C` for a host call. Its first use on this node
    /// (provisioning, a pool, a first connection) is not charged to the plugin.
    pub async fn capability<C: Capability>(&self) -> Result<&C::TenantState, HostError>
    where
        NodeCapabilities: Registered<C>,
    {
        let caps = self
            .tenant_caps
            .as_deref()
            .ok_or(HostError::BackendUnavailable)?;
        self.uncharged_if(!caps.ready::<C>(), caps.get::<C>()).await
    }

    /// Runs `setup` and, when `first` (a capability's first use of the tenant on this node:
    /// provisioning, its pool, its first connection), counts its time as waiting, not as the
    /// plugin's own: a request must not time out for Wharf's lazy set-up. Waiting stays capped
    /// (`plugins.queue_ms`).
    pub async fn uncharged_if<T>(
        &self,
        first: bool,
        setup: impl std::future::Future<Output = T>,
    ) -> T {
        if first {
            self.cpu.waiting_for(setup).await
        } else {
            setup.await
        }
    }

    pub fn host_call(&self, function: &'static str) -> HostCall {
        let span = tracing::debug_span!(target: "wharf::trace", "host_call", tenant = %self.tenant, plugin = %self.plugin, function, outcome = tracing::field::Empty);
        HostCall {
            function,
            started: Instant::now(),
            span,
        }
    }
}

impl HostCall {
    pub fn finish<T>(self, state: &PluginState, result: &Result<T, HostError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.span.record("outcome", outcome);
        let who = (&*state.tenant, &*state.plugin);
        record_host_call(&state.metrics, who, self.function, self.started, outcome);
    }
}

/// One host call in the metrics: by tenant, plugin, function and outcome, and its time.
pub(crate) fn record_host_call(
    m: &Metrics,
    (tenant, plugin): (&str, &str),
    function: &str,
    started: Instant,
    outcome: &str,
) {
    let tenant = m.tenant(tenant);
    m.host_calls_total
        .with_label_values(&[&tenant, plugin, function, outcome])
        .inc();
    m.host_call_duration
        .with_label_values(&[&tenant, function])
        .observe(started.elapsed().as_secs_f64());
}
