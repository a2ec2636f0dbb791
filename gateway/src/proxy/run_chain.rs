//! The route's plugin chain run from `request_filter`: the request phase of every plugin, the
//! body read whole first when one of them reads it (or a proxy-wasm module paused for it), and
//! what the chain decided (go on, answer, refuse).

use pingora_proxy::Session;
use tracing::Instrument;

use super::chain::{self, ChainCtx, RequestOutcome};
use super::errors::GatewayError;
use super::request_info::client_ip;
use super::{body, paused, refuse, respond, Answered, RequestCtx, WharfProxy};

impl WharfProxy {
    /// The route's plugins' `on-request`, in order.
    pub(super) async fn run_chain(&self, session: &mut Session, ctx: &mut RequestCtx) -> Answered {
        let (Some(tenant), Some(route)) = (ctx.tenant.clone(), ctx.route.clone()) else {
            return Ok(false);
        };
        if route.chain.is_empty() {
            return Ok(false);
        }
        // Shared bytes, not a copy: the upstream request and the response take the same id.
        let request_id = ctx.request_id.clone();
        let cx = ChainCtx {
            runtime: &self.runtime,
            tenant: &tenant.id,
            route: &route.spec.id,
            quotas: tenant.plugin_quotas,
            client_addr: client_ip(session).unwrap_or_default(),
            capabilities: &tenant.capabilities,
            request_id: request_id.as_str(),
            scheme: if session.digest().is_some_and(|d| d.ssl_digest.is_some()) {
                "https"
            } else {
                "http"
            },
            body_empty: session.is_body_empty(),
        };
        let mut request_body = None;
        let mut from = 0;
        loop {
            let span = tracing::debug_span!(target: "wharf::trace", parent: &ctx.span, "plugins", phase = "on_request");
            let run = chain::on_request(
                &cx,
                &route.chain[from..],
                session.req_header_mut(),
                &mut request_body,
                &mut ctx.continued,
            );
            let mut outcome = run.instrument(span).await;
            if let RequestOutcome::PausedForBody(at, paused) = outcome {
                match self.read_body(session, ctx, &tenant).await {
                    Ok(b) => request_body = Some(b),
                    Err(answered) => return answered,
                }
                let span = tracing::debug_span!(target: "wharf::trace", parent: &ctx.span, "plugins", phase = "on_request_body");
                let resume = paused::resume(
                    &cx,
                    paused,
                    session.req_header_mut(),
                    &mut request_body,
                    &mut ctx.continued,
                );
                outcome = resume.instrument(span).await;
                if let RequestOutcome::Continue = outcome {
                    from += at + 1;
                    continue;
                }
            }
            return match outcome {
                RequestOutcome::NeedsBody(at) => {
                    match self.read_body(session, ctx, &tenant).await {
                        Ok(b) => request_body = Some(b),
                        Err(answered) => return answered,
                    }
                    from += at;
                    continue;
                }
                // Handled above: resumed, then `Continue`, `Respond` or `Failed`.
                RequestOutcome::PausedForBody(..) => Ok(false),
                RequestOutcome::Continue => {
                    // Plugins that read bodies and continued before the body was read whole
                    // (it is not held for them as it streams) get it now.
                    if !session.is_body_empty() {
                        let max = tenant.plugin_quotas.body_max_bytes;
                        let deliver =
                            paused::deliver_body(&mut ctx.continued, &mut request_body, max);
                        if let Err(e) = deliver.await {
                            return refuse(session, &GatewayError::Plugin(e), ctx).await;
                        }
                    }
                    // Read (or written by a plugin): the upstream gets it instead of the client's.
                    ctx.request_body =
                        request_body.filter(|b| !b.is_empty() || !session.is_body_empty());
                    Ok(false)
                }
                RequestOutcome::Respond(reply) => {
                    // Boxed: a reply runs the response phase (~4 KB of state) and is rare;
                    // the chain's future stays the size of its common path.
                    Box::pin(respond::reply(session, reply, ctx)).await?;
                    Ok(true)
                }
                RequestOutcome::Failed(e) => refuse(session, &GatewayError::Plugin(e), ctx).await,
            };
        }
    }

    /// Reads the body whole for the chain's plugins; `Err`: the request is answered (413, 503)
    /// or failed.
    async fn read_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        tenant: &crate::control::table::CompiledTenant,
    ) -> std::result::Result<bytes::Bytes, Answered> {
        let max = tenant.plugin_quotas.body_max_bytes;
        match body::read_whole(session, max, &self.pace, ctx, &tenant.capabilities).await {
            Ok(whole) => {
                ctx.body_memory = Some(whole.memory);
                Ok(whole.bytes)
            }
            Err(body::Refused::Answer(e)) => {
                // The unread rest of the body cannot be skipped: the connection closes.
                session.set_keepalive(None);
                Err(refuse(session, &e, ctx).await)
            }
            Err(body::Refused::Client(e)) => Err(Err(e)),
        }
    }
}
