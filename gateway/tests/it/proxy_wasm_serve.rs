//! proxy-wasm plugins served end to end: a tenant uploads a module nobody here wrote (a Higress
//! Go plugin, prebuilt, downloaded by scripts/test) through the admin API, attaches it with its
//! JSON configuration, and requests through the gateway carry its edits; its VM is the tenant's
//! own and survives across requests; a module that traps fails only its request and its VM is
//! started again.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::api::{setup, Api, Body, OP};
use crate::support::*;

pub(crate) fn higress(name: &str) -> Vec<u8> {
    let dir = std::env::var("WHARF_HIGRESS_DIR").expect(
        "WHARF_HIGRESS_DIR: run the suite with scripts/test, which downloads the Higress plugins",
    );
    std::fs::read(format!("{dir}/{name}.wasm")).unwrap()
}

/// Uploads `bytes` as tenant `t`'s plugin `name` and attaches it to route `route` with `body`
/// (the attachment's JSON); waits until the gateway serves that configuration.
pub(crate) async fn upload_and_attach(
    gw: &Wharf,
    api: &Api,
    t: &str,
    route: &str,
    name: &str,
    bytes: Vec<u8>,
    body: Value,
) {
    let (s, v) = api.put_plugin(t, name, OP, bytes).await;
    assert_eq!(s, StatusCode::CREATED, "{name}: {v}");
    attach(gw, api, t, route, name, body).await;
}

/// Attaches tenant `t`'s uploaded plugin `plugin` to route `route` with `body` (the attachment's
/// JSON); waits until the gateway serves that configuration.
pub(crate) async fn attach(gw: &Wharf, api: &Api, t: &str, route: &str, plugin: &str, body: Value) {
    let (s, v) = api
        .call(
            Method::PUT,
            &format!("/v1/tenants/{t}/routes/{route}/plugins/{plugin}"),
            Some(OP),
            Some(Body::Json(body)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
}

/// A route `api` on tenant `t` to `up`, with a generous plugin deadline (a loaded CI machine).
pub(crate) async fn route_to(api: &Api, t: &str, up: &Upstream) {
    let route = json!({"path_prefix": "/", "upstreams": [{"addr": up.target(), "weight": 1}]});
    let (s, v) = api
        .call(
            Method::PUT,
            &format!("/v1/tenants/{t}/routes/api"),
            Some(OP),
            Some(Body::Json(route)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api
        .call(
            Method::PATCH,
            &format!("/v1/tenants/{t}/quotas"),
            Some(OP),
            Some(Body::Json(json!({"plugin_deadline_ms": 3000}))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_higress_go_plugin_edits_requests_with_its_json_configuration() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    let config = json!({
        "plugin_config": {
            "routeNameHeader": "x-route-name",
            "clusterNameHeader": "x-cluster-name",
            "enableOnPathPrefix": ["/orders"]
        }
    });
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "set-header",
        higress("gpustack-set-header-pre-route"),
        config,
    )
    .await;

    for i in 0..5 {
        let r = gw
            .request("GET", "a.test", &format!("/orders/{i}"), &[])
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        let headers = &r.json["headers"];
        assert_eq!(headers["x-route-name"], "api", "{}", r.json);
        // Higress's SDK takes the service out of Envoy's `outbound|port||service` cluster name.
        assert_eq!(headers["x-cluster-name"], "api", "{}", r.json);
    }
    // Off its configured prefix the plugin leaves the request alone.
    let r = gw.request("GET", "a.test", "/other", &[]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(
        r.json["headers"].get("x-route-name").is_none(),
        "{}",
        r.json
    );

    // One VM served all of them: started once, never restarted.
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "wharf_plugin_vms"), 1.0, "{m}");
    assert_eq!(metric_sum(&m, "wharf_plugin_vm_restarts_total"), 0.0);
}

/// The sum of every series of metric `name`.
pub(crate) fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Many requests at once through one tenant's VM: every one served (they queue for the VM's
/// lock, one callback at a time), none lost to the teardown of another.
#[tokio::test]
async fn concurrent_requests_share_one_vm_and_all_succeed() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    let config = json!({"plugin_config": {"header": "x-as", "value": "1"}});
    let bytes = wharf_plugins::test_support::example_plugin("proxy-wasm/as-headers");
    upload_and_attach(&gw, &api, "a", "api", "as", bytes, config).await;
    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    for _ in 0..10 {
        let batch = (0..32).map(|_| {
            client
                .get(format!("http://{}/x", gw.proxy))
                .header("host", "a.test")
                .send()
        });
        for r in futures_util::future::join_all(batch).await {
            let r = r.unwrap();
            if r.status() != 200 {
                failures.push(format!(
                    "{} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 320 failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

/// An uploaded Go plugin serves at once from its baseline (Winch) code, then from its optimized
/// (Cranelift) code once the background compile is done: the same edits before, during and
/// after the switch, no VM failure, one VM left; a restarted node loads the optimized code from
/// its disk cache and compiles nothing (docs/proxy-wasm.md, "Upload until served").
#[tokio::test]
async fn an_uploaded_go_plugin_serves_from_baseline_code_then_from_optimized_code() {
    let (mut gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    let config = json!({
        "plugin_config": {"routeNameHeader": "x-route-name", "enableOnPathPrefix": ["/orders"]}
    });
    let bytes = higress("gpustack-set-header-pre-route");
    upload_and_attach(&gw, &api, "a", "api", "set-header", bytes, config).await;
    let edited = |r: &Reply| {
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["headers"]["x-route-name"], "api", "{}", r.json);
    };
    let compiles = |m: &str, compiler: &str| {
        metric_value(
            m,
            &format!("wharf_plugin_compiles_total{{compiler=\"{compiler}\"}}"),
        )
    };

    edited(&gw.request("GET", "a.test", "/orders/1", &[]).await);
    let m = gw.metrics().await;
    assert_eq!(compiles(&m, "winch"), 1.0, "{m}");
    assert_eq!(
        compiles(&m, "cranelift"),
        0.0,
        "optimized before it served: {m}"
    );

    // Requests go on while Cranelift compiles (minutes in a debug build on a loaded machine).
    let started = std::time::Instant::now();
    let mut during = 0;
    loop {
        edited(
            &gw.request("GET", "a.test", &format!("/orders/{during}"), &[])
                .await,
        );
        during += 1;
        if compiles(&gw.metrics().await, "cranelift") == 1.0 {
            break;
        }
        assert!(started.elapsed().as_secs() < 900, "never optimized");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for i in 0..5 {
        edited(
            &gw.request("GET", "a.test", &format!("/orders/after/{i}"), &[])
                .await,
        );
    }
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "wharf_plugin_vms"), 1.0, "{m}");
    assert_eq!(metric_sum(&m, "wharf_plugin_vm_restarts_total"), 0.0);
    // Two VM starts in all: the baseline code's, then the optimized code's.
    assert_eq!(
        metric_sum(&m, "wharf_plugin_instantiations_total"),
        2.0,
        "{m}"
    );
    eprintln!("{during} requests served by baseline code while Cranelift compiled");

    gw.restart().await;
    edited(&gw.request("GET", "a.test", "/orders/restarted", &[]).await);
    let m = gw.metrics().await;
    assert_eq!(
        compiles(&m, "winch") + compiles(&m, "cranelift"),
        0.0,
        "{m}"
    );
}
