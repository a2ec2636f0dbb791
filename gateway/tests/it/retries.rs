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

/// A real HTTP/1.1 server that answers every request `503` (a target whose process is up and
/// broken), on a free loopback port.
async fn always_503() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                // One request per read is enough for the gateway's GETs without bodies.
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let reply = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 18\r\n\r\n{\"upstream\":\"bad\"}";
                    if conn.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_answering_503_is_ejected_and_comes_back() {
    let good = Upstream::start("good").await;
    let bad = always_503().await;
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let op = crate::support::api::OP;
    let gw = Wharf::start_configured(&url, &format!("operator_token = \"{op}\""), &[]).await;
    tenant_with_route(
        &store,
        "t",
        &["eject.test"],
        route("r", "/", &[&good.target(), &bad.to_string()]),
    )
    .await;
    gw.wait_for_version(store.version().await.unwrap().0).await;

    // Round robin: every other request reaches the bad target until five 503s in a row eject it.
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(gw.get("eject.test", "/x").await.status);
    }
    let errors = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(
        errors, 5,
        "five 503s, then the target is left out: {statuses:?}"
    );
    assert!(statuses[12..].iter().all(|s| *s == 200), "{statuses:?}");
    let metrics = gw.metrics().await;
    let series =
        "wharf_upstream_ejections_total{reason=\"server_errors\",route=\"r\",tenant=\"t\"}";
    assert_eq!(metric_value(&metrics, series), 1.0);
    // The route as the API shows it: this node's view of each target, the ejected one marked.
    let api = crate::support::api::Api::new(&gw);
    let (_, v) = api
        .call(
            reqwest::Method::GET,
            "/v1/tenants/t/routes/r",
            Some(op),
            None,
        )
        .await;
    let targets = v["targets"].as_array().expect("targets");
    let state = |addr: String| targets.iter().find(|t| t["addr"] == addr).cloned();
    assert_eq!(state(bad.to_string()).unwrap()["ejected"], true, "{v}");
    assert_eq!(state(good.target()).unwrap()["ejected"], false, "{v}");
    assert_eq!(v["path_prefix"], "/", "the stored route is there too: {v}");

    // After its first ejection (1 s) it gets requests again.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let mut back = false;
    for _ in 0..6 {
        back |= gw.get("eject.test", "/x").await.status == 503;
    }
    assert!(back, "the ejected target returns to the rotation");
}

/// A target that accepts each connection, reads the request and closes without answering (a
/// crashing worker); counts the connections it took.
async fn closes_without_answer(
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::net::SocketAddr {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = vec![0u8; 4096];
            let _ = conn.read(&mut buf).await;
            drop(conn);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_before_the_answer_replays_gets_but_never_posts() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let good = Upstream::start("good").await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let closer = closes_without_answer(accepted.clone()).await;
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let gw = Wharf::start(&url).await;
    store
        .create_tenant("t", "t", &["reset.test"])
        .await
        .unwrap();
    store
        .put_route(
            "t",
            route("get", "/get", &[&closer.to_string(), &good.target()]),
        )
        .await
        .unwrap();
    store
        .put_route("t", route("post", "/post", &[&closer.to_string()]))
        .await
        .unwrap();
    gw.wait_for_version(store.version().await.unwrap().0).await;

    for i in 0..20 {
        let r = gw.get("reset.test", "/get/x").await;
        assert_eq!(r.status, 200, "GET {i}: {}", r.json);
    }
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the closing target was tried"
    );

    // A POST whose body may have reached the upstream is answered 502, not sent again.
    let before = accepted.load(Ordering::SeqCst);
    let r = reqwest::Client::new()
        .post(format!("http://{}/post/x", gw.proxy))
        .header("Host", "reset.test")
        .body("charge the card once")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(accepted.load(Ordering::SeqCst) - before, 1, "sent once");
}

/// Clients that hang up while the upstream is still working are the clients' doing: no retry,
/// no passive-health fault, no ejection of a healthy target (seen in bench-upstreams as wrk
/// closed its connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_do_not_count_against_the_upstream() {
    use tokio::io::AsyncWriteExt;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let gw = Wharf::start(&url).await;
    store
        .create_tenant("t", "t", &["hangup.test"])
        .await
        .unwrap();
    store
        .put_route("t", route("r", "/", &[&a.target(), &b.target()]))
        .await
        .unwrap();
    gw.wait_for_version(store.version().await.unwrap().0).await;
    // Twenty clients send a request the upstream answers in 300 ms, and go away after 50 ms.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let proxy = gw.proxy;
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
            s.write_all(b"GET /slow?sleep_ms=300 HTTP/1.1\r\nhost: hangup.test\r\n\r\n")
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            drop(s);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let m = gw.metrics().await;
    let counted: Vec<&str> = m
        .lines()
        .filter(|l| {
            (l.starts_with("wharf_upstream_retries_total")
                || l.starts_with("wharf_upstream_ejections_total"))
                && !l.ends_with(" 0")
        })
        .collect();
    assert!(
        counted.is_empty(),
        "hang-ups counted against the upstream: {counted:?}"
    );
    let r = gw.get("hangup.test", "/x").await;
    assert_eq!(r.status, 200, "{}", r.json);
}
