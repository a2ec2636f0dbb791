//! One call into a plugin's store, whatever the plugin kind (a component instance, a proxy-wasm
//! VM): under the call's own-time budget and the queueing cap, holding the tenant's plugin CPU
//! slot while wasm runs, its failure classified. And where it runs: the first slice on the
//! caller's thread when the CPU is free, the rest on the plugin threads.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Handle;
use wasmtime::{Store, Trap};

use crate::clock::{self, CallClock, Overrun};
use crate::error::Failure;
use crate::state::PluginState;
use wharf_tenancy::PluginQuotas;

/// Something holding a plugin store that can run one operation in it.
pub(crate) trait Exec: Send + 'static {
    type Op: Send + 'static;
    type Done: Send + 'static;
    fn store(&mut self) -> &mut Store<PluginState>;
    fn exec(&mut self, op: Self::Op) -> impl Future<Output = wasmtime::Result<Self::Done>> + Send;
}

/// What one call did: the holder back, the outcome, and the own time it used.
pub(crate) type Ran<E> = (Box<E>, Result<<E as Exec>::Done, Failure>, Duration);

/// One call: waits its tenant's turn for the CPU, runs, gives the CPU back.
pub(crate) async fn run<E: Exec>(
    mut held: Box<E>,
    op: E::Op,
    budget: Duration,
    quotas: PluginQuotas,
) -> Ran<E> {
    let slot = held.store().data().cpu.clone();
    let queue_cap = held.store().data().queue_cap;
    let clock = CallClock::start(&slot, budget);
    let state = held.store().data_mut();
    state.call = clock;
    // What names a failure is what happened in this call: a VM lives across requests, and a
    // growth refused in an earlier callback (which the module survived) is not why a later one
    // trapped.
    state.limiter.hit = false;
    state.timed_out = false;
    state.queue_exceeded = false;
    state.ran_long = false;
    // Re-arm the tick: after the upstream call the old deadline has long passed, which would
    // start the call with a needless callback.
    held.store().set_epoch_deadline(1);
    let outcome = {
        let call = std::pin::pin!(async {
            slot.acquire().await;
            held.exec(op).await
        });
        clock::guard(&slot, clock, queue_cap, call).await
    };
    slot.release();
    let used = clock.used(&slot);
    let result = match outcome {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(classify(held.store().data(), &quotas, e)),
        Err(Overrun::Deadline) => Err(Failure::Timeout {
            deadline_ms: quotas.deadline_ms,
        }),
        Err(Overrun::Queue) => Err(queue_full(queue_cap)),
    };
    (held, result, used)
}

/// Runs `call` to its end: its first poll here (when a CPU slot is free and nobody waits, a
/// short call finishes without a trip to the plugin threads), the rest on the plugin threads if
/// it has to wait for the CPU, runs past its first time slice or waits on I/O. The proxy's
/// thread runs at most one slice of wasm per call, and only while the plugin CPU is
/// uncontended. `Err`: the task was lost (a panic).
pub(crate) fn on_plugin_threads<T: Send + 'static>(
    executor: &Handle,
    call: impl Future<Output = T> + Send + 'static,
) -> impl Future<Output = Result<T, String>> + '_ {
    start_on(executor, call, true)
}

/// [`on_plugin_threads`], with the first slice on the caller's thread only when `here`.
///
/// Not an `async fn`: `call` goes to the heap here, so the future returned (and every future
/// that awaits it, up to the request's) holds a pointer to it, not a copy of its state (~5 KB
/// for a component's call; moved along at each level, that was ~5 % of a plugin request's CPU).
pub(crate) fn start_on<T: Send + 'static>(
    executor: &Handle,
    call: impl Future<Output = T> + Send + 'static,
    here: bool,
) -> impl Future<Output = Result<T, String>> + '_ {
    // The caller's span goes along, so host-call spans stay in the request's trace.
    let mut call = Box::pin(tracing::Instrument::instrument(
        call,
        tracing::Span::current(),
    ));
    async move {
        if !here {
            return executor.spawn(call).await.map_err(|e| e.to_string());
        }
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
        match first {
            std::task::Poll::Ready(done) => Ok(done),
            std::task::Poll::Pending => executor.spawn(call).await.map_err(|e| e.to_string()),
        }
    }
}

pub(crate) fn queue_full(cap: Duration) -> Failure {
    Failure::Capacity(format!(
        "waited over {} ms for the plugin CPU behind other plugins",
        cap.as_millis()
    ))
}

/// Why a call (or an instantiation, whose start function runs wasm too) failed.
pub(crate) fn classify(state: &PluginState, quotas: &PluginQuotas, e: wasmtime::Error) -> Failure {
    if state.timed_out {
        return Failure::Timeout {
            deadline_ms: quotas.deadline_ms,
        };
    }
    if state.queue_exceeded {
        return queue_full(state.queue_cap);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Failure::FuelExhausted { fuel: quotas.fuel },
        Some(Trap::Interrupt) => Failure::Timeout {
            deadline_ms: quotas.deadline_ms,
        },
        _ if state.limiter.hit => Failure::MemoryLimit {
            limit_bytes: quotas.memory_bytes,
        },
        Some(Trap::StackOverflow) => {
            Failure::Trap("call stack exhausted (recursion too deep)".into())
        }
        Some(t) => Failure::Trap(t.to_string()),
        None => Failure::Trap(format!("{e:#}").chars().take(300).collect()),
    }
}

/// One phase call of a plugin in the metrics: its outcome (`ok` or the error kind) and wall time.
pub(crate) fn record<R>(
    metrics: &wharf_metrics::Metrics,
    (tenant, plugin): (&str, &str),
    phase: &str,
    started: std::time::Instant,
    result: &Result<R, crate::error::PluginError>,
) {
    let tenant = metrics.tenant(tenant);
    let duration = metrics
        .plugin_duration
        .with_label_values(&[&*tenant, phase]);
    count(
        metrics,
        (&tenant, plugin),
        phase,
        &duration,
        started,
        result,
    );
}

/// [`record`] with the tenant's label and its phase's duration series already resolved.
pub(crate) fn count<R>(
    metrics: &wharf_metrics::Metrics,
    (tenant_label, plugin): (&str, &str),
    phase: &str,
    duration: &prometheus::Histogram,
    started: std::time::Instant,
    result: &Result<R, crate::error::PluginError>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.outcome(),
    };
    metrics
        .plugin_invocations_total
        .with_label_values(&[tenant_label, plugin, phase, outcome])
        .inc();
    duration.observe(started.elapsed().as_secs_f64());
}
