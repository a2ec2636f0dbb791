//! A prebuilt Higress proxy-wasm plugin (Go, 5.5 MB, downloaded by scripts/test) starts under
//! Wharf's WASI subset: its Go runtime initializes with no file, socket or environment access,
//! every `env` function it imports answering UNIMPLEMENTED for now. Prints what starting one VM
//! costs (the measurement behind docs/proxy-wasm.md's VM-per-key model).

use std::time::Instant;

use wasmtime::{Config, Engine, Linker, Module, Store};
use wharf_plugins::proxy_wasm::{abi::Status, wasi};

#[derive(Default)]
struct Host {
    lines: Vec<String>,
}

impl wasi::WasiLog for Host {
    fn wasi_log(&mut self, _fd: i32, line: &str) {
        self.lines.push(line.to_string());
    }
}

#[tokio::test]
async fn a_higress_go_plugin_starts_under_the_wasi_subset() {
    let dir = std::env::var("WHARF_HIGRESS_DIR").expect(
        "WHARF_HIGRESS_DIR: run the suite with scripts/test, which downloads the Higress plugins",
    );
    let bytes = std::fs::read(format!("{dir}/gpustack-set-header-pre-route.wasm")).unwrap();
    let engine = Engine::new(&Config::new()).unwrap();
    let compiled = Instant::now();
    let module = Module::new(&engine, &bytes).unwrap();
    let compile_time = compiled.elapsed();
    let mut linker = Linker::<Host>::new(&engine);
    wasi::link(&mut linker).unwrap();
    for import in module.imports() {
        if import.module() == "env" {
            let ty = import.ty().unwrap_func().clone();
            linker
                .func_new("env", import.name(), ty, |_, _, results| {
                    if let Some(r) = results.first_mut() {
                        *r = wasmtime::Val::I32(Status::Unimplemented as i32);
                    }
                    Ok(())
                })
                .unwrap();
        }
    }
    let mut store = Store::new(&engine, Host::default());
    let started = Instant::now();
    let instance = linker.instantiate_async(&mut store, &module).await.unwrap();
    let init = instance
        .get_typed_func::<(), ()>(&mut store, "_initialize")
        .expect("Go plugins are WASI reactors");
    init.call_async(&mut store, ()).await.unwrap();
    let start_time = started.elapsed();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let mib = memory.data_size(&store) as f64 / (1 << 20) as f64;
    eprintln!(
        "Higress set-header-pre-route ({} KB): compiled in {compile_time:?} (debug build), \
         started in {start_time:?}, memory {mib:.1} MiB, wrote {} log lines",
        bytes.len() >> 10,
        store.data().lines.len()
    );
    assert!(mib >= 1.0, "a Go runtime came up");
    assert!(instance
        .get_func(&mut store, "proxy_on_context_create")
        .is_some());
}
