//! How often a body's tiny pieces go through the proxy-wasm modules that read it. The sender
//! decides how many pieces there are, not the module's tenant: a client can cut 64 KiB into
//! ten thousand one-byte chunks (HTTP/1.1 chunked) or DATA frames (HTTP/2), or trickle bytes just
//! above the minimum rate (`pace.rs`), and each piece would run the modules, with the proxy's
//! own work around each callback, for one admitted request. So pieces under 1 KiB are paced per
//! body: past a burst, the next waits its turn (a body of bytes arriving meanwhile comes as one
//! piece; chunks and frames come one by one, each at its turn, so such a flood is slowed to the
//! rate and, being then below the minimum rate, ends with 408). Larger pieces never wait, and a
//! stream in earnest (gRPC messages, server-sent events, a model's tokens) sends fewer tiny
//! pieces than the rate.

use std::time::{Duration, Instant};

/// Tiny pieces through the modules per body: a burst, then a steady rate (a token bucket).
pub(super) struct Pieces {
    tokens: f64,
    last: Instant,
}

impl Pieces {
    /// Tiny pieces delivered at once, then per second.
    const BURST: f64 = 64.0;
    const PER_SECOND: f64 = 200.0;
    /// A piece this long or longer is never paced: 64 KiB in such pieces is at most 64 callbacks.
    const TINY: usize = 1024;

    pub(super) fn new() -> Pieces {
        Pieces {
            tokens: Self::BURST,
            last: Instant::now(),
        }
    }

    /// Waits for the turn of a piece of `len` bytes. The last piece goes at once: waiting would
    /// only delay the answer.
    pub(super) async fn turn(&mut self, len: usize, end_of_stream: bool) {
        if end_of_stream || len >= Self::TINY {
            return;
        }
        let wait = self.next();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_go_at_once_for_a_burst_then_at_the_steady_rate() {
        let mut p = Pieces::new();
        for _ in 0..64 {
            assert_eq!(p.next(), Duration::ZERO);
        }
        let wait = p.next();
        assert!(
            wait > Duration::from_millis(3) && wait <= Duration::from_millis(5),
            "{wait:?}"
        );
        let next = p.next();
        assert!(
            next > wait,
            "each piece past the burst waits its own turn: {next:?}"
        );
    }
}
