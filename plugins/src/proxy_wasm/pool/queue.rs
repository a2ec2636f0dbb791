//! Delivering shared queues' items (`proxy_on_queue_ready`): once a VM registers a queue, one
//! task per VM generation waits for the cell's wake-up, which an enqueue into a queue the VM
//! owns sends, and calls `proxy_on_queue_ready` for each queue that got items since its last
//! call. Each delivery is a callback of the VM's own, like a tick (`tick::background`): the VM's
//! lock, the tenant's fuel and deadline on the fair scheduler, charged to the tenant; a failing
//! one drops the VM. The task holds the cell weakly and ends with its generation.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::ops::VmOp;
use super::run::Who;
use super::tick::{background, Ran};
use super::VmCell;
use crate::runtime::PluginRuntime;

/// How often a waiting task looks whether its VM is still there (a VM dropped for idleness
/// sends no wake-up).
const RECHECK: Duration = Duration::from_secs(5);

impl VmCell {
    /// Starts delivering the queues of the VM of `generation`, unless it does already.
    pub(super) fn deliver_queues(
        self: &Arc<Self>,
        runtime: &Arc<PluginRuntime>,
        generation: u64,
        who: &Who,
    ) {
        {
            let mut delivering = self.delivering.lock();
            if *delivering == Some(generation) {
                return;
            }
            *delivering = Some(generation);
        }
        let (cell, runtime2, who) = (Arc::downgrade(self), runtime.clone(), who.clone());
        runtime
            .executor_handle()
            .spawn(deliveries(cell, runtime2, generation, who));
    }
}

async fn deliveries(cell: Weak<VmCell>, runtime: Arc<PluginRuntime>, generation: u64, who: Who) {
    let Some(wake) = cell.upgrade().map(|c| c.queue_ready.clone()) else {
        return;
    };
    let shared = runtime.vms().shared(&who.tenant, runtime.metrics());
    loop {
        let Some(cell) = cell.upgrade() else {
            return;
        };
        if *cell.delivering.lock() != Some(generation) {
            // A newer VM delivers now: the wake-up this task may have taken is its.
            wake.notify_one();
            return;
        }
        for queue in shared.take_ready(&wake) {
            let op = VmOp::QueueReady { queue };
            match background(&cell, &runtime, generation, &who, op, "on_queue_ready").await {
                Ran::Done => {}
                // Told again at the next wake-up.
                Ran::Busy => shared.not_told(queue),
                Ran::Gone => {
                    let mut delivering = cell.delivering.lock();
                    if *delivering == Some(generation) {
                        *delivering = None;
                    }
                    return;
                }
            }
        }
        drop(cell);
        let _ = tokio::time::timeout(RECHECK, wake.notified()).await;
    }
}
