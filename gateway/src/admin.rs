//! The admin listener: `/metrics` for Prometheus, `/healthz` for orchestrators and tests, and the
//! admin API under `/v1`.

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

use crate::control::table::LiveConfig;

#[derive(Clone)]
pub struct AdminState {
    pub live: Arc<LiveConfig>,
    pub metrics: Arc<Metrics>,
    pub store_up: Arc<AtomicBool>,
    /// `/metrics` names every tenant, route and upstream: with an operator token it requires
    /// that token; without one it answers only on loopback.
    pub operator_token: Option<String>,
}

pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    api: crate::api::ApiState,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
        .merge(crate::api::router(api))
        .merge(crate::console::router());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
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

/// Always 200 while the process serves: a store outage degrades config freshness, not traffic.
async fn healthz(State(s): State<AdminState>) -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "config_version": s.live.load().version,
        "store_up": s.store_up.load(Ordering::Relaxed),
    }))
}
