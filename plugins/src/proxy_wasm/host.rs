//! A proxy-wasm module as the gateway runs it: the store data is the same [`PluginState`] a
//! component gets (tenant, fuel, deadline, memory limit, CPU slot, log budget), with the ABI's
//! state beside it; the linker serves the ABI's `env` functions and the WASI subset, and every
//! other ABI function the module imports answers UNIMPLEMENTED.

use wasmtime::{Engine, InstancePre, Linker, Module};

use super::context::HostContext;
use super::env::{self, ProxyHost};
use super::wasi::{self, WasiLog};
use crate::state::PluginState;

impl ProxyHost for PluginState {
    fn context(&mut self) -> &mut HostContext {
        self.proxy.get_or_insert_with(Default::default)
    }

    fn log(&mut self, level: tracing::Level, message: &str) {
        self.log_line(level, message);
    }
}

impl WasiLog for PluginState {
    fn wasi_log(&mut self, fd: i32, line: &str) {
        let level = if fd == 2 {
            tracing::Level::WARN
        } else {
            tracing::Level::INFO
        };
        self.log_line(level, line);
    }
}

/// The linker every proxy-wasm module starts from (a module adds its stubs to a clone).
pub fn linker(engine: &Engine) -> Linker<PluginState> {
    let mut linker = Linker::new(engine);
    // Both only define fixed names once: they cannot fail on a fresh linker.
    if let Err(e) = wasi::link(&mut linker).and_then(|()| env::link(&mut linker)) {
        tracing::error!("cannot link the proxy-wasm host: {e}");
    }
    linker
}

/// A compiled proxy-wasm module, linked and ready to start VMs from.
pub struct ProxyWasmCode {
    pub pre: InstancePre<PluginState>,
    /// It exports `proxy_on_response_headers`.
    response_headers: bool,
    /// It exports `proxy_on_request_body` / `proxy_on_response_body`.
    pub request_body: bool,
    pub response_body: bool,
    /// It exports `proxy_on_response_trailers` (its context lives until the trailers).
    pub response_trailers: bool,
}

impl ProxyWasmCode {
    pub fn new(linker: &Linker<PluginState>, module: &Module) -> wasmtime::Result<Self> {
        let mut linker = linker.clone();
        env::stub_remaining(&mut linker, module)?;
        let pre = linker.instantiate_pre(module)?;
        let exports = |name: &str| module.exports().any(|e| e.name() == name);
        Ok(ProxyWasmCode {
            pre,
            response_headers: exports("proxy_on_response_headers"),
            request_body: exports("proxy_on_request_body"),
            response_body: exports("proxy_on_response_body"),
            response_trailers: exports("proxy_on_response_trailers"),
        })
    }

    /// Whether a request's context stays alive past its request headers (for its body, or the
    /// response and its trailers).
    pub fn has_response_phase(&self) -> bool {
        self.response_headers || self.request_body || self.response_body || self.response_trailers
    }
}
