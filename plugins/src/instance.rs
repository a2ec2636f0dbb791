//! One plugin instance serving one request: a fresh store with the tenant's fuel, deadline and
//! memory limit. Each call travels to the plugin threads and back; failures are classified into
//! [`PluginError`] and never outlive the request.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;
use wharf_metrics::{Metrics, PluginSeries};

use crate::bindings::types::{Request, RequestAction, RequestHead, Response, ResponseAction};
use crate::cache::CompiledPlugin;
use crate::error::{Failure, PluginError};
use crate::instance_end::Ended;
use crate::live::{Done, Live, Op};
use crate::output;
use crate::state::PluginState;
use wharf_tenancy::PluginQuotas;

pub struct PluginInstance {
    /// `None` while a call runs on the plugin threads, after a call was lost with its task, or
    /// once its last call ended it (`ended`).
    live: Option<Box<Live>>,
    /// What the instance left when its last call ended it.
    ended: Option<Ended>,
    compiled: Arc<CompiledPlugin>,
    plugin: Arc<str>,
    quotas: PluginQuotas,
    /// Own time the request's calls may still use.
    remaining: Duration,
    executor: Handle,
    metrics: Arc<Metrics>,
    /// The tenant's plugin series.
    series: Arc<PluginSeries>,
    /// Pool slots (global, tenant) held for as long as the instance lives.
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    failed: bool,
}

#[derive(Clone, Copy)]
enum Phase {
    Request,
    Response,
    ResponseBody,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Request => "on_request",
            Phase::Response => "on_response",
            Phase::ResponseBody => "on_response_body",
        }
    }
}

