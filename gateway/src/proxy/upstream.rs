//! Which target a request goes to, and what a failed connection does: the balancer's pick
//! among targets this request has not failed on and that are not ejected (`control/outliers.rs`),
//! the egress check on the address dialled, the peer's options; a failed connection retried
//! elsewhere within the route's retries and retry budget (nothing was sent yet, so any method).

use std::sync::Arc;
use std::time::Duration;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use wharf_metrics::Metrics;
use wharf_plugins::capabilities::networking::EgressPolicy;
use wharf_tenancy::UpstreamProtocol;

use super::ctx::RequestCtx;
use super::errors::GatewayError;
use crate::control::outliers::Fault;
use crate::control::targets::{Empty, TargetName};
use pingora_core::protocols::ALPN;

pub(super) fn peer(egress: &Arc<EgressPolicy>, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let Some(route) = ctx.route.clone() else {
        return Err(Error::explain(
            ErrorType::InternalError,
            "request reached upstream_peer unrouted",
        ));
    };
    if ctx.tried.is_empty() {
        route.retry_budget.on_request();
    }
    // A retry goes to a target this request has not failed to reach yet, and none goes to
    // an ejected target while another is there.
    let tried = &ctx.tried;
    let fresh = |b: &pingora_load_balancing::Backend, healthy: bool, ejections: bool| {
        healthy
            && b.addr
                .as_inet()
                .is_none_or(|a| !(tried.contains(a) || ejections && route.outliers.ejected(a)))
    };
    let picked = route
        .balancer
        .select_with(b"", 256, |b, h| fresh(b, h, true))
        .or_else(|| {
            route
                .balancer
                .select_with(b"", 256, |b, h| fresh(b, h, false))
        });
    let Some(backend) = picked else {
        ctx.failure = Some(match route.targets.empty() {
            // A retry found no other target: every one it tried failed to connect.
            _ if !ctx.tried.is_empty() => GatewayError::UpstreamUnavailable(format!(
                "no target of route {} could be reached",
                route.spec.id
            )),
            Some(Empty::Forbidden(why)) => GatewayError::UpstreamForbidden(why),
            Some(Empty::Unresolvable(name)) => GatewayError::UpstreamUnresolvable(name),
            None => GatewayError::UpstreamUnavailable(format!(
                "no healthy target for route {}",
                route.spec.id
            )),
        });
        return Err(Error::explain(
            ErrorType::ConnectNoRoute,
            "no healthy upstream target",
        ));
    };
    // The address actually dialled is checked, not only what the route said.
    if let Some(addr) = backend.addr.as_inet() {
        if let Err(why) = egress.check(*addr) {
            ctx.failure = Some(GatewayError::UpstreamForbidden(why));
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                "upstream refused by egress policy",
            ));
        }
    }
    ctx.peer = backend.addr.as_inet().copied();
    // Built only for routes that send it: this runs on every request.
    let wants_host = route.spec.host_header == wharf_tenancy::HostHeader::Upstream;
    ctx.peer_host = ctx.peer.filter(|_| wants_host).map(|addr| {
        let host = match backend.ext.get::<TargetName>() {
            Some(name) => name.0.to_string(),
            None if addr.is_ipv6() => format!("[{}]", addr.ip()),
            None => addr.ip().to_string(),
        };
        let default_port = if route.tls.is_some() { 443 } else { 80 };
        if addr.port() == default_port {
            host
        } else {
            format!("{host}:{}", addr.port())
        }
    });
    let mut peer = match &route.tls {
        None => HttpPeer::new(backend.addr.clone(), false, String::new()),
        Some(tls) => {
            let name = tls
                .server_name
                .clone()
                .or_else(|| backend.ext.get::<TargetName>().map(|n| n.0.to_string()));
            // Pingora does not verify a peer without a server name: never connect so.
            let Some(name) = name.filter(|n| !n.is_empty()) else {
                ctx.failure = Some(GatewayError::UpstreamTls(
                    "no server name to verify the upstream's certificate for".into(),
                ));
                return Err(Error::explain(ErrorType::InvalidCert, "no TLS server name"));
            };
            let mut peer = HttpPeer::new(backend.addr.clone(), true, name);
            peer.options.ca = tls.ca.clone();
            match &tls.client {
                None => {}
                Some(Ok(cert)) => peer.client_cert_key = Some(cert.clone()),
                Some(Err(name)) => {
                    ctx.failure = Some(GatewayError::UpstreamTls(format!(
                        "the route's client certificate {name:?} is not among the tenant's"
                    )));
                    return Err(Error::explain(
                        ErrorType::InvalidCert,
                        "no client certificate",
                    ));
                }
            }
            peer.group_key = tls.pool_key;
            peer.options.verify_cert = true;
            peer.options.verify_hostname = true;
            peer.options.alpn = if route.spec.upstream_protocol == UpstreamProtocol::Http2 {
                ALPN::H2
            } else {
                ALPN::H1
            };
            peer
        }
    };
    let t = route.spec.timeouts;
    peer.options.connection_timeout = Some(Duration::from_millis(t.connect_ms));
    peer.options.total_connection_timeout = Some(Duration::from_millis(t.connect_ms));
    peer.options.read_timeout = Some(Duration::from_millis(t.read_ms));
    peer.options.write_timeout = Some(Duration::from_millis(t.write_ms));
    if route.spec.upstream_protocol == UpstreamProtocol::Http2 {
        // Plain-text HTTP/2 by prior knowledge: what gRPC servers speak without TLS.
        peer.options.set_http_version(2, 2);
    }
    Ok(Box::new(peer))
}

