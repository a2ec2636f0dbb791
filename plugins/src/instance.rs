//! One plugin instance serving one request: a fresh store with the tenant's fuel, deadline and
//! memory limit. Failures are classified into [`PluginError`] and never outlive the request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::{Store, Trap};
use wharf_metrics::Metrics;

use crate::bindings::types::{Request, RequestAction, Response, ResponseAction};
use crate::bindings::HttpPlugin;
use crate::error::PluginError;
use crate::host::PluginState;
use crate::output;
use crate::settings::TenantLimits;

pub struct PluginInstance {
    pub(crate) store: Store<PluginState>,
    pub(crate) bindings: HttpPlugin,
    pub(crate) limits: TenantLimits,
    pub(crate) metrics: Arc<Metrics>,
    /// Pool slots (global, tenant) held for as long as the instance lives.
    pub(crate) _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    pub(crate) failed: bool,
}

#[derive(Clone, Copy)]
enum Phase {
    Request,
    Response,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Request => "on_request",
            Phase::Response => "on_response",
        }
    }
}

impl PluginInstance {
    pub fn plugin(&self) -> &str {
        &self.store.data().plugin
    }

    pub async fn on_request(&mut self, req: &Request) -> Result<RequestAction, PluginError> {
        let started = Instant::now();
        let result = match self.budget() {
            Err(e) => Err(e),
            Ok(budget) => {
                let call = self.bindings.call_on_request(&mut self.store, req);
                let outcome = tokio::time::timeout(budget, call).await;
                self.settle(outcome, output::check_request_action)
            }
        };
        self.record(Phase::Request, started, &result);
        result
    }

    pub async fn on_response(&mut self, resp: &Response) -> Result<ResponseAction, PluginError> {
        let started = Instant::now();
        let result = match self.budget() {
            Err(e) => Err(e),
            Ok(budget) => {
                let call = self.bindings.call_on_response(&mut self.store, resp);
                let outcome = tokio::time::timeout(budget, call).await;
                self.settle(outcome, output::check_response_action)
            }
        };
        self.record(Phase::Response, started, &result);
        result
    }

    /// Time left for this call. Past the deadline, or after a failure, the instance is done.
    fn budget(&mut self) -> Result<Duration, PluginError> {
        if self.failed {
            return Err(self.trap("the instance already failed earlier in this request".into()));
        }
        let left = self
            .store
            .data()
            .deadline
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.failed = true;
            return Err(self.timeout());
        }
        // Re-arm the tick deadline: it was set at instantiation, and after the upstream call it has
        // long passed, which would start the call with a needless callback and yield. The
        // wall-clock deadline itself is unchanged (the callback checks `deadline`).
        self.store.set_epoch_deadline(1);
        // The epoch callback enforces the deadline inside wasm; this outer timeout catches a
        // host call (e.g. a slow backend) that holds the plugin past it.
        Ok(left + Duration::from_millis(5))
    }

    fn settle<R>(
        &mut self,
        outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
        check: fn(&R) -> Result<(), String>,
    ) -> Result<R, PluginError> {
        let result = match outcome {
            Err(_elapsed) => Err(self.timeout()),
            Ok(Err(e)) => Err(self.classify(e)),
            Ok(Ok(value)) => match check(&value) {
                Ok(()) => Ok(value),
                Err(reason) => Err(PluginError::InvalidOutput {
                    plugin: self.plugin().to_string(),
                    reason,
                }),
            },
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn classify(&self, e: wasmtime::Error) -> PluginError {
        let plugin = self.plugin().to_string();
        let state = self.store.data();
        if state.timed_out {
            return self.timeout();
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PluginError::FuelExhausted {
                plugin,
                fuel: self.limits.fuel,
            },
            Some(Trap::Interrupt) => self.timeout(),
            _ if state.limiter.hit => PluginError::MemoryLimit {
                plugin,
                limit_bytes: self.limits.memory_bytes,
            },
            Some(Trap::StackOverflow) => {
                self.trap("call stack exhausted (recursion too deep)".into())
            }
            Some(trap) => self.trap(trap.to_string()),
            None => self.trap(format!("{e:#}").chars().take(300).collect()),
        }
    }

    fn timeout(&self) -> PluginError {
        PluginError::Timeout {
            plugin: self.plugin().to_string(),
            deadline_ms: self.limits.deadline_ms,
        }
    }

    fn trap(&self, reason: String) -> PluginError {
        PluginError::Trap {
            plugin: self.plugin().to_string(),
            reason,
        }
    }

    fn record<R>(&self, phase: Phase, started: Instant, result: &Result<R, PluginError>) {
        let state = self.store.data();
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.metrics
            .plugin_invocations_total
            .with_label_values(&[
                &*self.metrics.tenant(&state.tenant),
                &state.plugin,
                phase.label(),
                outcome,
            ])
            .inc();
        self.metrics
            .plugin_duration
            .with_label_values(&[&*self.metrics.tenant(&state.tenant), phase.label()])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Fuel used so far by this instance.
    pub fn fuel_consumed(&self) -> u64 {
        self.limits
            .fuel
            .saturating_sub(self.store.get_fuel().unwrap_or(0))
    }
}

impl Drop for PluginInstance {
    fn drop(&mut self) {
        let state = self.store.data();
        self.metrics
            .plugin_fuel_consumed
            .with_label_values(&[&*self.metrics.tenant(&state.tenant)])
            .observe(self.fuel_consumed() as f64);
        self.metrics.plugin_instances_in_use.dec();
    }
}