impl PluginInstance {
    pub(crate) fn new(
        store: Store<PluginState>,
        compiled: Arc<CompiledPlugin>,
        quotas: PluginQuotas,
        executor: Handle,
        metrics: Arc<Metrics>,
        permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    ) -> Self {
        metrics.plugin_instances_in_use.inc();
        let plugin = store.data().plugin.clone();
        let series = store.data().cpu.series().clone();
        PluginInstance {
            live: Some(Box::new(Live {
                store,
                compiled: compiled.clone(),
                bindings: None,
            })),
            ended: None,
            compiled,
            plugin,
            quotas,
            remaining: Duration::from_millis(quotas.deadline_ms),
            executor,
            metrics,
            series,
            _permits: permits,
            failed: false,
        }
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Whether it reads the response body (`response-body-plugin`).
    pub fn reads_response_body(&self) -> bool {
        self.compiled.exports.reads_response_body()
    }

    /// The whole response body, for a `response-body-plugin`: `Some` replaces it (at most the
    /// tenant's `plugin_body_max_bytes`, else the plugin's output is invalid).
    pub async fn on_response_body(
        &mut self,
        body: Vec<u8>,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        let started = Instant::now();
        let result = match self.call(Op::ResponseBody(body)).await {
            Ok(Done::ResponseBody(Some(b))) if b.len() as u64 > max_bytes => {
                self.failed = true;
                Err(self.failed_with(Failure::InvalidOutput(format!(
                    "a response body of {} bytes, over plugin_body_max_bytes ({max_bytes})",
                    b.len()
                ))))
            }
            Ok(Done::ResponseBody(b)) => Ok(b),
            Ok(_) => Err(self.trap("the call returned the wrong phase's result".into())),
            Err(e) => Err(e),
        };
        self.record(Phase::ResponseBody, started, &result);
        result
    }

    /// Whether it has a response phase (a classic plugin); a filter's instance can end as soon
    /// as its request phase returns.
    pub fn has_response_phase(&self) -> bool {
        self.compiled.exports.has_response_phase()
    }

    /// The body `on-request` set with `set-request-body`, if it did (taken: asked once).
    pub fn take_request_body(&mut self) -> Option<Vec<u8>> {
        match (&mut self.live, &mut self.ended) {
            (Some(live), _) => live.store.data_mut().caps.body.replaced.take(),
            (None, Some(ended)) => ended.request_body.take(),
            (None, None) => None,
        }
    }

    /// The response edits a `request-filter` declared (`response-edits`), checked already
    /// (taken: asked once), with the plugin's name to carry them under.
    pub fn take_declared_response(&mut self) -> Option<(Arc<str>, ResponseAction)> {
        let action = match (&mut self.live, &mut self.ended) {
            (Some(live), _) => live.store.data_mut().caps.response_edits.take(),
            (None, Some(ended)) => ended.declared.take(),
            (None, None) => None,
        }?;
        Some((self.plugin.clone(), action))
    }

    /// Instantiates now (otherwise the first call does).
    pub async fn start(&mut self) -> Result<(), PluginError> {
        self.call(Op::Start).await.map(|_| ())
    }

    /// The request phase, for a plugin of any world: a filter gets the head and the headers
    /// (the proxy calls [`Self::handle_request`] itself, without building every header).
    pub async fn on_request(&mut self, req: Request) -> Result<RequestAction, PluginError> {
        if !self.has_response_phase() {
            let mut headers = http::HeaderMap::new();
            for h in &req.headers {
                if let (Ok(n), Ok(v)) = (
                    http::HeaderName::from_bytes(h.name.as_bytes()),
                    http::HeaderValue::from_bytes(&h.value),
                ) {
                    headers.append(n, v);
                }
            }
            let head = Arc::new(RequestHead {
                method: req.method,
                path: req.path,
                client_addr: req.client_addr,
                tenant_id: req.tenant_id,
                route_id: req.route_id,
            });
            return self.handle_request(head, &headers).await;
        }
        let started = Instant::now();
        let result = match self.call(Op::Request(req)).await {
            Ok(Done::Request(action)) => self.checked(action, output::check_request_action),
            Ok(_) => Err(self.trap("the call returned the wrong phase's result".into())),
            Err(e) => Err(e),
        };
        self.record(Phase::Request, started, &result);
        result
    }

    /// A `request-filter`'s only phase: the head in the call (shared by the filters of a
    /// chain), the headers for it to ask for (copied only for a plugin that can ask:
    /// [`CompiledPlugin::reads_headers`]).
    pub async fn handle_request(
        &mut self,
        head: Arc<RequestHead>,
        headers: &http::HeaderMap,
    ) -> Result<RequestAction, PluginError> {
        let started = Instant::now();
        let headers = match self.compiled.reads_headers {
            true => headers.clone(),
            false => http::HeaderMap::new(),
        };
        // A filter's only call: the instance ends with it.
        let result = match self.call_then_end(Op::Filter(head, headers), true).await {
            Ok(Done::Request(action)) => self.checked(action, output::check_request_action),
            Ok(_) => Err(self.trap("the call returned the wrong phase's result".into())),
            Err(e) => Err(e),
        };
        self.record(Phase::Request, started, &result);
        result
    }

    pub async fn on_response(&mut self, resp: Response) -> Result<ResponseAction, PluginError> {
        let started = Instant::now();
        let result = match self.call(Op::Response(resp)).await {
            Ok(Done::Response(action)) => self.checked(action, output::check_response_action),
            Ok(_) => Err(self.trap("the call returned the wrong phase's result".into())),
            Err(e) => Err(e),
        };
        self.record(Phase::Response, started, &result);
        result
    }

    /// Runs one call on the plugin threads. After a failure, or with no own time left, the
    /// instance is done.
    async fn call(&mut self, op: Op) -> Result<Done, PluginError> {
        self.call_then_end(op, false).await
    }

    /// [`Self::call`]; with `last`, the instance ends with the call, dropped on the thread the
    /// call finished on (`instance_end`), leaving what the gateway still asks of it.
    async fn call_then_end(&mut self, op: Op, last: bool) -> Result<Done, PluginError> {
        if self.failed {
            return Err(self.trap("the instance already failed earlier in this request".into()));
        }
        let Some(live) = self.live.take() else {
            self.failed = true;
            let why = match self.ended {
                Some(_) => "the instance already ended with its last call",
                None => "the instance was lost",
            };
            return Err(self.trap(why.into()));
        };
        if self.remaining.is_zero() {
            self.live = Some(live);
            self.failed = true;
            return Err(self.timeout());
        }
        let here = !live.compiled.waits_on_io();
        let (remaining, quotas) = (self.remaining, self.quotas);
        let call = async move {
            let (mut live, result, used) = crate::call::run(live, op, remaining, quotas).await;
            let waited = live
                .store
                .data()
                .waited_on_io
                .swap(false, Ordering::Relaxed);
            live.compiled.note_call(waited, live.store.data().ran_long);
            if !last {
                return (Some(live), None, result, used);
            }
            let ended = Ended::take(&mut live.store);
            drop(live);
            (None, Some(ended), result, used)
        };
        let finished = crate::call::start_on(&self.executor, call, here).await;
        let result = match finished {
            Ok((live, ended, result, used)) => {
                self.live = live;
                self.ended = ended;
                self.remaining = self.remaining.saturating_sub(used);
                result.map_err(|f| self.failed_with(f))
            }
            Err(e) => Err(self.trap(format!("the plugin task ended abnormally: {e}"))),
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn checked<R>(
        &mut self,
        value: R,
        check: fn(&R) -> Result<(), output::InvalidOutput>,
    ) -> Result<R, PluginError> {
        match check(&value) {
            Ok(()) => Ok(value),
            Err(invalid) => {
                self.failed = true;
                Err(self.failed_with(Failure::InvalidOutput(invalid.0)))
            }
        }
    }

    fn timeout(&self) -> PluginError {
        self.failed_with(Failure::Timeout {
            deadline_ms: self.quotas.deadline_ms,
        })
    }

    fn trap(&self, reason: String) -> PluginError {
        self.failed_with(Failure::Trap(reason))
    }

    /// The failure, named with this instance's plugin.
    fn failed_with(&self, failure: Failure) -> PluginError {
        PluginError::new(self.plugin.as_ref(), failure)
    }

    fn record<R>(&self, phase: Phase, started: Instant, result: &Result<R, PluginError>) {
        let duration = match phase {
            Phase::Request => &self.series.on_request,
            Phase::Response => &self.series.on_response,
            Phase::ResponseBody => &self.series.on_response_body,
        };
        let who = (&*self.series.label, &*self.plugin);
        crate::call::count(&self.metrics, who, phase.label(), duration, started, result);
    }

    /// Fuel used so far by this instance.
    pub fn fuel_consumed(&self) -> u64 {
        let left = match (&self.live, &self.ended) {
            (Some(l), _) => l.store.get_fuel().unwrap_or(0),
            (None, Some(ended)) => ended.fuel_left,
            (None, None) => 0,
        };
        self.quotas.fuel.saturating_sub(left)
    }
}

impl Drop for PluginInstance {
    fn drop(&mut self) {
        self.series
            .fuel_consumed
            .observe(self.fuel_consumed() as f64);
        self.metrics.plugin_instances_in_use.dec();
    }
}
