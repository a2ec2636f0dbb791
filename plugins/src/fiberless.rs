//! A request-filter that imports only plain host calls (`log`, `config`, `request`, `body`,
//! `response-edits`: `exact` in `bindings.rs`) is instantiated and called on the caller's stack,
//! without a fiber.
//!
//! Why: an async call runs its wasm on a fiber, and a filter took two (one for the start
//! function at instantiation, one for `handle-request`), with a stack from the pool and the
//! switches in and out: 0.7 µs of `header-filter`'s 7.7 µs fresh instance, ~1 µs per filter of
//! a node's proxy CPU (docs/benchmarks.md, fourteenth session).
//!
//! What a call without a fiber cannot do is hand its time slice to another tenant: a tick that
//! would have yielded (`store.rs`) ends it instead, and the call restarts from the beginning in a
//! fresh store, on a fiber, as every call ran before, after the yield the tick would have made
//! (the next tenant in line first, the rest of the call on the plugin threads). So the caller's
//! thread still runs at most one slice of a plugin's wasm per call; what the ended attempt did
//! stays in its dropped store
//! (its log lines were held, and are dropped with it: a restarted call logs once); the call's
//! clock runs on across the restart, so the deadline covers both. A plugin whose recent calls ran
//! past a slice starts on a fiber directly ([`CompiledPlugin::fiberless`]).

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{Engine, Store};

use crate::bindings::filter_plain::RequestFilterPre;
use crate::bindings::types::{RequestAction, RequestHead};
use crate::error::PluginError;
use crate::state::PluginState;

/// The interfaces whose every function is a plain host call (`exact` in `bindings.rs`).
const PLAIN: [&str; 6] = [
    "wharf:plugin/types@",
    "wharf:plugin/log@",
    "wharf:plugin/config@",
    crate::capabilities::request::INTERFACE,
    crate::capabilities::body::INTERFACE,
    "wharf:plugin/response-edits@",
];

/// `handle-request` as a plain call, for a request-filter whose imports are all plain host
/// calls; `None` for any other component.
pub(crate) fn plain_filter(
    component: &Component,
    engine: &Engine,
    pre: &InstancePre<PluginState>,
) -> Option<RequestFilterPre<PluginState>> {
    component.get_export_index(None, "handle-request")?;
    let plain = component
        .component_type()
        .imports(engine)
        .all(|(name, item)| {
            matches!(item.ty, ComponentItem::Type(_)) || PLAIN.iter().any(|p| name.starts_with(p))
        });
    if !plain {
        return None;
    }
    RequestFilterPre::new(pre.clone()).ok()
}

/// How an attempt without a fiber ended.
pub(crate) enum Attempt {
    Done(wasmtime::Result<RequestAction>),
    /// A tick ended its slice: restart it on a fiber ([`restart`]).
    SliceOver,
}

/// Instantiates the filter and calls it on this thread's stack. The request's headers are in
/// the store already.
pub(crate) fn attempt(
    store: &mut Store<PluginState>,
    pre: &RequestFilterPre<PluginState>,
    head: &RequestHead,
) -> Attempt {
    store.data_mut().fiberless = true;
    let result = pre
        .instantiate(&mut *store)
        .and_then(|filter| filter.call_handle_request(&mut *store, head));
    let state = store.data_mut();
    state.fiberless = false;
    if state.slice_over {
        return Attempt::SliceOver;
    }
    state.emit_held_lines();
    Attempt::Done(result)
}

/// Replaces the store of an ended attempt (dropped here, with its instance) by a fresh one for
/// the same request, under the same call clock.
pub(crate) fn restart(store: &mut Store<PluginState>) -> Result<(), PluginError> {
    let engine = store.engine().clone();
    let state = store.data().for_restart();
    *store = crate::store::armed(&engine, state)?;
    store.data_mut().ran_long = true;
    Ok(())
}
