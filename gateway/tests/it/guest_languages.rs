//! A plugin written in Python (componentize-py, `plugins/examples/cors`) through the gateway
//! over real HTTP, next to the C and JavaScript ones in `plugins.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use crate::support::*;
use wharf_plugins::test_support::example_plugin;
use wharf_tenancy::OnError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cors_plugin_answers_preflights_and_marks_responses() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    store.create_tenant("py", "Py", &["py.test"]).await.unwrap();
    relaxed(&store, "py").await;
    store
        .put_route("py", route("api", "/", &[&up.target()]))
        .await
        .unwrap();
    attach_plugin(
        &store,
        "py",
        "api",
        "cors",
        &example_plugin("cors"),
        &[("origin", "https://app.test"), ("max_age", "60")],
        OnError::FailClosed,
    )
    .await;
    // An 18 MB component takes a debug build ~45 s to compile: the compiled code is cached
    // across runs (it is keyed by content and engine), so only a machine's first run pays.
    let cache = std::env::var("WHARF_CACHE_DIR").map_or_else(
        |_| std::env::temp_dir().join("wharf-compiled-test"),
        |d| std::path::PathBuf::from(d).join("compiled-test"),
    );
    let gw = Wharf::start_configured(
        &url,
        &format!("compiled_cache = \"{}\"", cache.display()),
        &[],
    )
    .await;

    // The route serves once the plugin is compiled (the table swaps in with it).
    let preflight = [
        ("origin", "https://app.test"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-token"),
    ];
    let deadline = Instant::now() + Duration::from_secs(240);
    let answer = loop {
        let r = gw.request("OPTIONS", "py.test", "/items", &preflight).await;
        if r.status != 404 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(answer.status, 204, "{:?}", answer.json);
    let h = &answer.headers;
    assert_eq!(h["access-control-allow-origin"], "https://app.test");
    assert_eq!(h["access-control-allow-headers"], "x-token");
    assert_eq!(h["access-control-max-age"], "60");
    assert!(answer.json.is_null(), "the upstream was never called");

    let plain = gw.get("py.test", "/items?x=1").await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.json["path"], "/items", "the upstream answered");
    assert_eq!(
        plain.headers["access-control-allow-origin"], "https://app.test",
        "on-response (Python) marked the upstream's response"
    );
}
