//! The request lifecycle, one method per phase, in the order Pingora calls them:
//! `request_filter` (host → tenant → route) → `upstream_peer` (pick a target) →
//! `upstream_request_filter` (forwarding headers) → `upstream_response_filter` →
//! `response_filter` → `logging` (metrics). Failures land in `fail_to_proxy`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use wharf_metrics::{Metrics, NO_ROUTE, UNKNOWN_TENANT};

use wharf_plugins::types::Reply;
use wharf_plugins::PluginRuntime;

use crate::chain::{self, ChainCtx, Continued, RequestOutcome};
use crate::egress::EgressPolicy;
use crate::errors::GatewayError;
use crate::live::{LiveConfig, Lookup, RoutingTable};
use crate::rate_limit::{FleetLimiter, TenantRate};
use tracing::Instrument;
use wharf_metrics::tracing_setup;
use wharf_tenancy::RateScope;

pub struct WharfProxy {
    pub config: Arc<LiveConfig>,
    pub metrics: Arc<Metrics>,
    pub runtime: Arc<PluginRuntime>,
    pub fleet_limiter: FleetLimiter,
    pub egress: Arc<EgressPolicy>,
    /// This node's `Via` token: seeing it on an incoming request means a loop.
    pub node: String,
}

/// A random token naming this gateway process in `Via` headers.
pub fn node_token() -> String {
    format!("wharf-{:016x}", rand::random::<u64>())
}

/// Per-request state carried across phases.
pub struct RequestCtx {
    started: Instant,
    /// The routing table this request was matched against, pinned for its whole life.
    table: Option<Arc<RoutingTable>>,
    tenant: Option<usize>,
    route: Option<usize>,
    request_id: String,
    upstream_sent: Option<Instant>,
    upstream_elapsed: Option<Duration>,
    /// Set when Wharf itself decides the outcome, so `fail_to_proxy` answers precisely.
    failure: Option<GatewayError>,
    /// Plugins that continued the request, waiting for `on-response`.
    continued: Vec<Continued>,
    /// The request's trace span (child of the client's `traceparent`, if any).
    span: tracing::Span,
}

impl RequestCtx {
    fn tenant_label(&self) -> &str {
        match (&self.table, self.tenant) {
            (Some(t), Some(i)) => &t.tenants[i].id,
            _ => UNKNOWN_TENANT,
        }
    }

    fn route_label(&self) -> &str {
        match (&self.table, self.tenant, self.route) {
            (Some(t), Some(i), Some(r)) => &t.tenants[i].routes[r].id,
            _ => NO_ROUTE,
        }
    }
}

impl WharfProxy {
    /// Whether this node already forwarded the request (its token is in `Via`).
    fn is_loop(&self, req: &RequestHeader) -> bool {
        req.headers
            .get_all("via")
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains(self.node.as_str())))
    }

    /// The tenant's rate limit: fleet-wide through Redis when so configured and reachable,
    /// else this node's limiter.
    async fn admit(&self, tenant: &str, rate: &TenantRate) -> std::result::Result<(), Duration> {
        if rate.scope() == RateScope::Fleet {
            match self.fleet_limiter.check(tenant, rate).await {
                Some(decision) => return decision,
                None => self
                    .metrics
                    .rate_limit_fallback_total
                    .with_label_values(&[&*self.metrics.tenant(tenant)])
                    .inc(),
            }
        }
        rate.check_local()
    }
}

