//! The plugin runtime: one engine for all tenants, the compiled-code cache and its compile
//! thread, the plugin threads with their fair CPU scheduler, and admission to the instance pool
//! (a global semaphore sized to the pool, and one per tenant at its quota), so one tenant can
//! never exhaust the pool, the plugin CPU or the compiler for the others.

mod admission;

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::capabilities::{InstanceContext, InstanceStates, NodeCapabilities, TenantCapabilities};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Linker;
use wasmtime::{Engine, Store};
use wharf_metrics::Metrics;

use crate::cache::{CompiledPlugin, ComponentCache};
use crate::clock::CallClock;
use crate::compiler::Compiler;
use crate::error::{PluginError, RejectError};
use crate::fair::{CpuSlot, FairScheduler};
use crate::instance::PluginInstance;
use crate::limits::StoreLimiter;
use crate::proxy_wasm::pool::VmPool;
use crate::settings::RuntimeSettings;
use crate::state::PluginState;
use wharf_tenancy::PluginQuotas;

/// Quotas for instances run without a tenant's capabilities (tools, tests).
static DEFAULT_QUOTAS: std::sync::LazyLock<wharf_tenancy::Quotas> =
    std::sync::LazyLock::new(wharf_tenancy::Quotas::default);

/// A tenant's instance quota and the permits that enforce it.
type TenantPermits = (u32, Arc<Semaphore>);

/// Pool slots (global, tenant) an instance or VM holds for as long as it lives.
pub(crate) type Permits = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// Every capability's state for one instance (or one request of a VM).
pub(crate) fn instance_states(inv: &Invocation<'_>) -> InstanceStates {
    InstanceStates::new(&InstanceContext {
        tenant: inv.tenant,
        plugin: inv.plugin,
        config: &inv.config,
        outbound: &inv.outbound,
        request_body: &inv.request_body,
        quotas: inv
            .capabilities
            .as_deref()
            .map_or(&DEFAULT_QUOTAS, |c| &c.quotas),
    })
}

pub struct PluginRuntime {
    engine: Engine,
    pooled: bool,
    cache: Arc<ComponentCache>,
    compiler: Compiler,
    settings: RuntimeSettings,
    global: Arc<Semaphore>,
    tenants: Mutex<HashMap<Arc<str>, TenantPermits>>,
    fair: Arc<FairScheduler>,
    /// proxy-wasm VMs on this node.
    vms: VmPool,
    /// The plugin threads (`None` only while dropping).
    executor: Option<Runtime>,
    metrics: Arc<Metrics>,
}

/// Who is running a plugin, and with what.
pub struct Invocation<'a> {
    pub tenant: &'a Arc<str>,
    pub plugin: &'a Arc<str>,
    pub quotas: PluginQuotas,
    pub config: crate::AttachmentConfig,
    /// The attachment's `allowed_outbound_hosts` (empty: no outbound HTTP).
    pub outbound: Arc<[wharf_tenancy::outbound::OutboundHost]>,
    /// The request body, for a plugin that reads it ([`CompiledPlugin::reads_body`]).
    pub request_body: Option<bytes::Bytes>,
    /// The tenant's capabilities for host calls (`None`: every backend call fails
    /// `backend-unavailable`).
    pub capabilities: Option<Arc<TenantCapabilities>>,
}

