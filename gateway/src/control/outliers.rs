//! Passive health (outlier detection, connect failures): a target whose connections failed
//! `CONSECUTIVE` times in a row is ejected from its route's selection for a time that doubles
//! with each ejection (1 s up to 30 s), never more than half of the route's targets at once; a
//! success clears its count. With retries, a dead target then costs neither failed requests nor
//! the retry budget for long.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const CONSECUTIVE: u32 = 3;
const BASE: Duration = Duration::from_secs(1);
const LONGEST: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Record {
    consecutive: u32,
    ejections: u32,
    until: Option<Instant>,
}

#[derive(Default)]
pub struct Outliers {
    targets: Mutex<HashMap<SocketAddr, Record>>,
}

impl Outliers {
    /// A connection to `addr` failed; `targets` is how many the route has. True when this
    /// failure ejected it.
    pub fn connect_failed(&self, addr: SocketAddr, targets: usize) -> bool {
        let now = Instant::now();
        let mut map = self.targets.lock();
        let ejected_now = map
            .values()
            .filter(|r| r.until.is_some_and(|u| u > now))
            .count();
        let r = map.entry(addr).or_default();
        r.consecutive += 1;
        let already = r.until.is_some_and(|u| u > now);
        if already || r.consecutive < CONSECUTIVE || ejected_now + 1 > (targets / 2).max(1) {
            return false;
        }
        let time = BASE.saturating_mul(1 << r.ejections.min(5)).min(LONGEST);
        r.ejections += 1;
        r.until = Some(now + time);
        true
    }

    /// A response came from `addr`.
    pub fn succeeded(&self, addr: SocketAddr) {
        if let Some(r) = self.targets.lock().get_mut(&addr) {
            r.consecutive = 0;
        }
    }

    pub fn ejected(&self, addr: &SocketAddr) -> bool {
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
    }
}
