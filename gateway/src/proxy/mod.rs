//! The request lifecycle, one method per phase, in the order Pingora calls them:
//! `early_request_filter` (the head is in: its clock stops, `pace.rs`) →
//! `request_filter` (lookup → limit → plugin chain) → `upstream_peer` (pick a target) →
//! `upstream_request_filter` (forwarding headers, look-alikes dropped) →
//! `request_body_filter` (the body's minimum rate) → `upstream_response_filter` →
//! `response_filter` (plugins' `on-response`) → `logging` (metrics). Failures land in
//! `fail_to_proxy`. What one phase decides for the next travels in [`RequestCtx`].

mod admission;
mod body;
mod body_pace;
mod body_stream;
pub mod chain;
pub mod ctx;
mod edits;
pub mod errors;
mod lookalikes;
pub mod pace;
mod paused;
mod plugin_input;
pub mod proxy_wasm;
pub mod rate_limit;
mod request_info;
mod request_stream;
mod respond;
mod response_body;
mod response_phase;
mod response_stream;
mod run_chain;
mod trailers;
mod upstream;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use wharf_metrics::{tracing_setup, Metrics, UNKNOWN_TENANT};
use wharf_plugins::PluginRuntime;

use crate::control::table::LiveConfig;
use crate::tls::resolver::Sni;
pub use ctx::RequestCtx;
use errors::GatewayError;
use rate_limit::FleetLimiter;
use request_info::{
    client_ip, code_label, request_id, X_FORWARDED_FOR, X_FORWARDED_PROTO, X_REQUEST_ID,
};
use wharf_plugins::capabilities::networking::EgressPolicy;

pub struct WharfProxy {
    pub config: Arc<LiveConfig>,
    pub metrics: Arc<Metrics>,
    pub runtime: Arc<PluginRuntime>,
    pub fleet_limiter: FleetLimiter,
    pub egress: Arc<EgressPolicy>,
    pub node: NodeToken,
    /// Requests being handled, for draining on shutdown.
    pub in_flight: crate::drain::InFlight,
    /// How fast clients must send heads and bodies.
    pub pace: pace::Pace,
    /// HTTP-01 answers for the ACME orders in flight anywhere in the fleet.
    pub acme: Arc<crate::acme::challenges::Challenges>,
}

/// A random token naming this gateway process in `Via` headers: seeing it on an incoming
/// request means a loop. The header value is built once, not per request.
pub struct NodeToken {
    pub token: String,
    via: http::HeaderValue,
}

impl NodeToken {
    pub fn new() -> NodeToken {
        let token = format!("wharf-{:016x}", rand::random::<u64>());
        let via = http::HeaderValue::from_str(&format!("1.1 {token}"))
            .unwrap_or_else(|_| http::HeaderValue::from_static("1.1 wharf"));
        NodeToken { token, via }
    }
}

impl Default for NodeToken {
    fn default() -> Self {
        Self::new()
    }
}

impl WharfProxy {
    /// The CA's HTTP-01 request (plain HTTP, RFC 8555 §8.3) for a name with an order waiting,
    /// answered before routing: the name may have no route yet, or a route to an upstream
    /// that knows nothing of Wharf's orders.
    fn acme_answer(&self, session: &Session) -> Option<String> {
        let head = session.req_header();
        if !head
            .uri
            .path()
            .starts_with(crate::acme::challenges::PATH_PREFIX)
            || session.digest().is_some_and(|d| d.ssl_digest.is_some())
        {
            return None;
        }
        let host = head
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| head.uri.host())?;
        self.acme.answer(host, head.uri.path())
    }
}

/// What `request_filter` tells Pingora: `true` when the response was already written.
type Answered = Result<bool>;

