//! Upstream targets by name, resolved by a real DNS server on loopback (dnsmasq) whose records
//! change while requests run: a new address is used within its TTL, a record rebound to an
//! address the egress policy refuses is never dialled (502 upstream_forbidden), a name that stops
//! resolving keeps its last good address for `stale_seconds` and then answers 502
//! upstream_unresolvable.

use std::time::{Duration, Instant};

use crate::support::dns::Dns;
use crate::support::*;
use wharf_tenancy::{Route, UpstreamTarget};

/// Requests until `check` holds for an answer, for at most `within`; the last answer.
async fn until(gw: &Wharf, within: Duration, check: impl Fn(&Reply) -> bool) -> (bool, Reply) {
    let started = Instant::now();
    loop {
        let r = gw.get("names.test", "/x").await;
        if check(&r) || started.elapsed() > within {
            return (check(&r), r);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_upstreams_follow_dns_and_never_dial_what_egress_refuses() {
    // Two upstreams on the same port of two loopback addresses: the name picks one.
    let (_held, port) = held_port();
    let one = Upstream::start_on(format!("127.0.0.2:{port}").parse().unwrap(), "one").await;
    let _two = Upstream::start_on(format!("127.0.0.3:{port}").parse().unwrap(), "two").await;
    let dns = Dns::start(&[("api.names.test", "127.0.0.2")]);
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let gw = Wharf::start_configured(
        &url,
        &format!(
            "[dns]\nservers = [\"{}\"]\nmin_ttl_seconds = 1\nretry_seconds = 1\nstale_seconds = 3\n",
            dns.addr
        ),
        &[],
    )
    .await;
    let route = Route {
        upstreams: vec![UpstreamTarget {
            addr: format!("http://api.names.test:{port}"),
            weight: 1,
        }],
        ..route("r", "/", &[&one.target()])
    };
    tenant_with_route(&store, "names", &["names.test"], route).await;
    gw.wait_for_version(store.version().await.unwrap().0).await;

    let (ok, r) = until(&gw, Duration::from_secs(5), |r| r.status == 200).await;
    assert!(
        ok,
        "the name resolves and is routed: {} {}",
        r.status, r.json
    );
    assert_eq!(r.json["upstream"], "one");

    // The record moves: the new address is used within the TTL (1 s) and a little.
    dns.set(&[("api.names.test", "127.0.0.3")]);
    let (ok, r) = until(&gw, Duration::from_secs(8), |r| r.json["upstream"] == "two").await;
    assert!(ok, "moved to the new address: {} {}", r.status, r.json);

    // Rebinding to the metadata service: refused, never dialled.
    dns.set(&[("api.names.test", "169.254.169.254")]);
    let (ok, r) = until(&gw, Duration::from_secs(8), |r| r.status == 502).await;
    assert!(ok, "{} {}", r.status, r.json);
    assert_eq!(r.json["error"], "upstream_forbidden", "{}", r.json);

    // Back to a good address, then the name disappears: the last good address is kept for
    // stale_seconds (3 s), then the route answers upstream_unresolvable.
    dns.set(&[("api.names.test", "127.0.0.2")]);
    let (ok, r) = until(&gw, Duration::from_secs(8), |r| r.json["upstream"] == "one").await;
    assert!(ok, "{} {}", r.status, r.json);
    dns.set(&[]);
    let gone = Instant::now();
    let (ok, r) = until(&gw, Duration::from_secs(12), |r| r.status == 502).await;
    assert!(ok, "{} {}", r.status, r.json);
    assert_eq!(r.json["error"], "upstream_unresolvable", "{}", r.json);
    assert!(
        gone.elapsed() >= Duration::from_millis(1500),
        "the last good address was kept a while: {:?}",
        gone.elapsed()
    );
    assert!(
        !r.json["message"]
            .as_str()
            .unwrap_or_default()
            .contains("record"),
        "the resolver's own error stays in the log: {}",
        r.json
    );

    let metrics = gw.metrics().await;
    for outcome in ["ok", "stale", "failed"] {
        let series = format!("wharf_dns_resolutions_total{{outcome=\"{outcome}\"}}");
        assert!(metric_value(&metrics, &series) >= 1.0, "{series}");
    }
}

#[tokio::test]
async fn names_are_checked_as_targets_when_a_route_is_written() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    store.create_tenant("n", "n", &["n.test"]).await.unwrap();
    let put = |addr: &str| {
        let mut r = route("r", "/", &["127.0.0.1:1"]);
        r.upstreams[0].addr = addr.to_string();
        r
    };
    for ok in [
        "https://api.example.com",
        "api.internal:8080",
        "http://orders.shop.svc.cluster.local",
        "http://[::1]:81",
    ] {
        store
            .put_route("n", put(ok))
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, says) in [
        ("api.internal", "host:port"),
        ("https://10.0.0.1", "server_name"),
        ("ftp://x.test:21", "host:port"),
    ] {
        let e = store
            .put_route("n", put(bad))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
    // Names cost every node a lookup a second each: a tenant has 16 (max_upstream_names), and
    // the 17th is refused before any node resolves it.
    let many = |n: usize| {
        let mut r = route("r", "/", &["127.0.0.1:1"]);
        r.upstreams = (0..n)
            .map(|i| wharf_tenancy::UpstreamTarget {
                addr: format!("n{i}.names.test:80"),
                weight: 1,
            })
            .collect();
        r
    };
    store.put_route("n", many(16)).await.unwrap();
    let e = store
        .put_route("n", many(17))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_upstream_names"), "{e}");
    // A named target counts as the 16 addresses it may resolve to in the health-check quota
    // (100 probes/s): 7 names probed every second are 112.
    let mut checked = many(7);
    checked.health_check = Some(wharf_tenancy::HealthCheck {
        kind: wharf_tenancy::HealthCheckKind::Tcp,
        path: "/".into(),
        interval_ms: 1000,
    });
    let e = store.put_route("n", checked).await.unwrap_err().to_string();
    assert!(e.contains("max_health_checks_per_second"), "{e}");
    drop(url);
}

#[tokio::test]
async fn a_node_starts_with_its_names_resolved() {
    let (_held, port) = held_port();
    let _up = Upstream::start_on(format!("127.0.0.4:{port}").parse().unwrap(), "first").await;
    let dns = Dns::start(&[("boot.names.test", "127.0.0.4")]);
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let mut r = route("r", "/", &["127.0.0.1:1"]);
    r.upstreams[0].addr = format!("boot.names.test:{port}");
    let mut renamed = r.clone();
    tenant_with_route(&store, "names", &["names.test"], r).await;
    // The same target with the target's name as Host (Kong's preserve_host off).
    renamed.id = "renamed".into();
    renamed.path_prefix = "/renamed".into();
    renamed.host_header = wharf_tenancy::HostHeader::Upstream;
    store.put_route("names", renamed).await.unwrap();
    let gw =
        Wharf::start_configured(&url, &format!("[dns]\nservers = [\"{}\"]\n", dns.addr), &[]).await;
    // The very first request: the table went live with the name resolved.
    let r = gw.get("names.test", "/").await;
    assert_eq!(
        (r.status, r.json["upstream"].as_str()),
        (200, Some("first")),
        "{}",
        r.json
    );
    assert_eq!(
        r.json["headers"]["host"], "names.test",
        "the client's Host by default"
    );
    let r = gw.get("names.test", "/renamed").await;
    assert_eq!(
        r.json["headers"]["host"],
        format!("boot.names.test:{port}"),
        "{}",
        r.json
    );
}
