//! proxy-wasm VMs on this node: one per (tenant, plugin version, configuration), as Envoy and
//! Istio keep them (docs/proxy-wasm.md has the measurement behind it: a Go plugin's runtime
//! takes milliseconds to start). A request opens a [`ProxyStream`]: a context of its own in the
//! VM, whose callbacks run one at a time (the VM's lock), each under the tenant's fuel and
//! deadline on the fair scheduler. A callback that traps, runs out of a limit or misuses the ABI
//! fails its request and the VM is dropped; the next request starts a new one (Envoy's
//! FAIL_RELOAD), after a backoff when it keeps failing. Nothing here is shared across tenants:
//! the tenant is part of the key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;
use wharf_metrics::Metrics;

use super::shared::TenantShared;
use super::vm::Vm;
use crate::cache::{CompiledPlugin, Tier};
use crate::runtime::{Permits, PluginRuntime};
use crate::state::PluginState;

mod ops;
mod outbound;
mod queue;
mod root_calls;
mod run;
mod tick;

pub use ops::Properties;
pub use run::{BodyStep, ProxyStream, RequestStep, ResponseStep};

/// The configurations a VM starts with (`proxy_on_vm_start`, `proxy_on_configure`), and their
/// digest: part of the VM's key, taken once when the attachment is compiled, not per request.
#[derive(Clone)]
pub struct VmConfigs {
    vm: Arc<[u8]>,
    plugin: Arc<[u8]>,
    digest: Arc<str>,
}

impl VmConfigs {
    pub fn new(vm: Vec<u8>, plugin: Vec<u8>) -> VmConfigs {
        let digest = crate::cache::sha256_hex(
            &[
                crate::cache::sha256_hex(&vm).as_bytes(),
                crate::cache::sha256_hex(&plugin).as_bytes(),
            ]
            .concat(),
        );
        VmConfigs {
            vm: vm.into(),
            plugin: plugin.into(),
            digest: digest.into(),
        }
    }

    pub fn vm(&self) -> &[u8] {
        &self.vm
    }

    pub fn plugin(&self) -> &[u8] {
        &self.plugin
    }
}

/// A VM unused this long is dropped (its configuration may be gone, its tenant idle).
const IDLE: Duration = Duration::from_secs(60);

/// The longest a failing VM waits before it is started again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Clone, PartialEq, Eq, Hash)]
struct VmKey {
    tenant: Arc<str>,
    sha256: String,
    configs: Arc<str>,
    /// Baseline and optimized code of one module run in VMs of their own (their engines
    /// differ); once the optimized one's VM exists, the baseline's takes no new request.
    tier: Tier,
}

#[derive(Default)]
pub struct VmPool {
    cells: Mutex<HashMap<VmKey, Arc<VmCell>>>,
    /// Each tenant's shared data and metrics, for all its VMs on this node.
    shared: Mutex<HashMap<Arc<str>, Arc<TenantShared>>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Box<LiveVm>>>>;

/// One key's VM (absent until a request starts it, or after it failed) and its health.
pub(crate) struct VmCell {
    live: Slot,
    health: Mutex<Health>,
    last_used: Mutex<Instant>,
    ticking: Mutex<tick::Ticking>,
    /// Woken when a queue this VM registered gets an item (`queue.rs`).
    queue_ready: Arc<tokio::sync::Notify>,
    /// The generation whose queue deliveries run.
    delivering: Mutex<Option<u64>>,
}

#[derive(Default)]
struct Health {
    /// Bumped at every start: a context belongs to the VM of its generation only.
    generation: u64,
    /// Failures since the last callback that succeeded.
    failures: u32,
    /// No start before this, after repeated failures.
    retry_at: Option<Instant>,
}

/// A started VM and the pool slots it holds for its life.
pub(crate) struct LiveVm {
    vm: Vm<PluginState>,
    generation: u64,
    metrics: Arc<Metrics>,
    _permits: Permits,
}

impl Drop for LiveVm {
    fn drop(&mut self) {
        self.metrics.plugin_vms.dec();
    }
}

impl VmPool {
    fn cell(&self, tenant: &Arc<str>, plugin: &CompiledPlugin, configs: &VmConfigs) -> Arc<VmCell> {
        let key = VmKey {
            tenant: tenant.clone(),
            sha256: plugin.sha256.clone(),
            configs: configs.digest.clone(),
            tier: plugin.tier,
        };
        let mut cells = self.cells.lock();
        if plugin.tier == Tier::Optimized && !cells.contains_key(&key) {
            // The switch from baseline code: its VM serves the requests that hold it already
            // (their contexts live there) and is dropped with the last of them; new requests
            // start the optimized VM. Module state (Go globals) starts afresh, as on a reload
            // in Envoy; the tenant's shared data and metrics stay.
            cells.remove(&VmKey {
                tier: Tier::Baseline,
                ..key.clone()
            });
        }
        let cell = cells
            .entry(key)
            .or_insert_with(|| {
                Arc::new(VmCell {
                    live: Arc::new(tokio::sync::Mutex::new(None)),
                    health: Mutex::new(Health::default()),
                    ticking: Mutex::new(tick::Ticking::default()),
                    queue_ready: Arc::new(tokio::sync::Notify::new()),
                    delivering: Mutex::new(None),
                    last_used: Mutex::new(Instant::now()),
                })
            })
            .clone();
        *cell.last_used.lock() = Instant::now();
        cell
    }

