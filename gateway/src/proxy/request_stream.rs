//! A request body streamed through the proxy-wasm modules that read it (`body_stream.rs`): from
//! the upstream request's head on, each piece the client sends goes through their body callbacks
//! and on to the upstream as they leave it. A module that buffers past the tenant's
//! `plugin_body_max_bytes` gets the request answered 413 (what it kept never goes upstream); a
//! local reply from a body callback answers the client (which has no answer yet) and the
//! upstream request is abandoned. A body read whole before the chain (a component reads it) is
//! handed over whole instead (`paused.rs`).
//! Its pieces are paced (`body_pace.rs`): the client decides how many there are.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora_core::{Error, ErrorType};
use pingora_http::RequestHeader;
use tokio::sync::OwnedSemaphorePermit;

use super::body_pace::Pieces;
use super::body_stream::{self, BodyModule, Pass, Stop};
use super::errors::GatewayError;
use super::RequestCtx;

/// A request body streaming through modules.
pub struct StreamedRequest {
    max: u64,
    /// The upstream was told the client's length (the modules left `content-length`).
    keep_lengths: bool,
    /// What the modules may buffer, out of the node's memory for data in flight.
    _memory: OwnedSemaphorePermit,
    pieces: Pieces,
}

/// Called with the upstream request's head: when a module reads the body, streaming starts and
/// the body's length goes (unless every module left it). `Err`: no memory to buffer it (503).
pub(super) fn start(
    ctx: &mut RequestCtx,
    upstream: &mut RequestHeader,
    body_empty: bool,
) -> pingora_core::Result<()> {
    // A body read whole before the chain goes as that; empty bodies have nothing to stream.
    if body_empty || ctx.request_body.is_some() {
        return Ok(());
    }
    let readers = ctx.continued.iter().filter(|c| c.takes_part()).count() as u64;
    if readers == 0 {
        return Ok(());
    }
    let Some(tenant) = ctx.tenant.clone() else {
        return Ok(());
    };
    let max = tenant.plugin_quotas.body_max_bytes;
    let declared = super::proxy_wasm::content_length(&upstream.headers);
    let what = "no memory to stream the body through its plugins";
    let memory = super::body_stream::reserve(ctx, &tenant, declared, readers, what)?;
    let keep_lengths =
        declared.is_some() && !ctx.continued.iter().any(|c| c.releases_request_length());
    if !keep_lengths {
        upstream.remove_header(&CONTENT_LENGTH);
        if upstream.version != http::Version::HTTP_2 {
            let _ = upstream.insert_header(TRANSFER_ENCODING, "chunked");
        }
    }
    ctx.streamed_request = Some(StreamedRequest {
        max,
        keep_lengths,
        _memory: memory,
        pieces: Pieces::new(),
    });
    Ok(())
}

/// One piece of the client's body through the modules; what they let go on goes upstream.
pub(super) async fn piece(
    ctx: &mut RequestCtx,
    body: &mut Option<bytes::Bytes>,
    end_of_stream: bool,
) -> pingora_core::Result<()> {
    let Some(streamed) = ctx.streamed_request.as_mut() else {
        return Ok(());
    };
    let len = body.as_ref().map_or(0, |b| b.len());
    streamed.pieces.turn(len, end_of_stream).await;
    let pass = Pass {
        response: false,
        end_of_stream,
        max: streamed.max,
        keep_lengths: streamed.keep_lengths,
    };
    let data = body.take().map(Vec::from).unwrap_or_default();
    let mut modules = std::mem::take(&mut ctx.continued);
    let result = body_stream::piece(&mut modules, data, &pass).await;
    if end_of_stream {
        for m in modules.iter_mut() {
            m.body_seen = true;
        }
        ctx.streamed_request = None;
    }
    ctx.continued = modules;
    let stop = match result {
        Ok(piece) => {
            // Pingora writes nothing for an empty piece (None would end the upstream's body).
            *body = Some(piece.body.into());
            return Ok(());
        }
        Err(stop) => stop,
    };
    ctx.streamed_request = None;
    let why = match stop {
        Stop::TooLarge => {
            ctx.failure = Some(GatewayError::BodyTooLarge(pass.max));
            "a plugin buffered the request body past plugin_body_max_bytes"
        }
        Stop::Reply(reply) => {
            ctx.reply_instead = Some(reply);
            "a plugin answered from its request body callback"
        }
        Stop::Failed(e) => {
            ctx.failure = Some(GatewayError::Plugin(e));
            "plugin failed in on-request-body"
        }
    };
    Err(Error::explain(ErrorType::InternalError, why))
}
