//! What a client sees when Wharf, not the upstream, answers: JSON with a stable `error` code.

use pingora_core::{Error, ErrorSource, ErrorType};
use serde::Serialize;

/// The message says what happened and, where the client can do something, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("no tenant serves this Host; check the hostname or ask the operator to assign it")]
    UnknownHost,
    #[error("no route of this host matches the method and path")]
    NoRoute,
    /// The Host names a tenant other than the one the TLS connection's SNI name belongs to.
    #[error("this connection was opened for another host (TLS server name); open a new connection for this Host")]
    Misdirected,
    #[error("could not connect to the upstream: {0}")]
    UpstreamUnavailable(String),
    /// The TLS handshake with the upstream failed: its certificate is not trusted or not for
    /// the name, or it does not speak TLS.
    #[error("TLS to the upstream failed: {0}")]
    UpstreamTls(String),
    /// A name the route's targets need does not resolve (and none of its targets answer).
    #[error("the upstream name {0} does not resolve")]
    UpstreamUnresolvable(String),
    #[error("the upstream did not answer in time: {0}")]
    UpstreamTimeout(String),
    #[error("the upstream failed: {0}")]
    UpstreamError(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The client sent its request body too slowly (or stopped sending it).
    #[error("the request body did not arrive in time: {0}")]
    RequestTimeout(String),
    #[error("internal gateway error: {0}")]
    Internal(String),
    #[error(transparent)]
    Plugin(wharf_plugins::PluginError),
    /// Over the tenant's request rate; retry after this many seconds.
    #[error("this tenant's request rate is used up; retry in {0} s")]
    RateLimited(u64),
    /// The tenant already has this many requests in flight on this node.
    #[error("this tenant already has {0} requests in flight on this gateway node; retry shortly")]
    TooManyInFlight(u32),
    /// The route's upstream is an address the egress policy refuses.
    #[error("the route's upstream is not allowed: {0}")]
    UpstreamForbidden(wharf_plugins::capabilities::networking::EgressError),
    /// A route's plugin reads the body, and this one is larger than the tenant lets it read.
    #[error("the request body is larger than the {0} bytes this route's plugins may read (plugin_body_max_bytes)")]
    BodyTooLarge(u64),
    /// A proxy-wasm module buffered the response body past the tenant's quota (Envoy answers
    /// 500 too, while the response's head has not gone out).
    #[error("a plugin buffered more of the response body than the {0} bytes it may (plugin_body_max_bytes)")]
    ResponseTooLarge(u64),
    /// The node's memory for request bodies and host-call results in flight is in use.
    #[error("the gateway is busy; retry shortly")]
    Busy,
    /// The request already passed through this gateway node (a routing loop).
    #[error("the request has already passed through this gateway (routing loop)")]
    LoopDetected,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin: Option<&'a str>,
    request_id: &'a str,
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::UnknownHost | GatewayError::NoRoute => 404,
            GatewayError::Misdirected => 421,
            GatewayError::UpstreamUnavailable(_) | GatewayError::UpstreamError(_) => 502,
            GatewayError::UpstreamTimeout(_) => 504,
            GatewayError::BadRequest(_) => 400,
            GatewayError::RequestTimeout(_) => 408,
            GatewayError::Internal(_) | GatewayError::ResponseTooLarge(_) => 500,
            GatewayError::Plugin(e) => e.status(),
            GatewayError::RateLimited(_) | GatewayError::TooManyInFlight(_) => 429,
            GatewayError::UpstreamForbidden(_)
            | GatewayError::UpstreamUnresolvable(_)
            | GatewayError::UpstreamTls(_) => 502,
            GatewayError::LoopDetected => 508,
            GatewayError::BodyTooLarge(_) => 413,
            GatewayError::Busy => 503,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::UnknownHost => "unknown_host",
            GatewayError::NoRoute => "no_route",
            GatewayError::Misdirected => "misdirected_request",
            GatewayError::UpstreamUnavailable(_) => "upstream_unavailable",
            GatewayError::UpstreamTimeout(_) => "upstream_timeout",
            GatewayError::UpstreamError(_) => "upstream_error",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::RequestTimeout(_) => "request_timeout",
            GatewayError::Internal(_) => "internal_error",
            GatewayError::Plugin(e) => e.code(),
            GatewayError::RateLimited(_) => "rate_limited",
            GatewayError::TooManyInFlight(_) => "too_many_in_flight",
            GatewayError::UpstreamForbidden(_) => "upstream_forbidden",
            GatewayError::UpstreamUnresolvable(_) => "upstream_unresolvable",
            GatewayError::UpstreamTls(_) => "upstream_tls",
            GatewayError::LoopDetected => "loop_detected",
            GatewayError::BodyTooLarge(_) => "request_body_too_large",
            GatewayError::ResponseTooLarge(_) => "response_body_too_large",
            GatewayError::Busy => "gateway_busy",
        }
    }

    pub fn to_json(&self, request_id: &str) -> Vec<u8> {
        let plugin = match self {
            GatewayError::Plugin(e) => Some(e.plugin()),
            _ => None,
        };
        let body = Body {
            error: self.code(),
            message: self.to_string(),
            plugin,
            request_id,
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":\"internal_error\"}".to_vec())
    }

    /// Classifies a Pingora failure. `None`: the client is gone, there is no one to answer.
    pub fn from_pingora(e: &Error) -> Option<GatewayError> {
        use ErrorType::*;
        let detail = e.to_string();
        Some(match e.etype() {
            // A read of the client's request body timed out: the client's doing.
            ReadTimedout if e.esource() == &ErrorSource::Downstream => {
                GatewayError::RequestTimeout(detail)
            }
            ConnectTimedout | ReadTimedout | WriteTimedout => GatewayError::UpstreamTimeout(detail),
            ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure => {
                GatewayError::UpstreamUnavailable(detail)
            }
            TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => {
                GatewayError::UpstreamTls(detail)
            }
            HTTPStatus(code) if (400..500).contains(code) => GatewayError::BadRequest(detail),
            _ => match e.esource() {
                ErrorSource::Upstream => GatewayError::UpstreamError(detail),
                ErrorSource::Downstream => match e.etype() {
                    WriteError | ReadError | ConnectionClosed => return None,
                    _ => GatewayError::BadRequest(detail),
                },
                ErrorSource::Internal | ErrorSource::Unset => GatewayError::Internal(detail),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingora_errors_map_to_stable_codes() {
        let e = Error::new(ErrorType::ConnectRefused);
        assert_eq!(
            GatewayError::from_pingora(&e).unwrap().code(),
            "upstream_unavailable"
        );
        let e = Error::new(ErrorType::ReadTimedout);
        assert_eq!(GatewayError::from_pingora(&e).unwrap().status(), 504);
        let mut e = Error::new(ErrorType::ConnectionClosed);
        e.esource = ErrorSource::Downstream;
        assert_eq!(GatewayError::from_pingora(&e), None);
        let json: serde_json::Value =
            serde_json::from_slice(&GatewayError::NoRoute.to_json("r1")).unwrap();
        assert_eq!(json["error"], "no_route");
        assert_eq!(json["request_id"], "r1");
    }
}
