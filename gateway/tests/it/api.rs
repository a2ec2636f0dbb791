//! The admin API over real HTTP: who may do what (an authorization matrix), uploads that must be
//! refused, and concurrent uploads.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::api::{setup, Api, Body, OP};
use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use wharf_plugins::test_support::{binary, example_plugin, wasi_importer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix() {
    let (_gw, api, ka, kb, revoked) = setup().await;
    let up = Upstream::start("up").await;
    let route = json!({"path_prefix": "/", "upstreams": [{"addr": up.target(), "weight": 1}]});
    let wasm = example_plugin("add-header");
    // (method, path on tenant a, body, who may: "op" = operator only, "a" = operator and tenant a)
    let cases: Vec<(Method, &str, Option<Body>, &str, StatusCode)> = vec![
        (Method::GET, "/v1/tenants/a", None, "a", StatusCode::OK),
        (
            Method::PATCH,
            "/v1/tenants/a",
            Some(Body::Json(json!({"display_name": "Acme A"}))),
            "op",
            StatusCode::OK,
        ),
        (
            Method::PATCH,
            "/v1/tenants/a/quotas",
            Some(Body::Json(json!({"plugin_fuel": 2000000}))),
            "op",
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/tenants/a/hostnames",
            Some(Body::Json(json!({"hostname": "*.a.test"}))),
            "op",
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            "/v1/tenants/a/api-keys",
            None,
            "op",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/tenants/a/usage",
            None,
            "a",
            StatusCode::OK,
        ),
        (Method::GET, "/v1/audit", None, "op", StatusCode::OK),
        (
            Method::PUT,
            "/v1/tenants/a/routes/api",
            Some(Body::Json(route.clone())),
            "a",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/tenants/a/routes",
            None,
            "a",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/tenants/a/routes/api",
            None,
            "a",
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/v1/tenants/a/plugins/tag",
            Some(Body::Bytes(wasm.clone())),
            "a",
            StatusCode::CREATED,
        ),
        (
            Method::PUT,
            "/v1/tenants/a/plugins/tag2",
            Some(Body::Bytes(wasm.clone())),
            "a",
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            "/v1/tenants/a/plugins",
            None,
            "a",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/tenants/a/plugins/tag",
            None,
            "a",
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/v1/tenants/a/routes/api/plugins/tag",
            Some(Body::Json(json!({"config": {"request-value": "x"}}))),
            "a",
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/v1/tenants/a/routes/api/plugins/tag2",
            Some(Body::Json(json!({"version": 1, "position": 0}))),
            "a",
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/tenants/a/plugins/tag/rollback",
            Some(Body::Json(json!({"version": 1}))),
            "a",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/tenants/a/routes/api",
            None,
            "a",
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            "/v1/tenants/a/routes/api/plugins/tag",
            None,
            "a",
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            "/v1/tenants/a/plugins/tag",
            None,
            "a",
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            "/v1/tenants/a/routes/api",
            None,
            "a",
            StatusCode::OK,
        ),
    ];
    for (method, path, body, who, ok_status) in &cases {
        // Outsiders first: nothing they send may change anything.
        for (label, token, expect) in [
            ("no key", None, StatusCode::UNAUTHORIZED),
            (
                "wrong key",
                Some("wharf_not_a_key"),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "revoked key",
                Some(revoked.as_str()),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "tenant b",
                Some(kb.as_str()),
                if *who == "op" {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::NOT_FOUND
                },
            ),
        ] {
            let (s, v) = api.call(method.clone(), path, token, body.clone()).await;
            assert_eq!(s, expect, "{label} {method} {path}: {v}");
            assert!(
                v["error"].is_string() && v["message"].is_string(),
                "{label} {method} {path}: errors are JSON: {v}"
            );
        }
        if *who == "op" {
            let (s, v) = api
                .call(method.clone(), path, Some(&ka), body.clone())
                .await;
            assert_eq!(s, StatusCode::FORBIDDEN, "tenant a {method} {path}: {v}");
        }
        // Then the allowed caller: tenant a for tenant endpoints, the operator for the rest.
        let token = if *who == "a" { ka.as_str() } else { OP };
        let (s, v) = api
            .call(method.clone(), path, Some(token), body.clone())
            .await;
        assert_eq!(s, *ok_status, "allowed {method} {path}: {v}");
    }
    // The display name changed.
    let (_, v) = api.call(Method::GET, "/v1/tenants/a", Some(OP), None).await;
    assert_eq!(v["display_name"], "Acme A");
    // Tenant creation and deletion are the operator's.
    let (s, _) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&ka),
            Some(Body::Json(json!({"id": "c"}))),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api
        .call(Method::DELETE, "/v1/tenants/b", Some(&ka), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Listing shows a tenant only itself.
    let (_, v) = api.call(Method::GET, "/v1/tenants", Some(&kb), None).await;
    assert_eq!(v["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(v["tenants"][0]["id"], "b");
    // Every mutation is audited with its author.
    let (_, v) = api
        .call(Method::GET, "/v1/audit?limit=1000", Some(OP), None)
        .await;
    let entries = v["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["actor"] == "tenant:a"
        && e["action"] == "plugin.upload"
        && e["target"] == "a/tag"));
    assert!(entries
        .iter()
        .any(|e| e["actor"] == "operator" && e["action"] == "tenant.create" && e["target"] == "b"));
    // The OpenAPI document names every route.
    let (s, doc) = api.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    for p in [
        "/v1/tenants/{tenant}/plugins/{plugin}",
        "/v1/tenants/{tenant}/routes/{route}/plugins/{plugin}",
        "/v1/audit",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from openapi.json"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_store_nothing() {
    let (_gw, api, ka, _, _) = setup().await;
    let (s, _) = api
        .call(
            Method::PATCH,
            "/v1/tenants/a/quotas",
            Some(OP),
            Some(Body::Json(json!({"plugin_max_bytes": 100000}))),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let good = example_plugin("add-header");
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "tag",
            b"garbage".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a WebAssembly component",
        ),
        (
            "tag",
            good[..good.len() / 2].to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a WebAssembly component",
        ),
        (
            "tag",
            vec![0u8; 200_000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
        (
            "tag",
            vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
            StatusCode::UNPROCESSABLE_ENTITY,
            "core wasm module",
        ),
        (
            "tag",
            wasi_importer(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wasi:filesystem",
        ),
        (
            "tag",
            binary("(component)"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "on-request",
        ),
        // WAT text is never compiled: uploads are binary components.
        (
            "tag",
            b"(component)".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a WebAssembly component",
        ),
        ("tag", vec![], StatusCode::BAD_REQUEST, "body"),
        (
            "..%2Fetc",
            good.clone(),
            StatusCode::BAD_REQUEST,
            "plugin name",
        ),
        (
            "%C3%BCnicode",
            good.clone(),
            StatusCode::BAD_REQUEST,
            "plugin name",
        ),
        (
            "Upper",
            good.clone(),
            StatusCode::BAD_REQUEST,
            "plugin name",
        ),
    ];
    let long = "x".repeat(200);
    let mut all = cases;
    all.push((
        long.as_str(),
        good.clone(),
        StatusCode::BAD_REQUEST,
        "plugin name",
    ));
    for (name, bytes, status, needle) in all {
        let (s, v) = api
            .call(
                Method::PUT,
                &format!("/v1/tenants/a/plugins/{name}"),
                Some(&ka),
                Some(Body::Bytes(bytes)),
            )
            .await;
        assert_eq!(s, status, "{name}: {v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains(needle),
            "{name}: expected {needle:?} in {v}"
        );
    }
    let (_, v) = api
        .call(Method::GET, "/v1/tenants/a/plugins", Some(&ka), None)
        .await;
    assert_eq!(v["plugins"], json!([]), "nothing was stored");
    // Duplicate names are new versions, not overwrites.
    for expected in 1..=2 {
        let (s, v) = api
            .call(
                Method::PUT,
                "/v1/tenants/a/plugins/tag",
                Some(&ka),
                Some(Body::Bytes(good.clone())),
            )
            .await;
        assert_eq!(
            (s, v["version"].as_i64()),
            (StatusCode::CREATED, Some(expected)),
            "{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_get_consistent_versions() {
    let (url, _) = fresh_store(StoreKind::Postgres).await;
    let gw = Wharf::start_configured(&url, &format!("operator_token = \"{OP}\""), &[]).await;
    let api = std::sync::Arc::new(Api::new(&gw));
    api.call(
        Method::POST,
        "/v1/tenants",
        Some(OP),
        Some(Body::Json(json!({"id": "a"}))),
    )
    .await;
    let bytes = example_plugin("add-header");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (api, bytes) = (api.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            let (s, v) = api
                .call(
                    Method::PUT,
                    "/v1/tenants/a/plugins/p",
                    Some(OP),
                    Some(Body::Bytes(bytes)),
                )
                .await;
            v["version"]
                .as_i64()
                .unwrap_or_else(|| panic!("upload failed: {s} {v}"))
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_quota_table_is_served_to_tenants_and_the_cli() {
    let (gw, api, a_key, _, _) = setup().await;
    let (s, v) = api
        .call(Method::GET, "/v1/quotas", Some(&a_key), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let row = v["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "plugin_log_lines_per_request")
        .cloned()
        .unwrap();
    assert_eq!(
        (
            row["default"].as_str(),
            row["min"].as_u64(),
            row["max"].as_u64()
        ),
        (Some("32"), Some(0), Some(1_000))
    );
    let (s, _) = api.call(Method::GET, "/v1/quotas", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The CLI reads the same table from the gateway, or from its own process on a node.
    let base = format!("http://{}", gw.admin);
    let (ok, out) = run_wharf(&["quotas", "--api", &base, "--token", &a_key], &[]);
    assert!(ok && out.contains("plugin_log_lines_per_request"), "{out}");
    let (ok, out) = run_wharf(&["quotas", "--store", &fresh_sqlite_url()], &[]);
    assert!(
        ok && out.contains("redis_max_connections") && out.contains("1-1000"),
        "{out}"
    );
}
