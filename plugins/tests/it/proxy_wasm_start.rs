//! A prebuilt Higress proxy-wasm plugin (Go, 5.5 MB, downloaded by scripts/test) under Wharf's
//! proxy-wasm host pieces: its Go runtime starts under the WASI subset with no file, socket or
//! environment access (what starting one VM costs: the measurement behind docs/proxy-wasm.md's
//! VM-per-key model), and a VM with its root context configured runs a request's headers
//! callback through the ABI host functions, editing the request as Higress documents.

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

/// The ABI host on a store of its own (the gateway's VM pool will give it the tenant's limits).
#[derive(Default)]
struct Abi {
    ctx: wharf_plugins::proxy_wasm::context::HostContext,
    logs: Vec<String>,
}

/// Looks the module's memory up by name on every call (no VM to keep it).
impl wharf_plugins::proxy_wasm::memory::GuestHandles for Host {
    fn handles(&mut self) -> Option<&wharf_plugins::proxy_wasm::memory::Handles> {
        None
    }
}

impl wasi::WasiLog for Abi {
    fn wasi_log(&mut self, _fd: i32, line: &str) {
        self.logs.push(line.to_string());
    }
}

impl wharf_plugins::proxy_wasm::env::ProxyHost for Abi {
    fn context(&mut self) -> &mut wharf_plugins::proxy_wasm::context::HostContext {
        &mut self.ctx
    }
    fn log(&mut self, _: tracing::Level, message: &str) {
        self.logs.push(message.to_string());
    }
}

#[tokio::test]
async fn a_higress_go_plugin_edits_request_headers_through_the_abi() {
    use wharf_plugins::proxy_wasm::{env, vm::Vm};
    let dir = std::env::var("WHARF_HIGRESS_DIR").expect(
        "WHARF_HIGRESS_DIR: run the suite with scripts/test, which downloads the Higress plugins",
    );
    let bytes = std::fs::read(format!("{dir}/gpustack-set-header-pre-route.wasm")).unwrap();
    let engine = Engine::new(&Config::new()).unwrap();
    let module = Module::new(&engine, &bytes).unwrap();
    let mut linker = Linker::<Abi>::new(&engine);
    wasi::link(&mut linker).unwrap();
    env::link(&mut linker).unwrap();
    env::stub_remaining(&mut linker, &module).unwrap();
    let mut host = Abi::default();
    for (k, v) in [
        ("route_name", "orders"),
        ("cluster_name", "outbound|8080||orders.svc"),
        ("plugin_name", "set-header"),
        ("plugin_root_id", ""),
    ] {
        host.ctx
            .properties
            .insert(k.to_string().into(), v.as_bytes().to_vec());
    }
    let config = br#"{"routeNameHeader": "x-route-name", "clusterNameHeader": "x-cluster-name", "enableOnPathPrefix": ["/orders"]}"#;
    let store = Store::new(&engine, host);
    let pre = linker.instantiate_pre(&module).unwrap();
    let mut vm = Vm::new(store);
    if let Err(e) = vm.start(&pre, b"", config).await {
        panic!("start: {e}");
    }
    let headers: Vec<(Vec<u8>, Vec<u8>)> = [
        (":authority", "shop.test"),
        (":path", "/orders/7"),
        (":method", "GET"),
        (":scheme", "http"),
    ]
    .iter()
    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    let started = Instant::now();
    let (id, out) = vm.request_headers(headers, true).await.unwrap();
    let took = started.elapsed();
    vm.finish(id).await.unwrap();
    let shown: Vec<(String, String)> = out
        .headers
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    eprintln!(
        "on_request_headers in {took:?}: {:?} {shown:?}; logs {:?}",
        out.action,
        vm.store.data().logs
    );
    assert!(
        shown.contains(&("x-route-name".into(), "orders".into())),
        "{shown:?}"
    );
}
