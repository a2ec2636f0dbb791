//! Concurrent admin writes from the attacker's (or a busy CI's) side: parallel attaches, a route
//! PUT racing an attach, a delete racing an attach, rollbacks racing each other. Every write
//! that answers 2xx must be in the final state; none may leave a route bound to a deleted
//! plugin or routes on mixed versions. On SQLite and Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;

use crate::support::api::{Api, Body, OP};
use crate::support::{fresh_store, StoreKind, Upstream, Wharf};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wharf_plugins::test_support::{noop, wat_plugin};

async fn tenant_with_route(kind: StoreKind) -> (Wharf, Arc<Api>, Upstream) {
    let (url, _) = fresh_store(kind).await;
    let gw = Wharf::start_configured(&url, &format!("operator_token = \"{OP}\""), &[]).await;
    let api = Arc::new(Api::new(&gw));
    let up = Upstream::start("u").await;
    ok(api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(OP),
            Some(Body::Json(json!({"id": "a", "hostnames": ["a.test"]}))),
        )
        .await);
    for r in ["r", "s"] {
        ok(put_route(&api, r, &format!("/{r}"), &up).await);
    }
    (gw, api, up)
}

fn ok((s, v): (StatusCode, Value)) -> Value {
    assert!(s.is_success(), "{s} {v}");
    v
}

async fn put_route(api: &Api, id: &str, prefix: &str, up: &Upstream) -> (StatusCode, Value) {
    api.call(
        Method::PUT,
        &format!("/v1/tenants/a/routes/{id}"),
        Some(OP),
        Some(Body::Json(
            json!({"path_prefix": prefix, "upstreams": [{"addr": up.target(), "weight": 1}]}),
        )),
    )
    .await
}

async fn upload(api: &Api, name: &str, bytes: &[u8]) -> i64 {
    let v = ok(api
        .call(
            Method::PUT,
            &format!("/v1/tenants/a/plugins/{name}"),
            Some(OP),
            Some(Body::Bytes(bytes.to_vec())),
        )
        .await);
    v["version"].as_i64().expect("version")
}

async fn attach(api: &Api, route: &str, plugin: &str, version: Option<i64>) -> (StatusCode, Value) {
    api.call(
        Method::PUT,
        &format!("/v1/tenants/a/routes/{route}/plugins/{plugin}"),
        Some(OP),
        Some(Body::Json(json!({"version": version}))),
    )
    .await
}

