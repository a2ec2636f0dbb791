//! A response body streamed through the proxy-wasm modules that read it (`body_stream.rs`), when
//! only such modules wait for it (a component rewriting bodies gets it whole, `response_body.rs`).
//! A module that paused in `proxy_on_response_headers` holds the head (Pingora keeps it unsent,
//! `vendor/README.md`) until a body callback continues: the head goes out then with the edits it
//! made meanwhile, with the body's length when the body is whole. While the head is held a
//! module's local reply replaces the upstream's response, and a buffer past
//! `plugin_body_max_bytes` is a 500; once the head is gone, both break the response off (counted
//! as the module's failure). A head held past the plugin deadline fails the request, even while
//! the upstream sends nothing.

use std::time::{Duration, Instant};

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use tokio::sync::OwnedSemaphorePermit;
use wharf_metrics::Metrics;
use wharf_plugins::{Failure, PluginError};

use super::body_pace::Pieces;
use super::body_stream::{self, Pass, Stop};
use super::errors::GatewayError;
use super::response_phase::{on_response, ResponseOutcome};
use super::RequestCtx;

/// A response body streaming through modules.
pub struct StreamedResponse {
    max: u64,
    /// The client was told the body's length (every module left `content-length`).
    keep_lengths: bool,
    http2: bool,
    /// Since when the head is held, and for how long it may be.
    held_since: Option<Instant>,
    deadline: Duration,
    _memory: OwnedSemaphorePermit,
    pieces: Pieces,
}

/// Whether the response has a body a module could hold its head for.
pub(super) fn has_body(session: &Session, resp: &ResponseHeader) -> bool {
    let status = resp.status.as_u16();
    session.req_header().method != http::Method::HEAD
        && !(100..200).contains(&status)
        && status != 204
        && status != 304
        && super::proxy_wasm::content_length(&resp.headers) != Some(0)
}

/// Called with the response header once the response phase ran, when only proxy-wasm modules
/// wait for the body. `Err`: no memory to buffer it (503, the head is not sent yet).
pub(super) fn start(
    session: &mut Session,
    ctx: &mut RequestCtx,
    resp: &mut ResponseHeader,
) -> Result<()> {
    let Some(tenant) = ctx.tenant.clone() else {
        return Ok(());
    };
    let max = tenant.plugin_quotas.body_max_bytes;
    let declared = super::proxy_wasm::content_length(&resp.headers);
    // With those that join when a held head goes (`release_to_the_rest`).
    let later = ctx
        .continued
        .iter()
        .filter(|c| c.plugin.reads_response_body())
        .count();
    let readers = (ctx.awaiting_body.len() + later) as u64;
    let what = "no memory to stream the response body through its plugins";
    let memory = super::body_stream::reserve(ctx, &tenant, declared, readers, what)?;
    let held = ctx.awaiting_body.iter().any(|a| a.holds_response());
    let deadline = Duration::from_millis(tenant.plugin_quotas.deadline_ms);
    if held {
        session.hold_response_header = true;
        session.held_response_deadline = Some(Instant::now() + deadline);
    }
    let keep_lengths =
        !held && declared.is_some() && ctx.awaiting_body.iter().all(|a| a.keeps_length());
    if !held && !keep_lengths {
        unframe(resp, session.is_http2());
    }
    ctx.streamed_response = Some(StreamedResponse {
        max,
        keep_lengths,
        http2: session.is_http2(),
        held_since: held.then(Instant::now),
        deadline,
        _memory: memory,
        pieces: Pieces::new(),
    });
    Ok(())
}

/// The body's length goes (the modules may change it): chunked on HTTP/1.1.
fn unframe(resp: &mut ResponseHeader, http2: bool) {
    resp.remove_header(&CONTENT_LENGTH);
    if !http2 {
        let _ = resp.insert_header(TRANSFER_ENCODING, "chunked");
    }
}

/// One piece of the upstream's body through the modules; what they let go on goes to the
/// client (with the head, when a module held it until now).
pub(super) async fn piece(
    session: &mut Session,
    ctx: &mut RequestCtx,
    metrics: &Metrics,
    body: &mut Option<bytes::Bytes>,
    end_of_stream: bool,
) -> Result<()> {
    if ctx.streamed_response.is_none() {
        return Ok(());
    }
    if let Some(e) = held_too_long(ctx, metrics) {
        return fail_with(ctx, e, "a response head was held past the plugin deadline");
    }
    let Some(streamed) = ctx.streamed_response.as_mut() else {
        return Ok(());
    };
    let len = body.as_ref().map_or(0, |b| b.len());
    streamed.pieces.turn(len, end_of_stream).await;
    let pass = Pass {
        response: true,
        end_of_stream,
        max: streamed.max,
        keep_lengths: streamed.keep_lengths,
    };
    let data = body.take().map(Vec::from).unwrap_or_default();
    let mut modules = std::mem::take(&mut ctx.awaiting_body);
    let result = body_stream::piece(&mut modules, data, &pass).await;
    ctx.awaiting_body = modules;
    let held = streamed.held_since.is_some();
    let mut piece = match result {
        Ok(piece) => piece,
        Err(stop) => return stopped(ctx, stop, pass.max),
    };
    if let Some(head) = session.held_response_header.as_mut() {
        for action in std::mem::take(&mut piece.heads) {
            super::edits::apply_response_action(head, action);
        }
    }
    if held && !ctx.awaiting_body.iter().any(|a| a.holds_response()) {
        piece.body = release_to_the_rest(session, ctx, piece.body, &pass).await?;
        release(session, ctx, piece.body.len(), end_of_stream);
    }
    *body = Some(piece.body.into());
    if end_of_stream {
        ctx.streamed_response = None;
        for c in std::mem::take(&mut ctx.awaiting_body) {
            c.plugin.finish().await;
        }
    }
    Ok(())
}

