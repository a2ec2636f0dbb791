//! A module's `proxy_http_call`, sent through the tenant's outbound HTTP capability: the
//! attachment's `allowed_outbound_hosts`, the egress policy on every resolved address and the
//! tenant's HTTP quotas apply exactly as for a component's `wharf:plugin/http` call. Envoy's
//! cluster name becomes the destination: `outbound|port||host` (Istio and Higress), a URL, or
//! `host[:port]`; a bare name (no dot, no port) means the call's `:authority`. Higress's Redis
//! calls go through the tenant's Redis capability the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_metrics::Metrics;
use wharf_tenancy::outbound::OutboundHost;

use crate::bindings::wharf::plugin::http::OutgoingRequest;
use crate::bindings::wharf::plugin::types::Header;
use crate::capabilities::http::{Http, HOST_OWNED};
use crate::capabilities::redis::Redis;
use crate::capabilities::{HostError, TenantCapabilities};
use crate::proxy_wasm::abi::Pairs;
use crate::proxy_wasm::context::{Call, HttpCall, RedisCall};
use crate::proxy_wasm::resp;
use crate::proxy_wasm::vm::{Answer, CallAnswer};

/// Who sends, and what the request's deadline has left.
pub(super) struct Sender<'a> {
    pub(super) caps: Option<&'a Arc<TenantCapabilities>>,
    pub(super) allowed: &'a [OutboundHost],
    pub(super) tenant: &'a str,
    pub(super) plugin: &'a str,
    pub(super) metrics: &'a Metrics,
    pub(super) left: Duration,
}

impl Sender<'_> {
    /// Sends `calls` at once; their answers, by token.
    pub(super) async fn send_all(&self, calls: Vec<Call>) -> Vec<CallAnswer> {
        futures_util::future::join_all(calls.into_iter().map(|call| self.answer(call))).await
    }

    /// Sends one call; its answer, with its token.
    pub(super) async fn answer(&self, call: Call) -> CallAnswer {
        let token = call.token();
        let answer = match call {
            Call::Http(c) => Answer::Http(self.send(c).await),
            Call::Redis(c) => Answer::Redis(self.redis(c).await),
        };
        CallAnswer { token, answer }
    }

    /// The answer as the module reads it (`:status` first), or `None` when the call failed.
    pub(super) async fn send(&self, call: HttpCall) -> Option<(Pairs, Vec<u8>)> {
        let started = Instant::now();
        let result = self.exchange(call).await;
        self.record("proxy_http_call", started, &result);
        let response = result.ok()?;
        let mut pairs = Vec::with_capacity(response.headers.len() + 1);
        pairs.push((
            b":status".to_vec(),
            response.status.to_string().into_bytes(),
        ));
        pairs.extend(
            response
                .headers
                .into_iter()
                .map(|h| (h.name.into_bytes(), h.value)),
        );
        Some((pairs, response.body))
    }

    /// A Redis command (RESP) through the tenant's Redis capability; its reply as RESP (a
    /// refused command is an error reply), or `None` when Redis was not reachable.
    pub(super) async fn redis(&self, call: RedisCall) -> Option<Vec<u8>> {
        let started = Instant::now();
        let result = match resp::decode_command(&call.query) {
            None => Err(HostError::Invalid(
                "not a RESP array of bulk strings".into(),
            )),
            Some((name, args)) => match self.caps {
                None => Err(HostError::BackendUnavailable),
                Some(caps) => match caps.get::<Redis>().await {
                    Ok(redis) => redis.command(&name, args).await,
                    Err(e) => Err(e),
                },
            },
        };
        self.record("proxy_redis_call", started, &result);
        match result {
            Ok(value) => Some(resp::encode(&value)),
            Err(HostError::BackendUnavailable | HostError::Timeout) => None,
            Err(e) => Some(resp::error(&e.to_string())),
        }
    }

    fn record<V>(&self, function: &str, started: Instant, result: &Result<V, HostError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        if let Err(e) = result {
            tracing::debug!(tenant = %self.tenant, plugin = %self.plugin, "{function} failed: {e}");
        }
        let who = (self.tenant, self.plugin);
        crate::state::record_host_call(self.metrics, who, function, started, outcome);
    }

    async fn exchange(
        &self,
        call: HttpCall,
    ) -> Result<crate::bindings::wharf::plugin::http::IncomingResponse, HostError> {
        if self.allowed.is_empty() {
            return Err(HostError::Denied(
                "this plugin's attachment allows no outbound hosts (allowed_outbound_hosts)".into(),
            ));
        }
        let caps = self.caps.ok_or(HostError::BackendUnavailable)?;
        let http = caps.get::<Http>().await?;
        let request = outgoing(call)?;
        http.send(request, self.allowed, self.left).await
    }
}

/// The call as an outgoing request of the HTTP capability.
fn outgoing(call: HttpCall) -> Result<OutgoingRequest, HostError> {
    let pseudo = |name: &str| {
        call.headers
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let method = pseudo(":method").unwrap_or_else(|| "GET".into());
    let path = pseudo(":path").unwrap_or_else(|| "/".into());
    let authority = pseudo(":authority");
    let base = base_url(
        &call.cluster,
        authority.as_deref(),
        pseudo(":scheme").as_deref(),
    )
    .ok_or_else(|| {
        HostError::Invalid(format!(
            "cluster {:?} names no destination (outbound|port||host, a URL, host:port, or a \
                 name with an :authority header)",
            call.cluster
        ))
    })?;
    let headers = call
        .headers
        .into_iter()
        .filter(|(k, _)| !k.starts_with(b":"))
        .map(|(k, v)| Header {
            name: String::from_utf8_lossy(&k).to_ascii_lowercase(),
            value: v,
        })
        .filter(|h| !HOST_OWNED.contains(&h.name.as_str()))
        .collect();
    Ok(OutgoingRequest {
        method,
        url: format!("{base}{path}"),
        headers,
        body: call.body,
        timeout_ms: (call.timeout_ms > 0).then_some(call.timeout_ms),
    })
}

/// `scheme://host[:port]` for a cluster name.
fn base_url(cluster: &str, authority: Option<&str>, scheme: Option<&str>) -> Option<String> {
    if cluster.starts_with("http://") || cluster.starts_with("https://") {
        return Some(cluster.trim_end_matches('/').to_string());
    }
    let parts: Vec<&str> = cluster.split('|').collect();
    let (host, port) = match parts[..] {
        [_, port, _, host] => (host.to_string(), port.parse::<u16>().ok()),
        [name] if name.contains('.') || name.contains(':') || name == "localhost" => {
            (name.to_string(), None)
        }
        [_] => (authority?.to_string(), None),
        _ => return None,
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    let scheme = scheme.unwrap_or(if port == Some(443) { "https" } else { "http" });
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_become_destinations() {
        assert_eq!(
            base_url("outbound|8090||auth.svc.local", None, None).as_deref(),
            Some("http://auth.svc.local:8090")
        );
        assert_eq!(
            base_url("outbound|443||api.example.com", None, None).as_deref(),
            Some("https://api.example.com:443")
        );
        assert_eq!(
            base_url("https://auth.example.com/", None, None).as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(
            base_url("127.0.0.1:9000", None, None).as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            base_url("auth", Some("auth.local:81"), None).as_deref(),
            Some("http://auth.local:81")
        );
        assert_eq!(base_url("auth", None, None), None);
        assert_eq!(base_url("evil.com/@x", None, None), None);
    }
}
