//! A body streamed through the proxy-wasm modules that read it, piece by piece as Envoy hands
//! bodies to its filters: each module gets what it kept so far with the new piece appended
//! (`proxy_on_request_body` / `proxy_on_response_body` with `end_of_stream`); when it continues,
//! what it leaves goes to the next module and on (to the upstream, or the client); when it keeps
//! buffering, the modules after it get nothing of this piece. A module's buffer may not pass the
//! tenant's `plugin_body_max_bytes`: past it the request is answered 413, a response 500 while
//! its head is held (else it is broken off), as Envoy does. A module that continues every piece
//! lets a body of any length through, holding one piece at a time.

use wharf_plugins::proxy_wasm::pool::{BodyStep, ProxyStream};
use wharf_plugins::types::{Reply, ResponseAction};
use wharf_plugins::PluginError;

use super::chain::{AwaitingBody, Continued, Plugged};

/// The node's memory for a body streaming through `readers` modules: each may buffer up to the
/// tenant's quota, and a body of known length (`declared`) never needs more than it. `Err` (the
/// request fails with 503: the modules must see the body before it goes on): no memory.
pub(super) fn reserve(
    ctx: &mut super::RequestCtx,
    tenant: &crate::control::table::CompiledTenant,
    declared: Option<u64>,
    readers: u64,
    what: &'static str,
) -> pingora_core::Result<tokio::sync::OwnedSemaphorePermit> {
    let need = declared
        .unwrap_or(u64::MAX)
        .min(tenant.plugin_quotas.body_max_bytes)
        .saturating_mul(readers);
    tenant
        .capabilities
        .reserve_memory(need.max(1))
        .map_err(|_| {
            ctx.failure = Some(super::errors::GatewayError::Busy);
            pingora_core::Error::explain(pingora_core::ErrorType::InternalError, what)
        })
}

/// A plugin a body streams through.
pub(super) trait BodyModule {
    /// It takes part: a proxy-wasm module reading this body, not skipped.
    fn takes_part(&self) -> bool;
    /// The module, when it takes part.
    fn stream(&mut self) -> Option<&mut ProxyStream>;
    /// What it keeps buffered between pieces.
    fn buffer(&mut self) -> &mut Vec<u8>;
    fn fail_open(&self) -> bool;
    /// A fail-open module that failed: the body goes on without it.
    fn skip(&mut self);
}

impl BodyModule for Continued {
    fn takes_part(&self) -> bool {
        matches!(&self.plugin, Plugged::ProxyWasm(s) if s.reads_request_body() && !self.body_seen)
    }

    fn stream(&mut self) -> Option<&mut ProxyStream> {
        match &mut self.plugin {
            Plugged::ProxyWasm(s) if s.reads_request_body() && !self.body_seen => Some(s),
            _ => None,
        }
    }

    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }

    fn fail_open(&self) -> bool {
        self.fail_open
    }

    fn skip(&mut self) {
        self.body_seen = true;
    }
}

impl BodyModule for AwaitingBody {
    fn takes_part(&self) -> bool {
        matches!(&self.plugin, Plugged::ProxyWasm(_)) && !self.skipped
    }

    fn stream(&mut self) -> Option<&mut ProxyStream> {
        match &mut self.plugin {
            Plugged::ProxyWasm(s) if !self.skipped => Some(s),
            _ => None,
        }
    }

    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }

    fn fail_open(&self) -> bool {
        self.fail_open
    }

    fn skip(&mut self) {
        self.skipped = true;
    }
}

/// What a piece came to.
pub(super) struct Piece {
    /// What goes on now (empty while a module buffers).
    pub(super) body: Vec<u8>,
    /// Response heads held for modules that continued with this piece: their edits.
    pub(super) heads: Vec<ResponseAction>,
}

/// Why a body stops.
pub(super) enum Stop {
    /// A module's buffer would pass `plugin_body_max_bytes`.
    TooLarge,
    /// A module answers (`proxy_send_local_response`).
    Reply(Reply),
    Failed(PluginError),
}

/// How a piece goes through the modules.
pub(super) struct Pass {
    pub(super) response: bool,
    pub(super) end_of_stream: bool,
    pub(super) max: u64,
    /// The other side was told the body's length: a module's change of a piece's length is
    /// dropped (the piece goes as it came), as for a body handed over whole.
    pub(super) keep_lengths: bool,
}

/// One piece of the body through `modules`, in order.
pub(super) async fn piece<M: BodyModule>(
    modules: &mut [M],
    mut data: Vec<u8>,
    pass: &Pass,
) -> Result<Piece, Stop> {
    let mut heads = Vec::new();
    for m in modules.iter_mut() {
        let fail_open = m.fail_open();
        if !m.takes_part() {
            continue;
        }
        let mut buffered = std::mem::take(m.buffer());
        if !buffered.is_empty() && (buffered.len() + data.len()) as u64 > pass.max {
            return Err(Stop::TooLarge);
        }
        if buffered.is_empty() {
            buffered = std::mem::take(&mut data);
        } else {
            buffered.append(&mut data);
        }
        if buffered.is_empty() && !pass.end_of_stream {
            // Nothing new for this module (one before it keeps buffering).
            continue;
        }
        // A copy only where it may be needed: the piece as it came goes on when the module
        // may not change lengths, or fails open.
        let original = (pass.keep_lengths || fail_open).then(|| buffered.clone());
        let given = buffered.len();
        let Some(stream) = m.stream() else { continue };
        let step = stream
            .on_body_piece(pass.response, buffered, pass.end_of_stream, pass.max)
            .await;
        match step {
            Ok(BodyStep::Continue {
                body,
                replaced,
                head,
            }) => {
                data = match original {
                    Some(o) if pass.keep_lengths && replaced && body.len() != given => {
                        tracing::warn!(
                            "a proxy-wasm plugin changed a body's length but left its \
                             content-length; the piece goes as it came"
                        );
                        o
                    }
                    _ => body,
                };
                heads.extend(head);
            }
            // Envoy's buffer limit: a module keeping more than the quota stops the body.
            Ok(BodyStep::Buffer(kept)) if kept.len() as u64 > pass.max => {
                return Err(Stop::TooLarge);
            }
            Ok(BodyStep::Buffer(kept)) => {
                *m.buffer() = kept;
                return Ok(Piece {
                    body: Vec::new(),
                    heads,
                });
            }
            Ok(BodyStep::Reply(reply)) => return Err(Stop::Reply(reply)),
            Err(e) if fail_open => {
                tracing::warn!(plugin = %e.plugin(), "plugin body callback skipped (fail-open): {e}");
                m.skip();
                data = original.unwrap_or_default();
            }
            Err(e) => return Err(Stop::Failed(e)),
        }
    }
    Ok(Piece { body: data, heads })
}
