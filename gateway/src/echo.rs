//! A small echo upstream: answers every request with a JSON description of it.
//! Serves `wharf serve --demo` and `wharf echo`, and the test suite's upstreams.
//! `?sleep_ms=N` delays the answer (to show timeouts); `?status=N` picks the status.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;

/// Serves until the task is dropped. `name` is reported in every answer (`"upstream"`).
pub async fn serve(listener: TcpListener, name: String) -> std::io::Result<()> {
    let app = Router::new().fallback(
        move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request| {
            let name = name.clone();
            async move { echo(name, peer, req).await }
        },
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

async fn echo(name: String, peer: SocketAddr, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let query: BTreeMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(ms) = query.get("sleep_ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(std::time::Duration::from_millis(ms.min(60_000))).await;
    }
    let status = query
        .get("status")
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let mut headers = BTreeMap::new();
    for (k, v) in &parts.headers {
        headers.insert(
            k.as_str().to_string(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        );
    }
    let reply = serde_json::json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_bytes": body.len(),
        "peer": peer.to_string(),
    });
    (status, axum::Json(reply)).into_response()
}
