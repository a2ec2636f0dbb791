//! Plugins' outbound HTTP (`wharf:plugin/http`), through a real gateway: the token-introspection
//! example against a real HTTPS service of a test CA, found through a real DNS server. From the
//! attacker's side: `outbound_http_hostile.rs`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wharf_plugins::test_support::example_plugin;

use crate::support::api::{Api, Body, OP};
use crate::support::dns::Dns;
use crate::support::http_server::HttpServer;
use crate::support::tls::Ca;
use crate::support::*;

/// A gateway whose egress policy allows 127.0.0.1 only (so 127.0.0.2 stands for any loopback
/// or internal address), resolving through `dns`, trusting `ca` for plugins' HTTPS; tenant `t`
/// owns `out.test` and has `plugin` (an example) on route `/` to an echo upstream, attached
/// with `allowed` and `config`.
pub(crate) async fn gateway(
    dns: &Dns,
    ca: &Ca,
    plugin: &str,
    config: Value,
    allowed: Value,
    quotas: Value,
) -> (Wharf, Api, Upstream) {
    let ca_file = std::env::temp_dir().join(format!("wharf-out-ca-{}.pem", unique_suffix()));
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let (url, _store) = fresh_store(StoreKind::Sqlite).await;
    let toml = format!(
        "operator_token = \"{OP}\"\negress_allow = [\"127.0.0.1/32\"]\n\
         [dns]\nservers = [\"{}\"]\n[outbound_http]\nca_file = \"{}\"\n",
        dns.addr,
        ca_file.display()
    );
    let gw = Wharf::start_configured(&url, &toml, &[]).await;
    let api = Api::new(&gw);
    let up = Upstream::start("up").await;
    let calls = [
        (
            Method::POST,
            "/v1/tenants".to_string(),
            json!({"id": "t", "hostnames": ["out.test"]}),
        ),
        (
            Method::PATCH,
            "/v1/tenants/t/quotas".into(),
            json!({"plugin_deadline_ms": 3000}),
        ),
        (Method::PATCH, "/v1/tenants/t/quotas".into(), quotas),
        (
            Method::PUT,
            "/v1/tenants/t/routes/all".into(),
            json!({"path_prefix": "/", "upstreams": [{"addr": up.target()}]}),
        ),
    ];
    for (method, path, body) in calls {
        let (s, v) = api
            .call(method, &path, Some(OP), Some(Body::Json(body)))
            .await;
        assert!(s.is_success(), "{path}: {s} {v}");
    }
    let (s, v) = api
        .put_plugin("t", plugin, OP, example_plugin(plugin))
        .await;
    assert!(s.is_success(), "{v}");
    let (s, v) = attach(&api, plugin, config, allowed).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    (gw, api, up)
}

pub(crate) async fn attach(
    api: &Api,
    plugin: &str,
    config: Value,
    allowed: Value,
) -> (StatusCode, Value) {
    let body = json!({"config": config, "allowed_outbound_hosts": allowed});
    api.call(
        Method::PUT,
        &format!("/v1/tenants/t/routes/all/plugins/{plugin}"),
        Some(OP),
        Some(Body::Json(body)),
    )
    .await
}

#[tokio::test]
async fn token_introspection_calls_a_verified_https_service_by_name() {
    let ca = Ca::new("Outbound Test CA");
    let (chain, key, _) = ca.leaf(&["auth.out.test"]);
    let auth = HttpServer::tls(&chain, &key, |seen| {
        let active = seen.method == "POST"
            && seen.path == "/introspect"
            && seen.body == b"token=good%2Btoken";
        match active {
            true => (200, r#"{"active": true, "sub": "alice"}"#.into()),
            false => (200, r#"{"active":false}"#.into()),
        }
    })
    .await;
    let dns = Dns::start(&[("auth.out.test", "127.0.0.1")]);
    let port = auth.addr.port();
    let (gw, api, _up) = gateway(
        &dns,
        &ca,
        "token-introspection",
        json!({"url": format!("https://auth.out.test:{port}/introspect")}),
        json!([format!("https://auth.out.test:{port}")]),
        json!({}),
    )
    .await;

    for _ in 0..3 {
        let r = gw
            .request(
                "GET",
                "out.test",
                "/x",
                &[("authorization", "Bearer good+token")],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["headers"]["x-auth-subject"], "alice", "{}", r.json);
    }
    let r = gw
        .request(
            "GET",
            "out.test",
            "/x",
            &[("authorization", "Bearer stolen")],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.json);
    let r = gw.request("GET", "out.test", "/x", &[]).await;
    assert_eq!(r.status, 401, "{}", r.json);
    let calls = auth.requests.load(std::sync::atomic::Ordering::SeqCst);
    let conns = auth.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(calls, 4, "one introspection per request with a token");
    assert!(
        conns < calls,
        "pooled: {conns} TLS connections for {calls} calls"
    );

    // The allow-list is checked at write time, naming the field.
    let (s, v) = attach(
        &api,
        "token-introspection",
        json!({}),
        json!(["auth.out.test"]),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("allowed_outbound_hosts"), "{v}");
    let metrics = gw.metrics().await;
    assert!(
        metric_value(&metrics, "wharf_host_calls_total{function=\"http.send\",outcome=\"ok\",plugin=\"token-introspection\",tenant=\"t\"}") >= 4.0,
        "{}",
        metrics.lines().filter(|l| l.contains("http.send")).collect::<Vec<_>>().join("\n")
    );
}
