//! A proxy-wasm module and a response's trailers, end to end over real HTTP/2 (a gRPC service
//! behind the gateway, a gRPC client in front): `proxy_on_response_trailers` reads the
//! upstream's `grpc-status`, adds a trailer and rewrites `grpc-message`, and the client sees
//! both; a module that fails there (fail-closed) lets none of the upstream's trailers pass and
//! the call ends INTERNAL; one adding 100,000 trailers is bounded as headers are and refused.
//! And `:method`: a module changing it changes the upstream request's method; a value that is
//! not a method token, `CONNECT`, or a change to `HEAD` fails the request as invalid output.

use reqwest::Method;
use serde_json::json;
use wharf_plugins::test_support::binary;

use crate::proxy_wasm_serve::{route_to, upload_and_attach};
use crate::support::api::{setup, Api, Body, OP};
use crate::support::grpc::{serve_echo, EchoClient};
use crate::support::*;

/// Reads `grpc-status` from the response trailers (map type 3) into a new trailer
/// `x-saw-grpc-status`, and replaces `grpc-message`; `trap`: traps there instead.
fn trailer_editor(trap: bool) -> Vec<u8> {
    let fail = if trap { "(unreachable)" } else { "" };
    binary(&format!(
        r#"(module
          (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "grpc-status")
          (data (i32.const 120) "x-saw-grpc-status")
          (data (i32.const 140) "grpc-message")
          (data (i32.const 160) "edited by a plugin")
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_response_trailers") (param i32 i32) (result i32)
            {fail}
            (if (i32.eqz (call $get (i32.const 3) (i32.const 100) (i32.const 11) (i32.const 64) (i32.const 68)))
              (then (drop (call $add (i32.const 3) (i32.const 120) (i32.const 17)
                (i32.load (i32.const 64)) (i32.load (i32.const 68))))))
            (drop (call $replace (i32.const 3) (i32.const 140) (i32.const 12) (i32.const 160) (i32.const 18)))
            (i32.const 0)))"#
    ))
}

/// A gateway speaking h2c, tenant `g` owning `grpc.test` with route `echo` to a gRPC service
/// over HTTP/2.
async fn grpc_gateway() -> (Wharf, Api) {
    let upstream = serve_echo().await;
    let (url, _store) = fresh_store(StoreKind::Sqlite).await;
    let gw = Wharf::start_configured(
        &url,
        &format!("operator_token = \"{OP}\"\nh2c = true\n"),
        &[],
    )
    .await;
    let api = Api::new(&gw);
    let calls = [
        (
            Method::POST,
            "/v1/tenants".to_string(),
            json!({"id": "g", "hostnames": ["grpc.test"]}),
        ),
        (
            Method::PATCH,
            "/v1/tenants/g/quotas".into(),
            json!({"plugin_deadline_ms": 3000}),
        ),
        (
            Method::PUT,
            "/v1/tenants/g/routes/echo".into(),
            json!({"path_prefix": "/wharf.test.Echo", "upstream_protocol": "http2",
                   "upstreams": [{"addr": upstream}]}),
        ),
    ];
    for (method, path, body) in calls {
        let (s, v) = api
            .call(method, &path, Some(OP), Some(Body::Json(body)))
            .await;
        assert!(s.is_success(), "{path}: {s} {v}");
        if let Some(version) = v["config_version"].as_i64() {
            gw.wait_for_version(version).await;
        }
    }
    (gw, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_reads_and_edits_grpc_trailers_and_the_client_sees_them() {
    let (gw, api) = grpc_gateway().await;
    let mut plain = EchoClient::connect(gw.proxy, "grpc.test").await;
    let without = unary_time(&mut plain).await;
    upload_and_attach(
        &gw,
        &api,
        "g",
        "echo",
        "trailers",
        trailer_editor(false),
        json!({}),
    )
    .await;
    let mut client = EchoClient::connect(gw.proxy, "grpc.test").await;

    // The stream ends with ABORTED (10) in its trailers: the module saw it and said so.
    let (got, status) = client.count(3).await;
    assert_eq!(got, ["0", "1", "2"], "the body passed as it was");
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert_eq!(status.message(), "edited by a plugin", "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("x-saw-grpc-status")
            .and_then(|v| v.to_str().ok()),
        Some("10"),
        "{status:?}"
    );
    // A unary call ends with `grpc-status: 0`: still OK, with the module's message beside it.
    assert_eq!(client.say("hi").await.unwrap(), "echo: hi (plugin: -)");
    let m = gw.metrics().await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("wharf_plugin_invocations_total")
                && l.contains("on_response_trailers")
                && l.contains("ok")),
        "{m}"
    );
    // What the trailers callback costs a call (debug build, shared machine: an indication).
    let with = unary_time(&mut client).await;
    println!("unary gRPC call through the gateway: {without:?} without a module, {with:?} with one editing trailers (median of {CALLS})");
}

const CALLS: usize = 200;

