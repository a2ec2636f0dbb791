//! Routing over real sockets: host → tenant → route → upstream, and the errors clients see.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::*;
use wharf_tenancy::Store;

on_both_stores!(
    routes_by_host_wildcard_and_longest_prefix,
    upstream_failures_are_explained,
    metrics_move
);

async fn seed_acme_and_beta(store: &Store, a: &Upstream, b: &Upstream, c: &Upstream) {
    store.create_tenant("acme", "Acme", &[]).await.unwrap();
    store.add_hostname("acme", "api.acme.test").await.unwrap();
    store
        .put_route("acme", route("root", "/", &[&a.target()]))
        .await
        .unwrap();
    store
        .put_route("acme", route("api", "/api", &[&b.target()]))
        .await
        .unwrap();
    let mut posts = route("submit", "/api/submit", &[&c.target()]);
    posts.methods = vec!["POST".into()];
    store.put_route("acme", posts).await.unwrap();
    store.create_tenant("beta", "Beta", &[]).await.unwrap();
    store.add_hostname("beta", "*.beta.test").await.unwrap();
    store
        .put_route("beta", route("only", "/only", &[&c.target()]))
        .await
        .unwrap();
}

async fn routes_by_host_wildcard_and_longest_prefix(kind: StoreKind) {
    let (url, store) = fresh_store(kind).await;
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    seed_acme_and_beta(&store, &a, &b, &c).await;
    let gw = Wharf::start(&url).await;

    let r = gw.get("api.acme.test", "/hello?x=1").await;
    assert_eq!((r.status, r.json["upstream"].as_str()), (200, Some("a")));
    assert_eq!(r.json["path"], "/hello");
    assert_eq!(r.json["query"], "x=1");
    // Longest prefix on whole segments; method-specific routes only for their methods.
    assert_eq!(
        gw.get("api.acme.test", "/api/users").await.json["upstream"],
        "b"
    );
    assert_eq!(
        gw.get("api.acme.test", "/apiary").await.json["upstream"],
        "a"
    );
    assert_eq!(
        gw.get("api.acme.test", "/api/submit").await.json["upstream"],
        "b"
    );
    assert_eq!(
        gw.request("POST", "api.acme.test", "/api/submit", &[])
            .await
            .json["upstream"],
        "c"
    );
    // Host matching ignores case and port.
    assert_eq!(
        gw.get("API.Acme.Test:8080", "/").await.json["upstream"],
        "a"
    );
    // Wildcard at any depth, never the bare domain.
    assert_eq!(gw.get("x.beta.test", "/only").await.json["upstream"], "c");
    assert_eq!(
        gw.get("deep.x.beta.test", "/only/more").await.json["upstream"],
        "c"
    );
    let bare = gw.get("beta.test", "/only").await;
    assert_eq!(
        (bare.status, bare.json["error"].as_str()),
        (404, Some("unknown_host"))
    );

    let unknown = gw.get("nobody.test", "/").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json["error"], "unknown_host");
    assert!(unknown.json["message"].as_str().unwrap().contains("Host"));
    assert!(unknown.headers.contains_key("x-request-id"));
    let no_route = gw.get("x.beta.test", "/elsewhere").await;
    assert_eq!(
        (no_route.status, no_route.json["error"].as_str()),
        (404, Some("no_route"))
    );

    // Forwarding headers: client chain extended, request id kept, traceparent passed through.
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = gw
        .request(
            "GET",
            "api.acme.test",
            "/",
            &[
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Request-Id", "req-42"),
                ("traceparent", tp),
            ],
        )
        .await;
    let h = &r.json["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-request-id"], "req-42");
    assert_eq!(h["traceparent"], tp);
    assert_eq!(h["host"], "api.acme.test");
    assert_eq!(r.headers["x-request-id"], "req-42");
    let generated = gw.get("api.acme.test", "/").await;
    let id = generated.json["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 32, "a request id is added when absent");
    assert_eq!(generated.headers["x-request-id"], id.as_str());
}

