//! Hostile proxy-wasm body callbacks, piece by piece: one that grows a buffer past the tenant's
//! quota is refused there and fails only its request; one that spins is stopped at the deadline
//! while another tenant is served.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::proxy_wasm_serve::upload_and_attach;
use crate::proxy_wasm_streaming::{module, route_with};
use crate::support::api::setup;
use crate::support::body_server::BodyServer;
use crate::support::*;

/// Replaces the request body with 2 MiB of its memory: past any quota here, refused
/// (`BAD_ARGUMENT`), upon which it traps.
fn bloater() -> Vec<u8> {
    module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
             (drop (call $rm (i32.const 0) (i32.const 16) (i32.const 14)))
             (i32.const 0))
           (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
             (if (call $set (i32.const 0) (i32.const 0) (i32.const 0x7fffffff)
                   (i32.const 0) (i32.const 0x200000))
               (then unreachable))
             (i32.const 0))"#,
    )
}

/// Spins in its request body callback: each piece's callback runs under the deadline.
fn spinner() -> Vec<u8> {
    module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
           (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
             (loop $forever (br $forever))
             (i32.const 0))"#,
    )
}

#[tokio::test]
async fn a_module_growing_a_buffer_past_the_quota_is_refused_and_fails_only_its_request() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = BodyServer::start().await;
    let other = Upstream::start("b-up").await;
    route_with(&gw, &api, "a", &up.addr.to_string(), json!({})).await;
    route_with(&gw, &api, "b", &other.target(), json!({})).await;
    upload_and_attach(&gw, &api, "a", "api", "bloater", bloater(), json!({})).await;
    let before = gw.rss_bytes();
    let r = reqwest::Client::new()
        .post(format!("http://{}/submit", gw.proxy))
        .header("host", "a.test")
        .body("hello")
        .send()
        .await
        .unwrap();
    // proxy_set_buffer_bytes answered BAD_ARGUMENT (2 MiB over the 1 MiB quota), the module
    // trapped: its request fails as a plugin failure.
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "plugin_trap", "{v}");
    assert!(gw.rss_bytes().saturating_sub(before) < 16 << 20);
    // Another tenant is served meanwhile.
    let b = gw.get("b.test", "/").await;
    assert_eq!(b.status, 200);
}

#[tokio::test]
async fn a_body_callback_that_spins_is_stopped_at_the_deadline_while_another_tenant_is_served() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = BodyServer::start().await;
    let other = Upstream::start("b-up").await;
    route_with(
        &gw,
        &api,
        "a",
        &up.addr.to_string(),
        // Fuel to spare: the deadline is what stops it.
        json!({"plugin_deadline_ms": 200, "plugin_fuel": 100_000_000_000u64}),
    )
    .await;
    route_with(&gw, &api, "b", &other.target(), json!({})).await;
    upload_and_attach(&gw, &api, "a", "api", "spinner", spinner(), json!({})).await;
    let started = Instant::now();
    let spin = reqwest::Client::new()
        .post(format!("http://{}/submit", gw.proxy))
        .header("host", "a.test")
        .body(vec![b'x'; 1000])
        .send();
    let b = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        (gw.get("b.test", "/").await.status, t.elapsed())
    };
    let (r, (b_status, b_took)) = tokio::join!(spin, b);
    let r = r.unwrap();
    assert_eq!(r.status(), 504);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "plugin_timeout", "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(up.received(), 0, "the upstream got none of the body");
    assert_eq!(b_status, 200);
    assert!(
        b_took < Duration::from_secs(2),
        "tenant b waited {b_took:?}"
    );
}
