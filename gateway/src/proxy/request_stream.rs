//! A request body streamed through the proxy-wasm modules that read it (`body_stream.rs`): from
//! the upstream request's head on, each piece the client sends goes through their body callbacks
//! and on to the upstream as they leave it. A module that buffers past the tenant's
//! `plugin_body_max_bytes` gets the request answered 413 (what it kept never goes upstream); a
//! local reply from a body callback answers the client (which has no answer yet) and the
//! upstream request is abandoned. A body read whole before the chain (a component reads it) is
//! handed over whole instead (`paused.rs`).
//!
//! The client decides how many pieces there are, not the tenant: a body trickled a few bytes at
//! a time at the minimum rate (`pace.rs`) would make the modules run hundreds of times a second
//! for one admitted request. So the pieces' callbacks are paced per request ([`Pieces`]): past a
//! burst, the next piece waits its turn, and what the client sends meanwhile gathers in the
//! socket and arrives as one piece.

use std::time::{Duration, Instant};

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora_core::{Error, ErrorType};
use pingora_http::RequestHeader;
use tokio::sync::OwnedSemaphorePermit;

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

/// Pieces through the modules per request: a burst, then a steady rate (a token bucket).
struct Pieces {
    tokens: f64,
    last: Instant,
}

impl Pieces {
    /// Pieces delivered at once, then per second: far above what a client streaming in earnest
    /// sends in separate reads, far below what a trickle at the minimum rate would.
    const BURST: f64 = 32.0;
    const PER_SECOND: f64 = 50.0;

    fn new() -> Pieces {
        Pieces {
            tokens: Self::BURST,
            last: Instant::now(),
        }
    }

    /// How long the next piece waits for its turn.
    fn next(&mut self) -> Duration {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * Self::PER_SECOND;
        self.tokens = (self.tokens + refill).min(Self::BURST) - 1.0;
        self.last = now;
        Duration::from_secs_f64((-self.tokens).max(0.0) / Self::PER_SECOND)
    }
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
    // The last piece goes at once: waiting would only delay the answer.
    if !end_of_stream {
        let wait = streamed.pieces.next();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_go_at_once_for_a_burst_then_at_the_steady_rate() {
        let mut p = Pieces::new();
        for _ in 0..32 {
            assert_eq!(p.next(), Duration::ZERO);
        }
        let wait = p.next();
        assert!(
            wait > Duration::from_millis(15) && wait <= Duration::from_millis(20),
            "{wait:?}"
        );
        let next = p.next();
        assert!(
            next > wait,
            "each piece past the burst waits its own turn: {next:?}"
        );
    }
}
