//! The admin listener: `/metrics` for Prometheus, `/healthz` (alive) and `/readyz` (should get
//! traffic) for orchestrators and load balancers, the admin API under `/v1`, the console.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use wharf_metrics::Metrics;

#[derive(Clone)]
pub struct AdminState {
    /// The config version this node serves (the control plane's live table).
    pub config_version: Arc<dyn Fn() -> i64 + Send + Sync>,
    pub metrics: Arc<Metrics>,
    pub store_up: Arc<AtomicBool>,
    /// Set once shutdown began: `/readyz` turns 503 so load balancers drain the node.
    pub draining: Arc<AtomicBool>,
    /// The proxy's listen addresses (plain and TLS): `/readyz` checks they accept connections.
    pub listeners: Vec<String>,
    /// `/metrics` names every tenant, route and upstream: with an operator token it requires
    /// that token; without one it answers only on loopback.
    pub operator_token: Option<String>,
    /// Requests being handled, proxy and admin alike: shutdown waits for them (an upload
    /// compiling, a write committing).
    pub in_flight: crate::drain::InFlight,
}

pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    api: crate::api::ApiState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let in_flight = state.in_flight.clone();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(crate::api::router(api))
        .merge(crate::console::router())
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let guard = in_flight.enter();
                async move {
                    let response = next.run(req).await;
                    drop(guard);
                    response
                }
            },
        ));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await
}

async fn metrics(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let allowed = match &s.operator_token {
        Some(op) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| Sha256::digest(t.trim().as_bytes()) == Sha256::digest(op.as_bytes())),
        None => peer.ip().is_loopback(),
    };
    if !allowed {
        let message = match s.operator_token {
            Some(_) => "metrics are for the operator: send Authorization: Bearer <operator token>",
            None => "metrics answer only on loopback until an operator token is configured",
        };
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "unauthorized", "message": message})),
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Ready for traffic: a config is loaded (a node never serves without one; a store outage only
/// means it serves its last good one), every proxy listener accepts connections, and the node is
/// not shutting down. 503 with the reasons otherwise.
async fn readyz(State(s): State<AdminState>) -> Response {
    let mut problems = Vec::new();
    if s.draining.load(Ordering::Relaxed) {
        problems.push("shutting down".to_string());
    }
    for addr in &s.listeners {
        if !accepts(addr).await {
            problems.push(format!("listener {addr} does not accept connections"));
        }
    }
    let version = (s.config_version)();
    let store_up = s.store_up.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "ready": problems.is_empty(),
        "config_version": version,
        "store": if store_up { "reachable" } else { "unreachable: serving the last good config" },
        "problems": problems,
    });
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Whether a local listener accepts a connection (a wildcard address is tried on loopback).
async fn accepts(addr: &str) -> bool {
    let Ok(mut a) = addr.parse::<SocketAddr>() else {
        return false;
    };
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_millis(500),
            tokio::net::TcpStream::connect(a)
        )
        .await,
        Ok(Ok(_))
    )
}

/// Always 200 while the process serves: a store outage degrades config freshness, not traffic.
async fn healthz(State(s): State<AdminState>) -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "config_version": (s.config_version)(),
        "store_up": s.store_up.load(Ordering::Relaxed),
    }))
}
