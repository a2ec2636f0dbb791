//! Per-tenant rate limits across a fleet: local limits are per node, fleet limits are shared
//! through Redis, and a fleet limit falls back to the local one while Redis is unreachable.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::*;
use wharf_tenancy::{Quotas, RateScope, Store};

async fn tenant_with_rate(store: &Store, up: &Upstream, scope: RateScope) -> String {
    let t = tenant_id();
    store
        .create_tenant(&t, "T", &[&format!("{t}.test")])
        .await
        .unwrap();
    store
        .put_route(&t, route("api", "/", &[&up.target()]))
        .await
        .unwrap();
    let q = Quotas {
        requests: wharf_tenancy::RequestQuotas {
            requests_per_second: 5,
            burst: 5,
            rate_limit_scope: scope,
            ..Default::default()
        },
        ..Quotas::default()
    };
    store.set_quotas(&t, &q).await.unwrap();
    t
}

/// 20 requests spread over the nodes within well under a second; how many got through.
async fn admitted(nodes: &[&Wharf], tenant: &str) -> usize {
    let mut ok = 0;
    for i in 0..20 {
        let r = nodes[i % nodes.len()]
            .get(&format!("{tenant}.test"), "/")
            .await;
        match r.status {
            200 => ok += 1,
            429 => assert_eq!(r.json["error"], "rate_limited"),
            other => panic!("unexpected {other}: {:?}", r.json),
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_limit_is_shared_by_two_nodes_local_is_not() {
    let (url, store) = fresh_store(StoreKind::Postgres).await;
    let up = Upstream::start("up").await;
    let fleet = tenant_with_rate(&store, &up, RateScope::Fleet).await;
    let local = tenant_with_rate(&store, &up, RateScope::Local).await;
    let toml = format!("redis = \"{}\"", redis_url());
    let (n1, n2) = tokio::join!(
        Wharf::start_configured(&url, &toml, &[]),
        Wharf::start_configured(&url, &toml, &[])
    );

    let shared = admitted(&[&n1, &n2], &fleet).await;
    assert!(
        (5..=8).contains(&shared),
        "fleet-wide 5/s burst 5 over two nodes admitted {shared} of 20"
    );
    let per_node = admitted(&[&n1, &n2], &local).await;
    assert!(
        per_node >= 10,
        "a local limit is per node: two nodes admitted {per_node} of 20"
    );
    assert_eq!(
        metric_value(
            &n1.metrics().await,
            &format!(r#"wharf_rate_limit_fallback_total{{tenant="{fleet}"}}"#)
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_limit_falls_back_to_local_without_redis() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    let t = tenant_with_rate(&store, &up, RateScope::Fleet).await;
    let gw =
        Wharf::start_configured(&url, &format!("redis = \"redis://{}\"", dead_addr()), &[]).await;
    let ok = admitted(&[&gw], &t).await;
    assert!(
        (5..=7).contains(&ok),
        "the local limiter still holds the line: {ok} of 20"
    );
    let m = gw.metrics().await;
    assert!(
        metric_value(
            &m,
            &format!(r#"wharf_rate_limit_fallback_total{{tenant="{t}"}}"#)
        ) >= 20.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_holds_under_concurrent_load() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    let t = tenant_id();
    store
        .create_tenant(&t, "T", &[&format!("{t}.test")])
        .await
        .unwrap();
    store
        .put_route(&t, route("api", "/", &[&up.target()]))
        .await
        .unwrap();
    store
        .set_quotas(
            &t,
            &Quotas {
                requests: wharf_tenancy::RequestQuotas {
                    requests_per_second: 50,
                    burst: 10,
                    ..Default::default()
                },
                ..Quotas::default()
            },
        )
        .await
        .unwrap();
    let gw = std::sync::Arc::new(Wharf::start(&url).await);
    let started = std::time::Instant::now();
    let run_for = std::time::Duration::from_secs(2);
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (gw, host) = (gw.clone(), format!("{t}.test"));
        workers.push(tokio::spawn(async move {
            let mut ok = 0u64;
            while started.elapsed() < run_for {
                if gw.get(&host, "/").await.status == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for w in workers {
        ok += w.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let expected = 50.0 * 2.0 + 10.0;
    println!("admitted {ok} in {secs:.2} s under 8 concurrent clients (expected ~{expected})");
    // Tolerance: ±20 % (timing of the first and last requests, a loaded CI machine).
    assert!(
        (ok as f64) >= expected * 0.8 && (ok as f64) <= expected * 1.2 + 50.0 * (secs - 2.0),
        "admitted {ok}"
    );
}

/// A tenant whose upstream is slow (or whose clients hold streams open) cannot make a node hold
/// more than `max_requests_in_flight` of its requests: the rest get 429 `too_many_in_flight` at
/// once, before any work; another tenant on the same node is not affected; a reload while the
/// slots are held does not reset the count; the slots come back when the requests finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_requests_in_flight_are_capped_per_node() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    tenant_with_route(
        &store,
        "slow",
        &["slow.test"],
        route("all", "/", &[&up.target()]),
    )
    .await;
    tenant_with_route(
        &store,
        "calm",
        &["calm.test"],
        route("all", "/", &[&up.target()]),
    )
    .await;
    store
        .patch_quotas("slow", &serde_json::json!({"max_requests_in_flight": 4}))
        .await
        .unwrap();
    let gw = Wharf::start(&url).await;
    let client = reqwest::Client::new();
    let proxy = gw.proxy;
    let send = move |host: &'static str, path: &'static str| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://{proxy}{path}"))
                .header("Host", host)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").cloned();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (
                status,
                body["error"].as_str().unwrap_or("").to_string(),
                retry,
            )
        }
    };
    // 12 requests the upstream answers after 1.5 s, all at once.
    let held: Vec<_> = (0..12)
        .map(|_| tokio::spawn(send("slow.test", "/?sleep_ms=1500")))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;

    // Another tenant is served as usual meanwhile.
    for _ in 0..20 {
        assert_eq!(send("calm.test", "/").await.0, 200);
    }
    // A reload of slow's config (another quota) keeps the held slots counted.
    let (version, _) = store
        .patch_quotas("slow", &serde_json::json!({"plugin_fuel": 2_000_000}))
        .await
        .unwrap();
    gw.wait_for_version(version).await;
    let (status, error, retry) = send("slow.test", "/").await;
    assert_eq!((status, error.as_str()), (429, "too_many_in_flight"));
    assert_eq!(retry.unwrap(), "1");

    let mut answers = std::collections::BTreeMap::new();
    for h in held {
        let (status, error, _) = h.await.unwrap();
        *answers.entry((status, error)).or_insert(0) += 1;
    }
    assert_eq!(
        answers.get(&(200, String::new())),
        Some(&4),
        "exactly the cap was served: {answers:?}"
    );
    assert_eq!(
        answers.get(&(429, "too_many_in_flight".to_string())),
        Some(&8),
        "{answers:?}"
    );
    // The slots came back.
    assert_eq!(send("slow.test", "/").await.0, 200);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(
            r#"wharf_quota_rejections_total{quota="max_requests_in_flight",tenant="slow"} 9"#
        ),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("quota_rejections"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
