//! Admission to the instance pool: the slots an instance (or a VM) takes come from its tenant's
//! quota (waited for, up to the queueing cap: a tenant's own instances are its queue) and from
//! the node's pool (waited for briefly: a full pool fails fast instead of queueing without end).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Invocation, Permits, PluginRuntime};
use crate::error::{Failure, PluginError};
use crate::fair::CpuSlot;

impl PluginRuntime {
    /// The pool slots one instance (or VM) takes, from the tenant's quota and the node's pool.
    pub(crate) async fn permits(
        &self,
        inv: &Invocation<'_>,
        slots: u32,
        slot: &Arc<CpuSlot>,
    ) -> Result<Permits, PluginError> {
        let capacity =
            |reason: String| PluginError::new(inv.plugin.as_ref(), Failure::Capacity(reason));
        let queue_cap = Duration::from_millis(self.settings.queue_ms);
        // An instance takes the pool slots its component needs (`footprint.rs`), from the
        // tenant's quota and the node's pool alike.
        if slots > inv.quotas.max_instances {
            return Err(capacity(format!(
                "one instance of this plugin needs {slots} instance slots (its core instances, \
                 memories and tables); the tenant's plugin_max_instances is {}",
                inv.quotas.max_instances
            )));
        }
        // The tenant's own instances are its queue: wait for one to end (charged as queueing,
        // never to the deadline) rather than answer a flood with a flood of fast errors.
        let tenant_sem = self.tenant_semaphore(inv.tenant, inv.quotas.max_instances);
        let tenant_permit = match tenant_sem.clone().try_acquire_many_owned(slots) {
            Ok(p) => p,
            Err(_) => {
                let waited = Instant::now();
                let permit =
                    tokio::time::timeout(queue_cap, tenant_sem.acquire_many_owned(slots)).await;
                slot.add_queued(waited.elapsed());
                permit.ok().and_then(Result::ok).ok_or_else(|| {
                    capacity(format!(
                        "the tenant's {} concurrent plugin instances stayed in use for {} ms",
                        inv.quotas.max_instances, self.settings.queue_ms
                    ))
                })?
            }
        };
        let global_permit = self
            .global_permit(slots)
            .await
            .ok_or_else(|| capacity("the plugin instance pool is full".into()))?;
        Ok((global_permit, tenant_permit))
    }

    fn tenant_semaphore(&self, tenant: &Arc<str>, max: u32) -> Arc<Semaphore> {
        let mut tenants = self.tenants.lock();
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
    async fn global_permit(&self, slots: u32) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.global.clone().try_acquire_many_owned(slots) {
            return Some(p);
        }
        let wait = Duration::from_millis(self.settings.pool_wait_ms);
        tokio::time::timeout(wait, self.global.clone().acquire_many_owned(slots))
            .await
            .ok()?
            .ok()
    }
}
