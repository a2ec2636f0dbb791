//! What the cache hands out: a compiled plugin, its exports (its world) and which compiler
//! made its code.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use wasmtime::component::{Component, InstancePre};

use super::describe;
use crate::bindings::classic::HttpPluginPre;
use crate::bindings::filter::RequestFilterPre;
use crate::bindings::response_body::ResponseBodyPluginPre;
use crate::error::RejectError;
use crate::fiberless::Plain;
use crate::state::PluginState;

/// A plugin's exports, checked once when it is compiled: which it has says its world.
pub enum Exports {
    /// `http-plugin` / `body-plugin`: `on-request` with every header, `on-response`.
    Classic(HttpPluginPre<PluginState>),
    /// `response-body-plugin`: the classic phases and `on-response-body`.
    ResponseBody(ResponseBodyPluginPre<PluginState>),
    /// `request-filter` / `request-body-filter`: `handle-request` with the head only; no
    /// response phase.
    RequestFilter(RequestFilterPre<PluginState>),
    /// A proxy-wasm module (Envoy's ABI), run in a long-lived VM (`proxy_wasm::pool`).
    ProxyWasm(crate::proxy_wasm::ProxyWasmCode),
}

impl Exports {
    pub(super) fn of(
        component: &Component,
        pre: InstancePre<PluginState>,
    ) -> Result<Exports, RejectError> {
        let wrong = |e: wasmtime::Error| RejectError::WrongWorld(describe(&e));
        if component.get_export_index(None, "handle-request").is_some() {
            return RequestFilterPre::new(pre)
                .map(Exports::RequestFilter)
                .map_err(wrong);
        }
        if component
            .get_export_index(None, "on-response-body")
            .is_some()
        {
            return ResponseBodyPluginPre::new(pre)
                .map(Exports::ResponseBody)
                .map_err(wrong);
        }
        HttpPluginPre::new(pre).map(Exports::Classic).map_err(wrong)
    }

    /// Whether the plugin has a response phase (its instance lives until the response).
    pub fn has_response_phase(&self) -> bool {
        match self {
            Exports::RequestFilter(_) => false,
            Exports::ProxyWasm(code) => code.has_response_phase(),
            _ => true,
        }
    }

    /// Whether it reads the response body (the proxy holds the body back for it).
    pub fn reads_response_body(&self) -> bool {
        matches!(self, Exports::ResponseBody(_))
    }
}

/// Which compiler made a plugin's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Winch: compiled in a fraction of the time, slower code; served until the optimized code
    /// is ready.
    Baseline,
    /// Cranelift, optimizing.
    Optimized,
}

impl Tier {
    /// Its compiler's name, for metrics.
    pub fn compiler(self) -> &'static str {
        match self {
            Tier::Baseline => "winch",
            Tier::Optimized => "cranelift",
        }
    }
}

/// A component ready to instantiate cheaply for every request.
pub struct CompiledPlugin {
    pub sha256: String,
    /// Its exports, by the world it was built for.
    pub exports: Exports,
    /// Size of its compiled code image: what it counts against the cache's budget.
    pub code_bytes: u64,
    /// Instance slots each of its instances takes from the pool and the tenant's quota.
    pub slots: u32,
    /// It imports `wharf:plugin/body`: the proxy reads the request body whole for it.
    pub reads_body: bool,
    /// It imports `wharf:plugin/request`: a filter's call gets the request's headers to ask
    /// for. Others cannot ask, so none are handed over (a copy of the map per filter saved).
    pub reads_headers: bool,
    /// Which compiler made its code.
    pub tier: Tier,
    /// Optimized code replaced this (baseline) code in the cache.
    pub(super) superseded: AtomicBool,
    /// When the cache last handed it out (cache ticks): the eviction order.
    pub(super) last_used: AtomicU64,
    /// Whether each of its last 8 calls waited on I/O (a bit each, the newest lowest).
    pub(super) io_calls: AtomicU8,
    /// Its first call as a plain call, for a request-filter or an `http-plugin` that imports
    /// only plain host calls (`fiberless.rs`).
    pub(crate) plain: Option<Plain>,
    /// Whether each of its last 8 calls ran past a time slice (a bit each, the newest lowest).
    pub(super) long_calls: AtomicU8,
}

/// Pushes a call's bit into a history. Nothing is written when the history stays the same (a
/// plugin whose calls never wait, or always do): every proxy thread calls this for every call,
/// and a write would bounce the cache line between their cores.
fn note(history: &AtomicU8, bit: bool) {
    let _ = history.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
        let next = (h << 1) | u8::from(bit);
        (next != h).then_some(next)
    });
}

impl CompiledPlugin {
    /// Whether its calls should start on the plugin threads: most of its recent calls waited
    /// on I/O (a Redis command, a query, an outbound request), so a call would move there
    /// anyway, and starting there keeps the whole instance on one core. Other calls take their
    /// first time slice on the caller's thread.
    pub fn waits_on_io(&self) -> bool {
        self.io_calls.load(Ordering::Relaxed).count_ones() >= 5
    }

    /// Its plain first call, when an instance may start without a fiber: it imports only
    /// plain host calls, and fewer than 3 of its last 8 calls ran past a time slice (a call
    /// without a fiber that does is ended and restarted on one, its work so far lost).
    pub(crate) fn fiberless(&self) -> Option<&Plain> {
        let long = self.long_calls.load(Ordering::Relaxed).count_ones();
        self.plain.as_ref().filter(|_| long < 3)
    }

    /// Whether its next call starts without a fiber ([`Self::fiberless`]).
    pub fn starts_without_fiber(&self) -> bool {
        self.fiberless().is_some()
    }

    /// Records whether a call waited on I/O, and whether it ran past a time slice.
    pub fn note_call(&self, waited_on_io: bool, long: bool) {
        note(&self.io_calls, waited_on_io);
        note(&self.long_calls, long);
    }

    /// Whether optimized code has replaced this code: its holders take the cache's current
    /// plugin for the same hash ([`ComponentCache::get_in_memory`]) on their next request.
    pub fn superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }
}
