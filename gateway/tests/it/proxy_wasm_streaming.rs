//! proxy-wasm bodies piece by piece, as Envoy delivers them (`proxy_on_request_body` /
//! `proxy_on_response_body` per piece with `end_of_stream`): a module that continues every piece
//! lets a body far past the tenant's `plugin_body_max_bytes` stream through with the gateway's
//! memory flat; one that buffers (`StopIterationAndBuffer`) sees the whole body so far at each
//! callback; one that buffers past the quota gets the request answered 413 before any of it
//! reaches the upstream; a local reply from a request body callback answers the client. Hostile
//! body callbacks: `proxy_wasm_streaming_hostile.rs`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_plugins::test_support::binary;

use crate::proxy_wasm_serve::upload_and_attach;
use crate::support::api::{setup, Api, Body, OP};
use crate::support::body_server::BodyServer;
use crate::support::*;

/// A raw-ABI module: the host functions body tests use, a decimal writer, and `callbacks`.
pub(crate) fn module(callbacks: &str) -> Vec<u8> {
    binary(&format!(
        r#"(module
          (import "env" "proxy_set_buffer_bytes" (func $set (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_get_header_map_value" (func $hget (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_remove_header_map_value" (func $rm (param i32 i32 i32) (result i32)))
          (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 40)
          (data (i32.const 16) "content-length")
          (data (i32.const 32) "x-body-size")
          (data (i32.const 48) "EDITED")
          (data (i32.const 64) "replied from the response headers")
          (data (i32.const 128) "replied from the response body")
          (data (i32.const 192) "refused by its request body")
          (data (i32.const 224) "x-copied")
          (global $calls (mut i32) (i32.const 0))
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32))
          ;; Writes $n in decimal ending just before $end; returns where it starts.
          (func $itoa (param $n i32) (param $end i32) (result i32)
            (loop $digit
              (local.set $end (i32.sub (local.get $end) (i32.const 1)))
              (i32.store8 (local.get $end)
                (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
              (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
              (br_if $digit (local.get $n)))
            (local.get $end))
          {callbacks})"#
    ))
}

/// Continues every piece, both ways, and leaves `content-length`.
pub(crate) fn passer() -> Vec<u8> {
    module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
           (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
           (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
           (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))"#,
    )
}

/// Headers only: no body callbacks.
fn headers_only() -> Vec<u8> {
    module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
           (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))"#,
    )
}

/// Buffers the request body to its end (removing `content-length` first: it will change the
/// length), then replaces it with `<bytes it saw at the end>/<callbacks it got>`.
fn counter() -> Vec<u8> {
    module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
             (drop (call $rm (i32.const 0) (i32.const 16) (i32.const 14)))
             (i32.const 0))
           (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
             (local $at i32)
             (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
             (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
             (local.set $at (call $itoa (global.get $calls) (i32.const 600)))
             (local.set $at (i32.sub (local.get $at) (i32.const 1)))
             (i32.store8 (local.get $at) (i32.const 47))
             (local.set $at (call $itoa (local.get $size) (local.get $at)))
             (global.set $calls (i32.const 0))
             (drop (call $set (i32.const 0) (i32.const 0) (i32.const 0x7fffffff)
               (local.get $at) (i32.sub (i32.const 600) (local.get $at))))
             (i32.const 0))"#,
    )
}

/// Answers 403 from its request body callback.
fn request_replier() -> Vec<u8> {
    module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
           (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
             (drop (call $reply (i32.const 403) (i32.const 0) (i32.const 0)
               (i32.const 192) (i32.const 27) (i32.const 0) (i32.const 0) (i32.const -1)))
             (i32.const 1))"#,
    )
}

