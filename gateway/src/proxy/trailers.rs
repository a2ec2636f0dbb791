//! A response's trailers through the proxy-wasm plugins that export
//! `proxy_on_response_trailers` (a gRPC response's `grpc-status`, `grpc-message`): last plugin
//! first, as responses run, each reading and editing the trailer map; what they leave is sent.
//! Pingora hands trailers over only from an HTTP/2 upstream (HTTP/1.1 trailers are dropped by
//! it), and writes them only to an HTTP/2 client. A plugin failing here cannot replace a
//! response whose head and body are gone: fail-open, the trailers go on as they were;
//! fail-closed, none of the upstream's trailers are sent, so a plugin that filters trailers
//! never lets them pass unseen; a gRPC response then ends with `grpc-status: 13` (INTERNAL):
//! without a status a gRPC client would take the call for a success.
//! Contexts waiting for trailers that never come end with the request (`finish`).

use http::{HeaderMap, HeaderName, HeaderValue};
use pingora_http::ResponseHeader;
use wharf_plugins::proxy_wasm::pool::ProxyStream;
use wharf_plugins::proxy_wasm::translate;
use wharf_plugins::types::HeaderOp;

use super::chain::Plugged;
use super::RequestCtx;

/// A proxy-wasm plugin waiting for the response's trailers.
pub struct AwaitingTrailers {
    stream: ProxyStream,
    fail_open: bool,
    /// The response is gRPC's: its trailers carry its status.
    grpc: bool,
}

impl AwaitingTrailers {
    /// The plugin, kept for the trailers of `response` when it reads them; else its request
    /// is over for it, and it is finished here.
    pub(super) async fn keep_or_finish(
        plugin: Plugged,
        fail_open: bool,
        response: &ResponseHeader,
    ) -> Option<AwaitingTrailers> {
        match plugin {
            Plugged::ProxyWasm(stream) if stream.reads_response_trailers() => {
                let grpc = response
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                Some(AwaitingTrailers {
                    stream,
                    fail_open,
                    grpc,
                })
            }
            other => {
                other.finish().await;
                None
            }
        }
    }
}

/// `proxy_on_response_trailers` of each waiting plugin, in turn, on `trailers`.
pub(super) async fn on_response_trailers(ctx: &mut RequestCtx, trailers: &mut HeaderMap) {
    for mut waiting in std::mem::take(&mut ctx.awaiting_trailers) {
        let pairs = translate::trailer_pairs(trailers);
        match waiting.stream.on_response_trailers(pairs).await {
            Ok(edits) => apply(trailers, &edits),
            Err(e) if waiting.fail_open => {
                tracing::warn!(plugin = %waiting.stream.plugin(), "plugin on-response-trailers skipped (fail-open): {e}");
            }
            Err(e) => {
                tracing::warn!(plugin = %waiting.stream.plugin(), "plugin failed in on-response-trailers; trailers dropped: {e}");
                trailers.clear();
                if waiting.grpc {
                    trailers.insert("grpc-status", HeaderValue::from_static("13"));
                    let message = "a plugin failed on the response's trailers";
                    trailers.insert("grpc-message", HeaderValue::from_static(message));
                }
            }
        }
        waiting.stream.finish().await;
    }
}

/// Ends the contexts still waiting (the response had no trailers).
pub(super) async fn finish(ctx: &mut RequestCtx) {
    for waiting in std::mem::take(&mut ctx.awaiting_trailers) {
        waiting.stream.finish().await;
    }
}

/// The edits on the trailer map (checked already: valid names and values).
fn apply(trailers: &mut HeaderMap, edits: &[HeaderOp]) {
    for op in edits {
        match op {
            HeaderOp::Set(h) | HeaderOp::Append(h) => {
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(h.name.as_bytes()),
                    HeaderValue::from_bytes(&h.value),
                ) else {
                    continue;
                };
                if matches!(op, HeaderOp::Set(_)) {
                    trailers.insert(name, value);
                } else {
                    trailers.append(name, value);
                }
            }
            HeaderOp::Remove(name) => {
                trailers.remove(name.as_str());
            }
        }
    }
}
