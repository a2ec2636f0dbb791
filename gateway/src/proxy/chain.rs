//! A route's plugin chain: `on-request` in order (the first `respond` ends it), `on-response` in
//! reverse over the plugins that continued. Each component instance lives for one request; a
//! proxy-wasm plugin runs in its tenant's VM, with a context per request (`proxy_wasm.rs`).

use std::sync::Arc;

use pingora_http::RequestHeader;
use tracing::Instrument;
use wharf_plugins::capabilities::TenantCapabilities;

use super::paused::Paused;
use super::plugin_input;
use crate::control::plugin_ref::Attached;
use crate::control::resolve::Unavailable;
use wharf_plugins::cache::Exports;
use wharf_plugins::proxy_wasm::pool::{ProxyStream, RequestStep};
use wharf_plugins::types::{Reply, RequestAction, RequestEdits, RequestHead, ResponseAction};
use wharf_plugins::{
    CompiledPlugin, Failure, Invocation, PluginError, PluginInstance, PluginQuotas, PluginRuntime,
};

/// A plugin waiting for its `on-response`.
pub struct Continued {
    pub(super) plugin: Plugged,
    pub(super) fail_open: bool,
    /// A proxy-wasm plugin that got the whole request body already (`paused.rs`), or its end
    /// as it streamed (`request_stream.rs`).
    pub(super) body_seen: bool,
    /// What it keeps buffered of a streaming request body (`body_stream.rs`).
    pub(super) buffer: Vec<u8>,
}

/// A plugin running for this request, by kind.
pub(super) enum Plugged {
    Component(PluginInstance),
    ProxyWasm(ProxyStream),
    /// A `request-filter` that declared its response edits (`response-edits`): its instance
    /// ended with its request phase; the edits wait for the response in its place.
    Declared(Arc<str>, ResponseAction),
}

/// A plugin waiting for the whole response body.
pub struct AwaitingBody {
    pub(super) plugin: Plugged,
    pub(super) fail_open: bool,
    /// What it keeps buffered of a streaming response body (`body_stream.rs`).
    pub(super) buffer: Vec<u8>,
    /// It failed open: the body goes on without it.
    pub(super) skipped: bool,
}

impl AwaitingBody {
    /// A proxy-wasm module (its body streams through it piece by piece).
    pub(super) fn streams(&self) -> bool {
        matches!(&self.plugin, Plugged::ProxyWasm(_))
    }

    /// A module holding the response's head until a body callback continues.
    pub(super) fn holds_response(&self) -> bool {
        matches!(&self.plugin, Plugged::ProxyWasm(s) if !self.skipped && s.holds_response())
    }

    /// A proxy-wasm plugin that left the response's `content-length` (it will not change the
    /// body's length); components always may.
    pub(super) fn keeps_length(&self) -> bool {
        matches!(&self.plugin, Plugged::ProxyWasm(s) if !s.releases_response_length())
    }
}

pub enum RequestOutcome {
    Continue,
    /// The plugin at this index of the chain reads the body, which is not read yet.
    NeedsBody(usize),
    /// The proxy-wasm plugin at this index paused in its headers callback to wait for the
    /// body, which is not read yet: the caller reads it, resumes the plugin
    /// ([`super::paused::resume`]) and runs the chain on after it.
    PausedForBody(usize, Box<Paused>),
    Respond(Reply),
    Failed(PluginError),
}

/// Who the chain runs for.
pub struct ChainCtx<'a> {
    pub runtime: &'a Arc<PluginRuntime>,
    pub tenant: &'a Arc<str>,
    pub route: &'a str,
    pub quotas: PluginQuotas,
    pub client_addr: String,
    pub capabilities: &'a Arc<TenantCapabilities>,
    pub request_id: &'a str,
    /// `http` or `https`, as the client came.
    pub scheme: &'static str,
    /// The request has no body (a proxy-wasm module's headers are its end of stream).
    pub body_empty: bool,
}

