//! What one request carries from phase to phase.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_metrics::{NO_ROUTE, UNKNOWN_TENANT};

use super::chain::{AwaitingBody, Continued};
use super::errors::GatewayError;
use super::request_info::RequestId;
use crate::control::table::{CompiledRoute, CompiledTenant};

/// Per-request state carried across phases.
pub struct RequestCtx {
    pub started: Instant,
    /// The tenant and route this request matched, pinned for its whole life: a reload that
    /// replaces them does not change a request midway.
    pub tenant: Option<Arc<CompiledTenant>>,
    pub route: Option<Arc<CompiledRoute>>,
    /// Targets this request failed to connect to: a retry goes elsewhere.
    pub tried: Vec<std::net::SocketAddr>,
    /// The target of the attempt in progress.
    pub peer: Option<std::net::SocketAddr>,
    /// Its name (or address) and port as a Host header, for `host_header = "upstream"`.
    pub peer_host: Option<String>,
    pub request_id: RequestId,
    pub upstream_sent: Option<Instant>,
    pub upstream_elapsed: Option<Duration>,
    /// Set when Wharf itself decides the outcome, so `fail_to_proxy` answers precisely.
    pub failure: Option<GatewayError>,
    /// Plugins that continued the request, waiting for `on-response`.
    pub continued: Vec<Continued>,
    /// The request's trace span (child of the client's `traceparent`, if any).
    pub span: tracing::Span,
    /// Counts this request as in flight until it is done: shutdown waits for it.
    pub in_flight: Option<crate::drain::InFlightGuard>,
    /// Its place in the tenant's `max_requests_in_flight`, held until it is done.
    pub tenant_slot: Option<crate::control::in_flight::Slot>,
    /// When its body began to be read, if it has one that must keep a minimum rate.
    pub body_started: Option<Instant>,
    /// The body read whole for the route's plugins (as they left it): sent upstream in place
    /// of the client's; and its share of the node's memory, held until the request is done.
    pub request_body: Option<bytes::Bytes>,
    pub body_memory: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Plugins waiting for the whole response body (last first), and the body held for them.
    pub awaiting_body: Vec<AwaitingBody>,
    pub held_body: Option<super::response_body::HeldBody>,
    /// The request (response) body streaming through proxy-wasm modules that read it.
    pub streamed_request: Option<super::request_stream::StreamedRequest>,
    pub streamed_response: Option<super::response_stream::StreamedResponse>,
    /// A proxy-wasm module's local reply after the request went upstream (from a body
    /// callback, or while the response's head is held): `fail_to_proxy` serves it.
    pub reply_instead: Option<wharf_plugins::types::Reply>,
    /// That reply was served: the request did not fail (no error log).
    pub served_reply: bool,
    /// proxy-wasm plugins waiting for the response's trailers (last first, `trailers.rs`).
    pub awaiting_trailers: Vec<super::trailers::AwaitingTrailers>,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            tenant: None,
            route: None,
            tried: Vec::new(),
            peer: None,
            peer_host: None,
            request_id: RequestId::default(),
            upstream_sent: None,
            upstream_elapsed: None,
            failure: None,
            continued: Vec::new(),
            span: tracing::Span::none(),
            in_flight: None,
            tenant_slot: None,
            body_started: None,
            request_body: None,
            body_memory: None,
            awaiting_body: Vec::new(),
            held_body: None,
            streamed_request: None,
            streamed_response: None,
            reply_instead: None,
            served_reply: false,
            awaiting_trailers: Vec::new(),
        }
    }

    pub fn tenant_label(&self) -> &str {
        self.tenant.as_ref().map_or(UNKNOWN_TENANT, |t| &t.id)
    }

    pub fn route_label(&self) -> &str {
        self.route.as_ref().map_or(NO_ROUTE, |r| &r.spec.id)
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
