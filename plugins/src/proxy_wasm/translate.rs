//! Between the gateway's requests and proxy-wasm's header maps. A module sees a request as
//! Envoy gives it (`:method`, `:path`, `:authority`, `:scheme`, then the headers; `host` is
//! `:authority`) and a response with `:status`. What it leaves is turned into the same edits a
//! component returns (header ops, a path rewrite, a status, a reply), so one set of checks
//! (`output.rs`) and one way of applying them serve both plugin kinds.

use std::collections::HashMap;

use super::abi::Pairs;
use super::vm::HeadersOutcome;
use crate::bindings::types::{
    Header, HeaderOp, Reply, RequestAction, RequestEdits, ResponseAction,
};

/// The request as a proxy-wasm header map.
pub fn request_pairs(method: &str, path: &str, scheme: &str, headers: &http::HeaderMap) -> Pairs {
    let mut pairs = Vec::with_capacity(headers.len() + 4);
    let authority = headers
        .get(http::header::HOST)
        .map_or(&[][..], |v| v.as_bytes());
    pairs.push((b":authority".to_vec(), authority.to_vec()));
    pairs.push((b":path".to_vec(), path.as_bytes().to_vec()));
    pairs.push((b":method".to_vec(), method.as_bytes().to_vec()));
    pairs.push((b":scheme".to_vec(), scheme.as_bytes().to_vec()));
    push_headers(&mut pairs, headers, true);
    pairs
}

/// The response as a proxy-wasm header map.
pub fn response_pairs(status: u16, headers: &http::HeaderMap) -> Pairs {
    let mut pairs = Vec::with_capacity(headers.len() + 1);
    pairs.push((b":status".to_vec(), status.to_string().into_bytes()));
    push_headers(&mut pairs, headers, false);
    pairs
}

fn push_headers(pairs: &mut Pairs, headers: &http::HeaderMap, skip_host: bool) {
    for (name, value) in headers {
        if skip_host && name == http::header::HOST {
            continue;
        }
        pairs.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
    }
}

/// What a request headers callback did, as a component's request action.
pub fn request_action(before: &Pairs, outcome: &HeadersOutcome) -> RequestAction {
    if let Some(reply) = &outcome.local_response {
        return RequestAction::Respond(Reply {
            status: reply.status,
            headers: reply
                .headers
                .iter()
                // Framing is the gateway's to set for the body it sends (modules copy an auth
                // service's `content-length` into their reply, as Envoy lets them).
                .filter(|(k, _)| !k.starts_with(b":") && !managed(k))
                .map(|(k, v)| header(k, v))
                .collect(),
            body: reply.body.clone(),
        });
    }
    let after = &outcome.headers;
    let mut headers = diff(before, after);
    let authority = pseudo(after, ":authority");
    if authority.is_some() && authority != pseudo(before, ":authority") {
        headers.push(HeaderOp::Set(header(
            b"host",
            authority.unwrap_or_default(),
        )));
    }
    let path = pseudo(after, ":path")
        .filter(|p| Some(*p) != pseudo(before, ":path"))
        .map(|p| String::from_utf8_lossy(p).into_owned());
    RequestAction::Continue(RequestEdits { headers, path })
}

/// What a response headers callback did, as a component's response action.
pub fn response_action(before: &Pairs, outcome: &HeadersOutcome) -> ResponseAction {
    let after = &outcome.headers;
    let status = pseudo(after, ":status")
        .filter(|s| Some(*s) != pseudo(before, ":status"))
        // An unparsable status is refused by the output check as status 0.
        .map(|s| {
            std::str::from_utf8(s)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        });
    ResponseAction {
        status,
        headers: diff(before, after),
    }
}

/// The method a request headers callback set through `:method` (Envoy lets a module change the
/// upstream request's method), `Ok(None)` when unchanged or removed. Refused: anything but a
/// method token (RFC 9110) of at most 32 bytes, `CONNECT` (a tunnel is not an edit of a
/// request), and a change to or from `HEAD`, whose response has no body while the client's
/// request would expect one (or the reverse): the client's framing would break.
pub fn method_change(before: &Pairs, after: &Pairs) -> Result<Option<http::Method>, String> {
    let Some(now) = pseudo(after, ":method") else {
        return Ok(None);
    };
    let was = pseudo(before, ":method").unwrap_or_default();
    if now == was {
        return Ok(None);
    }
    let shown = String::from_utf8_lossy(now);
    let method = match http::Method::from_bytes(now) {
        Ok(m) if now.len() <= 32 && !now.is_empty() => m,
        _ => return Err(format!(":method {shown:?} is not a method token")),
    };
    if method == http::Method::CONNECT {
        return Err(":method CONNECT: a request cannot be turned into a tunnel".into());
    }
    if method == http::Method::HEAD || was == b"HEAD" {
        return Err(format!(
            ":method {shown:?}: a change to or from HEAD would break the client's framing"
        ));
    }
    Ok(Some(method))
}