/// Route `api` of tenant `t` to `addr`, with these quotas (and a generous plugin deadline).
pub(crate) async fn route_with(gw: &Wharf, api: &Api, t: &str, addr: &str, quotas: Value) {
    let route = json!({"path_prefix": "/", "upstreams": [{"addr": addr, "weight": 1}]});
    let path = format!("/v1/tenants/{t}/routes/api");
    let (s, v) = api
        .call(Method::PUT, &path, Some(OP), Some(Body::Json(route)))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut q = json!({"plugin_deadline_ms": 3000});
    q.as_object_mut()
        .unwrap()
        .extend(quotas.as_object().unwrap().clone());
    let path = format!("/v1/tenants/{t}/quotas");
    let (s, v) = api
        .call(Method::PATCH, &path, Some(OP), Some(Body::Json(q)))
        .await;
    assert!(s.is_success(), "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap_or(0))
        .await;
}

/// A POST with `content-length`, its body written in `pieces` with a pause between them; the
/// whole answer as text.
async fn post_in_pieces(gw: &Wharf, host: &str, pieces: &[Vec<u8>]) -> String {
    let total: usize = pieces.iter().map(Vec::len).sum();
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    let head = format!(
        "POST /submit HTTP/1.1\r\nhost: {host}\r\ncontent-length: {total}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for piece in pieces {
        s.write_all(piece).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn counted(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_continuing_every_piece_streams_bodies_far_past_the_quota_in_flat_memory() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = BodyServer::start().await;
    // The default quota: 1 MiB; the bodies are 64 MiB.
    route_with(&gw, &api, "a", &up.addr.to_string(), json!({})).await;
    upload_and_attach(&gw, &api, "a", "api", "passer", passer(), json!({})).await;
    let size: u64 = 64 << 20;

    // Upstream-bound: written 256 KiB at a time, RSS sampled along.
    let before = gw.rss_bytes();
    let started = Instant::now();
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: a.test\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'z'; 256 << 10];
    let mut peak = before;
    for i in 0..(size / chunk.len() as u64) {
        s.write_all(&chunk).await.unwrap();
        if i % 16 == 0 {
            peak = peak.max(gw.rss_bytes());
        }
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(&format!("\"body_bytes\":{size}")), "{text}");
    // The module left content-length: the upstream got the client's length, not chunks.
    assert!(text.contains("\"chunked\":false"), "{text}");
    let grew_up = peak.saturating_sub(before);
    let up_time = started.elapsed();

    // Client-bound: the upstream's 64 MiB through proxy_on_response_body, read as it comes.
    let before = gw.rss_bytes();
    let started = Instant::now();
    let mut r = reqwest::Client::new()
        .get(format!("http://{}/big?n={size}", gw.proxy))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(size), "{:?}", r.headers());
    let (mut got, mut peak, mut i) = (0u64, before, 0u32);
    while let Some(piece) = r.chunk().await.unwrap() {
        got += piece.len() as u64;
        i += 1;
        if i % 64 == 0 {
            peak = peak.max(gw.rss_bytes());
        }
    }
    assert_eq!(got, size);
    let grew_down = peak.saturating_sub(before);
    let metrics = gw.metrics().await;
    let calls = |phase: &str| {
        counted(
            &metrics,
            &format!(
                r#"wharf_plugin_invocations_total{{outcome="ok",phase="{phase}",plugin="passer",tenant="a"}}"#
            ),
        )
    };
    let (req_calls, resp_calls) = (calls("on_request_body"), calls("on_response_body"));
    eprintln!(
        "64 MiB each way through a proxy-wasm module continuing every piece (quota 1 MiB): \
         upload {up_time:?}, RSS peak +{} KiB, {req_calls} request body callbacks; download {:?}, \
         RSS peak +{} KiB, {resp_calls} response body callbacks",
        grew_up >> 10,
        started.elapsed(),
        grew_down >> 10
    );
    // One callback per piece, not one per body.
    assert!(req_calls >= 64.0, "{req_calls} request body callbacks");
    assert!(resp_calls >= 64.0, "{resp_calls} response body callbacks");
    assert!(grew_up < 24 << 20, "RSS grew {grew_up} bytes streaming up");
    assert!(
        grew_down < 24 << 20,
        "RSS grew {grew_down} bytes streaming down"
    );
}

#[tokio::test]
async fn a_buffering_module_sees_the_whole_body_across_pieces_and_the_quota_holds() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = BodyServer::start().await;
    route_with(&gw, &api, "a", &up.addr.to_string(), json!({})).await;
    upload_and_attach(&gw, &api, "a", "api", "counter", counter(), json!({})).await;

    // Three pieces, 100 ms apart: the module keeps buffering until the end, where its callback
    // sees all 30,000 bytes, after more than one callback.
    let pieces = vec![vec![b'x'; 10_000]; 3];
    let text = post_in_pieces(&gw, "a.test", &pieces).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let seen = body["body"].as_str().unwrap();
    let (size, calls) = seen.split_once('/').unwrap();
    assert_eq!(size, "30000", "{body}");
    assert!(calls.parse::<u32>().unwrap() >= 2, "{body}");
    // It removed content-length: the replacement went upstream chunked.
    assert_eq!(body["chunked"], true, "{body}");

    // A buffer that would pass plugin_body_max_bytes: 413, and none of the body went upstream
    // (the module never let any of it go).
    route_with(
        &gw,
        &api,
        "a",
        &up.addr.to_string(),
        json!({"plugin_body_max_bytes": 1024}),
    )
    .await;
    let before = up.received();
    let r = reqwest::Client::new()
        .post(format!("http://{}/submit", gw.proxy))
        .header("host", "a.test")
        .body(vec![b'y'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "request_body_too_large", "{v}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(up.received(), before, "the upstream got none of it");
    // A body within it is served.
    let text = post_in_pieces(&gw, "a.test", &[b"small".to_vec()]).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#""body":"5/"#), "{text}");
}

#[tokio::test]
async fn a_local_reply_from_a_request_body_callback_answers_the_client() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = BodyServer::start().await;
    route_with(&gw, &api, "a", &up.addr.to_string(), json!({})).await;
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "replier",
        request_replier(),
        json!({}),
    )
    .await;
    // The upstream has the request's head already, the client no answer: the module's reply
    // is served and the upstream request abandoned (none of the body went on).
    let r = reqwest::Client::new()
        .post(format!("http://{}/submit", gw.proxy))
        .header("host", "a.test")
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "refused by its request body");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(up.received(), 0);
    // An answer, not a failure: no error logged for it.
    let log = gw.log();
    assert!(!log.contains("a plugin answered"), "{log}");
}

