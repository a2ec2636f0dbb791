//! Passive health (outlier detection, Envoy's model): a target whose connections failed three
//! times in a row, or that answered five 5xx in a row, is ejected from its route's selection for
//! a time that doubles with each ejection (1 s up to 30 s), never more than half of the route's
//! targets at once; its next good answer clears its counts. With retries, a dead target then
//! costs neither failed requests nor the retry budget for long.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

const CONNECT_FAILURES: u32 = 3;
const SERVER_ERRORS: u32 = 5;

/// Why a target was ejected (the metric's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    ConnectFailure,
    ServerError,
}

impl Fault {
    pub fn label(self) -> &'static str {
        match self {
            Fault::ConnectFailure => "connect_failures",
            Fault::ServerError => "server_errors",
        }
    }
}
const BASE: Duration = Duration::from_secs(1);
const LONGEST: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Record {
    connect_failures: u32,
    server_errors: u32,
    ejections: u32,
    until: Option<Instant>,
}

#[derive(Default)]
pub struct Outliers {
    targets: Mutex<HashMap<SocketAddr, Record>>,
    /// How many targets have a record: while none has (the usual case), every request's
    /// checks are one atomic load, no lock.
    tracked: AtomicUsize,
}

impl Outliers {
    /// A connection to `addr` failed; `targets` is how many the route has. True when this
    /// failure ejected it.
    pub fn connect_failed(&self, addr: SocketAddr, targets: usize) -> bool {
        self.fault(addr, targets, Fault::ConnectFailure)
    }

    /// `addr` answered a 5xx. True when this answer ejected it.
    pub fn server_error(&self, addr: SocketAddr, targets: usize) -> bool {
        self.fault(addr, targets, Fault::ServerError)
    }

    fn fault(&self, addr: SocketAddr, targets: usize, fault: Fault) -> bool {
        let now = Instant::now();
        let mut map = self.targets.lock();
        let ejected_now = map
            .values()
            .filter(|r| r.until.is_some_and(|u| u > now))
            .count();
        map.entry(addr).or_default();
        self.tracked.store(map.len(), Ordering::Relaxed);
        let Some(r) = map.get_mut(&addr) else {
            return false;
        };
        let (count, threshold) = match fault {
            Fault::ConnectFailure => (&mut r.connect_failures, CONNECT_FAILURES),
            Fault::ServerError => (&mut r.server_errors, SERVER_ERRORS),
        };
        *count += 1;
        let reached = *count >= threshold;
        let already = r.until.is_some_and(|u| u > now);
        if already || !reached || ejected_now + 1 > (targets / 2).max(1) {
            return false;
        }
        let time = BASE.saturating_mul(1 << r.ejections.min(5)).min(LONGEST);
        r.ejections += 1;
        r.until = Some(now + time);
        true
    }

    /// A good answer came from `addr`.
    pub fn succeeded(&self, addr: SocketAddr) {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut map = self.targets.lock();
        if let Some(r) = map.get_mut(&addr) {
            r.connect_failures = 0;
            r.server_errors = 0;
            // A target never ejected has nothing left to remember; an ejected one keeps its
            // count of ejections (the next lasts longer).
            if r.ejections == 0 {
                map.remove(&addr);
                self.tracked.store(map.len(), Ordering::Relaxed);
            }
        }
    }

    pub fn ejected(&self, addr: &SocketAddr) -> bool {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.targets
            .lock()
            .get(addr)
            .is_some_and(|r| r.until.is_some_and(|u| u > Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_eject_at_most_half_and_success_forgives() {
        let o = Outliers::default();
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        assert!(!o.connect_failed(a, 4));
        o.succeeded(a);
        assert!(!o.connect_failed(a, 4) && !o.connect_failed(a, 4));
        assert!(o.connect_failed(a, 4), "third in a row ejects");
        assert!(o.ejected(&a));
        for _ in 0..2 {
            assert!(!o.connect_failed(b, 4));
        }
        assert!(o.connect_failed(b, 4), "two of four may be out");
        let c: SocketAddr = "10.0.0.3:80".parse().unwrap();
        for _ in 0..5 {
            assert!(!o.connect_failed(c, 4), "never more than half");
        }
        assert!(!o.ejected(&c));
        // Five 5xx in a row eject too (here: with room, on a route of eight).
        let d: SocketAddr = "10.0.0.4:80".parse().unwrap();
        assert!((0..4).all(|_| !o.server_error(d, 8)));
        assert!(o.server_error(d, 8));
    }
}