/// The median time of [`CALLS`] unary calls, each succeeding.
async fn unary_time(client: &mut EchoClient) -> std::time::Duration {
    let mut times = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let started = std::time::Instant::now();
        let reply = client.say(&i.to_string()).await;
        times.push(started.elapsed());
        assert!(reply.is_ok(), "{reply:?}");
    }
    times.sort();
    times[CALLS / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_failing_on_trailers_fail_closed_lets_none_of_them_pass() {
    let (gw, api) = grpc_gateway().await;
    upload_and_attach(
        &gw,
        &api,
        "g",
        "echo",
        "trap",
        trailer_editor(true),
        json!({}),
    )
    .await;
    let mut client = EchoClient::connect(gw.proxy, "grpc.test").await;
    let (got, status) = client.count(2).await;
    assert_eq!(got, ["0", "1"]);
    // None of the upstream's trailers reached the client (neither its ABORTED nor its
    // message): the call ends INTERNAL, not as a success for want of a status.
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    assert!(status.message().contains("plugin failed"), "{status:?}");
    // A unary call that succeeded upstream fails the same way (its `grpc-status: 0` unseen).
    let again = client.say("again").await;
    assert!(again.is_err(), "{again:?}");
    let m = gw.metrics().await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("wharf_plugin_invocations_total")
                && l.contains("on_response_trailers")
                && l.contains("trap")),
        "the failure is counted:\n{m}"
    );
}

/// Adds `x-flood: v` to the response trailers 100,000 times.
fn trailer_flood() -> Vec<u8> {
    binary(
        r#"(module
          (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "x-flood")
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_response_trailers") (param i32 i32) (result i32) (local $i i32)
            (loop $more
              (drop (call $add (i32.const 3) (i32.const 100) (i32.const 7) (i32.const 100) (i32.const 1)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $more (i32.lt_u (local.get $i) (i32.const 100000))))
            (i32.const 0)))"#,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_flooding_the_trailers_is_bounded_and_refused() {
    let (gw, api) = grpc_gateway().await;
    upload_and_attach(&gw, &api, "g", "echo", "flood", trailer_flood(), json!({})).await;
    let mut client = EchoClient::connect(gw.proxy, "grpc.test").await;
    // The map stops at 1,024 pairs; the edits past the output bounds fail the plugin, which
    // fails closed: the call ends INTERNAL, promptly, with no flood reaching the client.
    let started = std::time::Instant::now();
    let (got, status) = client.count(1).await;
    assert_eq!(got, ["0"]);
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    assert!(status.metadata().get("x-flood").is_none(), "{status:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let m = gw.metrics().await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("wharf_plugin_invocations_total")
                && l.contains("on_response_trailers")
                && l.contains("invalid_output")),
        "{m}"
    );
}

/// Sets `:method` to `method` (any bytes) in its request headers callback.
fn method_setter(method: &[u8]) -> Vec<u8> {
    let data: String = method.iter().map(|b| format!("\\{b:02x}")).collect();
    binary(&format!(
        r#"(module
          (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) ":method")
          (data (i32.const 120) "{data}")
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (drop (call $replace (i32.const 0) (i32.const 100) (i32.const 7) (i32.const 120) (i32.const {len})))
            (i32.const 0)))"#,
        len = method.len()
    ))
}

async fn detach(gw: &Wharf, api: &Api, t: &str, name: &str) {
    let path = format!("/v1/tenants/{t}/routes/api/plugins/{name}");
    let (s, v) = api.call(Method::DELETE, &path, Some(OP), None).await;
    assert!(s.is_success(), "{s} {v}");
    if let Some(version) = v["config_version"].as_i64() {
        gw.wait_for_version(version).await;
    }
}

#[tokio::test]
async fn a_module_changes_the_upstream_method_and_bad_methods_are_refused() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    let other = Upstream::start("b-up").await;
    route_to(&api, "b", &other).await;
    let purge = method_setter(b"PURGE");
    upload_and_attach(&gw, &api, "a", "api", "method", purge, json!({})).await;
    let r = gw.request("GET", "a.test", "/cache/x", &[]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["method"], "PURGE", "{}", r.json);
    assert_eq!(r.json["path"], "/cache/x", "{}", r.json);
    detach(&gw, &api, "a", "method").await;

    // Hostile values: refused as the plugin's invalid output, never sent upstream.
    let bad: [&[u8]; 5] = [
        b"CONNECT",
        b"HEAD",
        b"GET /admin HTTP/1.1\r\nX-Smuggled: y",
        b"P(ST",
        b"",
    ];
    for (i, method) in bad.into_iter().enumerate() {
        let name = format!("bad{i}");
        upload_and_attach(
            &gw,
            &api,
            "a",
            "api",
            &name,
            method_setter(method),
            json!({}),
        )
        .await;
        let shown = String::from_utf8_lossy(method);
        let r = gw.request("GET", "a.test", "/", &[]).await;
        assert_eq!(r.status, 502, "{shown:?}: {}", r.json);
        assert_eq!(
            r.json["error"], "plugin_invalid_output",
            "{shown:?}: {}",
            r.json
        );
        assert!(
            r.json["message"].as_str().unwrap_or("").contains(":method"),
            "{shown:?}: {}",
            r.json
        );
        // Another tenant is served meanwhile.
        let b = gw.request("GET", "b.test", "/", &[]).await;
        assert_eq!(b.status, 200, "{}", b.json);
        assert_eq!(b.json["method"], "GET");
        detach(&gw, &api, "a", &name).await;
    }
}