#[tokio::test]
async fn a_small_body_costs_one_callback_and_a_module_without_body_callbacks_none() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = BodyServer::start().await;
    route_with(&gw, &api, "a", &up.addr.to_string(), json!({})).await;
    route_with(&gw, &api, "b", &up.addr.to_string(), json!({})).await;
    upload_and_attach(&gw, &api, "a", "api", "passer", passer(), json!({})).await;
    upload_and_attach(&gw, &api, "b", "api", "plain", headers_only(), json!({})).await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let r = client
            .get(format!("http://{}/text", gw.proxy))
            .header("host", "a.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "upstream body");
    }
    // A GET has no request body; each small response is one piece with its end.
    let metrics = gw.metrics().await;
    let series = |plugin: &str, tenant: &str, phase: &str| {
        format!(
            r#"wharf_plugin_invocations_total{{outcome="ok",phase="{phase}",plugin="{plugin}",tenant="{tenant}"}}"#
        )
    };
    assert_eq!(
        counted(&metrics, &series("passer", "a", "on_response_body")),
        5.0
    );
    assert_eq!(
        counted(&metrics, &series("passer", "a", "on_request_body")),
        0.0
    );
    // A module that exports no body callback is never called for a body's pieces, however
    // long the body.
    let text = post_in_pieces(&gw, "b.test", &[vec![b'x'; 3 << 20]]).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"body_bytes\":3145728"), "{text}");
    let metrics = gw.metrics().await;
    assert_eq!(counted(&metrics, &series("plain", "b", "on_request")), 1.0);
    assert!(!metrics.contains(r#"phase="on_request_body",plugin="plain""#));
    assert!(!metrics.contains(r#"phase="on_response_body",plugin="plain""#));
}
