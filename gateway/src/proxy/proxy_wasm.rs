//! A proxy-wasm plugin in a route's chain: its request's stream through the tenant's VM
//! (`wharf_plugins::proxy_wasm::pool`), the request as Envoy would give it (header map with
//! pseudo-headers, Envoy's and Higress's property names), and its answer as the same edits a
//! component returns.

use pingora_http::RequestHeader;
use wharf_plugins::proxy_wasm::pool::{Properties, ProxyStream};
use wharf_plugins::proxy_wasm::translate;
use wharf_plugins::types::RequestAction;
use wharf_plugins::{CompiledPlugin, Invocation, PluginError};

use super::chain::ChainCtx;
use crate::control::plugin_ref::Attached;

/// The request phase: a context in the VM and `proxy_on_request_headers`.
pub(super) async fn on_request(
    cx: &ChainCtx<'_>,
    att: &Attached,
    compiled: &std::sync::Arc<CompiledPlugin>,
    inv: Invocation<'_>,
    req: &RequestHeader,
) -> Result<(ProxyStream, RequestAction), PluginError> {
    let mut stream = cx.runtime.proxy_wasm(inv, compiled, att.proxy.clone());
    let path = req
        .uri
        .path_and_query()
        .map_or_else(|| req.uri.path(), |p| p.as_str());
    stream.properties = properties(cx, att, req, path);
    let pairs = translate::request_pairs(req.method.as_str(), path, cx.scheme, &req.headers);
    let action = stream.on_request(pairs, cx.body_empty).await?;
    Ok((stream, action))
}

/// The response phase: `proxy_on_response_headers`.
pub(super) async fn on_response(
    stream: &mut ProxyStream,
    resp: &pingora_http::ResponseHeader,
) -> Result<wharf_plugins::types::ResponseAction, PluginError> {
    let code = resp.status.as_u16();
    stream
        .properties
        .insert("response.code".into(), code.to_string().into_bytes());
    let pairs = translate::response_pairs(code, &resp.headers);
    stream.on_response(pairs).await
}

/// What `proxy_get_property` answers for this request, by Envoy's attribute names, Higress's
/// own, and Wharf's tenant and route.
fn properties(cx: &ChainCtx<'_>, att: &Attached, req: &RequestHeader, path: &str) -> Properties {
    let host = super::request_info::request_host(req).unwrap_or_default();
    let url_path = path.split('?').next().unwrap_or(path);
    let route = cx.route;
    let cluster = format!("outbound|80||{route}");
    let protocol = match req.version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let pairs: [(&str, &str); 18] = [
        ("request.path", path),
        ("request.url_path", url_path),
        ("request.method", req.method.as_str()),
        ("request.host", &host),
        ("request.scheme", cx.scheme),
        ("request.protocol", protocol),
        ("request.id", cx.request_id),
        ("x_request_id", cx.request_id),
        ("source.address", &cx.client_addr),
        ("plugin_name", &att.name),
        ("plugin_root_id", ""),
        ("plugin_vm_id", ""),
        ("route_name", route),
        ("xds.route_name", route),
        ("cluster_name", &cluster),
        ("xds.cluster_name", &cluster),
        ("wharf.tenant", cx.tenant),
        ("wharf.route", route),
    ];
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}
