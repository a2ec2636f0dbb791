//! The wasmtime engines every tenant shares, and their epoch ticker: the main engine
//! (Cranelift, optimized code, the pooling allocator) and, for proxy-wasm modules, a baseline
//! engine (Winch) whose code serves right after an upload while Cranelift's compiles in the
//! background (docs/proxy-wasm.md, "Upload until served").

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy};

use crate::settings::RuntimeSettings;

/// Builds the engine; the bool says whether the pooling allocator is in use.
pub fn build(settings: &RuntimeSettings) -> anyhow::Result<(Engine, bool)> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    config.epoch_interruption(true);
    // One compile uses one core: a tenant's compile bomb must not take the whole machine.
    config.parallel_compilation(false);
    if settings.pooling {
        let n = settings.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            // Python components (componentize-py) hold ~40 core instances; C ones 1-3.
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(2))
            .total_stacks(n)
            .max_memories_per_component(4)
            .max_tables_per_component(4)
            .max_core_instances_per_component(64)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            .max_memory_size(usize::try_from(settings.max_memory_bytes).unwrap_or(usize::MAX))
            // Reset small, hot memories with memset instead of madvise: syscalls dominate a
            // microsecond-scale instantiation.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(64 << 10)
            // Decommit in batches: memory a plugin grew past `keep_resident` goes back in one
            // `process_madvise` per 32 drops, not one `madvise` (and TLB flush) per drop; a batch
            // of 1 raised another tenant's p99 under a hostile one's attack (docs/benchmarks.md,
            // tenth session). A slot with nothing to decommit, the usual case, skips the batch and
            // is back at once (Wharf's wasmtime patch, vendor/README.md).
            .decommit_batch_size(32)
            // Reset only the pages an instance wrote (found by Linux's PAGEMAP_SCAN, 6.7+), not
            // every byte it could reach: a C plugin's 128 KiB memory was memset whole at each
            // drop (4.5 µs of a request's proxy CPU, perf). Elsewhere: the memset as before.
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&config) {
            Ok(engine) => return Ok((engine, true)),
            Err(e) => tracing::warn!(
                "pooling allocator unavailable ({e}); falling back to on-demand allocation, which is \
                 slower per request. Lower plugins.max_instances or raise the address-space limit"
            ),
        }
        config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    }
    let engine =
        Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;
    Ok((engine, false))
}

/// The baseline engine: Winch, with the same fuel and epoch interruption as the main engine (a
/// VM on it runs under the same deadline, yields and fuel), one core per compile. On-demand
/// allocation: it only starts long-lived proxy-wasm VMs, so a second pooling reservation would
/// buy nothing per request; memory is capped by each store's limiter as on the main engine.
/// `None` where Winch cannot be built (another architecture): modules are compiled optimized
/// directly, as before.
pub fn build_baseline(settings: &RuntimeSettings) -> Option<Engine> {
    if !settings.baseline_compile {
        return None;
    }
    let mut config = Config::new();
    config.strategy(Strategy::Winch);
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.parallel_compilation(false);
    config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    match Engine::new(&config) {
        Ok(engine) => Some(engine),
        Err(e) => {
            tracing::warn!(
                "baseline compiler (Winch) unavailable ({e}); proxy-wasm modules are compiled \
                 optimized before they serve"
            );
            None
        }
    }
}

/// Lets the epoch ticker rest while no plugin runs: without it an idle node, or one serving only
/// plugin-free routes, woke the ticker a thousand times a second (~1 µs of CPU per request at
/// 15–20k requests a second, measured by schedstat). The first plugin call after a rest wakes it.
#[derive(Default)]
pub struct TickerRest {
    resting: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

impl TickerRest {
    /// Called when a plugin starts running after none did: a resting ticker goes on ticking.
    pub fn wake(&self) {
        // Pairs with the fence in the ticker: either it sees the plugin running, or this sees it
        // resting.
        fence(Ordering::SeqCst);
        if self.resting.swap(false, Ordering::AcqRel) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}

/// How long the ticker keeps its idle pace (every millisecond) before it rests: calls that come
/// and go never wait for a wake-up, an idle node stops waking.
const REST_AFTER: Duration = Duration::from_millis(50);

/// At most this long at rest: the ticker notices its engines dropped (and a wake it could miss
/// costs at most this).
const REST_AT_MOST: Duration = Duration::from_secs(1);

/// Advances the engine's epoch every `tick` on an OS thread (not a tokio task: a busy runtime
/// must not delay deadlines) while `busy()` says plugins are running, every millisecond for a
/// moment after, then rests until `ticker` is woken (an idle gateway wakes it once a second). Stops when the
/// first engine is dropped. Every engine given advances together: a VM on the baseline engine
/// meets its deadline and yields its time slice exactly as one on the main engine.
pub fn start_epoch_ticker(
    engines: &[&Engine],
    tick: Duration,
    busy: impl Fn() -> bool + Send + 'static,
    ticker: Arc<TickerRest>,
) {
    let weak: Vec<_> = engines.iter().map(|e| e.weak()).collect();
    let idle = tick.max(Duration::from_millis(1));
    let spawned = std::thread::Builder::new()
        .name("wharf-epoch".into())
        .spawn(move || {
            let _ = ticker.thread.set(std::thread::current());
            let mut idle_for = Duration::ZERO;
            loop {
                if busy() {
                    idle_for = Duration::ZERO;
                    std::thread::sleep(tick);
                } else if idle_for < REST_AFTER {
                    idle_for += idle;
                    std::thread::sleep(idle);
                } else {
                    ticker.resting.store(true, Ordering::Relaxed);
                    fence(Ordering::SeqCst);
                    if !busy() {
                        std::thread::park_timeout(REST_AT_MOST);
                    }
                    ticker.resting.store(false, Ordering::Release);
                    if busy() {
                        // A call woke it: a whole tick before the call's first epoch.
                        idle_for = Duration::ZERO;
                        continue;
                    }
                    // Rested its longest: one epoch (which notices dropped engines), and rest again.
                }
                for (i, engine) in weak.iter().enumerate() {
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None if i == 0 => return,
                        None => {}
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the epoch ticker, plugin deadlines will not fire: {e}");
    }
}
