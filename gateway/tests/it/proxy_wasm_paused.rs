//! A proxy-wasm module that pauses in `proxy_on_request_headers` to wait for the request body
//! (Envoy's `StopIteration` with nothing pending): the gateway reads the body whole, the body
//! callback still edits the request's headers and rewrites the body, and the upstream sees both.
//! A module that never continues fails only its own request; the body quota applies as for a
//! component that reads bodies (413); Higress's `gpustack-ai-proxy` serves a chat completion.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wharf_plugins::test_support::binary;

use crate::proxy_wasm_serve::{route_to, upload_and_attach};
use crate::support::api::{setup, Api, Body, OP};
use crate::support::http_server::{HttpServer, Seen};
use crate::support::*;

/// Pauses in its headers callback; its body callback copies the body into `x-from-body`,
/// replaces the body with `REPLACED` and returns `body_action` (0 Continue, 1 StopIteration).
fn pauser(body_action: i32) -> Vec<u8> {
    binary(&format!(
        r#"(module
          (import "env" "proxy_get_buffer_bytes" (func $get (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_set_buffer_bytes" (func $set (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "REPLACED")
          (data (i32.const 32) "x-from-body")
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1))
          (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
            (drop (call $get (i32.const 0) (i32.const 0) (local.get $size) (i32.const 64) (i32.const 68)))
            (drop (call $add (i32.const 0) (i32.const 32) (i32.const 11)
              (i32.load (i32.const 64)) (i32.load (i32.const 68))))
            (drop (call $set (i32.const 0) (i32.const 0) (i32.const 0x7fffffff) (i32.const 16) (i32.const 8)))
            (i32.const {body_action})))"#
    ))
}

/// Does not pause: removes `content-length` in its headers callback and appends `tag` to the
/// request body in its body callback.
fn appender(tag: &str) -> Vec<u8> {
    binary(&format!(
        r#"(module
          (import "env" "proxy_set_buffer_bytes" (func $set (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_remove_header_map_value" (func $rm (param i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "{tag}")
          (data (i32.const 32) "content-length")
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (drop (call $rm (i32.const 0) (i32.const 32) (i32.const 14)))
            (i32.const 0))
          (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
            (drop (call $set (i32.const 0) (i32.const 0x7fffffff) (i32.const 0) (i32.const 16) (i32.const {len})))
            (i32.const 0)))"#,
        len = tag.len()
    ))
}

/// Pauses in its headers callback and answers the client from its body callback: the
/// request's head has not gone upstream yet, so a local reply is served there.
fn refuser() -> Vec<u8> {
    binary(
        r#"(module
          (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "refused by its body")
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1))
          (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
            (drop (call $reply (i32.const 403) (i32.const 0) (i32.const 0)
              (i32.const 16) (i32.const 19) (i32.const 0) (i32.const 0) (i32.const -1)))
            (i32.const 1)))"#,
    )
}

/// An upstream answering with what it got: headers and body (the echo server counts bytes only).
async fn mirror() -> HttpServer {
    HttpServer::plain(|seen: &Seen| {
        let headers: serde_json::Map<String, Value> = seen
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let body = String::from_utf8_lossy(&seen.body).into_owned();
        let answer =
            json!({"method": seen.method, "path": seen.path, "headers": headers, "body": body});
        (200, answer.to_string())
    })
    .await
}

/// Route `api` of tenant `t` to `target`, with a generous plugin deadline.
async fn route_to_addr(api: &Api, t: &str, target: &str) {
    let route = json!({"path_prefix": "/", "upstreams": [{"addr": target, "weight": 1}]});
    let path = format!("/v1/tenants/{t}/routes/api");
    let (s, v) = api
        .call(Method::PUT, &path, Some(OP), Some(Body::Json(route)))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let quotas = json!({"plugin_deadline_ms": 3000});
    let path = format!("/v1/tenants/{t}/quotas");
    let (s, v) = api
        .call(Method::PATCH, &path, Some(OP), Some(Body::Json(quotas)))
        .await;
    assert!(s.is_success(), "{v}");
}

async fn post(gw: &Wharf, host: &str, path: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}{path}", gw.proxy))
        .header("host", host)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// A POST with a chunked body, over a raw socket; the whole answer as text.
