//! A hostile client against a tenant's body-reading module: a body trickled in tiny pieces just
//! above the minimum rate would run the module once per piece, hundreds of times a second for
//! one admitted request. Past a burst the pieces are paced per request, what the client sends
//! meanwhile arriving as one piece, and the body still goes upstream whole.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

    let metrics = gw.metrics().await;
    let callbacks: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                r#"wharf_plugin_invocations_total{outcome="ok",phase="on_request_body",plugin="passer",tenant="a"}"#,
            )
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    // A burst of 32, then 50 a second, and the last piece (and rounding).
    let allowed = 32.0 + 50.0 * took.as_secs_f64() + 3.0;
    eprintln!("{pieces} pieces in {took:?}: {callbacks} body callbacks (at most {allowed:.0})");
    assert!(callbacks >= 1.0, "{metrics}");
    assert!(callbacks <= allowed, "{callbacks} callbacks in {took:?}");
}
