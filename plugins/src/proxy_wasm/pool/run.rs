//! A request's stream through a VM: its context's callbacks, each taking the VM's lock, run on
//! the plugin threads with what the request has left of its fuel and deadline; the VM started
//! first when it is not running; a failure drops the VM (FAIL_RELOAD) and fails the request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ops::{Properties, VmDone, VmOp};
use super::{Held, VmCell, VmConfigs};
use crate::cache::CompiledPlugin;
use crate::call;
use crate::capabilities::TenantCapabilities;
use crate::error::{Failure, PluginError};
use crate::output;
use crate::proxy_wasm::abi::Pairs;
use crate::proxy_wasm::env::ProxyHost;
use crate::proxy_wasm::vm::HeadersOutcome;
use crate::runtime::PluginRuntime;
use wharf_tenancy::outbound::OutboundHost;
use wharf_tenancy::PluginQuotas;

mod body;
mod held;
mod request;
mod response;
mod settle;
mod start;
mod teardown;
mod trailers;

pub use body::BodyStep;
use held::HeldHead;
pub use held::RequestStep;
pub use response::ResponseStep;

/// Who the stream runs for: what a VM start and each request's capability state need.
#[derive(Clone)]
pub(super) struct Who {
    pub(super) tenant: Arc<str>,
    pub(super) plugin: Arc<str>,
    pub(super) quotas: PluginQuotas,
    config: crate::AttachmentConfig,
    pub(super) outbound: Arc<[OutboundHost]>,
    pub(super) capabilities: Option<Arc<TenantCapabilities>>,
}

impl Who {
    pub(super) fn invocation(&self) -> crate::Invocation<'_> {
        crate::Invocation {
            tenant: &self.tenant,
            plugin: &self.plugin,
            quotas: self.quotas,
            config: self.config.clone(),
            outbound: self.outbound.clone(),
            request_body: None,
            capabilities: self.capabilities.clone(),
        }
    }
}

pub struct ProxyStream {
    runtime: Arc<PluginRuntime>,
    cell: Arc<VmCell>,
    plugin: Arc<CompiledPlugin>,
    configs: VmConfigs,
    who: Who,
    /// The request's context: the VM generation it lives in, and its id.
    context: Option<(u64, u32)>,
    fuel_left: u64,
    remaining: Duration,
    /// The request's properties; the module's own `proxy_set_property` values come back in.
    pub properties: Properties,
    /// The request's headers as the request phase left them (readable in the response phase).
    request_headers: Pairs,
    failed: bool,
    /// The module removed `content-length` from the request (or response): it may change the
    /// body's length, which then goes without one.
    request_length_released: bool,
    response_length_released: bool,
    /// The request's headers, held while the module waits for the body.
    held_head: Option<Box<HeldHead>>,
    /// The response's headers, held (not sent) while the module waits for the body.
    held_response: Option<Box<HeldHead>>,
    /// The method the module set through `:method`, checked.
    method: Option<Box<http::Method>>,
}

impl ProxyStream {
    pub(super) fn new(
        runtime: Arc<PluginRuntime>,
        cell: Arc<VmCell>,
        plugin: Arc<CompiledPlugin>,
        configs: VmConfigs,
        inv: crate::Invocation<'_>,
    ) -> ProxyStream {
        let who = Who {
            tenant: inv.tenant.clone(),
            plugin: inv.plugin.clone(),
            quotas: inv.quotas,
            config: inv.config,
            outbound: inv.outbound,
            capabilities: inv.capabilities,
        };
        ProxyStream::with(runtime, cell, plugin, configs, who, None)
    }

    /// A stream with the request's whole budget and nothing yet seen of it.
    fn with(
        runtime: Arc<PluginRuntime>,
        cell: Arc<VmCell>,
        plugin: Arc<CompiledPlugin>,
        configs: VmConfigs,
        who: Who,
        context: Option<(u64, u32)>,
    ) -> ProxyStream {
        ProxyStream {
            runtime,
            cell,
            plugin,
            configs,
            fuel_left: who.quotas.fuel,
            remaining: Duration::from_millis(who.quotas.deadline_ms),
            who,
            context,
            properties: Properties::new(),
            request_headers: Pairs::new(),
            failed: false,
            request_length_released: false,
            response_length_released: false,
            held_head: None,
            held_response: None,
            method: None,
        }
    }

