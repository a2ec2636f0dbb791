//! A plugin's store, armed with its tenant's limits: fuel, the memory limiter, and what each
//! epoch tick does to the call in progress.

use wasmtime::{Engine, Store, UpdateDeadline};

use crate::error::{Failure, PluginError};
use crate::state::PluginState;

/// A store for `state` on `engine`, counted as an instantiation.
pub(crate) fn armed(
    engine: &Engine,
    state: PluginState,
) -> Result<Store<PluginState>, PluginError> {
    let fuel = state.quotas.fuel;
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_fuel(fuel).map_err(|e| {
        PluginError::new(
            store.data().plugin.as_ref(),
            Failure::Capacity(format!("fuel accounting unavailable: {e}")),
        )
    })?;
    // Every tick: past the plugin's own deadline (or the queueing cap) stop it; otherwise
    // hand the CPU to the next tenant in line, if any (a one-tick time slice). A call without
    // a fiber cannot hand it over: the tick ends it, and it restarts on a fiber.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let st = ctx.data_mut();
        if st.call.expired(&st.cpu) {
            st.timed_out = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        if st.cpu.queued() >= st.queue_cap {
            st.queue_exceeded = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        if st.fiberless {
            st.slice_over = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        st.ran_long = true;
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(st.cpu.clone().yield_slice()),
        ))
    });
    store.data().cpu.series().instantiations.inc();
    Ok(store)
}
