//! Bounds and legality of what a plugin returns. A plugin's output reaches clients and upstreams,
//! so it is checked like any other untrusted input.

use crate::bindings::types::{Header, HeaderOp, Reply, RequestAction, ResponseAction};

pub const MAX_HEADER_OPS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MAX_BODY_BYTES: usize = 1 << 20;
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Framing and connection headers belong to the gateway: editing them could smuggle requests.
/// (The proxy also drops client headers that read as these with `_` for `-`.)
pub const MANAGED: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];

/// What is wrong with a plugin's output, in words for the tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOutput(pub String);

pub fn check_request_action(action: &RequestAction) -> Result<(), InvalidOutput> {
    request_action(action).map_err(InvalidOutput)
}

pub fn check_response_action(action: &ResponseAction) -> Result<(), InvalidOutput> {
    response_action(action).map_err(InvalidOutput)
}

fn request_action(action: &RequestAction) -> Result<(), String> {
    match action {
        RequestAction::Continue(edits) => {
            check_ops(&edits.headers)?;
            check_host_edits(&edits.headers)?;
            if let Some(path) = &edits.path {
                check_path(path)?;
            }
            Ok(())
        }
        RequestAction::Respond(reply) => check_reply(reply),
    }
}

fn response_action(action: &ResponseAction) -> Result<(), String> {
    // 1xx are interim responses: the client would wait for a final one that never comes (or
    // believe the protocol switched, with 101).
    if let Some(status) = action.status {
        check_status(status, 200)?;
    }
    check_ops(&action.headers)
}

fn check_reply(reply: &Reply) -> Result<(), String> {
    check_status(reply.status, 200)?;
    if reply.headers.len() > MAX_HEADER_OPS {
        return Err(format!(
            "{} reply headers, the limit is {MAX_HEADER_OPS}",
            reply.headers.len()
        ));
    }
    // Sizes before contents, as in `check_ops`.
    let bytes: usize = reply.headers.iter().map(header_bytes).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(format!(
            "{bytes} bytes of reply headers, the limit is {MAX_HEADER_BYTES}"
        ));
    }
    if reply.body.len() > MAX_BODY_BYTES {
        return Err(format!(
            "{} byte reply body, the limit is {MAX_BODY_BYTES}",
            reply.body.len()
        ));
    }
    reply.headers.iter().try_for_each(check_header)
}

fn check_status(status: u16, min: u16) -> Result<(), String> {
    if (min..=599).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status} is not between {min} and 599"))
    }
}

/// A request carries exactly one Host: a plugin may replace it (`set`), never add a second
/// (Pingora refuses to send that) or remove it (HTTP/1.1 requires it).
fn check_host_edits(ops: &[HeaderOp]) -> Result<(), String> {
    for op in ops {
        let (name, verb) = match op {
            HeaderOp::Append(h) => (h.name.as_str(), "append"),
            HeaderOp::Remove(name) => (name.as_str(), "remove"),
            HeaderOp::Set(_) => continue,
        };
        if name.eq_ignore_ascii_case("host") {
            return Err(format!(
                "a request has exactly one Host header: {verb} is refused, use set to replace it"
            ));
        }
    }
    Ok(())
}

fn check_ops(ops: &[HeaderOp]) -> Result<(), String> {
    if ops.len() > MAX_HEADER_OPS {
        return Err(format!(
            "{} header edits, the limit is {MAX_HEADER_OPS}",
            ops.len()
        ));
    }
    // Sizes before contents: output over the limit is refused before a byte of it is scanned
    // (a plugin can return megabytes of header value from memory it grew but never wrote).
    let bytes: usize = ops
        .iter()
        .map(|op| match op {
            HeaderOp::Set(h) | HeaderOp::Append(h) => header_bytes(h),
            HeaderOp::Remove(name) => name.len(),
        })
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(format!(
            "{bytes} bytes of header edits, the limit is {MAX_HEADER_BYTES}"
        ));
    }
    ops.iter().try_for_each(|op| match op {
        HeaderOp::Set(h) | HeaderOp::Append(h) => check_header(h),
        HeaderOp::Remove(name) => check_name(name),
    })
}

fn header_bytes(h: &Header) -> usize {
    h.name.len() + h.value.len()
}

