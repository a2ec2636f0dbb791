//! Calls a proxy-wasm module dispatches from its root context (`proxy_on_tick`): a plugin that
//! refreshes a token every tick from a real HTTP server on loopback and serves what it got in
//! the requests' headers; the call goes through the tenant's outbound HTTP like a request's
//! (a host off the attachment's allow-list is never dialled); a tick dispatching calls in a
//! loop gets at most 16 in flight per VM, the rest refused and counted, while another tenant is
//! served; a call from `proxy_on_configure` whose VM was replaced before its answer came is
//! dropped, never delivered into the new VM; Higress's `proxy_redis_call` from a tick runs in the
//! tenant's Redis namespace.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use wharf_plugins::test_support::binary;

use crate::proxy_wasm_serve::upload_and_attach;
use crate::support::api::{Api, Body, OP};
use crate::support::http_server::HttpServer;
use crate::support::*;

/// A gateway whose egress policy allows 127.0.0.1; tenants `t` (`t.test`) and `u` (`u.test`),
/// each with route `api` to an echo upstream.
async fn gateway() -> (Wharf, Api, Upstream) {
    let (url, _store) = fresh_store(StoreKind::Sqlite).await;
    let toml = format!("operator_token = \"{OP}\"\negress_allow = [\"127.0.0.1/32\"]\n");
    let gw = Wharf::start_configured(&url, &toml, &[]).await;
    let api = Api::new(&gw);
    let up = Upstream::start("up").await;
    for t in ["t", "u"] {
        let calls = [
            (
                Method::POST,
                "/v1/tenants".to_string(),
                json!({"id": t, "hostnames": [format!("{t}.test")]}),
            ),
            (
                Method::PATCH,
                format!("/v1/tenants/{t}/quotas"),
                json!({"plugin_deadline_ms": 3000}),
            ),
            (
                Method::PUT,
                format!("/v1/tenants/{t}/routes/api"),
                json!({"path_prefix": "/", "upstreams": [{"addr": up.target()}]}),
            ),
        ];
        for (method, path, body) in calls {
            let (s, v) = api
                .call(method, &path, Some(OP), Some(Body::Json(body)))
                .await;
            assert!(s.is_success(), "{path}: {s} {v}");
        }
    }
    (gw, api, up)
}

/// A proxy-wasm header map, serialized as the ABI does, as WAT data (`\hh` bytes).
fn encoded_map(pairs: &[(&str, &str)]) -> (String, usize) {
    let mut bytes = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        bytes.extend((k.len() as u32).to_le_bytes());
        bytes.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        bytes.extend(k.as_bytes());
        bytes.push(0);
        bytes.extend(v.as_bytes());
        bytes.push(0);
    }
    let data = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
    (data, bytes.len())
}

/// Ticks every 100 ms (asked at configure); each tick dispatches `per_tick` GETs of `/token`
/// to 127.0.0.1:`port` (4 s timeout). An answer's body is kept, and every request gets it in
/// `x-token`.
fn refresher(port: u16, per_tick: u32) -> Vec<u8> {
    let cluster = format!("127.0.0.1:{port}");
    let (map, map_len) = encoded_map(&[
        (":method", "GET"),
        (":path", "/token"),
        (":authority", &cluster),
    ]);
    binary(&format!(
        r#"(module
          (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
          (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_get_buffer_bytes" (func $get (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "{cluster}")
          (data (i32.const 200) "x-token")
          (data (i32.const 300) "{map}")
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_configure") (param i32 i32) (result i32)
            (drop (call $tick (i32.const 100)))
            (i32.const 1))
          (func (export "proxy_on_tick") (param i32) (local $i i32)
            (loop $more
              (drop (call $call (i32.const 100) (i32.const {cluster_len}) (i32.const 300) (i32.const {map_len})
                (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 4000) (i32.const 80)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $more (i32.lt_u (local.get $i) (i32.const {per_tick})))))
          (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
            (if (i32.and (i32.gt_u (local.get 3) (i32.const 0)) (i32.lt_u (local.get 3) (i32.const 1024)))
              (then
                (if (i32.eqz (call $get (i32.const 4) (i32.const 0) (local.get 3) (i32.const 64) (i32.const 68)))
                  (then
                    (memory.copy (i32.const 2048) (i32.load (i32.const 64)) (i32.load (i32.const 68)))
                    (i32.store (i32.const 2044) (i32.load (i32.const 68))))))))
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (if (i32.load (i32.const 2044))
              (then (drop (call $add (i32.const 0) (i32.const 200) (i32.const 7)
                (i32.const 2048) (i32.load (i32.const 2044))))))
            (i32.const 0)))"#,
        cluster_len = cluster.len(),
    ))
}

