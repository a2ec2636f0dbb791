//! A response paused in `proxy_on_response_headers` (Envoy's `StopIteration`): its head is held,
//! unsent, until a body callback continues, which may still edit the headers and replace the
//! body (the length fixed); a local reply from the response headers callback, or from a body
//! callback while the head is held, replaces the upstream's response; once the head is gone a
//! local reply is refused (counted, the response broken off). Hostile: a module that holds the
//! response and never continues ends at the plugin deadline, even while the upstream sends
//! nothing, and another tenant is served meanwhile.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proxy_wasm_serve::upload_and_attach;
use crate::proxy_wasm_streaming::{module, route_with};
use crate::support::api::{setup, Api, Body, OP};
use crate::support::body_server::BodyServer;
use crate::support::*;

const NO_REQUEST_PHASE: &str =
    r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))"#;

/// Holds the head; at the body's end adds `x-body-size: <bytes it saw>` to the response and
/// replaces the body with `EDITED`.
fn held_editor() -> Vec<u8> {
    module(&format!(
        r#"{NO_REQUEST_PHASE}
           (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 1))
           (func (export "proxy_on_response_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
             (local $at i32)
             (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
             (local.set $at (call $itoa (local.get $size) (i32.const 600)))
             (drop (call $add (i32.const 2) (i32.const 32) (i32.const 11)
               (local.get $at) (i32.sub (i32.const 600) (local.get $at))))
             (drop (call $set (i32.const 1) (i32.const 0) (i32.const 0x7fffffff) (i32.const 48) (i32.const 6)))
             (i32.const 0))"#
    ))
}

/// Copies the response's `x-body-size` into `x-copied` in its response headers callback.
fn copier() -> Vec<u8> {
    module(&format!(
        r#"{NO_REQUEST_PHASE}
           (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
             (if (i32.eqz (call $hget (i32.const 2) (i32.const 32) (i32.const 11)
                   (i32.const 700) (i32.const 704)))
               (then (drop (call $add (i32.const 2) (i32.const 224) (i32.const 8)
                 (i32.load (i32.const 700)) (i32.load (i32.const 704))))))
             (i32.const 0))"#
    ))
}

/// Answers 418 from its response headers callback.
fn header_replier() -> Vec<u8> {
    module(&format!(
        r#"{NO_REQUEST_PHASE}
           (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
             (drop (call $reply (i32.const 418) (i32.const 0) (i32.const 0)
               (i32.const 64) (i32.const 33) (i32.const 0) (i32.const 0) (i32.const -1)))
             (i32.const 1))"#
    ))
}

/// Answers 451 from its response body callback; with `hold`, it held the head first.
fn body_replier(hold: bool) -> Vec<u8> {
    module(&format!(
        r#"{NO_REQUEST_PHASE}
           (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const {}))
           (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
             (drop (call $reply (i32.const 451) (i32.const 0) (i32.const 0)
               (i32.const 128) (i32.const 30) (i32.const 0) (i32.const 0) (i32.const -1)))
             (i32.const 1))"#,
        i32::from(hold)
    ))
}

/// Holds the head and never lets anything go.
fn never_continues() -> Vec<u8> {
    module(&format!(
        r#"{NO_REQUEST_PHASE}
           (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 1))
           (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 1))"#
    ))
}

#[tokio::test]
async fn a_held_response_is_edited_from_its_body_callback() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = BodyServer::start().await;
    route_with(&gw, &api, "a", &up.addr.to_string(), json!({})).await;
    upload_and_attach(&gw, &api, "a", "api", "editor", held_editor(), json!({})).await;
    // 300,000 bytes in 64 KiB pieces: the head waits for all of them.
    let r = reqwest::Client::new()
        .get(format!("http://{}/big?n=300000", gw.proxy))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A header added at the body's end: the head had not gone out before.
    assert_eq!(r.headers()["x-body-size"], "300000", "{:?}", r.headers());
    assert_eq!(r.headers()["content-length"], "6", "{:?}", r.headers());
    assert!(r.headers().get("x-request-id").is_some());
    assert_eq!(r.text().await.unwrap(), "EDITED");

    // A plugin before it in the chain gets its response phase when the head goes, as Envoy's
    // filters do: it sees the header the body callback added.
    let (s, v) = api
        .call(
            reqwest::Method::DELETE,
            "/v1/tenants/a/routes/api/plugins/editor",
            Some(OP),
            None,
        )
        .await;
    assert!(s.is_success(), "{v}");
    upload_and_attach(&gw, &api, "a", "api", "copier", copier(), json!({})).await;
    upload_and_attach(&gw, &api, "a", "api", "editor", held_editor(), json!({})).await;
    let r = reqwest::Client::new()
        .get(format!("http://{}/big?n=300000", gw.proxy))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-copied"], "300000", "{:?}", r.headers());
    assert_eq!(r.text().await.unwrap(), "EDITED");
}

