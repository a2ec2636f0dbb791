//! What Wharf reads off a request: who sent it, which host it names, its id; and status codes as
//! metric labels.

use http::HeaderValue;
use pingora_http::RequestHeader;
use pingora_proxy::Session;

pub(super) fn client_ip(session: &Session) -> Option<String> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
}

/// Host header, or the URI authority for HTTP/2 (`:authority`).
pub(super) fn request_host(req: &RequestHeader) -> Option<String> {
    if let Some(h) = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
    {
        return Some(h.to_string());
    }
    req.uri.authority().map(|a| a.as_str().to_string())
}

/// A request's id as the header value it travels in: stamped on the upstream request and the
/// response by cloning (shared bytes), not by copying it into each header.
#[derive(Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only ever built from graphic ASCII (below), which `to_str` accepts.
        self.0.to_str().unwrap_or_default()
    }

    pub fn header(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId(HeaderValue::from_static(""))
    }
}

/// Keeps a client's X-Request-Id when it is sane, else makes one.
pub(super) fn request_id(req: &RequestHeader) -> RequestId {
    if let Some(v) = req.headers.get("x-request-id") {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return RequestId(v.clone());
        }
    }
    let made = format!("{:032x}", rand::random::<u128>());
    RequestId(HeaderValue::from_str(&made).unwrap_or_else(|_| HeaderValue::from_static("")))
}

/// Status codes as static label values: bounded cardinality, no allocation.
pub(super) fn code_label(code: u16) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_comes_from_the_host_header_else_the_authority() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(request_host(&req), None);
        req.set_uri("http://h2.test:8443/x".parse().unwrap());
        assert_eq!(request_host(&req).as_deref(), Some("h2.test:8443"));
        req.insert_header("host", "a.test").unwrap();
        assert_eq!(request_host(&req).as_deref(), Some("a.test"));
    }

    #[test]
    fn a_sane_request_id_is_kept_and_anything_else_replaced() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-request-id", "abc-123").unwrap();
        assert_eq!(request_id(&req).as_str(), "abc-123");
        for bad in ["has space", "", &"x".repeat(129)] {
            req.insert_header("x-request-id", bad).unwrap();
            let id = request_id(&req);
            assert_eq!(id.as_str().len(), 32, "{bad:?} → {}", id.as_str());
        }
    }

    #[test]
    fn status_labels_are_bounded() {
        assert_eq!(code_label(200), "200");
        assert_eq!(code_label(207), "2xx");
        assert_eq!(code_label(0), "none");
        assert_eq!(code_label(599), "5xx");
        assert_eq!(code_label(1000), "5xx");
    }
}
