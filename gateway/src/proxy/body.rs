//! The request body read whole before the plugin chain, for a route one of whose plugins reads
//! it (it imports `wharf:plugin/body`). Every other request's body streams to the upstream as it
//! arrives, untouched. The size is checked before anything is read (Content-Length) and while
//! reading (chunked or HTTP/2 bodies), under the node's memory budget for data in flight; the
//! client is held to the same minimum pace as a streamed body. What the chain leaves is sent
//! upstream in place of the client's (`request_body_override`, on every attempt), with its own
//! Content-Length.

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use pingora_proxy::Session;
use tokio::sync::OwnedSemaphorePermit;
use wharf_plugins::capabilities::TenantCapabilities;

use super::errors::GatewayError;
use super::pace::Pace;
use super::RequestCtx;

/// A body read whole, and its share of the node's memory.
pub(super) struct WholeBody {
    pub(super) bytes: Bytes,
    pub(super) memory: OwnedSemaphorePermit,
}

pub(super) enum Refused {
    /// Answered by Wharf (413, 503).
    Answer(GatewayError),
    /// The client failed or was too slow (the error says which; `ctx.failure` may say more).
    Client(Box<pingora_core::Error>),
}

/// Reads the body whole: at most `max` bytes.
pub(super) async fn read_whole(
    session: &mut Session,
    max: u64,
    pace: &Pace,
    ctx: &mut RequestCtx,
    caps: &TenantCapabilities,
) -> Result<WholeBody, Refused> {
    let declared = session
        .req_header()
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(Refused::Answer(GatewayError::BodyTooLarge(max)));
    }
    // Reserved before reading: many concurrent maximal bodies cannot add up past the node's
    // budget. A body of known length reserves what it declares, else the cap.
    let memory = caps
        .reserve_memory(declared.unwrap_or(max).max(1))
        .map_err(|_| Refused::Answer(GatewayError::Busy))?;
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    if session.is_body_empty() {
        return Ok(WholeBody {
            bytes: body.freeze(),
            memory,
        });
    }
    loop {
        let chunk = session.read_request_body().await.map_err(Refused::Client)?;
        let Some(chunk) = chunk else { break };
        if (body.len() + chunk.len()) as u64 > max {
            return Err(Refused::Answer(GatewayError::BodyTooLarge(max)));
        }
        body.extend_from_slice(&chunk);
        pace.body_read(session, ctx).map_err(Refused::Client)?;
    }
    Ok(WholeBody {
        bytes: body.freeze(),
        memory,
    })
}