async fn chunked_post(gw: &Wharf, host: &str, chunks: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let mut req = format!(
        "POST /submit HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for c in chunks {
        req.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    req.push_str("0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = s.read_to_end(&mut out);
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_module_paused_in_its_headers_edits_them_and_the_body_in_its_body_callback() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = mirror().await;
    route_to_addr(&api, "a", &up.addr.to_string()).await;
    upload_and_attach(&gw, &api, "a", "api", "pauser", pauser(0), json!({})).await;

    for i in 0..3 {
        let sent = format!("hello-body-{i}");
        let r = post(&gw, "a.test", "/submit", &sent).await;
        assert_eq!(r.status(), 200);
        let seen: Value = r.json().await.unwrap();
        assert_eq!(seen["headers"]["x-from-body"], sent, "{seen}");
        assert_eq!(seen["body"], "REPLACED", "{seen}");
        // Sent whole with its own length, not the client's.
        assert_eq!(seen["headers"]["content-length"], "8", "{seen}");
    }
    // A body sent chunked (no length declared) is read whole the same way.
    let text = chunked_post(&gw, "a.test", &["chunk-one-", "chunk-two"]).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(r#""x-from-body":"chunk-one-chunk-two""#),
        "{text}"
    );
    assert!(text.contains(r#""body":"REPLACED""#), "{text}");

    // Past plugin_body_max_bytes: 413, as for a component that reads bodies; the module asked
    // to see the body before the request goes on, so it never reaches the upstream unseen.
    let quotas = json!({"plugin_body_max_bytes": 1024});
    let (s, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/a/quotas",
            Some(OP),
            Some(Body::Json(quotas)),
        )
        .await;
    assert!(s.is_success(), "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap_or(0))
        .await;
    let before = up.requests.load(std::sync::atomic::Ordering::SeqCst);
    let r = post(&gw, "a.test", "/submit", &"x".repeat(4096)).await;
    assert_eq!(r.status(), 413);
    assert_eq!(
        up.requests.load(std::sync::atomic::Ordering::SeqCst),
        before
    );
    let r = post(&gw, "a.test", "/submit", "small").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn modules_around_a_paused_one_get_the_body_in_the_chains_order() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = mirror().await;
    route_to_addr(&api, "a", &up.addr.to_string()).await;
    // Chain: append-a (streams), pauser (waits for the body), append-c (after it).
    for (name, bytes) in [
        ("append-a", appender("-A")),
        ("pauser", pauser(0)),
        ("append-c", appender("-C")),
    ] {
        upload_and_attach(&gw, &api, "a", "api", name, bytes, json!({})).await;
    }
    let r = post(&gw, "a.test", "/submit", "hello").await;
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    // append-a's body callback ran before the paused module's, append-c's after it.
    assert_eq!(seen["headers"]["x-from-body"], "hello-A", "{seen}");
    assert_eq!(seen["body"], "REPLACED-C", "{seen}");
    assert_eq!(seen["headers"]["content-length"], "10", "{seen}");
}

#[tokio::test]
async fn a_paused_module_may_answer_the_client_from_its_body_callback() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = mirror().await;
    route_to_addr(&api, "a", &up.addr.to_string()).await;
    upload_and_attach(&gw, &api, "a", "api", "refuser", refuser(), json!({})).await;
    let r = post(&gw, "a.test", "/submit", "hello").await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "refused by its body");
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_module_that_never_continues_fails_only_its_own_request() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = mirror().await;
    route_to_addr(&api, "a", &up.addr.to_string()).await;
    let echo = Upstream::start("b-up").await;
    route_to(&api, "b", &echo).await;
    upload_and_attach(&gw, &api, "a", "api", "stuck", pauser(1), json!({})).await;

    // Paused after its body too, with nothing pending: the request fails, cleanly and at once,
    // and never reaches the upstream; no module text reaches the client.
    let started = std::time::Instant::now();
    let r = post(&gw, "a.test", "/submit", "hello").await;
    assert_eq!(r.status(), 502);
    let failed: Value = r.json().await.unwrap();
    assert_eq!(failed["error"], "plugin_invalid_output", "{failed}");
    assert_eq!(failed["plugin"], "stuck", "{failed}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("paused the request with nothing to wait for"),
        "{failed}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // Paused on a request without a body: nothing to wait for, it fails as before.
    let r = gw.request("GET", "a.test", "/nobody", &[]).await;
    assert_eq!(r.status, 502, "{}", r.json);
    assert_eq!(r.json["error"], "plugin_invalid_output", "{}", r.json);
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Another tenant goes on meanwhile, its bodies untouched.
    let stuck = {
        let gw_proxy = gw.proxy;
        tokio::spawn(async move {
            for _ in 0..5 {
                let _ = reqwest::Client::new()
                    .post(format!("http://{gw_proxy}/submit"))
                    .header("host", "a.test")
                    .body("again")
                    .send()
                    .await;
            }
        })
    };
    for _ in 0..5 {
        let r = post(&gw, "b.test", "/submit", "tenant-b-body").await;
        assert_eq!(r.status(), 200);
        let echoed: Value = r.json().await.unwrap();
        assert_eq!(echoed["upstream"], "b-up", "{echoed}");
        assert_eq!(echoed["body_bytes"], 13, "{echoed}");
    }
    stuck.await.unwrap();
    // The module's VM is fine (a pause is not a trap): the next request runs it again.
    let r = post(&gw, "a.test", "/submit", "hello").await;
    assert_eq!(r.status(), 502);
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// Higress's `gpustack-ai-proxy` (its `openai` provider, configured as its documentation shows)
/// pauses a chat completion's headers for its body: it sets the provider's path, host and API
/// token in its headers callback and maps the model in its body callback. The upstream, an
/// OpenAI-style service on loopback, sees all of it.
#[tokio::test]
async fn higress_ai_proxy_rewrites_a_chat_completion_for_its_provider() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = mirror().await;
    route_to_addr(&api, "a", &up.addr.to_string()).await;
    let echo = Upstream::start("b-up").await;
    route_to(&api, "b", &echo).await;
    // The provider's own path and host: the module's headers callback sets them.
    let provider = format!("{}/provider/v1/chat/completions", up.addr);
    let config = json!({"plugin_config": {"provider": {
        "type": "openai",
        "apiTokens": ["sk-wharf-test"],
        "openaiCustomUrl": provider,
        "modelMapping": {"gpt-4": "wharf-model"}
    }}});
    let plugin = crate::proxy_wasm_serve::higress("gpustack-ai-proxy");
    upload_and_attach(&gw, &api, "a", "api", "ai-proxy", plugin, config).await;

    let chat = json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hello"}]});
    let r = post(&gw, "a.test", "/v1/chat/completions", &chat.to_string()).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    let log = gw.log();
    assert_eq!(
        status,
        200,
        "{text}\n{}",
        &log[log.len().saturating_sub(4000)..]
    );
    let seen: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(seen["path"], "/provider/v1/chat/completions", "{seen}");
    assert_eq!(seen["headers"]["host"], up.addr.to_string(), "{seen}");
    assert_eq!(
        seen["headers"]["authorization"], "Bearer sk-wharf-test",
        "{seen}"
    );
    let body: Value = serde_json::from_str(seen["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["model"], "wharf-model", "{seen}");
    assert_eq!(body["messages"][0]["content"], "hello", "{seen}");
    eprintln!("ai-proxy: the upstream saw {seen}");
    // What a chat completion costs through it, one after the other (printed with --nocapture).
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let r = post(&gw, "a.test", "/v1/chat/completions", &chat.to_string()).await;
        assert_eq!(r.status(), 200);
    }
    let each = started.elapsed() / 20;
    eprintln!("ai-proxy: {each:?} per chat completion through the gateway and the mirror");

    // Another tenant's plain requests: untouched by a's module.
    let r = post(&gw, "b.test", "/v1/chat/completions", &chat.to_string()).await;
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(echoed["path"], "/v1/chat/completions", "{echoed}");
    assert!(echoed["headers"].get("authorization").is_none(), "{echoed}");
}

/// `wharf plugin test` runs a module that pauses for its body as the gateway does.
#[test]
fn plugin_test_runs_a_module_paused_for_its_body() {
    let dir = std::env::temp_dir().join(format!("wharf-test.paused-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pauser.wasm");
    std::fs::write(&path, pauser(0)).unwrap();
    let path = path.display().to_string();
    let args = [
        "plugin",
        "test",
        &path,
        "--request",
        "POST /submit",
        "--body",
        "from-cli",
    ];
    let (ok, out) = run_wharf(&args, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "{out}");
    for line in [
        "the plugin pauses the request headers for the body (8 bytes)",
        "body replaced (8 bytes): REPLACED",
        "✓ continues to the upstream",
        "x-from-body",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
}