pub(super) fn failed_to_connect(
    metrics: &Metrics,
    peer: &HttpPeer,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
) -> Box<Error> {
    let Some(route) = ctx.route.clone() else {
        return e;
    };
    // A certificate that is not trusted or not for the name is no passing fault: answered as
    // what it is, not retried elsewhere, and no reason to eject the target.
    if matches!(
        e.etype(),
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError
    ) {
        ctx.failure = Some(GatewayError::UpstreamTls(e.to_string()));
        return e;
    }
    if let Some(addr) = peer._address.as_inet() {
        ctx.tried.push(*addr);
        fault(metrics, ctx, *addr, Fault::ConnectFailure);
    }
    let retries_left = ctx.tried.len() <= route.spec.retries as usize;
    if !retries_left {
        return e;
    }
    let reason = if route.retry_budget.try_take() {
        e.set_retry(true);
        "connect_failed"
    } else {
        "budget_exhausted"
    };
    metrics
        .upstream_retries_total
        .with_label_values(&[
            &*metrics.tenant(ctx.tenant_label()),
            ctx.route_label(),
            reason,
        ])
        .inc();
    e
}

/// The route's target at `addr` answered (a 5xx counts against it; anything else clears it).
pub(super) fn answered(metrics: &Metrics, ctx: &RequestCtx, status: u16) {
    let Some(addr) = ctx.peer else { return };
    match (&ctx.route, status) {
        (Some(_), 500..=599) => fault(metrics, ctx, addr, Fault::ServerError),
        (Some(route), _) => route.outliers.succeeded(addr),
        (None, _) => {}
    }
}

/// Counts a fault of the target at `addr`; an ejection is logged and counted.
fn fault(metrics: &Metrics, ctx: &RequestCtx, addr: std::net::SocketAddr, fault: Fault) {
    let Some(route) = &ctx.route else { return };
    let targets = route
        .spec
        .upstreams
        .len()
        .max(route.balancer.backends().get_backend().len());
    let ejected = match fault {
        Fault::ConnectFailure => route.outliers.connect_failed(addr, targets),
        Fault::ServerError => route.outliers.server_error(addr, targets),
    };
    if ejected {
        tracing::info!(route = %route.spec.id, %addr, reason = fault.label(), "upstream target ejected");
        metrics
            .upstream_ejections_total
            .with_label_values(&[
                &*metrics.tenant(ctx.tenant_label()),
                ctx.route_label(),
                fault.label(),
            ])
            .inc();
    }
}

/// The upstream failed after the connection was made. A request without a body (GET, HEAD,
/// OPTIONS) whose answer had not begun, on a connection the upstream reset or closed, goes to
/// another target like a failed connection; anything else is not replayed (a body may have
/// reached the upstream). A reused connection the upstream had closed is retried as Pingora
/// does, on another connection, without spending the budget.
pub(super) fn failed_while_proxying(
    metrics: &Metrics,
    peer: &HttpPeer,
    replayable: bool,
    ctx: &mut RequestCtx,
    e: Box<Error>,
    reused: bool,
) -> Box<Error> {
    let mut e = e.more_context(format!("Peer: {peer}"));
    let answered = ctx.upstream_elapsed.is_some();
    // A client that went away is the client's doing: nothing to retry for it, and no fault of
    // the target (counting it would eject healthy targets whenever clients hang up).
    let from_upstream = e.esource() == &ErrorSource::Upstream;
    if !replayable || answered || !from_upstream {
        e.set_retry(false);
        return e;
    }
    e.retry.decide_reuse(reused);
    let reset = matches!(
        e.etype(),
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
    );
    if reused || !reset {
        return e;
    }
    e.set_retry(false);
    failed_to_connect(metrics, peer, ctx, e)
}
