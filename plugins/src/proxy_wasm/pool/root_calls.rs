//! Calls the root context dispatches (`proxy_http_call`, `proxy_redis_call` from
//! `proxy_on_tick`, `proxy_on_queue_ready`, `proxy_on_vm_start` / `proxy_on_configure`, or the
//! callback of an earlier answer): the way a plugin refreshes a token or its configuration every
//! N seconds. Each goes through the tenant's capabilities exactly as a request's call does
//! (`outbound.rs`: the attachment's allow-list, the egress policy, the tenant's quotas), outside
//! the VM's lock, with at most [`ROOT_CALL_DEADLINE`] (and the module's own timeout) to answer.
//! Each answer is delivered to the root context as a callback of the VM's own
//! (`tick::background`: the VM's lock, the tenant's fuel and deadline on the fair scheduler,
//! charged to the tenant; a failing one drops the VM). An answer for a VM replaced or dropped
//! meanwhile is dropped. At most [`MAX_ROOT_CALLS`] per VM are in flight: past them the module's
//! dispatch gets `BAD_ARGUMENT`, counted as `quota_exceeded` host calls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::ops::VmOp;
use super::outbound::Sender;
use super::run::Who;
use super::tick::{background, Ran};
use super::VmCell;
use crate::proxy_wasm::context::{Call, RefusedCalls, MAX_ROOT_CALLS};
use crate::proxy_wasm::vm::Answer;
use crate::runtime::PluginRuntime;

/// The longest a root context's call may take (a request's calls have the request's deadline;
/// nothing waits on these, but a call must not hold its slot for ever).
pub(super) const ROOT_CALL_DEADLINE: Duration = Duration::from_secs(5);

/// One call's place among the VM's calls in flight, given back when its answer is delivered
/// (or dropped).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl VmCell {
    /// Sends the root context's `calls` of the VM of `generation` and delivers their answers,
    /// on a task of its own. Calls past the VM's bound (`in_flight`) are dropped and counted.
    pub(super) fn send_root_calls(
        self: &Arc<Self>,
        runtime: &Arc<PluginRuntime>,
        generation: u64,
        who: &Who,
        calls: Vec<Call>,
        in_flight: Arc<AtomicUsize>,
    ) {
        let mut taken = Vec::with_capacity(calls.len());
        let mut dropped = RefusedCalls::default();
        for call in calls {
            let now = in_flight.fetch_add(1, Ordering::Relaxed);
            let slot = InFlight(in_flight.clone());
            if now >= MAX_ROOT_CALLS {
                dropped.add(&call);
                drop(slot);
            } else {
                taken.push((call, slot));
            }
        }
        refused(runtime, who, dropped);
        if taken.is_empty() {
            return;
        }
        let (cell, runtime2, who) = (Arc::downgrade(self), runtime.clone(), who.clone());
        runtime
            .executor_handle()
            .spawn(send_and_deliver(cell, runtime2, generation, who, taken));
    }
}

/// Counts calls the root context dispatched past its bound (`BAD_ARGUMENT` to the module, or
/// dropped here) as `quota_exceeded` host calls of the tenant, under the function that made them.
pub(super) fn refused(runtime: &PluginRuntime, who: &Who, refused: RefusedCalls) {
    for (function, n) in refused.by_function() {
        tracing::debug!(tenant = %who.tenant, plugin = %who.plugin, "{n} root-context {function}s refused: {MAX_ROOT_CALLS} in flight");
        let m = runtime.metrics();
        m.host_calls_total
            .with_label_values(&[
                &m.tenant(&who.tenant),
                &who.plugin,
                function,
                "quota_exceeded",
            ])
            .inc_by(u64::from(n));
    }
}

async fn send_and_deliver(
    cell: Weak<VmCell>,
    runtime: Arc<PluginRuntime>,
    generation: u64,
    who: Who,
    calls: Vec<(Call, InFlight)>,
) {
    let (calls, mut slots): (Vec<Call>, Vec<InFlight>) = calls.into_iter().unzip();
    let metrics = runtime.metrics().clone();
    let sender = Sender {
        caps: who.capabilities.as_ref(),
        allowed: &who.outbound,
        tenant: &who.tenant,
        plugin: &who.plugin,
        metrics: &metrics,
        left: ROOT_CALL_DEADLINE,
    };
    // Each answer is delivered as it comes (a slow call does not hold back a quick one's).
    let mut answers: FuturesUnordered<_> = calls.into_iter().map(|c| sender.answer(c)).collect();
    while let Some(answer) = answers.next().await {
        // Its place is free before the callback runs: the answer may dispatch the next call.
        slots.pop();
        let Some(cell) = cell.upgrade() else {
            return;
        };
        let function = match answer.answer {
            Answer::Http(_) => "on_http_call_response",
            Answer::Redis(_) => "on_redis_call_response",
        };
        let op = VmOp::RootCallAnswer { answer };
        match background(&cell, &runtime, generation, &who, op, function).await {
            Ran::Done => {}
            Ran::Busy => {
                tracing::debug!(tenant = %who.tenant, "a root-context call's answer dropped: its VM stayed busy");
            }
            // Replaced, dropped, or failed in this callback: the other answers go with it.
            Ran::Gone => return,
        }
    }
}