/// What a trailers callback did: the edits that turn `before`'s trailers into `after`'s.
pub fn trailer_edits(before: &Pairs, after: &Pairs) -> Vec<HeaderOp> {
    diff(before, after)
}

/// The trailers as a proxy-wasm map (a response's, for `proxy_on_response_trailers`).
pub fn trailer_pairs(trailers: &http::HeaderMap) -> Pairs {
    let mut pairs = Vec::with_capacity(trailers.len());
    push_headers(&mut pairs, trailers, false);
    pairs
}

fn managed(name: &[u8]) -> bool {
    crate::output::MANAGED
        .iter()
        .any(|m| m.as_bytes().eq_ignore_ascii_case(name))
}

fn pseudo<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

fn header(name: &[u8], value: &[u8]) -> Header {
    Header {
        name: String::from_utf8_lossy(name).to_ascii_lowercase(),
        value: value.to_vec(),
    }
}

/// Whether the module removed `content-length`: Envoy's convention for "I will change this
/// body's length" (the gateway then sends the body without one).
pub fn releases_length(before: &Pairs, after: &Pairs) -> bool {
    let has = |pairs: &Pairs| {
        pairs
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(b"content-length"))
    };
    has(before) && !has(after)
}

/// The edits that turn `before`'s headers into `after`'s (pseudo-headers aside): per name whose
/// values changed, a set of the first and appends of the rest; a remove for names gone. Removing
/// `content-length` is not an edit ([`releases_length`] tells it).
fn diff(before: &Pairs, after: &Pairs) -> Vec<HeaderOp> {
    if before == after {
        return Vec::new();
    }
    if before.len() + after.len() <= SMALL {
        diff_small(before, after)
    } else {
        diff_grouped(before, after)
    }
}

/// [`diff`] for many pairs: grouped by name once (a module may hand back 1,024 pairs: no pass
/// per name).
fn diff_grouped(before: &Pairs, after: &Pairs) -> Vec<HeaderOp> {
    let (before_names, before) = group(before);
    let (after_names, after) = group(after);
    let mut ops = Vec::new();
    for name in &after_names {
        let now = &after[name];
        if before.get(name) != Some(now) {
            for (i, v) in now.iter().enumerate() {
                let h = header(name, v);
                ops.push(if i == 0 {
                    HeaderOp::Set(h)
                } else {
                    HeaderOp::Append(h)
                });
            }
        }
    }
    for name in before_names {
        if !after.contains_key(&name) && name != b"content-length" {
            ops.push(HeaderOp::Remove(
                String::from_utf8_lossy(&name).into_owned(),
            ));
        }
    }
    ops
}

/// Up to this many pairs in all, [`diff`] compares by scanning (no allocation but the edits);
/// past it, by grouping (a pass per name would be quadratic in a module's 1,024 pairs).
const SMALL: usize = 64;

/// [`diff`] for a request's usual few headers: the same edits, found by scans without
/// allocating (grouping allocated a few times per header on every callback).
fn diff_small(before: &Pairs, after: &Pairs) -> Vec<HeaderOp> {
    let mut ops = Vec::new();
    for (i, (name, _)) in after.iter().enumerate() {
        if !first_of_name(after, i) || values(before, name).eq(values(after, name)) {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        for (n, v) in values(after, name).enumerate() {
            let h = header(&lower, v);
            ops.push(if n == 0 {
                HeaderOp::Set(h)
            } else {
                HeaderOp::Append(h)
            });
        }
    }
    for (i, (name, _)) in before.iter().enumerate() {
        if first_of_name(before, i)
            && values(after, name).next().is_none()
            && !name.eq_ignore_ascii_case(b"content-length")
        {
            ops.push(HeaderOp::Remove(
                String::from_utf8_lossy(&name.to_ascii_lowercase()).into_owned(),
            ));
        }
    }
    ops
}

/// The values of `name` (any case) among the pairs that are not pseudo-headers, in order.
fn values<'a>(pairs: &'a Pairs, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    pairs
        .iter()
        .filter(move |(k, _)| !k.starts_with(b":") && k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Whether pair `i` is a header (not a pseudo-header) whose name (any case) no earlier pair has.
fn first_of_name(pairs: &Pairs, i: usize) -> bool {
    let name = &pairs[i].0;
    !name.starts_with(b":") && !pairs[..i].iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
}

/// Names in the order first seen, and each one's values.
type Grouped<'a> = (Vec<Vec<u8>>, HashMap<Vec<u8>, Vec<&'a [u8]>>);

/// Values by lowercase name (pseudo-headers aside), and the names in the order first seen.
fn group(pairs: &Pairs) -> Grouped<'_> {
    let mut names = Vec::new();
    let mut values: HashMap<Vec<u8>, Vec<&[u8]>> = HashMap::new();
    for (k, v) in pairs.iter().filter(|(k, _)| !k.starts_with(b":")) {
        let lower = k.to_ascii_lowercase();
        values
            .entry(lower)
            .or_insert_with_key(|name| {
                names.push(name.clone());
                Vec::new()
            })
            .push(v);
    }
    (names, values)
}

#[cfg(test)]
mod tests;
