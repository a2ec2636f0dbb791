//! A request's first decisions, before any plugin runs: which tenant and route it is for (and
//! whether it may be: a loop, an unknown host, a TLS session of another tenant), then whether the
//! tenant admits it now (requests in flight, rate).

use std::sync::Arc;
use std::time::Duration;

use pingora_http::RequestHeader;
use wharf_metrics::tracing_setup;
use wharf_tenancy::RateScope;

use super::ctx::RequestCtx;
use super::errors::GatewayError;
use super::request_info::request_host;
use super::WharfProxy;
use crate::control::rate::TenantRate;
use crate::control::table::{CompiledRoute, CompiledTenant, Lookup, RoutingTable};

/// What a refused lookup knows: the tenant, when the host was one of its.
type Refused = (Option<Arc<CompiledTenant>>, GatewayError);

/// Host → tenant → route in `table`. Over TLS, the Host must belong to the tenant that owns the
/// handshake's SNI name: one TLS session never reaches another tenant (`421`).
pub(super) fn find_route(
    table: &RoutingTable,
    host: &str,
    method: &str,
    path: &str,
    sni: Option<&str>,
) -> Result<(Arc<CompiledTenant>, Arc<CompiledRoute>), Refused> {
    let found = table.lookup(host, method, path);
    if let (Some(sni), Lookup::Route(tenant, _) | Lookup::NoRoute(tenant)) = (sni, &found) {
        if table.host_owner(sni).is_none_or(|o| o.id != tenant.id) {
            return Err((None, GatewayError::Misdirected));
        }
    }
    match found {
        Lookup::UnknownHost => Err((None, GatewayError::UnknownHost)),
        Lookup::NoRoute(tenant) => Err((Some(tenant), GatewayError::NoRoute)),
        Lookup::Route(tenant, route) => Ok((tenant, route)),
    }
}

impl WharfProxy {
    /// Host → tenant → route, against the table in force when the request arrived.
    /// On TLS, the Host must belong to the tenant that owns the handshake's SNI name: one TLS
    /// session never reaches another tenant (`421`).
    pub(super) fn lookup(
        &self,
        req: &RequestHeader,
        sni: Option<&str>,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        if self.is_loop(req) {
            return Err(GatewayError::LoopDetected);
        }
        let host = request_host(req).unwrap_or_default();
        let table = self.config.load();
        let (tenant, route) =
            match find_route(&table, host, req.method.as_str(), req.uri.path(), sni) {
                Ok(found) => found,
                Err((tenant, e)) => {
                    ctx.tenant = tenant;
                    return Err(e);
                }
            };
        ctx.span = tracing::debug_span!(
            target: "wharf::trace",
            "request",
            tenant = %tenant.id,
            route = %route.spec.id,
            method = %req.method,
            status = tracing::field::Empty,
        );
        tracing_setup::continue_trace(&ctx.span, &req.headers);
        ctx.tenant = Some(tenant);
        ctx.route = Some(route);
        Ok(())
    }

    /// Whether this node already forwarded the request (its token is in `Via`).
    fn is_loop(&self, req: &RequestHeader) -> bool {
        req.headers.get_all("via").iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.contains(self.node.token.as_str()))
        })
    }

    /// The tenant's requests in flight on this node, then its rate limit.
    pub(super) async fn limit(&self, ctx: &mut RequestCtx) -> Result<(), GatewayError> {
        let Some(tenant) = ctx.tenant.clone() else {
            return Ok(());
        };
        match tenant.in_flight.try_enter(tenant.max_in_flight) {
            Some(slot) => ctx.tenant_slot = Some(slot),
            None => {
                self.metrics
                    .quota_rejections_total
                    .with_label_values(&[
                        &*self.metrics.tenant(&tenant.id),
                        wharf_tenancy::RequestQuotas::NAMES.max_in_flight.as_str(),
                    ])
                    .inc();
                return Err(GatewayError::TooManyInFlight(tenant.max_in_flight));
            }
        }
        let Some(rate) = &tenant.rate else {
            return Ok(());
        };
        self.admit(&tenant.id, rate)
            .await
            .map_err(|wait| GatewayError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64))
    }

    /// Fleet-wide through Redis when so configured and reachable, else this node's limiter.
    async fn admit(&self, tenant: &str, rate: &TenantRate) -> std::result::Result<(), Duration> {
        if rate.scope() == RateScope::Fleet {
            // Boxed: the Redis round trip's state (~7 KB) would otherwise be part of every
            // request's `request_filter` future, which Pingora boxes, fleet limit or not.
            match Box::pin(self.fleet_limiter.check(tenant, rate)).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::table::tests::{table, tenant};

    fn decide(
        t: &RoutingTable,
        host: &str,
        path: &str,
        sni: Option<&str>,
    ) -> Result<String, String> {
        find_route(t, host, "GET", path, sni)
            .map(|(t, r)| format!("{}/{}", t.id, r.spec.id))
            .map_err(|(t, e)| format!("{:?} {}", t.map(|t| t.id.to_string()), e.code()))
    }

    #[test]
    fn hosts_paths_and_tls_sessions_decide_the_route() {
        let t = table(vec![
            tenant("a", "a.test", "/api"),
            tenant("b", "*.b.test", "/"),
        ]);
        assert_eq!(decide(&t, "a.test", "/api/x", None), Ok("a/r".into()));
        assert_eq!(decide(&t, "A.TEST:8080", "/api", None), Ok("a/r".into()));
        assert_eq!(decide(&t, "x.b.test", "/", None), Ok("b/r".into()));
        // A host of the tenant with no matching path names the tenant (its metrics count it).
        assert_eq!(
            decide(&t, "a.test", "/apix", None),
            Err("Some(\"a\") no_route".into())
        );
        assert_eq!(
            decide(&t, "c.test", "/", None),
            Err("None unknown_host".into())
        );
        // Over TLS, the Host must be the SNI owner's: a's session cannot reach b.
        assert_eq!(
            decide(&t, "a.test", "/api", Some("a.test")),
            Ok("a/r".into())
        );
        assert_eq!(
            decide(&t, "x.b.test", "/", Some("a.test")),
            Err("None misdirected_request".into())
        );
        assert_eq!(
            decide(&t, "a.test", "/api", Some("nobody.test")),
            Err("None misdirected_request".into())
        );
    }
}