    /// Drops VMs unused for a while (their memory and pool slots go back), and the shared
    /// state of tenants with no VM left.
    pub fn trim(&self) {
        let mut cells = self.cells.lock();
        cells.retain(|_, cell| {
            let idle = cell.last_used.lock().elapsed() >= IDLE;
            // A VM in use (locked, or held by a stream) stays.
            !(idle && Arc::strong_count(cell) == 1 && cell.live.try_lock().is_ok())
        });
        self.shared.lock().retain(|tenant, s| {
            Arc::strong_count(s) > 1 || cells.keys().any(|k| k.tenant == *tenant)
        });
    }

    /// The tenant's shared data and metrics on this node.
    pub(crate) fn shared(&self, tenant: &Arc<str>, metrics: &Arc<Metrics>) -> Arc<TenantShared> {
        self.shared
            .lock()
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(TenantShared::new(tenant.clone(), metrics.clone())))
            .clone()
    }
}

impl VmCell {
    /// Counts a failure: the VM is gone; the next start waits longer each time it keeps
    /// failing (none after a first failure, then 100 ms doubling up to [`MAX_BACKOFF`]).
    fn failed(&self) {
        let mut h = self.health.lock();
        h.failures = h.failures.saturating_add(1);
        let backoff = match h.failures {
            0 | 1 => Duration::ZERO,
            n => (Duration::from_millis(100) * 2u32.saturating_pow(n.min(20) - 2)).min(MAX_BACKOFF),
        };
        h.retry_at = Some(Instant::now() + backoff);
    }

    fn succeeded(&self) {
        let mut h = self.health.lock();
        h.failures = 0;
        h.retry_at = None;
    }

    /// When a start is allowed (`Err`: how long until it is), and the generation it gets.
    fn may_start(&self) -> Result<(u64, bool), (u32, Duration)> {
        let mut h = self.health.lock();
        if let Some(at) = h.retry_at {
            let now = Instant::now();
            if now < at {
                return Err((h.failures, at - now));
            }
        }
        h.generation += 1;
        Ok((h.generation, h.failures > 0))
    }
}

impl PluginRuntime {
    /// A request's stream through the VM of `plugin` for this tenant and configuration; the
    /// VM starts with the stream's first callback if it is not running.
    pub fn proxy_wasm(
        self: &Arc<Self>,
        inv: crate::Invocation<'_>,
        plugin: &Arc<CompiledPlugin>,
        configs: VmConfigs,
    ) -> ProxyStream {
        // Optimized code replaced this baseline code since the caller took it: use the new.
        let plugin = match plugin.superseded() {
            true => self
                .in_memory(&plugin.sha256)
                .unwrap_or_else(|| plugin.clone()),
            false => plugin.clone(),
        };
        let cell = self.vms().cell(inv.tenant, &plugin, &configs);
        ProxyStream::new(self.clone(), cell, plugin, configs, inv)
    }
}

/// The VM's lock, held by the callback in progress.
type Held = OwnedMutexGuard<Option<Box<LiveVm>>>;