    pub fn plugin(&self) -> &str {
        &self.who.plugin
    }

    /// The method the module set for the upstream request (`:method`), if it changed it.
    pub fn method_change(&self) -> Option<&http::Method> {
        self.method.as_deref()
    }

    /// Whether the module removed the request's (response's) `content-length`.
    pub fn releases_request_length(&self) -> bool {
        self.request_length_released
    }

    pub fn releases_response_length(&self) -> bool {
        self.response_length_released
    }

    /// Whether the module has a response phase (the stream lives past the upstream call).
    pub fn has_response_phase(&self) -> bool {
        self.plugin.exports.has_response_phase()
    }

    fn checked<R>(
        &mut self,
        value: R,
        check: fn(&R) -> Result<(), output::InvalidOutput>,
    ) -> Result<R, PluginError> {
        // The module's VM is fine: the request fails, its context is torn down as usual.
        check(&value)
            .map(|()| value)
            .map_err(|invalid| self.error(Failure::InvalidOutput(invalid.0)))
    }

    fn record<R>(&self, phase: &str, started: Instant, result: &Result<R, PluginError>) {
        let who = (&*self.who.tenant, &*self.who.plugin);
        call::record(self.runtime.metrics(), who, phase, started, result);
    }

    /// A context for the request, then `proxy_on_request_headers` (pseudo-headers included).
    pub async fn request_headers(
        &mut self,
        headers: Pairs,
        end_of_stream: bool,
    ) -> Result<HeadersOutcome, PluginError> {
        let mut held = self.lock().await?;
        let generation = match held.as_ref() {
            Some(live) => live.generation,
            None => {
                held = self.start(held).await?;
                held.as_ref().map_or(0, |l| l.generation)
            }
        };
        if let Some(live) = held.as_mut() {
            // This request's own log budget and capability state, and a CPU slot whose
            // queueing counts from now.
            let data = live.vm.store.data_mut();
            data.caps = crate::runtime::instance_states(&self.who.invocation());
            data.cpu = self.runtime.fair().slot(&self.who.tenant);
        }
        let op = VmOp::RequestHeaders {
            headers,
            end_of_stream,
            properties: std::mem::take(&mut self.properties),
        };
        let done = self.call(held, op, self.remaining).await?;
        let (id, outcome) = self.headers_done(done)?;
        self.context = Some((generation, id));
        self.request_headers = outcome.headers.clone();
        Ok(outcome)
    }

    /// What a headers-like callback (request, response, a call's answer) left, with the
    /// request's properties put back.
    fn headers_done(&mut self, done: VmDone) -> Result<(u32, HeadersOutcome), PluginError> {
        match done {
            VmDone::Headers {
                id,
                outcome,
                properties,
            } => {
                self.properties = properties;
                Ok((id, outcome))
            }
            _ => Err(self.trap("the VM answered another callback".into())),
        }
    }

    /// `proxy_on_response_headers` on the request's context (`:status` included).
    pub async fn response_headers(
        &mut self,
        headers: Pairs,
        end_of_stream: bool,
    ) -> Result<HeadersOutcome, PluginError> {
        let (held, id) = self.own_context().await?;
        let op = VmOp::ResponseHeaders {
            id,
            request: self.request_headers.clone(),
            headers,
            end_of_stream,
            properties: std::mem::take(&mut self.properties),
        };
        let done = self.call(held, op, self.remaining).await?;
        self.headers_done(done).map(|(_, outcome)| outcome)
    }

    /// The VM's lock, and this request's context in it; fails when the VM this context lived
    /// in was replaced (another request's failure restarted it).
    async fn own_context(&mut self) -> Result<(Held, u32), PluginError> {
        let Some((generation, id)) = self.context else {
            return Err(self.trap("the request has no context in the VM".into()));
        };
        let held = self.lock().await?;
        if held.as_ref().map(|l| l.generation) != Some(generation) {
            self.context = None;
            self.failed = true;
            return Err(self.trap(
                "its VM was restarted after a failure during this request; the request's \
                 context went with it"
                    .into(),
            ));
        }
        Ok((held, id))
    }

