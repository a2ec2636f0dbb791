//! What Wharf reads off a request: who sent it, which host it names, its id; and status codes as
//! metric labels.

use pingora_http::RequestHeader;
use pingora_proxy::Session;

pub fn client_ip(session: &Session) -> Option<String> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
}

/// Host header, or the URI authority for HTTP/2 (`:authority`).
pub fn request_host(req: &RequestHeader) -> Option<String> {
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
pub fn request_id(req: &RequestHeader) -> String {
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
pub fn code_label(code: u16) -> &'static str {
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