#[async_trait]
impl ProxyHttp for WharfProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            table: None,
            tenant: None,
            route: None,
            request_id: String::new(),
            upstream_sent: None,
            upstream_elapsed: None,
            failure: None,
            continued: Vec::new(),
            span: tracing::Span::none(),
        }
    }

    /// Host → tenant → route, then the route's plugin chain. Unknown hosts, unmatched paths,
    /// plugin replies and plugin failures are answered here.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = request_id(session.req_header());
        if self.is_loop(session.req_header()) {
            respond_error(session, &GatewayError::LoopDetected, &ctx.request_id).await?;
            return Ok(true);
        }
        let table = self.config.load();
        let req = session.req_header();
        let host = request_host(req).unwrap_or_default();
        let outcome = match table.lookup(&host, req.method.as_str(), req.uri.path()) {
            Lookup::UnknownHost => Err(GatewayError::UnknownHost),
            Lookup::NoRoute { tenant } => {
                ctx.tenant = Some(tenant);
                Err(GatewayError::NoRoute)
            }
            Lookup::Route { tenant, route } => {
                ctx.tenant = Some(tenant);
                ctx.route = Some(route);
                Ok(())
            }
        };
        ctx.table = Some(table.clone());
        if let Err(e) = outcome {
            respond_error(session, &e, &ctx.request_id).await?;
            return Ok(true);
        }
        let (Some(t), Some(r)) = (ctx.tenant, ctx.route) else {
            return Ok(false);
        };
        let tenant = &table.tenants[t];
        ctx.span = tracing::debug_span!(
            target: "wharf::trace",
            "request",
            tenant = %tenant.id,
            route = %tenant.routes[r].id,
            method = %session.req_header().method,
            status = tracing::field::Empty,
        );
        tracing_setup::continue_trace(&ctx.span, &session.req_header().headers);
        if let Some(rate) = &tenant.rate {
            if let Err(wait) = self.admit(&tenant.id, rate).await {
                let e = GatewayError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64);
                respond_error(session, &e, &ctx.request_id).await?;
                return Ok(true);
            }
        }
        if tenant.chains[r].is_empty() {
            return Ok(false);
        }
        let cx = ChainCtx {
            runtime: &self.runtime,
            tenant: &tenant.id,
            route: &tenant.routes[r].id,
            limits: tenant.limits,
            client_addr: client_ip(session).unwrap_or_default(),
            backends: &tenant.backends,
        };
        let chain_span = tracing::debug_span!(target: "wharf::trace", parent: &ctx.span, "plugins", phase = "on_request");
        let run = chain::on_request(
            &cx,
            &tenant.chains[r],
            session.req_header_mut(),
            &mut ctx.continued,
        );
        match run.instrument(chain_span).await {
            RequestOutcome::Continue => Ok(false),
            RequestOutcome::Respond(reply) => {
                respond_reply(session, reply, ctx).await?;
                Ok(true)
            }
            RequestOutcome::Failed(e) => {
                respond_error(session, &GatewayError::Plugin(e), &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (Some(table), Some(t), Some(r)) = (&ctx.table, ctx.tenant, ctx.route) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "request reached upstream_peer unrouted",
            ));
        };
        let tenant = &table.tenants[t];
        let route = &tenant.routes[r];
        let Some(backend) = tenant.balancers[r].select(b"", 256) else {
            let forbidden = route
                .upstreams
                .iter()
                .find_map(|u| self.egress.check_target(&u.addr).err());
            ctx.failure = Some(match forbidden {
                Some(why) => GatewayError::UpstreamForbidden(why),
                None => GatewayError::UpstreamUnavailable(format!(
                    "no healthy target for route {}",
                    route.id
                )),
            });
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                "no healthy upstream target",
            ));
        };
        // The address actually dialled is checked, not only what the route said.
        if let Some(addr) = backend.addr.as_inet() {
            if let Err(why) = self.egress.check(*addr) {
                ctx.failure = Some(GatewayError::UpstreamForbidden(why));
                return Err(Error::explain(
                    ErrorType::ConnectNoRoute,
                    "upstream refused by egress policy",
                ));
            }
        }
        let mut peer = HttpPeer::new(backend.addr, false, String::new());
        let t = route.timeouts;
        peer.options.connection_timeout = Some(Duration::from_millis(t.connect_ms));
        peer.options.total_connection_timeout = Some(Duration::from_millis(t.connect_ms));
        peer.options.read_timeout = Some(Duration::from_millis(t.read_ms));
        peer.options.write_timeout = Some(Duration::from_millis(t.write_ms));
        Ok(Box::new(peer))
    }

    /// Forwarding headers: who asked, over what, and which request this is.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(client) = client_ip(session) {
            let forwarded = match upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) => format!("{prev}, {client}"),
                None => client,
            };
            upstream.insert_header("X-Forwarded-For", forwarded)?;
        }
        upstream.insert_header("X-Forwarded-Proto", "http")?;
        upstream.append_header("Via", format!("1.1 {}", self.node))?;
        upstream.insert_header("X-Request-Id", ctx.request_id.as_str())?;
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
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_elapsed = ctx.upstream_sent.map(|t| t.elapsed());
        Ok(())
    }

    /// Plugins' `on-response`, last plugin first; a fail-closed failure replaces the response.
    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let span = tracing::debug_span!(target: "wharf::trace", parent: &ctx.span, "plugins", phase = "on_response");
        if let Err(e) = chain::on_response(&mut ctx.continued, response)
            .instrument(span)
            .await
        {
            ctx.failure = Some(GatewayError::Plugin(e));
            return Err(Error::explain(
                ErrorType::InternalError,
                "plugin failed in on-response",
            ));
        }
        response.insert_header("X-Request-Id", ctx.request_id.as_str())?;
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let failure = ctx.failure.take().or_else(|| GatewayError::from_pingora(e));
        let error_code = match failure {
            Some(f) => {
                // The connection is not reused after a failure: say so, or clients retry into a
                // closed socket.
                session.set_keepalive(None);
                if let Err(write_err) = respond_error(session, &f, &ctx.request_id).await {
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

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
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

fn client_ip(session: &Session) -> Option<String> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
}

/// A plugin's own reply, after the `on-response` of the plugins before it.
async fn respond_reply(session: &mut Session, reply: Reply, ctx: &mut RequestCtx) -> Result<()> {
    let mut resp = chain::reply_header(&reply)?;
    if let Err(e) = chain::on_response(&mut ctx.continued, &mut resp).await {
        return respond_error(session, &GatewayError::Plugin(e), &ctx.request_id).await;
    }
    resp.insert_header("Content-Length", reply.body.len().to_string())?;
    resp.insert_header("X-Request-Id", ctx.request_id.as_str())?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from(reply.body)), true)
        .await?;
    Ok(())
}

