//! A proxy-wasm plugin in a route's chain: its request's stream through the tenant's VM
//! (`wharf_plugins::proxy_wasm::pool`), the request as Envoy would give it (header map with
//! pseudo-headers, Envoy's and Higress's property names), and its answer as the same edits a
//! component returns. A request body is held (up to the tenant's `plugin_body_max_bytes`, under
//! the node's memory for data in flight) for plugins that read it and handed to them whole at its
//! end; the upstream gets what they leave, chunked. A body past the quota streams by unchanged.

use pingora_http::RequestHeader;
use wharf_plugins::proxy_wasm::pool::{Properties, ProxyStream, RequestStep};
use wharf_plugins::proxy_wasm::properties::{self, RequestFacts};
use wharf_plugins::proxy_wasm::translate;
use wharf_plugins::{CompiledPlugin, Invocation, PluginError};

use bytes::BytesMut;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use tokio::sync::OwnedSemaphorePermit;

use super::chain::ChainCtx;
use super::RequestCtx;
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
        host: &host,
        scheme: cx.scheme,
        protocol,
        request_id: cx.request_id,
        client_addr: &cx.client_addr,
        plugin: &att.name,
        tenant: cx.tenant,
        route: cx.route,
    })
}

/// A request body held back for proxy-wasm plugins that read it.
pub struct HeldRequest {
    buf: BytesMut,
    max: u64,
    /// The length the upstream was told (`content-length` left as the client sent it): a module
    /// that changes the body's length removes it in its headers callback, as Envoy's do.
    kept_length: Option<u64>,
    _memory: OwnedSemaphorePermit,
}

/// Called with the upstream request's head: when a plugin reads the body, its length goes (the
/// plugins may change it) and holding starts.
pub(super) fn hold_request(ctx: &mut RequestCtx, upstream: &mut RequestHeader, body_empty: bool) {
    // A body read whole before the chain (a component reads it) goes as that; empty bodies
    // have nothing to hold.
    if body_empty
        || ctx.request_body.is_some()
        || !ctx.continued.iter().any(|c| c.reads_request_body())
    {
        return;
    }
    let Some(tenant) = ctx.tenant.clone() else {
        return;
    };
    let max = tenant.plugin_quotas.body_max_bytes;
    let declared = content_length(&upstream.headers);
    if declared.is_some_and(|n| n > max) {
        // Past the quota before a byte is read: it streams by, the plugins are not called.
        return;
    }
    // A body of known length reserves what it declares, else the cap.
    let Ok(memory) = tenant
        .capabilities
        .reserve_memory(declared.unwrap_or(max).max(1))
    else {
        // No memory to hold it: the body streams by, the plugins are not called.
        return;
    };
    let kept_length =
        declared.filter(|_| !ctx.continued.iter().any(|c| c.releases_request_length()));
    if kept_length.is_none() {
        upstream.remove_header(&CONTENT_LENGTH);
    }
    if kept_length.is_none() && upstream.version != http::Version::HTTP_2 {
        let _ = upstream.insert_header(TRANSFER_ENCODING, "chunked");
    }
    ctx.held_request = Some(HeldRequest {
        buf: BytesMut::new(),
        max,
        kept_length,
        _memory: memory,
    });
}

/// One piece of the client's body: held back (an empty piece goes on), or with the last piece
/// the plugins' result.
pub(super) async fn request_piece(
    ctx: &mut RequestCtx,
    body: &mut Option<bytes::Bytes>,
    end_of_stream: bool,
) -> pingora_core::Result<()> {
    let Some(held) = ctx.held_request.as_mut() else {
        return Ok(());
    };
    if let Some(data) = body.take() {
        if (held.buf.len() + data.len()) as u64 > held.max {
            // Past the quota: what was held and this piece go on as they are, the rest
            // streams; the plugins never see it.
            let mut out = std::mem::take(&mut held.buf);
            out.extend_from_slice(&data);
            *body = Some(out.freeze());
            ctx.held_request = None;
            return Ok(());
        }
        held.buf.extend_from_slice(&data);
    }
    if !end_of_stream {
        // Pingora writes nothing for an empty piece (None would end the upstream's body).
        *body = Some(bytes::Bytes::new());
        return Ok(());
    }
    let Some(held) = ctx.held_request.take() else {
        return Ok(());
    };
    let max = held.max;
    let original = held.buf.freeze();
    let mut current = original.clone();
    for c in ctx.continued.iter_mut().filter(|c| c.reads_request_body()) {
        match c.on_request_body(current.to_vec(), max).await {
            Ok(Some(replaced)) => current = replaced.into(),
            Ok(None) => {}
            Err(e) if c.fail_open() => {
                tracing::warn!(plugin = %c.name(), "plugin on-request-body skipped (fail-open): {e}");
            }
            Err(e) => {
                ctx.failure = Some(super::errors::GatewayError::Plugin(e));
                return Err(pingora_core::Error::explain(
                    pingora_core::ErrorType::InternalError,
                    "plugin failed in on-request-body",
                ));
            }
        }
    }
    if held.kept_length.is_some_and(|n| n != current.len() as u64) {
        // The upstream was told the client's length: the module had to remove
        // `content-length` to change it. The upstream gets the body it was promised.
        tracing::warn!(
            "a proxy-wasm plugin changed a request body's length but left its content-length; \
             the original body is sent"
        );
        current = original;
    }
    *body = Some(current);
    Ok(())
}

pub(super) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}
