//! Per-tenant queues served in turn: the fair scheduler's CPU slots and the compile thread's
//! uploads both go to tenants round-robin, so a tenant with a hundred waiting and a tenant with
//! one take turns.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Each tenant's waiting items, oldest first, and the tenants in turn order.
pub(crate) struct RoundRobin<T> {
    /// Present exactly while the tenant is in `ring`.
    queues: HashMap<Arc<str>, VecDeque<T>>,
    ring: VecDeque<Arc<str>>,
}

impl<T> Default for RoundRobin<T> {
    fn default() -> Self {
        RoundRobin {
            queues: HashMap::new(),
            ring: VecDeque::new(),
        }
    }
}

impl<T> RoundRobin<T> {
    /// Queues `item` behind the tenant's others; a tenant with none joins the end of the turn.
    pub(crate) fn push(&mut self, tenant: &Arc<str>, item: T) {
        match self.queues.get_mut(tenant) {
            Some(q) => q.push_back(item),
            None => {
                self.queues.insert(tenant.clone(), VecDeque::from([item]));
                self.ring.push_back(tenant.clone());
            }
        }
    }

    /// Whether nobody waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// How many items the tenant has waiting.
    pub(crate) fn queued(&self, tenant: &str) -> usize {
        self.queues.get(tenant).map_or(0, VecDeque::len)
    }

    /// Gives the tenant whose turn it is its oldest item that `take` accepts (items it refuses
    /// are dropped: a claim whose owner gave up). The tenant goes to the end of the turn while
    /// it has items left. `None` when nobody waits; `Some((tenant, None))` when the tenant had
    /// only refused items.
    pub(crate) fn next_turn<R>(
        &mut self,
        mut take: impl FnMut(T) -> Option<R>,
    ) -> Option<(Arc<str>, Option<R>)> {
        let tenant = self.ring.pop_front()?;
        let mut taken = None;
        if let Some(queue) = self.queues.get_mut(&tenant) {
            while let Some(item) = queue.pop_front() {
                taken = take(item);
                if taken.is_some() {
                    break;
                }
            }
            if queue.is_empty() {
                self.queues.remove(&tenant);
            } else {
                self.ring.push_back(tenant.clone());
            }
        }
        Some((tenant, taken))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_take_turns_whatever_they_queued() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut rr = RoundRobin::default();
        for i in 0..3 {
            rr.push(&a, i);
        }
        rr.push(&b, 10);
        assert_eq!(rr.queued("a"), 3);
        let order: Vec<_> = std::iter::from_fn(|| rr.next_turn(Some))
            .map(|(t, v)| (t.to_string(), v.unwrap()))
            .collect();
        assert_eq!(
            order,
            [("a", 0), ("b", 10), ("a", 1), ("a", 2)].map(|(t, v)| (t.to_string(), v))
        );
        assert_eq!(rr.queued("a"), 0);
        // Refused items are dropped; the tenant still had its turn.
        rr.push(&a, 1);
        rr.push(&a, 2);
        assert_eq!(
            rr.next_turn(|v| (v == 2).then_some(v)),
            Some((a.clone(), Some(2)))
        );
        assert!(rr.next_turn(Some).is_none());
    }
}
