//! What a component plugin is given, in the plugin world's types: the whole request for an
//! `http-plugin`, the head for a filter (the headers stay in the gateway until it asks), and a
//! header list.

use std::sync::Arc;

use pingora_http::RequestHeader;
use wharf_plugins::types::{Header, Request, RequestHead};

use super::chain::ChainCtx;

pub(super) fn wit_request(cx: &ChainCtx<'_>, req: &RequestHeader) -> Request {
    Request {
        method: req.method.as_str().to_string(),
        path: path_and_query(req).to_string(),
        headers: wit_headers(&req.headers),
        client_addr: cx.client_addr.clone(),
        tenant_id: cx.tenant.to_string(),
        route_id: cx.route.to_string(),
    }
}

/// The head a filter is called with: one per chain, shared by its filters until an edit
/// rewrites the path (a filter's edits apply before the next filter runs).
pub(super) fn filter_head(
    cx: &ChainCtx<'_>,
    req: &RequestHeader,
    cached: &mut Option<Arc<RequestHead>>,
) -> Arc<RequestHead> {
    let path = path_and_query(req);
    if let Some(head) = cached {
        if head.path == path && head.method == req.method.as_str() {
            return head.clone();
        }
    }
    let head = Arc::new(RequestHead {
        method: req.method.as_str().to_string(),
        path: path.to_string(),
        client_addr: cx.client_addr.clone(),
        tenant_id: cx.tenant.to_string(),
        route_id: cx.route.to_string(),
    });
    *cached = Some(head.clone());
    head
}

/// The request's path and query, as a plugin is given them.
fn path_and_query(req: &RequestHeader) -> &str {
    req.uri
        .path_and_query()
        .map_or(req.uri.path(), |p| p.as_str())
}

pub(super) fn wit_headers(headers: &http::HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .map(|(k, v)| Header {
            name: k.as_str().to_string(),
            value: v.as_bytes().to_vec(),
        })
        .collect()
}
