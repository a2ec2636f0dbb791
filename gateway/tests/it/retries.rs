//! A target that refuses connections costs no request: each goes to the next target, GET and
//! POST alike (nothing was sent before the connection failed). With every target down, retries
//! stay within the route's budget instead of multiplying the outage.

use std::time::Instant;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_costs_no_request_and_retries_stay_within_budget() {
    let (one, two) = (Upstream::start("one").await, Upstream::start("two").await);
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let gw = Wharf::start(&url).await;
    store
        .create_tenant("t", "t", &["retry.test", "down.test"])
        .await
        .unwrap();
    let mut live = route(
        "live",
        "/live",
        &[&one.target(), &dead_addr(), &two.target()],
    );
    live.timeouts.connect_ms = 500;
    store.put_route("t", live).await.unwrap();
    let down = route("down", "/down", &[&dead_addr(), &dead_addr(), &dead_addr()]);
    store.put_route("t", down).await.unwrap();
    gw.wait_for_version(store.version().await.unwrap().0).await;

    for i in 0..60 {
        let r = gw.get("retry.test", "/live/x").await;
        assert_eq!(r.status, 200, "GET {i}: {}", r.json);
    }
    let client = reqwest::Client::new();
    for i in 0..20 {
        let r = client
            .post(format!("http://{}/live/form", gw.proxy))
            .header("Host", "retry.test")
            .body(format!("payload {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "POST {i}");
        let echo: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            echo["body_bytes"],
            format!("payload {i}").len(),
            "sent once, whole"
        );
    }
    let metrics = gw.metrics().await;
    let retried = |route: &str, reason: &str| {
        metric_value(
            &metrics,
            &format!("wharf_upstream_retries_total{{reason=\"{reason}\",route=\"{route}\",tenant=\"t\"}}"),
        )
    };
    assert!(retried("live", "connect_failed") >= 1.0);

    // Every target down: each request fails, and its retries come out of the budget.
    let started = Instant::now();
    let n = 50;
    for _ in 0..n {
        let r = gw.get("retry.test", "/down/x").await;
        assert_eq!(r.status, 502, "{}", r.json);
    }
    let secs = started.elapsed().as_secs_f64();
    let metrics = gw.metrics().await;
    let retried = |reason: &str| {
        metric_value(
            &metrics,
            &format!(
                "wharf_upstream_retries_total{{reason=\"{reason}\",route=\"down\",tenant=\"t\"}}"
            ),
        )
    };
    // A fifth of the requests, the 3 it starts with and 3 a second: far below 2 per request.
    let allowed = 0.2 * n as f64 + 3.0 + 3.0 * secs + 1.0;
    assert!(
        retried("connect_failed") <= allowed,
        "{} retries for {n} requests in {secs:.1} s (budget {allowed:.0})",
        retried("connect_failed")
    );
    assert!(retried("budget_exhausted") >= 1.0);
}
