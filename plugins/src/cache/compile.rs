//! Telling a component from a proxy-wasm module, and compiling either with an engine.

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::error::RejectError;

/// Compiled code: a component of Wharf's world, or a proxy-wasm core module.
pub(super) enum Code {
    Component(Component),
    Module(Module),
}

/// What an upload is, before anything compiles it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Component,
    /// A proxy-wasm core module, its imports checked.
    Module,
}

pub(super) fn classify(bytes: &[u8]) -> Result<Kind, RejectError> {
    const CORE_MODULE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    if !bytes.starts_with(&CORE_MODULE) {
        return Ok(Kind::Component);
    }
    match crate::proxy_wasm::inspect(bytes) {
        Ok(Some(_)) => Ok(Kind::Module),
        Err(e) => Err(RejectError::ProxyWasm(e.to_string())),
        Ok(None) => Err(RejectError::NotAComponent(
            "this is a core wasm module; wrap it with `wasm-tools component new`".into(),
        )),
    }
}

pub(super) fn compile(engine: &Engine, kind: Kind, bytes: &[u8]) -> Result<Code, RejectError> {
    match kind {
        Kind::Module => Module::new(engine, bytes)
            .map(Code::Module)
            .map_err(|e| RejectError::ProxyWasm(describe(&e))),
        Kind::Component => Component::new(engine, bytes)
            .map(Code::Component)
            .map_err(|e| RejectError::NotAComponent(describe(&e))),
    }
}

pub(super) fn describe(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.chars().take(600).collect()
}
