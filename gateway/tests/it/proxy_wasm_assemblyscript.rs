//! The AssemblyScript proxy-wasm examples (plugins/examples/proxy-wasm, built from source by
//! scripts/build-plugins with the pinned npm toolchain) uploaded and attached through the API and
//! served: as-headers sets the request header its JSON configuration names and marks the
//! response; as-local-response answers 403 with its configured body when the request carries
//! `x-deny`; as-http-call asks an auth service on loopback about each request
//! (`proxy_http_call`, the request paused until the answer); as-shared-counter counts requests in
//! shared data with compare-and-swap, defines metrics and records a gauge in its ticks;
//! as-body-rewrite rewrites response bodies.

use std::sync::atomic::Ordering;

use reqwest::{Method, StatusCode};
use serde_json::json;
use wharf_plugins::test_support::example_plugin;

use super::proxy_wasm_serve::{metric_sum, route_to, upload_and_attach};
use crate::support::api::{setup, Body, OP};
use crate::support::http_server::HttpServer;
use crate::support::*;

fn as_example(name: &str) -> Vec<u8> {
    example_plugin(&format!("proxy-wasm/{name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_headers_sets_the_configured_request_header_and_marks_the_response() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    // The same module for two tenants, each with its own configuration.
    for (t, header, value) in [("a", "X-From-Config", "one"), ("b", "x-as", "two")] {
        route_to(&api, t, &up).await;
        upload_and_attach(
            &gw,
            &api,
            t,
            "api",
            "as-headers",
            as_example("as-headers"),
            json!({"plugin_config": {"header": header, "value": value}}),
        )
        .await;
    }
    for i in 0..3 {
        // The client's own value is replaced, not kept beside the configured one.
        let r = gw
            .request(
                "GET",
                "a.test",
                &format!("/a/{i}"),
                &[("x-from-config", "client")],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["headers"]["x-from-config"], "one", "{}", r.json);
        assert_eq!(r.json["path"], format!("/a/{i}"));
        assert_eq!(r.headers["x-as-plugin"], "as-headers");
        let r = gw.get("b.test", "/b").await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["headers"]["x-as"], "two", "{}", r.json);
        assert!(r.json["headers"].get("x-from-config").is_none());
        assert_eq!(r.headers["x-as-plugin"], "as-headers");
    }
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "wharf_plugin_vms"), 2.0, "{m}");
    assert_eq!(metric_sum(&m, "wharf_plugin_vm_restarts_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_local_response_answers_403_with_its_body_when_asked_to_deny() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "deny",
        as_example("as-local-response"),
        json!({"plugin_config": {"body": "no entry\n"}}),
    )
    .await;
    let client = reqwest::Client::new();
    for deny in ["1", ""] {
        let r = client
            .get(format!("http://{}/x", gw.proxy))
            .header("host", "a.test")
            .header("x-deny", deny)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "x-deny: {deny:?}");
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.text().await.unwrap(), "no entry\n");
    }
    let r = gw.get("a.test", "/x").await;
    assert_eq!((r.status, r.json["upstream"].as_str()), (200, Some("up")));
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "wharf_plugin_vms"), 1.0, "{m}");
    assert_eq!(metric_sum(&m, "wharf_plugin_vm_restarts_total"), 0.0);
}

