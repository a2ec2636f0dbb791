//! Heap allocations of the whole process, counted by the binary's global allocator while
//! `WHARF_COUNT_ALLOCATIONS=1` and exported as `wharf_heap_allocations_total`: per-request
//! allocation counts (docs/benchmarks.md) come from this counter divided by
//! `wharf_requests_total`. Off by default: a shared atomic per allocation costs the proxy.
// The workspace denies unsafe code; this module needs it: a global allocator wrapper is an unsafe trait by definition.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicU64 = AtomicU64::new(0);

/// Wraps the real allocator; counts `alloc`, `alloc_zeroed` and `realloc` calls while enabled.
pub struct Counting<A>(pub A);

impl<A> Counting<A> {
    #[inline]
    fn count(&self) {
        if COUNTING.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to the wrapped allocator; counting touches only
// static atomics (no allocation, no thread-locals), so it cannot recurse or observe freed state.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: the caller's contract is passed on as is.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: as above.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        // SAFETY: as above.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

/// Turns counting on when `WHARF_COUNT_ALLOCATIONS=1` (call once, early in `main`).
pub fn enable_from_env() {
    if std::env::var("WHARF_COUNT_ALLOCATIONS").as_deref() == Ok("1") {
        COUNTING.store(true, Ordering::Relaxed);
    }
}

/// Allocations counted so far (0 while counting is off).
pub fn count() -> u64 {
    COUNT.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_while_enabled() {
        let a = Counting(std::alloc::System);
        let layout = Layout::from_size_align(16, 8).unwrap();
        let before = count();
        // SAFETY: a valid non-zero layout; the block is freed with the same layout.
        unsafe { a.dealloc(a.alloc(layout), layout) };
        assert_eq!(count(), before, "off by default");
        COUNTING.store(true, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { a.dealloc(a.alloc(layout), layout) };
        COUNTING.store(false, Ordering::Relaxed);
        assert_eq!(count(), before + 1);
    }
}