#[async_trait]
impl ProxyHttp for WharfProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        let mut ctx = RequestCtx::new();
        ctx.in_flight = Some(self.in_flight.enter());
        ctx
    }

    // Wharf compresses no response. Pingora's default adds its compression module, disabled,
    // which still costs every request a module context and a call in each phase.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.pace.head_parsed(session, ctx);
        Ok(())
    }

    /// The body the route's plugins read whole (and maybe replaced) goes upstream instead.
    fn request_body_override(&self, ctx: &RequestCtx) -> Option<bytes::Bytes> {
        ctx.request_body.clone()
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.pace.body_read(session, ctx)?;
        request_stream::piece(ctx, body, end_of_stream).await
    }

    /// Lookup → limit → plugin chain. Unknown hosts, unmatched paths, rate limits, plugin
    /// replies and plugin failures are answered here.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Answered {
        ctx.request_id = request_id(session.req_header());
        if let Some(answer) = self.acme_answer(session) {
            respond::text(session, answer, &ctx.request_id).await?;
            return Ok(true);
        }
        let sni = session
            .digest()
            .and_then(|d| d.ssl_digest.clone())
            .and_then(|d| d.extension.get::<Sni>().map(|s| s.0.clone()));
        if let Err(e) = self.lookup(session.req_header(), sni.as_deref(), ctx) {
            return refuse(session, &e, ctx).await;
        }
        if let Err(e) = self.limit(ctx).await {
            return refuse(session, &e, ctx).await;
        }
        self.run_chain(session, ctx).await
    }

    /// The route's next target (`upstream.rs`).
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        upstream::peer(&self.egress, ctx)
    }

    /// The upstream failed mid-request: replayed elsewhere only when that is safe.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let method = &session.req_header().method;
        let replayable = matches!(
            *method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        ) && !session.as_ref().retry_buffer_truncated();
        upstream::failed_while_proxying(&self.metrics, peer, replayable, ctx, e, client_reused)
    }

    /// A failed connection goes to another target, within the route's retries and budget.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        upstream::failed_to_connect(&self.metrics, peer, ctx, e)
    }

    /// Forwarding headers: who asked, over what, and which request this is.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        request_stream::start(ctx, upstream, session.is_body_empty())?;
        let dropped = lookalikes::drop_lookalikes(upstream);
        if dropped > 0 {
            tracing::debug!(
                dropped,
                "header names that read as framing or forwarding headers dropped"
            );
        }
        if let Some(client) = client_ip(session) {
            let forwarded = match upstream
                .headers
                .get(X_FORWARDED_FOR.name())
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) => format!("{prev}, {client}"),
                None => client,
            };
            upstream.insert_known_header(&X_FORWARDED_FOR, forwarded)?;
        }
        upstream.insert_known_header(&X_FORWARDED_PROTO, "http")?;
        let upstream_host = ctx
            .route
            .as_ref()
            .is_some_and(|r| r.spec.host_header == wharf_tenancy::HostHeader::Upstream);
        if let (true, Some(host)) = (upstream_host, &ctx.peer_host) {
            upstream.insert_header("Host", host.as_str())?;
        }
        if let Some(body) = &ctx.request_body {
            // Sent whole, as the plugins left it: its own length, never chunked.
            upstream.remove_header(&http::header::TRANSFER_ENCODING);
            upstream.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        }
        upstream.append_header("Via", self.node.via.clone())?;
        upstream.insert_known_header(&X_REQUEST_ID, ctx.request_id.header())?;
        // With tracing on, the upstream's parent is Wharf's span; otherwise traceparent passes
        // through untouched.
        for (name, value) in tracing_setup::trace_headers(&ctx.span) {
            upstream.insert_header(name, value)?;
        }
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_elapsed = ctx.upstream_sent.map(|t| t.elapsed());
        upstream::answered(&self.metrics, ctx, upstream_response.status.as_u16());
        Ok(())
    }

    /// Plugins' `on-response`, last plugin first (`response_phase.rs`).
    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response_phase::run(session, response, ctx).await
    }

    /// The body streamed through proxy-wasm modules (`response_stream.rs`), or held back for
    /// plugins that rewrite it whole (`response_body.rs`); others stream untouched.
    async fn response_body_transform(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.streamed_response.is_some() {
            return response_stream::piece(session, ctx, &self.metrics, body, end_of_stream).await;
        }
        response_body::piece(ctx, body, end_of_stream).await
    }

    /// proxy-wasm plugins' `proxy_on_response_trailers` (`trailers.rs`).
    async fn response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<Option<bytes::Bytes>> {
        trailers::on_response_trailers(ctx, trailers).await;
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        if let Some(reply) = ctx.reply_instead.take() {
            // A module's local reply after the request went upstream: the upstream's answer
            // (if any) is dropped, the connection with it.
            session.set_keepalive(None);
            let status = reply.status;
            ctx.served_reply = true;
            if let Err(write_err) = respond::reply(session, reply, ctx).await {
                tracing::debug!("could not send a plugin's reply: {write_err}");
            }
            return FailToProxy {
                error_code: status,
                can_reuse_downstream: false,
            };
        }
        let failure = ctx
            .failure
            .take()
            .or_else(|| response_stream::held_too_long(ctx, &self.metrics))
            .or_else(|| GatewayError::from_pingora(e));
        let error_code = match failure {
            Some(f) => {
                // The connection is not reused after a failure: say so, or clients retry into a
                // closed socket.
                session.set_keepalive(None);
                if let Err(write_err) = respond::error(session, &f, &ctx.request_id).await {
                    tracing::debug!("could not send error response: {write_err}");
                }
                f.status()
            }
            None => 0,
        };
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    /// A module's local reply served from `fail_to_proxy` is an answer, not a failure.
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        ctx.served_reply
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        // A response that ended without trailers: the contexts waiting for them end here.
        trailers::finish(ctx).await;
        pace::Pace::request_done(session);
        let code = session.response_written().map_or(0, |r| r.status.as_u16());
        ctx.span.record("status", code);
        let m = &self.metrics;
        let tenant_label = match ctx.tenant {
            Some(_) => m.tenant(ctx.tenant_label()),
            None => UNKNOWN_TENANT.into(),
        };
        let tenant = &*tenant_label;
        m.requests_total
            .with_label_values(&[tenant, ctx.route_label(), code_label(code)])
            .inc();
        m.request_duration
            .with_label_values(&[tenant])
            .observe(ctx.started.elapsed().as_secs_f64());
        let total = ctx.started.elapsed();
        let upstream = ctx.upstream_elapsed.unwrap_or_default();
        if ctx.upstream_elapsed.is_some() {
            m.upstream_duration
                .with_label_values(&[tenant])
                .observe(upstream.as_secs_f64());
        }
        m.gateway_duration
            .with_label_values(&[tenant])
            .observe(total.saturating_sub(upstream).as_secs_f64());
        m.bytes_total
            .with_label_values(&[tenant, "in"])
            .inc_by(session.body_bytes_read() as u64);
        m.bytes_total
            .with_label_values(&[tenant, "out"])
            .inc_by(session.body_bytes_sent() as u64);
    }
}

/// Answers the request with Wharf's own error; Pingora goes straight to `logging`.
async fn refuse(session: &mut Session, e: &GatewayError, ctx: &RequestCtx) -> Answered {
    respond::error(session, e, &ctx.request_id).await?;
    Ok(true)
}
