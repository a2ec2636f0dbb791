//! A hostile tenant against the gateway's own boundaries, over real sockets: upstreams aimed at
//! the gateway itself, its admin listener or internal networks; request loops through a fleet;
//! reading the operator's metrics; uploads that never authenticate.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support;
use std::time::Duration;

use crate::support::api::{setup, Api, Body, OP};
use crate::support::{fresh_store, route, StoreKind, Upstream, Wharf};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_cannot_point_at_the_gateway_or_internal_networks() {
    let (gw, api, ka, _, _) = setup().await;
    let up = Upstream::start("ok").await;
    let put = |addr: String| {
        let (api, ka) = (&api, &ka);
        async move {
            api.call(
                Method::PUT,
                "/v1/tenants/a/routes/r",
                Some(ka),
                Some(Body::Json(
                    json!({"path_prefix": "/", "upstreams": [{"addr": addr, "weight": 1}]}),
                )),
            )
            .await
        }
    };
    for bad in [
        gw.proxy.to_string(),
        gw.admin.to_string(),
        format!("0.0.0.0:{}", gw.proxy.port()),
        format!("[::1]:{}", up.addr.port()),
        "169.254.169.254:80".into(),
        "10.0.0.1:6379".into(),
        "192.168.1.10:5432".into(),
        "[fd00::1]:80".into(),
    ] {
        let (s, v) = put(bad.clone()).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("upstream_forbidden")),
            "{bad}: {v}"
        );
    }
    // The operator allowed 127.0.0.0/8 (test upstreams live there): other ports are fine.
    let (s, v) = put(up.target()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_route_to_the_gateway_itself_is_refused_at_connect_time() {
    // Written straight into the store (as by an older version or a direct store client): the
    // proxy still refuses to dial its own listener instead of looping.
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let gw = Wharf::start(&url).await;
    store.create_tenant("a", "A", &["a.test"]).await.unwrap();
    let v = store
        .put_route("a", route("self", "/", &[&gw.proxy.to_string()]))
        .await
        .unwrap();
    gw.wait_for_version(v).await;
    let r = gw.get("a.test", "/").await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (502, Some("upstream_forbidden")),
        "{:?}",
        r.json
    );
    assert!(
        !gw.log().contains("loop_detected"),
        "refused before any request was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_through_two_gateways_stops_at_the_first_repeat() {
    // Two independent gateways whose tenants point at each other: A -> B -> A.
    let ((ua, sa), (ub, sb)) = (
        fresh_store(StoreKind::Sqlite).await,
        fresh_store(StoreKind::Sqlite).await,
    );
    let (a, b) = (Wharf::start(&ua).await, Wharf::start(&ub).await);
    for (store, gw, other) in [(&sa, &a, &b), (&sb, &b, &a)] {
        store.create_tenant("t", "T", &["loop.test"]).await.unwrap();
        let v = store
            .put_route("t", route("r", "/", &[&other.proxy.to_string()]))
            .await
            .unwrap();
        gw.wait_for_version(v).await;
    }
    let r = a.get("loop.test", "/").await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (508, Some("loop_detected")),
        "{:?}",
        r.json
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_for_the_operator_only() {
    let (gw, _, ka, _, _) = setup().await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/metrics", gw.admin);
    let anon = client.get(&url).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    let tenant = client.get(&url).bearer_auth(&ka).send().await.unwrap();
    assert_eq!(tenant.status(), StatusCode::UNAUTHORIZED);
    let op = client.get(&url).bearer_auth(OP).send().await.unwrap();
    assert_eq!(op.status(), StatusCode::OK);
    assert!(op.text().await.unwrap().contains("wharf_config_version"));
    // Tenants read their own usage through the API instead.
    let (s, _) = Api::new(&gw)
        .call(Method::GET, "/v1/tenants/a/usage", Some(&ka), None)
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_tenant_ids_are_refused() {
    let (gw, api, _, _, _) = setup().await;
    for id in ["system", "operator", "sys"] {
        let (s, v) = api
            .call(
                Method::POST,
                "/v1/tenants",
                Some(OP),
                Some(Body::Json(
                    json!({"id": id, "hostnames": [format!("{id}.test")]}),
                )),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{id}: {v}");
    }
    drop(gw);
}

/// Sends only an upload's headers (30 MB announced, no body); returns the status line the
/// gateway answers with.
async fn upload_attempt(admin: std::net::SocketAddr, token: Option<&str>, expect: bool) -> String {
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let expect = if expect {
        "Expect: 100-continue\r\n"
    } else {
        ""
    };
    let head = format!(
        "PUT /v1/tenants/a/plugins/p HTTP/1.1\r\nHost: x\r\n{auth}{expect}Content-Length: 31457280\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an answer before any body byte")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_authenticated_before_their_body_is_read() {
    let (gw, _, _, kb, revoked) = setup().await;
    let before = gw.rss_bytes();
    let mut attempts = Vec::new();
    for i in 0..12 {
        let admin = gw.admin;
        let (token, expect) = match i % 3 {
            0 => (None, true),
            1 => (Some(revoked.clone()), false),
            _ => (Some(kb.clone()), false), // b's key on a's plugin: out of scope
        };
        attempts.push(tokio::spawn(async move {
            upload_attempt(admin, token.as_deref(), expect).await
        }));
    }
    for a in attempts {
        let line = a.await.unwrap();
        assert!(
            line.contains(" 401 ") || line.contains(" 404 "),
            "refused before the body was sent: {line:?}"
        );
    }
    let grown = gw.rss_bytes().saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "twelve 30 MB unauthenticated uploads grew the gateway by {grown} bytes"
    );
}

/// What one caller can make a node spend through the admin API is capped before the store is
/// asked: a tenant key's calls and writes (every write makes every node reload that tenant) and
/// an address's failed authentications. Over budget: 429 with Retry-After; others unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_budgets_cap_one_callers_cost() {
    let (url, _) = fresh_store(StoreKind::Sqlite).await;
    let gw = Wharf::start_configured(
        &url,
        &format!(
            "operator_token = \"{OP}\"\n[admin]\ntenant_calls_per_second = 1\n\
             tenant_calls_burst = 10\ntenant_writes_per_second = 1\ntenant_writes_burst = 3\n\
             failed_auth_per_second = 1\nfailed_auth_burst = 5"
        ),
        &[],
    )
    .await;
    let api = Api::new(&gw);
    let ka = support::tls::create_tenant(&api, "a", &["a.test"]).await;
    let kb = support::tls::create_tenant(&api, "b", &["b.test"]).await;
    let raw = |token: &str, method: Method, path: &str| {
        let url = format!("http://{}{path}", gw.admin);
        let req = reqwest::Client::new()
            .request(method, url)
            .bearer_auth(token);
        async move {
            let r = req
                .json(&json!({"path_prefix": "/", "upstreams": []}))
                .send()
                .await
                .unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let status = r.status();
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            (status, v["error"].as_str().unwrap_or("").to_string(), retry)
        }
    };

    // Tenant a's calls: its burst of 10, then 429 rate_limited with Retry-After.
    for _ in 0..10 {
        assert_eq!(
            raw(&ka, Method::GET, "/v1/tenants/a/routes").await.0,
            StatusCode::OK
        );
    }
    let (status, error, retry) = raw(&ka, Method::GET, "/v1/tenants/a/routes").await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    // Tenant b and the operator are not affected.
    assert_eq!(
        raw(&kb, Method::GET, "/v1/tenants/b/routes").await.0,
        StatusCode::OK
    );
    assert_eq!(
        raw(OP, Method::GET, "/v1/tenants/a/routes").await.0,
        StatusCode::OK
    );

    // Tenant b's writes: 3, then refused, though its call budget has room.
    for i in 0..3 {
        let (s, e, _) = raw(&kb, Method::DELETE, &format!("/v1/tenants/b/routes/r{i}")).await;
        assert_ne!(s, StatusCode::TOO_MANY_REQUESTS, "{e}");
    }
    let (status, error, _) = raw(&kb, Method::DELETE, "/v1/tenants/b/routes/r9").await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert_eq!(
        raw(&kb, Method::GET, "/v1/tenants/b/routes").await.0,
        StatusCode::OK
    );

    // Guessing keys from one address: 5 failures (well-formed or not), then 429 before any
    // lookup, even for a good key from that address; the operator still gets in.
    let forged = format!("wharf_{}", "0".repeat(48));
    for token in [forged.as_str(), "nonsense", &forged, "x", &forged] {
        let (s, e, _) = raw(token, Method::GET, "/v1/tenants/a/routes").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
    }
    let (status, error, retry) = raw(&forged, Method::GET, "/v1/tenants/a/routes").await;
    assert_eq!(
        (status, error.as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failed_authentications"
        )
    );
    assert!(retry.is_some());
    assert_eq!(
        raw(&kb, Method::GET, "/v1/tenants/b/routes").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(raw(OP, Method::GET, "/v1/tenants").await.0, StatusCode::OK);
    // The budget comes back with time.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        raw(&kb, Method::GET, "/v1/tenants/b/routes").await.0,
        StatusCode::OK
    );
}
