//! A proxy-wasm plugin in a route's chain: its request's stream through the tenant's VM
//! (`wharf_plugins::proxy_wasm::pool`), the request as Envoy would give it (header map with
//! pseudo-headers, Envoy's and Higress's property names), and its answer as the same edits a
//! component returns. A request body streams through the modules that read it piece by piece
//! (`request_stream.rs`).

use pingora_http::RequestHeader;
use wharf_plugins::proxy_wasm::pool::{Properties, ProxyStream, RequestStep, ResponseStep};
use wharf_plugins::proxy_wasm::properties::{self, RequestFacts};
use wharf_plugins::proxy_wasm::translate;
use wharf_plugins::{CompiledPlugin, Invocation, PluginError};

use http::header::CONTENT_LENGTH;

use super::chain::ChainCtx;
use crate::control::plugin_ref::Attached;

/// The request phase: a context in the VM and `proxy_on_request_headers`. A module that reads
/// the body may pause there to wait for it ([`RequestStep::AwaitsBody`], `paused.rs`).
pub(super) async fn on_request(
    cx: &ChainCtx<'_>,
    att: &Attached,
    compiled: &std::sync::Arc<CompiledPlugin>,
    inv: Invocation<'_>,
    req: &RequestHeader,
) -> Result<(ProxyStream, RequestStep), PluginError> {
    let mut stream = cx.runtime.proxy_wasm(inv, compiled, att.proxy.clone());
    let path = req
        .uri
        .path_and_query()
        .map_or_else(|| req.uri.path(), |p| p.as_str());
    stream.properties = properties(cx, att, req, path);
    let pairs = translate::request_pairs(req.method.as_str(), path, cx.scheme, &req.headers);
    let step = stream
        .on_request_headers(pairs, cx.body_empty, true)
        .await?;
    Ok((stream, step))
}

/// The response phase: `proxy_on_response_headers`; with `may_hold`, the module may hold the
/// head for its body callbacks.
pub(super) async fn on_response(
    stream: &mut ProxyStream,
    resp: &pingora_http::ResponseHeader,
    may_hold: bool,
) -> Result<ResponseStep, PluginError> {
    let code = resp.status.as_u16();
    stream
        .properties
        .insert("response.code".into(), code.to_string().into_bytes());
    let pairs = translate::response_pairs(code, &resp.headers);
    stream.on_response(pairs, may_hold).await
}

/// What `proxy_get_property` answers for this request.
fn properties(cx: &ChainCtx<'_>, att: &Attached, req: &RequestHeader, path: &str) -> Properties {
    let host = super::request_info::request_host(req).unwrap_or_default();
    let protocol = match req.version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    properties::of_request(&RequestFacts {
        path,
        method: req.method.as_str(),
        host,
        scheme: cx.scheme,
        protocol,
        request_id: cx.request_id,
        client_addr: &cx.client_addr,
        plugin: &att.name,
        tenant: cx.tenant,
        route: cx.route,
    })
}

pub(super) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}
