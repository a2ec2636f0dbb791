//! A hostile plugin's `config.get` key. The host reads the key where it lies in the guest's
//! memory (`capabilities/config.rs`, linked by hand) instead of lifting it into a `String`, so
//! the checks the lift made are the host's own now: a key that is not UTF-8, or that runs past
//! the memory's end (by a little, or by 2 GiB), traps the plugin's call, costs the host no copy,
//! and leaves the runtime serving the next instance as before.

use std::sync::Arc;

use wharf_metrics::Metrics;
use wharf_plugins::test_support::{binary, get_request, invocation, LIFTED_PHASES, REALLOC, TYPES};
use wharf_plugins::types::RequestAction;
use wharf_plugins::{PluginRuntime, RuntimeSettings};

/// Where the plugin's data segment puts its keys.
const NOT_UTF8: u32 = 4096;
const HEADER: u32 = 4200;

/// An `http-plugin` whose `on-request` calls `config.get` with the key at `ptr`, `len` bytes
/// long, then traps unless the answer's `some`-ness is `want_some` (and, when it is, the value
/// is 5 bytes long: `x-yes`); it continues otherwise.
fn config_reader(ptr: u32, len: u32, want_some: bool) -> Vec<u8> {
    let want = u32::from(want_some);
    binary(&format!(
        r#"(component
  {TYPES}
  (type $config-ty (instance
    (export "get" (func (param "key" string) (result (option string))))))
  (import "wharf:plugin/config@0.1.0" (instance $config (type $config-ty)))
  (alias export $config "get" (func $get))
  (core module $mem
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 16384))
    {REALLOC}
    (data (i32.const {NOT_UTF8}) "\ff\fe\c3\28")
    (data (i32.const {HEADER}) "header"))
  (core instance $memi (instantiate $mem))
  (alias core export $memi "memory" (core memory $memory))
  (alias core export $memi "cabi_realloc" (core func $cabi_realloc))
  (core func $get-lowered (canon lower (func $get) (memory $memory) (realloc $cabi_realloc) string-encoding=utf8))
  (core instance $host (export "get" (func $get-lowered)))
  (core module $m
    (import "env" "memory" (memory 1))
    (import "host" "get" (func $get (param i32 i32 i32)))
    (func (export "on-request") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (call $get (i32.const {ptr}) (i32.const {len}) (i32.const 1024))
      (if (i32.ne (i32.load8_u (i32.const 1024)) (i32.const {want})) (then unreachable))
      (if (i32.and (i32.const {want}) (i32.ne (i32.load (i32.const 1032)) (i32.const 5)))
        (then unreachable))
      (i32.const 0))
    (func (export "on-response") (param i32 i32 i32) (result i32)
      (i32.const 256)))
  (core instance $main (instantiate $m (with "env" (instance $memi)) (with "host" (instance $host))))
  {LIFTED_PHASES}
)"#
    ))
}

#[tokio::test]
async fn a_config_key_that_is_not_utf8_or_past_the_memory_traps_the_call_not_the_host() {
    let metrics = Arc::new(Metrics::new());
    let rt =
        PluginRuntime::new(RuntimeSettings::default(), None, metrics.clone()).expect("runtime");
    let (tenant, plugin): (Arc<str>, Arc<str>) = ("acme".into(), "reader".into());
    let run = |wasm: Vec<u8>| {
        let rt = rt.clone();
        let (tenant, plugin) = (tenant.clone(), plugin.clone());
        async move {
            let compiled = rt.validate(&wasm).expect("a valid component");
            let inv = invocation((&tenant, &plugin), &[("header", "x-yes")]);
            let mut instance = rt.prepare(inv, &compiled).await.expect("prepared");
            instance.on_request(get_request("/", &[], "acme")).await
        }
    };
    // The plugin's checks hold on a well-formed key: found, and not found.
    let found = run(config_reader(HEADER, 6, true)).await;
    assert!(matches!(found, Ok(RequestAction::Continue(_))), "{found:?}");
    let absent = run(config_reader(HEADER, 5, false)).await;
    assert!(
        matches!(absent, Ok(RequestAction::Continue(_))),
        "{absent:?}"
    );
    for (what, ptr, len) in [
        ("bytes that are not UTF-8", NOT_UTF8, 4),
        ("a key running past the memory's end", 65_530, 100),
        ("a 2 GiB key", HEADER, 0x7fff_ffff),
        ("a key starting past the memory", 0xffff_fff0, 8),
    ] {
        let err = run(config_reader(ptr, len, false)).await.expect_err(what);
        assert_eq!(err.code(), "plugin_trap", "{what}: {err}");
        assert_eq!(err.plugin(), "reader", "{what}");
    }
    // The runtime serves on: every instance gone, the next one as before.
    assert_eq!(metrics.plugin_instances_in_use.get(), 0);
    let again = run(config_reader(HEADER, 6, true)).await;
    assert!(matches!(again, Ok(RequestAction::Continue(_))), "{again:?}");
}
