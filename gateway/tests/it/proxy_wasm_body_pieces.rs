//! A body in tiny pieces against a tenant's body-reading module: a client trickling its body just
//! above the minimum rate, or an upstream streaming tiny chunks, would run the module once per
//! piece, hundreds of times a second for one admitted request. Past a burst the pieces are paced
//! per body, what is sent meanwhile arriving as one piece, and the body still arrives whole.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::proxy_wasm_serve::upload_and_attach;
use crate::proxy_wasm_streaming::{passer, route_with};
use crate::support::api::setup;
use crate::support::body_server::BodyServer;

#[tokio::test]
async fn a_body_trickled_in_tiny_pieces_costs_paced_callbacks_and_arrives_whole() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = BodyServer::start().await;
    route_with(&gw, &api, "a", &up.addr.to_string(), json!({})).await;
    upload_and_attach(&gw, &api, "a", "api", "passer", passer(), json!({})).await;

    // 600 pieces of 10 bytes, 2 ms apart, each its own segment: 5,000 bytes/s, ten times the
    // minimum rate.
    let (pieces, size) = (600, 10);
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    s.set_nodelay(true).unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: a.test\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        pieces * size
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    for _ in 0..pieces {
        s.write_all(&[b'p'; 10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(&format!("\"body_bytes\":{}", pieces * size)),
        "{text}"
    );

    paced(&gw.metrics().await, "on_request_body", pieces, took);

    // The same 6,000 bytes as 6,000 one-byte chunks in one write: one piece each, however they
    // arrive, so they are slowed to the rate instead.
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    let mut flood = b"POST /upload HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    let chunks = 1200;
    for _ in 0..chunks {
        flood.extend_from_slice(b"1\r\nc\r\n");
    }
    flood.extend_from_slice(b"0\r\n\r\n");
    let before = callbacks(&gw.metrics().await, "on_request_body");
    let started = Instant::now();
    s.write_all(&flood).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(&format!("\"body_bytes\":{chunks}")), "{text}");
    let after = callbacks(&gw.metrics().await, "on_request_body");
    eprintln!(
        "{chunks} one-byte chunks in one write: {} callbacks in {took:?}",
        after - before
    );
    assert!(after - before <= 64.0 + 200.0 * took.as_secs_f64() + 3.0);
}

fn callbacks(metrics: &str, phase: &str) -> f64 {
    let series = format!(
        r#"wharf_plugin_invocations_total{{outcome="ok",phase="{phase}",plugin="passer",tenant="a"}}"#
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The module's `phase` callbacks were paced: a burst of 64, then 200 a second, and the last
/// piece (and rounding).
fn paced(metrics: &str, phase: &str, pieces: usize, took: Duration) {
    let callbacks = callbacks(metrics, phase);
    let allowed = 64.0 + 200.0 * took.as_secs_f64() + 3.0;
    eprintln!("{pieces} pieces in {took:?}: {callbacks} {phase} callbacks (at most {allowed:.0})");
    assert!(callbacks >= 1.0, "{metrics}");
    assert!(callbacks <= allowed, "{callbacks} callbacks in {took:?}");
}

#[tokio::test]
async fn a_response_streamed_in_tiny_chunks_costs_paced_callbacks_and_arrives_whole() {
    let (gw, api, _a, _b, _r) = setup().await;
    // The tenant's upstream: 600 chunks of 10 bytes, 2 ms apart, each its own segment.
    let (pieces, size) = (600, 10);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                tcp.set_nodelay(true).unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                if tcp.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..pieces {
                    if tcp.write_all(b"a\r\nrrrrrrrrrr\r\n").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let _ = tcp.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    route_with(&gw, &api, "a", &addr.to_string(), json!({})).await;
    upload_and_attach(&gw, &api, "a", "api", "passer", passer(), json!({})).await;

    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("http://{}/stream", gw.proxy))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    let took = started.elapsed();
    assert_eq!(body.len(), pieces * size);
    assert!(body.iter().all(|b| *b == b'r'));
    paced(&gw.metrics().await, "on_response_body", pieces, took);
    server.abort();
}
