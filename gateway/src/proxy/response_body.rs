//! The response body held back for plugins that rewrite it (`response-body-plugin`): only on
//! routes where such a plugin continued the request. The header goes out first without a length
//! (chunked on HTTP/1.1), the body's pieces are kept (up to the tenant's
//! `plugin_body_max_bytes`, under the node's memory for data in flight), and with the last piece
//! each plugin's `on-response-body` runs, last plugin first; what they leave is sent. A body over
//! the cap (or with no memory to hold it) passes unchanged and the plugins are not called.

use bytes::{Bytes, BytesMut};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use tokio::sync::OwnedSemaphorePermit;

use super::errors::GatewayError;
use super::RequestCtx;

/// The body being held back, and what it may grow to.
pub struct HeldBody {
    buf: BytesMut,
    max: u64,
    /// The length the header went out with, when only proxy-wasm plugins hold the body and
    /// they left `content-length` (the convention for a module that will not change the
    /// body's length; one that would removes it in its headers callback).
    kept_length: Option<u64>,
    _memory: OwnedSemaphorePermit,
}

/// Called with the response header once `on-response` ran: when a plugin is waiting for the
/// body, its length goes (the plugins may change it) and holding starts.
pub(super) fn start(ctx: &mut RequestCtx, resp: &mut ResponseHeader, http2: bool) {
    if ctx.awaiting_body.is_empty() {
        return;
    }
    let Some(tenant) = ctx.tenant.clone() else {
        return;
    };
    let max = tenant.plugin_quotas.body_max_bytes;
    let declared = super::proxy_wasm::content_length(&resp.headers);
    // A body declared past the cap passes unchanged; one of known length reserves what it
    // declares, else the cap.
    let memory = match declared.filter(|n| *n <= max) {
        None if declared.is_some() => Err(()),
        fits => tenant
            .capabilities
            .reserve_memory(fits.unwrap_or(max).max(1))
            .map_err(|_| ()),
    };
    let Ok(memory) = memory else {
        // Too large, or no memory to hold it: the body passes unchanged, the plugins are not
        // called.
        ctx.awaiting_body.clear();
        return;
    };
    let kept_length = declared.filter(|_| ctx.awaiting_body.iter().all(|c| c.keeps_length()));
    if kept_length.is_none() {
        resp.remove_header(&http::header::CONTENT_LENGTH);
        if !http2 {
            let _ = resp.insert_header(http::header::TRANSFER_ENCODING, "chunked");
        }
    }
    ctx.held_body = Some(HeldBody {
        buf: BytesMut::new(),
        max,
        kept_length,
        _memory: memory,
    });
}

/// One piece of the upstream's body: held back, or (with the last piece) the plugins' result.
pub(super) async fn piece(
    ctx: &mut RequestCtx,
    body: &mut Option<Bytes>,
    end_of_stream: bool,
) -> Result<()> {
    let Some(held) = ctx.held_body.as_mut() else {
        return Ok(());
    };
    if let Some(data) = body.take() {
        if (held.buf.len() + data.len()) as u64 > held.max {
            // Over the cap: what was held and this piece go out as they are, and the rest
            // streams; the plugins never see it.
            let mut out = std::mem::take(&mut held.buf);
            out.extend_from_slice(&data);
            *body = Some(out.freeze());
            ctx.held_body = None;
            ctx.awaiting_body.clear();
            return Ok(());
        }
        held.buf.extend_from_slice(&data);
    }
    if !end_of_stream {
        return Ok(());
    }
    let Some(held) = ctx.held_body.take() else {
        return Ok(());
    };
    let max = held.max;
    let original = held.buf.freeze();
    let mut current = original.clone();
    // `awaiting_body` is in reverse chain order already (as `on-response` ran).
    for mut c in std::mem::take(&mut ctx.awaiting_body) {
        match c.plugin.on_response_body(current.to_vec(), max).await {
            Ok(Some(replaced)) => current = replaced.into(),
            Ok(None) => {}
            Err(e) if c.fail_open => {
                tracing::warn!(plugin = %c.plugin.name(), "plugin on-response-body skipped (fail-open): {e}");
            }
            Err(e) => {
                // The header is gone already: the client gets a broken-off response, and the
                // failure is logged and counted like any plugin failure.
                ctx.failure = Some(GatewayError::Plugin(e));
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "plugin failed in on-response-body",
                ));
            }
        }
        c.plugin.finish().await;
    }
    if held.kept_length.is_some_and(|n| n != current.len() as u64) {
        // The header went out with the body's length: a module that changes it had to remove
        // `content-length` first. The client gets the body it was promised.
        tracing::warn!(
            "a proxy-wasm plugin changed a response body's length but left its content-length; \
             the original body is sent"
        );
        current = original;
    }
    *body = Some(current);
    Ok(())
}
