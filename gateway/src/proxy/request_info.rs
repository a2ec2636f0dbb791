//! What Wharf reads off a request: who sent it, which host it names, its id; and status codes as
//! metric labels.

use std::fmt::Write;

use http::HeaderValue;
use pingora_http::{KnownHeaderName, RequestHeader};
use pingora_proxy::Session;

pub(super) fn client_ip(session: &Session) -> Option<String> {
    let ip = session.client_addr()?.as_inet()?.ip();
    // Room for the longest address first (`to_string` grows the string twice for an IPv4 one).
    let mut s = String::with_capacity(45);
    write!(s, "{ip}").ok()?;
    Some(s)
}

/// Host header, or the URI authority for HTTP/2 (`:authority`).
pub(super) fn request_host(req: &RequestHeader) -> Option<&str> {
    if let Some(h) = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
    {
        return Some(h);
    }
    req.uri.authority().map(|a| a.as_str())
}

/// Headers Wharf adds to every request or response, under names made once: inserted without
/// parsing or copying the name (`pingora_http::KnownHeaderName`, vendor/README.md).
pub(super) static X_REQUEST_ID: KnownHeaderName =
    KnownHeaderName::from_static("x-request-id", "X-Request-Id");
pub(super) static X_FORWARDED_FOR: KnownHeaderName =
    KnownHeaderName::from_static("x-forwarded-for", "X-Forwarded-For");
pub(super) static X_FORWARDED_PROTO: KnownHeaderName =
    KnownHeaderName::from_static("x-forwarded-proto", "X-Forwarded-Proto");

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
    if let Some(v) = req.headers.get(X_REQUEST_ID.name()) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return RequestId(v.clone());
        }
    }
    // 32 hex digits, written on the stack: one allocation, the header value's own.
    let n = rand::random::<u128>();
    let mut made = [0u8; 32];
    for (i, digit) in made.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    RequestId(HeaderValue::from_bytes(&made).unwrap_or_else(|_| HeaderValue::from_static("")))
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
        assert_eq!(request_host(&req), Some("h2.test:8443"));
        req.insert_header("host", "a.test").unwrap();
        assert_eq!(request_host(&req), Some("a.test"));
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
            assert!(id
                .as_str()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            assert_ne!(
                id.as_str(),
                request_id(&req).as_str(),
                "each made id is new"
            );
        }
    }

    /// The vendored pingora-http's patch (vendor/README.md): a clone has room for headers to be
    /// added, and every header keeps its case and its order; a known name goes out in its case.
    #[test]
    fn a_cloned_head_takes_added_headers_in_order_and_case() {
        let mut req = RequestHeader::build("GET", b"/", Some(3)).unwrap();
        req.append_header("Accept", "a").unwrap();
        req.append_header("x-Custom", "1").unwrap();
        req.append_header("ACCEPT", "b").unwrap();
        let mut copy = req.clone();
        assert!(copy.headers.capacity() >= copy.headers.keys_len() + 8);
        for i in 0..20 {
            copy.append_header(format!("X-Added-{i}"), "v").unwrap();
        }
        copy.insert_known_header(&X_FORWARDED_PROTO, "http")
            .unwrap();
        copy.insert_known_header(&X_REQUEST_ID, "first").unwrap();
        copy.insert_known_header(&X_REQUEST_ID, "second").unwrap();
        let wire = |r: &RequestHeader| {
            let mut buf = Vec::new();
            r.header_to_h1_wire(&mut buf);
            String::from_utf8(buf).unwrap()
        };
        let added: String = (0..20).map(|i| format!("X-Added-{i}: v\r\n")).collect();
        assert_eq!(
            wire(&copy),
            format!("Accept: a\r\nACCEPT: b\r\nx-Custom: 1\r\n{added}X-Forwarded-Proto: http\r\nX-Request-Id: second\r\n")
        );
        assert_eq!(wire(&req), "Accept: a\r\nACCEPT: b\r\nx-Custom: 1\r\n");
        assert_eq!(copy.headers.get(X_REQUEST_ID.name()).unwrap(), "second");
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
