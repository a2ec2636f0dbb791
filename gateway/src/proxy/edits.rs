//! A plugin's answer applied to the request or response: header edits (set, append, remove),
//! a path rewrite, a response status, and the head of a plugin's own reply. The runtime checked
//! every name and value already; what still does not parse is skipped, never trusted.

use http::HeaderValue;
use pingora_http::{RequestHeader, ResponseHeader};
use wharf_plugins::types::{Header, HeaderOp, ResponseAction};

/// The response header of a plugin's own reply (validated by the runtime already), its
/// headers moved in as edits are.
pub(super) fn reply_header(
    status: u16,
    headers: Vec<Header>,
) -> pingora_core::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for h in headers {
        if let Some((name, value)) = header_pair(h) {
            resp.append(name, value);
        }
    }
    Ok(resp)
}

// Names and values were checked by the runtime (`wharf_plugins::output`): the parse below cannot
// fail for checked output, and an unparsable op is skipped rather than trusted. The name and
// value move into the header as the plugin returned them (its bytes, not copies; the name keeps
// its case on the wire, as a client's does).
fn header_pair(h: Header) -> Option<(String, HeaderValue)> {
    Some((h.name, HeaderValue::try_from(h.value).ok()?))
}

/// Request and response headers take the same edits; Pingora gives them no common trait.
pub(super) trait EditHeaders {
    fn set(&mut self, name: String, value: HeaderValue);
    fn append(&mut self, name: String, value: HeaderValue);
    fn remove(&mut self, name: &str);
}

macro_rules! edit_headers_for {
    ($t:ty) => {
        impl EditHeaders for $t {
            // Edits were validated with the plugin's output; a refusal here is logged (debug:
            // a plugin could otherwise make the log its own) and the edit is skipped.
            fn set(&mut self, name: String, value: HeaderValue) {
                if let Err(e) = self.insert_header(name, value) {
                    tracing::debug!("plugin header edit skipped: {e}");
                }
            }
            fn append(&mut self, name: String, value: HeaderValue) {
                if let Err(e) = self.append_header(name, value) {
                    tracing::debug!("plugin header edit skipped: {e}");
                }
            }
            fn remove(&mut self, name: &str) {
                self.remove_header(name);
            }
        }
    };
}
edit_headers_for!(RequestHeader);
edit_headers_for!(ResponseHeader);

pub(super) fn apply_op(target: &mut impl EditHeaders, op: HeaderOp) {
    match op {
        HeaderOp::Set(h) => {
            if let Some((n, v)) = header_pair(h) {
                target.set(n, v);
            }
        }
        HeaderOp::Append(h) => {
            if let Some((n, v)) = header_pair(h) {
                target.append(n, v);
            }
        }
        HeaderOp::Remove(name) => target.remove(&name),
    }
}

pub(super) fn apply_response_action(resp: &mut ResponseHeader, action: ResponseAction) {
    if let Some(status) = action.status {
        if let Err(e) = resp.set_status(status) {
            tracing::debug!("plugin status {status} skipped: {e}");
        }
    }
    for op in action.headers {
        apply_op(resp, op);
    }
}

pub(super) fn rewrite_path(req: &mut RequestHeader, path: &str) {
    if let Ok(uri) = path.parse::<http::Uri>() {
        req.set_uri(uri);
    }
}

#[cfg(test)]
mod tests;
