//! Tenants' plugins through the gateway over real HTTP: real components built from C and
//! JavaScript sources, hostile WAT components, chains and quotas.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::Duration;

use crate::support::*;
use wharf_plugins::test_support::{
    deep_recursion, example_plugin, huge_headers, infinite_loop, memory_hog, trap,
};
use wharf_tenancy::{OnError, Quotas, Store};

on_both_stores!(chain_of_c_and_js_plugins);

async fn chain_of_c_and_js_plugins(kind: StoreKind) {
    let (url, store) = fresh_store(kind).await;
    let up = Upstream::start("up").await;
    store
        .create_tenant("acme", "Acme", &["acme.test"])
        .await
        .unwrap();
    store
        .put_route("acme", route("api", "/", &[&up.target()]))
        .await
        .unwrap();
    let fc = OnError::FailClosed;
    attach_plugin(
        &store,
        "acme",
        "api",
        "auth",
        &example_plugin("api-key-auth"),
        &[("keys", "k1,k2")],
        fc,
    )
    .await;
    attach_plugin(
        &store,
        "acme",
        "api",
        "tag",
        &example_plugin("add-header"),
        &[
            ("request-header", "x-tenant"),
            ("request-value", "acme"),
            ("response-header", "x-order"),
            ("response-value", "first"),
            ("debug-state", "1"),
        ],
        fc,
    )
    .await;
    attach_plugin(
        &store,
        "acme",
        "api",
        "rewrite",
        &example_plugin("path-rewrite"),
        &[("from", "/v1"), ("to", "/api")],
        fc,
    )
    .await;
    // Same bytes under another name: shares the compiled component; runs after `rewrite`.
    attach_plugin(
        &store,
        "acme",
        "api",
        "tag2",
        &example_plugin("add-header"),
        &[
            ("request-header", "x-second"),
            ("request-value", "yes"),
            ("response-header", "x-order"),
            ("response-value", "second"),
        ],
        fc,
    )
    .await;
    let gw = Wharf::start(&url).await;

    // Short-circuit: no key → the plugin answers, the upstream is never called.
    let denied = gw.get("acme.test", "/v1/users").await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.json["error"], "unauthorized");
    assert!(denied.json.get("upstream").is_none());

    let ok = gw
        .request("GET", "acme.test", "/v1/users?id=7", &[("x-api-key", "k2")])
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.json);
    assert_eq!(
        ok.json["path"], "/api/users",
        "path-rewrite (JS) rewrote the upstream path"
    );
    assert_eq!(ok.json["query"], "id=7");
    let h = &ok.json["headers"];
    assert_eq!(h["x-tenant"], "acme", "add-header (C) used its config");
    assert_eq!(h["x-second"], "yes");
    assert_eq!(h["x-original-path"], "/v1/users?id=7");
    assert!(
        h.get("x-api-key").is_none(),
        "the key never reaches the upstream"
    );
    // Chain order: `tag` ran before `rewrite`, so it saw the original path; its on-response
    // ran after `tag2`'s (reverse order), so its x-order value is the one left.
    assert_eq!(ok.headers["x-wharf-state"], "path=/v1/users?id=7;calls=1");
    assert_eq!(ok.headers["x-order"], "first");
    // Nothing survives to the next request: calls is 1 again.
    let again = gw
        .request("GET", "acme.test", "/v1/x", &[("x-api-key", "k1")])
        .await;
    assert_eq!(again.headers["x-wharf-state"], "path=/v1/x;calls=1");

    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "wharf_compiled_cache_misses_total"),
        3.0,
        "4 attachments, 3 distinct components"
    );
    assert!(
        metric_value(
            &m,
            r#"wharf_plugin_invocations_total{outcome="ok",phase="on_request",plugin="auth",tenant="acme"}"#
        ) >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_only_their_own_requests() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    store
        .create_tenant("evil", "Evil", &["evil.test"])
        .await
        .unwrap();
    store
        .set_quotas(
            "evil",
            &Quotas {
                plugin: wharf_tenancy::PluginQuotas {
                    fuel: 100_000_000_000,
                    deadline_ms: 100,
                    ..Default::default()
                },
                ..Quotas::default()
            },
        )
        .await
        .unwrap();
    store
        .create_tenant("stingy", "Stingy", &["stingy.test"])
        .await
        .unwrap();
    store
        .set_quotas(
            "stingy",
            &Quotas {
                plugin: wharf_tenancy::PluginQuotas {
                    fuel: 10_000,
                    ..Default::default()
                },
                ..Quotas::default()
            },
        )
        .await
        .unwrap();
    store
        .create_tenant("good", "Good", &["good.test"])
        .await
        .unwrap();
    store
        .put_route("good", route("api", "/", &[&up.target()]))
        .await
        .unwrap();
    attach_plugin(
        &store,
        "good",
        "api",
        "tag",
        &example_plugin("add-header"),
        &[],
        OnError::FailClosed,
    )
    .await;

    let hostile = [
        ("loop", infinite_loop(), "plugin_timeout", 504),
        ("hog", memory_hog(), "plugin_memory_limit", 502),
        ("rec", deep_recursion(), "plugin_trap", 502),
        ("trap", trap(), "plugin_trap", 502),
        ("headers", huge_headers(), "plugin_invalid_output", 502),
    ];
    for (name, wat, _, _) in &hostile {
        store
            .put_route("evil", route(name, &format!("/{name}"), &[&up.target()]))
            .await
            .unwrap();
        attach_plugin(
            &store,
            "evil",
            name,
            name,
            wat.as_slice(),
            &[],
            OnError::FailClosed,
        )
        .await;
    }
    store
        .put_route("evil", route("open", "/open", &[&up.target()]))
        .await
        .unwrap();
    attach_plugin(
        &store,
        "evil",
        "open",
        "loop",
        &infinite_loop(),
        &[],
        OnError::FailOpen,
    )
    .await;
    store
        .put_route("stingy", route("api", "/", &[&up.target()]))
        .await
        .unwrap();
    attach_plugin(
        &store,
        "stingy",
        "api",
        "loop",
        &infinite_loop(),
        &[],
        OnError::FailClosed,
    )
    .await;
    let gw = std::sync::Arc::new(Wharf::start(&url).await);

    // The good tenant keeps getting answers while the hostile plugins run, concurrently.
    let good = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            for _ in 0..40 {
                let t = std::time::Instant::now();
                let r = gw.get("good.test", "/").await;
                assert_eq!(r.status, 200, "good tenant failed: {:?}", r.json);
                assert_eq!(r.headers["x-wharf-served-by"], "wharf");
                worst = worst.max(t.elapsed());
            }
            worst
        })
    };
    for round in 0..3 {
        let mut attacks = Vec::new();
        for (name, _, code, status) in &hostile {
            let gw = gw.clone();
            let (name, code, status) = (name.to_string(), *code, *status);
            attacks.push(tokio::spawn(async move {
                let r = gw.get("evil.test", &format!("/{name}")).await;
                assert_eq!(
                    (r.status, r.json["error"].as_str()),
                    (status, Some(code)),
                    "{name} round {round}: {:?}",
                    r.json
                );
                assert_eq!(r.json["plugin"], name.as_str());
            }));
        }
        for a in attacks {
            a.await.unwrap();
        }
    }
    let open = gw.get("evil.test", "/open").await;
    assert_eq!(
        (open.status, open.json["upstream"].as_str()),
        (200, Some("up")),
        "fail-open skips the plugin"
    );
    let stingy = gw.get("stingy.test", "/").await;
    assert_eq!(stingy.json["error"], "plugin_fuel_exhausted");
    let worst = good.await.unwrap();
    println!("good tenant's slowest request during the attacks: {worst:?}");

    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "wharf_plugin_instances_in_use"),
        0.0,
        "every instance released"
    );
    assert!(
        metric_value(
            &m,
            r#"wharf_plugin_invocations_total{outcome="timeout",phase="on_request",plugin="loop",tenant="evil"}"#
        ) >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_uploads_validate_and_rollback_applies_live() {
    let url = fresh_sqlite_url();
    let up = Upstream::start("up").await;
    let dir = std::env::temp_dir().join(format!("wharf-cli-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let data_dir = dir.to_str().unwrap().to_string();
    let wharf = |args: &[&str]| {
        run_wharf(
            &[args, &["--store", &url, "--data-dir", &data_dir]].concat(),
            &[],
        )
    };
    assert!(wharf(&["tenant", "add", "acme", "--host", "acme.test"]).0);
    assert!(
        wharf(&[
            "route",
            "add",
            "--tenant",
            "acme",
            "api",
            "--upstream",
            &up.target()
        ])
        .0
    );
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let garbage = file("garbage.wasm", b"\0asm garbage");
    let (ok, out) = wharf(&[
        "plugin", "add", "--tenant", "acme", "--name", "tag", "--file", &garbage,
    ]);
    assert!(!ok && out.contains("not a WebAssembly component"), "{out}");
    let (_, out) = wharf(&["plugin", "list", "--tenant", "acme"]);
    assert!(!out.contains("tag"), "nothing stored: {out}");

    let v1 = file("v1.wasm", &example_plugin("add-header"));
    let (ok, out) = wharf(&[
        "plugin", "add", "--tenant", "acme", "--name", "tag", "--file", &v1,
    ]);
    assert!(ok && out.contains("v1"), "{out}");
    let (ok, out) = wharf(&[
        "route",
        "attach",
        "--tenant",
        "acme",
        "api",
        "--plugin",
        "tag",
        "--set",
        "request-value=one",
    ]);
    assert!(ok, "{out}");
    let gw = Wharf::start(&url).await;
    assert_eq!(
        gw.get("acme.test", "/").await.json["headers"]["x-wharf-plugin"],
        "one"
    );

    // v2 is the path-rewrite plugin under the same name; then roll back to v1.
    let v2 = file("v2.wasm", &example_plugin("path-rewrite"));
    assert!(wharf(&["plugin", "add", "--tenant", "acme", "--name", "tag", "--file", &v2]).0);
    assert!(
        wharf(&[
            "route", "attach", "--tenant", "acme", "api", "--plugin", "tag", "--set", "from=/a",
            "--set", "to=/b"
        ])
        .0
    );
    let version = Store::connect(&url)
        .await
        .unwrap()
        .version()
        .await
        .unwrap()
        .0;
    gw.wait_for_version(version).await;
    assert_eq!(gw.get("acme.test", "/a/x").await.json["path"], "/b/x");
    let (ok, out) = wharf(&[
        "route",
        "attach",
        "--tenant",
        "acme",
        "api",
        "--plugin",
        "tag",
        "--version",
        "1",
        "--set",
        "request-value=back",
    ]);
    assert!(ok, "{out}");
    let version = Store::connect(&url)
        .await
        .unwrap()
        .version()
        .await
        .unwrap()
        .0;
    gw.wait_for_version(version).await;
    let r = gw.get("acme.test", "/a/x").await;
    assert_eq!(
        (
            r.json["path"].as_str(),
            r.json["headers"]["x-wharf-plugin"].as_str()
        ),
        (Some("/a/x"), Some("back"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