/// The plugins before the module that held the head, in the chain, get their response phase on
/// it now (as Envoy's filters see the headers when the module continues), and those of them
/// that read the body join the stream with this piece.
async fn release_to_the_rest(
    session: &mut Session,
    ctx: &mut RequestCtx,
    body: Vec<u8>,
    pass: &Pass,
) -> Result<Vec<u8>> {
    let (Some(head), false) = (
        session.held_response_header.as_mut(),
        ctx.continued.is_empty(),
    ) else {
        return Ok(body);
    };
    let from = ctx.awaiting_body.len();
    let waiting = (&mut ctx.awaiting_body, &mut ctx.awaiting_trailers);
    let run = on_response(&mut ctx.continued, waiting, head, false);
    match run.await {
        Ok(ResponseOutcome::Continue) => {}
        Ok(ResponseOutcome::Reply(reply)) => {
            ctx.reply_instead = Some(reply);
            ctx.streamed_response = None;
            return Err(Error::explain(
                ErrorType::InternalError,
                "a plugin answered from on-response",
            ));
        }
        Err(e) => return fail_with(ctx, GatewayError::Plugin(e), "plugin failed in on-response"),
    }
    let mut joined = ctx.awaiting_body.split_off(from);
    let result = body_stream::piece(&mut joined, body, pass).await;
    ctx.awaiting_body.append(&mut joined);
    match result {
        Ok(piece) => Ok(piece.body),
        Err(stop) => stopped(ctx, stop, pass.max),
    }
}

/// A stopped body: a module's reply served in place of the upstream's, a 500 for a buffer past
/// the quota or a plugin failure while the head is held; once it is gone, the response is
/// broken off.
fn stopped<T>(ctx: &mut RequestCtx, stop: Stop, max: u64) -> Result<T> {
    match stop {
        Stop::TooLarge => {
            let e = GatewayError::ResponseTooLarge(max);
            fail_with(ctx, e, "a plugin buffered the response body past its quota")
        }
        Stop::Reply(reply) => {
            ctx.reply_instead = Some(reply);
            ctx.streamed_response = None;
            Err(Error::explain(
                ErrorType::InternalError,
                "a plugin answered from its response body callback",
            ))
        }
        Stop::Failed(e) => fail_with(
            ctx,
            GatewayError::Plugin(e),
            "plugin failed in on-response-body",
        ),
    }
}

/// The held head goes out before this piece: with the body's length when the body is whole,
/// else chunked (the modules may change what follows).
fn release(session: &mut Session, ctx: &mut RequestCtx, len: usize, end_of_stream: bool) {
    let Some(streamed) = ctx.streamed_response.as_mut() else {
        return;
    };
    streamed.held_since = None;
    session.held_response_deadline = None;
    let Some(mut head) = session.held_response_header.take() else {
        return;
    };
    if end_of_stream {
        head.remove_header(&TRANSFER_ENCODING);
        let _ = head.insert_header(CONTENT_LENGTH, len.to_string());
    } else {
        unframe(&mut head, streamed.http2);
    }
    session.released_response_header = Some(head);
}

/// The head was held past the plugin deadline: the holding module's failure, counted as one
/// of its body callbacks' failures.
pub(super) fn held_too_long(ctx: &RequestCtx, metrics: &Metrics) -> Option<GatewayError> {
    let streamed = ctx.streamed_response.as_ref()?;
    let since = streamed.held_since?;
    if since.elapsed() < streamed.deadline {
        return None;
    }
    let holder = ctx.awaiting_body.iter().find(|a| a.holds_response())?;
    let failure = Failure::InvalidOutput(format!(
        "paused the response in proxy_on_response_headers and did not continue it within the \
         plugin deadline ({} ms)",
        streamed.deadline.as_millis()
    ));
    let e = PluginError::new(holder.plugin.name(), failure);
    let tenant = metrics.tenant(ctx.tenant_label());
    metrics
        .plugin_invocations_total
        .with_label_values(&[&*tenant, e.plugin(), "on_response_body", e.outcome()])
        .inc();
    Some(GatewayError::Plugin(e))
}

fn fail_with<T>(ctx: &mut RequestCtx, e: GatewayError, why: &'static str) -> Result<T> {
    ctx.failure = Some(e);
    ctx.streamed_response = None;
    Err(Error::explain(ErrorType::InternalError, why))
}