async fn chain(api: &Api, route: &str) -> Vec<(String, i64)> {
    let v = ok(api
        .call(
            Method::GET,
            &format!("/v1/tenants/a/routes/{route}"),
            Some(OP),
            None,
        )
        .await);
    v["plugins"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["plugin"].as_str().unwrap_or("").to_string(),
                        p["version"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Plugins attached to one route at once, each by its own API call: the longest chain allowed.
const ATTACHES: usize = 16;

async fn parallel_attaches_are_all_kept(kind: StoreKind) {
    let (_gw, api, _up) = tenant_with_route(kind).await;
    let bytes = noop();
    for i in 0..ATTACHES {
        upload(&api, &format!("p{i}"), &bytes).await;
    }
    for round in 0..3 {
        let tasks: Vec<_> = (0..ATTACHES)
            .map(|i| {
                let api = api.clone();
                tokio::spawn(async move { ok(attach(&api, "r", &format!("p{i}"), None).await) })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let mut names: Vec<String> = chain(&api, "r").await.into_iter().map(|(n, _)| n).collect();
        names.sort();
        assert_eq!(
            names.len(),
            ATTACHES,
            "round {round}: attachments lost: {names:?}"
        );
        for i in 0..ATTACHES {
            ok(api
                .call(
                    Method::DELETE,
                    &format!("/v1/tenants/a/routes/r/plugins/p{i}"),
                    Some(OP),
                    None,
                )
                .await);
        }
    }
}

async fn a_route_put_racing_an_attach_keeps_both(kind: StoreKind) {
    let (_gw, api, up) = tenant_with_route(kind).await;
    upload(&api, "p", &noop()).await;
    for i in 0..6 {
        let prefix = format!("/r{i}");
        let (a, p) = tokio::join!(
            attach(&api, "r", "p", None),
            put_route(&api, "r", &prefix, &up)
        );
        ok(a);
        ok(p);
        let v = ok(api
            .call(Method::GET, "/v1/tenants/a/routes/r", Some(OP), None)
            .await);
        assert_eq!(v["path_prefix"], json!(prefix), "the PUT applied");
        assert_eq!(
            chain(&api, "r").await.len(),
            1,
            "round {i}: the attach survived the PUT: {v}"
        );
        ok(api
            .call(
                Method::DELETE,
                "/v1/tenants/a/routes/r/plugins/p",
                Some(OP),
                None,
            )
            .await);
    }
}

async fn a_delete_racing_an_attach_never_leaves_a_dangling_plugin(kind: StoreKind) {
    let (_gw, api, _up) = tenant_with_route(kind).await;
    let bytes = noop();
    for i in 0..6 {
        let name = format!("d{i}");
        let path = format!("/v1/tenants/a/plugins/{name}");
        upload(&api, &name, &bytes).await;
        let (a, d) = tokio::join!(
            attach(&api, "r", &name, None),
            api.call(Method::DELETE, &path, Some(OP), None)
        );
        let attached = chain(&api, "r").await.iter().any(|(n, _)| *n == name);
        let (s, _) = api
            .call(
                Method::GET,
                &format!("/v1/tenants/a/plugins/{name}"),
                Some(OP),
                None,
            )
            .await;
        let exists = s.is_success();
        assert!(
            !attached || exists,
            "round {i}: route bound to a deleted plugin (attach {:?}, delete {:?})",
            a.0,
            d.0
        );
        assert_eq!(
            a.0.is_success(),
            attached,
            "attach answered {:?} but attached={attached}",
            a.0
        );
        assert_eq!(
            d.0.is_success(),
            !exists,
            "delete answered {:?} but exists={exists}",
            d.0
        );
        if attached {
            ok(api
                .call(
                    Method::DELETE,
                    &format!("/v1/tenants/a/routes/r/plugins/{name}"),
                    Some(OP),
                    None,
                )
                .await);
        }
    }
}

async fn racing_rollbacks_leave_one_version_everywhere(kind: StoreKind) {
    let (_gw, api, _up) = tenant_with_route(kind).await;
    for i in 0..3 {
        let distinct = wat_plugin(&format!("(drop (i32.const {i}))"), "", 1);
        upload(&api, "v", &distinct).await;
    }
    for route in ["r", "s"] {
        ok(attach(&api, route, "v", Some(3)).await);
    }
    for round in 0..5 {
        let rollback = |version: i64| {
            let api = api.clone();
            async move {
                api.call(
                    Method::POST,
                    "/v1/tenants/a/plugins/v/rollback",
                    Some(OP),
                    Some(Body::Json(json!({"version": version}))),
                )
                .await
            }
        };
        let (x, y) = tokio::join!(rollback(1), rollback(2));
        ok(x);
        ok(y);
        let versions = [chain(&api, "r").await[0].1, chain(&api, "s").await[0].1];
        assert_eq!(
            versions[0], versions[1],
            "round {round}: routes on mixed versions {versions:?}"
        );
    }
}

/// Operators patching different quotas of one tenant at once: every patch lands.
async fn parallel_quota_patches_all_land(kind: StoreKind) {
    let (_gw, api, _up) = tenant_with_route(kind).await;
    let patches: Vec<(&str, u64)> = vec![
        ("plugin_fuel", 123_456),
        ("plugin_deadline_ms", 77),
        ("plugin_memory_bytes", 8 << 20),
        ("plugin_max_instances", 9),
        ("redis_max_connections", 3),
        ("redis_commands_per_second", 42),
        ("sql_max_connections", 2),
        ("sql_queries_per_second", 41),
        ("sql_max_rows", 99),
        ("pool_wait_ms", 55),
        ("requests_per_second", 1234),
        ("burst", 77),
    ];
    let tasks: Vec<_> = patches
        .iter()
        .map(|&(name, value)| {
            let api = api.clone();
            tokio::spawn(async move {
                ok(api
                    .call(
                        Method::PATCH,
                        "/v1/tenants/a/quotas",
                        Some(OP),
                        Some(Body::Json(json!({ name: value }))),
                    )
                    .await)
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let tenant = ok(api.call(Method::GET, "/v1/tenants/a", Some(OP), None).await);
    for (name, value) in patches {
        assert_eq!(tenant["quotas"][name], value, "{name}'s patch was lost");
    }
}

on_both_stores!(
    parallel_quota_patches_all_land,
    parallel_attaches_are_all_kept,
    a_route_put_racing_an_attach_keeps_both,
    a_delete_racing_an_attach_never_leaves_a_dangling_plugin,
    racing_rollbacks_leave_one_version_everywhere,
);