impl PluginRuntime {
    /// `data_dir`: where compiled artifacts are cached on disk (`None`: memory only).
    pub fn new(
        settings: RuntimeSettings,
        compiled_cache_dir: Option<&Path>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let (engine, pooled) = crate::engine::build(&settings)?;
        let baseline = crate::engine::build_baseline(&settings);
        let mut linker = Linker::<PluginState>::new(&engine);
        NodeCapabilities::link(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link host capabilities: {e}"))?;
        let cache = Arc::new(ComponentCache::new(
            engine.clone(),
            baseline.clone().map(|e| (e, settings.baseline_min_bytes)),
            linker,
            compiled_cache_dir,
            settings.compiled_cache_bytes,
            metrics.clone(),
        ));
        // Compiles run at the proxy's priority: they are bounded to one core already, and a
        // lower priority starves them on a busy node (a new node must compile before serving).
        let compiler = Compiler::start(cache.clone())
            .map_err(|e| anyhow::anyhow!("cannot start the compile thread: {e}"))?;
        let executor = crate::executor::build(settings.threads, settings.nice)
            .map_err(|e| anyhow::anyhow!("cannot start the plugin threads: {e}"))?;
        let slots = crate::executor::thread_count(settings.threads);
        let tick = settings.epoch_tick();
        let fair = FairScheduler::new(slots, tick, metrics.clone());
        let ticking = fair.clone();
        let engines: Vec<&Engine> = std::iter::once(&engine).chain(baseline.as_ref()).collect();
        crate::engine::start_epoch_ticker(&engines, tick, move || ticking.busy(), fair.ticker());
        metrics
            .plugin_instance_capacity
            .set(i64::from(settings.max_instances));
        Ok(Arc::new(PluginRuntime {
            global: Arc::new(Semaphore::new(settings.max_instances as usize)),
            engine,
            pooled,
            cache,
            compiler,
            settings,
            tenants: Mutex::new(HashMap::new()),
            fair,
            vms: VmPool::default(),
            executor: Some(executor),
            metrics,
        }))
    }

    pub fn pooled(&self) -> bool {
        self.pooled
    }

    /// Checks an upload here and now: size, component of the Wharf world, compiles with the
    /// shared engine. For tools and tests; servers use [`PluginRuntime::compile`].
    pub fn validate(&self, bytes: &[u8]) -> Result<Arc<CompiledPlugin>, RejectError> {
        self.check_size(bytes.len())?;
        self.cache.get_or_compile(bytes)
    }

    /// Like [`PluginRuntime::validate`], on the compile thread. With a tenant (an upload), at
    /// most one compile of that tenant's is queued or running; without (the control plane
    /// loading stored plugins), always queued.
    pub async fn compile(
        &self,
        tenant: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<Arc<CompiledPlugin>, RejectError> {
        self.check_size(bytes.len())?;
        let sha = crate::cache::sha256_hex(&bytes);
        if let Some(hit) = self.cache.get(&sha) {
            return Ok(hit);
        }
        self.compiler.compile(tenant, sha, bytes).await
    }

    fn check_size(&self, size: usize) -> Result<(), RejectError> {
        if size > self.settings.max_plugin_bytes {
            return Err(RejectError::TooLarge {
                size,
                limit: self.settings.max_plugin_bytes,
            });
        }
        Ok(())
    }

    /// The compiled plugin for a content hash, from memory or the disk cache; never compiles.
    pub fn cached(&self, sha256: &str) -> Option<Arc<CompiledPlugin>> {
        self.cache.get(sha256)
    }

    /// The compiled plugin for a content hash from memory, else from the disk cache (read on a
    /// blocking thread, never the caller's); never compiles.
    pub async fn load(self: &Arc<Self>, sha256: &str) -> Option<Arc<CompiledPlugin>> {
        if let Some(hit) = self.cache.get_in_memory(sha256) {
            return Some(hit);
        }
        if !self.cache.on_disk(sha256) {
            return None;
        }
        let cache = self.cache.clone();
        let sha = sha256.to_string();
        tokio::task::spawn_blocking(move || cache.get(&sha))
            .await
            .ok()
            .flatten()
    }

    /// The compiled plugin for a content hash if memory holds it; no disk access.
    pub fn in_memory(&self, sha256: &str) -> Option<Arc<CompiledPlugin>> {
        self.cache.get_in_memory(sha256)
    }

    /// Whether the disk cache has an artifact for the hash (a restart would not compile it).
    pub fn on_disk(&self, sha256: &str) -> bool {
        self.cache.on_disk(sha256)
    }

    /// Marks a plugin used by a request, for the compiled-code cache's eviction order.
    pub fn touch(&self, plugin: &CompiledPlugin) {
        self.cache.touch(plugin);
    }

    /// How long a request may wait for its turn (a slot, a plugin's first load) before it fails
    /// with `plugin_capacity`.
    pub fn queue_cap(&self) -> Duration {
        Duration::from_millis(self.settings.queue_ms)
    }

    /// Drops compiled plugins no route or request holds any more, past the memory budget.
    pub fn trim_compiled(&self) {
        self.vms.trim();
        self.cache.trim();
    }

    /// The disk cache's upkeep ([`crate::cache::ComponentCache::sweep_disk`]), with `live` the
    /// content hashes of every plugin version in the store. Reads and removes files: blocking.
    pub fn sweep_compiled_disk(
        &self,
        live: &std::collections::HashSet<String>,
    ) -> crate::cache::Swept {
        let grace = std::time::Duration::from_secs(self.settings.compiled_disk_grace_s);
        let swept = self.cache.sweep_disk(live, grace);
        self.metrics
            .compiled_disk_bytes
            .set(i64::try_from(swept.kept_bytes).unwrap_or(i64::MAX));
        swept
    }

    /// How often the control plane sweeps the disk cache: half the grace, from a second to ten
    /// minutes (each sweep reads the store's content hashes).
    pub fn sweep_every(&self) -> std::time::Duration {
        let grace = self.settings.compiled_disk_grace_s;
        std::time::Duration::from_secs((grace / 2).clamp(1, 600))
    }

    /// A fresh instance for one request, instantiated (its start function run) on the plugin
    /// threads.
    pub async fn instantiate(
        &self,
        inv: Invocation<'_>,
        compiled: &Arc<CompiledPlugin>,
    ) -> Result<PluginInstance, PluginError> {
        let mut instance = self.prepare(inv, compiled).await?;
        instance.start().await?;
        Ok(instance)
    }

    /// A fresh instance for one request, within the tenant's instance quota and the pool; it is
    /// instantiated by its first call (in the same trip to the plugin threads).
    pub async fn prepare(
        &self,
        inv: Invocation<'_>,
        compiled: &Arc<CompiledPlugin>,
    ) -> Result<PluginInstance, PluginError> {
        let slot = self.fair.slot(inv.tenant);
        let permits = self.permits(&inv, compiled.slots, &slot).await?;
        let quotas = inv.quotas;
        let store = self.store(&self.engine, inv, slot)?;
        Ok(PluginInstance::new(
            store,
            compiled.clone(),
            quotas,
            self.executor_handle(),
            self.metrics.clone(),
            permits,
        ))
    }

    /// A store on `engine` (the main one, or the baseline one for a VM of baseline code) with
    /// the tenant's fuel, memory limit, deadline and CPU slot, and every capability's state for
    /// this invocation: the same limits whichever compiler made the code.
    pub(crate) fn store(
        &self,
        engine: &Engine,
        inv: Invocation<'_>,
        slot: Arc<CpuSlot>,
    ) -> Result<Store<PluginState>, PluginError> {
        let queue_cap = Duration::from_millis(self.settings.queue_ms);
        let budget = Duration::from_millis(inv.quotas.deadline_ms);
        let state = PluginState {
            tenant: inv.tenant.clone(),
            plugin: inv.plugin.clone(),
            limiter: StoreLimiter::new(inv.quotas.memory_bytes),
            call: CallClock::start(&slot, budget),
            cpu: slot,
            waited_on_io: Default::default(),
            queue_cap,
            timed_out: false,
            queue_exceeded: false,
            fiberless: false,
            slice_over: false,
            ran_long: false,
            caps: instance_states(&inv),
            metrics: self.metrics.clone(),
            tenant_caps: inv.capabilities,
            proxy: None,
            quotas: inv.quotas,
        };
        let store = crate::store::armed(engine, state)?;
        Ok(store)
    }

    pub(crate) fn fair(&self) -> &Arc<FairScheduler> {
        &self.fair
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(crate) fn vms(&self) -> &VmPool {
        &self.vms
    }

    pub(crate) fn executor_handle(&self) -> Handle {
        match &self.executor {
            Some(rt) => rt.handle().clone(),
            // Unreachable while `self` is alive: only `Drop` takes the executor.
            None => Handle::current(),
        }
    }
}

impl Drop for PluginRuntime {
    /// The plugin threads stop without blocking: the runtime may be dropped inside async code.
    fn drop(&mut self) {
        if let Some(rt) = self.executor.take() {
            rt.shutdown_background();
        }
    }
}
