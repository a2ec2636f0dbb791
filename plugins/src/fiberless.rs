//! A request-filter that imports only plain host calls (`log`, `config`, `request`, `body`,
//! `response-edits`: `exact` in `bindings.rs`) is instantiated and called on the caller's stack,
//! without a fiber; so is an `http-plugin`'s first call (instantiation and `on-request`), whose
//! `on-response` then runs on a fiber as before.
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

use crate::bindings::classic::HttpPluginIndices;
use crate::bindings::classic_plain::HttpPluginIndices as HttpPluginPlainIndices;
use crate::bindings::filter_plain::RequestFilterPre;
use crate::bindings::types::{Request, RequestAction, RequestHead};
use crate::cache::Exports;
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

/// A component's first call as a plain call.
pub(crate) enum Plain {
    /// A request-filter's `handle-request`.
    Filter(RequestFilterPre<PluginState>),
    /// An `http-plugin`'s `on-request` (its instantiation and this call).
    Classic(ClassicPlain),
}

/// An `http-plugin`'s first call as a plain call. Its `on-response` comes after the upstream's
/// answer and runs on a fiber, through the exports bound the usual way (`then`): the instance
/// lives on between the two, so that call could not restart.
pub(crate) struct ClassicPlain {
    pre: InstancePre<PluginState>,
    now: HttpPluginPlainIndices,
    then: HttpPluginIndices,
}

/// The first call without a fiber, for a request-filter or an `http-plugin` whose imports are
/// all plain host calls; `None` for any other component (and for `response-body-plugin`s,
/// whose body calls come later still).
pub(crate) fn plain(component: &Component, engine: &Engine, exports: &Exports) -> Option<Plain> {
    let plain = component
        .component_type()
        .imports(engine)
        .all(|(name, item)| {
            matches!(item.ty, ComponentItem::Type(_)) || PLAIN.iter().any(|p| name.starts_with(p))
        });
    if !plain {
        return None;
    }
    match exports {
        Exports::RequestFilter(filter) => RequestFilterPre::new(filter.instance_pre().clone())
            .ok()
            .map(Plain::Filter),
        Exports::Classic(classic) => {
            let pre = classic.instance_pre().clone();
            Some(Plain::Classic(ClassicPlain {
                now: HttpPluginPlainIndices::new(&pre).ok()?,
                then: HttpPluginIndices::new(&pre).ok()?,
                pre,
            }))
        }
        Exports::ResponseBody(_) | Exports::ProxyWasm(_) => None,
    }
}

/// How an attempt without a fiber ended.
pub(crate) enum Attempt<R> {
    Done(wasmtime::Result<R>),
    /// A tick ended its slice: restart it on a fiber ([`restart`]).
    SliceOver,
}

/// Runs `call` (an instantiation and the first call) on this thread's stack. The request's
/// headers are in the store already.
fn attempt<R>(
    store: &mut Store<PluginState>,
    call: impl FnOnce(&mut Store<PluginState>) -> wasmtime::Result<R>,
) -> Attempt<R> {
    store.data_mut().fiberless = true;
    let result = call(store);
    let state = store.data_mut();
    state.fiberless = false;
    if state.slice_over {
        return Attempt::SliceOver;
    }
    state.emit_held_lines();
    Attempt::Done(result)
}

/// A filter's instantiation and `handle-request`.
pub(crate) fn filter(
    store: &mut Store<PluginState>,
    pre: &RequestFilterPre<PluginState>,
    head: &RequestHead,
) -> Attempt<RequestAction> {
    attempt(store, |store| {
        pre.instantiate(&mut *store)?
            .call_handle_request(&mut *store, head)
    })
}

/// An `http-plugin`'s instantiation and `on-request`; with the action, its exports bound for
/// the calls after (on a fiber).
pub(crate) fn on_request(
    store: &mut Store<PluginState>,
    plain: &ClassicPlain,
    req: &Request,
) -> Attempt<(RequestAction, crate::bindings::classic::HttpPlugin)> {
    attempt(store, |store| {
        let instance = plain.pre.instantiate(&mut *store)?;
        let action = plain
            .now
            .load(&mut *store, &instance)?
            .call_on_request(&mut *store, req)?;
        Ok((action, plain.then.load(&mut *store, &instance)?))
    })
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
