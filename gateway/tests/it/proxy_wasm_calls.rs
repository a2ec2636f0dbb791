//! A proxy-wasm plugin calling another service (`proxy_http_call`): the Higress `ext-auth` Go
//! plugin (prebuilt, nobody here wrote it) asks a real auth server on loopback about each
//! request, through the tenant's outbound HTTP (the attachment's allow-list, the egress policy,
//! the tenant's quotas): allowed requests reach the upstream, denied ones get the auth server's
//! answer, and with the auth service down the plugin's configured status.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::proxy_wasm_serve::{higress, upload_and_attach};
use crate::support::api::{Api, Body, OP};
use crate::support::http_server::HttpServer;
use crate::support::*;

/// A gateway whose egress policy allows 127.0.0.1; tenant `t` owns `auth.test` with route `api`
/// to an echo upstream.
async fn gateway() -> (Wharf, Api, Upstream) {
    let (url, _store) = fresh_store(StoreKind::Sqlite).await;
    let toml = format!("operator_token = \"{OP}\"\negress_allow = [\"127.0.0.1/32\"]\n");
    let gw = Wharf::start_configured(&url, &toml, &[]).await;
    let api = Api::new(&gw);
    let up = Upstream::start("up").await;
    let calls = [
        (
            Method::POST,
            "/v1/tenants".to_string(),
            json!({"id": "t", "hostnames": ["auth.test"]}),
        ),
        (
            Method::PATCH,
            "/v1/tenants/t/quotas".into(),
            json!({"plugin_deadline_ms": 3000}),
        ),
        (
            Method::PUT,
            "/v1/tenants/t/routes/api".into(),
            json!({"path_prefix": "/", "upstreams": [{"addr": up.target()}]}),
        ),
    ];
    for (method, path, body) in calls {
        let (s, v) = api
            .call(method, &path, Some(OP), Some(Body::Json(body)))
            .await;
        assert!(s.is_success(), "{path}: {s} {v}");
    }
    (gw, api, up)
}

/// The ext-auth configuration of its README, against an auth service on 127.0.0.1:`port`.
fn ext_auth_config(port: u16) -> Value {
    json!({
        "route_match_regexes": [".*"],
        "authz": {
            "endpoint": {
                "service_name": "127.0.0.1",
                "service_port": port,
                "path": "/token-auth",
                "request_method": "GET"
            },
            "timeout": 1000,
            "authorization_request": {"allowed_headers": [{"exact": "x-api-key"}]}
        },
        "status_on_error": 403,
        "failure_mode_allow": false
    })
}

#[tokio::test]
async fn the_higress_ext_auth_plugin_asks_a_real_auth_service() {
    let auth = HttpServer::plain(|seen| {
        let key = seen
            .headers
            .iter()
            .find(|(k, _)| k == "x-api-key")
            .map(|(_, v)| v.as_str());
        match key {
            Some("good") => (200, "{}".into()),
            _ => (401, r#"{"denied": "who are you"}"#.into()),
        }
    })
    .await;
    let port = auth.addr.port();
    let (gw, api, _up) = gateway().await;
    let body = json!({
        "plugin_config": ext_auth_config(port),
        "allowed_outbound_hosts": [format!("http://127.0.0.1:{port}")]
    });
    upload_and_attach(
        &gw,
        &api,
        "t",
        "api",
        "ext-auth",
        higress("gpustack-ext-auth"),
        body,
    )
    .await;

    let allowed = gw
        .request("GET", "auth.test", "/orders", &[("x-api-key", "good")])
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.json);
    assert_eq!(allowed.json["upstream"], "up", "{}", allowed.json);
    let denied = gw
        .request("GET", "auth.test", "/orders", &[("x-api-key", "bad")])
        .await;
    assert_eq!(denied.status, 401, "{}", denied.json);
    assert_eq!(
        denied.json["denied"], "who are you",
        "the auth service's own answer"
    );
    let anonymous = gw.request("GET", "auth.test", "/orders", &[]).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.json);
    assert!(
        auth.requests.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "each request asked the auth service"
    );

    // The auth service is down (nothing listens on its port): the plugin answers its
    // configured status, nothing passes.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let body = json!({
        "plugin_config": ext_auth_config(closed_port),
        "allowed_outbound_hosts": [format!("http://127.0.0.1:{closed_port}")]
    });
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/tenants/t/routes/api/plugins/ext-auth",
            Some(OP),
            Some(Body::Json(body)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    let down = gw
        .request("GET", "auth.test", "/orders", &[("x-api-key", "good")])
        .await;
    assert_eq!(down.status, 403, "{}", down.json);
}

#[tokio::test]
async fn a_proxy_wasm_call_goes_only_where_the_attachment_allows() {
    let auth = HttpServer::plain(|_| (200, "{}".into())).await;
    let port = auth.addr.port();
    let (gw, api, _up) = gateway().await;
    // Allowed somewhere else: the call is refused before anything is dialled, and the plugin
    // sees a failed call (its status_on_error), never the server.
    let body = json!({
        "plugin_config": ext_auth_config(port),
        "allowed_outbound_hosts": ["http://127.0.0.1:1"]
    });
    upload_and_attach(
        &gw,
        &api,
        "t",
        "api",
        "ext-auth",
        higress("gpustack-ext-auth"),
        body,
    )
    .await;
    let r = gw
        .request("GET", "auth.test", "/orders", &[("x-api-key", "good")])
        .await;
    assert_eq!(r.status, 403, "{}", r.json);
    assert_eq!(auth.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
    let m = gw.metrics().await;
    assert!(
        m.lines().any(|l| l.starts_with("wharf_host_calls_total")
            && l.contains("proxy_http_call")
            && l.contains("denied")),
        "{m}"
    );
}
