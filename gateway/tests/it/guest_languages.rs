//! Plugins written in Python (componentize-py, `plugins/examples/cors`) and Rust (Debian's rustc
//! 1.63 without cargo, `plugins/examples/rust-add-header`) through the gateway over real HTTP,
//! next to the C and JavaScript ones in `plugins.rs`.
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
    // Attached once the node serves, as a tenant's upload is: a node compiles what its disk cache
    // lacks before its first table serves, and this compile (~45 s in a debug build) would be
    // longer than a node's start may take.
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

    // The plugin serves once it is compiled (the table swaps in with it); before, the node may
    // know no route yet (404), or the route without its plugin (the upstream's 200).
    let preflight = [
        ("origin", "https://app.test"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-token"),
    ];
    let deadline = Instant::now() + Duration::from_secs(240);
    let answer = loop {
        let r = gw.request("OPTIONS", "py.test", "/items", &preflight).await;
        if r.status == 204 || Instant::now() > deadline {
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

/// The Rust twin of add-header: built by scripts/build-plugins with Debian's rustc 1.63 for
/// wasm32-unknown-unknown, wit-bindgen 0.36 bindings and `wasm-tools component new`. The gateway
/// compiles it with the checks of an upload (the world's imports only, no WASI) before the route
/// serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_plugin_edits_request_and_response_headers() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    store.create_tenant("rs", "Rs", &["rs.test"]).await.unwrap();
    relaxed(&store, "rs").await;
    store
        .put_route("rs", route("api", "/", &[&up.target()]))
        .await
        .unwrap();
    let wasm = example_plugin("rust-add-header");
    attach_plugin(
        &store,
        "rs",
        "api",
        "tag",
        &wasm,
        &[
            ("request-header", "x-tenant"),
            ("request-value", "rs"),
            ("response-header", "x-lang"),
            ("response-value", "rust"),
            ("debug-state", "1"),
        ],
        OnError::FailClosed,
    )
    .await;
    // Defaults when the attachment gives no config.
    store
        .put_route("rs", route("plain", "/plain", &[&up.target()]))
        .await
        .unwrap();
    attach_plugin(
        &store,
        "rs",
        "plain",
        "tag",
        &wasm,
        &[],
        OnError::FailClosed,
    )
    .await;
    let gw = Wharf::start(&url).await;

    let ok = gw.get("rs.test", "/items?id=7").await;
    assert_eq!(ok.status, 200, "{:?}", ok.json);
    assert_eq!(ok.json["path"], "/items", "the upstream answered");
    assert_eq!(
        ok.json["headers"]["x-tenant"], "rs",
        "on-request (Rust) set the request header from its config"
    );
    assert_eq!(ok.headers["x-lang"], "rust", "on-response (Rust)");
    // State kept from on-request to on-response of one request, none across requests.
    assert_eq!(ok.headers["x-wharf-state"], "path=/items?id=7;calls=1");
    let again = gw.get("rs.test", "/other").await;
    assert_eq!(again.headers["x-wharf-state"], "path=/other;calls=1");

    let plain = gw.get("rs.test", "/plain/x").await;
    assert_eq!(plain.status, 200, "{:?}", plain.json);
    assert_eq!(plain.json["headers"]["x-wharf-plugin"], "rust-add-header");
    assert_eq!(plain.headers["x-wharf-served-by"], "wharf");
    assert!(plain.headers.get("x-wharf-state").is_none());
}
