//! A route's retry budget (Envoy's model): retries may add about a fifth to a route's requests,
//! plus a small allowance per second for quiet routes, so retries cannot multiply an outage
//! into a storm on the targets left.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Share of requests that may be retried.
const PER_REQUEST: f64 = 0.2;
/// Retries a quiet route may still make per second.
const PER_SECOND: f64 = 3.0;
/// Most retries saved up for a burst.
const CAP: f64 = 20.0;

pub struct RetryBudget {
    /// Requests since the last retry asked: counted without a lock (every request passes here),
    /// turned into budget only when a retry asks.
    requests: AtomicU64,
    state: Mutex<(f64, Instant)>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            requests: AtomicU64::new(0),
            state: Mutex::new((PER_SECOND, Instant::now())),
        }
    }
}

impl RetryBudget {
    /// A request was sent to the route's upstream.
    pub fn on_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry, if the budget has one.
    pub fn try_take(&self) -> bool {
        let mut s = self.state.lock();
        let now = Instant::now();
        let requests = self.requests.swap(0, Ordering::Relaxed) as f64;
        let refill = now.duration_since(s.1).as_secs_f64() * PER_SECOND + requests * PER_REQUEST;
        *s = ((s.0 + refill).min(CAP), now);
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_a_fifth_of_requests_plus_a_little() {
        let b = RetryBudget::default();
        let mut taken = 0;
        for _ in 0..100 {
            b.on_request();
            if b.try_take() {
                taken += 1;
            }
        }
        // 100 requests × 0.2 + the 3 it started with (+ a refill of microseconds).
        assert!((20..=24).contains(&taken), "{taken}");
        assert!(!b.try_take());
    }
}
