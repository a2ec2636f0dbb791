//! Compiled components keyed by the sha256 of their bytes: N tenants uploading the same bytes
//! share one compile and one `InstancePre`. Artifacts are also written under the data dir, keyed
//! by hash and engine compatibility, so a restart does not recompile (`disk.rs`).
//!
//! A proxy-wasm module is compiled twice (docs/proxy-wasm.md, "Upload until served"): first by
//! the baseline engine (Winch, a fraction of Cranelift's compile time), whose code serves at
//! once, then by the main engine (Cranelift) in the background ([`ComponentCache::optimize`]);
//! the optimized plugin then replaces the baseline one here, which is marked superseded so that
//! holders take the new one for their next request.
//!
//! Its own small LRU rather than `moka` or `quick_cache`, for three things they would need
//! bending to: a plugin some request holds is never evicted (evicting it would not free its
//! memory, and its next request would load a second copy beside it); concurrent identical
//! uploads share one compile, its failure included (`OnceLock` per key); and eviction runs when
//! the control plane says (`trim`), off the request path. The whole of it is `slot`, `touch` and
//! `trim`.

mod compile;
mod disk;
mod plugin;
mod sweep;

pub use plugin::{CompiledPlugin, Exports, Tier};
pub use sweep::Swept;

use compile::{classify, compile, describe, Code, Kind};

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};
use wasmtime::component::Linker;
use wasmtime::{Engine, Module};
use wharf_metrics::Metrics;

use crate::error::RejectError;
use crate::footprint::Footprint;
use crate::state::PluginState;

type Slot = Arc<OnceLock<Result<Arc<CompiledPlugin>, RejectError>>>;

/// One compiler's engine, what links proxy-wasm modules on it, and its disk directory.
struct Target {
    engine: Engine,
    /// Links proxy-wasm modules: the ABI's `env` functions and the WASI subset.
    core_linker: wasmtime::Linker<PluginState>,
    disk: disk::DiskDir,
}

impl Target {
    fn new(engine: Engine, cache_dir: Option<&Path>, tier: Tier) -> Target {
        Target {
            core_linker: crate::proxy_wasm::linker(&engine),
            disk: disk::DiskDir::new(cache_dir, &engine, tier),
            engine,
        }
    }
}

