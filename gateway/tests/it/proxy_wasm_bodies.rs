//! proxy-wasm plugins reading and rewriting bodies: a module replaces the request body the
//! upstream gets and appends to the response body the client gets, through
//! `proxy_set_buffer_bytes`, at each body's end (it buffers the request body until then); a
//! request body it would buffer past the tenant's `plugin_body_max_bytes` is answered 413
//! (`proxy_wasm_streaming.rs` has bodies piece by piece).

use serde_json::json;
use wharf_plugins::test_support::binary;

use crate::proxy_wasm_serve::{route_to, upload_and_attach};
use crate::support::api::{setup, Body, OP};
use crate::support::*;

/// Buffers a request body to its end and replaces it with `REPLACED`, appends `!` to a response
/// body at its end; with `release`,
/// it removes `content-length` first (Envoy's convention for a body whose length will change),
/// else its changes cannot go out (the length was promised) and the bodies pass unchanged.
fn rewriter(release: bool) -> Vec<u8> {
    let release = if release {
        "(drop (call $rm (i32.const 0) (i32.const 32) (i32.const 14)))"
    } else {
        ""
    };
    let release_response = release.replace(
        "(i32.const 0) (i32.const 32)",
        "(i32.const 2) (i32.const 32)",
    );
    binary(&format!(
        r#"(module
          (import "env" "proxy_set_buffer_bytes" (func $set (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_remove_header_map_value" (func $rm (param i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "REPLACED!")
          (data (i32.const 32) "content-length")
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) {release} (i32.const 0))
          (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) {release_response} (i32.const 0))
          (func (export "proxy_on_request_body") (param i32) (param i32) (param $eos i32) (result i32)
            (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
            (drop (call $set (i32.const 0) (i32.const 0) (i32.const 0x7fffffff) (i32.const 16) (i32.const 8)))
            (i32.const 0))
          (func (export "proxy_on_response_body") (param i32) (param i32) (param $eos i32) (result i32)
            (if (local.get $eos) (then
              (drop (call $set (i32.const 1) (i32.const 0x7fffffff) (i32.const 0) (i32.const 24) (i32.const 1)))))
            (i32.const 0)))"#
    ))
}

#[tokio::test]
async fn a_module_rewrites_request_and_response_bodies_within_the_quota() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    upload_and_attach(&gw, &api, "a", "api", "rewriter", rewriter(true), json!({})).await;
    let client = reqwest::Client::new();
    let send = |body: Vec<u8>| {
        client
            .post(format!("http://{}/submit", gw.proxy))
            .header("host", "a.test")
            .body(body)
            .send()
    };
    let r = send(b"original body".to_vec()).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.ends_with("}!"),
        "the response body got its `!`: {text}"
    );
    let echoed: serde_json::Value = serde_json::from_str(text.trim_end_matches('!')).unwrap();
    assert_eq!(
        echoed["body_bytes"], 8,
        "the upstream got REPLACED: {echoed}"
    );

    // A module that leaves content-length cannot change the length it promised: the bodies
    // pass as they were (and the client still gets a length).
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "rewriter",
        rewriter(false),
        json!({}),
    )
    .await;
    let r = send(b"original body".to_vec()).await.unwrap();
    assert!(
        r.headers().get("content-length").is_some(),
        "{:?}",
        r.headers()
    );
    let echoed: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        echoed["body_bytes"], 13,
        "the upstream got the client's body: {echoed}"
    );

    // Past plugin_body_max_bytes: the module buffers the body to its end, so a body larger
    // than the quota is answered 413 (it never goes upstream unseen).
    let (s, v) = api
        .call(
            reqwest::Method::PATCH,
            "/v1/tenants/a/quotas",
            Some(OP),
            Some(Body::Json(json!({"plugin_body_max_bytes": 1024}))),
        )
        .await;
    assert!(s.is_success(), "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap_or(0))
        .await;
    let r = send(vec![b'x'; 4096]).await.unwrap();
    assert_eq!(r.status(), 413);
}