#[tokio::test]
async fn local_replies_from_the_response_phase_replace_the_upstreams_until_the_head_is_gone() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = BodyServer::start().await;
    route_with(&gw, &api, "a", &up.addr.to_string(), json!({})).await;
    let client = reqwest::Client::new();
    let get = |path: &'static str| {
        client
            .get(format!("http://{}{path}", gw.proxy))
            .header("host", "a.test")
            .send()
    };

    // From the response headers callback.
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "replier",
        header_replier(),
        json!({}),
    )
    .await;
    let r = get("/text").await.unwrap();
    assert_eq!(r.status(), 418);
    assert_eq!(r.text().await.unwrap(), "replied from the response headers");

    // From the body callback, the head held.
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "replier",
        body_replier(true),
        json!({}),
    )
    .await;
    let r = get("/big?n=300000").await.unwrap();
    assert_eq!(r.status(), 451);
    assert_eq!(r.headers()["content-length"], "30");
    assert_eq!(r.text().await.unwrap(), "replied from the response body");

    // From the body callback after the module let the head go: refused, counted as the module's
    // failure. The client gets the plugin failure when the head was still in the gateway (it
    // is written with the first piece when both came together), else a broken-off response.
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "replier",
        body_replier(false),
        json!({}),
    )
    .await;
    let r = get("/big?n=300000").await.unwrap();
    if r.status() == 502 {
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "plugin_invalid_output", "{v}");
    } else {
        assert_eq!(r.status(), 200);
        let got = match r.bytes().await {
            Ok(b) => b.len(),
            Err(_) => 0,
        };
        assert!(got < 300_000, "the response is broken off ({got} bytes)");
    }
    gw.wait_metric(
        r#"wharf_plugin_invocations_total{outcome="invalid_output",phase="on_response_body",plugin="replier",tenant="a"}"#,
        1.0,
    )
    .await;
}

#[tokio::test]
async fn a_module_holding_a_response_forever_ends_at_the_plugin_deadline() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = BodyServer::start().await;
    let other = Upstream::start("b-up").await;
    route_with(
        &gw,
        &api,
        "a",
        &up.addr.to_string(),
        json!({"plugin_deadline_ms": 300}),
    )
    .await;
    route_with(&gw, &api, "b", &other.target(), json!({})).await;
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "holder",
        never_continues(),
        json!({}),
    )
    .await;

    // The upstream sends a head and a piece, then nothing for a minute: the held head fails at
    // the 300 ms deadline and the connection closes (keep-alive asked for, not kept).
    let started = Instant::now();
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    s.write_all(b"GET /stall HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await
        .unwrap();
    let b = tokio::spawn({
        let proxy = gw.proxy;
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = Instant::now();
            let r = reqwest::Client::new()
                .get(format!("http://{proxy}/"))
                .header("host", "b.test")
                .send()
                .await
                .unwrap();
            (r.status(), t.elapsed())
        }
    });
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the connection is not held")
        .unwrap();
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert!(text.contains("plugin_invalid_output"), "{text}");
    assert!(text.contains("plugin deadline"), "{text}");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    gw.wait_metric(
        r#"wharf_plugin_invocations_total{outcome="invalid_output",phase="on_response_body",plugin="holder",tenant="a"}"#,
        1.0,
    )
    .await;
    let (status, took) = b.await.unwrap();
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "tenant b waited {took:?}");

    // A body that ends while the module still holds it fails at once.
    let r = reqwest::Client::new()
        .get(format!("http://{}/text", gw.proxy))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(text.contains("never continued"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_response_goes_out_edited_over_http2_too() {
    let (url, _) = fresh_store(StoreKind::Sqlite).await;
    let config = format!("operator_token = \"{}\"\nh2c = true", OP);
    let gw = Wharf::start_configured(&url, &config, &[]).await;
    let api = Api::new(&gw);
    let (s, v) = api
        .call(
            reqwest::Method::POST,
            "/v1/tenants",
            Some(OP),
            Some(Body::Json(json!({"id": "a", "hostnames": ["a.test"]}))),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let up = BodyServer::start().await;
    route_with(&gw, &api, "a", &up.addr.to_string(), json!({})).await;
    upload_and_attach(&gw, &api, "a", "api", "editor", held_editor(), json!({})).await;
    let out = std::process::Command::new("curl")
        .args(["-sS", "-i", "--http2-prior-knowledge", "-H", "Host: a.test"])
        .arg(format!("http://{}/big?n=300000", gw.proxy))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        text.starts_with("http/2 200"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("x-body-size: 300000"), "{text}");
    assert!(text.contains("content-length: 6"), "{text}");
    assert!(text.ends_with("\r\n\r\nedited"), "{text}");
}
