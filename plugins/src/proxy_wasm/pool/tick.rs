//! A VM's ticks (`proxy_set_tick_period_milliseconds` / `proxy_on_tick`): one task per VM on the
//! plugin threads, while the VM lives. Each tick is a callback like a request's: it takes the
//! VM's lock, runs with the tenant's fuel and deadline on the fair scheduler (charged to the
//! tenant), with its own log budget; a failing tick drops the VM as any failing callback does.
//! The period has a floor (`context::TICK_FLOOR`); the task holds the cell weakly, so a VM
//! dropped for idleness stops ticking. Calls a tick dispatches go out as the root context's
//! (`root_calls.rs`).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::ops::{VmDone, VmOp};
use super::run::Who;
use super::VmCell;
use crate::call;
use crate::error::{Failure, PluginError};
use crate::proxy_wasm::env::ProxyHost;
use crate::runtime::PluginRuntime;

impl VmCell {
    /// Starts ticking the VM of `generation` every `period`, unless it ticks already.
    pub(super) fn tick(
        self: &Arc<Self>,
        runtime: &Arc<PluginRuntime>,
        generation: u64,
        period: Duration,
        who: &Who,
    ) {
        {
            let mut ticking = self.ticking.lock();
            *ticking.period_mut() = period;
            if ticking.generation == Some(generation) {
                return;
            }
            ticking.generation = Some(generation);
        }
        let (cell, runtime2, who) = (Arc::downgrade(self), runtime.clone(), who.clone());
        runtime
            .executor_handle()
            .spawn(ticks(cell, runtime2, generation, who));
    }
}

/// What a cell knows of its ticker.
#[derive(Default)]
pub(super) struct Ticking {
    generation: Option<u64>,
    period: Duration,
}

impl Ticking {
    fn period_mut(&mut self) -> &mut Duration {
        &mut self.period
    }
}

async fn ticks(cell: Weak<VmCell>, runtime: Arc<PluginRuntime>, generation: u64, who: Who) {
    loop {
        let Some(period) = cell.upgrade().map(|c| c.ticking.lock().period) else {
            return;
        };
        tokio::time::sleep(period).await;
        let Some(cell) = cell.upgrade() else {
            return;
        };
        let ran = background(&cell, &runtime, generation, &who, VmOp::Tick, "on_tick").await;
        // Busy with requests for the whole queueing cap: this tick is skipped.
        if ran == Ran::Gone {
            let mut ticking = cell.ticking.lock();
            if ticking.generation == Some(generation) {
                ticking.generation = None;
            }
            return;
        }
    }
}

/// What became of a callback of the VM's own.
#[derive(PartialEq, Eq)]
pub(super) enum Ran {
    Done,
    /// The VM stayed busy with requests for the whole queueing cap: not called.
    Busy,
    /// The VM is gone (replaced, dropped, or this callback failed).
    Gone,
}

/// One callback of the VM's own (a tick, a queue delivery: `function`), charged to the tenant
/// like a request's.
pub(super) async fn background(
    cell: &Arc<VmCell>,
    runtime: &Arc<PluginRuntime>,
    generation: u64,
    who: &Who,
    op: VmOp,
    function: &'static str,
) -> Ran {
    let Ok(mut held) =
        tokio::time::timeout(runtime.queue_cap(), cell.live.clone().lock_owned()).await
    else {
        return Ran::Busy;
    };
    let Some(mut live) = held.take() else {
        return Ran::Gone;
    };
    if live.generation != generation {
        *held = Some(live);
        return Ran::Gone;
    }
    {
        let data = live.vm.store.data_mut();
        data.caps = crate::runtime::instance_states(&who.invocation());
        data.cpu = runtime.fair().slot(&who.tenant);
    }
    if live.vm.store.set_fuel(who.quotas.fuel).is_err() {
        *held = Some(live);
        return Ran::Gone;
    }
    let started = Instant::now();
    let budget = Duration::from_millis(who.quotas.deadline_ms);
    let quotas = who.quotas;
    let failing = cell.clone();
    let run = async move {
        let (mut live, result, _) = call::run(live, op, budget, quotas).await;
        let ctx = live.vm.store.data_mut().context();
        let in_flight = ctx.root_in_flight.clone();
        let refused = std::mem::take(&mut ctx.refused_root_calls);
        let calls = match result {
            Ok(VmDone::Ticked { calls }) => Ok(calls),
            Ok(_) => Err(Failure::Trap("the VM answered another callback".into())),
            Err(e) => Err(e),
        };
        if calls.is_ok() {
            *held = Some(live);
        } else {
            // Under the lock, so the next callback's outcome cannot land before this one.
            failing.failed();
        }
        drop(held);
        calls.map(|calls| (calls, in_flight, refused))
    };
    let result = match call::on_plugin_threads(&runtime.executor_handle(), run).await {
        Ok(r) => r,
        Err(e) => {
            // The task panicked: the VM went with it.
            cell.failed();
            Err(Failure::Trap(e))
        }
    };
    let result = result.map_err(|f| PluginError::new(who.plugin.as_ref(), f));
    let who_labels = (&*who.tenant, &*who.plugin);
    call::record(runtime.metrics(), who_labels, function, started, &result);
    // Calls the callback dispatched go out as the root context's, their answers back to it.
    let result = result.map(|(calls, in_flight, refused)| {
        super::root_calls::refused(runtime, who, refused);
        if !calls.is_empty() {
            cell.send_root_calls(runtime, generation, who, calls, in_flight);
        }
    });
    match result {
        Ok(()) => Ran::Done,
        Err(failure) => {
            tracing::warn!(tenant = %who.tenant, "proxy-wasm {function} failed, VM dropped: {failure}");
            Ran::Gone
        }
    }
}
