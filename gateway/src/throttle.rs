//! Token buckets by key (a tenant's API key, a client address): what one caller may spend per
//! second, checked before the work is done.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Token buckets by key. Idle keys are dropped when the map grows past `MAX_KEYS`, so many
/// distinct callers cannot grow it without bound.
#[derive(Debug)]
pub struct Throttle {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

const MAX_KEYS: usize = 10_000;

impl Throttle {
    pub fn new(per_second: u32, burst: u32) -> Throttle {
        Throttle {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token: `Err(wait)` when `key` has none left (nothing taken).
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.with(key, |b| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                Ok(())
            } else {
                Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
            }
        })
    }

    /// Whether `key` has a token left, without taking it (a key never seen has its whole burst,
    /// and is not entered: a caller that never authenticates adds nothing here).
    pub fn peek(&self, key: &str) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock();
        let Some(b) = buckets.get_mut(key) else {
            return Ok(());
        };
        if refill(b, Instant::now(), self.per_second, self.burst) >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
        }
    }

    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| refill(b, now, per_second, burst) < burst);
            if buckets.len() >= MAX_KEYS * 9 / 10 {
                // Nearly every key is busy: start over rather than grow, or scan the whole map
                // again on the next new key (each scan must free a tenth to pay for itself).
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        refill(bucket, now, self.per_second, self.burst);
        f(bucket)
    }
}

fn refill(b: &mut Bucket, now: Instant, per_second: f64, burst: f64) -> f64 {
    let earned = now.saturating_duration_since(b.at).as_secs_f64() * per_second;
    b.tokens = (b.tokens + earned).min(burst);
    b.at = now;
    b.tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_waits_and_keys_are_apart() {
        let t = Throttle::new(10, 3);
        for _ in 0..3 {
            assert!(t.take("a").is_ok());
        }
        let wait = t.take("a").expect_err("empty");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(t.peek("a").is_err());
        assert!(t.take("b").is_ok(), "another key has its own bucket");
        std::thread::sleep(Duration::from_millis(120));
        assert!(t.take("a").is_ok(), "refilled");
    }

    #[test]
    fn peeking_at_an_unknown_key_enters_nothing() {
        let t = Throttle::new(1, 1);
        for i in 0..100 {
            assert!(t.peek(&format!("never-authenticated-{i}")).is_ok());
        }
        assert!(t.buckets.lock().is_empty());
    }

    #[test]
    fn many_keys_do_not_grow_the_map_without_bound() {
        let t = Throttle::new(1, 1);
        for i in 0..(MAX_KEYS + 500) {
            let _ = t.take(&format!("k{i}"));
        }
        assert!(t.buckets.lock().len() <= MAX_KEYS);
    }
}
