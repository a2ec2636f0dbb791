//! Response bodies rewritten by a plugin (the response-mask example, `response-body-plugin`):
//! the client gets the rewritten body whole, with its own framing; a body over the tenant's
//! `plugin_body_max_bytes` passes unchanged; a route without such a plugin keeps the upstream's
//! length.

use wharf_plugins::test_support::example_plugin;
use wharf_tenancy::OnError;

use crate::support::*;

const CARD: &str = "4111111111111111";

#[tokio::test]
async fn a_plugin_rewrites_whole_response_bodies_up_to_the_cap() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    tenant_with_route(
        &store,
        "m",
        &["mask.test"],
        route("masked", "/masked", &[&up.target()]),
    )
    .await;
    store
        .put_route("m", route("plain", "/plain", &[&up.target()]))
        .await
        .unwrap();
    relaxed(&store, "m").await;
    store
        .patch_quotas("m", &serde_json::json!({"plugin_body_max_bytes": 2048}))
        .await
        .unwrap();
    attach_plugin(
        &store,
        "m",
        "masked",
        "response-mask",
        &example_plugin("response-mask"),
        &[],
        OnError::FailClosed,
    )
    .await;
    let gw = Wharf::start(&url).await;

    // The echo upstream answers with the request's headers: the card number is in its body.
    let r = gw
        .request("GET", "mask.test", "/masked/x", &[("x-card", CARD)])
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        r.json["headers"]["x-card"], "[card ending 1111]",
        "{}",
        r.json
    );
    assert!(!r.json.to_string().contains(CARD), "{}", r.json);
    assert!(r.headers.get("content-length").is_none(), "{:?}", r.headers);
    assert_eq!(r.headers["transfer-encoding"], "chunked", "{:?}", r.headers);

    // Over the cap: the body passes as the upstream sent it.
    let padding = "p".repeat(3000);
    let r = gw
        .request(
            "GET",
            "mask.test",
            "/masked/x",
            &[("x-card", CARD), ("x-pad", &padding)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json["headers"]["x-card"], CARD,
        "an over-cap body is not rewritten"
    );

    // No such plugin on the route: the upstream's body and length, untouched.
    let r = gw
        .request("GET", "mask.test", "/plain/x", &[("x-card", CARD)])
        .await;
    assert_eq!(r.json["headers"]["x-card"], CARD);
    assert!(r.headers.get("content-length").is_some(), "{:?}", r.headers);

    let m = gw.metrics().await;
    let calls: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with("wharf_plugin_invocations_total") && l.contains("on_response_body")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(calls, 1.0, "called for the body under the cap only:\n{m}");
}
