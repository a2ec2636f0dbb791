//! Plugins' outbound HTTP from the attacker's side, through a real gateway, with the hostile
//! plugin's `fetch` mode: every destination the egress policy or the allow-list refuses, and
//! the quotas that bound one request's calls, a slow server, an endless response and the
//! connections a tenant holds open.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::outbound_http::{attach, gateway};
use crate::support::dns::Dns;
use crate::support::http_server::HttpServer;
use crate::support::tls::Ca;
use crate::support::*;

/// What `fetch` reported for one URL.
async fn fetch(gw: &Wharf, url: &str) -> Value {
    let r = gw
        .request("GET", "out.test", "/", &[("x-fetch-url", url)])
        .await;
    assert_eq!(r.status, 200, "{url}: {}", r.json);
    r.json
}

#[tokio::test]
async fn outbound_requests_reach_only_allowed_public_destinations() {
    let ca = Ca::new("Outbound Test CA");
    let other_ca = Ca::new("Someone Else's CA");
    let (chain, key, _) = other_ca.leaf(&["mitm.out.test"]);
    let mitm = HttpServer::tls(&chain, &key, |_| (200, "{}".into())).await;
    let dns = Dns::start(&[
        ("ok.out.test", "127.0.0.1"),
        ("loop.out.test", "127.0.0.2"),
        ("meta.out.test", "169.254.169.254"),
        ("private.out.test", "10.1.2.3"),
        ("mitm.out.test", "127.0.0.1"),
    ]);
    let (gw, _api, up) = gateway(
        &dns,
        &ca,
        "hostile",
        json!({"mode": "fetch"}),
        json!([
            "http://*.out.test:*",
            "https://*.out.test:*",
            "http://127.0.0.1:*",
            "http://127.0.0.2:*",
            "http://169.254.169.254",
            "http://10.0.0.1",
            "http://[::1]:*"
        ]),
        json!({}),
    )
    .await;
    let port = up.addr.port();

    let ok = fetch(&gw, &format!("http://ok.out.test:{port}/")).await;
    assert_eq!(
        (ok["ok"].as_u64(), ok["status"].as_u64()),
        (Some(1), Some(200)),
        "{ok}"
    );
    let ok = fetch(&gw, &format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(ok["ok"], 1, "{ok}");

    let admin = gw.admin;
    for (url, why) in [
        (format!("http://127.0.0.2:{port}/"), "loopback"),
        (format!("http://[::1]:{port}/"), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "link-local",
        ),
        ("http://10.0.0.1/".into(), "private"),
        (format!("http://{admin}/v1/tenants"), "own listener"),
        (format!("http://loop.out.test:{port}/"), "loopback"),
        ("http://meta.out.test/".into(), "link-local"),
        ("http://private.out.test/".into(), "private"),
        ("http://example.com/".into(), "allowed_outbound_hosts"),
        (
            format!("https://127.0.0.1:{port}/"),
            "allowed_outbound_hosts",
        ),
    ] {
        let v = fetch(&gw, &url).await;
        assert_eq!(v["ok"], 0, "{url}: {v}");
        assert_eq!(v["error"], "denied", "{url}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(why), "{url}: {v}");
    }
    // Verified TLS: a certificate of a CA the node does not trust is a backend error.
    let v = fetch(&gw, &format!("https://mitm.out.test:{}/", mitm.addr.port())).await;
    assert_eq!(
        (v["ok"].as_u64(), v["error"].as_str()),
        (Some(0), Some("backend")),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains("TLS"), "{v}");
    assert_eq!(mitm.requests.load(std::sync::atomic::Ordering::SeqCst), 0);

    // A name re-pointed at an internal address after it was used (DNS rebinding) is refused
    // at the next connect. A port where nothing listens: while the old answer lasts, the
    // connect is tried and refused by the kernel (and nothing is pooled); then by Wharf.
    let closed = free_addr().port();
    let v = fetch(&gw, &format!("http://ok.out.test:{closed}/")).await;
    assert_eq!(v["error"], "backend", "{v}");
    dns.set(&[("ok.out.test", "127.0.0.2")]);
    let mut refused = None;
    for _ in 0..60 {
        let v = fetch(&gw, &format!("http://ok.out.test:{closed}/")).await;
        if v["error"] == "denied" {
            refused = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = refused.expect("the rebound name was never refused");
    assert!(v["detail"].as_str().unwrap().contains("loopback"), "{v}");
}

#[tokio::test]
async fn one_request_cannot_make_the_node_spend_past_the_tenants_outbound_quotas() {
    let ca = Ca::new("Outbound Test CA");
    let dns = Dns::start(&[]);
    // A server that answers each request on its own connection and closes it: the flood below
    // leaves no idle connection in the tenant's pool.
    let counted = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let counted_addr = counted.local_addr().unwrap();
    let reached_count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reached_by_server = reached_count.clone();
    let counted_task = tokio::spawn(async move {
        while let Ok((mut s, _)) = counted.accept().await {
            let reached = reached_by_server.clone();
            tokio::spawn(async move {
                let mut req = [0u8; 4096];
                if s.read(&mut req).await.unwrap_or(0) > 0 {
                    reached.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                }
            });
        }
    });
    // A server that answers a 1 GB body as fast as it can, counting what it managed to send.
    let endless = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endless_addr = endless.local_addr().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sent_by_server = sent.clone();
    let endless_task = tokio::spawn(async move {
        while let Ok((mut s, _)) = endless.accept().await {
            let sent = sent_by_server.clone();
            tokio::spawn(async move {
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 << 10];
                while s.write_all(&chunk).await.is_ok() {
                    sent.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let silent_task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });

    let (gw, api, _up) = gateway(
        &dns,
        &ca,
        "hostile",
        json!({"mode": "fetch", "count": "1000"}),
        json!(["http://127.0.0.1:*"]),
        json!({"http_requests_per_second": 50, "http_timeout_ms": 1500, "http_max_response_bytes": 1048576, "http_max_connections": 2}),
    )
    .await;

    // 1,000 calls from one request: the rate quota stops all but its burst (and what it
    // refills while the request runs).
    let started = Instant::now();
    let v = fetch(&gw, &format!("http://{counted_addr}/")).await;
    let allowed = 50 + (50.0 * started.elapsed().as_secs_f64()).ceil() as u64;
    let reached = reached_count.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "1,000 calls in one request: {reached} sent in {:?}",
        started.elapsed()
    );
    assert!(v["ok"].as_u64().unwrap() <= allowed, "{v}");
    assert_eq!(v["ok"].as_u64().unwrap(), reached, "{v}");
    assert_eq!(v["error"], "quota-exceeded", "{v}");

    // One call each from here on.
    let (s, v) = attach(
        &api,
        "hostile",
        json!({"mode": "fetch"}),
        json!(["http://127.0.0.1:*"]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let rss_before = gw.rss_bytes();
    // The flood's connections (to a server that closes them) hold the tenant's two connection
    // permits until their tasks see the close: on a busy machine that can outlast the wait above,
    // and the call is then refused for the connection quota before it dials. Wait for them.
    let mut waited = 0;
    let (started, v) = loop {
        let started = Instant::now();
        let v = fetch(&gw, &format!("http://{endless_addr}/")).await;
        let busy = v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("http_max_connections"));
        if !busy || waited == 50 {
            break (started, v);
        }
        waited += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(v["error"], "quota-exceeded", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("http_max_response_bytes"),
        "{v}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let streamed = sent.load(std::sync::atomic::Ordering::SeqCst);
    let grew = gw.rss_bytes().saturating_sub(rss_before);
    eprintln!(
        "1 GB response: cut off after {:?}; the server got {} KiB out; gateway RSS +{} KiB",
        started.elapsed(),
        streamed >> 10,
        grew >> 10
    );
    assert!(
        streamed < 64 << 20,
        "the gateway kept reading: {streamed} bytes"
    );
    assert!(grew < 48 << 20, "RSS grew {grew} bytes");

    let started = Instant::now();
    let v = fetch(&gw, &format!("http://{silent_addr}/")).await;
    let took = started.elapsed();
    assert_eq!(v["error"], "timeout", "{v}");
    assert!(
        took < Duration::from_millis(2900),
        "the 1.5 s timeout took {took:?}"
    );
    // Open connections, in use and idle, all destinations: 2. Two servers kept alive fill them
    // with idle connections; a third destination closes the one idle the longest (w's) and is
    // served: idle connections never lock the tenant out of other hosts.
    let (w, x, y) = (
        HttpServer::plain(|_| (200, "w".into())).await,
        HttpServer::plain(|_| (200, "x".into())).await,
        HttpServer::plain(|_| (200, "y".into())).await,
    );
    for first in [&w, &x] {
        let v = fetch(&gw, &format!("http://{}/", first.addr)).await;
        assert_eq!(v["ok"], 1, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = fetch(&gw, &format!("http://{}/", y.addr)).await;
    assert_eq!(v["ok"], 1, "an idle connection was closed for y: {v}");
    let v = fetch(&gw, &format!("http://{}/", w.addr)).await;
    assert_eq!(v["ok"], 1, "{v}");
    let count = |s: &HttpServer| s.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        (count(&w), count(&x), count(&y)),
        (2, 1, 1),
        "w's connection, idle the longest, was the one closed"
    );
    // Both connections in use (two calls waiting on a server that never answers): a third
    // destination is refused before it is dialled; none in use is closed for it.
    let z = HttpServer::plain(|_| (200, "z".into())).await;
    let silent_url = format!("http://{silent_addr}/");
    let waiting = [fetch(&gw, &silent_url), fetch(&gw, &silent_url)];
    let refused = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        fetch(&gw, &format!("http://{}/", z.addr)).await
    };
    let (waited, v) = tokio::join!(futures_util::future::join_all(waiting), refused);
    for w in &waited {
        assert_eq!(w["error"], "timeout", "{w}");
    }
    assert_eq!(v["error"], "quota-exceeded", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("http_max_connections"),
        "{v}"
    );
    assert_eq!(count(&z), 0, "never dialled");
    endless_task.abort();
    silent_task.abort();
    counted_task.abort();
}
