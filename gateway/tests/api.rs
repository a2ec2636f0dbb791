//! The admin API over real HTTP: who may do what (an authorization matrix), uploads that must be
//! refused, concurrent uploads, fleet propagation of uploads, rollback and restarts.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use support::*;
use wharf_plugins::test_support::{example_plugin, wasi_importer};

const OP: &str = "op-secret-token";

struct Api {
    base: String,
    client: Client,
}

impl Api {
    fn new(gw: &Wharf) -> Api {
        Api {
            base: format!("http://{}", gw.admin),
            client: Client::new(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Body>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Bytes(b)) => req.body(b),
            None => req,
        };
        let resp = req.send().await.expect("api call");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

#[derive(Clone)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

async fn setup() -> (Wharf, Api, String, String, String) {
    let (url, _) = fresh_store(StoreKind::Sqlite).await;
    let gw = Wharf::start_configured(&url, &format!("operator_token = \"{OP}\""), &[]).await;
    let api = Api::new(&gw);
    for (t, host) in [("a", "a.test"), ("b", "b.test")] {
        let (s, v) = api
            .call(
                Method::POST,
                "/v1/tenants",
                Some(OP),
                Some(Body::Json(json!({"id": t, "hostnames": [host]}))),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let key = |t: &str| {
        let api = &api;
        let t = t.to_string();
        async move {
            let (s, v) = api
                .call(
                    Method::POST,
                    &format!("/v1/tenants/{t}/api-keys"),
                    Some(OP),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            v["key"].as_str().unwrap().to_string()
        }
    };
    let (ka, kb) = (key("a").await, key("b").await);
    // A revoked key of tenant a.
    let (_, v) = api
        .call(Method::POST, "/v1/tenants/a/api-keys", Some(OP), None)
        .await;
    let revoked = v["key"].as_str().unwrap().to_string();
    let (s, _) = api
        .call(
            Method::DELETE,
            &format!("/v1/tenants/a/api-keys/{}", v["id"].as_str().unwrap()),
            Some(OP),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    (gw, api, ka, kb, revoked)
}

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
            wasi_importer().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wasi:filesystem",
        ),
        (
            "tag",
            b"(component)".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "on-request",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_on_one_node_serves_on_another_and_survives_restart() {
    let (url, _) = fresh_store(StoreKind::Postgres).await;
    let toml = format!("operator_token = \"{OP}\"");
    let (n1, mut n2) = tokio::join!(
        Wharf::start_configured(&url, &toml, &[]),
        Wharf::start_configured(&url, &toml, &[])
    );
    let api = Api::new(&n1);
    let up = Upstream::start("up").await;
    api.call(
        Method::POST,
        "/v1/tenants",
        Some(OP),
        Some(Body::Json(json!({"id": "a", "hostnames": ["a.test"]}))),
    )
    .await;
    let route = json!({"path_prefix": "/", "upstreams": [{"addr": up.target()}]});
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/tenants/a/routes/api",
            Some(OP),
            Some(Body::Json(route)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/tenants/a/plugins/tag",
            Some(OP),
            Some(Body::Bytes(example_plugin("add-header"))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/tenants/a/plugins/tag",
            Some(OP),
            Some(Body::Bytes(example_plugin("path-rewrite"))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let started = Instant::now();
    let (_, v) = api
        .call(
            Method::PUT,
            "/v1/tenants/a/routes/api/plugins/tag",
            Some(OP),
            Some(Body::Json(
                json!({"version": 1, "config": {"request-value": "v1"}}),
            )),
        )
        .await;
    let version = v["config_version"].as_i64().unwrap();
    n2.wait_for_version(version).await;
    let delay = started.elapsed();
    assert!(
        delay < Duration::from_secs(1),
        "node 2 applied the upload in {delay:?}"
    );
    assert_eq!(
        n2.get("a.test", "/x").await.json["headers"]["x-wharf-plugin"],
        "v1"
    );

    // Roll forward to v2 (path-rewrite) and back to v1, live on node 2.
    let (_, v) = api
        .call(
            Method::POST,
            "/v1/tenants/a/plugins/tag/rollback",
            Some(OP),
            Some(Body::Json(json!({"version": 2}))),
        )
        .await;
    n2.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    assert_eq!(n2.get("a.test", "/old/x").await.json["path"], "/new/x");
    let (_, v) = api
        .call(
            Method::POST,
            "/v1/tenants/a/plugins/tag/rollback",
            Some(OP),
            Some(Body::Json(json!({"version": 1}))),
        )
        .await;
    n2.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    assert_eq!(n2.get("a.test", "/old/x").await.json["path"], "/old/x");

    n2.restart().await;
    assert_eq!(
        n2.get("a.test", "/x").await.json["headers"]["x-wharf-plugin"],
        "v1",
        "restart loses nothing"
    );
    let (_, v) = Api::new(&n2)
        .call(Method::GET, "/v1/tenants/a/plugins/tag", Some(OP), None)
        .await;
    assert_eq!(v["versions"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_talks_to_the_api_as_a_tenant() {
    let (gw, _api, ka, _kb, _) = setup().await;
    let up = Upstream::start("up").await;
    let dir = std::env::temp_dir().join(format!("wharf-cli-api-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let api_url = format!("http://{}", gw.admin);
    let wharf = |token: &str, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .env("WHARF_API", &api_url)
            .env("WHARF_TOKEN", token)
            .output()
            .expect("run wharf");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let v1 = dir.join("v1.wasm");
    std::fs::write(&v1, example_plugin("add-header")).unwrap();
    let v2 = dir.join("v2.wasm");
    std::fs::write(&v2, example_plugin("path-rewrite")).unwrap();
    let junk = dir.join("junk.wasm");
    std::fs::write(&junk, b"junk").unwrap();

    let (ok, out) = wharf(
        &ka,
        &[
            "route",
            "add",
            "--tenant",
            "a",
            "api",
            "--upstream",
            &up.target(),
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = wharf(
        &ka,
        &[
            "plugin",
            "push",
            "--tenant",
            "a",
            "--name",
            "tag",
            "--file",
            v1.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("v1"), "{out}");
    let (ok, out) = wharf(
        &ka,
        &[
            "plugin",
            "push",
            "--tenant",
            "a",
            "--name",
            "tag",
            "--file",
            junk.to_str().unwrap(),
        ],
    );
    assert!(
        !ok && out.contains("not a WebAssembly component"),
        "the API's reason reaches the user: {out}"
    );
    let (ok, out) = wharf(
        &ka,
        &[
            "plugin",
            "push",
            "--tenant",
            "a",
            "--name",
            "tag",
            "--file",
            v2.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("v2"), "{out}");
    let (ok, out) = wharf(
        &ka,
        &[
            "route",
            "attach",
            "--tenant",
            "a",
            "api",
            "--plugin",
            "tag",
            "--version",
            "1",
            "--set",
            "request-value=cli",
        ],
    );
    assert!(ok, "{out}");
    let (_, out) = wharf(
        &ka,
        &["plugin", "versions", "--tenant", "a", "--name", "tag"],
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("tag")).count(),
        2,
        "{out}"
    );
    let (_, out) = wharf(&ka, &["route", "list", "--tenant", "a"]);
    assert!(out.contains("plugin tag v1"), "{out}");
    let (ok, out) = wharf(
        &ka,
        &[
            "plugin",
            "rollback",
            "--tenant",
            "a",
            "--name",
            "tag",
            "--version",
            "2",
        ],
    );
    assert!(ok && out.contains("api"), "{out}");
    let (ok, out) = wharf(&ka, &["route", "list", "--tenant", "b"]);
    assert!(
        !ok && out.contains("404"),
        "a tenant cannot see another's routes: {out}"
    );
    let (ok, out) = wharf("wharf_wrong", &["route", "list", "--tenant", "a"]);
    assert!(!ok && out.contains("401"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rate_quota_is_set_live_and_per_tenant() {
    let (gw, api, _, _, _) = setup().await;
    let up = Upstream::start("up").await;
    for t in ["a", "b"] {
        let route = json!({"path_prefix": "/", "upstreams": [{"addr": up.target()}]});
        api.call(
            Method::PUT,
            &format!("/v1/tenants/{t}/routes/api"),
            Some(OP),
            Some(Body::Json(route)),
        )
        .await;
    }
    let (s, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/a/quotas",
            Some(OP),
            Some(Body::Json(json!({"requests_per_second": 5, "burst": 5}))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..20 {
        let r = gw.get("a.test", "/").await;
        match r.status {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert_eq!(r.json["error"], "rate_limited");
                assert!(
                    r.headers["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                        >= 1
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        (5..=7).contains(&ok) && ok + limited == 20,
        "burst 5 at 5/s: {ok} ok, {limited} limited"
    );
    // Another tenant is not limited by a's quota.
    for _ in 0..20 {
        assert_eq!(gw.get("b.test", "/").await.status, 200);
    }
    // Raised live.
    let (_, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/a/quotas",
            Some(OP),
            Some(Body::Json(
                json!({"requests_per_second": 1000, "burst": 1000}),
            )),
        )
        .await;
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    for _ in 0..20 {
        assert_eq!(gw.get("a.test", "/").await.status, 200);
    }
    let (s, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/a/quotas",
            Some(OP),
            Some(Body::Json(json!({"no_such_quota": 1}))),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}
