//! Runtime settings (process-wide, from the bootstrap file) and per-tenant limits.

use serde::{Deserialize, Serialize};

/// Sizes the shared engine and its instance pool.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Use the pooling allocator (falls back to on-demand if its address space can't be reserved).
    pub pooling: bool,
    /// Plugin instances alive at once across all tenants (one per plugin per in-flight request).
    pub max_instances: u32,
    /// Largest linear memory any plugin may have; tenants' limits sit below this.
    pub max_memory_bytes: u64,
    /// Epoch tick, in microseconds: the granularity of deadlines and the length of a time slice
    /// on the plugin CPU (a waiting tenant waits at most about one tick for its turn).
    pub epoch_tick_us: u64,
    /// The same in milliseconds (older configs); when set it wins over `epoch_tick_us`.
    pub epoch_tick_ms: Option<u64>,
    /// How long a request waits for a free pool slot before failing with `plugin_capacity`.
    pub pool_wait_ms: u64,
    /// Largest plugin upload accepted.
    pub max_plugin_bytes: usize,
    /// Threads that run plugins, apart from the proxy's (0: one per core). Also the number of
    /// plugins running at once, shared fairly between tenants.
    pub threads: usize,
    /// How much lower than the proxy's the plugin threads' priority is (Linux nice).
    pub nice: i32,
    /// Longest a request's plugin may wait in total for the plugin CPU or its tenant's instance
    /// quota before failing with `plugin_capacity` (waiting is never charged to its deadline).
    pub queue_ms: u64,
    /// Compiled code kept in memory for plugins no route uses any more (old versions, removed
    /// tenants), evicted least recently used first past this many bytes. Plugins in use are
    /// never evicted; an evicted one reloads from the disk cache.
    pub compiled_cache_bytes: u64,
    /// proxy-wasm modules compile first with Winch (wasmtime's baseline compiler: several times
    /// faster to compile, slower code) and serve from that code while Cranelift compiles them
    /// in the background at low priority; new VMs then use the optimized code. Off: they are
    /// compiled optimized before the upload is answered.
    pub baseline_compile: bool,
    /// Modules smaller than this compile optimized directly (Cranelift takes about a second
    /// per MB: a small one serves as soon, and its VM never switches code).
    pub baseline_min_bytes: usize,
    /// Compiled code on disk for content no plugin version in the store has any more (deleted
    /// versions, plugins and tenants) and nothing on the node compiles or runs is removed once it is
    /// this old; so is baseline code whose optimized code is there, and the directories of
    /// engines this node no longer runs. Short: it bounds what a tenant uploading and deleting in
    /// a loop leaves on every node's disk.
    pub compiled_disk_grace_s: u64,
}

impl RuntimeSettings {
    /// The epoch tick in effect (at least 50 µs).
    pub fn epoch_tick(&self) -> std::time::Duration {
        let us = match self.epoch_tick_ms {
            Some(ms) => ms.saturating_mul(1000),
            None => self.epoch_tick_us,
        };
        std::time::Duration::from_micros(us.max(50))
    }
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            pooling: true,
            max_instances: 1000,
            max_memory_bytes: 64 << 20,
            epoch_tick_us: 100,
            epoch_tick_ms: None,
            pool_wait_ms: 50,
            max_plugin_bytes: 32 << 20,
            threads: 0,
            nice: 10,
            queue_ms: 1000,
            compiled_cache_bytes: 256 << 20,
            baseline_compile: true,
            baseline_min_bytes: 1 << 20,
            compiled_disk_grace_s: 120,
        }
    }
}