/// `body`: the request body once read (a plugin's replacement takes its place). The chain stops
/// with [`RequestOutcome::NeedsBody`] at the first plugin that reads the body while it is not
/// read yet; the caller reads it and runs the chain on from there. Plugins after one that
/// answers are never loaded.
pub async fn on_request(
    cx: &ChainCtx<'_>,
    chain: &[Attached],
    req: &mut RequestHeader,
    body: &mut Option<bytes::Bytes>,
    continued: &mut Vec<Continued>,
) -> RequestOutcome {
    let mut head = None;
    for (i, att) in chain.iter().enumerate() {
        let plugin = compiled(cx.runtime, att).await;
        if body.is_none() && plugin.as_ref().is_ok_and(|c| c.reads_body) {
            return RequestOutcome::NeedsBody(i);
        }
        let span = tracing::debug_span!(target: "wharf::trace", "plugin", plugin = %att.name, phase = "on_request");
        let result = run_request(cx, att, plugin, req, body, &mut head)
            .instrument(span)
            .await;
        match result {
            Ok((plugin, RequestStep::AwaitsBody)) => {
                let paused = Box::new(Paused {
                    plugin,
                    fail_open: att.fail_open,
                });
                if body.is_none() {
                    return RequestOutcome::PausedForBody(i, paused);
                }
                // Read already (a component before it reads bodies): resumed with it at once.
                match super::paused::resume(cx, paused, req, body, continued).await {
                    RequestOutcome::Continue => {}
                    other => return other,
                }
            }
            Ok((plugin, RequestStep::Action(RequestAction::Continue(edits)))) => {
                go_on(plugin, edits, att.fail_open, false, req, body, continued);
            }
            Ok((_, RequestStep::Action(RequestAction::Respond(reply)))) => {
                return RequestOutcome::Respond(reply)
            }
            Err(e) if att.fail_open => {
                tracing::warn!(tenant = %cx.tenant, plugin = %att.name, "plugin skipped (fail-open): {e}");
            }
            Err(e) => return RequestOutcome::Failed(e),
        }
    }
    RequestOutcome::Continue
}

/// A plugin that continued: its edits on the request (a component's body replacement too), and
/// it waits for its response phase when it has one.
pub(super) fn go_on(
    mut plugin: Plugged,
    edits: RequestEdits,
    fail_open: bool,
    body_seen: bool,
    req: &mut RequestHeader,
    body: &mut Option<bytes::Bytes>,
    continued: &mut Vec<Continued>,
) {
    match &mut plugin {
        Plugged::Component(instance) => {
            if let Some(replaced) = instance.take_request_body() {
                *body = Some(replaced.into());
            }
        }
        // A proxy-wasm module's `:method`, checked already (a token, not CONNECT, not HEAD).
        Plugged::ProxyWasm(stream) => {
            if let Some(method) = stream.method_change() {
                req.set_method(method.clone());
            }
        }
        Plugged::Declared(..) => {}
    }
    for op in edits.headers {
        super::edits::apply_op(req, op);
    }
    if let Some(path) = edits.path.as_deref() {
        super::edits::rewrite_path(req, path);
    }
    // A filter has no response phase: its instance ends here, before the upstream, leaving
    // the response edits it declared, if any.
    if let Plugged::Component(instance) = &mut plugin {
        if !instance.has_response_phase() {
            match instance.take_declared_response() {
                Some((name, action)) => plugin = Plugged::Declared(name, action),
                None => return,
            }
        }
    }
    if plugin.has_response_phase() {
        continued.push(Continued {
            plugin,
            fail_open,
            body_seen,
            buffer: Vec::new(),
        });
    }
}

async fn run_request(
    cx: &ChainCtx<'_>,
    att: &Attached,
    compiled: Result<Arc<CompiledPlugin>, PluginError>,
    req: &RequestHeader,
    body: &Option<bytes::Bytes>,
    head: &mut Option<Arc<RequestHead>>,
) -> Result<(Plugged, RequestStep), PluginError> {
    let compiled = compiled?;
    let request_body = if compiled.reads_body {
        body.clone()
    } else {
        None
    };
    let inv = Invocation {
        tenant: cx.tenant,
        plugin: &att.name,
        quotas: cx.quotas,
        config: att.config.clone(),
        outbound: att.outbound.clone(),
        request_body,
        capabilities: Some(cx.capabilities.clone()),
    };
    if let Exports::ProxyWasm(_) = compiled.exports {
        let (stream, step) = super::proxy_wasm::on_request(cx, att, &compiled, inv, req).await?;
        return Ok((Plugged::ProxyWasm(stream), step));
    }
    let mut instance = cx.runtime.prepare(inv, &compiled).await?;
    let action = if compiled.exports.has_response_phase() {
        instance
            .on_request(plugin_input::wit_request(cx, req))
            .await?
    } else {
        // The head only; the headers go along as they are, copied into the plugin when asked.
        instance
            .handle_request(plugin_input::filter_head(cx, req, head), &req.headers)
            .await?
    };
    Ok((Plugged::Component(instance), RequestStep::Action(action)))
}

