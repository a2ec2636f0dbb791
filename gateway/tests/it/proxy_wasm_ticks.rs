//! proxy-wasm ticks from the attacker's side: a module asking for a 1 ms tick gets the floor
//! (100 ms), each tick counted against its tenant like a request's callback; a tick that loops
//! forever is stopped by the tenant's deadline or fuel, its VM dropped and started again by the
//! next request, and requests keep being served.

use std::time::Duration;

use serde_json::json;
use wharf_plugins::test_support::binary;

use crate::proxy_wasm_serve::{metric_sum, route_to, upload_and_attach};
use crate::support::api::setup;
use crate::support::*;

/// Ticks every `period_ms` (asked at configure), counting them in a module metric `ticks`;
/// `looping`: each tick spins forever instead.
fn ticker(period_ms: u32, looping: bool) -> Vec<u8> {
    let body = if looping {
        "(loop (br 0))"
    } else {
        "(drop (call $inc (global.get $id) (i64.const 1)))"
    };
    binary(&format!(
        r#"(module
          (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
          (import "env" "proxy_define_metric" (func $def (param i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "ticks")
          (global $id (mut i32) (i32.const 0))
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_configure") (param i32 i32) (result i32)
            (drop (call $tick (i32.const {period_ms})))
            (drop (call $def (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 64)))
            (global.set $id (i32.load (i32.const 64)))
            (i32.const 1))
          (func (export "proxy_on_tick") (param i32) {body})
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))"#
    ))
}

fn ticks(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("wharf_plugin_module_metric") && l.contains("name=\"ticks\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_one_millisecond_tick_gets_the_floor() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    upload_and_attach(&gw, &api, "a", "api", "ticker", ticker(1, false), json!({})).await;
    let r = gw.request("GET", "a.test", "/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let n = ticks(&gw.metrics().await);
    // 100 ms floor: about 15 in 1.5 s, not 1,500.
    assert!((5.0..=16.0).contains(&n), "{n} ticks in 1.5 s");
}

#[tokio::test]
async fn a_tick_that_loops_is_stopped_and_its_vm_replaced() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    // The default 100 ms deadline, not the suite's relaxed one.
    api.set_quotas("a", json!({"plugin_deadline_ms": 100}))
        .await;
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "spinner",
        ticker(100, true),
        json!({}),
    )
    .await;
    let first = gw.request("GET", "a.test", "/", &[]).await;
    assert_eq!(first.status, 200, "{}", first.json);
    // The first tick spins until its deadline and takes the VM with it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let m = gw.metrics().await;
    let timeouts: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with("wharf_plugin_invocations_total")
                && l.contains("on_tick")
                && (l.contains("timeout") || l.contains("fuel_exhausted"))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        timeouts >= 1.0,
        "the tick ran into its deadline or fuel:\n{m}"
    );
    // Requests still served: the next one starts a new VM.
    let next = gw.request("GET", "a.test", "/", &[]).await;
    assert_eq!(next.status, 200, "{}", next.json);
    let m = gw.metrics().await;
    assert!(
        metric_sum(&m, "wharf_plugin_vm_restarts_total") >= 1.0,
        "{m}"
    );
}