fn attachment(allowed: &str) -> serde_json::Value {
    json!({"allowed_outbound_hosts": [allowed]})
}

#[tokio::test]
async fn a_tick_refreshes_a_token_from_a_real_server_and_requests_carry_it() {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let tokens = HttpServer::plain(move |seen| {
        assert_eq!(seen.path, "/token");
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        (200, format!("tok-{n}"))
    })
    .await;
    let port = tokens.addr.port();
    let (gw, api, _up) = gateway().await;
    let allowed = format!("http://127.0.0.1:{port}");
    let module = refresher(port, 1);
    upload_and_attach(
        &gw,
        &api,
        "t",
        "api",
        "refresh",
        module,
        attachment(&allowed),
    )
    .await;

    // The first request starts the VM, which starts ticking; a tick's answer arrives soon.
    let first = gw.request("GET", "t.test", "/", &[]).await;
    assert_eq!(first.status, 200, "{}", first.json);
    let token_of = |r: &Reply| r.json["headers"]["x-token"].as_str().map(String::from);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline && seen.len() < 2 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let r = gw.request("GET", "t.test", "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.json);
        if let Some(t) = token_of(&r).filter(|t| !seen.contains(t)) {
            seen.push(t);
        }
    }
    assert_eq!(seen.len(), 2, "two refreshed tokens served: {seen:?}");
    assert!(seen.iter().all(|t| t.starts_with("tok-")), "{seen:?}");
    let m = gw.metrics().await;
    let counted = |function: &str| {
        m.lines().any(|l| {
            l.starts_with("wharf_plugin_invocations_total")
                && l.contains(function)
                && l.contains("tenant=\"t\"")
        })
    };
    assert!(
        counted("on_http_call_response"),
        "charged to the tenant:\n{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with("wharf_host_calls_total")
            && l.contains("proxy_http_call")
            && l.contains("\"ok\"")),
        "{m}"
    );
}

#[tokio::test]
async fn a_tick_calling_a_host_off_the_allow_list_is_refused() {
    let tokens = HttpServer::plain(|_| (200, "tok-secret".into())).await;
    let (gw, api, _up) = gateway().await;
    let module = refresher(tokens.addr.port(), 1);
    // Allowed somewhere else: refused before anything is dialled, the module sees a failure.
    let attach = attachment("http://127.0.0.1:1");
    upload_and_attach(&gw, &api, "t", "api", "refresh", module, attach).await;
    let first = gw.request("GET", "t.test", "/", &[]).await;
    assert_eq!(first.status, 200, "{}", first.json);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = gw.request("GET", "t.test", "/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(r.json["headers"]["x-token"].is_null(), "{}", r.json);
    assert_eq!(tokens.requests.load(Ordering::SeqCst), 0, "never dialled");
    let m = gw.metrics().await;
    assert!(
        m.lines().any(|l| l.starts_with("wharf_host_calls_total")
            && l.contains("proxy_http_call")
            && l.contains("denied")),
        "{m}"
    );
}

/// A server that takes requests and never answers: how many connections it got.
async fn black_hole() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(tcp);
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_tick_dispatching_calls_in_a_loop_is_bounded_and_counted() {
    let (hole, accepted) = black_hole().await;
    let (gw, api, _up) = gateway().await;
    let allowed = format!("http://{hole}");
    let module = refresher(hole.port(), 1000);
    upload_and_attach(&gw, &api, "t", "api", "flood", module, attachment(&allowed)).await;
    let first = gw.request("GET", "t.test", "/", &[]).await;
    assert_eq!(first.status, 200, "{}", first.json);

    // Ticks for 1.5 s, a thousand dispatches each, while nothing answers: 16 calls in flight
    // at most, the rest refused. Another tenant is served meanwhile, promptly.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let started = Instant::now();
        let r = gw.request("GET", "u.test", "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dialled = accepted.load(Ordering::SeqCst);
    assert!((1..=16).contains(&dialled), "{dialled} calls in flight");
    let m = gw.metrics().await;
    let refused: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with("wharf_host_calls_total")
                && l.contains("proxy_http_call")
                && l.contains("quota_exceeded")
                && l.contains("tenant=\"t\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        refused >= 1000.0,
        "{refused} refused dispatches counted:\n{m}"
    );
    // The tenant's own requests still go on.
    let r = gw.request("GET", "t.test", "/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.json);
}

/// Answers each request after `delay`, with `ok`: how many requests it got.
async fn slow_server(delay: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = tcp.write_all(reply).await;
            });
        }
    });
    (addr, requests)
}

