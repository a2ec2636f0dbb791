//! Compiled components keyed by the sha256 of their bytes: N tenants uploading the same bytes
//! share one compile and one `InstancePre`. Artifacts are also written under the data dir, keyed
//! by hash and engine compatibility, so a restart does not recompile. Only files this cache
//! wrote itself (and whose digest still matches) are ever deserialized.
//!
//! Its own small LRU rather than `moka` or `quick_cache`, for three things they would need
//! bending to: a plugin some request holds is never evicted (evicting it would not free its
//! memory, and its next request would load a second copy beside it); concurrent identical
//! uploads share one compile, its failure included (`OnceLock` per key); and eviction runs when
//! the control plane says (`trim`), off the request path. The whole of it is `slot`, `touch` and
//! `trim`.
// The workspace denies unsafe code; this module needs it: compiled code is deserialized from files this cache wrote and checked.
#![allow(unsafe_code)]

use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Module};
use wharf_metrics::Metrics;

use wasmtime::component::InstancePre;

use crate::bindings::classic::HttpPluginPre;
use crate::bindings::filter::RequestFilterPre;
use crate::bindings::response_body::ResponseBodyPluginPre;
use crate::error::RejectError;
use crate::footprint::Footprint;
use crate::state::PluginState;

/// A plugin's exports, checked once when it is compiled: which it has says its world.
pub enum Exports {
    /// `http-plugin` / `body-plugin`: `on-request` with every header, `on-response`.
    Classic(HttpPluginPre<PluginState>),
    /// `response-body-plugin`: the classic phases and `on-response-body`.
    ResponseBody(ResponseBodyPluginPre<PluginState>),
    /// `request-filter` / `request-body-filter`: `handle-request` with the head only; no
    /// response phase.
    RequestFilter(RequestFilterPre<PluginState>),
    /// A proxy-wasm module (Envoy's ABI), run in a long-lived VM (`proxy_wasm::pool`).
    ProxyWasm(crate::proxy_wasm::ProxyWasmCode),
}

impl Exports {
    fn of(component: &Component, pre: InstancePre<PluginState>) -> Result<Exports, RejectError> {
        let wrong = |e: wasmtime::Error| RejectError::WrongWorld(describe(&e));
        if component.get_export_index(None, "handle-request").is_some() {
            return RequestFilterPre::new(pre)
                .map(Exports::RequestFilter)
                .map_err(wrong);
        }
        if component
            .get_export_index(None, "on-response-body")
            .is_some()
        {
            return ResponseBodyPluginPre::new(pre)
                .map(Exports::ResponseBody)
                .map_err(wrong);
        }
        HttpPluginPre::new(pre).map(Exports::Classic).map_err(wrong)
    }

    /// Whether the plugin has a response phase (its instance lives until the response).
    pub fn has_response_phase(&self) -> bool {
        match self {
            Exports::RequestFilter(_) => false,
            Exports::ProxyWasm(code) => code.has_response_phase(),
            _ => true,
        }
    }

    /// Whether it reads the response body (the proxy holds the body back for it).
    pub fn reads_response_body(&self) -> bool {
        matches!(self, Exports::ResponseBody(_))
    }
}

/// A component ready to instantiate cheaply for every request.
pub struct CompiledPlugin {
    pub sha256: String,
    /// Its exports, by the world it was built for.
    pub exports: Exports,
    /// Size of its compiled code image: what it counts against the cache's budget.
    pub code_bytes: u64,
    /// Instance slots each of its instances takes from the pool and the tenant's quota.
    pub slots: u32,
    /// It imports `wharf:plugin/body`: the proxy reads the request body whole for it.
    pub reads_body: bool,
    /// When the cache last handed it out (cache ticks): the eviction order.
    last_used: AtomicU64,
}

type Slot = Arc<OnceLock<Result<Arc<CompiledPlugin>, RejectError>>>;

