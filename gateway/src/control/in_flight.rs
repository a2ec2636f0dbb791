//! Per-tenant requests in flight on this node (`max_requests_in_flight`), refused with 429
//! `too_many_in_flight` before any work is done for them. A request holds its slot until its
//! context is dropped: the answer sent, or the WebSocket / HTTP/2 stream closed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// One tenant's count; the routing table carries it across reloads so a config change never
/// resets it (requests admitted before a reload still count after it).
#[derive(Debug, Default)]
pub struct TenantInFlight(AtomicU32);

/// A request's slot; released on drop.
#[derive(Debug)]
pub struct Slot(Arc<TenantInFlight>);

impl TenantInFlight {
    /// A slot if fewer than `max` requests hold one, else `None` (nothing taken).
    pub fn try_enter(self: &Arc<Self>, max: u32) -> Option<Slot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    pub fn count(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_released() {
        let t = Arc::new(TenantInFlight::default());
        let held: Vec<Slot> = (0..3).filter_map(|_| t.try_enter(3)).collect();
        assert_eq!(held.len(), 3);
        assert!(t.try_enter(3).is_none(), "a fourth is refused");
        assert_eq!(t.count(), 3, "a refusal takes nothing");
        drop(held);
        assert_eq!(t.count(), 0);
        assert!(t.try_enter(3).is_some());
    }
}
