//! Memory accounting for one store. wasmtime's `StoreLimits` caps each memory on its own; a
//! tenant's limit is for the sum of all memories and tables, so we count ourselves.

use wasmtime::ResourceLimiter;

/// Table elements are charged as pointers.
const TABLE_ELEMENT_BYTES: usize = 8;

pub struct StoreLimiter {
    limit: usize,
    used: usize,
    /// Set when a growth was refused, so a later trap is reported as a memory limit.
    pub hit: bool,
}

impl StoreLimiter {
    pub fn new(limit_bytes: u64) -> Self {
        StoreLimiter {
            limit: usize::try_from(limit_bytes).unwrap_or(usize::MAX),
            used: 0,
            hit: false,
        }
    }

    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let next = self.used.saturating_sub(current).saturating_add(desired);
        if next > self.limit {
            self.hit = true;
            return false;
        }
        self.used = next;
        true
    }
}

impl ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current * TABLE_ELEMENT_BYTES, desired * TABLE_ELEMENT_BYTES))
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_across_memories() {
        let mut l = StoreLimiter::new(100);
        assert!(l.grow(0, 60));
        assert!(
            !l.grow(0, 60),
            "a second memory counts against the same budget"
        );
        assert!(l.hit);
        assert!(l.grow(60, 100));
        assert!(!l.grow(100, 101));
    }
}
