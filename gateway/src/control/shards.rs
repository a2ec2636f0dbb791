//! A map that successive routing tables share: it is split into shards behind `Arc`s, so a new
//! table is a copy of the shard pointers and a change copies only the shards it touches. One
//! tenant's change then costs the same at 100 tenants as at 10,000.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

const SHARDS: usize = 64;

#[derive(Clone)]
pub(super) struct Shared<V> {
    shards: Vec<Arc<HashMap<String, V>>>,
}

impl<V: Clone> Default for Shared<V> {
    fn default() -> Self {
        Shared {
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::new())).collect(),
        }
    }
}

impl<V: Clone> Shared<V> {
    pub(super) fn get(&self, key: &str) -> Option<&V> {
        self.shards[shard(key)].get(key)
    }

    pub(super) fn insert(&mut self, key: String, value: V) {
        Arc::make_mut(&mut self.shards[shard(&key)]).insert(key, value);
    }

    pub(super) fn remove(&mut self, key: &str) {
        let i = shard(key);
        if self.shards[i].contains_key(key) {
            Arc::make_mut(&mut self.shards[i]).remove(key);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(|s| s.values())
    }
}

/// The shard of a key. A fixed hash (shards only spread the keys; each shard's own map keeps
/// its randomized hasher against crafted collisions).
fn shard(key: &str) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_shares_untouched_shards() {
        let mut a: Shared<u32> = Shared::default();
        for i in 0..1000 {
            a.insert(format!("k{i}"), i);
        }
        let mut b = a.clone();
        b.insert("k1".into(), 7);
        b.remove("k2");
        assert_eq!(a.get("k1"), Some(&1));
        assert_eq!(b.get("k1"), Some(&7));
        assert_eq!(a.get("k2"), Some(&2));
        assert_eq!(b.get("k2"), None);
        let shared = a
            .shards
            .iter()
            .zip(&b.shards)
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(shared >= SHARDS - 2, "only the touched shards were copied");
        assert_eq!(b.values().count(), 999);
    }
}