pub struct ComponentCache {
    engine: Engine,
    linker: Linker<PluginState>,
    /// Links proxy-wasm modules: the ABI's `env` functions and the WASI subset.
    core_linker: wasmtime::Linker<PluginState>,
    dir: Option<PathBuf>,
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
        linker: Linker<PluginState>,
        cache_dir: Option<&Path>,
        budget_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        // One subdirectory per engine configuration: compiled code is only valid for the
        // engine that made it.
        let dir = cache_dir.map(|d| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            d.join(format!("{:016x}", h.finish()))
        });
        ComponentCache {
            core_linker: crate::proxy_wasm::linker(&engine),
            engine,
            linker,
            dir,
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

    /// Whether the disk cache holds an artifact for `sha256` with its footprint (not checked
    /// until loaded): one written before footprints were kept is compiled again from its bytes.
    pub fn on_disk(&self, sha256: &str) -> bool {
        self.paths(sha256).is_some_and(|(artifact, digest)| {
            artifact.is_file() && Self::footprint_path(&digest).is_file()
        })
    }

    /// The compiled component for `sha256` if memory or disk has it; never compiles. Reading
    /// from disk blocks: async callers use [`crate::PluginRuntime::load`].
    pub fn get(&self, sha256: &str) -> Option<Arc<CompiledPlugin>> {
        if let Some(hit) = self.get_in_memory(sha256) {
            return Some(hit);
        }
        let (code, footprint) = self.load_from_disk(sha256)?;
        let compiled = self.prepare(sha256, code, footprint).ok()?;
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
                self.metrics.compiled_cache_misses_total.inc();
                let code = compile(&self.engine, bytes)?;
                let footprint = match code {
                    Code::Component(_) => Footprint::of(bytes)
                        .map_err(|e| RejectError::NotAComponent(e.to_string()))?,
                    Code::Module(_) => Footprint::MODULE,
                };
                self.store_on_disk(&sha, &code, footprint);
                self.prepare(&sha, code, footprint)
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
    ) -> Result<Arc<CompiledPlugin>, RejectError> {
        let (exports, image, reads_body) = match code {
            Code::Component(component) => {
                let pre = self
                    .linker
                    .instantiate_pre(&component)
                    .map_err(|e| RejectError::WrongWorld(describe(&e)))?;
                let exports = Exports::of(&component, pre)?;
                let reads_body = component
                    .component_type()
                    .imports(&self.engine)
                    .any(|(name, _)| name.starts_with(crate::capabilities::body::INTERFACE));
                (exports, component.image_range(), reads_body)
            }
            Code::Module(module) => {
                let code = crate::proxy_wasm::ProxyWasmCode::new(&self.core_linker, &module)
                    .map_err(|e| RejectError::ProxyWasm(describe(&e)))?;
                (Exports::ProxyWasm(code), module.image_range(), false)
            }
        };
        Ok(Arc::new(CompiledPlugin {
            sha256: sha.to_string(),
            exports,
            code_bytes: (image.end as u64).saturating_sub(image.start as u64),
            slots: footprint.slots(),
            reads_body,
            last_used: AtomicU64::new(self.ticks.fetch_add(1, Ordering::Relaxed)),
        }))
    }

    fn paths(&self, sha: &str) -> Option<(PathBuf, PathBuf)> {
        // `sha` is our own hex digest, but never let it name a path outside the cache.
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let dir = self.dir.as_ref()?;
        Some((
            dir.join(format!("{sha}.cwasm")),
            dir.join(format!("{sha}.cwasm.sha256")),
        ))
    }

    /// Beside an artifact: its component's footprint, which the compiled code does not tell.
    fn footprint_path(digest: &Path) -> PathBuf {
        digest.with_extension("footprint")
    }

    fn store_on_disk(&self, sha: &str, code: &Code, footprint: Footprint) {
        let Some((artifact, digest)) = self.paths(sha) else {
            return;
        };
        let write = || -> std::io::Result<()> {
            let bytes = match code {
                Code::Component(c) => c.serialize(),
                Code::Module(m) => m.serialize(),
            }
            .map_err(std::io::Error::other)?;
            std::fs::create_dir_all(artifact.parent().unwrap_or(Path::new(".")))?;
            let tmp = artifact.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, &bytes)?;
            std::fs::write(&digest, sha256_hex(&bytes))?;
            let Footprint {
                core_instances,
                memories,
                tables,
            } = footprint;
            std::fs::write(
                Self::footprint_path(&digest),
                format!("{core_instances} {memories} {tables}"),
            )?;
            std::fs::rename(&tmp, &artifact)
        };
        if let Err(e) = write() {
            tracing::warn!("cannot write compiled component {sha} to disk cache: {e}");
        }
    }

    /// An artifact and its footprint; one written before footprints were kept is compiled again.
    fn load_from_disk(&self, sha: &str) -> Option<(Code, Footprint)> {
        let (artifact, digest) = self.paths(sha)?;
        let counts: Vec<u32> = std::fs::read_to_string(Self::footprint_path(&digest))
            .ok()?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [core_instances, memories, tables] = counts[..] else {
            return None;
        };
        let footprint = Footprint {
            core_instances,
            memories,
            tables,
        };
        let bytes = std::fs::read(&artifact).ok()?;
        let expected = std::fs::read_to_string(&digest).ok()?;
        if sha256_hex(&bytes) != expected.trim() {
            tracing::warn!("disk cache entry {sha} does not match its digest; recompiling");
            return None;
        }
        // The file was produced by `Component::serialize` (or `Module::serialize`, as its
        // footprint says) of an engine with the same compatibility hash (it is in the directory
        // name) and its digest matches what we wrote.
        let code = if footprint == Footprint::MODULE {
            // SAFETY: as above, a module artifact this cache wrote.
            unsafe { Module::deserialize(&self.engine, &bytes) }.map(Code::Module)
        } else {
            // SAFETY: as above, a component artifact this cache wrote.
            unsafe { Component::deserialize(&self.engine, &bytes) }.map(Code::Component)
        };
        match code {
            Ok(c) => Some((c, footprint)),
            Err(e) => {
                tracing::warn!("disk cache entry {sha} unusable ({e}); recompiling");
                None
            }
        }
    }
}

/// Compiled code: a component of Wharf's world, or a proxy-wasm core module.
enum Code {
    Component(Component),
    Module(Module),
}

fn compile(engine: &Engine, bytes: &[u8]) -> Result<Code, RejectError> {
    const CORE_MODULE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    if bytes.starts_with(&CORE_MODULE) {
        return match crate::proxy_wasm::inspect(bytes) {
            Ok(Some(_)) => Module::new(engine, bytes)
                .map(Code::Module)
                .map_err(|e| RejectError::ProxyWasm(describe(&e))),
            Err(e) => Err(RejectError::ProxyWasm(e.to_string())),
            Ok(None) => Err(RejectError::NotAComponent(
                "this is a core wasm module; wrap it with `wasm-tools component new`".into(),
            )),
        };
    }
    Component::new(engine, bytes)
        .map(Code::Component)
        .map_err(|e| RejectError::NotAComponent(describe(&e)))
}

fn describe(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.chars().take(600).collect()
}
