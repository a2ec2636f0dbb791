//! Higress's `proxy_redis_call` from a proxy-wasm module's root context (`proxy_on_tick`): each
//! tick's command runs in the tenant's own Redis namespace, and each answer is delivered back to
//! the root context as a callback of the VM's own.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use wharf_plugins::test_support::binary;

use crate::proxy_wasm_serve::upload_and_attach;
use crate::support::api::{Api, Body, OP};
use crate::support::*;

/// Each tick sends `INCR ticks` to the tenant's Redis (Higress's `proxy_redis_call`); each
/// answer's callback counts itself in the module metric `redis_answers`.
fn redis_ticker() -> Vec<u8> {
    let query = "*2\r\n$4\r\nINCR\r\n$5\r\nticks\r\n";
    let data: String = query.bytes().map(|b| format!("\\{b:02x}")).collect();
    binary(&format!(
        r#"(module
          (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
          (import "env" "proxy_redis_call" (func $redis (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_define_metric" (func $def (param i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "redis_answers")
          (data (i32.const 100) "redis")
          (data (i32.const 200) "{data}")
          (global $id (mut i32) (i32.const 0))
          (func (export "proxy_abi_version_0_2_100"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_configure") (param i32 i32) (result i32)
            (drop (call $tick (i32.const 100)))
            (drop (call $def (i32.const 0) (i32.const 16) (i32.const 13) (i32.const 64)))
            (global.set $id (i32.load (i32.const 64)))
            (i32.const 1))
          (func (export "proxy_on_tick") (param i32)
            (drop (call $redis (i32.const 100) (i32.const 5) (i32.const 200) (i32.const {len}) (i32.const 80))))
          (func (export "proxy_on_redis_call_response") (param i32 i32 i32 i32)
            (drop (call $inc (global.get $id) (i64.const 1))))
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))"#,
        len = query.len(),
    ))
}

#[tokio::test]
async fn a_tick_sends_redis_commands_in_the_tenants_namespace() {
    use deadpool_redis::redis;
    let (url, _store) = fresh_store(StoreKind::Sqlite).await;
    let toml = format!(
        "operator_token = \"{OP}\"\n[redis]\nurl = \"{}\"\n",
        redis_url()
    );
    let gw = Wharf::start_configured(&url, &toml, &[]).await;
    let api = Api::new(&gw);
    let up = Upstream::start("up").await;
    let t = tenant_id();
    let body = json!({"id": t, "hostnames": [format!("{t}.test")]});
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(OP),
            Some(Body::Json(body)),
        )
        .await;
    assert!(s.is_success(), "{v}");
    crate::proxy_wasm_serve::route_to(&api, &t, &up).await;
    upload_and_attach(
        &gw,
        &api,
        &t,
        "api",
        "redis-tick",
        redis_ticker(),
        json!({}),
    )
    .await;
    let first = gw.request("GET", &format!("{t}.test"), "/", &[]).await;
    assert_eq!(first.status, 200, "{}", first.json);

    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("wharf:t:{t}:ticks");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut count: Option<i64> = None;
    while Instant::now() < deadline && count.unwrap_or(0) < 3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        count = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert!(count.unwrap_or(0) >= 3, "{key}: {count:?}");
    let bare: Option<i64> = redis::cmd("GET")
        .arg("ticks")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(bare, None, "nothing outside the tenant's namespace");
    let m = gw.metrics().await;
    let answered: f64 = m
        .lines()
        .filter(|l| l.starts_with("wharf_plugin_module_metric") && l.contains("redis_answers"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        answered >= 2.0,
        "answers delivered to the root context:\n{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("wharf_plugin_invocations_total")
                && l.contains("on_redis_call_response")),
        "{m}"
    );
}