impl Continued {
    /// A proxy-wasm plugin that reads request bodies (components read theirs before the chain).
    pub(super) fn reads_request_body(&self) -> bool {
        matches!(&self.plugin, Plugged::ProxyWasm(s) if s.reads_request_body())
    }

    /// A proxy-wasm plugin that removed the request's `content-length` (it may change the
    /// body's length).
    pub(super) fn releases_request_length(&self) -> bool {
        matches!(&self.plugin, Plugged::ProxyWasm(s) if s.releases_request_length())
    }

    pub(super) fn fail_open(&self) -> bool {
        self.fail_open
    }

    /// A component that rewrites the response body whole (`response_body.rs`).
    pub(super) fn component_reads_response_body(&self) -> bool {
        matches!(&self.plugin, Plugged::Component(i) if i.reads_response_body())
    }

    pub(super) fn name(&self) -> &str {
        self.plugin.name()
    }

    /// The whole request body, for a proxy-wasm plugin that reads it; `Some` replaces it.
    pub(super) async fn on_request_body(
        &mut self,
        body: Vec<u8>,
        max: u64,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        match &mut self.plugin {
            Plugged::ProxyWasm(s) => s.on_request_body(body, max).await,
            Plugged::Component(_) | Plugged::Declared(..) => Ok(None),
        }
    }
}

impl Plugged {
    fn has_response_phase(&self) -> bool {
        match self {
            Plugged::Component(i) => i.has_response_phase(),
            Plugged::ProxyWasm(s) => s.has_response_phase(),
            Plugged::Declared(..) => true,
        }
    }

    /// The plugin is done with the request: a proxy-wasm context is torn down here, on this
    /// thread when the plugin CPU is free (dropping the stream would hand its teardown to the
    /// plugin threads, a cross-runtime wake-up per request).
    pub(super) async fn finish(self) {
        if let Plugged::ProxyWasm(s) = self {
            s.finish().await;
        }
    }

    pub(super) fn reads_response_body(&self) -> bool {
        match self {
            Plugged::Component(i) => i.reads_response_body(),
            Plugged::ProxyWasm(s) => s.reads_response_body(),
            Plugged::Declared(..) => false,
        }
    }

    /// The whole response body; `Some` replaces it.
    pub(super) async fn on_response_body(
        &mut self,
        body: Vec<u8>,
        max: u64,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        match self {
            Plugged::Component(i) => i.on_response_body(body, max).await,
            Plugged::ProxyWasm(s) => s.on_response_body(body, max).await,
            Plugged::Declared(..) => Ok(None),
        }
    }

    pub(super) fn name(&self) -> &str {
        match self {
            Plugged::Component(i) => i.plugin(),
            Plugged::ProxyWasm(s) => s.plugin(),
            Plugged::Declared(name, _) => name,
        }
    }
}

/// The plugin's compiled code: memory's on the fast path, else loaded (its first request on
/// this node, or after eviction) within the queueing cap.
async fn compiled(
    runtime: &Arc<PluginRuntime>,
    att: &Attached,
) -> Result<Arc<CompiledPlugin>, PluginError> {
    let unavailable = |reason: &Unavailable| {
        PluginError::new(att.name.as_ref(), Failure::Unavailable(reason.to_string()))
    };
    let plugin = att.plugin.as_ref().map_err(unavailable)?;
    if let Some(hit) = plugin.get(runtime) {
        return Ok(hit);
    }
    match tokio::time::timeout(runtime.queue_cap(), plugin.load(runtime)).await {
        Ok(loaded) => loaded.map_err(|e| unavailable(&e)),
        Err(_) => Err(PluginError::new(
            att.name.as_ref(),
            Failure::Capacity("the plugin is still loading on this node".into()),
        )),
    }
}