async fn upstream_failures_are_explained(kind: StoreKind) {
    let (url, store) = fresh_store(kind).await;
    let up = Upstream::start("slow").await;
    store.create_tenant("acme", "Acme", &[]).await.unwrap();
    store.add_hostname("acme", "acme.test").await.unwrap();
    store
        .put_route("acme", route("down", "/down", &[&dead_addr()]))
        .await
        .unwrap();
    let mut slow = route("slow", "/slow", &[&up.target()]);
    slow.timeouts.read_ms = 300;
    store.put_route("acme", slow).await.unwrap();
    let gw = Wharf::start(&url).await;

    let down = gw.get("acme.test", "/down").await;
    assert_eq!(down.status, 502);
    assert_eq!(down.json["error"], "upstream_unavailable");
    let timeout = gw.get("acme.test", "/slow?sleep_ms=3000").await;
    assert_eq!(timeout.status, 504);
    assert_eq!(timeout.json["error"], "upstream_timeout");
    // The same route still serves fast requests: a timeout fails only its own request.
    assert_eq!(gw.get("acme.test", "/slow?sleep_ms=10").await.status, 200);
}

async fn metrics_move(kind: StoreKind) {
    let (url, store) = fresh_store(kind).await;
    let up = Upstream::start("a").await;
    store.create_tenant("acme", "Acme", &[]).await.unwrap();
    store.add_hostname("acme", "acme.test").await.unwrap();
    store
        .put_route("acme", route("api", "/api", &[&up.target()]))
        .await
        .unwrap();
    let gw = Wharf::start(&url).await;
    for _ in 0..3 {
        assert_eq!(gw.get("acme.test", "/api/x").await.status, 200);
    }
    for i in 0..5 {
        gw.get(&format!("random-{i}.example"), "/").await;
    }
    gw.get("acme.test", "/nothing-here").await;
    let m = gw
        .wait_metric(
            r#"wharf_request_duration_seconds_count{tenant="acme"}"#,
            4.0,
        )
        .await;
    assert_eq!(
        metric_value(
            &m,
            r#"wharf_requests_total{code="200",route="api",tenant="acme"}"#
        ),
        3.0
    );
    // Unknown hosts share one series, whatever the Host was.
    assert_eq!(
        metric_value(
            &m,
            r#"wharf_requests_total{code="404",route="_none",tenant="_unknown"}"#
        ),
        5.0
    );
    assert_eq!(
        metric_value(
            &m,
            r#"wharf_requests_total{code="404",route="_none",tenant="acme"}"#
        ),
        1.0
    );
    assert!(!m.contains("random-0.example"));
    assert_eq!(
        metric_value(
            &m,
            r#"wharf_upstream_duration_seconds_count{tenant="acme"}"#
        ),
        3.0
    );
    assert_eq!(
        metric_value(&m, "wharf_config_version") as i64,
        store.version().await.unwrap().0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_and_health_checks() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    store.create_tenant("acme", "Acme", &[]).await.unwrap();
    store.add_hostname("acme", "acme.test").await.unwrap();
    fast_health_checks(&store, "acme").await;
    let mut weighted = route("weighted", "/w", &[&a.target(), &b.target()]);
    weighted.upstreams[1].weight = 3;
    store.put_route("acme", weighted).await.unwrap();
    let mut checked = route("checked", "/hc", &[&a.target(), &dead_addr()]);
    checked.health_check = Some(wharf_tenancy::HealthCheck {
        kind: wharf_tenancy::HealthCheckKind::Http,
        path: "/health".into(),
        interval_ms: 100,
    });
    store.put_route("acme", checked).await.unwrap();
    let gw = Wharf::start(&url).await;

    let mut to_b = 0;
    for _ in 0..40 {
        if gw.get("acme.test", "/w").await.json["upstream"] == "b" {
            to_b += 1;
        }
    }
    assert!(
        (25..=35).contains(&to_b),
        "weight 3 of 4 should get ~30 of 40, got {to_b}"
    );

    // Once the dead target fails its check, every request goes to the live one.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    for _ in 0..20 {
        let r = gw.get("acme.test", "/hc").await;
        assert_eq!((r.status, r.json["upstream"].as_str()), (200, Some("a")));
    }
}

#[tokio::test]
async fn test_redis_is_real() {
    // The harness's Redis is a real server: PING over its socket.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(redis_addr())
        .await
        .expect("connect test Redis");
    s.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"+PONG\r\n");
}
