//! The admin API across a fleet and from the CLI: uploads on one node serving on another, rollback
//! and restart, the CLI as a tenant, and request-rate quotas set live.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use crate::support::api::{setup, Api, Body, OP};
use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use wharf_plugins::test_support::example_plugin;

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
        run_wharf(args, &[("WHARF_API", &api_url), ("WHARF_TOKEN", token)])
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
