//! How fast a client must send: once a request's head is parsed its connection's head clock
//! stops (`head_deadline`), an idle kept-alive connection closes after a while instead of never,
//! and a request body must keep up a minimum average rate after a grace period, as Apache's
//! mod_reqtimeout `body=20,MinRate=500`: a body trickled a byte at a time cannot hold a
//! connection, an upstream connection and a tenant's in-flight slot for hours.

use std::time::{Duration, Instant};

use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_proxy::Session;

use super::errors::GatewayError;
use super::RequestCtx;
use crate::clients::ClientLimits;

/// The proxy's pace settings (from `[clients]`).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    body_min_bytes_per_second: u64,
    body_grace: Duration,
    keepalive_idle_seconds: u64,
}

impl Pace {
    pub fn new(l: &ClientLimits) -> Pace {
        Pace {
            body_min_bytes_per_second: l.request_body_min_bytes_per_second,
            body_grace: Duration::from_secs(l.request_body_grace_seconds.max(1)),
            keepalive_idle_seconds: l.keepalive_idle_timeout_seconds.max(1),
        }
    }

    /// The head is in: stop its clock and set how long the body and the next idle wait may take.
    pub fn head_parsed(&self, session: &mut Session, ctx: &mut RequestCtx) {
        if let Some(clock) = crate::head_deadline::clock(session) {
            clock.head_done();
        }
        // Requests pipelined behind this one are answered in turn, not dropped (RFC 9112 9.3.2).
        session.set_pipelining_enabled(true);
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(self.keepalive_idle_seconds));
        }
        if self.body_min_bytes_per_second > 0
            && !session.is_upgrade_req()
            && !session.is_body_empty()
        {
            // A body that stops outright fails at the first read past the grace.
            session.set_read_timeout(Some(self.body_grace));
            session.set_total_drain_timeout(Some(self.body_grace));
            ctx.body_started = Some(Instant::now());
        }
    }

    /// A chunk of the body arrived: refuse a body behind its minimum rate.
    pub fn body_read(&self, session: &Session, ctx: &mut RequestCtx) -> Result<()> {
        let Some(started) = ctx.body_started else {
            return Ok(());
        };
        let allowed = self.body_grace.as_secs_f64()
            + session.body_bytes_read() as f64 / self.body_min_bytes_per_second as f64;
        if started.elapsed().as_secs_f64() <= allowed {
            return Ok(());
        }
        let why = format!(
            "{} bytes in {:.0} s, under {} bytes/s",
            session.body_bytes_read(),
            started.elapsed().as_secs_f64(),
            self.body_min_bytes_per_second
        );
        ctx.failure = Some(GatewayError::RequestTimeout(why));
        let mut e = Error::explain(
            ErrorType::ReadTimedout,
            "request body under its minimum rate",
        );
        e.esource = ErrorSource::Downstream;
        Err(e)
    }

    /// The request is done: the connection's next bytes start a new head.
    pub fn request_done(session: &Session) {
        if let Some(clock) = crate::head_deadline::clock(session) {
            clock.next_head();
        }
    }
}
