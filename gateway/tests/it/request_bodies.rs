//! Request bodies and plugins, over raw sockets: the json-validator example (it imports
//! `wharf:plugin/body`) refuses bad JSON with 400 before the upstream, and its rewrite reaches
//! the upstream with a correct Content-Length, whether the client sent a length or chunks; a
//! body over the tenant's `plugin_body_max_bytes` is 413 before the plugin runs; and a route
//! whose plugins do not read bodies streams a 100 MB upload with flat memory.

use std::time::Instant;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wharf_plugins::test_support::example_plugin;
use wharf_tenancy::OnError;

use crate::support::*;

/// Sends one request with `body` (`chunked`: in two chunks) and reads the whole answer.
async fn post(gw: &Wharf, path: &str, body: &[u8], chunked: bool) -> (u16, Value) {
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    let framing = if chunked {
        "transfer-encoding: chunked".to_string()
    } else {
        format!("content-length: {}", body.len())
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: bodies.test\r\ncontent-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    if chunked {
        let (a, b) = body.split_at(body.len() / 2);
        for part in [a, b] {
            let chunk = format!("{:x}\r\n", part.len());
            s.write_all(chunk.as_bytes()).await.unwrap();
            s.write_all(part).await.unwrap();
            s.write_all(b"\r\n").await.unwrap();
        }
        s.write_all(b"0\r\n\r\n").await.unwrap();
    } else {
        // The gateway may answer (413) and close before reading it all.
        let _ = s.write_all(body).await;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b.trim()).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test]
async fn a_body_plugin_validates_and_rewrites_bodies_before_the_upstream() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    tenant_with_route(
        &store,
        "b",
        &["bodies.test"],
        route("api", "/", &[&up.target()]),
    )
    .await;
    relaxed(&store, "b").await;
    store
        .patch_quotas("b", &serde_json::json!({"plugin_body_max_bytes": 4096}))
        .await
        .unwrap();
    attach_plugin(
        &store,
        "b",
        "api",
        "json-validator",
        &example_plugin("json-validator"),
        &[("required", "name"), ("envelope", "data")],
        OnError::FailClosed,
    )
    .await;
    let gw = Wharf::start(&url).await;

    let good = br#"{"name": "ada", "tags": ["x", {"deep": [1, 2.5e3, null, true]}]}"#;
    for chunked in [false, true] {
        let (s, v) = post(&gw, "/orders", good, chunked).await;
        assert_eq!(s, 200, "chunked={chunked}: {v}");
        // {"data": + body + }: 9 bytes more, with its own length and no chunking.
        let sent = good.len() + 9;
        assert_eq!(v["body_bytes"], sent, "chunked={chunked}: {v}");
        assert_eq!(v["headers"]["content-length"], sent.to_string(), "{v}");
        assert!(v["headers"].get("transfer-encoding").is_none(), "{v}");
    }
    for (bad, why) in [
        (&b"{\"name\": \"ada\""[..], "not a JSON object"),
        (&b"[1, 2]"[..], "not a JSON object"),
        (&b"{\"name\": 01x}"[..], "not a JSON object"),
        (&b"{\"other\": 1}"[..], "missing required field: name"),
    ] {
        let (s, v) = post(&gw, "/orders", bad, false).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"], "invalid_body", "{v}");
        assert!(v["message"].as_str().unwrap().contains(why), "{v}");
        assert!(v.get("upstream").is_none(), "the upstream answered: {v}");
    }
    // A GET has no body to read: it passes unchanged.
    let r = gw.get("bodies.test", "/orders").await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["body_bytes"], 0);

    // Over plugin_body_max_bytes: 413 before the plugin runs, for a declared length and for
    // chunks alike.
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(8000));
    for chunked in [false, true] {
        let (s, v) = post(&gw, "/orders", big.as_bytes(), chunked).await;
        assert_eq!(s, 413, "chunked={chunked}: {v}");
        assert_eq!(v["error"], "request_body_too_large", "{v}");
    }
    // A plugin cannot grow the body past the cap either: its set-request-body is refused
    // (quota-exceeded) and this plugin answers 413 itself.
    let edge = format!("{{\"name\": \"{}\"}}", "y".repeat(4078));
    assert_eq!(edge.len(), 4090);
    let (s, v) = post(&gw, "/orders", edge.as_bytes(), false).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["host_error"], "quota-exceeded", "{v}");
    let metrics = gw.metrics().await;
    let ran = metrics
        .lines()
        .filter(|l| {
            l.starts_with("wharf_plugin_invocations_total")
                && l.contains("json-validator")
                && l.contains("on_request")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum::<f64>();
    // Two good, four bad, one GET, the edge: the 413s for size never reached the plugin.
    assert_eq!(ran, 8.0, "{metrics}");
}

/// An upstream that reads a body of any size without keeping it, and answers its length.
async fn draining_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                let mut head = Vec::new();
                // Body bytes that came with the head, then the rest as it streams.
                let mut total: u64 = loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (head.len() - i - 4) as u64;
                    }
                };
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let want: u64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while total < want {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => total += n as u64,
                    }
                }
                let body = format!("{{\"body_bytes\": {total}}}");
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_route_whose_plugins_do_not_read_bodies_streams_100_mb_with_flat_memory() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let (up, task) = draining_upstream().await;
    tenant_with_route(
        &store,
        "s",
        &["bodies.test"],
        route("up", "/", &[&up.to_string()]),
    )
    .await;
    relaxed(&store, "s").await;
    attach_plugin(
        &store,
        "s",
        "up",
        "add-header",
        &example_plugin("add-header"),
        &[],
        OnError::FailClosed,
    )
    .await;
    let gw = Wharf::start(&url).await;
    let r = gw.get("bodies.test", "/").await;
    assert_eq!(r.status, 200);

    let size: u64 = 100 << 20;
    let before = gw.rss_bytes();
    let started = Instant::now();
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: bodies.test\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'z'; 256 << 10];
    let mut peak = before;
    for i in 0..(size / chunk.len() as u64) {
        s.write_all(&chunk).await.unwrap();
        if i % 64 == 0 {
            peak = peak.max(gw.rss_bytes());
        }
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(&format!("\"body_bytes\": {size}")), "{text}");
    let grew = peak.saturating_sub(before);
    eprintln!(
        "100 MB upload through a plugin route without body plugins: {:?}, RSS peak +{} KiB",
        started.elapsed(),
        grew >> 10
    );
    assert!(grew < 32 << 20, "RSS grew {grew} bytes while streaming");
    task.abort();
}