fn check_header(h: &Header) -> Result<(), String> {
    check_name(&h.name)?;
    if !legal_value(&h.value) {
        return Err(format!(
            "header {:?} has a value that is not legal in HTTP",
            h.name
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    if !legal_name(name.as_bytes()) {
        let shown: String = name.chars().take(64).collect();
        return Err(format!("{shown:?} is not a legal header name"));
    }
    if MANAGED.iter().any(|m| m.eq_ignore_ascii_case(name)) {
        return Err(format!(
            "header {name:?} is managed by the gateway and cannot be edited"
        ));
    }
    Ok(())
}

// The two checks below are `http`'s own rules for `HeaderName::from_bytes` and
// `HeaderValue::from_bytes` (a test holds them to those), without the copies those parses
// allocate: an edit is parsed once more where it is applied, and a filter makes two or more.

/// A header name: 1 to 65,535 token characters (RFC 9110's `tchar`; upper case is folded).
fn legal_name(name: &[u8]) -> bool {
    (1..=u16::MAX as usize).contains(&name.len())
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value: visible bytes, spaces and tabs (no control characters, no DEL).
fn legal_value(value: &[u8]) -> bool {
    value.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t')
}

fn check_path(path: &str) -> Result<(), String> {
    if path.len() > MAX_PATH_BYTES {
        return Err(format!(
            "rewritten path is {} bytes, the limit is {MAX_PATH_BYTES}",
            path.len()
        ));
    }
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        let shown: String = path.chars().take(64).collect();
        return Err(format!(
            "rewritten path {shown:?} must start with '/' and be a legal URI path"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::RequestEdits;

    fn set(name: &str, value: &[u8]) -> HeaderOp {
        HeaderOp::Set(Header {
            name: name.into(),
            value: value.to_vec(),
        })
    }

    #[test]
    fn refuses_illegal_and_managed_headers() {
        let ok = RequestAction::Continue(RequestEdits {
            headers: vec![set("x-ok", b"1")],
            path: Some("/a?b=c".into()),
        });
        assert!(check_request_action(&ok).is_ok());
        for bad in [
            set("bad name", b"1"),
            set("x", b"a\r\nb"),
            set("Content-Length", b"0"),
        ] {
            let a = RequestAction::Continue(RequestEdits {
                headers: vec![bad],
                path: None,
            });
            assert!(check_request_action(&a).is_err());
        }
        let a = RequestAction::Continue(RequestEdits {
            headers: vec![],
            path: Some("no-slash".into()),
        });
        assert!(check_request_action(&a).is_err());
        let big = RequestAction::Continue(RequestEdits {
            headers: vec![set("x", &vec![b'a'; 20_000])],
            path: None,
        });
        assert!(check_request_action(&big).unwrap_err().0.contains("limit"));
        // Over the limit and illegal too: refused for its size, before its bytes are read.
        let big_and_bad = RequestAction::Continue(RequestEdits {
            headers: vec![set("x", &vec![b'\n'; 20_000])],
            path: None,
        });
        let refused = check_request_action(&big_and_bad).unwrap_err().0;
        assert!(refused.contains("limit"), "{refused}");
    }

    #[test]
    fn legality_is_the_http_crates() {
        for b in 0..=255u8 {
            for name in [vec![b], vec![b'x', b], vec![b; 70]] {
                assert_eq!(
                    legal_name(&name),
                    http::HeaderName::from_bytes(&name).is_ok(),
                    "name {name:?}"
                );
            }
            let value = [b'a', b, b'z'];
            assert_eq!(
                legal_value(&value),
                http::HeaderValue::from_bytes(&value).is_ok(),
                "value byte {b}"
            );
        }
        for len in [0, 1, 64, 65, 65_535, 65_536] {
            let name = vec![b'X'; len];
            assert_eq!(
                legal_name(&name),
                http::HeaderName::from_bytes(&name).is_ok(),
                "name of {len} bytes"
            );
        }
    }

    #[test]
    fn host_may_be_replaced_but_not_doubled_or_removed() {
        let edits = |op: HeaderOp| {
            RequestAction::Continue(RequestEdits {
                headers: vec![op],
                path: None,
            })
        };
        assert!(check_request_action(&edits(set("Host", b"other.test"))).is_ok());
        let append = HeaderOp::Append(Header {
            name: "host".into(),
            value: b"second.test".to_vec(),
        });
        assert!(check_request_action(&edits(append)).is_err());
        assert!(check_request_action(&edits(HeaderOp::Remove("HOST".into()))).is_err());
    }

    #[test]
    fn responses_may_not_become_interim() {
        for (status, ok) in [
            (100, false),
            (101, false),
            (199, false),
            (200, true),
            (599, true),
            (600, false),
        ] {
            let action = ResponseAction {
                status: Some(status),
                headers: vec![],
            };
            assert_eq!(
                check_response_action(&action).is_ok(),
                ok,
                "status {status}"
            );
        }
    }
}
