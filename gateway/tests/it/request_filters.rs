//! A `request-filter` plugin (the api-key-auth example) pays only for its request phase: it is
//! called once, its instance is gone before the upstream is called (none held while a slow
//! upstream answers), and it never gets an `on-response` call; a classic plugin on the same kind
//! of route holds its instance across the upstream.

use std::time::Duration;

use wharf_plugins::test_support::example_plugin;
use wharf_tenancy::OnError;

use crate::support::*;

async fn instances_while_upstream_is_slow(plugin: &str, config: &[(&str, &str)]) -> (f64, String) {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    tenant_with_route(
        &store,
        "f",
        &["filters.test"],
        route("r", "/", &[&up.target()]),
    )
    .await;
    relaxed(&store, "f").await;
    attach_plugin(
        &store,
        "f",
        "r",
        plugin,
        &example_plugin(plugin),
        config,
        OnError::FailClosed,
    )
    .await;
    let gw = Wharf::start(&url).await;
    let headers = [("x-api-key", "k1")];
    let r = gw.request("GET", "filters.test", "/warm", &headers).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let slow = gw.request("GET", "filters.test", "/slow?sleep_ms=1500", &headers);
    let watch = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let m = gw.metrics().await;
        (metric_value(&m, "wharf_plugin_instances_in_use"), m)
    };
    let (reply, (in_use, _)) = tokio::join!(slow, watch);
    assert_eq!(reply.status, 200, "{}", reply.json);
    if plugin == "api-key-auth" {
        let key = reply.json["headers"].get("x-api-key");
        assert_eq!(key, None, "{}", reply.json);
    }
    (in_use, gw.metrics().await)
}

#[tokio::test]
async fn a_request_filter_ends_before_the_upstream_and_gets_no_response_call() {
    let (in_use, metrics) =
        instances_while_upstream_is_slow("api-key-auth", &[("keys", "k1,k2")]).await;
    assert_eq!(
        in_use, 0.0,
        "a filter's instance was held across the upstream"
    );
    let phases: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("wharf_plugin_invocations_total"))
        .collect();
    assert!(
        phases.iter().all(|l| !l.contains("on_response")),
        "{phases:?}"
    );
    assert!(
        phases
            .iter()
            .any(|l| l.contains("on_request") && l.ends_with(" 2")),
        "{phases:?}"
    );

    let (in_use, _) = instances_while_upstream_is_slow(
        "add-header",
        &[("request-header", "x-a"), ("request-value", "1")],
    )
    .await;
    assert_eq!(
        in_use, 1.0,
        "a classic plugin keeps its instance for on-response"
    );
}

/// A filter that declares its response edits in its request phase (`header-filter`, add-header's
/// work as a `request-filter`) edits the response without being called again or held across the
/// upstream; in a chain its edits apply in the reverse order, as its `on-response` would; an edit
/// the gateway refuses is answered to the plugin, which answers the client, naming the field.
#[tokio::test]
async fn a_filters_declared_response_edits_apply_without_a_response_call() {
    let (in_use, metrics) = instances_while_upstream_is_slow(
        "header-filter",
        &[
            ("response-header", "x-served"),
            ("response-value", "filter"),
        ],
    )
    .await;
    assert_eq!(
        in_use, 0.0,
        "a filter's instance was held across the upstream"
    );
    let calls: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("wharf_plugin_invocations_total"))
        .collect();
    assert!(
        calls.iter().all(|l| !l.contains("on_response")),
        "{calls:?}"
    );

    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    tenant_with_route(
        &store,
        "f",
        &["declared.test"],
        route("r", "/", &[&up.target()]),
    )
    .await;
    relaxed(&store, "f").await;
    let filter = example_plugin("header-filter");
    let config = [
        ("request-header", "x-from-filter"),
        ("request-value", "1"),
        ("response-header", "x-served"),
        ("response-value", "filter"),
    ];
    attach_plugin(
        &store,
        "f",
        "r",
        "header-filter",
        &filter,
        &config,
        OnError::FailClosed,
    )
    .await;
    let classic = [
        ("response-header", "x-served"),
        ("response-value", "classic"),
    ];
    let add_header = example_plugin("add-header");
    attach_plugin(
        &store,
        "f",
        "r",
        "add-header",
        &add_header,
        &classic,
        OnError::FailClosed,
    )
    .await;
    // The refused edit: a response header name with a space in it.
    tenant_with_route(
        &store,
        "g",
        &["refused.test"],
        route("r", "/", &[&up.target()]),
    )
    .await;
    relaxed(&store, "g").await;
    let bad = [("response-header", "x bad")];
    attach_plugin(
        &store,
        "g",
        "r",
        "header-filter",
        &filter,
        &bad,
        OnError::FailClosed,
    )
    .await;
    let gw = Wharf::start(&url).await;

    let r = gw.get("declared.test", "/chain").await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["headers"]["x-from-filter"], "1", "{}", r.json);
    // add-header's on-response ran first (last plugin first), then the filter's declared edit.
    let served: Vec<_> = r.headers.get_all("x-served").iter().collect();
    assert_eq!(served, ["filter"], "{:?}", r.headers);

    let r = gw.get("refused.test", "/").await;
    assert_eq!(r.status, 500, "{}", r.json);
    assert_eq!(r.json["error"], "response_edit_refused", "{}", r.json);
    let reason = r.json["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("x bad"), "{}", r.json);
}
