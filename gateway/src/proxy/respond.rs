//! Responses Wharf writes itself (errors, plugin replies) and the headers it stamps on every
//! response, proxied or not.

use bytes::Bytes;
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use wharf_plugins::types::Reply;

use super::ctx::RequestCtx;
use super::edits;
use super::errors::GatewayError;
use super::request_info::{RequestId, X_REQUEST_ID};

/// Headers every response carries, whoever produced it.
pub(super) fn stamp(resp: &mut ResponseHeader, request_id: &RequestId) -> Result<()> {
    resp.insert_known_header(&X_REQUEST_ID, request_id.header())?;
    Ok(())
}

/// A plugin's own reply, after the `on-response` of the plugins before it.
pub(super) async fn reply(session: &mut Session, reply: Reply, ctx: &mut RequestCtx) -> Result<()> {
    let Reply {
        status,
        headers,
        body,
    } = reply;
    let mut resp = edits::reply_header(status, headers)?;
    // A plugin's own reply is not an upstream body: `on-response-body` is not called for it.
    let mut not_for_replies = Vec::new();
    // A module's own reply in turn (`proxy_send_local_response` on a reply) is not taken.
    // Nor are trailers: plugins waiting for them end with the request (`trailers::finish`).
    let waiting = (&mut not_for_replies, &mut ctx.awaiting_trailers);
    let run = super::response_phase::on_response(&mut ctx.continued, waiting, &mut resp, false);
    if let Err(e) = run.await {
        return error(session, &GatewayError::Plugin(e), &ctx.request_id).await;
    }
    resp.insert_header("Content-Length", body.len().to_string())?;
    stamp(&mut resp, &ctx.request_id)?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await?;
    Ok(())
}

/// A plain-text 200 Wharf answers itself (an ACME challenge's key authorization).
pub(super) async fn text(
    session: &mut Session,
    body: String,
    request_id: &RequestId,
) -> Result<()> {
    let body = Bytes::from(body);
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header("Content-Type", "text/plain")?;
    resp.insert_header("Content-Length", body.len().to_string())?;
    stamp(&mut resp, request_id)?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// Wharf's own error answer: a JSON body naming the error and the request.
pub(super) async fn error(
    session: &mut Session,
    e: &GatewayError,
    request_id: &RequestId,
) -> Result<()> {
    let body = Bytes::from(e.to_json(request_id.as_str()));
    let mut resp = ResponseHeader::build(e.status(), Some(4))?;
    resp.insert_header("Content-Type", "application/json")?;
    resp.insert_header("Content-Length", body.len().to_string())?;
    resp.insert_header("Cache-Control", "no-store")?;
    match e {
        GatewayError::RateLimited(secs) => resp.insert_header("Retry-After", secs.to_string())?,
        GatewayError::TooManyInFlight(_) => resp.insert_header("Retry-After", "1")?,
        _ => {}
    }
    stamp(&mut resp, request_id)?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}
