//! What proxy-wasm modules keep between requests, per tenant: the Higress `rate-limit` Go plugin
//! (prebuilt) counting in shared data with compare-and-swap (its local mode) limits each user of
//! one tenant, and another tenant running the same bytes with the same configuration counts
//! apart; its metrics go out under the tenant's label. With a `redis` section it sends its Lua
//! script through Higress's Redis extension: on a node whose operator has not approved that
//! script (`[redis] trusted_scripts`, `proxy_wasm_redis.rs`) it is refused before anything
//! reaches Redis (a tenant's script could block Redis for everyone), and the plugin does what it
//! does on a Redis failure (it lets the request through).

use serde_json::json;

use crate::proxy_wasm_serve::{higress, route_to, upload_and_attach};
use crate::support::api::{setup, Api, Body, OP};
use crate::support::*;

fn rate_limit(per_minute: u32) -> serde_json::Value {
    json!({
        "rule_name": "per-user",
        "limit_combinations": [{
            "name": "by-user",
            "match": [{"source": "header", "name": "x-user", "value": "*"}],
            "query_limits": {"per_minute": per_minute}
        }],
        "rejected_code": 429,
        "enable_on_path_suffix": ["*"]
    })
}

async fn status(gw: &Wharf, host: &str, user: &str) -> u16 {
    let url = format!("http://{}/items", gw.proxy);
    reqwest::Client::new()
        .get(url)
        .header("host", host)
        .header("x-user", user)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_higress_rate_limit_counts_per_user_and_per_tenant_in_shared_data() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    for t in ["a", "b"] {
        route_to(&api, t, &up).await;
        let body = json!({"plugin_config": rate_limit(3)});
        upload_and_attach(
            &gw,
            &api,
            t,
            "api",
            "limit",
            higress("gpustack-rate-limit"),
            body,
        )
        .await;
    }
    let mut alice = Vec::new();
    for _ in 0..5 {
        alice.push(status(&gw, "a.test", "alice").await);
    }
    assert_eq!(alice, [200, 200, 200, 429, 429], "3 a minute for alice");
    assert_eq!(status(&gw, "a.test", "bob").await, 200, "bob counts apart");
    // Tenant b runs the same bytes and configuration: its own VM, its own counters.
    assert_eq!(
        status(&gw, "b.test", "alice").await,
        200,
        "b's alice never used a's"
    );
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "wharf_plugin_vms"), 2.0, "{m}");
    let rejected: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("wharf_plugin_module_metric") && l.contains("rejected"))
        .collect();
    assert!(
        rejected.iter().any(|l| l.contains("tenant=\"a\"")),
        "the module's own counter, under its tenant: {rejected:?}\n{}",
        &gw.log()[gw.log().len().saturating_sub(3000)..]
    );
}

#[tokio::test]
async fn a_tenants_redis_refuses_a_modules_lua_script() {
    let (url, _store) = fresh_store(StoreKind::Sqlite).await;
    let toml = format!("operator_token = \"{OP}\"\nredis = \"{}\"\n", redis_url());
    let gw = Wharf::start_configured(&url, &toml, &[]).await;
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
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    let mut config = rate_limit(1);
    config["redis"] = json!({"service_name": "redis.example", "service_port": 6379});
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "limit",
        higress("gpustack-rate-limit"),
        json!({"plugin_config": config}),
    )
    .await;
    for _ in 0..3 {
        let r = gw
            .request("GET", "a.test", "/items", &[("x-user", "alice")])
            .await;
        let log = gw.log();
        let tail = &log[log.len().saturating_sub(4000)..];
        assert_eq!(r.status, 200, "the plugin fails open: {}\n{tail}", r.json);
    }
    let m = gw.metrics().await;
    let denied: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with("wharf_host_calls_total")
                && l.contains("proxy_redis_call")
                && l.contains("denied")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(denied >= 3.0, "every EVAL refused by the allow-list:\n{m}");
}