/// Dispatches one call from `proxy_on_configure` (to 127.0.0.1:`port`) and counts the answers
/// its VM gets in the module metric `answers`; a request with `x-trap` traps (its VM is
/// dropped).
fn configure_caller(port: u16) -> Vec<u8> {
    let cluster = format!("127.0.0.1:{port}");
    let (map, map_len) = encoded_map(&[
        (":method", "GET"),
        (":path", "/config"),
        (":authority", &cluster),
    ]);
    binary(&format!(
        r#"(module
          (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_get_header_map_value" (func $header (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_define_metric" (func $def (param i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "answers")
          (data (i32.const 32) "x-trap")
          (data (i32.const 100) "{cluster}")
          (data (i32.const 300) "{map}")
          (global $id (mut i32) (i32.const 0))
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_configure") (param i32 i32) (result i32)
            (drop (call $def (i32.const 0) (i32.const 16) (i32.const 7) (i32.const 64)))
            (global.set $id (i32.load (i32.const 64)))
            (drop (call $call (i32.const 100) (i32.const {cluster_len}) (i32.const 300) (i32.const {map_len})
              (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 4000) (i32.const 80)))
            (i32.const 1))
          (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
            (drop (call $inc (global.get $id) (i64.const 1))))
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (if (i32.eqz (call $header (i32.const 0) (i32.const 32) (i32.const 6) (i32.const 64) (i32.const 68)))
              (then (unreachable)))
            (i32.const 0)))"#,
        cluster_len = cluster.len(),
    ))
}

#[tokio::test]
async fn a_configure_call_answered_after_its_vm_was_replaced_is_dropped() {
    let (slow, requests) = slow_server(Duration::from_millis(1500)).await;
    let (gw, api, _up) = gateway().await;
    let allowed = format!("http://{slow}");
    let module = configure_caller(slow.port());
    upload_and_attach(
        &gw,
        &api,
        "t",
        "api",
        "configure",
        module,
        attachment(&allowed),
    )
    .await;

    // The first VM starts and calls; a trap replaces it before the answer; the second VM
    // starts and calls in turn.
    let first = gw.request("GET", "t.test", "/", &[]).await;
    assert_eq!(first.status, 200, "{}", first.json);
    let trapped = gw.request("GET", "t.test", "/", &[("x-trap", "1")]).await;
    assert_eq!(trapped.status, 502, "{}", trapped.json);
    let second = gw.request("GET", "t.test", "/", &[]).await;
    assert_eq!(second.status, 200, "{}", second.json);

    // Both calls were sent and answered; only the live VM's answer was delivered (the first
    // VM's went with it, never into the VM that replaced it).
    let deadline = Instant::now() + Duration::from_secs(6);
    let delivered = |m: &str| {
        m.lines()
            .filter(|l| {
                l.starts_with("wharf_plugin_invocations_total")
                    && l.contains("on_http_call_response")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    while Instant::now() < deadline && delivered(&gw.metrics().await) < 1.0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past both answers' arrival.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(requests.load(Ordering::SeqCst), 2, "a call per VM");
    let m = gw.metrics().await;
    assert_eq!(delivered(&m), 1.0, "{m}");
    let answers: f64 = m
        .lines()
        .filter(|l| l.starts_with("wharf_plugin_module_metric") && l.contains("\"answers\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(answers, 1.0, "{m}");
}
