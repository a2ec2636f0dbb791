//! The plugin runtime: one engine for all tenants, the compiled-code cache, and admission to the
//! instance pool (a global semaphore sized to the pool, and one per tenant at its quota), so one
//! tenant can never exhaust the pool for the others.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};
use wharf_metrics::Metrics;
use wharf_tenancy::backends::TenantBackends;

use crate::bindings::HttpPlugin;
use crate::cache::{CompiledPlugin, ComponentCache};
use crate::error::{PluginError, RejectError};
use crate::host::PluginState;
use crate::instance::PluginInstance;
use crate::limits::StoreLimiter;
use crate::settings::{RuntimeSettings, TenantLimits};

pub struct PluginRuntime {
    engine: Engine,
    pooled: bool,
    cache: ComponentCache,
    settings: RuntimeSettings,
    global: Arc<Semaphore>,
    tenants: Mutex<HashMap<Arc<str>, (u32, Arc<Semaphore>)>>,
    metrics: Arc<Metrics>,
}

/// Who is running a plugin, and with what.
pub struct Invocation<'a> {
    pub tenant: &'a Arc<str>,
    pub plugin: &'a Arc<str>,
    pub limits: TenantLimits,
    pub config: Arc<BTreeMap<String, String>>,
    /// The tenant's Redis and SQL for host calls.
    pub backends: Option<Arc<TenantBackends>>,
}

impl PluginRuntime {
    /// `data_dir`: where compiled artifacts are cached on disk (`None`: memory only).
    pub fn new(
        settings: RuntimeSettings,
        data_dir: Option<&Path>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let (engine, pooled) = crate::engine::build(&settings)?;
        crate::engine::start_epoch_ticker(
            &engine,
            Duration::from_millis(settings.epoch_tick_ms.max(1)),
        );
        let mut linker = Linker::<PluginState>::new(&engine);
        HttpPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("cannot link host capabilities: {e}"))?;
        let cache = ComponentCache::new(engine.clone(), linker, data_dir, metrics.clone());
        metrics
            .plugin_instance_capacity
            .set(i64::from(settings.max_instances));
        Ok(Arc::new(PluginRuntime {
            global: Arc::new(Semaphore::new(settings.max_instances as usize)),
            engine,
            pooled,
            cache,
            settings,
            tenants: Mutex::new(HashMap::new()),
            metrics,
        }))
    }

    pub fn pooled(&self) -> bool {
        self.pooled
    }

    /// Checks an upload: size, component of the Wharf world, compiles with the shared engine.
    /// The compiled result is cached, so accepting it costs nothing later.
    pub fn validate(&self, bytes: &[u8]) -> Result<Arc<CompiledPlugin>, RejectError> {
        if bytes.len() > self.settings.max_plugin_bytes {
            return Err(RejectError::TooLarge {
                size: bytes.len(),
                limit: self.settings.max_plugin_bytes,
            });
        }
        self.cache.get_or_compile(bytes)
    }

    /// The compiled plugin for a content hash, from memory or the disk cache; never compiles.
    pub fn cached(&self, sha256: &str) -> Option<Arc<CompiledPlugin>> {
        self.cache.get(sha256)
    }

    /// A fresh instance for one request, within the tenant's instance quota and the pool.
    pub async fn instantiate(
        &self,
        inv: Invocation<'_>,
        compiled: &CompiledPlugin,
    ) -> Result<PluginInstance, PluginError> {
        let capacity = |reason: String| PluginError::Capacity {
            plugin: inv.plugin.to_string(),
            reason,
        };
        let tenant_permit = self
            .tenant_semaphore(inv.tenant, inv.limits.max_instances)
            .try_acquire_owned()
            .map_err(|_| {
                capacity(format!(
                    "tenant's {} concurrent plugin instances are in use",
                    inv.limits.max_instances
                ))
            })?;
        let global_permit = self
            .global_permit()
            .await
            .ok_or_else(|| capacity("the plugin instance pool is full".into()))?;

        let deadline = Instant::now() + Duration::from_millis(inv.limits.deadline_ms);
        let state = PluginState {
            tenant: inv.tenant.clone(),
            plugin: inv.plugin.clone(),
            config: inv.config,
            limiter: StoreLimiter::new(inv.limits.memory_bytes),
            deadline,
            timed_out: false,
            log: Default::default(),
            metrics: self.metrics.clone(),
            backends: inv.backends,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
            .set_fuel(inv.limits.fuel)
            .map_err(|e| capacity(format!("fuel accounting unavailable: {e}")))?;
        // Check in every tick: past the deadline stop the plugin, otherwise yield so one
        // tenant's long-running plugin cannot starve other requests on this thread.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            if Instant::now() >= ctx.data().deadline {
                ctx.data_mut().timed_out = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });

        self.metrics
            .plugin_instantiations_total
            .with_label_values(&[&*self.metrics.tenant(inv.tenant)])
            .inc();
        self.metrics.plugin_instances_in_use.inc();
        let instantiated = tokio::time::timeout(
            Duration::from_millis(inv.limits.deadline_ms) + Duration::from_millis(5),
            compiled.pre.instantiate_async(&mut store),
        )
        .await;
        match instantiated {
            Ok(Ok(bindings)) => Ok(PluginInstance {
                store,
                bindings,
                limits: inv.limits,
                metrics: self.metrics.clone(),
                _permits: (global_permit, tenant_permit),
                failed: false,
            }),
            Ok(Err(e)) => {
                self.metrics.plugin_instances_in_use.dec();
                let plugin = inv.plugin.to_string();
                if store.data().limiter.hit {
                    Err(PluginError::MemoryLimit {
                        plugin,
                        limit_bytes: inv.limits.memory_bytes,
                    })
                } else if store.data().timed_out {
                    Err(PluginError::Timeout {
                        plugin,
                        deadline_ms: inv.limits.deadline_ms,
                    })
                } else {
                    Err(PluginError::Trap {
                        plugin,
                        reason: format!("instantiation failed: {e}"),
                    })
                }
            }
            Err(_) => {
                self.metrics.plugin_instances_in_use.dec();
                Err(PluginError::Timeout {
                    plugin: inv.plugin.to_string(),
                    deadline_ms: inv.limits.deadline_ms,
                })
            }
        }
    }

    fn tenant_semaphore(&self, tenant: &Arc<str>, max: u32) -> Arc<Semaphore> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        match tenants.get(tenant) {
            Some((cap, sem)) if *cap == max => sem.clone(),
            _ => {
                // A changed quota gets a new semaphore; permits of the old one drain as requests end.
                let sem = Arc::new(Semaphore::new(max as usize));
                tenants.insert(tenant.clone(), (max, sem.clone()));
                sem
            }
        }
    }

    /// A pool slot, waiting briefly: a full pool fails fast instead of queueing without bound.
    async fn global_permit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.global.clone().try_acquire_owned() {
            return Some(p);
        }
        let wait = Duration::from_millis(self.settings.pool_wait_ms);
        tokio::time::timeout(wait, self.global.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }
}