pub struct ComponentCache {
    /// The main engine (Cranelift): components, and modules' optimized code.
    optimized: Target,
    /// The baseline engine (Winch): modules' first code (`None`: compiled optimized directly).
    baseline: Option<Target>,
    /// Modules smaller than this are compiled optimized directly: Cranelift takes about a
    /// second per MB, so a small module serves as soon either way, without a switch of VMs.
    baseline_min_bytes: usize,
    /// Links components (main engine).
    linker: Linker<PluginState>,
    entries: Mutex<HashMap<String, Slot>>,
    /// Bytes of compiled code kept for plugins nothing else holds.
    budget_bytes: u64,
    ticks: AtomicU64,
    metrics: Arc<Metrics>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ComponentCache {
    pub fn new(
        engine: Engine,
        baseline: Option<(Engine, usize)>,
        linker: Linker<PluginState>,
        cache_dir: Option<&Path>,
        budget_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        ComponentCache {
            optimized: Target::new(engine, cache_dir, Tier::Optimized),
            baseline_min_bytes: baseline.as_ref().map_or(usize::MAX, |(_, min)| *min),
            baseline: baseline.map(|(e, _)| Target::new(e, cache_dir, Tier::Baseline)),
            linker,
            entries: Mutex::new(HashMap::new()),
            budget_bytes,
            ticks: AtomicU64::new(0),
            metrics,
        }
    }

    /// The compiled component for `sha256` if memory has it; no disk access.
    pub fn get_in_memory(&self, sha256: &str) -> Option<Arc<CompiledPlugin>> {
        let entries = self.entries.lock();
        let Some(Ok(hit)) = entries.get(sha256)?.get() else {
            return None;
        };
        self.metrics
            .compiled_cache_hits_total
            .with_label_values(&["memory"])
            .inc();
        self.touch(hit);
        Some(hit.clone())
    }

    /// The baseline engine, if modules are compiled with it first.
    pub fn baseline_engine(&self) -> Option<&Engine> {
        self.baseline.as_ref().map(|t| &t.engine)
    }

    /// Whether the disk cache holds optimized code for `sha256` with its footprint (not checked
    /// until loaded): one written before footprints were kept is compiled again from its bytes.
    /// Baseline code on disk does not count: loading it needs the bytes to optimize them.
    pub fn on_disk(&self, sha256: &str) -> bool {
        self.optimized.disk.holds(sha256)
    }

    /// The compiled component for `sha256` if memory has it, or the disk its optimized code;
    /// never compiles. Reading from disk blocks: async callers use
    /// [`crate::PluginRuntime::load`].
    pub fn get(&self, sha256: &str) -> Option<Arc<CompiledPlugin>> {
        if let Some(hit) = self.get_in_memory(sha256) {
            return Some(hit);
        }
        let target = &self.optimized;
        let (code, footprint) = target.disk.load(&target.engine, sha256)?;
        let compiled = self
            .prepare(sha256, code, footprint, Tier::Optimized)
            .ok()?;
        let slot = self.slot(sha256);
        let stored = slot.get_or_init(|| Ok(compiled));
        self.metrics
            .compiled_cache_hits_total
            .with_label_values(&["disk"])
            .inc();
        self.update_gauge();
        stored.as_ref().ok().cloned()
    }

    /// The compiled component for `bytes`, compiling once per distinct content. Concurrent callers
    /// with the same bytes wait for the one compile.
    pub fn get_or_compile(&self, bytes: &[u8]) -> Result<Arc<CompiledPlugin>, RejectError> {
        self.get_or_compile_hashed(&sha256_hex(bytes), bytes)
    }

    /// [`ComponentCache::get_or_compile`] for bytes whose digest the caller has already taken
    /// (a 32 MB upload is hashed once, not at every step).
    pub fn get_or_compile_hashed(
        &self,
        sha: &str,
        bytes: &[u8],
    ) -> Result<Arc<CompiledPlugin>, RejectError> {
        let sha = sha.to_string();
        if let Some(hit) = self.get(&sha) {
            return Ok(hit);
        }
        let slot = self.slot(&sha);
        let mut compiled_here = false;
        let result = slot
            .get_or_init(|| {
                compiled_here = true;
                let kind = classify(bytes)?;
                if kind == Kind::Module && bytes.len() >= self.baseline_min_bytes {
                    if let Some(baseline) = self.baseline_of(&sha, bytes) {
                        return Ok(baseline);
                    }
                }
                self.metrics.compiled_cache_misses_total.inc();
                let code = compile(&self.optimized.engine, kind, bytes)?;
                self.count_compile(Tier::Optimized);
                let footprint = match code {
                    Code::Component(_) => Footprint::of(bytes)
                        .map_err(|e| RejectError::NotAComponent(e.to_string()))?,
                    Code::Module(_) => Footprint::MODULE,
                };
                self.optimized.disk.store(&sha, &code, footprint);
                self.prepare(&sha, code, footprint, Tier::Optimized)
            })
            .clone();
        if compiled_here {
            if result.is_err() {
                // Refusals are not cached: the same bytes may pass once the engine changes.
                self.entries.lock().remove(&sha);
            }
            self.update_gauge();
        } else if result.is_ok() {
            self.metrics
                .compiled_cache_hits_total
                .with_label_values(&["memory"])
                .inc();
        }
        result
    }

    /// A module's baseline code, from the disk cache or compiled by Winch; `None` without a
    /// baseline engine, or when Winch cannot compile it (the caller compiles it optimized).
    fn baseline_of(&self, sha: &str, bytes: &[u8]) -> Option<Arc<CompiledPlugin>> {
        let target = self.baseline.as_ref()?;
        let code = match target.disk.load(&target.engine, sha) {
            Some((code, _)) => {
                self.metrics
                    .compiled_cache_hits_total
                    .with_label_values(&["disk"])
                    .inc();
                code
            }
            None => {
                self.metrics.compiled_cache_misses_total.inc();
                let code = match Module::new(&target.engine, bytes) {
                    Ok(module) => Code::Module(module),
                    Err(e) => {
                        tracing::info!(
                            "baseline compile of {sha} failed, compiling it optimized: {}",
                            describe(&e)
                        );
                        return None;
                    }
                };
                self.count_compile(Tier::Baseline);
                // Written to disk by the optimizer (`optimize`), off the upload's path: Winch's
                // code is 3.5 times the module's size, 33 MB for a 9.7 MB Go plugin.
                code
            }
        };
        self.prepare(sha, code, Footprint::MODULE, Tier::Baseline)
            .inspect_err(|e| tracing::info!("baseline code of {sha} unusable ({e}); optimizing"))
            .ok()
    }

    /// Compiles a module's optimized code (its baseline code serving meanwhile), stores it on
    /// disk and, if memory still holds the baseline plugin, puts it in its place and marks that
    /// one superseded: requests holding it finish on it, the next ones take the optimized one.
    /// Blocking and long: runs on the optimizer thread only.
    pub fn optimize(&self, sha: &str, bytes: &[u8]) {
        self.store_baseline(sha);
        let module = match Module::new(&self.optimized.engine, bytes) {
            Ok(m) => m,
            Err(e) => {
                // Winch compiled it, Cranelift would not: it keeps serving its baseline code.
                tracing::warn!(
                    "optimizing {sha} failed, it stays on baseline code: {}",
                    describe(&e)
                );
                return;
            }
        };
        let code = Code::Module(module);
        self.optimized.disk.store(sha, &code, Footprint::MODULE);
        match self.prepare(sha, code, Footprint::MODULE, Tier::Optimized) {
            Ok(optimized) => self.replace_baseline(sha, optimized),
            Err(e) => {
                tracing::warn!("optimized code of {sha} unusable, it stays on baseline code: {e}");
                return;
            }
        }
        // Counted once in place: whoever sees the count finds the optimized code.
        self.count_compile(Tier::Optimized);
    }

    /// Writes the baseline code memory holds for `sha` to disk: a node restarting before the
    /// optimization ends loads it instead of compiling again.
    fn store_baseline(&self, sha: &str) {
        let Some(target) = &self.baseline else {
            return;
        };
        let module = {
            let entries = self.entries.lock();
            match entries.get(sha).and_then(|slot| slot.get()) {
                Some(Ok(p)) if p.tier == Tier::Baseline => match &p.exports {
                    Exports::ProxyWasm(code) => code.pre.module().clone(),
                    _ => return,
                },
                _ => return,
            }
        };
        if !target.disk.holds(sha) {
            target
                .disk
                .store(sha, &Code::Module(module), Footprint::MODULE);
        }
    }

    /// Puts `optimized` in the place of its baseline plugin, if memory still holds that one.
    fn replace_baseline(&self, sha: &str, optimized: Arc<CompiledPlugin>) {
        let mut entries = self.entries.lock();
        // Evicted meanwhile: the disk has the optimized code for its next load.
        let Some(Some(Ok(baseline))) = entries.get(sha).map(|slot| slot.get()) else {
            return;
        };
        if baseline.tier != Tier::Baseline {
            return;
        }
        let baseline = baseline.clone();
        entries.insert(sha.to_string(), Arc::new(OnceLock::from(Ok(optimized))));
        baseline.superseded.store(true, Ordering::Release);
    }

    /// An optimization the optimizer's queue had no room for.
    pub(crate) fn count_dropped_optimization(&self) {
        self.metrics
            .plugin_compiles_total
            .with_label_values(&["dropped"])
            .inc();
    }

    fn count_compile(&self, tier: Tier) {
        self.metrics
            .plugin_compiles_total
            .with_label_values(&[tier.compiler()])
            .inc();
    }

    fn slot(&self, sha: &str) -> Slot {
        let mut entries = self.entries.lock();
        entries.entry(sha.to_string()).or_default().clone()
    }

    /// Marks a plugin as just used: the eviction order.
    pub fn touch(&self, plugin: &CompiledPlugin) {
        let now = self.ticks.fetch_add(1, Ordering::Relaxed);
        plugin.last_used.store(now, Ordering::Relaxed);
    }

    /// Evicts compiled plugins that nothing but this cache holds (no request runs them: routes
    /// hold only weak references and load them again on their next request), least recently
    /// used first, until the code kept is within budget. Plugins in use stay whatever their
    /// size: they are needed.
    pub fn trim(&self) {
        let mut entries = self.entries.lock();
        let mut total = 0u64;
        let mut idle: Vec<(u64, u64, String)> = Vec::new();
        for (sha, slot) in entries.iter() {
            if let Some(Ok(p)) = slot.get() {
                total += p.code_bytes;
                // The slot's own reference is the only one.
                if Arc::strong_count(p) == 1 {
                    idle.push((
                        p.last_used.load(Ordering::Relaxed),
                        p.code_bytes,
                        sha.clone(),
                    ));
                }
            }
        }
        idle.sort();
        for (_, bytes, sha) in idle {
            if total <= self.budget_bytes {
                break;
            }
            entries.remove(&sha);
            total -= bytes;
            self.metrics.compiled_cache_evictions_total.inc();
        }
        self.metrics.compiled_cache_bytes.set(total as i64);
        let n = entries
            .values()
            .filter(|s| matches!(s.get(), Some(Ok(_))))
            .count();
        self.metrics.compiled_components.set(n as i64);
    }

    fn update_gauge(&self) {
        self.trim();
    }

    /// Checks the component against the world (imports we provide, exports we call), or the
    /// proxy-wasm module against the ABI host.
    fn prepare(
        &self,
        sha: &str,
        code: Code,
        footprint: Footprint,
        tier: Tier,
    ) -> Result<Arc<CompiledPlugin>, RejectError> {
        let (exports, image, (reads_body, reads_headers), plain) = match code {
            Code::Component(component) => {
                let pre = self
                    .linker
                    .instantiate_pre(&component)
                    .map_err(|e| RejectError::WrongWorld(describe(&e)))?;
                let exports = Exports::of(&component, pre)?;
                let plain = crate::fiberless::plain(&component, &self.optimized.engine, &exports);
                let imports = |interface: &str| {
                    component
                        .component_type()
                        .imports(&self.optimized.engine)
                        .any(|(name, _)| name.starts_with(interface))
                };
                let reads = (
                    imports(crate::capabilities::body::INTERFACE),
                    imports(crate::capabilities::request::INTERFACE),
                );
                (exports, component.image_range(), reads, plain)
            }
            Code::Module(module) => {
                let linker = match (tier, &self.baseline) {
                    (Tier::Baseline, Some(baseline)) => &baseline.core_linker,
                    _ => &self.optimized.core_linker,
                };
                let code = crate::proxy_wasm::ProxyWasmCode::new(linker, &module)
                    .map_err(|e| RejectError::ProxyWasm(describe(&e)))?;
                (
                    Exports::ProxyWasm(code),
                    module.image_range(),
                    (false, false),
                    None,
                )
            }
        };
        Ok(Arc::new(CompiledPlugin {
            sha256: sha.to_string(),
            exports,
            code_bytes: (image.end as u64).saturating_sub(image.start as u64),
            slots: footprint.slots(),
            reads_body,
            reads_headers,
            tier,
            superseded: AtomicBool::new(false),
            last_used: AtomicU64::new(self.ticks.fetch_add(1, Ordering::Relaxed)),
            io_calls: AtomicU8::new(0),
            plain,
            long_calls: AtomicU8::new(0),
        }))
    }
}
