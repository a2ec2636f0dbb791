//! A proxy-wasm plugin that paused in its headers callback to wait for the request body (Envoy's
//! `StopIteration` from `proxy_on_request_headers`, as Higress's `ai-proxy` does on a POST): the
//! chain reads the body whole, on the same path and quota as a component that reads bodies
//! (past `plugin_body_max_bytes` it is a 413: the module asked to see the body before the
//! request goes on, so streaming it by unseen would send a request the module never approved),
//! then hands it to the module's body callback while the request's headers are still its to
//! edit, and goes on with both.

use pingora_http::RequestHeader;
use wharf_plugins::types::RequestAction;
use wharf_plugins::PluginError;

use super::chain::{go_on, ChainCtx, Continued, Plugged, RequestOutcome};

/// A plugin waiting for the whole request body before its request goes on.
pub struct Paused {
    pub(super) plugin: Plugged,
    pub(super) fail_open: bool,
}

/// Resumes a paused plugin with the whole `body`: plugins before it that read bodies get it
/// first (in the chain's order, as Envoy's filters see the body), then its body callback, whose
/// header edits and body go on ([`RequestOutcome::Continue`]), or whose local reply answers.
pub(super) async fn resume(
    cx: &ChainCtx<'_>,
    paused: Box<Paused>,
    req: &mut RequestHeader,
    body: &mut Option<bytes::Bytes>,
    continued: &mut Vec<Continued>,
) -> RequestOutcome {
    let max = cx.quotas.body_max_bytes;
    if let Err(e) = deliver_body(continued, body, max).await {
        return RequestOutcome::Failed(e);
    }
    let Paused { plugin, fail_open } = *paused;
    let Plugged::ProxyWasm(mut stream) = plugin else {
        // Only a proxy-wasm plugin pauses.
        return RequestOutcome::Continue;
    };
    let whole = body.as_ref().map(|b| b.to_vec()).unwrap_or_default();
    match stream.on_held_body(whole, max).await {
        Ok((RequestAction::Continue(edits), replaced)) => {
            if let Some(b) = replaced {
                *body = Some(b.into());
            }
            let plugin = Plugged::ProxyWasm(stream);
            go_on(plugin, edits, fail_open, true, req, body, continued);
            RequestOutcome::Continue
        }
        Ok((RequestAction::Respond(reply), _)) => RequestOutcome::Respond(reply),
        Err(e) if fail_open => {
            tracing::warn!(tenant = %cx.tenant, plugin = %stream.plugin(), "plugin skipped (fail-open): {e}");
            RequestOutcome::Continue
        }
        Err(e) => RequestOutcome::Failed(e),
    }
}

/// The whole request body, read before the upstream call, to the continued proxy-wasm plugins
/// that read bodies and have not seen it (with a body read whole nothing is held for them
/// while it streams); a replacement takes the body's place.
pub(super) async fn deliver_body(
    continued: &mut [Continued],
    body: &mut Option<bytes::Bytes>,
    max: u64,
) -> Result<(), PluginError> {
    let Some(mut current) = body.clone() else {
        return Ok(());
    };
    for c in continued
        .iter_mut()
        .filter(|c| c.reads_request_body() && !c.body_seen)
    {
        c.body_seen = true;
        match c.on_request_body(current.to_vec(), max).await {
            Ok(Some(replaced)) => current = replaced.into(),
            Ok(None) => {}
            Err(e) if c.fail_open() => {
                tracing::warn!(plugin = %c.name(), "plugin on-request-body skipped (fail-open): {e}");
            }
            Err(e) => return Err(e),
        }
    }
    *body = Some(current);
    Ok(())
}