    async fn lock(&mut self) -> Result<Held, PluginError> {
        if self.failed {
            return Err(self.trap("the plugin already failed earlier in this request".into()));
        }
        let cap = self.runtime.queue_cap();
        match tokio::time::timeout(cap, self.cell.live.clone().lock_owned()).await {
            Ok(held) => Ok(held),
            Err(_) => Err(self.error(Failure::Capacity(format!(
                "its VM stayed busy with other requests for {} ms",
                cap.as_millis()
            )))),
        }
    }

    /// One callback on the plugin threads with the request's fuel and `budget`; the VM is
    /// dropped when it fails.
    async fn call(
        &mut self,
        mut held: Held,
        op: VmOp,
        budget: Duration,
    ) -> Result<VmDone, PluginError> {
        let Some(mut live) = held.take() else {
            return Err(self.trap("the VM is not running".into()));
        };
        if let Err(e) = live.vm.store.set_fuel(self.fuel_left) {
            return Err(self.trap(format!("fuel accounting unavailable: {e}")));
        }
        let quotas = self.who.quotas;
        let cell = self.cell.clone();
        let starting = matches!(op, VmOp::Start { .. });
        let run = async move {
            let (mut live, result, used) = call::run(live, op, budget, quotas).await;
            let fuel_left = live.vm.store.get_fuel().unwrap_or(0);
            let ctx = live.vm.store.data_mut().context();
            // Calls `proxy_on_vm_start` / `proxy_on_configure` dispatched are the root
            // context's; any other callback's left here (a teardown's) are dropped.
            let calls = std::mem::take(&mut ctx.calls);
            let root_calls = (starting && !calls.is_empty() && result.is_ok())
                .then(|| (live.generation, calls, ctx.root_in_flight.clone()));
            let ticks = ctx.tick_period.map(|period| (live.generation, period));
            let queues = std::mem::take(&mut ctx.queue_registered).then_some(live.generation);
            // The VM's health is settled while its lock is held: settled after, a success
            // finishing here could land after the next callback's failure and wipe it out (a
            // VM failing request after request would then never back off).
            match &result {
                Ok(VmDone::Started) => {}
                Ok(_) => cell.succeeded(),
                Err(_) => cell.failed(),
            }
            if result.is_ok() {
                *held = Some(live);
            }
            drop(held);
            (result, used, fuel_left, ticks, queues, root_calls)
        };
        let finished = call::on_plugin_threads(&self.runtime.executor_handle(), run).await;
        let (result, used, fuel_left, ticks, queues, root_calls) = match finished {
            Ok(done) => done,
            Err(e) => (
                Err(Failure::Trap(format!(
                    "the plugin task ended abnormally: {e}"
                ))),
                Duration::ZERO,
                0,
                None,
                None,
                None,
            ),
        };
        if let Some((generation, calls, in_flight)) = root_calls {
            self.cell
                .send_root_calls(&self.runtime, generation, &self.who, calls, in_flight);
        }
        if let (Ok(_), Some((generation, period))) = (&result, ticks) {
            self.cell.tick(&self.runtime, generation, period, &self.who);
        }
        if let (Ok(_), Some(generation)) = (&result, queues) {
            self.cell
                .deliver_queues(&self.runtime, generation, &self.who);
        }
        self.remaining = self.remaining.saturating_sub(used);
        self.fuel_left = fuel_left;
        match result {
            // A start alone proves nothing (a module that fails every request after starting
            // fine must still back off): the health was settled above.
            Ok(done) => Ok(done),
            Err(failure) => {
                self.failed = true;
                self.context = None;
                Err(self.error(failure))
            }
        }
    }

    fn trap(&self, reason: String) -> PluginError {
        self.error(Failure::Trap(reason))
    }

    fn error(&self, failure: Failure) -> PluginError {
        PluginError::new(self.who.plugin.as_ref(), failure)
    }
}
