//! The response phase from `response_filter`: every continued plugin's `on-response`, last
//! first; a fail-closed failure or a module's local reply replaces the response (nothing of it
//! has gone to the client yet); then the body is set up for the plugins that wait for it,
//! streamed through proxy-wasm modules (`response_stream.rs`) or held whole for components
//! (`response_body.rs`).

use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use tracing::Instrument;
use wharf_plugins::proxy_wasm::pool::ResponseStep;
use wharf_plugins::types::{Reply, Response, ResponseAction};
use wharf_plugins::PluginError;

use super::chain::{AwaitingBody, Continued, Plugged};
use super::errors::GatewayError;
use super::plugin_input::wit_headers;
use super::trailers::AwaitingTrailers;
use super::{respond, response_body, response_stream, RequestCtx};

pub(super) async fn run(
    session: &mut Session,
    response: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let span = tracing::debug_span!(target: "wharf::trace", parent: &ctx.span, "plugins", phase = "on_response");
    // A module may hold the head for its body only where the body streams through it (no
    // component waits for it whole).
    let may_hold = response_stream::has_body(session, response)
        && !ctx
            .continued
            .iter()
            .any(|c| c.component_reads_response_body());
    let waiting = (&mut ctx.awaiting_body, &mut ctx.awaiting_trailers);
    let run = on_response(&mut ctx.continued, waiting, response, may_hold);
    match run.instrument(span).await {
        Ok(ResponseOutcome::Continue) => {}
        Ok(ResponseOutcome::Reply(reply)) => {
            ctx.reply_instead = Some(reply);
            return Err(Error::explain(
                ErrorType::InternalError,
                "a plugin answered from on-response",
            ));
        }
        Err(e) => {
            ctx.failure = Some(GatewayError::Plugin(e));
            return Err(Error::explain(
                ErrorType::InternalError,
                "plugin failed in on-response",
            ));
        }
    }
    respond::stamp(response, &ctx.request_id)?;
    if !ctx.awaiting_body.is_empty() && ctx.awaiting_body.iter().all(|a| a.streams()) {
        response_stream::start(session, ctx, response)
    } else {
        response_body::start(ctx, response, session.is_http2());
        Ok(())
    }
}

/// What the response phase came to.
pub(super) enum ResponseOutcome {
    Continue,
    /// A proxy-wasm module answers in place of the upstream (the client has no head yet).
    Reply(Reply),
}

/// Runs `on-response` of every continued plugin, last first, and releases their instances,
/// but for those that read the response body: they go to `awaiting_body` (last first), alive
/// until the body is in; and for proxy-wasm plugins that read trailers: `awaiting_trailers`.
/// A filter's declared edits (`Plugged::Declared`) apply in its place, without a call. With `may_hold` (the response has a body), a proxy-wasm module may
/// hold the head for its body callbacks ([`AwaitingBody::holds_response`]): the phase stops
/// there, and the plugins before it in the chain stay in `continued` until the module lets the
/// head go (`response_stream.rs`), as Envoy's filters see the headers when it continues.
pub(super) async fn on_response(
    continued: &mut Vec<Continued>,
    (awaiting_body, awaiting_trailers): (&mut Vec<AwaitingBody>, &mut Vec<AwaitingTrailers>),
    resp: &mut ResponseHeader,
    may_hold: bool,
) -> Result<ResponseOutcome, PluginError> {
    while let Some(mut c) = continued.pop() {
        let span = tracing::debug_span!(target: "wharf::trace", "plugin", plugin = %c.plugin.name(), phase = "on_response");
        let result = match &mut c.plugin {
            Plugged::Component(instance) => {
                let view = Response {
                    status: resp.status.as_u16(),
                    headers: wit_headers(&resp.headers),
                };
                instance
                    .on_response(view)
                    .instrument(span)
                    .await
                    .map(ResponseStep::Action)
            }
            Plugged::ProxyWasm(stream) => {
                super::proxy_wasm::on_response(stream, resp, may_hold)
                    .instrument(span)
                    .await
            }
            Plugged::Declared(_, action) => Ok(ResponseStep::Action(std::mem::replace(
                action,
                ResponseAction {
                    status: None,
                    headers: Vec::new(),
                },
            ))),
        };
        match result {
            Ok(ResponseStep::Reply(reply)) => {
                c.plugin.finish().await;
                continued.clear();
                return Ok(ResponseOutcome::Reply(reply));
            }
            Ok(step) => {
                let held = matches!(step, ResponseStep::Held);
                if let ResponseStep::Action(action) = step {
                    super::edits::apply_response_action(resp, action);
                }
                if held || c.plugin.reads_response_body() {
                    awaiting_body.push(AwaitingBody {
                        plugin: c.plugin,
                        fail_open: c.fail_open,
                        buffer: Vec::new(),
                        skipped: false,
                    });
                } else {
                    let kept = AwaitingTrailers::keep_or_finish(c.plugin, c.fail_open, resp);
                    awaiting_trailers.extend(kept.await);
                }
                if held {
                    break;
                }
            }
            Err(e) if c.fail_open => {
                tracing::warn!(plugin = %c.plugin.name(), "plugin on-response skipped (fail-open): {e}");
            }
            Err(e) => {
                continued.clear();
                return Err(e);
            }
        }
    }
    Ok(ResponseOutcome::Continue)
}
