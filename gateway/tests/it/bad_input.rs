//! Input a tenant or the operator should not send: every name with a NUL or another control
//! character is a 400 naming the field, on Postgres too (which would refuse it with its own
//! error text), and a private key pasted into a certificate chain is refused, never stored.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::api::{setup, setup_on, Body, OP};
use crate::support::tls::{upload, Ca};
use crate::support::{StoreKind, Upstream};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wharf_plugins::test_support::example_plugin;

/// Nothing a backend said reaches the client.
fn no_backend_text(v: &Value) {
    let text = v.to_string().to_lowercase();
    for leak in [
        "utf8",
        "0x00",
        "sqlx",
        "postgres",
        "sqlite",
        "error returned from database",
    ] {
        assert!(!text.contains(leak), "backend text {leak:?} in {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_and_control_characters_in_names_are_400_naming_the_field() {
    let (_gw, api, ka, _, _) = setup_on(StoreKind::Postgres).await;
    let up = Upstream::start("up").await;
    let route = json!({"path_prefix": "/", "upstreams": [{"addr": up.target()}]});
    let (s, v) = api
        .put_plugin("a", "tag", &ka, example_plugin("add-header"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/tenants/a/routes/r",
            Some(&ka),
            Some(Body::Json(route.clone())),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let cases: Vec<(Method, &str, Option<Body>, &str, &str)> = vec![
        (
            Method::PUT,
            "/v1/tenants/a/routes/r%00",
            Some(Body::Json(route.clone())),
            &ka,
            "route",
        ),
        (Method::GET, "/v1/tenants/a/routes/r%00", None, &ka, "route"),
        (
            Method::DELETE,
            "/v1/tenants/a/routes/r%00",
            None,
            &ka,
            "route",
        ),
        (
            Method::GET,
            "/v1/tenants/a/routes/r%0Ax",
            None,
            &ka,
            "route",
        ),
        (
            Method::PUT,
            "/v1/tenants/a/routes/r/plugins/p%00",
            Some(Body::Json(json!({}))),
            &ka,
            "plugin",
        ),
        (
            Method::DELETE,
            "/v1/tenants/a/routes/r/plugins/p%00",
            None,
            &ka,
            "plugin",
        ),
        (
            Method::DELETE,
            "/v1/tenants/a/plugins/p%00",
            None,
            &ka,
            "plugin",
        ),
        (
            Method::GET,
            "/v1/tenants/a/plugins/p%00",
            None,
            &ka,
            "plugin",
        ),
        (
            Method::POST,
            "/v1/tenants/a/plugins/p%00/rollback",
            Some(Body::Json(json!({"version": 1}))),
            &ka,
            "plugin",
        ),
        (
            Method::PUT,
            "/v1/tenants/a/certificates/c%00",
            Some(Body::Json(json!({"chain_pem": "", "key_pem": ""}))),
            &ka,
            "name",
        ),
        (
            Method::DELETE,
            "/v1/tenants/a/certificates/c%00",
            None,
            &ka,
            "name",
        ),
        (Method::GET, "/v1/tenants/a%00", None, OP, "tenant"),
        (
            Method::DELETE,
            "/v1/tenants/a/api-keys/k%00",
            None,
            OP,
            "key",
        ),
        (
            Method::DELETE,
            "/v1/tenants/a/hostnames/x%00.test",
            None,
            OP,
            "host",
        ),
        (
            Method::PATCH,
            "/v1/tenants/a",
            Some(Body::Json(json!({"display_name": "A\u{0}"}))),
            OP,
            "display name",
        ),
        (
            Method::PATCH,
            "/v1/tenants/a",
            Some(Body::Json(json!({"display_name": "A\u{1b}[31m"}))),
            OP,
            "display name",
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some(Body::Json(json!({"id": "c", "display_name": "C\u{0}"}))),
            OP,
            "display name",
        ),
    ];
    for (method, path, body, key, field) in cases {
        let (s, v) = api.call(method.clone(), path, Some(key), body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path}: {v}");
        assert_eq!(v["error"], "invalid", "{method} {path}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(field),
            "{method} {path}: the message names {field}: {v}"
        );
        no_backend_text(&v);
    }
    // Nothing was lost: the route and plugin are as they were, and tenant c was not created.
    let (s, v) = api
        .call(Method::GET, "/v1/tenants/a/routes/r", Some(&ka), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = api
        .call(Method::GET, "/v1/tenants/a/plugins/tag", Some(&ka), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.call(Method::GET, "/v1/tenants/c", Some(OP), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A well-formed name that does not exist is still a 404.
    let (s, v) = api
        .call(Method::GET, "/v1/tenants/a/routes/nope", Some(&ka), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_key_in_the_chain_is_refused_and_never_stored() {
    let (_gw, api, ka, _, _) = setup().await;
    let ca = Ca::new("bundle CA");
    let (chain, key, _) = ca.leaf(&["a.test"]);
    for bundle in [format!("{chain}{key}"), format!("{key}{chain}")] {
        let (s, v) = upload(&api, "a", &ka, "web", &bundle, &key).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("invalid_certificate")
            ),
            "{v}"
        );
        assert!(
            v["message"].as_str().unwrap().contains("private key"),
            "{v}"
        );
        assert!(!v.to_string().contains("PRIVATE KEY-----"), "{v}");
    }
    let (s, v) = api
        .call(Method::GET, "/v1/tenants/a/certificates", Some(&ka), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["certificates"], json!([]), "nothing stored");
    // The chain alone is fine.
    let (s, v) = upload(&api, "a", &ka, "web", &chain, &key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!v.to_string().contains("PRIVATE KEY"), "{v}");
}