/// A request through the proxy with `authorization` (if any): (status, body).
async fn authorized(gw: &Wharf, authorization: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .get(format!("http://{}/orders", gw.proxy))
        .header("host", "a.test");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_http_call_asks_an_auth_service_before_letting_a_request_through() {
    let auth = HttpServer::plain(|seen| {
        let authorization = seen
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str());
        match (seen.path.as_str(), authorization) {
            ("/check", Some("Bearer good")) => (200, "{}".into()),
            ("/check", Some("Bearer teapot")) => (418, "{}".into()),
            _ => (401, "{}".into()),
        }
    })
    .await;
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    let attach = |port: u16| {
        json!({
            "plugin_config": {
                "cluster": format!("127.0.0.1:{port}"),
                "path": "/check",
                "authority": "auth.local",
                "timeout_ms": 1000
            },
            "allowed_outbound_hosts": [format!("http://127.0.0.1:{port}")]
        })
    };
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "auth",
        as_example("as-http-call"),
        attach(auth.addr.port()),
    )
    .await;

    let (status, body) = authorized(&gw, Some("Bearer good")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"upstream\":\"up\""), "{body}");
    // A 4xx from the auth service is answered as is, with the plugin's body.
    let (status, body) = authorized(&gw, Some("Bearer bad")).await;
    assert_eq!(
        (status, body.as_str()),
        (401, "denied by auth service (401)\n")
    );
    let (status, _) = authorized(&gw, Some("Bearer teapot")).await;
    assert_eq!(status, 418);
    let (status, _) = authorized(&gw, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        auth.requests.load(Ordering::SeqCst),
        4,
        "each request asked"
    );

    // The auth service down: no answer, 503 from the plugin; nothing passes.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/tenants/a/routes/api/plugins/auth",
            Some(OP),
            Some(Body::Json(attach(port))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    let (status, body) = authorized(&gw, Some("Bearer good")).await;
    assert_eq!((status, body.as_str()), (503, "auth service unavailable\n"));
    let m = gw.metrics().await;
    assert_eq!(metric_sum(&m, "wharf_plugin_vm_restarts_total"), 0.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_shared_counter_counts_per_tenant_with_cas_and_exports_its_metrics() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    for t in ["a", "b"] {
        route_to(&api, t, &up).await;
        upload_and_attach(
            &gw,
            &api,
            t,
            "api",
            "counter",
            as_example("as-shared-counter"),
            json!({"plugin_config": {"tick_ms": 100}}),
        )
        .await;
    }
    let count = |r: &Reply| {
        assert_eq!(r.status, 200, "{}", r.json);
        r.json["headers"]["x-request-count"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no count: {}", r.json))
    };
    for i in 1..=5 {
        assert_eq!(count(&gw.get("a.test", "/").await), i);
    }
    // Another tenant with the same module counts apart: shared data is per tenant.
    assert_eq!(count(&gw.get("b.test", "/").await), 1);
    assert_eq!(count(&gw.get("b.test", "/").await), 2);
    // Concurrent requests through the tenant's VM: every one a distinct count.
    let gw_ref = &gw;
    let mut seen: Vec<u64> = futures_util::future::join_all(
        (0..16).map(|_| async move { count(&gw_ref.get("a.test", "/").await) }),
    )
    .await;
    seen.sort_unstable();
    assert_eq!(seen, (6..=21).collect::<Vec<u64>>());
    // Its metrics under each tenant's label: the counter, and the gauge its ticks record.
    let module_metric = |m: &str, tenant: &str, name: &str| -> Option<f64> {
        m.lines()
            .filter(|l| l.starts_with("wharf_plugin_module_metric{"))
            .filter(|l| l.contains(&format!("tenant=\"{tenant}\"")))
            .filter(|l| l.contains(&format!("name=\"{name}\"")))
            .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let mut m = String::new();
    for _ in 0..50 {
        m = gw.metrics().await;
        if module_metric(&m, "a", "as_shared_counter_value") == Some(21.0)
            && module_metric(&m, "b", "as_shared_counter_value") == Some(2.0)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        module_metric(&m, "a", "as_shared_counter_requests_total"),
        Some(21.0),
        "{m}"
    );
    assert_eq!(
        module_metric(&m, "b", "as_shared_counter_requests_total"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        module_metric(&m, "a", "as_shared_counter_value"),
        Some(21.0),
        "{m}"
    );
    assert_eq!(
        module_metric(&m, "b", "as_shared_counter_value"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(metric_sum(&m, "wharf_plugin_vm_restarts_total"), 0.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_body_rewrite_rewrites_response_bodies_of_its_tenant_only() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    route_to(&api, "b", &up).await;
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "rewrite",
        as_example("as-body-rewrite"),
        json!({"plugin_config": {"from": "hunter2", "to": "[redacted]"}}),
    )
    .await;
    // The upstream echoes the request's headers in its body: the secret comes back rewritten.
    let r = gw
        .request("GET", "a.test", "/", &[("x-secret", "hunter2 and hunter2")])
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        r.json["headers"]["x-secret"], "[redacted] and [redacted]",
        "{}",
        r.json
    );
    assert_eq!(r.headers["x-as-plugin"], "as-body-rewrite");
    // A body without it passes as it came.
    let r = gw
        .request("GET", "a.test", "/", &[("x-other", "plain")])
        .await;
    assert_eq!(r.json["headers"]["x-other"], "plain", "{}", r.json);
    // Another tenant's route has no plugin: nothing rewritten.
    let r = gw
        .request("GET", "b.test", "/", &[("x-secret", "hunter2")])
        .await;
    assert_eq!(r.json["headers"]["x-secret"], "hunter2", "{}", r.json);
    assert!(r.headers.get("x-as-plugin").is_none());
    // A configuration without `from` is refused by the module's onConfigure: requests to the
    // route fail (fail-closed by default) rather than pass unrewritten.
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/tenants/a/routes/api/plugins/rewrite",
            Some(OP),
            Some(Body::Json(json!({"plugin_config": {"to": "x"}}))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    let r = gw
        .request("GET", "a.test", "/", &[("x-secret", "hunter2")])
        .await;
    assert!(r.status >= 500, "{} {}", r.status, r.json);
}