/// Host header, or the URI authority for HTTP/2 (`:authority`).
fn request_host(req: &RequestHeader) -> Option<String> {
    if let Some(h) = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
    {
        return Some(h.to_string());
    }
    req.uri.authority().map(|a| a.as_str().to_string())
}

/// Keeps a client's X-Request-Id when it is sane, else makes one.
fn request_id(req: &RequestHeader) -> String {
    if let Some(v) = req
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        if !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()) {
            return v.to_string();
        }
    }
    format!("{:032x}", rand::random::<u128>())
}

/// Status codes as static label values: bounded cardinality, no allocation.
fn code_label(code: u16) -> &'static str {
    const CODES: &[(u16, &str)] = &[
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (413, "413"),
        (429, "429"),
        (499, "499"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    match CODES.iter().find(|(c, _)| *c == code) {
        Some((_, s)) => s,
        None => match code {
            0 => "none",
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
    }
}

async fn respond_error(session: &mut Session, e: &GatewayError, request_id: &str) -> Result<()> {
    let body = Bytes::from(e.to_json(request_id));
    let mut resp = ResponseHeader::build(e.status(), Some(4))?;
    resp.insert_header("Content-Type", "application/json")?;
    resp.insert_header("Content-Length", body.len().to_string())?;
    resp.insert_header("X-Request-Id", request_id)?;
    resp.insert_header("Cache-Control", "no-store")?;
    if let GatewayError::RateLimited(secs) = e {
        resp.insert_header("Retry-After", secs.to_string())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}
